//! Conversions between the public proto types and the core's types, in one place.

pub mod explain;
pub mod mask;
pub mod refusal;
pub mod resources;
pub mod settings;
pub mod variant;
pub mod views;

use std::time::Duration;

use switchboard_core::{AgentStatus, Channel, MessageTag, ReplyKind, State, Timestamp};
use switchboard_proto::v1 as pb;

use crate::error::{Error, Result};

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let ms = t.as_millis();
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// Latest `google.protobuf.Timestamp`: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// Longest `google.protobuf.Duration`: about 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

fn check_nanos(field: &str, nanos: i32) -> Result<()> {
    if !(0..NANOS_PER_SECOND).contains(&nanos) {
        return Err(Error::field(field, format!("nanos must be 0 to 999999999, got {nanos}")));
    }
    Ok(())
}

/// A client's timestamp: from the epoch (no time Switchboard keeps is earlier) to the end of
/// year 9999, the type's documented range; anything else is refused naming `field`.
pub fn from_timestamp(field: &str, t: &prost_types::Timestamp) -> Result<Timestamp> {
    check_nanos(field, t.nanos)?;
    if !(0..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds) {
        return Err(Error::field(
            field,
            format!(
                "seconds must be 0 (1970-01-01T00:00:00Z) to {MAX_TIMESTAMP_SECONDS} \
                 (9999-12-31T23:59:59Z), got {}",
                t.seconds
            ),
        ));
    }
    // Both in range: at most 253,402,300,799,999 ms, far from overflowing.
    Ok(Timestamp(t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000))
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// A client's duration: negative ones are refused, and so is anything outside the type's
/// documented range (seconds up to about 10,000 years, nanos below one second).
pub fn from_duration(field: &str, d: &prost_types::Duration) -> Result<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Error::field(field, "must not be negative"));
    }
    check_nanos(field, d.nanos)?;
    if d.seconds > MAX_DURATION_SECONDS {
        return Err(Error::field(
            field,
            format!(
                "seconds must be at most {MAX_DURATION_SECONDS} (about 10,000 years), got {}",
                d.seconds
            ),
        ));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Serde's snake_case name of a unit enum value ("not_responding", "timed_out" …); empty for
/// anything that is not a string in JSON.
pub fn snake<T: serde::Serialize>(v: &T) -> String {
    match variant::name(v) {
        Some(name) => name.to_owned(),
        // Not a unit variant (a value serialised as a string some other way).
        None => serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
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
        ReplyKind::QueueFull => pb::ReplyKind::QueueFull,
        ReplyKind::Closed => pb::ReplyKind::Closed,
    }
}

/// The `event` tag of a core event ("opened", "assigned" …): `Event::kind`, which debug
/// builds (every test) check against the tag serde writes.
pub fn snake_tag(e: &switchboard_core::Event) -> &'static str {
    let kind = e.kind();
    debug_assert_eq!(
        serde_json::to_value(e).ok().and_then(|v| v.get("event")?.as_str().map(str::to_owned)),
        Some(kind.to_owned()),
        "Event::kind disagrees with serde's tag"
    );
    kind
}

#[cfg(test)]
mod tests {
    use prost_types::{Duration as PbDuration, Timestamp as PbTimestamp};

    use super::*;

    fn refused_field(e: Error) -> (String, String) {
        match e {
            Error::Field { field, message } => (field, message),
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn timestamps_convert_within_range_and_refuse_the_rest() {
        let t = |seconds, nanos| PbTimestamp { seconds, nanos };
        assert_eq!(from_timestamp("to", &t(0, 0)).unwrap(), Timestamp(0));
        assert_eq!(
            from_timestamp("to", &t(1_700_000_000, 999_999_999)).unwrap(),
            Timestamp(1_700_000_000_999)
        );
        let last = from_timestamp("to", &t(MAX_TIMESTAMP_SECONDS, 999_999_999)).unwrap();
        assert_eq!(last, Timestamp(253_402_300_799_999));
        assert_eq!(timestamp(last), t(MAX_TIMESTAMP_SECONDS, 999_000_000));
        for bad in [
            t(-1, 0),
            t(i64::MIN, 0),
            t(MAX_TIMESTAMP_SECONDS + 1, 0),
            t(i64::MAX, 0),
            t(0, -1),
            t(0, 1_000_000_000),
            t(0, i32::MAX),
        ] {
            let (field, message) = refused_field(from_timestamp("from", &bad).unwrap_err());
            assert_eq!(field, "from", "{bad:?}: {message}");
        }
    }

    #[test]
    fn durations_convert_within_range_and_refuse_the_rest() {
        let d = |seconds, nanos| PbDuration { seconds, nanos };
        assert_eq!(
            from_duration("threshold", &d(20, 500_000_000)).unwrap(),
            Duration::from_millis(20_500)
        );
        assert_eq!(
            from_duration("threshold", &d(MAX_DURATION_SECONDS, 999_999_999)).unwrap(),
            Duration::new(MAX_DURATION_SECONDS as u64, 999_999_999)
        );
        for bad in [
            d(-1, 0),
            d(0, -1),
            d(0, 1_000_000_000),
            d(1, i32::MAX),
            d(MAX_DURATION_SECONDS + 1, 0),
            d(i64::MAX, 999_999_999),
        ] {
            let (field, message) = refused_field(from_duration("threshold", &bad).unwrap_err());
            assert_eq!(field, "threshold", "{bad:?}: {message}");
        }
    }
}
