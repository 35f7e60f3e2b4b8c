//! The effect→row translation both writers share: the tenant actor (`apply::emit`, one
//! node) and the mesh's actors (`actors::effects`), so a reply, a transcript row or an
//! integrator event reads the same whichever wrote it. What differs between them is only how
//! they name things ([`Names`]) and how they number stream entries.

use std::time::Duration;

use switchboard_core::engine::Sender;
use switchboard_core::{
    AgentId, Channel, ConversationId, CustomerId, GroupId, MessageTag, Timestamp,
};
use switchboard_proto::v1 as pb;

use crate::convert;

/// The resource names a stream entry or transcript row carries (`tenants/{t}/agents/{a}`…).
/// The tenant actor names from its `TenantState`; a mesh from its `TenantConfig`
/// (`actors::effects::MeshNames`).
pub trait Names {
    /// An agent's resource name; empty for one deleted since.
    fn agent_name(&self, agent: AgentId) -> String;
    /// A group's resource name; empty for one deleted since.
    fn group_name(&self, group: GroupId) -> String;
    fn customer_name(&self, customer: CustomerId) -> String;
    fn conversation_name(&self, conversation: ConversationId) -> String;
}

/// One `Effect::Send` as the customer's channel gateway gets it (`outbox`), its cursor still
/// 0. `estimated_wait` is asked only for a queue reply.
#[allow(clippy::too_many_arguments)]
pub fn outbound_message(
    names: &dyn Names,
    now: Timestamp,
    conversation: ConversationId,
    customer: String,
    channel: Channel,
    text: &str,
    from: Sender,
    tag: Option<MessageTag>,
    estimated_wait: impl FnOnce() -> Option<Duration>,
) -> pb::OutboundMessage {
    let (agent, reply_kind) = match from {
        Sender::Agent(a) => (names.agent_name(a), pb::ReplyKind::Unspecified),
        Sender::Auto(k) => (String::new(), convert::reply_kind(k)),
    };
    pb::OutboundMessage {
        cursor: 0,
        at: Some(convert::timestamp(now)),
        conversation: names.conversation_name(conversation),
        customer,
        channel: convert::channel_to_pb(channel) as i32,
        text: text.to_owned(),
        agent,
        reply_kind: reply_kind as i32,
        tag: tag.map_or(pb::MessageTag::Unspecified, convert::tag_to_pb) as i32,
        estimated_wait: (reply_kind == pb::ReplyKind::Queue)
            .then(estimated_wait)
            .flatten()
            .map(convert::duration),
    }
}

/// The transcript's `sender` of a message sent to the customer.
pub fn sender_of(from: Sender) -> &'static str {
    if matches!(from, Sender::Agent(_)) { "agent" } else { "automatic" }
}

/// A transcript message numbered `seq` in its conversation.
pub fn transcript_message(
    seq: u64,
    now: Timestamp,
    sender: &str,
    agent: &str,
    reply_kind: pb::ReplyKind,
    text: &str,
    tag: i32,
) -> pb::Message {
    pb::Message {
        seq,
        at: Some(convert::timestamp(now)),
        sender: sender.to_owned(),
        agent: agent.to_owned(),
        reply_kind: reply_kind as i32,
        text: text.to_owned(),
        tag,
    }
}
