//! The agent side: one signed-in agent's desk. It owns the agent's status as the agent (or a
//! supervisor acting on it) set it, what the agent holds as the router told it, and the
//! router's answers to its commands. Agent commands enter here and go to the router side on
//! the agent's link ([`FromAgent`]); the router stays the single writer of capacity and
//! decides every one of them, and its decisions about the agent come back on the same link
//! ([`ToAgent`]). The desk's event stream is not written here: each entry is written by the
//! side that made it, in that side's own batch ([`desk`]).
//!
//! Nothing here decides routing: a command is forwarded as it is (no check of what the agent
//! holds, which is the router's rule and may be a message ahead of this side's view), and a
//! refusal comes back with the reason the router gave.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::desk::{self, DeskIn};
use super::link::Link;
use super::{AgentEnvelope, FromAgent, ToAgent};
use crate::engine::Note;
use crate::ids::{AgentId, ConversationId};
use crate::router::{AgentStatus, StatusCause};

type AgentLink = Link<FromAgent, ToAgent>;

/// How many refusals an agent side remembers (in its row), for [`AgentSide::refusal`].
pub const KEEP_REFUSALS: usize = 64;

/// The agent side of one agent. Serializable: a snapshot of it is its durable state (status,
/// holdings, the router's answers and the link).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSide {
    agent: AgentId,
    epoch: u64,
    status: AgentStatus,
    offered: BTreeSet<ConversationId>,
    assigned: BTreeSet<ConversationId>,
    link: AgentLink,
    /// Unused: the desk stream's next number when this side numbered it (kept where it is, the
    /// row's encoding is by position).
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
    /// What it holds, since which of the router's messages (the holdings' names, as the
    /// router side tells its conversation sides: [`super::Holding`]).
    #[serde(default)]
    holdings: BTreeMap<ConversationId, u64>,
    /// Unused: desk links of a row written before ([`desk`]); dropped when read.
    #[serde(default)]
    desk_links: BTreeMap<ConversationId, DeskIn>,
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
            holdings: BTreeMap::new(),
            desk_links: BTreeMap::new(),
        }
    }

    /// Starts a new incarnation, before anything is sent.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.desk_links.clear();
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

    // ----- commands ----------------------------------------------------------------------------

    /// Sets the status at once (the desk shows it) and tells the router. Returns the command's
    /// number on the link, which a [`super::DeskEvent::Refused`] names.
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

    /// An envelope from the router side: the messages it completes are applied in order.
    pub fn receive(&mut self, envelope: AgentEnvelope<ToAgent>) {
        let first = self.link.inbox.applied_below();
        let ready = self.link.receive(envelope.epoch, envelope.body);
        for (seq, message) in (first..).zip(ready) {
            match message {
                ToAgent::Decided { notes } => {
                    for note in notes {
                        self.hold(seq, &note);
                    }
                }
                ToAgent::Refused { command, reason, status, kind } => {
                    // A refused status change leaves the router's status standing.
                    if command == self.last_status {
                        self.status = status;
                    }
                    self.decided = self.decided.max(command);
                    self.refusals.insert(command, reason);
                    if let Some(kind) = kind {
                        self.refusal_kinds.insert(command, kind);
                    }
                    while self.refusals.len() > KEEP_REFUSALS {
                        if let Some((oldest, _)) = self.refusals.pop_first() {
                            self.refusal_kinds.remove(&oldest);
                            self.refusals_from = oldest + 1;
                        }
                    }
                }
                ToAgent::Done { command } => self.decided = self.decided.max(command),
                // The router wrote them on the desk.
                ToAgent::Unaccepted { .. } => {}
            }
        }
    }

    /// Since which of the router's messages this agent holds a conversation (the name of the
    /// holding), if it does.
    pub fn holding(&self, conversation: ConversationId) -> Option<u64> {
        self.holdings.get(&conversation).copied()
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
}
