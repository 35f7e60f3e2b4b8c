//! The agent side: one signed-in agent's desk. It owns the agent's status as the agent (or a
//! supervisor acting on it) set it, the desk's event stream (gap-free, numbered here: this
//! side is its single writer) and what the agent holds as the router told it. Agent commands
//! enter here and go to the router side on the agent's link ([`FromAgent`]); the router stays
//! the single writer of capacity and decides every one of them, and its decisions about the
//! agent come back on the same link ([`ToAgent`]) and become desk events.
//!
//! Nothing here decides routing: a command is forwarded as it is (no check of what the agent
//! holds, which is the router's rule and may be a message ahead of this side's view), and a
//! refusal comes back with the reason the router gave.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::desk::{self, DeskIn};
use super::link::{HOLD_BACK, Link};
use super::{AgentEnvelope, Body, DeskEnvelope, FromAgent, FromDesk, Holding, ToAgent, ToDesk};
use crate::engine::Note;
use crate::ids::{AgentId, ConversationId};
use crate::router::{AgentStatus, StatusCause};

type AgentLink = Link<FromAgent, ToAgent>;

/// How many refusals an agent side remembers (in its row), for [`AgentSide::refusal`].
pub const KEEP_REFUSALS: usize = 64;

/// One entry of the agent's desk stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeskEvent {
    /// A decision of the router about this agent, as the note the desk shows.
    Note(Note),
    /// The router refused the agent's command `command` (its sequence number on the link).
    Refused { command: u64, reason: String },
    /// The agent's unaccepted list changed ([`super::unaccepted`]).
    Unaccepted(super::unaccepted::Change),
}

/// The agent side of one agent. Serializable: a snapshot of it is its durable state (status,
/// holdings, the desk stream's next number and the link), written in the same batch as the
/// desk events [`AgentSide::take_desk`] hands over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSide {
    agent: AgentId,
    epoch: u64,
    status: AgentStatus,
    offered: BTreeSet<ConversationId>,
    assigned: BTreeSet<ConversationId>,
    link: AgentLink,
    /// The next desk event's number (the first is 1).
    desk_next: u64,
    /// The number of the latest status command: only its refusal puts the router's status
    /// back (a later one in flight will be decided after it).
    last_status: u64,
    /// The router answered every command up to this one (`Done` or `Refused`; it decides
    /// them in order).
    #[serde(default)]
    decided: u64,
    /// The reasons of the newest [`KEEP_REFUSALS`] refused commands.
    #[serde(default)]
    refusals: BTreeMap<u64, String>,
    /// The same refusals' codes and reasons ([`AgentSide::refusal_kind`]).
    #[serde(default)]
    refusal_kinds: BTreeMap<u64, crate::error::Kind>,
    /// Refusals of commands below this may be forgotten.
    #[serde(default)]
    refusals_from: u64,
    /// Desk events of this step, not yet handed to the shell (volatile: a step lost in a
    /// crash is applied again from the router's resent messages, with the same numbers).
    #[serde(skip)]
    desk: Vec<(u64, DeskEvent)>,
    /// What it holds, since which of the router's messages ([`desk`]: the holdings' names).
    #[serde(default)]
    holdings: BTreeMap<ConversationId, u64>,
    /// The desk link of each holding a conversation side has written on.
    #[serde(default)]
    desk_links: BTreeMap<ConversationId, DeskIn>,
    /// Notes of holdings the router has not told of yet (volatile, unacknowledged).
    #[serde(skip)]
    early: Vec<DeskEnvelope<ToDesk>>,
    /// Acknowledgements owed on desk links of holdings that are over (volatile).
    #[serde(skip)]
    stray: Vec<DeskEnvelope<FromDesk>>,
}

impl AgentSide {
    /// A desk whose agent's status is `status` (as the router has it).
    pub fn new(agent: AgentId, status: AgentStatus) -> Self {
        AgentSide {
            agent,
            epoch: 0,
            status,
            offered: BTreeSet::new(),
            assigned: BTreeSet::new(),
            link: Link::default(),
            desk_next: 1,
            last_status: 0,
            decided: 0,
            refusals: BTreeMap::new(),
            refusal_kinds: BTreeMap::new(),
            refusals_from: 0,
            desk: Vec::new(),
            holdings: BTreeMap::new(),
            desk_links: BTreeMap::new(),
            early: Vec::new(),
            stray: Vec::new(),
        }
    }

    /// Starts a new incarnation, before anything is sent.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The status as the agent last set it, or as the router last changed it.
    pub fn status(&self) -> AgentStatus {
        self.status
    }

    /// What the router last said this agent is offered.
    pub fn offered(&self) -> &BTreeSet<ConversationId> {
        &self.offered
    }

    /// What the router last said this agent is assigned.
    pub fn assigned(&self) -> &BTreeSet<ConversationId> {
        &self.assigned
    }

    /// How many of the router's messages were applied.
    pub fn applied(&self) -> u64 {
        self.link.inbox.applied_below() - 1
    }

    /// How many commands this side has sent (the newest one's number; 0: none yet).
    pub fn commands(&self) -> u64 {
        self.link.out.pushed()
    }

    /// The router answered every command of this side up to this number (0: none yet).
    pub fn decided(&self) -> u64 {
        self.decided
    }

    /// The router's answer to `command`: `None` while it has not answered (or if it is a
    /// refusal too old to be remembered, see [`AgentSide::remembers`]), `Some(None)` if it
    /// applied it, `Some(Some(reason))` if it refused it.
    pub fn decision(&self, command: u64) -> Option<Option<&str>> {
        if command > self.decided || !self.remembers(command) {
            return None;
        }
        Some(self.refusals.get(&command).map(String::as_str))
    }

    /// The code and reason of the router's refusal of `command`, while it is remembered (a
    /// refusal a node before them sent has none).
    pub fn refusal_kind(&self, command: u64) -> Option<&crate::error::Kind> {
        self.refusal_kinds.get(&command)
    }

    /// Whether a refusal of `command` would still be remembered (the newest
    /// [`KEEP_REFUSALS`] are; the desk stream keeps every one).
    pub fn remembers(&self, command: u64) -> bool {
        command >= self.refusals_from
    }

    /// The number the next desk event gets.
    pub fn desk_next(&self) -> u64 {
        self.desk_next
    }

    // ----- commands ----------------------------------------------------------------------------

    /// Sets the status at once (the desk shows it) and tells the router. Returns the command's
    /// number on the link, which a [`DeskEvent::Refused`] names.
    pub fn set_status(&mut self, status: AgentStatus, cause: StatusCause) -> u64 {
        self.status = status;
        self.last_status = self.link.out.push(FromAgent::Status { status, cause });
        self.last_status
    }

    /// Forwards an acceptance of an offer; the router decides.
    pub fn accept(&mut self, conversation: ConversationId) -> u64 {
        self.link.out.push(FromAgent::Accept { conversation })
    }

    /// Forwards a declined offer; the router decides.
    pub fn decline(&mut self, conversation: ConversationId) -> u64 {
        self.link.out.push(FromAgent::Decline { conversation })
    }

    /// Forwards a pick from the unaccepted list; the router decides.
    pub fn pick(&mut self, conversation: ConversationId) -> u64 {
        self.link.out.push(FromAgent::Pick { conversation })
    }

    /// Forwards the end of a wrap-up (of `conversation`, or every one: `None`); the router
    /// decides.
    pub fn end_wrap_up(&mut self, conversation: Option<ConversationId>) -> u64 {
        self.link.out.push(FromAgent::EndWrapUp { conversation })
    }

    // ----- the link ----------------------------------------------------------------------------

    /// An envelope from the router side: the messages it completes are applied in order, each
    /// fact a desk event.
    pub fn receive(&mut self, envelope: AgentEnvelope<ToAgent>) {
        let first = self.link.inbox.applied_below();
        let ready = self.link.receive(envelope.epoch, envelope.body);
        let any = !ready.is_empty();
        for (seq, message) in (first..).zip(ready) {
            match message {
                ToAgent::Decided { notes } => {
                    for note in notes {
                        self.hold(seq, &note);
                        self.record(DeskEvent::Note(note));
                    }
                    // Notes of a holding this message began, held back until now.
                    let now_known = std::mem::take(&mut self.early);
                    let (known, early) = now_known.into_iter().partition(|e| e.since <= seq);
                    self.early = early;
                    for envelope in known {
                        self.receive_desk(envelope);
                    }
                }
                ToAgent::Refused { command, reason, status, kind } => {
                    // A refused status change leaves the router's status standing.
                    if command == self.last_status {
                        self.status = status;
                    }
                    self.decided = self.decided.max(command);
                    self.refusals.insert(command, reason.clone());
                    if let Some(kind) = kind {
                        self.refusal_kinds.insert(command, kind);
                    }
                    while self.refusals.len() > KEEP_REFUSALS {
                        if let Some((oldest, _)) = self.refusals.pop_first() {
                            self.refusal_kinds.remove(&oldest);
                            self.refusals_from = oldest + 1;
                        }
                    }
                    self.record(DeskEvent::Refused { command, reason });
                }
                ToAgent::Done { command } => self.decided = self.decided.max(command),
                ToAgent::Unaccepted { changes } => {
                    for change in changes {
                        self.record(DeskEvent::Unaccepted(change));
                    }
                }
            }
        }
        if any {
            // Early notes of holdings that are over by now are dropped; resent, they are
            // acknowledged.
            let applied = self.applied();
            self.early.retain(|e| e.since > applied);
        }
    }

    /// An envelope on a desk link from a conversation side ([`desk`]): the notes of a
    /// conversation this agent holds become desk events, in order; notes of a holding the
    /// router has not told of yet wait for it; notes of a holding that is over are
    /// acknowledged and dropped.
    pub fn receive_desk(&mut self, envelope: DeskEnvelope<ToDesk>) {
        let Body::Message { seq, .. } = envelope.body else { return };
        let c = envelope.conversation;
        if self.holdings.get(&c) == Some(&envelope.since) {
            let fresh = DeskIn {
                customer: envelope.customer,
                since: envelope.since,
                link: Link::default(),
            };
            let d = self.desk_links.entry(c).or_insert_with(|| fresh.clone());
            if d.since != envelope.since {
                *d = fresh;
            }
            let link = &mut d.link;
            for message in link.receive(envelope.epoch, envelope.body) {
                for note in message.notes {
                    self.record(DeskEvent::Note(note));
                }
            }
        } else if envelope.since > self.applied() {
            if self.early.len() < HOLD_BACK as usize * 4 {
                self.early.push(envelope);
            }
        } else {
            let DeskEnvelope { conversation, customer, since, .. } = envelope;
            let (agent, epoch, body) = (self.agent, self.epoch, Body::Ack { next: seq + 1 });
            self.stray.push(DeskEnvelope { conversation, customer, agent, since, epoch, body });
        }
    }

    /// The acknowledgements owed on desk links, once the state is durable.
    pub fn outgoing_desk(&mut self) -> Vec<DeskEnvelope<FromDesk>> {
        let (agent, epoch) = (self.agent, self.epoch);
        let mut wire = std::mem::take(&mut self.stray);
        for (&conversation, d) in &mut self.desk_links {
            let holding = Holding { agent, since: d.since };
            let bodies = d.link.bodies();
            wire.extend(DeskEnvelope::each(conversation, d.customer, holding, epoch, bodies));
        }
        wire
    }

    /// Since which of the router's messages this agent holds a conversation (the name of its
    /// desk link), if it does.
    pub fn holding(&self, conversation: ConversationId) -> Option<u64> {
        self.holdings.get(&conversation).copied()
    }

    /// How many messages of a held conversation's desk link were applied.
    pub fn applied_desk(&self, conversation: ConversationId) -> u64 {
        self.desk_links.get(&conversation).map_or(0, |d| d.link.inbox.applied_below() - 1)
    }

    /// This step's desk events, numbered: the shell writes them in the same batch as the
    /// side's state (take them before encoding it), and only then calls
    /// [`AgentSide::outgoing`].
    pub fn take_desk(&mut self) -> Vec<(u64, DeskEvent)> {
        std::mem::take(&mut self.desk)
    }

    /// What to put on the network once the state is durable.
    pub fn outgoing(&mut self) -> Vec<AgentEnvelope<FromAgent>> {
        let (agent, epoch) = (self.agent, self.epoch);
        let bodies = self.link.bodies();
        bodies.into_iter().map(|body| AgentEnvelope { agent, epoch, body }).collect()
    }

    /// Everything unacknowledged, again.
    pub fn retransmit(&self) -> Vec<AgentEnvelope<FromAgent>> {
        let (agent, epoch) = (self.agent, self.epoch);
        let bodies = self.link.unacked_bodies();
        bodies.into_iter().map(|body| AgentEnvelope { agent, epoch, body }).collect()
    }

    /// Whether nothing this side sent is unacknowledged.
    pub fn settled(&self) -> bool {
        self.link.out.is_empty()
    }

    // ----- internals ---------------------------------------------------------------------------

    fn hold(&mut self, seq: u64, note: &Note) {
        match desk::change(note) {
            Some((c, true)) => {
                self.holdings.entry(c).or_insert(seq);
            }
            Some((c, false)) => {
                self.holdings.remove(&c);
                self.desk_links.remove(&c);
            }
            None => {}
        }
        match *note {
            Note::Offered { conversation, .. } => {
                self.offered.insert(conversation);
            }
            Note::Assigned { conversation, .. } => {
                self.offered.remove(&conversation);
                self.assigned.insert(conversation);
            }
            Note::Released { conversation, .. } => {
                self.offered.remove(&conversation);
                self.assigned.remove(&conversation);
            }
            Note::StatusChanged { status, .. } => self.status = status,
            _ => {}
        }
    }

    fn record(&mut self, event: DeskEvent) {
        self.desk.push((self.desk_next, event));
        self.desk_next += 1;
    }
}
