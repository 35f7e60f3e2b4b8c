//! The router of one tenant (SPEC §3): a queue per skill group, the agents' availability, and
//! the matching between them.
//!
//! Every public mutation takes `now`, pushes [`Effect`]s into `out`, and ends by *settling*:
//! every agent and group the mutation touched is dispatched until no agent that could take a
//! waiting conversation stays idle (work conservation, the router's first rule). Deadlines
//! (offer timeouts, affinity timeouts, offline grace) are state; [`Router::next_deadline`] says
//! when to call [`Router::advance`].

mod affinity;
pub mod agent;
mod aging;
mod available;
mod dispatch;
mod ewt;
pub mod explain;
mod hours;
mod invariants;
mod overflow;
mod status;
mod steps;
mod wrap_up;

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use self::agent::{Agent, AgentStatus, Wrap};
use self::available::Available;
pub use self::ewt::{MAX_ESTIMATE, RATE_WINDOW};
use crate::config::{GroupPolicy, NotRespondingPolicy, OfferMode};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::{Priority, QueueKey, RankedQueue};
use crate::time::Timestamp;

/// Where to route a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub group: GroupId,
    pub priority: Priority,
    pub entered_at: Timestamp,
    /// The customer's dedicated agent: waited for unless offline or the affinity timeout passes.
    pub dedicated: Option<AgentId>,
    /// The last agent who served the customer: a weaker preference, only while it is online.
    pub last_agent: Option<AgentId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    Dedicated,
    LastAgent,
}

/// A conversation waiting for one agent in particular.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub agent: AgentId,
    pub until: Timestamp,
    pub kind: PinKind,
}

/// What the router tells a conversation about where it stands. On one node it is read fresh
/// before each step of the conversation; across actors it may be one message stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Exact 1-based queue position while it waits.
    pub position: Option<usize>,
    /// SPEC §4.5's offline condition, with the agent whose reply settings come first.
    pub offline: Option<Option<AgentId>>,
    /// Its estimated wait (`ewt.rs`) when told with a time ([`Router::standing_at`]).
    pub wait: Option<std::time::Duration>,
}

impl Standing {
    /// Whether a reply would read the same told either: the same position and offline
    /// condition, and an estimated wait shown as the same number of minutes (it moves with
    /// time alone, so telling every change would be a message per customer message).
    pub fn reads_as(&self, other: &Standing) -> bool {
        let minutes = |s: &Standing| s.wait.map(crate::replies::wait_minutes);
        (self.position, self.offline, minutes(self))
            == (other.position, other.offline, minutes(other))
    }
}

/// The one place a routed conversation is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Waiting in its group's queue, or in an agent's pinned queue when `pin` is set.
    Queued {
        group: GroupId,
        key: QueueKey,
        pin: Option<Pin>,
        declined: Vec<AgentId>,
    },
    /// Reserved for `agent` until it accepts or `expires`.
    Offered {
        agent: AgentId,
        group: GroupId,
        key: QueueKey,
        expires: Timestamp,
        declined: Vec<AgentId>,
    },
    Assigned {
        agent: AgentId,
        group: GroupId,
        key: QueueKey,
    },
}

impl Placement {
    pub fn group(&self) -> GroupId {
        match self {
            Placement::Queued { group, .. }
            | Placement::Offered { group, .. }
            | Placement::Assigned { group, .. } => *group,
        }
    }

    pub fn key(&self) -> QueueKey {
        match self {
            Placement::Queued { key, .. }
            | Placement::Offered { key, .. }
            | Placement::Assigned { key, .. } => *key,
        }
    }

    /// The agent holding the conversation (offered or assigned).
    pub fn agent(&self) -> Option<AgentId> {
        match self {
            Placement::Queued { .. } => None,
            Placement::Offered { agent, .. } | Placement::Assigned { agent, .. } => Some(*agent),
        }
    }

    fn declined(&self) -> &[AgentId] {
        match self {
            Placement::Queued { declined, .. } | Placement::Offered { declined, .. } => declined,
            Placement::Assigned { .. } => &[],
        }
    }
}

/// How a conversation became assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Pushed by the router in auto-accept mode.
    Auto,
    /// The agent accepted an offer.
    Accepted,
    /// The agent picked it from the unaccepted list.
    Picked,
    /// Transferred directly to the agent.
    Transferred,
}

/// Why a conversation left an agent (offer withdrawn or assignment released).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    Declined,
    TimedOut,
    AgentOffline,
    Transferred,
    Ended,
}

/// Who changed an agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCause {
    Agent,
    Supervisor,
    /// The not-responding policy, after missed offers.
    NotResponding,
}

/// What the router did; the engine turns these into conversation transitions and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Entered (or went back to) a queue: the group's, or `pinned_to`'s own.
    Queued {
        conversation: ConversationId,
        group: GroupId,
        pinned_to: Option<AgentId>,
    },
    Offered {
        conversation: ConversationId,
        agent: AgentId,
        expires: Timestamp,
    },
    Assigned {
        conversation: ConversationId,
        agent: AgentId,
        via: Via,
    },
    /// An offer ended without acceptance, or an assignment was released.
    Released {
        conversation: ConversationId,
        agent: AgentId,
        reason: Release,
        was_assigned: bool,
    },
    StatusChanged {
        agent: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        cause: StatusCause,
    },
    /// The agent's conversation ended and its group's wrap-up holds the slot until `until`.
    WrappingUp {
        agent: AgentId,
        conversation: ConversationId,
        until: Timestamp,
    },
    /// The slot a wrap-up held is free again: its time passed, or (`early`) the agent ended
    /// it or its capacity was lowered.
    WrapUpEnded {
        agent: AgentId,
        conversation: ConversationId,
        early: bool,
    },
    /// A transfer moves the conversation into `group` (its next `Queued`, offer or assignment
    /// follows; taken at once, this is what says its group changed).
    Entered {
        conversation: ConversationId,
        group: GroupId,
    },
    /// `from`'s overflow rule moves the conversation on to `to` (its next `Queued`, offer or
    /// assignment follows).
    Overflowed {
        conversation: ConversationId,
        from: GroupId,
        to: GroupId,
    },
    /// `group`'s overflow rule refused the conversation: it is no longer placed.
    Refused {
        conversation: ConversationId,
        group: GroupId,
    },
    /// It waits in `group`, which is closed (`hours.rs`): it arrived there, or the group
    /// closed while it waited. Said once per arrival or closing.
    OutsideHours {
        conversation: ConversationId,
        group: GroupId,
    },
    /// `group` is closed and ends what reaches it: the router let go of the conversation.
    Closed {
        conversation: ConversationId,
        group: GroupId,
    },
}

impl Effect {
    /// The conversation the effect is about; `None` for an agent's status.
    pub fn conversation(&self) -> Option<ConversationId> {
        match self {
            Effect::Queued { conversation, .. }
            | Effect::Offered { conversation, .. }
            | Effect::Assigned { conversation, .. }
            | Effect::Released { conversation, .. }
            | Effect::WrappingUp { conversation, .. }
            | Effect::WrapUpEnded { conversation, .. }
            | Effect::Entered { conversation, .. }
            | Effect::Overflowed { conversation, .. }
            | Effect::Refused { conversation, .. }
            | Effect::OutsideHours { conversation, .. }
            | Effect::Closed { conversation, .. } => Some(*conversation),
            Effect::StatusChanged { .. } => None,
        }
    }
}

/// New variants go last: snapshots name variants by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Timer {
    Offer(ConversationId),
    Pin(ConversationId),
    Grace(AgentId),
    WrapUp(AgentId, ConversationId),
    Step(ConversationId),
    MaxWait(ConversationId),
    Hours(GroupId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    policy: GroupPolicy,
    queue: RankedQueue<ConversationId>,
    members: BTreeSet<AgentId>,
    /// Members that can take pushed work now.
    available: Available,
    /// Members not offline.
    signed_in: usize,
    /// Placements that name this group.
    refs: usize,
    round_robin_last: Option<AgentId>,
    /// Conversations of other groups that reached a step naming this one (`steps.rs`),
    /// keyed as this group's own.
    #[serde(default)]
    overflow: RankedQueue<ConversationId>,
    /// Recent rate of its conversations leaving the queue to an agent (`ewt.rs`); last, so
    /// older snapshots load without it.
    #[serde(default)]
    service: ewt::ServiceRate,
}

/// The router state of one tenant. Serializable so a shell can snapshot it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Router {
    groups: FxHashMap<GroupId, Group>,
    agents: FxHashMap<AgentId, Agent>,
    placements: FxHashMap<ConversationId, Placement>,
    timers: BTreeSet<(Timestamp, Timer)>,
    seq: u64,
    signed_in: usize,
    #[serde(with = "crate::config::duration_ms")]
    offline_grace: std::time::Duration,
    not_responding: NotRespondingPolicy,
    /// Touched during one operation, empty at rest.
    #[serde(skip)]
    dirty_agents: BTreeSet<AgentId>,
    #[serde(skip)]
    dirty_groups: BTreeSet<GroupId>,
    /// Steps reached per waiting conversation (`steps.rs`).
    #[serde(default)]
    widened: FxHashMap<ConversationId, steps::Widened>,
    #[serde(skip)]
    dirty_steps: BTreeSet<ConversationId>,
    /// Max-wait deadline per conversation waiting in a group that has one (`overflow.rs`).
    #[serde(default)]
    limits: FxHashMap<ConversationId, Timestamp>,
    #[serde(skip)]
    dirty_limits: BTreeSet<ConversationId>,
    /// Why each offered or assigned conversation went to its agent (`explain.rs`); last, so
    /// older snapshots load without it.
    #[serde(default)]
    decisions: FxHashMap<ConversationId, explain::Decision>,
    /// Business hours: the tenant's calendar, the zone's offsets, each group's open state
    /// (`hours.rs`). Last, so older snapshots load without it.
    #[serde(default)]
    calendar: hours::Calendar,
}

impl Router {
    pub fn new(offline_grace: std::time::Duration, not_responding: NotRespondingPolicy) -> Self {
        Router { offline_grace, not_responding, ..Default::default() }
    }

    pub fn set_policies(
        &mut self,
        offline_grace: std::time::Duration,
        not_responding: NotRespondingPolicy,
    ) {
        self.offline_grace = offline_grace;
        self.not_responding = not_responding;
    }

    // ----- configuration -------------------------------------------------------------------

    /// Creates or updates a skill group's routing policy.
    pub fn upsert_group(
        &mut self,
        now: Timestamp,
        id: GroupId,
        policy: GroupPolicy,
        out: &mut Vec<Effect>,
    ) {
        match self.groups.get_mut(&id) {
            Some(g) => {
                let rekey = g.policy.priority_aging != policy.priority_aging;
                let restep = g.policy.steps != policy.steps;
                let relimit = g.policy.overflow != policy.overflow;
                let rehours = g.policy.hours != policy.hours;
                let rewhen = g.policy.when_closed != policy.when_closed;
                g.policy = policy;
                if rekey {
                    // The queues' keys follow the aging step (`aging.rs`).
                    let mut queue = RankedQueue::new();
                    for (_, c) in g.queue.iter() {
                        queue.insert(g.queue_key(self.placements[&c].key()), c);
                    }
                    g.queue = queue;
                    let mut overflow = RankedQueue::new();
                    for (_, c) in g.overflow.iter() {
                        overflow.insert(g.queue_key(self.placements[&c].key()), c);
                    }
                    g.overflow = overflow;
                }
                if restep {
                    self.rewiden(id);
                }
                if relimit {
                    self.relimit(id);
                }
                if rehours || rewhen {
                    // A new closed policy applies to those already waiting: closed anew.
                    self.recalendar(now, id, rewhen, out);
                }
            }
            None => {
                let mut g = Group {
                    policy,
                    queue: RankedQueue::new(),
                    members: BTreeSet::new(),
                    available: Available::default(),
                    signed_in: 0,
                    refs: 0,
                    round_robin_last: None,
                    overflow: RankedQueue::new(),
                    service: ewt::ServiceRate::starting(now),
                };
                // Agents may name a group before it exists; adopt them.
                for (aid, a) in &self.agents {
                    if a.groups.contains(&id) {
                        g.members.insert(*aid);
                        if a.status != AgentStatus::Offline {
                            g.signed_in += 1;
                        }
                        if let Some(rank) = a.listed {
                            g.available.insert(*aid, rank, a.level(id));
                        }
                    }
                }
                self.groups.insert(id, g);
                self.recalendar(now, id, false, out);
            }
        }
        self.dirty_groups.insert(id);
        self.settle(now, out);
    }

    /// Removes an empty skill group.
    pub fn remove_group(&mut self, id: GroupId) -> Result<()> {
        let g = self.groups.get(&id).ok_or(Error::UnknownGroup(id))?;
        if !g.members.is_empty() || g.refs > 0 || !g.overflow.is_empty() {
            return Err(Error::GroupInUse(id));
        }
        if let Some(other) = self
            .groups
            .iter()
            .filter(|(_, o)| {
                o.policy.steps.iter().any(|s| s.group == id)
                    || o.policy.overflow.and_then(|o| o.group) == Some(id)
            })
            .map(|(gid, _)| *gid)
            .min()
        {
            return Err(Error::InvalidArgument(format!(
                "group {id} is a step or the overflow group of group {other}'s routing policy; remove it from there first"
            )));
        }
        self.calendar_reset(id);
        self.groups.remove(&id);
        Ok(())
    }

    /// Creates (offline) or updates an agent's capacity, groups and proficiency levels in
    /// them (groups it has no level in count as [`crate::config::MIN_PROFICIENCY`]).
    pub fn upsert_agent(
        &mut self,
        now: Timestamp,
        id: AgentId,
        capacity: u32,
        groups: Vec<GroupId>,
        proficiency: std::collections::BTreeMap<GroupId, u8>,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        if capacity == 0 {
            return Err(Error::InvalidArgument(format!("agent {id}: capacity must be at least 1")));
        }
        if let Some(a) = self.agents.get(&id)
            && (capacity as usize) < a.assigned.len()
        {
            return Err(Error::CapacityBelowLoad { agent: id, assigned: a.assigned.len() });
        }
        let mut groups = groups;
        groups.sort();
        groups.dedup();
        // Pending offers beyond the new capacity go back to their place, newest first.
        if let Some(a) = self.agents.get(&id) {
            let excess = (a.load() as usize).saturating_sub(capacity as usize);
            let mut offers: Vec<(Timestamp, ConversationId)> = a
                .offered
                .iter()
                .map(|c| match &self.placements[c] {
                    Placement::Offered { expires, .. } => (*expires, *c),
                    _ => unreachable!("offered set holds offers"),
                })
                .collect();
            offers.sort_unstable_by(|x, y| y.cmp(x));
            for (_, c) in offers.into_iter().take(excess) {
                self.withdraw(c, Release::Transferred, out);
            }
            // Then wrap-ups, which hold slots no conversation needs.
            self.fit_wrap_ups(id, capacity, out);
        }
        // Re-listed under its new groups and capacity by `refresh` below.
        self.unlist(id);
        let old_groups = match self.agents.get_mut(&id) {
            Some(a) => {
                a.capacity = capacity;
                a.proficiency = proficiency;
                std::mem::replace(&mut a.groups, groups.clone())
            }
            None => {
                let mut a = Agent::new(capacity, groups.clone());
                a.proficiency = proficiency;
                self.agents.insert(id, a);
                Vec::new()
            }
        };
        let signed_in = self.agents[&id].status != AgentStatus::Offline;
        for g in old_groups.iter().filter(|g| !groups.contains(g)) {
            if let Some(g) = self.groups.get_mut(g) {
                g.members.remove(&id);
                g.signed_in -= usize::from(signed_in);
            }
        }
        for g in groups.iter().filter(|g| !old_groups.contains(g)) {
            if let Some(g) = self.groups.get_mut(g) {
                g.members.insert(id);
                g.signed_in += usize::from(signed_in);
            }
        }
        self.refresh(id);
        self.dirty_agents.insert(id);
        self.settle(now, out);
        Ok(())
    }

    /// Signs the agent out (its conversations requeued at once) and forgets it.
    pub fn remove_agent(
        &mut self,
        now: Timestamp,
        id: AgentId,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        if !self.agents.contains_key(&id) {
            return Err(Error::UnknownAgent(id));
        }
        self.change_status(now, id, AgentStatus::Offline, StatusCause::Supervisor, out);
        self.requeue_at_front(now, id, out);
        self.unlist(id);
        let groups = self.agents[&id].groups.clone();
        for g in groups {
            if let Some(g) = self.groups.get_mut(&g) {
                g.members.remove(&id);
            }
        }
        self.forget_wrap_ups(id);
        self.agents.remove(&id);
        self.timers.retain(|(_, t)| *t != Timer::Grace(id));
        self.settle(now, out);
        Ok(())
    }

    // ----- conversations -------------------------------------------------------------------

    /// Routes a conversation that is not yet placed: to its dedicated or last agent when the
    /// affinity rules allow, otherwise into its group's queue.
    pub fn route(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        req: RouteRequest,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        if self.placements.contains_key(&conv) {
            return Err(Error::InvalidArgument(format!("conversation {conv} is already routed")));
        }
        let policy =
            self.groups.get(&req.group).ok_or(Error::UnknownGroup(req.group))?.policy.clone();
        let key = QueueKey::new(false, req.priority, req.entered_at, self.next_seq());
        // Affinity: the dedicated agent while signed in, else the last agent while online.
        let affinity = req
            .dedicated
            .filter(|a| self.agents.get(a).is_some_and(|a| a.status != AgentStatus::Offline))
            .map(|a| (a, PinKind::Dedicated, policy.dedicated_timeout))
            .or_else(|| {
                let timeout = policy.last_agent_timeout?;
                req.last_agent
                    .filter(|a| self.agents.get(a).is_some_and(|a| a.status == AgentStatus::Online))
                    .map(|a| (a, PinKind::LastAgent, timeout))
            });
        match affinity {
            Some((agent, kind, _)) if self.agents[&agent].can_push() && self.serves(req.group) => {
                let decision = self.affinity_decision(now, req.group, agent, kind);
                self.push(now, conv, agent, (req.group, key), Vec::new(), decision, out);
            }
            Some((agent, kind, timeout)) if !timeout.is_zero() => {
                let pin = Pin { agent, until: now + timeout, kind };
                self.place_queued(conv, req.group, key, Some(pin), Vec::new(), out);
            }
            _ => self.enter(now, conv, req.group, key, Vec::new(), out),
        }
        self.settle(now, out);
        Ok(())
    }

    /// The agent accepts an offer.
    pub fn accept(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conv: ConversationId,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        self.offered_to(conv, agent)?;
        let decision = self.decisions.get(&conv).copied();
        let (group, key) = self.take(conv);
        self.agents.get_mut(&agent).expect("offered agent exists").misses = 0;
        self.assign(now, conv, agent, (group, key), Via::Accepted, out);
        if let Some(d) = decision {
            self.decisions.insert(conv, d);
        }
        self.settle(now, out);
        Ok(())
    }

    /// The agent declines an offer: the conversation goes back to its place and the
    /// not-responding policy applies.
    pub fn decline(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conv: ConversationId,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        self.offered_to(conv, agent)?;
        self.miss(now, conv, Release::Declined, out);
        self.settle(now, out);
        Ok(())
    }

    /// The agent picks a waiting conversation from the unaccepted list of its groups (or one
    /// waiting for it in particular).
    pub fn pick(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conv: ConversationId,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let a = self.agents.get(&agent).ok_or(Error::UnknownAgent(agent))?;
        let pickable = match self.placements.get(&conv) {
            Some(Placement::Queued { group, pin, .. }) => match pin {
                Some(p) => p.agent == agent || a.groups.contains(group),
                None => {
                    a.groups.contains(group) || a.groups.iter().any(|g| self.widened_to(conv, *g))
                }
            },
            Some(_) => false,
            None => return Err(Error::UnknownConversation(conv)),
        };
        // A closed group's conversations wait for it to open (`hours.rs`).
        if !pickable || self.closed(self.placements[&conv].group()) {
            return Err(Error::NotPickable { conversation: conv, agent });
        }
        if a.status == AgentStatus::Offline {
            return Err(Error::AgentOffline(agent));
        }
        if !a.has_room() {
            return Err(Error::AgentFull { agent, capacity: a.capacity });
        }
        let (group, key) = self.take(conv);
        self.assign(now, conv, agent, (group, key), Via::Picked, out);
        self.settle(now, out);
        Ok(())
    }

    /// Moves a queued, offered or assigned conversation straight to `agent`, which must be
    /// signed in and under capacity.
    pub fn transfer_to_agent(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        agent: AgentId,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let placement = self.placements.get(&conv).ok_or(Error::UnknownConversation(conv))?;
        let a = self.agents.get(&agent).ok_or(Error::UnknownAgent(agent))?;
        if placement.agent() == Some(agent) && matches!(placement, Placement::Assigned { .. }) {
            return Err(Error::InvalidArgument(format!(
                "conversation {conv} is already assigned to agent {agent}"
            )));
        }
        if a.status == AgentStatus::Offline {
            return Err(Error::AgentOffline(agent));
        }
        // An offer to the target itself frees its slot when taken back.
        let holds_offer = matches!(placement, Placement::Offered { agent: a, .. } if *a == agent);
        if !a.has_room() && !holds_offer {
            return Err(Error::AgentFull { agent, capacity: a.capacity });
        }
        self.release(conv, Release::Transferred, out);
        let (group, key) = self.take(conv);
        self.assign(now, conv, agent, (group, key), Via::Transferred, out);
        self.settle(now, out);
        Ok(())
    }

    /// Moves a conversation into `group`'s queue, keeping its original entry time unless
    /// `keep_entry_time` is false. The agent that held it counts as having declined it, so it
    /// goes to someone else whenever anyone else can take it (the agent may still pick it).
    pub fn transfer_to_group(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        group: GroupId,
        keep_entry_time: bool,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        if !self.placements.contains_key(&conv) {
            return Err(Error::UnknownConversation(conv));
        }
        if !self.groups.contains_key(&group) {
            return Err(Error::UnknownGroup(group));
        }
        let holder = self.placements[&conv].agent();
        let old = self.placements[&conv].key();
        let key = |seq| {
            if keep_entry_time {
                old.with_front(false)
            } else {
                QueueKey::new(false, old.priority(), now, seq)
            }
        };
        // A transfer never ends the conversation: where the group's overflow or hours rules
        // would end it, the transfer is refused and nothing moves. (A conversation waiting
        // in `group` itself counts towards its cap here.)
        let declined: Vec<AgentId> = holder.into_iter().collect();
        match self.plan(now, group, key(self.seq + 1), &declined, false).stop {
            overflow::Stop::Refused(at) => {
                return Err(Error::TransferWouldEnd {
                    conversation: conv,
                    group: at,
                    closed: false,
                });
            }
            overflow::Stop::Closed(at) => {
                return Err(Error::TransferWouldEnd {
                    conversation: conv,
                    group: at,
                    closed: true,
                });
            }
            overflow::Stop::Place(_) | overflow::Stop::WaitClosed(_) => {}
        }
        self.release(conv, Release::Transferred, out);
        self.take(conv);
        out.push(Effect::Entered { conversation: conv, group });
        let key = key(self.next_seq());
        self.enter(now, conv, group, key, declined, out);
        self.settle(now, out);
        Ok(())
    }

    /// Raises a routed conversation's priority. A waiting one moves up its queue and keeps
    /// its entry time; an offered or assigned one keeps it for a later requeue. Never lowers.
    pub fn raise_priority(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        priority: Priority,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.placements.get_mut(&conv) else { return };
        let key = p.key();
        if key.priority() >= priority {
            return;
        }
        let raised = key.with_priority(priority);
        match p {
            Placement::Queued { group, pin, declined, .. } => {
                let (group, pin, declined) = (*group, *pin, std::mem::take(declined));
                self.take(conv);
                self.place_queued(conv, group, raised, pin, declined, out);
                self.settle(now, out);
            }
            Placement::Offered { key, .. } | Placement::Assigned { key, .. } => *key = raised,
        }
    }

    /// Forgets a conversation (it ended), freeing its agent's slot, or holding it for the
    /// group's wrap-up when the conversation was assigned.
    pub fn remove(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        out: &mut Vec<Effect>,
    ) -> Option<Placement> {
        let placement = self.placements.get(&conv)?.clone();
        self.release(conv, Release::Ended, out);
        self.take(conv);
        if let Placement::Assigned { agent, group, .. } = placement {
            self.start_wrap_up(now, agent, conv, group, out);
        }
        self.settle(now, out);
        Some(placement)
    }

    // ----- time ----------------------------------------------------------------------------

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Fires every deadline due at `now`.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Offer(conv) => {
                    if matches!(self.placements.get(&conv), Some(Placement::Offered { expires, .. }) if *expires == at)
                    {
                        self.miss(now, conv, Release::TimedOut, out);
                    }
                }
                Timer::Pin(conv) => {
                    if matches!(self.placements.get(&conv), Some(Placement::Queued { pin: Some(p), .. }) if p.until == at)
                    {
                        self.unpin(conv, out);
                    }
                }
                Timer::Grace(agent) => {
                    let due = self
                        .agents
                        .get(&agent)
                        .and_then(|a| a.offline_since)
                        .is_some_and(|t| t + self.offline_grace <= now);
                    if due {
                        self.requeue_at_front(now, agent, out);
                    }
                }
                Timer::WrapUp(agent, conv) => self.wrap_up_due(at, agent, conv, out),
                Timer::Step(conv) => self.step_due(now, at, conv),
                Timer::MaxWait(conv) => self.max_wait_due(at, conv),
                Timer::Hours(group) => self.hours_due(now, at, group, out),
            }
            self.settle(now, out);
        }
    }

    // ----- queries -------------------------------------------------------------------------

    pub fn placement(&self, conv: ConversationId) -> Option<&Placement> {
        self.placements.get(&conv)
    }

    /// Every routed conversation and where it is, in no particular order.
    pub fn placements(&self) -> impl Iterator<Item = (ConversationId, &Placement)> + '_ {
        self.placements.iter().map(|(c, p)| (*c, p))
    }

    /// 1-based position of a waiting conversation in the queue it waits in.
    pub fn position(&self, conv: ConversationId) -> Option<usize> {
        match self.placements.get(&conv)? {
            Placement::Queued { group, key, pin, .. } => {
                let rank = match pin {
                    Some(p) => self.agents.get(&p.agent)?.pinned.rank(key)?,
                    None => {
                        let g = self.groups.get(group)?;
                        g.queue.rank(&g.queue_key(*key))?
                    }
                };
                Some(rank + 1)
            }
            _ => None,
        }
    }

    /// Where a conversation stands, as its session needs to know: its exact position while it
    /// waits, and SPEC §4.5's offline condition with the agent whose reply settings come
    /// first (the agent holding it; else the customer's `dedicated` agent; else none when
    /// its group or the whole tenant is offline).
    pub fn standing(&self, conv: ConversationId, dedicated: Option<AgentId>) -> Standing {
        let offline =
            |a: AgentId| self.agents.get(&a).is_none_or(|a| a.status == AgentStatus::Offline);
        let offline = match self.placements.get(&conv) {
            None => None,
            Some(Placement::Offered { agent, .. } | Placement::Assigned { agent, .. }) => {
                offline(*agent).then_some(Some(*agent))
            }
            Some(Placement::Queued { group, .. }) => {
                if let Some(d) = dedicated.filter(|d| offline(*d)) {
                    Some(Some(d))
                } else if self.group_all_offline(*group) || self.all_offline() {
                    Some(None)
                } else {
                    None
                }
            }
        };
        Standing { position: self.position(conv), offline, wait: None }
    }

    /// [`standing`](Self::standing) with the estimated wait at `now`.
    pub fn standing_at(
        &self,
        now: Timestamp,
        conv: ConversationId,
        dedicated: Option<AgentId>,
    ) -> Standing {
        Standing { wait: self.estimated_wait(now, conv), ..self.standing(conv, dedicated) }
    }

    pub fn agent(&self, id: AgentId) -> Option<&Agent> {
        self.agents.get(&id)
    }

    pub fn agents(&self) -> impl Iterator<Item = (AgentId, &Agent)> {
        self.agents.iter().map(|(id, a)| (*id, a))
    }

    /// Every skill group's id, in no particular order.
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    pub fn group_policy(&self, id: GroupId) -> Option<&GroupPolicy> {
        self.groups.get(&id).map(|g| &g.policy)
    }

    pub fn group_members(&self, id: GroupId) -> impl Iterator<Item = AgentId> + '_ {
        self.groups.get(&id).into_iter().flat_map(|g| g.members.iter().copied())
    }

    /// Conversations waiting in the group's queue, best first (under priority aging, the
    /// effective order), from rank `start`, each with its real key (priority, entry time).
    pub fn queue(
        &self,
        id: GroupId,
        start: usize,
    ) -> impl Iterator<Item = (QueueKey, ConversationId)> + '_ {
        self.groups
            .get(&id)
            .into_iter()
            .flat_map(move |g| g.queue.iter_from(start))
            .map(|(_, c)| (self.placements[&c].key(), c))
    }

    pub fn queue_len(&self, id: GroupId) -> usize {
        self.groups.get(&id).map_or(0, |g| g.queue.len())
    }

    /// Every member of the group is offline (true for a group without members).
    pub fn group_all_offline(&self, id: GroupId) -> bool {
        self.groups.get(&id).is_none_or(|g| g.signed_in == 0)
    }

    /// Every agent of the tenant is offline.
    pub fn all_offline(&self) -> bool {
        self.signed_in == 0
    }

    /// The unaccepted list of an agent: conversations pinned to it, then those waiting in its
    /// groups, each best first (across groups by effective priority at `now`).
    pub fn unaccepted(&self, agent: AgentId, now: Timestamp) -> Vec<ConversationId> {
        let Some(a) = self.agents.get(&agent) else {
            return Vec::new();
        };
        let mut list: Vec<ConversationId> = a.pinned.iter().map(|(_, c)| c).collect();
        let mut waiting: Vec<(aging::Effective, ConversationId)> = a
            .groups
            .iter()
            .filter(|g| !self.closed(**g))
            .filter_map(|g| self.groups.get(g))
            .flat_map(|g| {
                g.queue.iter().chain(g.overflow.iter()).map(move |(_, c)| {
                    (aging::Effective::at(&g.policy, self.placements[&c].key(), now), c)
                })
            })
            .filter(|(_, c)| !self.closed(self.placements[c].group()))
            .collect();
        waiting.sort();
        // A conversation its own group and a step both offer this agent: the better place.
        let mut seen = std::collections::BTreeSet::new();
        waiting.retain(|(_, c)| seen.insert(*c));
        list.extend(waiting.into_iter().map(|(_, c)| c));
        list
    }

    pub fn conversations(&self) -> usize {
        self.placements.len()
    }

    /// Heap bytes of the queues and placement map (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let placements =
            self.placements.capacity() * (std::mem::size_of::<(ConversationId, Placement)>() + 1);
        placements
            + self
                .groups
                .values()
                .map(|g| g.queue.heap_bytes() + g.overflow.heap_bytes())
                .sum::<usize>()
            + self.agents.values().map(|a| a.pinned.heap_bytes()).sum::<usize>()
    }

    // ----- internals -----------------------------------------------------------------------

    fn offered_to(&self, conv: ConversationId, agent: AgentId) -> Result<()> {
        match self.placements.get(&conv) {
            Some(Placement::Offered { agent: a, .. }) if *a == agent => Ok(()),
            Some(_) => Err(Error::NotOffered { conversation: conv, agent }),
            None => Err(Error::UnknownConversation(conv)),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Lists the agent, under its current rank, in the availability index of each of its
    /// groups when it can take pushed work, and marks it for dispatch.
    fn refresh(&mut self, id: AgentId) {
        let Some(a) = self.agents.get_mut(&id) else { return };
        let new = a.can_push().then(|| available::rank(a));
        let old = std::mem::replace(&mut a.listed, new);
        if old != new {
            for gid in &a.groups {
                if let Some(g) = self.groups.get_mut(gid) {
                    let level = a.level(*gid);
                    if let Some(rank) = old {
                        g.available.remove(id, rank, level);
                    }
                    if let Some(rank) = new {
                        g.available.insert(id, rank, level);
                    }
                }
            }
        }
        if new.is_some() {
            self.dirty_agents.insert(id);
        }
    }

    /// Takes the agent out of every availability index (before its groups change).
    fn unlist(&mut self, id: AgentId) {
        let Some(a) = self.agents.get_mut(&id) else { return };
        if let Some(rank) = a.listed.take() {
            for gid in &a.groups {
                if let Some(g) = self.groups.get_mut(gid) {
                    g.available.remove(id, rank, a.level(*gid));
                }
            }
        }
    }

    fn place_queued(
        &mut self,
        conv: ConversationId,
        group: GroupId,
        key: QueueKey,
        pin: Option<Pin>,
        declined: Vec<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        match pin {
            Some(p) => {
                let a = self.agents.get_mut(&p.agent).expect("pinned agent exists");
                a.pinned.insert(key, conv);
                self.timers.insert((p.until, Timer::Pin(conv)));
                self.dirty_agents.insert(p.agent);
            }
            None => {
                let g = self.groups.get_mut(&group).expect("group exists");
                g.queue.insert(g.queue_key(key), conv);
                if !g.policy.steps.is_empty() {
                    self.dirty_steps.insert(conv);
                }
                if g.policy.overflow.is_some_and(|o| o.max_wait.is_some()) && !key.front() {
                    self.dirty_limits.insert(conv);
                }
                self.dirty_groups.insert(group);
            }
        }
        self.set_placement(conv, Placement::Queued { group, key, pin, declined });
        out.push(Effect::Queued { conversation: conv, group, pinned_to: pin.map(|p| p.agent) });
    }

    fn set_placement(&mut self, conv: ConversationId, p: Placement) {
        self.groups.get_mut(&p.group()).expect("group exists").refs += 1;
        self.placements.insert(conv, p);
    }

    /// Removes a conversation from wherever it is (queue, pin, offer, assignment), without
    /// effects, returning its group and key.
    fn take(&mut self, conv: ConversationId) -> (GroupId, QueueKey) {
        let p = self.placements.remove(&conv).expect("placement exists");
        self.decisions.remove(&conv);
        let (group, key) = (p.group(), p.key());
        self.groups.get_mut(&group).expect("group exists").refs -= 1;
        match p {
            Placement::Queued { pin: Some(pin), .. } => {
                self.agents.get_mut(&pin.agent).expect("pinned agent exists").pinned.remove(&key);
                self.timers.remove(&(pin.until, Timer::Pin(conv)));
            }
            Placement::Queued { pin: None, .. } => {
                let g = self.groups.get_mut(&group).expect("group exists");
                g.queue.remove(&g.queue_key(key));
                self.unwiden(conv, key);
                self.unlimit(conv);
            }
            Placement::Offered { agent, expires, .. } => {
                self.agents.get_mut(&agent).expect("offered agent exists").offered.remove(&conv);
                self.timers.remove(&(expires, Timer::Offer(conv)));
                self.refresh(agent);
            }
            Placement::Assigned { agent, .. } => {
                self.agents.get_mut(&agent).expect("assigned agent exists").assigned.remove(&conv);
                self.refresh(agent);
            }
        }
        (group, key)
    }

    /// Tells the holding agent (if any) that the conversation leaves it.
    fn release(&mut self, conv: ConversationId, reason: Release, out: &mut Vec<Effect>) {
        match self.placements.get(&conv) {
            Some(Placement::Offered { agent, .. }) => out.push(Effect::Released {
                conversation: conv,
                agent: *agent,
                reason,
                was_assigned: false,
            }),
            Some(Placement::Assigned { agent, .. }) => out.push(Effect::Released {
                conversation: conv,
                agent: *agent,
                reason,
                was_assigned: true,
            }),
            _ => {}
        }
    }

    fn assign(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        agent: AgentId,
        (group, key): (GroupId, QueueKey),
        via: Via,
        out: &mut Vec<Effect>,
    ) {
        let basis = match via {
            Via::Picked => Some(explain::Basis::Picked),
            Via::Transferred => Some(explain::Basis::Transferred),
            Via::Auto | Via::Accepted => None,
        };
        if let Some(basis) = basis {
            let chosen = explain::Figures::of(&self.agents[&agent], group);
            let d = explain::Decision {
                at: now,
                group,
                basis,
                chosen,
                runner_up: None,
                tie_break: None,
            };
            self.decisions.insert(conv, d);
        }
        let a = self.agents.get_mut(&agent).expect("agent exists");
        a.assigned.insert(conv);
        a.idle_since = now;
        self.set_placement(conv, Placement::Assigned { agent, group, key });
        self.refresh(agent);
        if via != Via::Transferred {
            self.served(now, group);
        }
        out.push(Effect::Assigned { conversation: conv, agent, via });
    }

    /// Hands a conversation to an agent the way its group's offer mode says, keeping the
    /// record of why it went to that agent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        agent: AgentId,
        (group, key): (GroupId, QueueKey),
        declined: Vec<AgentId>,
        decision: explain::Decision,
        out: &mut Vec<Effect>,
    ) {
        self.decisions.insert(conv, decision);
        match self.groups[&group].policy.offer {
            OfferMode::Offer { timeout } => {
                let expires = now + timeout;
                let a = self.agents.get_mut(&agent).expect("agent exists");
                a.offered.insert(conv);
                a.idle_since = now;
                self.timers.insert((expires, Timer::Offer(conv)));
                self.set_placement(
                    conv,
                    Placement::Offered { agent, group, key, expires, declined },
                );
                self.refresh(agent);
                out.push(Effect::Offered { conversation: conv, agent, expires });
            }
            OfferMode::AutoAccept | OfferMode::Pull => {
                self.assign(now, conv, agent, (group, key), Via::Auto, out)
            }
        }
    }
}

#[cfg(test)]
mod tests;
