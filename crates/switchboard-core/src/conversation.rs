//! One conversation (SPEC §2): its state, every transition with time and cause, the message
//! bookkeeping that budgets and timers read, and its deadlines (SPEC §5) as plain state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::config::RatingCredit;
use crate::engine::{Actor, Event};
use crate::error::Error;
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::queue::Priority;
use crate::time::Timestamp;

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Hosted by the bot, before transfer to a human.
    Bot,
    /// Waiting, not accepted: the unaccepted list.
    Queued,
    /// Reserved for one agent who must accept.
    Offered,
    /// Being served.
    Assigned,
    Ended,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Bot => "bot",
            State::Queued => "queued",
            State::Offered => "offered",
            State::Assigned => "assigned",
            State::Ended => "ended",
        }
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Opened by a customer message (or the customer opening the service).
    Opened,
    /// The customer asked for a human.
    TransferToHuman,
    /// The router placed it.
    Routed,
    Accepted,
    Picked,
    Declined,
    OfferTimedOut,
    Transferred,
    /// Its agent signed out (offer withdrawn, or the grace period ran out).
    AgentOffline,
    EndedByAgent,
    EndedBySupervisor,
    EndedInBatch,
    IdleTimeout,
    CustomerNoResponse,
    ReplyWindowClosed,
    ChannelClosed,
    /// A group's overflow rule moved it to another group's queue (`router/overflow.rs`).
    Overflowed,
    /// A full or overlong queue refused it; it ended with the `queue_full` reply.
    QueueFull,
    /// Its group was closed (business hours) with the `end` policy; it ended with the
    /// `closed` reply.
    Closed,
}

/// A recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Timestamp,
    pub from: Option<State>,
    pub to: State,
    pub cause: Cause,
    /// The agent the conversation went to (offered, assigned), if any.
    pub agent: Option<AgentId>,
}

/// A customer's rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub score: u8,
    pub comment: String,
    pub credited: Vec<AgentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub customer: CustomerId,
    pub channel: Channel,
    pub group: GroupId,
    pub priority: Priority,
    pub state: State,
    /// The agent it is offered or assigned to.
    pub agent: Option<AgentId>,
    /// Every agent that served it, in order (history visibility, rating credit).
    pub served_by: Vec<AgentId>,
    /// Bot hosting (托管) of an assigned conversation.
    pub bot_hosting: bool,
    pub transitions: Vec<Transition>,
    pub opened_at: Timestamp,
    pub assigned_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// It waited in a queue since it last left an agent (auto-accept reply rule).
    pub waited_in_queue: bool,

    pub customer_messages: u32,
    pub agent_messages: u32,
    pub auto_messages: u32,
    pub first_response_at: Option<Timestamp>,
    pub last_customer_at: Option<Timestamp>,
    /// Last message written by a human agent.
    pub last_agent_at: Option<Timestamp>,
    /// Last message from the service side, automatic replies included.
    pub last_service_at: Option<Timestamp>,
    /// First customer message not yet answered by a human.
    pub unanswered_since: Option<Timestamp>,
    /// Armed agent-no-response timer: the unanswered message it counts from.
    pub agent_no_response_from: Option<Timestamp>,
    pub customer_no_response_sent: bool,
    pub alert_sent: bool,
    /// Service messages since the customer last wrote (channel budgets).
    pub consecutive_service: u32,
    pub last_queue_reply_at: Option<Timestamp>,
    pub last_offline_reply_at: Option<Timestamp>,
    /// When the agent last read the conversation.
    pub read_at: Option<Timestamp>,
    pub rating: Option<Rating>,
}

impl Conversation {
    pub fn open(
        id: ConversationId,
        customer: CustomerId,
        channel: Channel,
        group: GroupId,
        priority: Priority,
        now: Timestamp,
    ) -> Self {
        Conversation {
            id,
            customer,
            channel,
            group,
            priority,
            state: State::Bot,
            agent: None,
            served_by: Vec::new(),
            bot_hosting: false,
            transitions: Vec::new(),
            opened_at: now,
            assigned_at: None,
            ended_at: None,
            waited_in_queue: false,
            customer_messages: 0,
            agent_messages: 0,
            auto_messages: 0,
            first_response_at: None,
            last_customer_at: None,
            last_agent_at: None,
            last_service_at: None,
            unanswered_since: None,
            agent_no_response_from: None,
            customer_no_response_sent: false,
            alert_sent: false,
            consecutive_service: 0,
            last_queue_reply_at: None,
            last_offline_reply_at: None,
            read_at: None,
            rating: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state != State::Ended
    }

    /// Ever accepted by an agent (decides retention).
    pub fn accepted(&self) -> bool {
        !self.served_by.is_empty()
    }

    /// When retention deletes an ended conversation, counted from its end (SPEC §7).
    pub fn purge_at(&self, t: &Thresholds) -> Option<Timestamp> {
        let keep = if self.accepted() { t.retention_accepted } else { t.retention_unaccepted };
        self.ended_at.map(|ended| ended + keep)
    }

    /// Up to which moment `viewer` may read the transcript (SPEC §7): the current agent and
    /// supervisors see everything (`Some(None)`); an agent that served earlier sees up to when
    /// it handed over; anyone else sees nothing (`None`). Holds for archived conversations too.
    pub fn visible_until(&self, viewer: Actor) -> Option<Option<Timestamp>> {
        match viewer {
            Actor::Supervisor(_) | Actor::System => Some(None),
            Actor::Agent(a) if self.agent == Some(a) && self.is_open() => Some(None),
            Actor::Agent(a) => {
                // The end of this agent's last stint.
                let mut held = false;
                let mut until = None;
                for t in &self.transitions {
                    if t.agent == Some(a) && t.to == State::Assigned {
                        held = true;
                    } else if held && t.agent != Some(a) {
                        until = Some(t.at);
                        held = false;
                    }
                }
                if held { Some(None) } else { until.map(Some) }
            }
        }
    }

    /// The customer rates the conversation (any state, an archived one too), if an agent
    /// served it; who is credited follows the tenant's setting (SPEC §8).
    pub fn rate(
        &mut self,
        credit: RatingCredit,
        score: u8,
        comment: &str,
    ) -> crate::error::Result<Event> {
        if !(1..=5).contains(&score) {
            return Err(Error::InvalidArgument(format!("score: must be 1 to 5, got {score}")));
        }
        if comment.len() > crate::engine::MAX_MESSAGE_TEXT {
            return Err(Error::InvalidArgument(format!(
                "comment: longer than {} bytes",
                crate::engine::MAX_MESSAGE_TEXT
            )));
        }
        if self.served_by.is_empty() {
            return Err(Error::InvalidTransition {
                conversation: self.id,
                state: self.state,
                action: "rate (no agent served it)",
            });
        }
        let credited = match credit {
            RatingCredit::AllServed => {
                let mut all = self.served_by.clone();
                all.sort();
                all.dedup();
                all
            }
            RatingCredit::LastOnly => self.served_by.last().copied().into_iter().collect(),
        };
        self.rating =
            Some(Rating { score, comment: comment.to_owned(), credited: credited.clone() });
        Ok(Event::Rated { conversation: self.id, score, credited })
    }

    /// Records a transition; `agent` is where the conversation now is, if with an agent.
    pub fn transition(&mut self, at: Timestamp, to: State, cause: Cause, agent: Option<AgentId>) {
        let from = self.transitions.last().map(|t| t.to);
        self.transitions.push(Transition { at, from, to, cause, agent });
        self.state = to;
        self.agent = agent;
        match to {
            State::Queued => self.waited_in_queue = true,
            State::Assigned => {
                self.assigned_at = Some(at);
                if let Some(a) = agent
                    && self.served_by.last() != Some(&a)
                {
                    self.served_by.push(a);
                }
                // The agent now owes an answer to a customer who is waiting.
                if self.unanswered_since.is_some() {
                    self.agent_no_response_from = Some(at);
                }
            }
            State::Ended => self.ended_at = Some(at),
            State::Bot | State::Offered => {}
        }
        if to != State::Assigned {
            self.bot_hosting = false;
        }
    }

    /// Bookkeeping for a customer message (the agent-no-response timer is armed by the
    /// engine, which knows whether a keyword or offline reply answered it).
    pub fn record_customer_message(&mut self, now: Timestamp) {
        self.customer_messages += 1;
        self.last_customer_at = Some(now);
        self.consecutive_service = 0;
        self.unanswered_since.get_or_insert(now);
        self.customer_no_response_sent = false;
    }

    /// Bookkeeping for a message from a human agent.
    pub fn record_agent_message(&mut self, now: Timestamp) {
        self.agent_messages += 1;
        self.consecutive_service += 1;
        self.last_agent_at = Some(now);
        self.last_service_at = Some(now);
        self.first_response_at.get_or_insert(now);
        self.unanswered_since = None;
        self.agent_no_response_from = None;
        self.customer_no_response_sent = false;
        self.alert_sent = false;
    }

    /// Bookkeeping for an automatic reply.
    pub fn record_auto_message(&mut self, now: Timestamp) {
        self.auto_messages += 1;
        self.consecutive_service += 1;
        self.last_service_at = Some(now);
    }

    /// Read but not answered: the agent read the last customer message and has not replied.
    pub fn read_unreplied(&self) -> bool {
        match (self.read_at, self.last_customer_at, self.unanswered_since) {
            (Some(read), Some(last), Some(_)) => read >= last,
            _ => false,
        }
    }

    /// The earliest due deadline under these thresholds.
    pub fn next_deadline(&self, t: &Thresholds) -> Option<(Timestamp, Due)> {
        self.deadlines(t).min_by_key(|(at, due)| (*at, *due))
    }

    /// Every pending deadline under these thresholds.
    pub fn deadlines<'a>(
        &'a self,
        t: &'a Thresholds,
    ) -> impl Iterator<Item = (Timestamp, Due)> + 'a {
        let assigned = self.state == State::Assigned;
        let customer_silent_since_agent =
            self.last_agent_at.filter(|a| self.last_customer_at.is_none_or(|c| c < *a));
        let agent_no_response = t
            .agent_no_response
            .zip(self.agent_no_response_from)
            .filter(|_| assigned)
            .map(|(d, from)| (from + d, Due::AgentNoResponse));
        let customer_no_response = t
            .customer_no_response
            .zip(customer_silent_since_agent)
            .filter(|_| assigned && !self.customer_no_response_sent)
            .map(|(d, from)| (from + d, Due::CustomerNoResponse));
        let customer_no_response_end = t
            .customer_no_response_end
            .zip(customer_silent_since_agent)
            .filter(|_| assigned)
            .map(|(d, from)| (from + d, Due::CustomerNoResponseEnd));
        let idle_end = t.idle_end.filter(|_| assigned).map(|d| {
            let last = [self.last_customer_at, self.last_agent_at, self.assigned_at]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(self.opened_at);
            (last + d, Due::IdleEnd)
        });
        let reply_window = (self.is_open() && t.window_ends).then(|| {
            let last = [Some(self.opened_at), self.last_customer_at, self.last_service_at]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(self.opened_at);
            (last + t.reply_window, Due::ReplyWindow)
        });
        let waiting = matches!(self.state, State::Queued | State::Offered | State::Assigned);
        let alert = t
            .unreplied_alert
            .zip(self.unanswered_since)
            .filter(|_| waiting && !self.alert_sent)
            .map(|(d, from)| (from + d, Due::UnrepliedAlert));
        let purge = self.purge_at(t).map(|at| (at, Due::Purge));
        [
            agent_no_response,
            customer_no_response,
            customer_no_response_end,
            idle_end,
            reply_window,
            alert,
            purge,
        ]
        .into_iter()
        .flatten()
    }
}

/// Timer thresholds in force for one conversation, resolved from its levels of settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub agent_no_response: Option<Duration>,
    pub customer_no_response: Option<Duration>,
    pub idle_end: Option<Duration>,
    pub customer_no_response_end: Option<Duration>,
    pub unreplied_alert: Option<Duration>,
    pub reply_window: Duration,
    /// The conversation ends when the window closes (every channel but Messenger, whose late
    /// replies carry a tag instead).
    pub window_ends: bool,
    pub retention_unaccepted: Duration,
    pub retention_accepted: Duration,
}

/// A conversation deadline that has come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Due {
    AgentNoResponse,
    CustomerNoResponse,
    UnrepliedAlert,
    CustomerNoResponseEnd,
    IdleEnd,
    ReplyWindow,
    Purge,
}
