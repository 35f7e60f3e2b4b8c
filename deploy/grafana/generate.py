#!/usr/bin/env python3
"""Writes Switchboard's Grafana dashboards (the JSON files beside this script).

The dashboards are generated so that every panel has the same shape, selectors and units; edit
this file and run it (`python3 deploy/grafana/generate.py`), never the JSON by hand.
`--check` exits non-zero when a JSON file differs from what this script would write (the test
suite runs it). Variables: datasource, namespace, pod, and on the contact-center overview
tenant and skill group (`group`).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}

NODE = 'namespace=~"$namespace", pod=~"$pod"'
TENANT = NODE + ', tenant=~"$tenant"'
GROUP = TENANT + ', group=~"$group"'
RATE = "[$__rate_interval]"


class Layout:
    """Places panels left to right, 24 columns wide, and numbers them."""

    def __init__(self):
        self.panels, self.x, self.y, self.row_h, self.next_id = [], 0, 0, 0, 1

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append(
            {"type": "row", "title": title, "id": self._id(), "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def target(expr, legend="", ref="A", fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
         "range": True}
    if fmt:
        t["format"] = fmt
    return t


def targets(*pairs):
    return [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(pairs)]


def timeseries(title, desc, tgts, unit="short", stack=False, minimum=0, maximum=None):
    defaults = {"unit": unit, "min": minimum,
                "custom": {"drawStyle": "line", "fillOpacity": 30 if stack else 10,
                           "lineWidth": 1, "showPoints": "never",
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
    if maximum is not None:
        defaults["max"] = maximum
    return {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "targets": tgts, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right",
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, desc, expr, unit="short", thresholds=None, decimals=None):
    steps = thresholds or [{"color": "green", "value": None}]
    defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": desc, "datasource": DS,
            "targets": [target(expr)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "area", "textMode": "value"}}


def heatmap(title, desc, expr):
    return {"type": "heatmap", "title": title, "description": desc, "datasource": DS,
            "targets": [dict(target(expr, "{{le}}"), format="heatmap")],
            "fieldConfig": {"defaults": {"custom": {}}, "overrides": []},
            "options": {"calculate": False, "yAxis": {"unit": "s"},
                        "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"},
                        "tooltip": {"show": True, "yHistogram": True}}}


def table(title, desc, expr, legend=""):
    return {"type": "table", "title": title, "description": desc, "datasource": DS,
            "targets": [dict(target(expr, legend), format="table", instant=True, range=False)],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True}}


def var_datasource():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "options": []}


def var_query(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name, "qryType": 1},
            "definition": query, "refresh": 2, "sort": 1, "hide": 0,
            "multi": multi, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": []}


def variables(with_tenant):
    vs = [var_datasource(),
          var_query("namespace", "Namespace", "label_values(switchboard_build_info, namespace)"),
          var_query("pod", "Pod",
                    'label_values(switchboard_build_info{namespace=~"$namespace"}, pod)')]
    if with_tenant:
        vs += [var_query("tenant", "Tenant",
                         f'label_values(switchboard_queue_waiting{{{NODE}}}, tenant)'),
               var_query("group", "Skill group",
                         f'label_values(switchboard_queue_waiting{{{TENANT}}}, group)')]
    return vs


def dashboard(uid, title, desc, tags, layout, with_tenant):
    return {"uid": uid, "title": title, "description": desc, "tags": ["switchboard"] + tags,
            "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39,
            "time": {"from": "now-6h", "to": "now"}, "timezone": "", "version": 1,
            "annotations": {"list": []}, "links": [], "panels": layout.panels,
            "templating": {"list": variables(with_tenant)}}


def quantiles(metric, sel, by, qs=(0.5, 0.9, 0.99)):
    return [(f"histogram_quantile({q}, sum by ({by}le) (rate({metric}_bucket{{{sel}}}{RATE})))",
             f"p{int(q * 100)}" + (" {{" + by.rstrip(", ") + "}}" if by else ""))
            for q in qs]


def share_leaving(part, sel=GROUP, by=""):
    """The share of the conversations leaving the queue that `part` (a series selector of
    switchboard_queue_wait_seconds) counts. Series of an outcome exist only once it happened:
    where it never did (nobody answered, nobody gave up) the share is 0, not absent."""
    by_clause = f" by ({by})" if by else ""
    total = f"sum{by_clause} (rate(switchboard_queue_wait_seconds_count{{{sel}}}{RATE}))"
    return f"(\n  sum{by_clause} (rate({part}{RATE}))\nor\n  0 * {total}\n)\n/\n{total}"


def service_level(seconds, sel=GROUP, by=""):
    return share_leaving(
        f'switchboard_queue_wait_seconds_bucket{{{sel}, outcome="assigned", le="{seconds}"}}',
        sel, by)


SL_STEPS = [{"color": "red", "value": None}, {"color": "orange", "value": 0.7},
            {"color": "green", "value": 0.8}]


def contact_center():
    l = Layout()
    l.row("Now")
    l.add(stat("Service level (20 s)",
               "Share of the conversations leaving the queue that were answered within 20 s.",
               service_level(20), "percentunit", SL_STEPS, 1), 4, 5)
    l.add(stat("Waiting", "Conversations waiting in the selected queues.",
               f"sum (switchboard_queue_waiting{{{GROUP}}})"), 4, 5)
    l.add(stat("Oldest wait", "Wait of the oldest conversation in the selected queues.",
               f"max (switchboard_queue_oldest_wait_seconds{{{GROUP}}})", "s",
               [{"color": "green", "value": None}, {"color": "orange", "value": 60},
                {"color": "red", "value": 300}]), 4, 5)
    l.add(stat("Abandonment",
               "Share of the conversations leaving the queue that the customer abandoned.",
               share_leaving(f'switchboard_queue_wait_seconds_count{{{GROUP}, outcome="abandoned"}}'),
               "percentunit", [{"color": "green", "value": None},
                               {"color": "orange", "value": 0.05},
                               {"color": "red", "value": 0.1}], 1), 4, 5)
    l.add(stat("Agents online", "Agents of the selected tenants whose status is online.",
               f'sum (switchboard_agents{{{TENANT}, status="online"}})'), 4, 5)
    l.add(stat("Occupancy", "Conversations held over the capacity of signed-in agents.",
               f"sum (switchboard_agent_used_slots{{{TENANT}}})\n/\n"
               f"sum (switchboard_agent_capacity_slots{{{TENANT}}})", "percentunit",
               decimals=1), 4, 5)

    l.row("Service level")
    l.add(timeseries("Service level by threshold",
                     "Answered within 20, 30 and 60 s over everything that left the queue.",
                     targets(*[(service_level(s), f"within {s} s") for s in (20, 30, 60)]),
                     "percentunit", maximum=1), 12, 8)
    l.add(timeseries("Service level (20 s) by skill group", "Per tenant and skill group.",
                     targets((service_level(20, by="tenant, group"), "{{tenant}}/{{group}}")),
                     "percentunit", maximum=1), 12, 8)

    l.row("Queues")
    l.add(timeseries("Queue length", "Conversations waiting, per skill group.",
                     targets((f"sum by (tenant, group) (switchboard_queue_waiting{{{GROUP}}})",
                              "{{tenant}}/{{group}}"))), 12, 8)
    l.add(timeseries("Oldest wait", "Wait of the oldest conversation, per skill group.",
                     targets((f"max by (tenant, group) (switchboard_queue_oldest_wait_seconds{{{GROUP}}})",
                              "{{tenant}}/{{group}}")), "s"), 12, 8)
    l.add(heatmap("Wait before assignment",
                  "How long assigned conversations waited in the queue (bucket bounds include the 20/30/60 s service-level thresholds).",
                  f'sum by (le) (increase(switchboard_queue_wait_seconds_bucket{{{GROUP}, outcome="assigned"}}{RATE}))'),
          12, 8)
    l.add(timeseries("Wait quantiles (assigned)", "Interpolated within histogram buckets.",
                     targets(*quantiles("switchboard_queue_wait_seconds",
                                        GROUP + ', outcome="assigned"', "")), "s"), 12, 8)
    l.add(timeseries("Leaving the queue, by outcome",
                     "Conversations leaving the queue per second: assigned, abandoned, transferred to another group, timed out, ended.",
                     targets((f"sum by (outcome) (rate(switchboard_queue_wait_seconds_count{{{GROUP}}}{RATE}))",
                              "{{outcome}}")), "ops", stack=True), 12, 8)
    l.add(timeseries("Agents online per skill group",
                     "Members of each group who are online (receiving work).",
                     targets((f"sum by (tenant, group) (switchboard_queue_agents_online{{{GROUP}}})",
                              "{{tenant}}/{{group}}"))), 12, 8)

    l.row("First response and abandonment")
    l.add(timeseries("First response time",
                     "Time to the first human answer, from the conversation opening and from its assignment.",
                     targets(*[(f'histogram_quantile({q}, sum by (from, le) (rate(switchboard_first_response_seconds_bucket{{{GROUP}}}{RATE})))',
                                f"p{int(q * 100)} from {{{{from}}}}") for q in (0.5, 0.9)]), "s"),
          12, 8)
    l.add(timeseries("Abandoned", "Conversations the customer left while queued, per second.",
                     targets((f"sum by (tenant, group) (rate(switchboard_abandoned_total{{{GROUP}}}{RATE}))",
                              "{{tenant}}/{{group}}")), "ops"), 12, 8)

    l.row("Agents")
    l.add(timeseries("Agents by status", "Agents of the selected tenants by status.",
                     targets((f"sum by (status) (switchboard_agents{{{TENANT}}})", "{{status}}")),
                     stack=True), 12, 8)
    l.add(timeseries("Occupancy", "Conversations held over the capacity of signed-in agents, per tenant.",
                     targets((f"sum by (tenant) (switchboard_agent_used_slots{{{TENANT}}})\n/\n"
                              f"sum by (tenant) (switchboard_agent_capacity_slots{{{TENANT}}})",
                              "{{tenant}}")), "percentunit", maximum=1), 12, 8)

    l.row("Routing")
    l.add(timeseries("Assignments", "Assignments per second by how: auto, accepted, picked, transferred.",
                     targets((f"sum by (via) (rate(switchboard_assignments_total{{{GROUP}}}{RATE}))",
                              "{{via}}")), "ops", stack=True), 8, 8)
    l.add(timeseries("Reassignments",
                     "Conversations moved off their agent per second, by reason: the agent transferred it, a supervisor reassigned it, the agent signed out.",
                     targets((f"sum by (reason, target) (rate(switchboard_reassignments_total{{{TENANT}}}{RATE}))",
                              "{{reason}} → {{target}}")), "ops", stack=True), 8, 8)
    l.add(timeseries("Offers", "Offers per second by outcome: made, accepted, declined, timed out…",
                     targets((f"sum by (outcome) (rate(switchboard_offers_total{{{TENANT}}}{RATE}))",
                              "{{outcome}}")), "ops"), 8, 8)
    l.add(timeseries("Conversations", "Open conversations by state.",
                     targets((f"sum by (state) (switchboard_conversations_active{{{TENANT}}})",
                              "{{state}}")), stack=True), 8, 8)
    l.add(timeseries("Conversations opened and ended", "Per second; ended by cause.",
                     targets((f"sum (rate(switchboard_conversations_opened_total{{{GROUP}}}{RATE}))",
                              "opened"),
                             (f"sum by (cause) (rate(switchboard_conversations_ended_total{{{GROUP}}}{RATE}))",
                              "ended: {{cause}}")), "ops"), 8, 8)
    l.add(timeseries("Automatic replies", "Sent per second by kind; withheld to keep the channel budget's reserve for humans.",
                     targets((f"sum by (kind) (rate(switchboard_automatic_replies_total{{{TENANT}}}{RATE}))",
                              "{{kind}}"),
                             (f"sum by (kind) (rate(switchboard_automatic_replies_suppressed_total{{{TENANT}}}{RATE}))",
                              "withheld: {{kind}}")), "ops"), 8, 8)
    l.add(timeseries("Channel budgets exhausted",
                     "Service messages stopped by a channel's reply budget (mini-program 5, official account 20): automatic replies withheld for the humans' reserve, and agent messages refused.",
                     targets((f"sum by (channel, by) (rate(switchboard_channel_budget_exhausted_total{{{TENANT}}}{RATE}))",
                              "{{channel}} {{by}}")), "ops"), 24, 8)
    return dashboard("switchboard-contact-center", "Switchboard / Contact center overview",
                     "Service level, queues, first response, abandonment and agents, per tenant and skill group.",
                     ["contact-center"], l, True)


def cluster():
    l = Layout()
    l.row("Cluster")
    l.add(stat("Members (min seen)", "Cluster members as the node seeing the fewest counts them.",
               f"min (switchboard_cluster_members{{{NODE}}})"), 6, 5)
    l.add(stat("Nodes scraped", "Nodes reporting metrics.",
               f"count (switchboard_build_info{{{NODE}}})"), 6, 5)
    l.add(stat("Shards unowned", "Shards a node sees with no owner (should be 0).",
               f"max (switchboard_shards_unowned{{{NODE}}})", "short",
               [{"color": "green", "value": None}, {"color": "red", "value": 1}]), 6, 5)
    l.add(stat("Lease renewal failures (1h)", "Failed etcd lease renewals over the last hour.",
               f"sum (increase(switchboard_lease_renewal_failures_total{{{NODE}}}[1h]))", "short",
               [{"color": "green", "value": None}, {"color": "red", "value": 1}]), 6, 5)
    l.add(timeseries("Shards owned", "Shards each node owns.",
                     targets((f"sum by (pod) (switchboard_shards_owned{{{NODE}}})", "{{pod}}")),
                     stack=True), 12, 8)
    l.add(timeseries("Members seen", "Members each node sees; they should agree.",
                     targets((f"max by (pod) (switchboard_cluster_members{{{NODE}}})", "{{pod}}"))),
          12, 8)
    l.add(timeseries("Shard handoffs", "Ownership changes per second, by kind.",
                     targets((f"sum by (kind) (rate(switchboard_shard_handoffs_total{{{NODE}}}{RATE}))",
                              "{{kind}}")), "ops"), 8, 8)
    l.add(timeseries("Forwarded calls", "Calls forwarded to the owning node, by outcome.",
                     targets((f"sum by (outcome) (rate(switchboard_forwarded_total{{{NODE}}}{RATE}))",
                              "{{outcome}}")), "ops"), 8, 8)
    l.add(timeseries("Fenced writes", "Writes refused because a newer owner holds the shard.",
                     targets((f"sum by (pod) (rate(switchboard_fenced_writes_total{{{NODE}}}{RATE}))",
                              "{{pod}}")), "ops"), 8, 8)
    l.add(timeseries("etcd request time", "p50 and p99 by operation.",
                     targets(*quantiles("switchboard_etcd_request_seconds", NODE, "op, ",
                                        (0.5, 0.99))), "s"), 12, 8)
    l.add(timeseries("Lease renewal failures", "Per pod.",
                     targets((f"sum by (pod) (increase(switchboard_lease_renewal_failures_total{{{NODE}}}{RATE}))",
                              "{{pod}}"))), 12, 8)

    l.row("Runtime")
    l.add(timeseries("CPU", "CPU time used per second by each node's process (1 = one core).",
                     targets((f"sum by (pod) (rate(process_cpu_seconds_total{{{NODE}}}{RATE}))",
                              "{{pod}}"))), 8, 8)
    l.add(timeseries("Resident memory", "Resident set size of each node's process.",
                     targets((f"max by (pod) (process_resident_memory_bytes{{{NODE}}})",
                              "{{pod}}")), "bytes"), 8, 8)
    l.add(timeseries("Open file descriptors",
                     "Open file descriptors of each node's process (sockets, store files), and its limit.",
                     targets((f"max by (pod) (process_open_fds{{{NODE}}})", "{{pod}}"),
                             (f"min (process_max_fds{{{NODE}}})", "limit"))), 8, 8)
    l.add(timeseries("Live actors", "By kind and pod.",
                     targets((f"sum by (pod, kind) (switchboard_actors{{{NODE}}})",
                              "{{pod}} {{kind}}"))), 8, 8)
    l.add(timeseries("Mailbox depth", "Messages waiting in actor mailboxes.",
                     targets((f"max by (pod, kind) (switchboard_mailbox_depth{{{NODE}}})",
                              "{{pod}} {{kind}}"))), 8, 8)
    l.add(timeseries("Stream drops", "Live stream subscribers dropped for falling behind.",
                     targets((f"sum by (pod) (rate(switchboard_stream_drops_total{{{NODE}}}{RATE}))",
                              "{{pod}}")), "ops"), 8, 8)
    l.add(timeseries("Commands", "Commands applied and logged per second, by kind.",
                     targets((f"sum by (kind) (rate(switchboard_commands_total{{{NODE}}}{RATE}))",
                              "{{kind}}")), "ops", stack=True), 8, 8)
    l.add(timeseries("Commands refused", "By reason.",
                     targets((f"sum by (reason) (rate(switchboard_commands_refused_total{{{NODE}}}{RATE}))",
                              "{{reason}}")), "ops"), 8, 8)
    l.add(timeseries("Command apply time", "Time to apply one command to a tenant's state.",
                     targets(*quantiles("switchboard_command_apply_seconds", NODE, "",
                                        (0.5, 0.99, 0.999))), "s"), 8, 8)
    l.add(timeseries("Assignment decision time",
                     "Time to apply a command that offered or assigned conversations (matching included).",
                     targets(*quantiles("switchboard_assignment_decision_seconds", NODE, "",
                                        (0.5, 0.99, 0.999))), "s"), 8, 8)
    l.add(timeseries("Idempotent replays",
                     "Calls whose request_id already had an answer, so nothing was applied again "
                     "(a client's retry, or a reused id refused), per second by tenant. A climb "
                     "means clients retry: timeouts, or a gateway resending.",
                     targets((f"sum by (tenant) (rate(switchboard_idempotent_replays_total{{{NODE}}}{RATE}))",
                              "{{tenant}}")), "ops"), 8, 8)
    l.add(timeseries("Snapshot size", "Tenant snapshot sizes, p50 and p99.",
                     targets(*quantiles("switchboard_snapshot_bytes", NODE, "", (0.5, 0.99))),
                     "bytes"), 8, 8)
    l.add(timeseries("Integrator events", "Events emitted per second, by type.",
                     targets((f"sum by (type) (rate(switchboard_events_total{{{NODE}}}{RATE}))",
                              "{{type}}")), "ops", stack=True), 24, 8)
    l.add(table("Versions", "Build of each node.",
                f"max by (pod, version) (switchboard_build_info{{{NODE}}})"), 24, 6)
    return dashboard("switchboard-cluster", "Switchboard / Cluster & runtime",
                     "Membership, shard ownership, etcd, actors and the command path of every node.",
                     ["cluster"], l, False)


def grpc():
    sel = NODE
    l = Layout()
    l.row("Traffic")
    l.add(stat("Requests/s", "RPCs completed per second.",
               f"sum (rate(grpc_server_handled_total{{{sel}}}{RATE}))", "reqps"), 8, 5)
    l.add(stat("Errors", "Share of RPCs that ended with a code other than OK.",
               f'sum (rate(grpc_server_handled_total{{{sel}, grpc_code!="OK"}}{RATE}))\n/\n'
               f"sum (rate(grpc_server_handled_total{{{sel}}}{RATE}))", "percentunit",
               [{"color": "green", "value": None}, {"color": "orange", "value": 0.01},
                {"color": "red", "value": 0.05}], 2), 8, 5)
    l.add(stat("p99 latency (unary)", "99th percentile of unary RPCs.",
               f'histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{{{sel}, grpc_type="unary"}}{RATE})))',
               "s"), 8, 5)
    l.add(timeseries("Requests by method", "RPCs completed per second.",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{sel}}}{RATE}))",
                              "{{grpc_service}}/{{grpc_method}}")), "reqps", stack=True), 12, 8)
    l.add(timeseries("Errors by code", "RPCs that ended with a code other than OK.",
                     targets((f'sum by (grpc_code, grpc_method) (rate(grpc_server_handled_total{{{sel}, grpc_code!="OK"}}{RATE}))',
                              "{{grpc_method}} {{grpc_code}}")), "reqps"), 12, 8)
    l.add(timeseries("Started vs handled", "Started minus handled grows with open streams.",
                     targets((f"sum (rate(grpc_server_started_total{{{sel}}}{RATE}))", "started"),
                             (f"sum (rate(grpc_server_handled_total{{{sel}}}{RATE}))", "handled")),
                     "reqps"), 12, 8)
    l.add(timeseries("Requests by pod", "RPCs completed per second, per pod.",
                     targets((f"sum by (pod) (rate(grpc_server_handled_total{{{sel}}}{RATE}))",
                              "{{pod}}")), "reqps"), 12, 8)

    l.row("Latency")
    l.add(timeseries("p99 by method", "99th percentile handling time (to the start of a stream).",
                     targets((f"histogram_quantile(0.99, sum by (grpc_service, grpc_method, le) (rate(grpc_server_handling_seconds_bucket{{{sel}}}{RATE})))",
                              "{{grpc_service}}/{{grpc_method}}")), "s"), 12, 8)
    l.add(timeseries("p50 by method", "Median handling time.",
                     targets((f"histogram_quantile(0.5, sum by (grpc_service, grpc_method, le) (rate(grpc_server_handling_seconds_bucket{{{sel}}}{RATE})))",
                              "{{grpc_service}}/{{grpc_method}}")), "s"), 12, 8)
    l.add(heatmap("Handling time", "All RPCs.",
                  f"sum by (le) (increase(grpc_server_handling_seconds_bucket{{{sel}}}{RATE}))"),
          24, 8)
    return dashboard("switchboard-grpc", "Switchboard / gRPC API",
                     "Requests, errors and latency of the public and internal gRPC services.",
                     ["grpc"], l, False)


DASHBOARDS = {"contact-center.json": contact_center, "cluster.json": cluster, "grpc.json": grpc}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = os.path.join(HERE, name)
        if check:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        sys.exit(f"stale dashboards (run python3 deploy/grafana/generate.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
