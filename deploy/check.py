#!/usr/bin/env python3
"""Structural checks of deploy/ and helm/ that no off-the-shelf tool makes; run by
crates/switchboard/tests/deploy.rs (with PYTHONPATH=target/tools/python for PyYAML and
jsonschema, which scripts/setup installs with kubernetes-validate).

  check.py promql OUT_DIR
      Gathers every PromQL expression of the dashboards (panel targets) with Grafana's
      variables substituted, writes them as recording rules to OUT_DIR/dashboards.rules.yml for
      `promtool check rules`, checks the dashboards' shape (variables, data source) and that
      every alert has a runbook, and prints every metric name the dashboards, their variable
      queries and the Prometheus rules read, one per line.
  check.py rendered FILE...
      Checks the custom resources in rendered manifests that kubernetes-validate has no schema
      for: all of them against prometheus-operator's CRD schemas (deploy/crds.mjs, which allow
      unknown fields), then each PrometheusRule's spec through `promtool check rules`, each
      ServiceMonitor against a strict schema of the fields we use (no unknown fields), and
      each dashboard ConfigMap must carry exactly the dashboards of deploy/grafana; then each
      node StatefulSet's rules (probes that work with its TLS setting, key and certificate
      files of its TOML mounted from Secrets, grace period, headless Service).
"""

import base64
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFANA = os.path.join(ROOT, "deploy", "grafana")
PROMETHEUS = os.path.join(ROOT, "deploy", "prometheus")
METRIC = re.compile(r"\b((?:switchboard|grpc_server|process)_[a-z0-9_]+)\b")
RECORDED = re.compile(r"\b(switchboard:[a-z0-9_:]+)\b")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# Grafana's built-in interval variables and what stands for them in a check.
BUILTIN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def fail(msg):
    sys.exit(f"check.py: {msg}")


def substitute(expr):
    """Grafana variables → values PromQL accepts: intervals for the built-ins, a regex for the
    template variables (which only ever appear inside =~ matchers)."""
    return VARIABLE.sub(lambda m: BUILTIN.get(m.group(1) or m.group(2), ".*"), expr)


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def dashboards():
    paths = sorted(glob.glob(os.path.join(GRAFANA, "*.json")))
    if not paths:
        fail(f"no dashboards in {GRAFANA}")
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield os.path.basename(path), json.load(f)


def rule_files():
    return sorted(glob.glob(os.path.join(PROMETHEUS, "*.rules.yml")))


def promql(out_dir):
    names, rules = set(), []
    recorded = set()
    for path in rule_files():
        with open(path, encoding="utf-8") as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    names.update(METRIC.findall(rule["expr"]))
                    if "record" in rule:
                        recorded.add(rule["record"])
                    else:
                        for key in ("summary", "description", "runbook"):
                            if not rule.get("annotations", {}).get(key, "").strip():
                                fail(f"alert {rule['alert']} in {path} has no {key} annotation")
    for file, dash in dashboards():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        want = ["datasource", "namespace", "pod"]
        if file == "contact-center.json":
            want += ["tenant", "group"]
        for v in want:
            if v not in variables:
                fail(f"{file}: no ${v} variable")
        for v in variables.values():
            if v["type"] == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
                if not m:
                    fail(f"{file}: variable {v['name']}: unexpected query {q!r}")
                names.update(METRIC.findall(m.group(1)))
                rules.append((f"{file} variable {v['name']}", substitute(m.group(1))))
        count = 0
        for p in panels(dash["panels"]):
            if p["type"] == "row":
                continue
            if p.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{file}: panel {p['title']!r} does not use the $datasource variable")
            if not p.get("targets"):
                fail(f"{file}: panel {p['title']!r} has no query")
            for t in p["targets"]:
                expr = t["expr"]
                names.update(METRIC.findall(expr))
                for r in RECORDED.findall(expr):
                    if r not in recorded:
                        fail(f"{file}: panel {p['title']!r} reads {r}, which no rule records")
                rules.append((f"{file} panel {p['title']!r} {t['refId']}", substitute(expr)))
                count += 1
        if count == 0:
            fail(f"{file}: no queries")
    group = {"name": "dashboards", "rules": []}
    for i, (where, expr) in enumerate(rules):
        group["rules"].append({"record": f"dashboard_check:expr_{i}", "expr": expr,
                               "labels": {"where": where}})
    with open(os.path.join(out_dir, "dashboards.rules.yml"), "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [group]}, f, sort_keys=False, allow_unicode=True)
    for n in sorted(names):
        print(n)


SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object",
                                                   "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}},
                                   "any": {"type": "boolean"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                            "scrapeTimeout": {"type": "string",
                                              "pattern": r"^(\d+(ms|s|m|h))+$"},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def rendered(files):
    docs = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    want = {}
    for file, _ in dashboards():
        with open(os.path.join(GRAFANA, file), encoding="utf-8") as f:
            want[file] = json.load(f)
    seen_dashboards = {}
    crds = [d for d in docs if d.get("kind") in ("ServiceMonitor", "PrometheusRule")]
    if crds:
        r = subprocess.run(["node", os.path.join(ROOT, "deploy", "crds.mjs")],
                           input=json.dumps(crds), capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"prometheus-operator schemas:\n{r.stdout}{r.stderr}")
        sys.stdout.write(r.stdout)
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        if kind == "PrometheusRule":
            if d.get("apiVersion") != "monitoring.coreos.com/v1":
                fail(f"PrometheusRule {name}: apiVersion {d.get('apiVersion')}")
            if set(d) - {"apiVersion", "kind", "metadata", "spec"} or set(d["spec"]) != {"groups"}:
                fail(f"PrometheusRule {name}: unexpected fields")
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                yaml.safe_dump(d["spec"], f)
            try:
                r = subprocess.run(["promtool", "check", "rules", f.name],
                                   capture_output=True, text=True)
            finally:
                os.unlink(f.name)
            if r.returncode != 0:
                fail(f"PrometheusRule {name}: promtool check rules:\n{r.stdout}{r.stderr}")
            print(f"PrometheusRule {name}: {sum(len(g['rules']) for g in d['spec']['groups'])} rules pass promtool")
        elif kind == "ServiceMonitor":
            try:
                jsonschema.validate(d, SERVICE_MONITOR)
            except jsonschema.ValidationError as e:
                fail(f"ServiceMonitor {name}: {e.message} at {list(e.absolute_path)}")
            print(f"ServiceMonitor {name}: valid")
        elif kind == "ConfigMap" and d.get("metadata", {}).get("labels", {}).get("grafana_dashboard"):
            for key, text in d.get("data", {}).items():
                if want.get(key) != json.loads(text):
                    fail(f"ConfigMap {name}: {key} differs from deploy/grafana/{key}")
                seen_dashboards[key] = name
    deployment(docs)
    if seen_dashboards and set(seen_dashboards) != set(want):
        fail(f"dashboard ConfigMaps carry {sorted(seen_dashboards)}, deploy/grafana has {sorted(want)}")
    for key, name in sorted(seen_dashboards.items()):
        print(f"ConfigMap {name}: {key} matches deploy/grafana")


# What a Secret key stands for when the launch is replayed outside Kubernetes.
SECRET_SAMPLES = {"url": "postgres://switchboard:secret@postgres:5432/switchboard",
                  "endpoints": "etcd-0:2379,etcd-1:2379"}


def launch_of(container, config_map, sts):
    """The node's command line and environment as the kubelet would give them to pod 0:
    field references and Secret keys filled with samples, $(VAR) expanded, the config file
    path left as {config} for the caller to point at the rendered TOML."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            value = e["value"]
        elif "fieldRef" in e["valueFrom"]:
            value = {"metadata.name": f"{sts}-0", "metadata.namespace": "switchboard"}[
                e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            key = e["valueFrom"]["secretKeyRef"]["key"]
            value = SECRET_SAMPLES.get(key, "sample")
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
            for a in container.get("args", [])]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "config"]
    path = mounts[0]["mountPath"] if mounts else None
    if path and not path.endswith(".toml"):
        path = path + "/switchboard.toml"
    args = ["{config}" if a == path else a for a in args]
    if "{config}" not in args:
        fail(f"{sts}: the node is not started with its mounted config file")
    return {"args": args, "env": env, "config_map": config_map}


# The node's configuration keys the manifests may set (SPEC §10, README, the cluster issue).
KNOWN_KEYS = {
    "grpc": {"addr", "max_request_bytes", "concurrency_per_connection"},
    "metrics": {"addr"},
    "store": {"data_dir", "snapshot_every", "url"},
    "log": {"filter", "format"},
    "shutdown": {"drain_seconds"},
    "cluster": {"etcd", "name", "node_id", "advertise_addr", "lease_ttl_seconds", "shards"},
    "auth": {"token_keys", "leeway_seconds"},
    "tls": {"cert_file", "key_file", "client_ca_file", "reload_seconds"},
    "limits": {"tenant_requests_per_second", "tenant_burst", "streams_per_agent", "tenant_in_flight",
               "call_timeout_ms"},
    "webhooks": {"initial_backoff_ms", "max_backoff_ms", "max_attempts", "timeout_ms", "ca_file"},
}


def secret_files(node, pod):
    """Files the container sees from Secrets: path -> Secret name. A volume that lists items
    gives exactly those paths; one without items gives its mount directory (any key) as
    `dir/*`."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = {}
    for m in node.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "subPath" in m:
            continue
        sources = []
        if "secret" in v:
            sources.append((v["secret"]["secretName"], v["secret"].get("items")))
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src:
                sources.append((src["secret"]["name"], src["secret"].get("items")))
        for secret, items in sources:
            if items is None:
                files[m["mountPath"].rstrip("/") + "/*"] = secret
            else:
                for item in items:
                    files[m["mountPath"].rstrip("/") + "/" + item["path"]] = secret
    return files


def key_files(name, config, node, pod):
    """Every key or certificate file the node's TOML names must come from a Secret mounted in
    the container (the launch replay cannot see them: --dump-config validates the settings
    but does not read the files; `serve` reads them before it listens)."""
    paths = list(config.get("auth", {}).get("token_keys", []))
    paths += [config.get("tls", {}).get(k) for k in ("cert_file", "key_file", "client_ca_file")]
    paths = [p for p in paths if p]
    files = secret_files(node, pod)
    secrets = set()
    for p in paths:
        secret = files.get(p) or files.get(os.path.dirname(p) + "/*")
        if secret is None:
            fail(f"StatefulSet {name}: {p} (in its TOML) is not a file of a mounted Secret")
        secrets.add(secret)
    return paths, secrets


def probes(name, node, ports, tls):
    """Without TLS: gRPC health probes on the grpc port, startup and readiness for service "".
    With TLS (the kubelet's gRPC probes cannot do TLS): no gRPC probe; `switchboard ctl
    health` over TLS against the grpc port (exec), or TCP or HTTP probes on the node's grpc or
    metrics port, HTTP only on the plaintext metrics port."""
    kinds = set()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = node.get(probe, {})
        if not tls:
            grpc = p.get("grpc")
            if not grpc or grpc["port"] != ports.get("grpc"):
                fail(f"StatefulSet {name}: {probe} must be a gRPC probe on the grpc port")
            if probe != "livenessProbe" and grpc.get("service", "") != "":
                fail(f"StatefulSet {name}: {probe} must ask for service \"\" (ready = owning shards)")
            continue
        if "grpc" in p:
            fail(f"StatefulSet {name}: {probe} is a gRPC probe, but the grpc port speaks TLS")
        if "exec" in p:
            cmd = p["exec"]["command"]
            addr = f"https://127.0.0.1:{ports['grpc']}"
            if not (cmd[0].endswith("/switchboard") and cmd[1] == "ctl" and cmd[-1] == "health"
                    and addr in cmd and "--ca-file" in cmd):
                fail(f"StatefulSet {name}: {probe} must run `switchboard ctl --addr {addr} "
                     f"--ca-file … health`, not {cmd}")
            kinds.add("exec")
        elif "tcpSocket" in p:
            if p["tcpSocket"]["port"] not in (ports["grpc"], ports["metrics"], "grpc", "metrics"):
                fail(f"StatefulSet {name}: {probe} checks a port the node does not serve")
        elif "httpGet" in p:
            h = p["httpGet"]
            if h["port"] not in (ports["metrics"], "metrics") or h.get("scheme", "HTTP") != "HTTP" \
                    or h.get("path") != "/metrics":
                fail(f"StatefulSet {name}: {probe} must GET /metrics on the metrics port")
        else:
            fail(f"StatefulSet {name}: {probe} must be an exec, TCP or HTTP probe when TLS is on")
    if not tls:
        return "gRPC probes"
    return "ctl health probes (TLS)" if "exec" in kinds else "TCP/HTTP probes (TLS)"



def rendered_secret_keys(name, pod, by_kind):
    """A Secret volume naming a Secret rendered beside it (the chart's generated token key)
    must find every key it lists there; an HS256 token key must hold at least 32 bytes."""
    rendered = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    for v in pod.get("volumes", []):
        secret = v.get("secret", {})
        found = rendered.get(secret.get("secretName"))
        if found is None:
            continue
        data = {k: base64.b64decode(x) for k, x in found.get("data", {}).items()}
        data.update({k: x.encode() for k, x in found.get("stringData", {}).items()})
        for item in secret.get("items", []):
            if item["key"] not in data:
                fail(f"StatefulSet {name}: volume {v['name']} wants key {item['key']} of Secret "
                     f"{found['metadata']['name']}, which has {sorted(data)}")
            value = data[item["key"]]
            if v["name"] == "auth" and not value.startswith(b"-----BEGIN") \
                    and len(value.strip()) < 32:
                fail(f"Secret {found['metadata']['name']}: {item['key']} is an HS256 secret of "
                     f"{len(value.strip())} bytes (at least 32)")
            print(f"Secret {found['metadata']['name']}: {item['key']} rendered "
                  f"({len(value.strip())} bytes), mounted by StatefulSet {name}")


def helm_tests(by_kind, nodes):
    """`helm test` Pods: every container runs `switchboard ctl --addr URL [--ca-file F]
    health` against the node Service or one node through the peers Service, on the grpc
    port, over TLS exactly when the nodes speak it, with a CA file mounted from a Secret."""
    for pod in by_kind.get("Pod", []):
        meta = pod["metadata"]
        if meta.get("annotations", {}).get("helm.sh/hook") != "test":
            continue
        spec = pod["spec"]
        if spec.get("restartPolicy") != "Never" or not spec.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"Pod {meta['name']}: a test Pod runs once (restartPolicy Never), as non-root")
        ns = meta.get("namespace", "default")
        addrs = {}
        for sts, (replicas, port, tls, services) in nodes.items():
            scheme = "https" if tls else "http"
            for svc in services:
                addrs[f"{scheme}://{svc}.{ns}.svc.cluster.local:{port}"] = sts
            headless = services[-1]
            for i in range(replicas):
                addrs[f"{scheme}://{sts}-{i}.{headless}.{ns}.svc.cluster.local:{port}"] = sts
        targets = []
        for c in spec["containers"]:
            cmd = c.get("command", []) + c.get("args", [])
            if len(cmd) < 5 or not cmd[0].endswith("/switchboard") or cmd[1:3] != ["ctl", "--addr"] \
                    or cmd[-1] != "health":
                fail(f"Pod {meta['name']}: container {c['name']} must run `switchboard ctl --addr "
                     f"… health`, not {cmd}")
            if cmd[3] not in addrs:
                fail(f"Pod {meta['name']}: {cmd[3]} is not a node Service or pod address "
                     f"({sorted(addrs)})")
            if cmd[3].startswith("https://") and "--ca-file" not in cmd:
                fail(f"Pod {meta['name']}: ctl cannot verify {cmd[3]} without --ca-file")
            if "--ca-file" in cmd:
                path = cmd[cmd.index("--ca-file") + 1]
                if path not in secret_files(c, spec):
                    fail(f"Pod {meta['name']}: --ca-file {path} is not a file of a mounted Secret")
            targets.append(cmd[3])
        print(f"Pod {meta['name']}: helm test runs ctl health against {len(targets)} addresses")


def deployment(docs):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configs, nodes = {}, {}
    for cm in by_kind.get("ConfigMap", []):
        text = cm.get("data", {}).get("switchboard.toml")
        if text is None:
            continue
        name = cm["metadata"]["name"]
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(f"ConfigMap {name}: switchboard.toml does not parse: {e}")
        for section, keys in config.items():
            unknown = set(keys) - KNOWN_KEYS.get(section, set())
            if section not in KNOWN_KEYS or unknown:
                fail(f"ConfigMap {name}: unknown configuration [{section}] {sorted(unknown)}")
        configs[name] = config
        if os.environ.get("TOML_OUT"):
            with open(os.path.join(os.environ["TOML_OUT"], f"{name}.toml"), "w") as f:
                f.write(text)
        print(f"ConfigMap {name}: switchboard.toml parses, known keys only")
    for sts in by_kind.get("StatefulSet", []):
        name, spec = sts["metadata"]["name"], sts["spec"]
        pod = spec["template"]["spec"]
        node = next((c for c in pod["containers"] if c["name"] == "switchboard"), None)
        if node is None:
            continue
        if spec.get("podManagementPolicy") != "Parallel":
            fail(f"StatefulSet {name}: podManagementPolicy must be Parallel")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"StatefulSet {name}: pods must run as non-root")
        ports = {p["name"]: p["containerPort"] for p in node["ports"]}
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        config = configs.get(volume["configMap"]["name"])
        if config is None:
            fail(f"StatefulSet {name}: its config volume names no rendered ConfigMap")
        tls = bool(config.get("tls", {}).get("cert_file"))
        probed = probes(name, node, ports, tls)
        files, secrets = key_files(name, config, node, pod)
        rendered_secret_keys(name, pod, by_kind)
        grpc_addr = config["grpc"]["addr"]
        if not grpc_addr.endswith(f":{ports['grpc']}") or not config["metrics"]["addr"].endswith(f":{ports['metrics']}"):
            fail(f"StatefulSet {name}: container ports differ from the configured addresses")
        drain = config.get("shutdown", {}).get("drain_seconds", 20)
        sleep = node.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        if sleep is None:
            fail(f"StatefulSet {name}: no preStop sleep before the drain")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= sleep + drain:
            fail(f"StatefulSet {name}: grace period {grace}s must exceed preStop {sleep}s + drain {drain}s")
        headless = [s for s in by_kind.get("Service", [])
                    if s["metadata"]["name"] == spec["serviceName"]]
        if not headless or headless[0]["spec"].get("clusterIP") != "None" \
                or not headless[0]["spec"].get("publishNotReadyAddresses"):
            fail(f"StatefulSet {name}: serviceName must be a headless Service publishing not-ready pods")
        api = [s["metadata"]["name"] for s in by_kind.get("Service", [])
               if s["spec"].get("selector") == spec["selector"]["matchLabels"]
               and s["metadata"]["name"] != spec["serviceName"]]
        nodes[name] = (spec.get("replicas", 1), ports["grpc"], tls, api + [spec["serviceName"]])
        print(f"StatefulSet {name}: Parallel, {probed}, non-root, grace {grace}s > {sleep}s + {drain}s, "
              f"{len(files)} key files from Secrets {', '.join(sorted(secrets)) or '(none)'}")
        if os.environ.get("TOML_OUT"):
            # <sts>.args: one argument a line; <sts>.env: NAME=value lines; <sts>.config: the
            # ConfigMap whose TOML `{config}` stands for.
            launch = launch_of(node, volume["configMap"]["name"], name)
            out = os.path.join(os.environ["TOML_OUT"], name)
            with open(out + ".args", "w") as f:
                f.writelines(a + "\n" for a in launch["args"])
            with open(out + ".env", "w") as f:
                f.writelines(f"{k}={v}\n" for k, v in launch["env"].items())
            with open(out + ".config", "w") as f:
                f.write(launch["config_map"])
    helm_tests(by_kind, nodes)
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if pdb["spec"].get("maxUnavailable") != 1:
            fail(f"PodDisruptionBudget {pdb['metadata']['name']}: maxUnavailable must be 1")
    for sm in by_kind.get("ServiceMonitor", []):
        want = sm["spec"]["selector"]["matchLabels"]
        hits = [s for s in by_kind.get("Service", [])
                if want.items() <= s["metadata"].get("labels", {}).items()]
        if len(hits) != 1:
            fail(f"ServiceMonitor {sm['metadata']['name']}: selects {len(hits)} Services, not one")
        names = {p.get("name") for p in hits[0]["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] not in names:
                fail(f"ServiceMonitor {sm['metadata']['name']}: Service has no port {ep['port']}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "promql":
        promql(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "rendered":
        rendered(sys.argv[2:])
    else:
        fail(__doc__)
