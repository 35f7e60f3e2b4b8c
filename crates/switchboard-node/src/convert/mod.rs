//! Conversions between the public proto types and the core's types, in one place.

pub mod resources;
pub mod settings;
pub mod views;

use std::time::Duration;

use switchboard_core::{AgentStatus, Channel, MessageTag, ReplyKind, State, Timestamp};
use switchboard_proto::v1 as pb;

use crate::error::{Error, Result};

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let ms = t.as_millis();
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Timestamp {
    let ms = t.seconds.max(0) as u64 * 1000 + (t.nanos.max(0) as u64) / 1_000_000;
    Timestamp(ms)
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// A proto duration; negative ones are refused.
pub fn from_duration(field: &str, d: &prost_types::Duration) -> Result<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Error::field(field, "must not be negative"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Serde's snake_case name of a unit enum value ("not_responding", "timed_out" …).
pub fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub fn channel_to_pb(c: Channel) -> pb::Channel {
    match c {
        Channel::Web => pb::Channel::Web,
        Channel::MiniProgram => pb::Channel::MiniProgram,
        Channel::OfficialAccount => pb::Channel::OfficialAccount,
        Channel::Messenger => pb::Channel::Messenger,
        Channel::Email => pb::Channel::Email,
        Channel::App => pb::Channel::App,
    }
}

pub fn channel(field: &str, c: i32) -> Result<Channel> {
    Ok(match pb::Channel::try_from(c) {
        Ok(pb::Channel::Web) => Channel::Web,
        Ok(pb::Channel::MiniProgram) => Channel::MiniProgram,
        Ok(pb::Channel::OfficialAccount) => Channel::OfficialAccount,
        Ok(pb::Channel::Messenger) => Channel::Messenger,
        Ok(pb::Channel::Email) => Channel::Email,
        Ok(pb::Channel::App) => Channel::App,
        _ => {
            return Err(Error::field(
                field,
                "set a channel: CHANNEL_WEB, CHANNEL_MINI_PROGRAM, CHANNEL_OFFICIAL_ACCOUNT, CHANNEL_MESSENGER, CHANNEL_EMAIL or CHANNEL_APP",
            ));
        }
    })
}

pub fn status_to_pb(s: AgentStatus) -> pb::AgentStatus {
    match s {
        AgentStatus::Online => pb::AgentStatus::Online,
        AgentStatus::Busy => pb::AgentStatus::Busy,
        AgentStatus::Away => pb::AgentStatus::Away,
        AgentStatus::Invisible => pb::AgentStatus::Invisible,
        AgentStatus::Offline => pb::AgentStatus::Offline,
    }
}

pub fn status(field: &str, s: i32) -> Result<AgentStatus> {
    Ok(match pb::AgentStatus::try_from(s) {
        Ok(pb::AgentStatus::Online) => AgentStatus::Online,
        Ok(pb::AgentStatus::Busy) => AgentStatus::Busy,
        Ok(pb::AgentStatus::Away) => AgentStatus::Away,
        Ok(pb::AgentStatus::Invisible) => AgentStatus::Invisible,
        Ok(pb::AgentStatus::Offline) => AgentStatus::Offline,
        _ => {
            return Err(Error::field(
                field,
                "set a status: AGENT_STATUS_ONLINE, _BUSY, _AWAY, _INVISIBLE or _OFFLINE",
            ));
        }
    })
}

pub fn state_to_pb(s: State) -> pb::ConversationState {
    match s {
        State::Bot => pb::ConversationState::Bot,
        State::Queued => pb::ConversationState::Queued,
        State::Offered => pb::ConversationState::Offered,
        State::Assigned => pb::ConversationState::Assigned,
        State::Ended => pb::ConversationState::Ended,
    }
}

pub fn tag_to_pb(t: MessageTag) -> pb::MessageTag {
    match t {
        MessageTag::ConfirmedEventUpdate => pb::MessageTag::ConfirmedEventUpdate,
        MessageTag::PostPurchaseUpdate => pb::MessageTag::PostPurchaseUpdate,
        MessageTag::AccountUpdate => pb::MessageTag::AccountUpdate,
    }
}

/// An optional tag: unspecified means none.
pub fn tag(field: &str, t: i32) -> Result<Option<MessageTag>> {
    Ok(match pb::MessageTag::try_from(t) {
        Ok(pb::MessageTag::Unspecified) => None,
        Ok(pb::MessageTag::ConfirmedEventUpdate) => Some(MessageTag::ConfirmedEventUpdate),
        Ok(pb::MessageTag::PostPurchaseUpdate) => Some(MessageTag::PostPurchaseUpdate),
        Ok(pb::MessageTag::AccountUpdate) => Some(MessageTag::AccountUpdate),
        Err(_) => return Err(Error::field(field, format!("unknown message tag {t}"))),
    })
}

pub fn reply_kind(k: ReplyKind) -> pb::ReplyKind {
    match k {
        ReplyKind::AutoAccept => pb::ReplyKind::AutoAccept,
        ReplyKind::Queue => pb::ReplyKind::Queue,
        ReplyKind::AgentNoResponse => pb::ReplyKind::AgentNoResponse,
        ReplyKind::CustomerNoResponse => pb::ReplyKind::CustomerNoResponse,
        ReplyKind::IdleEnd => pb::ReplyKind::IdleEnd,
        ReplyKind::CustomerNoResponseEnd => pb::ReplyKind::CustomerNoResponseEnd,
        ReplyKind::ManualEnd => pb::ReplyKind::ManualEnd,
        ReplyKind::BatchEnd => pb::ReplyKind::BatchEnd,
        ReplyKind::Offline => pb::ReplyKind::Offline,
        ReplyKind::Keyword => pb::ReplyKind::Keyword,
        ReplyKind::MessageReceived => pb::ReplyKind::MessageReceived,
        ReplyKind::OpenService => pb::ReplyKind::OpenService,
    }
}

/// The `event` tag of a core event ("opened", "assigned" …).
pub fn snake_tag(e: &switchboard_core::Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(|t| t.as_str().map(str::to_owned)))
        .unwrap_or_default()
}
