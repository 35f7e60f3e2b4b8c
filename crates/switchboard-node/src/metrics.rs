//! Metric names of the node and how they are fed (SPEC §10). Labels are bounded: tenant,
//! skill group, channel, and small enums — never a conversation, customer or agent id.
//!
//! Counters and histograms follow the core's events as commands are applied; gauges (queue
//! length, oldest wait, agents by status, occupancy) are sampled from each tenant's state on
//! a short interval, so a command never pays for a scan.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Histogram, Label, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use rustc_hash::FxHashMap;
use switchboard_core::engine::{Effect, Event, Note, Sender};
use switchboard_core::router::Placement;
use switchboard_core::{AgentStatus, Channel, GroupId, ReplyKind, State, Timestamp};

use crate::apply::Output;
use crate::state::TenantState;

/// Requests refused by a tenant's rate limit (`auth::limits`), by tenant.
pub const RATE_LIMITED: &str = "switchboard_rate_limited_total";
/// Calls refused because their tenant had `limits.tenant_in_flight` calls in flight on the
/// node (`auth::limits`), by tenant.
pub const TENANT_BUSY: &str = "switchboard_tenant_busy_total";
pub const COMMANDS: &str = "switchboard_commands_total";
pub const COMMANDS_REFUSED: &str = "switchboard_commands_refused_total";
/// Calls whose request id had a stored answer of an earlier call, so nothing was applied
/// again (a retry answered as before, or a reused id refused), by tenant.
pub const REPLAYS: &str = "switchboard_idempotent_replays_total";
pub const APPLY_SECONDS: &str = "switchboard_command_apply_seconds";
pub const CONVERSATIONS_OPENED: &str = "switchboard_conversations_opened_total";
pub const CONVERSATIONS_ENDED: &str = "switchboard_conversations_ended_total";
pub const CONVERSATIONS_ACTIVE: &str = "switchboard_conversations_active";
pub const QUEUE_WAITING: &str = "switchboard_queue_waiting";
pub const QUEUE_OLDEST_WAIT: &str = "switchboard_queue_oldest_wait_seconds";
pub const QUEUE_WAIT: &str = "switchboard_queue_wait_seconds";
pub const QUEUE_AGENTS_ONLINE: &str = "switchboard_queue_agents_online";
pub const ABANDONED: &str = "switchboard_abandoned_total";
pub const FIRST_RESPONSE: &str = "switchboard_first_response_seconds";
pub const ASSIGNMENTS: &str = "switchboard_assignments_total";
pub const REASSIGNMENTS: &str = "switchboard_reassignments_total";
pub const OFFERS: &str = "switchboard_offers_total";
pub const AUTOMATIC_REPLIES: &str = "switchboard_automatic_replies_total";
pub const AUTOMATIC_REPLIES_SUPPRESSED: &str = "switchboard_automatic_replies_suppressed_total";
pub const CHANNEL_BUDGET_EXHAUSTED: &str = "switchboard_channel_budget_exhausted_total";
pub const ASSIGNMENT_DECISION: &str = "switchboard_assignment_decision_seconds";
pub const AGENTS: &str = "switchboard_agents";
pub const AGENT_CAPACITY: &str = "switchboard_agent_capacity_slots";
pub const AGENT_USED: &str = "switchboard_agent_used_slots";
pub const EVENTS: &str = "switchboard_events_total";
pub const SNAPSHOT_BYTES: &str = "switchboard_snapshot_bytes";
/// The node's store writer (`switchboard_store::Stats`, sampled every [`STORE_INTERVAL`]):
/// transactions committed (each one sync), batches made durable in them (batches per commit
/// is the group-commit factor; commits per command what a command costs the store), and
/// commits that failed.
pub const STORE_COMMITS: &str = "switchboard_store_commits_total";
pub const STORE_BATCHES: &str = "switchboard_store_batches_total";
pub const STORE_FAILED_COMMITS: &str = "switchboard_store_failed_commits_total";
/// Pages the node's SQLite writer wrote to its WAL (not set on PostgreSQL): set against
/// `STORE_COMMITS`, the pages per commit.
pub const STORE_WAL_PAGES: &str = "switchboard_store_wal_pages_total";

// Cluster and runtime. A single node reports itself as a one-member cluster that owns
// every tenant, so dashboards and alerts read the same series in both modes.
pub const CLUSTER_MEMBERS: &str = "switchboard_cluster_members";
pub const SHARDS_OWNED: &str = "switchboard_shards_owned";
pub const SHARDS_UNOWNED: &str = "switchboard_shards_unowned";
pub const SHARD_HANDOFFS: &str = "switchboard_shard_handoffs_total";
pub const FORWARDED: &str = "switchboard_forwarded_total";
pub const STREAM_MESSAGES: &str = "switchboard_stream_messages_total";
pub const ETCD_REQUEST_SECONDS: &str = "switchboard_etcd_request_seconds";
pub const LEASE_RENEWAL_FAILURES: &str = "switchboard_lease_renewal_failures_total";
pub const FENCED_WRITES: &str = "switchboard_fenced_writes_total";
/// Live actors by `kind`: `tenant`, and the mesh's `router`, `conversation` and `agent`
/// (`crate::actors`).
pub const ACTORS: &str = "switchboard_actors";
/// Actors started again by their supervisor after stopping on their own (a failed write, a
/// panic), by `kind` and `tenant`; a steady rate is a restart loop (store down, a repeating
/// panic).
pub const ACTOR_RESTARTS: &str = "switchboard_actor_restarts_total";
/// Mesh actors' steps handed to the store, by `kind` (`router`, `conversation`, `agent`;
/// `crate::actors`): against the commands, the writing hops a command takes, by actor.
pub const ACTOR_WRITES: &str = "switchboard_actor_writes_total";
/// Of those, the steps that left the actor's row as it was, by `kind` (`conversation`: its
/// transcript rows say all the step changed; `crate::actors::conversation`).
pub const ACTOR_ROWS_KEPT: &str = "switchboard_actor_rows_kept_total";
/// Mesh envelopes between nodes by `outcome` (`crate::actors::grpc`): sent, unavailable,
/// failed, timed_out, busy, unowned, exhausted (sender side); received, not_owner,
/// not_running, exhausted (receiver side).
pub const MESH_ENVELOPES: &str = "switchboard_mesh_envelopes_total";
/// Batches of mesh envelopes their peer answered (on a `DeliverStream`, or a `DeliverBatch`
/// call; `crate::actors::grpc`): set against `MESH_ENVELOPES{outcome="sent"}`, the envelopes
/// per batch.
pub const MESH_BATCHES: &str = "switchboard_mesh_batches_total";
/// What reached a tenant's router actor, by `tenant` and `source`: `conversation` and `agent`
/// (envelopes, resends included), `call` (an operation or a public call): set against the
/// tenant's commands, the share of its work the router sees (issue 12).
pub const ROUTER_INPUTS: &str = "switchboard_router_inputs_total";
pub const MAILBOX_DEPTH: &str = "switchboard_mailbox_depth";
pub const STREAM_DROPS: &str = "switchboard_stream_drops_total";
pub const BUILD_INFO: &str = "switchboard_build_info";

// Webhooks (labels: tenant, outcome).
pub const WEBHOOK_DELIVERIES: &str = "switchboard_webhook_deliveries_total";
pub const WEBHOOK_DELIVERY_SECONDS: &str = "switchboard_webhook_delivery_seconds";

// The process series every Prometheus client library exports, added to each scrape by the
// `switchboard` binary's exporter (read from the OS at that moment).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub const PROCESS_THREADS: &str = "process_threads";

/// Bucket bounds (seconds) of every wait-like histogram; the service-level thresholds
/// (20 s, 30 s, 60 s) are bounds, so service level is read straight off the buckets.
pub const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Bucket bounds (seconds) of command apply time.
pub const APPLY_BUCKETS: &[f64] =
    &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1];
/// Bucket bounds (bytes) of snapshot sizes.
pub const SIZE_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Bucket bounds (seconds) of etcd requests.
pub const ETCD_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Bucket bounds (seconds) of webhook attempts.
pub const WEBHOOK_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every histogram with its buckets, for the exporter (histograms, never summaries).
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (QUEUE_WAIT, WAIT_BUCKETS),
    (FIRST_RESPONSE, WAIT_BUCKETS),
    (APPLY_SECONDS, APPLY_BUCKETS),
    (ASSIGNMENT_DECISION, APPLY_BUCKETS),
    (SNAPSHOT_BYTES, SIZE_BUCKETS),
    (ETCD_REQUEST_SECONDS, ETCD_BUCKETS),
    (WEBHOOK_DELIVERY_SECONDS, WEBHOOK_BUCKETS),
    (crate::grpc_metrics::HANDLING_SECONDS, crate::grpc_metrics::HANDLING_BUCKETS),
];

/// How often each tenant samples its gauges.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the store writer's counters are copied to the recorder (a few atomic loads).
pub const STORE_INTERVAL: Duration = Duration::from_secs(1);

pub fn describe() {
    crate::grpc_metrics::describe();
    describe_counter!(RATE_LIMITED, "Requests refused by their tenant's rate limit, by tenant.");
    describe_counter!(
        TENANT_BUSY,
        "Calls refused because their tenant had limits.tenant_in_flight calls in flight on the node, by tenant."
    );
    describe_counter!(COMMANDS, "Commands applied and logged, by tenant and kind.");
    describe_counter!(COMMANDS_REFUSED, "Commands refused, by tenant, kind and reason.");
    describe_counter!(
        REPLAYS,
        "Calls whose request_id had a stored answer of an earlier call, so nothing was \
         applied again (a retry answered as before, or a reused id refused), by tenant."
    );
    describe_histogram!(
        APPLY_SECONDS,
        metrics::Unit::Seconds,
        "Time to apply one command to a tenant's state."
    );
    describe_counter!(CONVERSATIONS_OPENED, "Conversations opened, by tenant, group and channel.");
    describe_counter!(CONVERSATIONS_ENDED, "Conversations ended, by tenant, group and cause.");
    describe_gauge!(CONVERSATIONS_ACTIVE, "Open conversations, by tenant and state.");
    describe_gauge!(QUEUE_WAITING, "Conversations waiting in a group's queue.");
    describe_gauge!(
        QUEUE_OLDEST_WAIT,
        metrics::Unit::Seconds,
        "Wait of the oldest conversation in a group's queue."
    );
    describe_gauge!(
        QUEUE_AGENTS_ONLINE,
        "Members of a group's queue who are online (receiving work), full or not."
    );
    describe_histogram!(
        QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time in a group's queue, by tenant, group and how it left: assigned, abandoned, \
         transferred (to another group), timed_out, ended."
    );
    describe_counter!(ABANDONED, "Conversations the customer left while queued.");
    describe_histogram!(
        FIRST_RESPONSE,
        metrics::Unit::Seconds,
        "Time to the first human answer, from opening or from assignment (label from)."
    );
    describe_counter!(
        ASSIGNMENTS,
        "Assignments, by tenant, group and how (auto, accepted, picked, transferred)."
    );
    describe_counter!(
        REASSIGNMENTS,
        "Conversations moved off their agent or group, by tenant, target (agent, group) and \
         reason (agent_transfer, supervisor, agent_offline)."
    );
    describe_counter!(OFFERS, "Offers by outcome: made, accepted, declined, timed_out.");
    describe_counter!(AUTOMATIC_REPLIES, "Automatic replies sent, by tenant and kind.");
    describe_counter!(
        AUTOMATIC_REPLIES_SUPPRESSED,
        "Automatic replies withheld to keep the channel budget's reserve for humans."
    );
    describe_counter!(
        CHANNEL_BUDGET_EXHAUSTED,
        "Service messages a channel's reply budget stopped, by tenant, channel and by \
         (automatic: a reply withheld for the humans' reserve; agent: an agent message refused)."
    );
    describe_histogram!(
        ASSIGNMENT_DECISION,
        metrics::Unit::Seconds,
        "Time to apply a command that offered or assigned conversations: the routing decision."
    );
    describe_gauge!(AGENTS, "Agents by status.");
    describe_gauge!(AGENT_CAPACITY, "Capacity of signed-in agents, in conversations.");
    describe_gauge!(AGENT_USED, "Conversations held (assigned + offered) by agents.");
    describe_counter!(EVENTS, "Integrator events emitted, by tenant and type.");
    describe_histogram!(SNAPSHOT_BYTES, metrics::Unit::Bytes, "Size of tenant snapshots.");
    describe_counter!(STORE_COMMITS, "Transactions the node's store writer committed.");
    describe_counter!(STORE_BATCHES, "Batches made durable by the node's store writer.");
    describe_counter!(STORE_FAILED_COMMITS, "Commits of the node's store writer that failed.");
    describe_counter!(STORE_WAL_PAGES, "Pages the node's SQLite writer wrote to its WAL.");
    describe_gauge!(CLUSTER_MEMBERS, "Live cluster members this node sees (1 on a single node).");
    describe_gauge!(SHARDS_OWNED, "Shards this node owns.");
    describe_gauge!(SHARDS_UNOWNED, "Shards this node sees with no owner.");
    describe_counter!(SHARD_HANDOFFS, "Shard ownership changes on this node, by kind.");
    describe_counter!(
        FORWARDED,
        "Calls forwarded to the owning node, by outcome (relayed: a command stream's message answered on a relay)."
    );
    describe_counter!(
        STREAM_MESSAGES,
        "Messages answered on command streams (PostMessages, DeskCommands), by method and gRPC code."
    );
    describe_histogram!(
        ETCD_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time of etcd requests, by operation."
    );
    describe_counter!(LEASE_RENEWAL_FAILURES, "Failed etcd lease renewals.");
    describe_counter!(
        FENCED_WRITES,
        "Writes the store refused because a newer owner holds the shard."
    );
    describe_gauge!(
        ACTORS,
        "Live actors on this node, by kind (tenant, router, conversation, agent)."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Actors started again from the store by their supervisor after stopping on their own \
         (a failed write, a panic), by kind (tenant, router, conversation, agent) and tenant."
    );
    describe_counter!(
        ACTOR_WRITES,
        "Mesh actors' steps handed to the store (each a batch of the store writer), by kind \
         (router, conversation, agent)."
    );
    describe_counter!(
        ACTOR_ROWS_KEPT,
        "Mesh actors' steps that left the actor's row as it was (what the step changed is in \
         its transcript rows), by kind (conversation)."
    );
    describe_counter!(
        MESH_BATCHES,
        "Batches of actor mesh envelopes between nodes that their peer answered; sent \
         envelopes over this is the envelopes per batch"
    );
    describe_counter!(
        MESH_ENVELOPES,
        "Actor mesh envelopes between nodes, by outcome: sent, unavailable (the receiver \
         does not own the key, or cannot be reached), failed, timed_out, busy (the peer's queue is full), unowned (no owner known) \
         or exhausted (the receiver's bound) on the sender; received, not_owner, not_running, \
         exhausted on the receiver. Every one not \
         delivered is resent by its link."
    );
    describe_counter!(
        ROUTER_INPUTS,
        "Messages that reached a router actor, by tenant and source: conversation and agent \
         envelopes (resends included), call (an operation or a public call)."
    );
    describe_gauge!(MAILBOX_DEPTH, "Messages waiting in actor mailboxes, by kind.");
    describe_counter!(STREAM_DROPS, "Live stream subscribers dropped for falling behind.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts and their fate, by tenant and outcome: delivered (2xx), \
         failed (retried later), dead_lettered (retry budget spent), lost (trimmed from the \
         event stream before delivery)."
    );
    describe_histogram!(
        WEBHOOK_DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "Time of one webhook attempt (connect, send, status), by tenant."
    );
    describe_gauge!(BUILD_INFO, "Always 1; labels carry the version.");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Zero until the cluster module or the node says otherwise, so every series exists.
    gauge!(CLUSTER_MEMBERS).set(1.0);
    gauge!(SHARDS_OWNED).set(0.0);
    gauge!(SHARDS_UNOWNED).set(0.0);
    for kind in ["acquired", "released", "lost"] {
        counter!(SHARD_HANDOFFS, "kind" => kind).absolute(0);
    }
    counter!(LEASE_RENEWAL_FAILURES).absolute(0);
    for method in ["PostMessages", "DeskCommands"] {
        counter!(STREAM_MESSAGES, "method" => method, "code" => "OK").absolute(0);
    }
    for outcome in ["forwarded", "relayed", "retried", "gave_up"] {
        counter!(FORWARDED, "outcome" => outcome).absolute(0);
    }
    gauge!(ACTORS, "kind" => "tenant").set(0.0);
    gauge!(MAILBOX_DEPTH, "kind" => "tenant").set(0.0);
    counter!(FENCED_WRITES).absolute(0);
    counter!(STREAM_DROPS).absolute(0);
}

fn group_label(state: &TenantState, g: GroupId) -> String {
    state.groups.name(g.0).to_owned()
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A tenant's command counter and apply-time histogram by command kind, registered on first
/// use: every command counts, and looking the series up by labels each time showed in
/// profiles. Kinds are the commands' names, a bounded set.
/// The same for the events counter by event type, whose label came from serializing the
/// whole event to JSON.
#[derive(Debug, Default)]
pub struct CommandHandles {
    commands: FxHashMap<&'static str, (Counter, Histogram)>,
    events: EventCounters,
}

/// The business series of one tenant (the events counter by event type, and the labelled
/// ones a step feeds: [`Series`]), registered on first use. Looking a series up by its labels
/// builds its key (the tenant's name and each label copied) and searches the recorder's
/// registry: about 1% of a node's CPU under load when a mesh's every step did it, and a
/// conversation's opening, assignment, first response and end some 50 allocations.
#[derive(Debug, Default)]
pub struct EventCounters {
    by_type: FxHashMap<std::mem::Discriminant<Event>, Counter>,
    counters: FxHashMap<Series, Counter>,
    histograms: FxHashMap<Series, Histogram>,
}

/// Counters and histograms of one applied command.
pub fn applied(
    state: &TenantState,
    handles: &mut CommandHandles,
    kind: &'static str,
    took: Duration,
    out: &Output,
) {
    let (commands, apply_seconds) = handles.commands.entry(kind).or_insert_with(|| {
        let commands = counter!(COMMANDS, "tenant" => state.id.clone(), "kind" => kind);
        (commands, histogram!(APPLY_SECONDS, "kind" => kind))
    });
    commands.increment(1);
    apply_seconds.record(took.as_secs_f64());
    if out.suppressed.is_empty()
        && out.events.is_empty()
        && out.replies.is_empty()
        && out.released_offline == 0
    {
        return;
    }
    if out.events.iter().any(decides) {
        histogram!(ASSIGNMENT_DECISION).record(took.as_secs_f64());
    }
    // Who moved a conversation: the agent (transfer) or a supervisor (batch reassignment).
    let reason = match kind {
        "transfer" => "agent_transfer",
        "reassign_batch" => "supervisor",
        _ => "other",
    };
    let step = Step {
        tenant: &state.id,
        group: &|g| group_label(state, g),
        moved_by: Some(reason),
        events: out.events.iter().collect(),
        replies: &out.replies,
        suppressed: &out.suppressed,
        released_offline: out.released_offline,
    };
    count(&step, &mut handles.events);
}

/// What one step did that the business counters count: a tenant actor's command
/// ([`applied`]), or what an actor of a mesh made durable ([`mesh_step`]).
struct Step<'a> {
    tenant: &'a str,
    /// A group's label (its id).
    group: &'a dyn Fn(GroupId) -> String,
    /// The `reason` label of the step's transfers; `None`: they are counted where they are
    /// decided ([`mesh_moved`]).
    moved_by: Option<&'static str>,
    events: Vec<&'a Event>,
    replies: &'a [ReplyKind],
    suppressed: &'a [(ReplyKind, Option<Channel>)],
    released_offline: u32,
}

/// The business counters of an actor tenant's step, from the effects its conversation or
/// router actor made durable (`Mesh::heard`): the same series as the tenant actor's
/// commands, from the same core effects. Transfers are counted by the router actor, which
/// knows who asked for them ([`mesh_moved`]; the conversation side reports the transfer);
/// a reply withheld for the channel budget counts against `channel` (the conversation
/// actor's open conversation's).
pub fn mesh_step(
    tenant: &str,
    group: &dyn Fn(GroupId) -> String,
    channel: Option<Channel>,
    effects: &[Effect],
    handles: &Mutex<EventCounters>,
) {
    let (mut replies, mut suppressed, mut released_offline) = (Vec::new(), Vec::new(), 0);
    let mut events = Vec::new();
    for effect in effects {
        match effect {
            Effect::Event(e) => events.push(e),
            Effect::Send { from: Sender::Auto(k), .. } => replies.push(*k),
            Effect::ReplySuppressed { kind, .. } => suppressed.push((*kind, channel)),
            Effect::Notify {
                note: Note::Released { reason: switchboard_core::router::Release::AgentOffline, .. },
                ..
            } => released_offline += 1,
            _ => {}
        }
    }
    if events.is_empty() && replies.is_empty() && suppressed.is_empty() && released_offline == 0 {
        return;
    }
    let step = Step {
        tenant,
        group,
        moved_by: None,
        events,
        replies: &replies,
        suppressed: &suppressed,
        released_offline,
    };
    count(&step, &mut handles.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Transfers an actor tenant's router actor made durable: (target, reason) each, the labels
/// the tenant actor gives its Transfer and ReassignBatch commands.
pub fn mesh_moved(tenant: &str, moved: &[(&'static str, &'static str)]) {
    for (target, reason) in moved {
        counter!(REASSIGNMENTS, "tenant" => tenant.to_owned(), "target" => *target, "reason" => *reason)
            .increment(1);
    }
}

/// The router actor's decision time, for the histogram the tenant actor feeds with a
/// command's apply time: one step (`took`) that offered or assigned.
pub fn mesh_decided(took: Duration, decisions: u64) {
    if decisions > 0 {
        histogram!(ASSIGNMENT_DECISION).record(took.as_secs_f64());
    }
}

/// An event that decided where a conversation goes (what the decision histogram times).
fn decides(e: &Event) -> bool {
    matches!(e, Event::Offered { .. } | Event::Assigned { .. })
}

/// Counts one step; `handles` keeps the series it feeds (the tenant actor's, or a mesh's).
fn count(step: &Step<'_>, handles: &mut EventCounters) {
    for &(k, channel) in step.suppressed {
        handles.count(step, Series::Suppressed(k), 1);
        if let Some(channel) = channel {
            handles.count(step, Series::BudgetExhausted(channel), 1);
        }
    }
    for &k in step.replies {
        handles.count(step, Series::Replied(k), 1);
    }
    if step.released_offline > 0 {
        // Offers withdrawn and assignments requeued because the agent signed out.
        let moved = Series::Reassigned("group", "agent_offline");
        handles.count(step, moved, u64::from(step.released_offline));
    }
    for &e in &step.events {
        let tenant = step.tenant;
        let new = || counter!(EVENTS, "tenant" => tenant.to_owned(), "type" => crate::convert::snake_tag(e));
        handles.by_type.entry(std::mem::discriminant(e)).or_insert_with(new).increment(1);
        match *e {
            Event::Opened { group, channel, .. } => {
                handles.count(step, Series::Opened(group, channel), 1);
            }
            Event::Assigned { group, via, waited_ms, .. } => {
                if via == switchboard_core::router::Via::Accepted {
                    handles.count(step, Series::Offers("accepted"), 1);
                }
                handles.count(step, Series::Assigned(group, via), 1);
                handles.record(step, Series::Waited(group, "assigned"), waited_ms);
            }
            Event::Ended { group, cause, from, waited_ms, .. } => {
                handles.count(step, Series::Ended(group, cause), 1);
                if from == State::Queued {
                    // The customer's channel closing a waiting conversation is an abandonment;
                    // a timer ending it is a time-out; anything else ended it by hand.
                    use switchboard_core::Cause;
                    let outcome = match cause {
                        Cause::ChannelClosed => "abandoned",
                        Cause::IdleTimeout
                        | Cause::CustomerNoResponse
                        | Cause::ReplyWindowClosed => "timed_out",
                        Cause::QueueFull | Cause::Closed => "refused",
                        _ => "ended",
                    };
                    if cause == Cause::ChannelClosed {
                        handles.count(step, Series::Abandoned(group), 1);
                    }
                    if let Some(ms) = waited_ms {
                        handles.record(step, Series::Waited(group, outcome), ms);
                    }
                }
            }
            Event::FirstResponse { group, since_opened_ms, since_assigned_ms, .. } => {
                handles.record(step, Series::FirstResponse(group, "opened"), since_opened_ms);
                handles.record(step, Series::FirstResponse(group, "assigned"), since_assigned_ms);
            }
            Event::Transferred { to, left_queue, .. } => {
                if let Some((group, ms)) = left_queue {
                    handles.record(step, Series::Waited(group, "transferred"), ms);
                }
                let target = match to {
                    switchboard_core::engine::Target::Agent(_) => "agent",
                    switchboard_core::engine::Target::Group { .. } => "group",
                };
                if let Some(reason) = step.moved_by {
                    handles.count(step, Series::Reassigned(target, reason), 1);
                }
            }
            Event::Offered { .. } => handles.count(step, Series::Offers("made"), 1),
            Event::OfferMissed { reason, .. } => {
                handles.count(step, Series::OfferMissed(reason), 1);
            }
            _ => {}
        }
    }
}

impl EventCounters {
    /// Adds `n` to a counter series of `step`'s tenant, registered on first use.
    fn count(&mut self, step: &Step<'_>, series: Series, n: u64) {
        let new = || counter!(series.name(), series.labels(step.tenant, step.group));
        self.counters.entry(series).or_insert_with(new).increment(n);
    }

    /// Records `ms` in a histogram series of `step`'s tenant, registered on first use.
    fn record(&mut self, step: &Step<'_>, series: Series, ms: u64) {
        let new = || histogram!(series.name(), series.labels(step.tenant, step.group));
        self.histograms.entry(series).or_insert_with(new).record(seconds(ms));
    }
}

/// A labelled series the business counters feed, by its labels beside the tenant's: the key
/// a tenant's handle is kept under ([`EventCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Series {
    Opened(GroupId, Channel),
    Assigned(GroupId, switchboard_core::router::Via),
    Ended(GroupId, switchboard_core::Cause),
    Abandoned(GroupId),
    /// The offers counter by outcome.
    Offers(&'static str),
    OfferMissed(switchboard_core::router::Release),
    /// The reassignments counter by (target, reason).
    Reassigned(&'static str, &'static str),
    Replied(ReplyKind),
    Suppressed(ReplyKind),
    BudgetExhausted(Channel),
    /// The queue wait histogram by outcome.
    Waited(GroupId, &'static str),
    /// The first response histogram by where it is measured from.
    FirstResponse(GroupId, &'static str),
}

impl Series {
    fn name(self) -> &'static str {
        match self {
            Series::Opened(..) => CONVERSATIONS_OPENED,
            Series::Assigned(..) => ASSIGNMENTS,
            Series::Ended(..) => CONVERSATIONS_ENDED,
            Series::Abandoned(..) => ABANDONED,
            Series::Offers(..) | Series::OfferMissed(..) => OFFERS,
            Series::Reassigned(..) => REASSIGNMENTS,
            Series::Replied(..) => AUTOMATIC_REPLIES,
            Series::Suppressed(..) => AUTOMATIC_REPLIES_SUPPRESSED,
            Series::BudgetExhausted(..) => CHANNEL_BUDGET_EXHAUSTED,
            Series::Waited(..) => QUEUE_WAIT,
            Series::FirstResponse(..) => FIRST_RESPONSE,
        }
    }

    /// Its labels, the tenant's first.
    fn labels(self, tenant: &str, group: &dyn Fn(GroupId) -> String) -> Vec<Label> {
        let mut labels = vec![Label::new("tenant", tenant.to_owned())];
        let mut add = |key: &'static str, value: String| labels.push(Label::new(key, value));
        match self {
            Series::Opened(g, channel) => {
                add("group", group(g));
                add("channel", channel.to_string());
            }
            Series::Assigned(g, via) => {
                add("group", group(g));
                add("via", crate::convert::snake(&via));
            }
            Series::Ended(g, cause) => {
                add("group", group(g));
                add("cause", crate::convert::snake(&cause));
            }
            Series::Abandoned(g) => add("group", group(g)),
            Series::Offers(outcome) => add("outcome", outcome.to_owned()),
            Series::OfferMissed(reason) => add("outcome", crate::convert::snake(&reason)),
            Series::Reassigned(target, reason) => {
                add("target", target.to_owned());
                add("reason", reason.to_owned());
            }
            Series::Replied(k) | Series::Suppressed(k) => add("kind", k.as_str().to_owned()),
            Series::BudgetExhausted(channel) => {
                add("channel", channel.as_str().to_owned());
                add("by", "automatic".to_owned());
            }
            Series::Waited(g, outcome) => {
                add("group", group(g));
                add("outcome", outcome.to_owned());
            }
            Series::FirstResponse(g, from) => {
                add("group", group(g));
                add("from", from.to_owned());
            }
        }
        labels
    }
}

/// Samples the gauges of one tenant served by its tenant actor. An actor tenant's are its
/// router actor's ([`router_gauges`]): its tenant actor holds no queue.
pub fn gauges(state: &TenantState, now: Timestamp) {
    if state.actor_routing {
        return;
    }
    let groups = state.groups.names_after("").map(|(name, number)| (GroupId(number), name.clone()));
    let groups = groups.filter(|(g, _)| state.engine.group_settings(*g).is_some());
    let mut by_state = [0u64; 4];
    for c in state.engine.conversations() {
        match c.state {
            State::Bot => by_state[0] += 1,
            State::Queued => by_state[1] += 1,
            State::Offered => by_state[2] += 1,
            State::Assigned => by_state[3] += 1,
            State::Ended => {}
        }
    }
    routing_gauges(&state.id, groups, state.engine.router(), now, Some(by_state));
}

/// The same gauges of an actor tenant, from its router actor's side: queues and agents as
/// the router holds them; conversations by the router's placements, and those still with
/// their bot by the links it keeps for them (`RouterSide::with_bot`).
pub fn router_gauges(
    tenant: &str,
    groups: impl Iterator<Item = (GroupId, String)>,
    side: &switchboard_core::mesh::RouterSide,
    now: Timestamp,
) {
    let router = side.router();
    let mut by_state = [side.with_bot() as u64, 0, 0, 0];
    for (_, placement) in router.placements() {
        match placement {
            Placement::Queued { .. } => by_state[1] += 1,
            Placement::Offered { .. } => by_state[2] += 1,
            Placement::Assigned { .. } => by_state[3] += 1,
        }
    }
    routing_gauges(tenant, groups, router, now, Some(by_state));
}

/// Queues, agents and (when given) conversations by state.
fn routing_gauges(
    tenant: &str,
    groups: impl Iterator<Item = (GroupId, String)>,
    router: &switchboard_core::router::Router,
    now: Timestamp,
    by_state: Option<[u64; 4]>,
) {
    let tenant = tenant.to_owned();
    for (group, name) in groups {
        gauge!(QUEUE_WAITING, "tenant" => tenant.clone(), "group" => name.clone())
            .set(router.queue_len(group) as f64);
        // The oldest by entry time, which is not always the head (priorities come first).
        let oldest = router.queue(group, 0).map(|(k, _)| k.entered_at()).min();
        let wait = oldest.map_or(0.0, |t| now.since(t).as_secs_f64());
        gauge!(QUEUE_OLDEST_WAIT, "tenant" => tenant.clone(), "group" => name.clone()).set(wait);
        let online = router
            .group_members(group)
            .filter(|a| router.agent(*a).is_some_and(|a| a.status == AgentStatus::Online))
            .count();
        gauge!(QUEUE_AGENTS_ONLINE, "tenant" => tenant.clone(), "group" => name.clone())
            .set(online as f64);
    }
    let mut by_status = [0u32; 5];
    let (mut capacity, mut used) = (0u64, 0u64);
    for (_, a) in router.agents() {
        by_status[AgentStatus::ALL.iter().position(|s| *s == a.status).unwrap_or(4)] += 1;
        if a.status != AgentStatus::Offline {
            capacity += u64::from(a.capacity);
        }
        used += u64::from(a.load());
    }
    for (status, n) in AgentStatus::ALL.iter().zip(by_status) {
        gauge!(AGENTS, "tenant" => tenant.clone(), "status" => status.as_str()).set(f64::from(n));
    }
    gauge!(AGENT_CAPACITY, "tenant" => tenant.clone()).set(capacity as f64);
    gauge!(AGENT_USED, "tenant" => tenant.clone()).set(used as f64);
    if let Some(by_state) = by_state {
        for (s, n) in ["bot", "queued", "offered", "assigned"].iter().zip(by_state) {
            gauge!(CONVERSATIONS_ACTIVE, "tenant" => tenant.clone(), "state" => *s).set(n as f64);
        }
    }
}

pub fn refused(tenant: &str, kind: &'static str, error: &crate::error::Error) {
    counter!(COMMANDS_REFUSED, "tenant" => tenant.to_owned(), "kind" => kind, "reason" => error.reason())
        .increment(1);
    if let Some(switchboard_core::Error::BudgetExhausted { channel, .. }) = error.core() {
        counter!(CHANNEL_BUDGET_EXHAUSTED, "tenant" => tenant.to_owned(), "channel" => channel.as_str(), "by" => "agent")
            .increment(1);
    }
}

/// A call whose request id had a stored answer: nothing applied again ([`REPLAYS`]).
pub fn replayed(tenant: &str) {
    counter!(REPLAYS, "tenant" => tenant.to_owned()).increment(1);
}

pub fn snapshot(_tenant: &str, bytes: usize) {
    histogram!(SNAPSHOT_BYTES).record(bytes as f64);
}

/// Copies the store writer's counters to the recorder every [`STORE_INTERVAL`], for as long
/// as the store lives (the task holds it weakly).
pub fn sample_store(store: &std::sync::Arc<dyn switchboard_store::Store>) {
    let store = std::sync::Arc::downgrade(store);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(STORE_INTERVAL);
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else { return };
            let stats = store.stats();
            counter!(STORE_COMMITS).absolute(stats.commits);
            counter!(STORE_BATCHES).absolute(stats.batches);
            counter!(STORE_FAILED_COMMITS).absolute(stats.failed_commits);
            counter!(STORE_WAL_PAGES).absolute(stats.wal_frames);
        }
    });
}
