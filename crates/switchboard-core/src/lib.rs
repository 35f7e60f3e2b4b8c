//! The routing domain of Switchboard, pure.
//!
//! A chat contact center decides which conversation waits where, which agent gets it, which
//! automatic replies go out and when a conversation ends. This crate holds every one of those
//! rules (SPEC §2–§5) as deterministic state machines: functions take `now` and return effects
//! (send this text, notify that agent, emit this event) instead of doing IO. Timers are
//! deadlines held in state. Nothing here knows about tokio, gRPC, storage or metrics; the node
//! crate's actors execute the effects.
//!
//! - [`queue`]: the order-statistics queue behind exact O(log n) queue positions.
//! - [`router`]: skill-group queues, agent availability, matching, offers, affinity, policies.
//! - [`conversation`]: lifecycle, transitions, message bookkeeping, deadlines.
//! - [`replies`]: automatic-reply precedence, rules, placeholders, budgets.
//! - [`engine`]: one tenant's domain joining all of the above, synchronously.
//! - [`login`]: an agent's first sign-in of the day.
//! - [`mesh`]: the same two sides, router and conversation, talking through messages that may
//!   be delayed, reordered, duplicated or lost (the protocol conversation actors use).

pub mod channel;
pub mod config;
pub mod conversation;
pub mod engine;
pub mod error;
pub mod hours;
pub mod ids;
pub mod login;
pub mod mesh;
pub mod queue;
pub mod replies;
pub mod router;
pub mod session;
pub mod time;

pub use channel::{Channel, MessageTag};
pub use conversation::{Cause, Conversation, State};
pub use engine::customer_message::CustomerMessage;
pub use engine::{Actor, Effect, Ended, Engine, Event, Note, Outcome, Selection, Sender, Target};
pub use error::{Code, Error, Result};
pub use ids::{AgentId, ConversationId, CustomerId, GroupId};
pub use replies::ReplyKind;
pub use router::AgentStatus;
pub use time::Timestamp;
