//! The router side: the tenant's [`Router`] with one link per routed conversation. Every rule
//! is the router's (and the translation of its effects is `engine::facts`); this file
//! only turns what a router operation decided into messages for the conversations it
//! concerns, and what the conversations ask into router operations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::link::Link;
use super::tombstones::Tombstones;
use super::unaccepted::{self, Unaccepted};
use super::{
    AgentEnvelope, Body, DeskEvent, Envelope, FromAgent, Holding, ToAgent, ToConversation,
    ToRouter, desk, standing,
};
use crate::conversation::Cause;
use crate::engine::facts::{self, Step};
use crate::engine::{Actor, Effect, Event, Note, Target};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::login::{FirstLogin, Logins};
use crate::router::{self, AgentStatus, Router, Standing, StatusCause};
use crate::session::Placed;
use crate::time::Timestamp;

type RouterLink = Link<ToConversation, ToRouter>;
/// The router's end of an agent's link ([`super::agent`]).
type DeskLink = Link<ToAgent, FromAgent>;

/// What a router operation was, for the messages it sends.
struct Op {
    /// When it runs: the estimated waits told are at this time.
    now: Timestamp,
    /// The cause of transitions whose router effect carries none.
    cause: Cause,
    /// The conversation the operation first routed.
    routed: Option<ConversationId>,
    /// Look at every conversation's offline condition afterwards.
    rescan: bool,
    /// The conversation transferred, and where.
    transfer: Option<(ConversationId, Target)>,
    /// A conversation the operation is about though no effect may name it (one that left
    /// while it waited), for the unaccepted lists.
    about: Option<ConversationId>,
}

impl Op {
    fn new(now: Timestamp, cause: Cause) -> Self {
        Op { now, cause, routed: None, rescan: false, transfer: None, about: None }
    }
}

/// The router side of one tenant. Serializable: a snapshot of it is its durable state, the
/// router's placements together with the decisions not yet acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterSide {
    router: Router,
    conversations: BTreeMap<ConversationId, Conv>,
    epoch: u64,
    #[serde(with = "crate::config::duration_ms")]
    linger: Duration,
    /// Acknowledgements owed on links this side no longer holds (volatile).
    #[serde(skip)]
    stray: Vec<(ConversationId, CustomerId, u64)>,
    /// Agent sides run: each decision about an agent is also sent on its link.
    #[serde(default)]
    agent_links: bool,
    /// One link per agent side (agents are never forgotten, so neither are their links).
    #[serde(default)]
    agents: BTreeMap<AgentId, DeskLink>,
    /// What each agent holds as its side counts it: since which message on its link
    /// ([`desk::change`]), the name of the holding (`Placed.desk`).
    #[serde(default)]
    holdings: BTreeMap<AgentId, BTreeMap<ConversationId, u64>>,
    /// Tombstones that appeared, and expired, since the last [`RouterSide::take_tombstones`]
    /// (volatile: the row before them still holds what they replace, see `take_tombstones`).
    #[serde(skip)]
    gone_new: Vec<(ConversationId, Tombstone)>,
    #[serde(skip)]
    gone_expired: Vec<ConversationId>,
    /// What this side's decisions put on agents' desk streams since the last
    /// [`RouterSide::take_desk`] (volatile: the shell writes them in the same batch as the
    /// side's row, so they are durable exactly when the decisions are).
    #[serde(skip)]
    desk: Vec<(AgentId, DeskEvent)>,
    /// Each agent's first sign-in of the day, as this side's status changes make them
    /// ([`crate::login`]; the shell feeds it each step's effects, [`RouterSide::note_logins`]).
    #[serde(default)]
    logins: Logins,
    /// Where each waiting conversation was last said to wait, for agents' unaccepted lists.
    #[serde(default)]
    unaccepted: Unaccepted,
    /// Offers and assignments decided since [`RouterSide::take_decisions`] (volatile: what
    /// the shell times as routing decisions).
    #[serde(skip)]
    decisions: u64,
    /// Conversations that left and are owed nothing more, until `seen + linger`: only what
    /// answers a late copy, so [`RouterSide::outgoing`] walks only the conversations still
    /// routed. Their ids only, about 2 bytes each ([`Tombstones`]). Not in the side's own encoding
    /// (the router's row, rewritten on every step): with an hour's `linger` at 50 endings a
    /// second that would be 180,000 tombstones. The shell stores each as a row of its own
    /// when it appears and deletes it when it expires ([`RouterSide::take_tombstones`]), and
    /// gives them back on activation ([`RouterSide::restore_tombstones`]).
    #[serde(skip)]
    gone: Tombstones,
    /// The conversations whose link may have something to send, or may have settled after
    /// leaving, since the last [`RouterSide::outgoing`] (volatile), so it looks at those only,
    /// not at every link; `all`: every link (a decoded or restarted side has sent nothing).
    #[serde(skip)]
    touched: Touched,
    /// The same for the agents' links: at 300 agents, walking every one on every flush was
    /// about 1% of a node's CPU at 200 arrivals/s.
    #[serde(skip)]
    touched_agents: Touched<AgentId>,
    /// Tombstones read from a row of the earlier encoding, which held them, until
    /// [`RouterSide::restore_tombstones`] keeps them and has them stored as rows of their own.
    ///
    /// It stays the last field: the shell writes its row with fields by position, and a
    /// field not written can only be the last one (read back as its default).
    #[serde(default, skip_serializing, rename = "gone")]
    earlier: BTreeMap<ConversationId, Tombstone>,
}

/// The links [`RouterSide::outgoing`] (of conversations) or
/// [`RouterSide::outgoing_agents`] (of agents) must look at.
#[derive(Debug, Clone)]
struct Touched<K = ConversationId> {
    all: bool,
    ids: std::collections::BTreeSet<K>,
}

impl<K> Default for Touched<K> {
    fn default() -> Self {
        Touched { all: true, ids: Default::default() }
    }
}

impl<K: Ord + Copy> Touched<K> {
    /// Calls `f` on each touched entry of `map` (every one if `all`), and leaves none touched.
    fn drain<V>(&mut self, map: &mut BTreeMap<K, V>, mut f: impl FnMut(K, &mut V)) {
        let touched = std::mem::replace(self, Touched { all: false, ids: Default::default() });
        if touched.all {
            for (k, v) in map.iter_mut() {
                f(*k, v);
            }
        } else {
            for k in touched.ids {
                if let Some(v) = map.get_mut(&k) {
                    f(k, v);
                }
            }
        }
    }
}

/// A conversation that left, as the shell stores it in a row of its own (memory keeps only
/// its id, [`RouterSide::gone`]; on activation only `seen` is read back, the rest stays for
/// rows already stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    customer: CustomerId,
    /// Its inbox's `applied_below` when it was put away: every message below was applied.
    next: u64,
    /// The last envelope from it.
    seen: Timestamp,
    /// Which write of a journaling shell stored it ([`Tombstone::stored_with`]): 1 + its log
    /// row's sequence number, or 0 for a checkpoint's write (and rows from before the
    /// journal). Last, so older rows read without it.
    #[serde(default)]
    pub(super) log: u64,
}

/// What the router side keeps of one conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Conv {
    customer: CustomerId,
    /// The customer's dedicated agent, for the offline condition.
    dedicated: Option<AgentId>,
    link: RouterLink,
    /// Where the conversation was last told it stands.
    #[serde(with = "standing")]
    told: Standing,
    /// It left: the link is a tombstone until `seen + linger`.
    left: bool,
    /// The last envelope on the link.
    seen: Timestamp,
    /// With its bot ([`ToRouter::Bot`]), not routed yet: nothing is decided about it, and
    /// where it stands is never told. (Last: rows are encoded by position.)
    #[serde(default)]
    bot: bool,
}

impl RouterSide {
    /// `linger`: how long a left conversation's link is kept to recognise late duplicates;
    /// longer than any envelope can take to arrive.
    pub fn new(router: Router, linger: Duration) -> Self {
        RouterSide {
            router,
            conversations: BTreeMap::new(),
            epoch: 0,
            linger,
            stray: Vec::new(),
            agent_links: false,
            agents: BTreeMap::new(),
            holdings: BTreeMap::new(),
            gone: Tombstones::default(),
            touched: Touched::default(),
            touched_agents: Touched::default(),
            earlier: BTreeMap::new(),
            gone_new: Vec::new(),
            gone_expired: Vec::new(),
            desk: Vec::new(),
            logins: Logins::default(),
            unaccepted: Unaccepted::default(),
            decisions: 0,
        }
    }

    /// With agent sides ([`super::AgentSide`]): every decision about an agent (offered,
    /// assigned, released, its status) is also sent to it on its link, and its commands
    /// arrive there ([`RouterSide::receive_agent`]). Without, agent commands are calls here
    /// (the node's actors until they run agent actors).
    pub fn with_agent_links(mut self) -> Self {
        self.agent_links = true;
        self
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Starts a new incarnation (after a restart or a move), before anything is sent. The
    /// tombstones' lingering starts again: the conversation sides get the whole `linger` to
    /// resend what this side may not have acknowledged before it stopped.
    pub fn restart(&mut self, epoch: u64, now: Timestamp) {
        self.epoch = epoch;
        for c in self.conversations.values_mut().filter(|c| c.left) {
            c.seen = c.seen.max(now);
        }
        self.gone.renew(now, self.linger);
    }

    /// The customer whose conversation side holds the conversation's link.
    pub fn customer_of(&self, id: ConversationId) -> Option<CustomerId> {
        self.conversations.get(&id).map(|c| c.customer)
    }

    /// How many of the conversation's messages were applied.
    pub fn applied(&self, id: ConversationId) -> u64 {
        self.conversations.get(&id).map_or(0, |c| c.link.inbox.applied_below() - 1)
    }

    /// Whether a journaling shell's next write must be a checkpoint because the one it has
    /// was taken at `checkpoint_at`, half a `linger` or more before `now`
    /// ([`super::journal`]). A write deletes the tombstones that expired; the log rows after
    /// the checkpoint must not hold envelopes of those conversations, or a replay, which
    /// has only the stored tombstones, would take them for a new conversation's and keep a
    /// link the side forgot. A tombstone expires `linger` after its last envelope, so with
    /// a checkpoint never older than half that, its envelopes all precede the checkpoint.
    pub fn checkpoint_due(&self, checkpoint_at: Timestamp, now: Timestamp) -> bool {
        checkpoint_at + self.linger / 2 <= now
    }

    /// Whether the conversation left (its link is a tombstone).
    pub fn has_left(&self, id: ConversationId) -> bool {
        match self.conversations.get(&id) {
            Some(c) => c.left,
            None => self.gone.contains(id),
        }
    }

    /// The conversations routed here, or opened with their bot ([`ToRouter::Bot`]), that have
    /// not left (open, as far as this side heard), with their customers, ascending by id;
    /// those above `after` only. The supervisor's reads walk it: O(links, tombstones
    /// included), never the conversations' history.
    pub fn open_after(
        &self,
        after: ConversationId,
    ) -> impl DoubleEndedIterator<Item = (ConversationId, CustomerId)> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        let links = self.conversations.range((Excluded(after), Unbounded));
        links.filter(|(_, c)| !c.left).map(|(id, c)| (*id, c.customer))
    }

    /// How many conversations it holds open that are still with their bot
    /// ([`ToRouter::Bot`]; O(links), for the 5 s gauges).
    pub fn with_bot(&self) -> usize {
        self.conversations.values().filter(|c| c.bot && !c.left).count()
    }

    /// The agent's first sign-in as kept (of the day it happened: [`FirstLogin::today`]
    /// says whether that is today).
    pub fn first_login(&self, agent: AgentId) -> Option<FirstLogin> {
        self.logins.get(agent)
    }

    /// Notes the sign-ins among the effects of one step of this side (its status-change
    /// events) at the step's time `now`, on the local day `day` gives (asked only if an
    /// agent signed in). The shell calls it with every step's effects before making the step
    /// durable, so the first sign-ins are in the same row.
    pub fn note_logins(&mut self, now: Timestamp, effects: &[Effect], day: impl FnOnce() -> u64) {
        self.logins.note(now, effects, day);
    }

    // ----- operations of agents and supervisors ------------------------------------------------

    pub fn set_status(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        status: AgentStatus,
        cause: StatusCause,
    ) -> Result<Vec<Effect>> {
        self.routed(Op::new(now, Cause::AgentOffline), |r, out| {
            r.set_status(now, agent, status, cause, out)
        })
    }

    /// Creates or updates an agent's capacity and groups (`RouterOp::SetAgent`: no
    /// proficiency levels, every group at the lowest; the configuration's come with
    /// [`reconfigure`](Self::reconfigure)).
    pub fn set_agent(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        capacity: u32,
        groups: Vec<GroupId>,
    ) -> Result<Vec<Effect>> {
        self.set_agent_with(now, agent, capacity, groups, Default::default())
    }

    /// [`set_agent`](Self::set_agent) with the agent's proficiency levels in its groups.
    fn set_agent_with(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        capacity: u32,
        groups: Vec<GroupId>,
        proficiency: std::collections::BTreeMap<GroupId, u8>,
    ) -> Result<Vec<Effect>> {
        let mut rout = Vec::new();
        let before = self.router.agent(agent).map(|a| a.groups.clone());
        self.router.upsert_agent(now, agent, capacity, groups, proficiency, &mut rout)?;
        if let Some(before) = before {
            // Its unaccepted list follows its groups, before what the change decided.
            let changes = self.unaccepted.regrouped(&self.router, agent, &before);
            self.tell_lists(BTreeMap::from([(agent, changes)]));
        }
        let mut out = Vec::new();
        // New groups can flip a group's offline condition without a status change.
        self.decide(rout, Op { rescan: true, ..Op::new(now, Cause::Routed) }, &mut out);
        Ok(out)
    }

    /// An administrator is about to lower `agent`'s capacity to `capacity` in the tenant's
    /// configuration: refused (`CapacityBelowLoad`) while it serves more, else taken now
    /// (offers above it go back to their place), keeping its groups. Nothing for an agent the
    /// router does not have, or a capacity that is not lower: the configuration brings those.
    /// Should the configuration not follow, [`reconfigure`](Self::reconfigure) with it
    /// restores the capacity it names.
    pub fn lower_capacity(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        capacity: u32,
    ) -> Result<Vec<Effect>> {
        let (groups, proficiency) = match self.router.agent(agent) {
            Some(r) if capacity < r.capacity => (r.groups.clone(), r.proficiency.clone()),
            _ => return Ok(Vec::new()),
        };
        self.set_agent_with(now, agent, capacity, groups, proficiency)
    }

    /// An administrator is about to delete `group`: refused while anything still routes
    /// through it (as `Router::remove_group` says), else forgotten now, so a conversation
    /// routed to it meanwhile is refused rather than left waiting in a deleted group. Should
    /// the configuration keep it, [`reconfigure`](Self::reconfigure) brings it back.
    pub fn retire_group(&mut self, group: GroupId) -> Result<Vec<Effect>> {
        if self.router.group_policy(group).is_some() {
            self.router.remove_group(group)?;
        }
        Ok(Vec::new())
    }

    /// Brings the router to the tenant's configuration `cfg` (a newer one than it was built
    /// or last reconfigured from, or the same: then nothing changes): the tenant's policies;
    /// each group's policy (new or changed); each agent's capacity, groups and proficiency
    /// levels (new or changed); an agent the configuration no longer has is
    /// removed as `Engine::remove_agent` does (signed out, its conversations requeued at the
    /// front of their queues, forgotten); then a group it no longer has, once empty (one still
    /// referenced stays, unroutable: no new conversation can name it). Idempotent, so a
    /// shell may call it on every configuration it sees, after a restart too.
    pub fn reconfigure(&mut self, now: Timestamp, cfg: crate::session::Config<'_>) -> Vec<Effect> {
        let mut out = Vec::new();
        self.router.set_policies(cfg.settings.offline_grace, cfg.settings.not_responding);
        let rescan = || Op { rescan: true, ..Op::new(now, Cause::Routed) };
        let mut groups: Vec<_> = cfg.groups.iter().collect();
        groups.sort_by_key(|(g, _)| **g);
        for (g, settings) in groups {
            if self.router.group_policy(*g) != Some(&settings.policy) {
                let mut rout = Vec::new();
                self.router.upsert_group(now, *g, settings.policy.clone(), &mut rout);
                self.decide(rout, rescan(), &mut out);
            }
        }
        let mut agents: Vec<_> = cfg.agents.iter().collect();
        agents.sort_by_key(|(a, _)| **a);
        for (a, settings) in agents {
            let same = self.router.agent(*a).is_some_and(|r| {
                r.capacity == settings.capacity
                    && r.groups == settings.groups
                    && r.proficiency == settings.proficiency
            });
            if !same {
                // Refused only for settings the tenant actor validated already (a capacity
                // below load the router agreed to first, `lower_capacity`).
                let (capacity, groups) = (settings.capacity, settings.groups.clone());
                let proficiency = settings.proficiency.clone();
                if let Ok(effects) = self.set_agent_with(now, *a, capacity, groups, proficiency) {
                    out.extend(effects);
                }
            }
        }
        let gone: Vec<AgentId> =
            self.router.agents().map(|(a, _)| a).filter(|a| !cfg.agents.contains_key(a)).collect();
        for a in gone {
            if let Ok(effects) =
                self.routed(Op::new(now, Cause::AgentOffline), |r, o| r.remove_agent(now, a, o))
            {
                out.extend(effects);
            }
            self.logins.remove(a);
        }
        let gone: Vec<GroupId> =
            self.router.group_ids().filter(|g| !cfg.groups.contains_key(g)).collect();
        for g in gone {
            let _ = self.router.remove_group(g);
        }
        out
    }

    pub fn accept(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.live(id)?;
        self.routed(Op::new(now, Cause::Accepted), |r, out| r.accept(now, agent, id, out))
    }

    pub fn decline(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.live(id)?;
        self.routed(Op::new(now, Cause::Declined), |r, out| r.decline(now, agent, id, out))
    }

    pub fn pick(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.live(id)?;
        self.routed(Op::new(now, Cause::Picked), |r, out| r.pick(now, agent, id, out))
    }

    /// The agent ends its wrap-up of an ended conversation, or every one it may end early
    /// (`None`); refused when there is none, or when it is mandatory.
    pub fn end_wrap_up(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: Option<ConversationId>,
    ) -> Result<Vec<Effect>> {
        self.routed(Op::new(now, Cause::Routed), |r, out| r.end_wrap_up(now, agent, id, out))
    }

    /// The router's part of a transfer: the conversation moves, and hears so. An agent may
    /// move only what it holds (offered or assigned).
    pub fn transfer(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        target: Target,
        by: Actor,
    ) -> Result<Vec<Effect>> {
        self.live(id)?;
        if let Actor::Agent(agent) = by
            && self.router.placement(id).and_then(|p| p.agent()) != Some(agent)
        {
            return Err(Error::NotAssigned { conversation: id, agent });
        }
        let op = Op { transfer: Some((id, target)), ..Op::new(now, Cause::Transferred) };
        self.routed(op, |r, out| match target {
            Target::Agent(a) => r.transfer_to_agent(now, id, a, out),
            Target::Group { group, keep_entry_time } => {
                r.transfer_to_group(now, id, group, keep_entry_time, out)
            }
        })
    }

    // ----- timers ------------------------------------------------------------------------------

    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.router.next_deadline()
    }

    /// Fires the router's deadlines due at `now`, and forgets tombstones past their time.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Effect> {
        self.advance_with(now, true)
    }

    /// [`advance`](Self::advance); a replay ([`super::journal`]) keeps every tombstone: its
    /// tombstones are the stored ones, whose `seen` may be older than the original's.
    pub(super) fn advance_with(&mut self, now: Timestamp, expire: bool) -> Vec<Effect> {
        let mut rout = Vec::new();
        self.router.advance(now, &mut rout);
        let mut out = Vec::new();
        self.decide(rout, Op::new(now, Cause::Routed), &mut out);
        let linger = self.linger;
        self.conversations.retain(|_, c| !(c.left && c.seen + linger <= now));
        if expire {
            let expired = &mut self.gone_expired;
            self.gone.expire(now, linger, |id| expired.push(id));
        }
        out
    }

    /// Drops what a restart loses (each link's early arrivals, acknowledgements owed and
    /// what was sent; acknowledgements owed on links it no longer holds): the side as a
    /// decoded copy of it is, so that [`RouterSide::outgoing`] sends everything unacknowledged
    /// again.
    pub fn forget_volatile(&mut self) {
        for c in self.conversations.values_mut() {
            c.link.forget_volatile();
        }
        for link in self.agents.values_mut() {
            link.forget_volatile();
        }
        self.stray.clear();
        self.desk.clear();
        self.touched = Touched::default();
        self.touched_agents = Touched::default();
    }

    /// Puts a message that was held back on a conversation's link back there (its link is in
    /// the checkpoint it follows; nothing is applied, nothing else changes).
    pub(super) fn hold(&mut self, envelope: Envelope<ToRouter>) {
        if let Some(c) = self.conversations.get_mut(&envelope.conversation) {
            let ready = c.link.receive(envelope.epoch, envelope.body);
            debug_assert!(ready.is_empty(), "a held message is ahead of its link");
        }
    }

    /// [`RouterSide::hold`] on an agent's link.
    pub(super) fn hold_agent(&mut self, envelope: AgentEnvelope<FromAgent>) {
        if let Some(link) = self.agents.get_mut(&envelope.agent) {
            let ready = link.receive(envelope.epoch, envelope.body);
            debug_assert!(ready.is_empty(), "a held message is ahead of its link");
            self.touched_agents.ids.insert(envelope.agent);
        }
    }

    /// What arrived early on its links and waits there (volatile), as the envelopes that
    /// brought it: a checkpoint of the side (which drops it) is followed by these, so a
    /// replay from it holds them back as the original did.
    pub fn held_back(&self) -> (Vec<Envelope<ToRouter>>, Vec<AgentEnvelope<FromAgent>>) {
        let mut conversations = Vec::new();
        for (id, c) in &self.conversations {
            let epoch = c.link.inbox.epoch();
            for (seq, message) in c.link.inbox.held() {
                let body = Body::Message { seq, message: message.clone() };
                conversations.push(Envelope {
                    conversation: *id,
                    customer: c.customer,
                    epoch,
                    body,
                });
            }
        }
        let mut agents = Vec::new();
        for (agent, link) in &self.agents {
            let epoch = link.inbox.epoch();
            for (seq, message) in link.inbox.held() {
                let body = Body::Message { seq, message: message.clone() };
                agents.push(AgentEnvelope { agent: *agent, epoch, body });
            }
        }
        (conversations, agents)
    }

    /// The tombstones to store since the last call (each a row of its own, by conversation),
    /// and those to delete (expired). The shell writes both in the batch of the step it
    /// takes them in. A tombstone replaces a left conversation's link, which the row
    /// written before it appeared still holds, so a crash before that batch loses nothing:
    /// the restarted side puts the link away again.
    pub fn take_tombstones(&mut self) -> (Vec<(ConversationId, Tombstone)>, Vec<ConversationId>) {
        let mut fresh = std::mem::take(&mut self.gone_new);
        fresh.retain(|(id, _)| self.gone.contains(*id));
        let expired = std::mem::take(&mut self.gone_expired);
        (fresh, expired.into_iter().filter(|id| !self.gone.contains(*id)).collect())
    }

    /// On activation, before [`RouterSide::restart`]: the stored tombstones. Those the row
    /// itself held (its earlier encoding) are stored as rows of their own with the next
    /// [`RouterSide::take_tombstones`].
    pub fn restore_tombstones(
        &mut self,
        stored: impl IntoIterator<Item = (ConversationId, Tombstone)>,
    ) {
        let earlier = std::mem::take(&mut self.earlier);
        let earlier: Vec<_> =
            earlier.into_iter().filter(|(id, _)| !self.conversations.contains_key(id)).collect();
        for (id, t) in stored.into_iter().chain(earlier.iter().copied()) {
            if !self.conversations.contains_key(&id) {
                self.gone.insert(id, t.seen, self.linger);
            }
        }
        self.gone_new.extend(earlier);
    }

    /// Forgets every tombstone in memory (a rebuild, [`super::journal::rebuild`], gives the
    /// stored ones back next).
    pub(super) fn forget_tombstones(&mut self) {
        self.gone = Tombstones::default();
        self.gone_new.clear();
        self.gone_expired.clear();
    }

    // ----- the links ---------------------------------------------------------------------------

    /// An envelope from a conversation side: the messages it completes are applied in order.
    pub fn receive(&mut self, now: Timestamp, envelope: Envelope<ToRouter>) -> Vec<Effect> {
        let mut out = Vec::new();
        let id = envelope.conversation;
        let conv = match self.conversations.get_mut(&id) {
            Some(c) => c,
            // Everything up to the leave, its last message, was applied: a late copy is a
            // duplicate, acknowledged as far as itself (the side resending what is
            // unacknowledged always resends its newest, so hears of the rest).
            None if self.gone.contains(id) => {
                self.gone.insert(id, now, self.linger);
                if let Body::Message { seq, .. } = envelope.body {
                    self.stray.push((id, envelope.customer, seq + 1));
                }
                return out;
            }
            // An acknowledgement for a link already forgotten.
            None if matches!(envelope.body, Body::Ack { .. }) => return out,
            None => self.conversations.entry(id).or_insert(Conv {
                customer: envelope.customer,
                dedicated: None,
                link: Link::default(),
                told: Standing::default(),
                left: false,
                seen: now,
                bot: false,
            }),
        };
        conv.seen = now;
        self.touched.ids.insert(id);
        if conv.left {
            // Everything before the leave was applied; a late copy is a duplicate.
            if let Body::Message { seq, .. } = envelope.body {
                let next = conv.link.inbox.applied_below().max(seq + 1);
                self.stray.push((id, conv.customer, next));
            }
            return out;
        }
        for message in conv.link.receive(envelope.epoch, envelope.body) {
            self.apply(now, id, message, &mut out);
        }
        out
    }

    /// What to put on the network once the state is durable.
    pub fn outgoing(&mut self) -> Vec<Envelope<ToConversation>> {
        let epoch = self.epoch;
        let mut wire = Vec::new();
        let mut done = Vec::new();
        let mut out = |id: ConversationId, c: &mut Conv| {
            c.link.outgoing(id, c.customer, epoch, &mut wire);
            if c.left && c.link.out.is_empty() {
                done.push(id);
            }
        };
        self.touched.drain(&mut self.conversations, &mut out);
        // Left, and its last acknowledgement is on the wire: a tombstone from now on.
        for id in done {
            if let Some(c) = self.conversations.remove(&id) {
                let next = c.link.inbox.applied_below();
                self.gone.insert(id, c.seen, self.linger);
                self.gone_new
                    .push((id, Tombstone { customer: c.customer, next, seen: c.seen, log: 0 }));
            }
        }
        // Every link left out had nothing to send (what the set is for; tests run debug
        // builds, so every simulation checks it).
        #[cfg(debug_assertions)]
        for (id, c) in &mut self.conversations {
            let before = wire.len();
            c.link.outgoing(*id, c.customer, epoch, &mut wire);
            assert_eq!(wire.len(), before, "{id}'s link had something to send, untouched");
            assert!(!(c.left && c.link.out.is_empty()), "{id} left, untouched");
        }
        for (conversation, customer, next) in self.stray.drain(..) {
            wire.push(Envelope { conversation, customer, epoch, body: Body::Ack { next } });
        }
        wire
    }

    /// Everything unacknowledged, again.
    pub fn retransmit(&self) -> Vec<Envelope<ToConversation>> {
        let mut wire = Vec::new();
        for (id, c) in &self.conversations {
            c.link.retransmit(*id, c.customer, self.epoch, &mut wire);
        }
        wire
    }

    /// Whether nothing sent on a conversation's link is unacknowledged (so for a link it does
    /// not have): an O(1) look at one link, for a shell that tracks which links owe it an
    /// acknowledgement instead of scanning [`Self::retransmit`].
    pub fn settled_with(&self, id: ConversationId) -> bool {
        self.conversations.get(&id).is_none_or(|c| c.link.out.is_empty())
    }

    // ----- the agents' links --------------------------------------------------------------------

    /// An envelope from an agent side: the commands it completes are decided in order (the
    /// same operations as the calls above); a refused one is answered on the link.
    pub fn receive_agent(
        &mut self,
        now: Timestamp,
        envelope: AgentEnvelope<FromAgent>,
    ) -> Vec<Effect> {
        let agent = envelope.agent;
        self.touched_agents.ids.insert(agent);
        let link = self.agents.entry(agent).or_default();
        let first = link.inbox.applied_below();
        let ready = link.receive(envelope.epoch, envelope.body);
        let mut out = Vec::new();
        for (command, message) in (first..).zip(ready) {
            let decided = match message {
                FromAgent::Status { status, cause } => self.set_status(now, agent, status, cause),
                FromAgent::Accept { conversation } => self.accept(now, agent, conversation),
                FromAgent::Decline { conversation } => self.decline(now, agent, conversation),
                FromAgent::Pick { conversation } => self.pick(now, agent, conversation),
                FromAgent::EndWrapUp { conversation } => self.end_wrap_up(now, agent, conversation),
            };
            match decided {
                Ok(fx) => {
                    out.extend(fx);
                    // After the decision's notes for the agent (queued by the operation).
                    self.agents.entry(agent).or_default().out.push(ToAgent::Done { command });
                }
                Err(e) => {
                    let status =
                        self.router.agent(agent).map_or(AgentStatus::Offline, |a| a.status);
                    let (reason, kind) = (e.to_string(), Some(e.kind()));
                    self.desk.push((agent, DeskEvent::Refused { command, reason: reason.clone() }));
                    let link = self.agents.entry(agent).or_default();
                    link.out.push(ToAgent::Refused { command, reason, status, kind });
                }
            }
        }
        out
    }

    /// The entries its decisions put on agents' desk streams since it was last asked, in
    /// order ([`super::desk`]): the shell appends each to its agent's desk stream in the same
    /// batch as the side's row, before anything of that step is heard.
    pub fn take_desk(&mut self) -> Vec<(AgentId, DeskEvent)> {
        std::mem::take(&mut self.desk)
    }

    /// How many offers and assignments it decided since it was last asked.
    pub fn take_decisions(&mut self) -> u64 {
        std::mem::take(&mut self.decisions)
    }

    /// How many of an agent side's commands were applied.
    pub fn applied_agent(&self, agent: AgentId) -> u64 {
        self.agents.get(&agent).map_or(0, |l| l.inbox.applied_below() - 1)
    }

    /// What to put on the agents' links once the state is durable.
    pub fn outgoing_agents(&mut self) -> Vec<AgentEnvelope<ToAgent>> {
        let epoch = self.epoch;
        let mut wire = Vec::new();
        let mut out = |agent: AgentId, link: &mut DeskLink| {
            wire.extend(link.bodies().into_iter().map(|body| AgentEnvelope { agent, epoch, body }));
        };
        self.touched_agents.drain(&mut self.agents, &mut out);
        // Every link left out had nothing to send (as in `outgoing`).
        #[cfg(debug_assertions)]
        for (agent, link) in &mut self.agents {
            assert!(link.bodies().is_empty(), "{agent}'s link had something to send, untouched");
        }
        wire
    }

    /// Whether nothing sent on an agent's link is unacknowledged (as [`Self::settled_with`]).
    pub fn settled_with_agent(&self, agent: AgentId) -> bool {
        self.agents.get(&agent).is_none_or(|l| l.out.is_empty())
    }

    /// Everything unacknowledged on the agents' links, again.
    pub fn retransmit_agents(&self) -> Vec<AgentEnvelope<ToAgent>> {
        let epoch = self.epoch;
        let mut wire = Vec::new();
        for (agent, link) in &self.agents {
            let agent = *agent;
            let bodies = link.unacked_bodies();
            wire.extend(bodies.into_iter().map(|body| AgentEnvelope { agent, epoch, body }));
        }
        wire
    }

    // ----- internals ---------------------------------------------------------------------------

    /// A conversation the router side may act on: routed and not left (one still with its
    /// bot is unknown here, as before the router listed it).
    fn live(&self, id: ConversationId) -> Result<()> {
        match self.conversations.get(&id) {
            Some(c) if !c.left && !c.bot => Ok(()),
            _ => Err(Error::UnknownConversation(id)),
        }
    }

    /// Applies one message from a conversation.
    fn apply(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        message: ToRouter,
        out: &mut Vec<Effect>,
    ) {
        match message {
            ToRouter::Route { request, cause } => {
                let conv = self.conversations.get_mut(&id).expect("the link exists");
                conv.dedicated = request.dedicated;
                conv.bot = false;
                let mut rout = Vec::new();
                match self.router.route(now, id, request, &mut rout) {
                    Ok(()) => {
                        self.decide(rout, Op { routed: Some(id), ..Op::new(now, cause) }, out)
                    }
                    Err(e) => {
                        conv.link.out.push(ToConversation::Refused { reason: e.to_string() });
                    }
                }
            }
            ToRouter::Raise { priority } => {
                let mut rout = Vec::new();
                self.router.raise_priority(now, id, priority, &mut rout);
                self.decide(rout, Op::new(now, Cause::Routed), out);
                // Every raise is answered (the customer message that raised it waits): where
                // it stands now, after whatever was decided.
                self.tell_standing(now, id);
            }
            // The customer message written while it waits waits for this answer.
            ToRouter::Where => self.tell_standing(now, id),
            ToRouter::Bot => self.conversations.get_mut(&id).expect("the link exists").bot = true,
            ToRouter::Leave => {
                let mut rout = Vec::new();
                self.router.remove(now, id, &mut rout);
                let conv = self.conversations.get_mut(&id).expect("the link exists");
                conv.left = true;
                // What it was not told yet no longer matters.
                conv.link.out.clear();
                self.decide(rout, Op { about: Some(id), ..Op::new(now, Cause::Routed) }, out);
            }
            ToRouter::Alert { agent, group } => {
                let mut alert = Vec::new();
                facts::alert(&self.router, id, agent, group, &mut alert);
                let mut desks = BTreeMap::new();
                for e in &alert {
                    if let Effect::Notify { agent, note } = e {
                        desks.entry(*agent).or_insert_with(Vec::new).push(note.clone());
                    }
                }
                self.tell_agents(desks);
                out.extend(alert);
            }
            ToRouter::Reaffine { dedicated } => {
                self.conversations.get_mut(&id).expect("the link exists").dedicated = dedicated;
                let mut rout = Vec::new();
                self.router.reaffine(now, id, dedicated, &mut rout);
                self.decide(rout, Op { about: Some(id), ..Op::new(now, Cause::Routed) }, out);
                // The offline condition reads the dedicated agent, whether or not it moved.
                self.apply(now, id, ToRouter::Wrote, out);
            }
            ToRouter::Wrote => {
                let Some(conv) = self.conversations.get_mut(&id).filter(|c| !c.left) else {
                    return;
                };
                let standing = self.router.standing_at(now, id, conv.dedicated);
                if !standing.reads_as(&conv.told) {
                    conv.told = standing;
                    conv.link.out.push(ToConversation::Standing { standing });
                }
            }
        }
    }

    /// Tells a conversation where it stands now, changed or not.
    fn tell_standing(&mut self, now: Timestamp, id: ConversationId) {
        if let Some(conv) = self.conversations.get_mut(&id).filter(|c| !c.left) {
            let standing = self.router.standing_at(now, id, conv.dedicated);
            conv.told = standing;
            conv.link.out.push(ToConversation::Standing { standing });
        }
    }

    /// Runs one router operation and sends what it decided.
    fn routed(
        &mut self,
        op: Op,
        run: impl FnOnce(&mut Router, &mut Vec<router::Effect>) -> Result<()>,
    ) -> Result<Vec<Effect>> {
        let mut rout = Vec::new();
        run(&mut self.router, &mut rout)?;
        let mut out = Vec::new();
        self.decide(rout, op, &mut out);
        Ok(out)
    }

    /// Queues what a router operation decided, one message per conversation with where it
    /// stands after the operation; agent notes and events go to `out`. After a status
    /// change (or when `op.rescan`), every conversation whose offline condition flipped is
    /// told.
    fn decide(&mut self, rout: Vec<router::Effect>, op: Op, out: &mut Vec<Effect>) {
        let known = |c: ConversationId| self.conversations.get(&c).is_some_and(|c| !c.left);
        let mut decided: BTreeMap<ConversationId, Vec<Placed>> = BTreeMap::new();
        // Each agent's notes, in order: those of the router's own, and the assignments its
        // conversations' sessions will note.
        let mut desks: BTreeMap<AgentId, Vec<Note>> = BTreeMap::new();
        let mut status_changed = op.rescan;
        let touched: Vec<ConversationId> =
            rout.iter().filter_map(router::Effect::conversation).chain(op.about).collect();
        let moved = op.transfer.map(|(c, _)| c);
        for step in facts::steps(rout, op.cause, op.routed, known) {
            match step {
                Step::Placed(c, fact) => {
                    if matches!(fact, Placed::Offered { .. } | Placed::Assigned { .. }) {
                        self.decisions += 1;
                    }
                    if let Placed::Assigned { agent, via, .. } = fact {
                        desks
                            .entry(agent)
                            .or_default()
                            .push(Note::Assigned { conversation: c, via });
                    }
                    decided.entry(c).or_default().push(fact);
                }
                Step::Effect(e) => {
                    if let Effect::Notify { agent, note } = &e {
                        desks.entry(*agent).or_default().push(note.clone());
                    }
                    // A transferred conversation reports its own offer, after its transfer
                    // (which it reports as it stood before the move), as on one node.
                    if matches!(&e, Effect::Event(Event::Offered { conversation, .. }) if Some(*conversation) == moved)
                    {
                        continue;
                    }
                    out.push(e);
                }
                Step::Status(_) => status_changed = true,
            }
        }
        self.tell_agents(desks);
        let lists = self.unaccepted.track(&self.router, touched);
        self.tell_lists(lists);
        for (id, facts) in decided {
            let Some(conv) = self.conversations.get_mut(&id).filter(|c| !c.left) else {
                continue;
            };
            let standing = self.router.standing_at(op.now, id, conv.dedicated);
            conv.told = standing;
            let transfer = op.transfer.filter(|(c, _)| *c == id).map(|(_, target)| target);
            let desk = self.router.placement(id).and_then(|p| p.agent()).and_then(|agent| {
                let since = *self.holdings.get(&agent)?.get(&id)?;
                Some(Holding { agent, since })
            });
            conv.link.out.push(ToConversation::Placed { facts, standing, transfer, desk });
            self.touched.ids.insert(id);
        }
        if status_changed {
            // A scan of the live conversations: status changes are rare next to messages.
            for (id, conv) in self.conversations.iter_mut().filter(|(_, c)| !c.left && !c.bot) {
                let standing = self.router.standing_at(op.now, *id, conv.dedicated);
                if standing.offline != conv.told.offline {
                    conv.told = standing;
                    conv.link.out.push(ToConversation::Standing { standing });
                    self.touched.ids.insert(*id);
                }
            }
        }
    }

    /// Queues each agent's unaccepted-list changes on its link, as one message (with agent
    /// links only).
    fn tell_lists(&mut self, lists: BTreeMap<AgentId, Vec<unaccepted::Change>>) {
        if !self.agent_links {
            return;
        }
        for (agent, changes) in lists.into_iter().filter(|(_, c)| !c.is_empty()) {
            self.desk.extend(changes.iter().map(|c| (agent, DeskEvent::Unaccepted(*c))));
            self.agents.entry(agent).or_default().out.push(ToAgent::Unaccepted { changes });
            self.touched_agents.ids.insert(agent);
        }
    }

    /// Queues each agent's notes of one router operation on its link, as one message (with
    /// agent links only).
    fn tell_agents(&mut self, desks: BTreeMap<AgentId, Vec<Note>>) {
        if !self.agent_links {
            return;
        }
        for (agent, notes) in desks {
            let holds = self.holdings.entry(agent).or_default();
            let changes: Vec<_> = notes.iter().filter_map(desk::change).collect();
            self.desk.extend(notes.iter().map(|n| (agent, DeskEvent::Note(n.clone()))));
            let since = self.agents.entry(agent).or_default().out.push(ToAgent::Decided { notes });
            self.touched_agents.ids.insert(agent);
            for (conversation, held) in changes {
                if held {
                    holds.entry(conversation).or_insert(since);
                } else {
                    holds.remove(&conversation);
                }
            }
        }
    }
}
