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

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::link::Link;
use super::{AgentEnvelope, FromAgent, ToAgent};
use crate::engine::Note;
use crate::ids::{AgentId, ConversationId};
use crate::router::{AgentStatus, StatusCause};

type AgentLink = Link<FromAgent, ToAgent>;

/// One entry of the agent's desk stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeskEvent {
    /// A decision of the router about this agent, as the note the desk shows.
    Note(Note),
    /// The router refused the agent's command `command` (its sequence number on the link).
    Refused { command: u64, reason: String },
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
    /// Desk events of this step, not yet handed to the shell (volatile: a step lost in a
    /// crash is applied again from the router's resent messages, with the same numbers).
    #[serde(skip)]
    desk: Vec<(u64, DeskEvent)>,
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
            desk: Vec::new(),
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

    // ----- the link ----------------------------------------------------------------------------

    /// An envelope from the router side: the messages it completes are applied in order, each
    /// fact a desk event.
    pub fn receive(&mut self, envelope: AgentEnvelope<ToAgent>) {
        for message in self.link.receive(envelope.epoch, envelope.body) {
            match message {
                ToAgent::Decided { notes } => {
                    for note in notes {
                        self.hold(&note);
                        self.record(DeskEvent::Note(note));
                    }
                }
                ToAgent::Refused { command, reason, status } => {
                    // A refused status change leaves the router's status standing.
                    if command == self.last_status {
                        self.status = status;
                    }
                    self.record(DeskEvent::Refused { command, reason });
                }
            }
        }
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

    fn hold(&mut self, note: &Note) {
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
