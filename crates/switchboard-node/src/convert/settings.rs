//! Administrator settings both ways: the proto admin messages and the core's `config` types.
//!
//! Proto → core fills what the caller left unset with the core's defaults, checks the limits
//! the core does not know (channel list, group ids), then runs the core's `validate()` and
//! re-roots its errors at the request field, so a caller always learns the exact path to fix
//! (`settings.channels[1].replies.queue.rules[0].texts`). Core → proto writes every value
//! explicitly, so reading settings back shows the defaults in force.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_core::config::{
    AutoAcceptReply, GroupPolicy, KeywordRule, MessageReceivedReply, NotRespondingPolicy,
    OfferMode, OfflineReply, QueueReply, QueueRule, RatingCredit, ReplySettings, Strategy,
    TenantSettings, TimedReply, WhenClosed, WrapUp,
};
use switchboard_core::{AgentStatus, Channel};
use switchboard_proto::v1 as pb;

use super::{channel, channel_to_pb, duration, from_duration, status, status_to_pb};
use crate::error::{Error, Result};
use crate::state::TenantState;

/// Accept timeout of `OFFER_MODE_OFFER` when the caller gives none.
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most keyword rules a tenant may hold: each customer message is matched against all.
pub const MAX_KEYWORD_RULES: usize = 200;

// ----- tenant ------------------------------------------------------------------------------

/// The tenant's settings from the request. Groups named here must already exist.
pub fn tenant_settings(state: &TenantState, s: &pb::TenantSettings) -> Result<TenantSettings> {
    let defaults = TenantSettings::default();
    let replies = reply_settings("settings.replies", s.replies.as_ref())?;

    let mut channel_replies = BTreeMap::new();
    let mut channel_groups = BTreeMap::new();
    let mut reply_windows = BTreeMap::new();
    let mut seen = Vec::new();
    for (i, c) in s.channels.iter().enumerate() {
        let field = format!("settings.channels[{i}]");
        let ch = channel(&format!("{field}.channel"), c.channel)?;
        if seen.contains(&ch) {
            return Err(Error::field(
                &format!("{field}.channel"),
                format!("{} is listed twice; merge the two entries", ch.as_str()),
            ));
        }
        seen.push(ch);
        if !c.group.is_empty() {
            channel_groups.insert(ch, state.group_ref(&format!("{field}.group"), &c.group)?);
        }
        if let Some(r) = &c.replies {
            channel_replies.insert(ch, reply_settings(&format!("{field}.replies"), Some(r))?);
        }
        if let Some(w) = &c.reply_window {
            let field = format!("{field}.reply_window");
            let w = from_duration(&field, w)?;
            if w.is_zero() {
                return Err(Error::field(
                    &field,
                    "must be greater than zero; leave it unset for the platform's window",
                ));
            }
            reply_windows.insert(ch, w);
        }
    }

    if s.keywords.len() > MAX_KEYWORD_RULES {
        return Err(Error::field(
            "settings.keywords",
            format!("at most {MAX_KEYWORD_RULES} keyword rules, got {}", s.keywords.len()),
        ));
    }
    let human_reserve = s.human_reserve.unwrap_or(defaults.human_reserve);
    // A reserve as large as the biggest budget already leaves automatic replies nothing.
    let largest_budget = Channel::ALL.iter().filter_map(|c| c.reply_budget()).max().unwrap_or(0);
    if human_reserve > largest_budget {
        return Err(Error::field(
            "settings.human_reserve",
            format!("at most {largest_budget} (the largest channel budget), got {human_reserve}"),
        ));
    }
    let not_responding_status = match s.not_responding_status {
        0 => defaults.not_responding.status,
        n => status("settings.not_responding_status", n)?,
    };
    if not_responding_status == AgentStatus::Online {
        return Err(Error::field(
            "settings.not_responding_status",
            "must take the agent out of routing: AGENT_STATUS_BUSY, _AWAY, _INVISIBLE or _OFFLINE",
        ));
    }
    let rating_credit = match pb::RatingCredit::try_from(s.rating_credit) {
        Ok(pb::RatingCredit::Unspecified | pb::RatingCredit::AllServed) => RatingCredit::AllServed,
        Ok(pb::RatingCredit::LastOnly) => RatingCredit::LastOnly,
        Err(_) => {
            return Err(Error::field(
                "settings.rating_credit",
                "use RATING_CREDIT_ALL_SERVED or RATING_CREDIT_LAST_ONLY",
            ));
        }
    };
    let default_group = if s.default_group.is_empty() {
        None
    } else {
        Some(state.group_ref("settings.default_group", &s.default_group)?)
    };

    let mut customer_group_priorities = BTreeMap::new();
    for (g, p) in &s.customer_group_priorities {
        let p = u8::try_from(*p).map_err(|_| {
            Error::field(
                &format!("settings.customer_group_priorities[{g:?}]"),
                format!("must be 0 to 255, got {p}"),
            )
        })?;
        customer_group_priorities.insert(g.clone(), p);
    }
    crate::calendar::check_zone("settings.time_zone", &s.time_zone)?;

    let settings = TenantSettings {
        transfer_to_human: s.transfer_to_human,
        replies,
        channel_replies,
        keywords: s
            .keywords
            .iter()
            .map(|k| KeywordRule { keywords: k.keywords.clone(), texts: k.texts.clone() })
            .collect(),
        message_received: s.message_received.as_ref().map(|m| MessageReceivedReply {
            texts: m.texts.clone(),
            also_in_session: m.also_in_session,
        }),
        open_service: s.open_service.as_ref().map(|t| t.texts.clone()),
        human_reserve,
        unreplied_alert: optional("settings.unreplied_alert", s.unreplied_alert.as_ref())?,
        retention_unaccepted: or_default(
            "settings.retention_unaccepted",
            s.retention_unaccepted.as_ref(),
            defaults.retention_unaccepted,
        )?,
        retention_accepted: or_default(
            "settings.retention_accepted",
            s.retention_accepted.as_ref(),
            defaults.retention_accepted,
        )?,
        offline_grace: or_default(
            "settings.offline_grace",
            s.offline_grace.as_ref(),
            defaults.offline_grace,
        )?,
        not_responding: NotRespondingPolicy {
            after_misses: s.not_responding_after.unwrap_or(defaults.not_responding.after_misses),
            status: not_responding_status,
        },
        rating_credit,
        default_group,
        channel_groups,
        reply_windows,
        customer_group_priorities,
        time_zone: s.time_zone.clone(),
        hours: s.hours.as_ref().map(|h| crate::calendar::hours("settings.hours", h)).transpose()?,
    };
    // The reply levels were checked above with their own paths; this covers the rest.
    settings.validate().map_err(|e| scoped("settings", e))?;
    Ok(settings)
}

pub fn tenant_settings_to_pb(state: &TenantState, s: &TenantSettings) -> pb::TenantSettings {
    let group_name = |g: &switchboard_core::GroupId| state.group_name(*g);
    let mut channels: Vec<Channel> = s
        .channel_replies
        .keys()
        .chain(s.channel_groups.keys())
        .chain(s.reply_windows.keys())
        .copied()
        .collect();
    channels.sort();
    channels.dedup();
    pb::TenantSettings {
        transfer_to_human: s.transfer_to_human,
        replies: Some(reply_settings_to_pb(&s.replies)),
        channels: channels
            .into_iter()
            .map(|c| pb::ChannelSettings {
                channel: channel_to_pb(c) as i32,
                group: s.channel_groups.get(&c).map(group_name).unwrap_or_default(),
                replies: s.channel_replies.get(&c).map(reply_settings_to_pb),
                reply_window: s.reply_windows.get(&c).copied().map(duration),
            })
            .collect(),
        keywords: s
            .keywords
            .iter()
            .map(|k| pb::KeywordRule { keywords: k.keywords.clone(), texts: k.texts.clone() })
            .collect(),
        message_received: s.message_received.as_ref().map(|m| pb::MessageReceivedReply {
            texts: m.texts.clone(),
            also_in_session: m.also_in_session,
        }),
        open_service: s.open_service.as_ref().map(|t| pb::Texts { texts: t.clone() }),
        human_reserve: Some(s.human_reserve),
        unreplied_alert: s.unreplied_alert.map(duration),
        retention_unaccepted: Some(duration(s.retention_unaccepted)),
        retention_accepted: Some(duration(s.retention_accepted)),
        offline_grace: Some(duration(s.offline_grace)),
        not_responding_after: Some(s.not_responding.after_misses),
        not_responding_status: status_to_pb(s.not_responding.status) as i32,
        rating_credit: match s.rating_credit {
            RatingCredit::AllServed => pb::RatingCredit::AllServed,
            RatingCredit::LastOnly => pb::RatingCredit::LastOnly,
        } as i32,
        default_group: s.default_group.as_ref().map(group_name).unwrap_or_default(),
        customer_group_priorities: s
            .customer_group_priorities
            .iter()
            .map(|(g, p)| (g.clone(), u32::from(*p)))
            .collect(),
        time_zone: s.time_zone.clone(),
        hours: s.hours.as_ref().map(crate::calendar::hours_to_pb),
    }
}

// ----- automatic replies -------------------------------------------------------------------

/// One level of automatic replies; `field` is where it sits in the request
/// (`settings.replies`, `replies`, `settings.channels[2].replies`). Unset means no kind is
/// configured at this level.
pub fn reply_settings(field: &str, r: Option<&pb::ReplySettings>) -> Result<ReplySettings> {
    let Some(r) = r else {
        return Ok(ReplySettings::default());
    };
    // Unset durations are zero: no minimum interval; a zero `after` is refused by validate.
    let dur = |name: &str, d: Option<&prost_types::Duration>| {
        d.map_or(Ok(Duration::ZERO), |d| from_duration(&format!("{field}.{name}"), d))
    };
    let timed = |name: &str, t: Option<&pb::TimedReply>| -> Result<Option<TimedReply>> {
        t.map(|t| {
            Ok(TimedReply {
                after: dur(&format!("{name}.after"), t.after.as_ref())?,
                texts: t.texts.clone(),
            })
        })
        .transpose()
    };
    let settings = ReplySettings {
        auto_accept: r.auto_accept.as_ref().map(|a| AutoAcceptReply {
            texts: a.texts.clone(),
            also_from_queue: a.also_from_queue,
        }),
        queue: r
            .queue
            .as_ref()
            .map(|q| -> Result<QueueReply> {
                Ok(QueueReply {
                    rules: q
                        .rules
                        .iter()
                        .map(|r| QueueRule { above: r.above, texts: r.texts.clone() })
                        .collect(),
                    min_interval: dur("queue.min_interval", q.min_interval.as_ref())?,
                })
            })
            .transpose()?,
        agent_no_response: timed("agent_no_response", r.agent_no_response.as_ref())?,
        customer_no_response: timed("customer_no_response", r.customer_no_response.as_ref())?,
        idle_end: timed("idle_end", r.idle_end.as_ref())?,
        customer_no_response_end: timed(
            "customer_no_response_end",
            r.customer_no_response_end.as_ref(),
        )?,
        manual_end: r.manual_end.as_ref().map(|t| t.texts.clone()),
        batch_end: r.batch_end.as_ref().map(|t| t.texts.clone()),
        offline: r
            .offline
            .as_ref()
            .map(|o| -> Result<OfflineReply> {
                Ok(OfflineReply {
                    texts: o.texts.clone(),
                    min_interval: dur("offline.min_interval", o.min_interval.as_ref())?,
                })
            })
            .transpose()?,
        queue_full: r.queue_full.as_ref().map(|t| t.texts.clone()),
        closed: r.closed.as_ref().map(|t| t.texts.clone()),
    };
    settings.validate().map_err(|e| scoped(field, e))?;
    Ok(settings)
}

pub fn reply_settings_to_pb(r: &ReplySettings) -> pb::ReplySettings {
    let timed = |t: &Option<TimedReply>| {
        t.as_ref()
            .map(|t| pb::TimedReply { after: Some(duration(t.after)), texts: t.texts.clone() })
    };
    let texts = |t: &Option<Vec<String>>| t.as_ref().map(|t| pb::Texts { texts: t.clone() });
    pb::ReplySettings {
        auto_accept: r.auto_accept.as_ref().map(|a| pb::AutoAcceptReply {
            texts: a.texts.clone(),
            also_from_queue: a.also_from_queue,
        }),
        queue: r.queue.as_ref().map(|q| pb::QueueReply {
            rules: q
                .rules
                .iter()
                .map(|r| pb::QueueRule { above: r.above, texts: r.texts.clone() })
                .collect(),
            min_interval: Some(duration(q.min_interval)),
        }),
        agent_no_response: timed(&r.agent_no_response),
        customer_no_response: timed(&r.customer_no_response),
        idle_end: timed(&r.idle_end),
        customer_no_response_end: timed(&r.customer_no_response_end),
        manual_end: texts(&r.manual_end),
        batch_end: texts(&r.batch_end),
        offline: r.offline.as_ref().map(|o| pb::OfflineReply {
            texts: o.texts.clone(),
            min_interval: Some(duration(o.min_interval)),
        }),
        queue_full: texts(&r.queue_full),
        closed: texts(&r.closed),
    }
}

// ----- routing policy ----------------------------------------------------------------------

/// A group's routing policy. An unset policy is the core default (least occupied,
/// auto-accept, dedicated agent waited for 5 min, last agent for 60 s). Within a set policy
/// `last_agent_preference` switches the last-agent preference, waiting `last_agent_timeout`
/// (60 s when unset); a timeout with the preference off is a contradiction and refused, so
/// no reading of the two fields is ambiguous. `offer_timeout` only matters in
/// `OFFER_MODE_OFFER` (30 s when unset).
pub fn routing_policy(field: &str, p: Option<&pb::RoutingPolicy>) -> Result<GroupPolicy> {
    let defaults = GroupPolicy::default();
    let Some(p) = p else {
        return Ok(defaults);
    };
    let strategy = match pb::Strategy::try_from(p.strategy) {
        Ok(pb::Strategy::Unspecified) => defaults.strategy,
        Ok(pb::Strategy::LeastOccupied) => Strategy::LeastOccupied,
        Ok(pb::Strategy::LongestIdle) => Strategy::LongestIdle,
        Ok(pb::Strategy::RoundRobin) => Strategy::RoundRobin,
        Ok(pb::Strategy::BestProficiency) => Strategy::BestProficiency,
        Err(_) => {
            return Err(Error::field(
                &format!("{field}.strategy"),
                "use STRATEGY_LEAST_OCCUPIED, STRATEGY_LONGEST_IDLE, STRATEGY_ROUND_ROBIN or STRATEGY_BEST_PROFICIENCY",
            ));
        }
    };
    let offer = match pb::OfferMode::try_from(p.offer_mode) {
        Ok(pb::OfferMode::Unspecified) => defaults.offer,
        Ok(pb::OfferMode::AutoAccept) => OfferMode::AutoAccept,
        Ok(pb::OfferMode::Pull) => OfferMode::Pull,
        Ok(pb::OfferMode::Offer) => {
            let field = format!("{field}.offer_timeout");
            let timeout = or_default(&field, p.offer_timeout.as_ref(), DEFAULT_OFFER_TIMEOUT)?;
            if timeout.is_zero() {
                return Err(Error::field(
                    &field,
                    "must be greater than zero: agents need time to accept",
                ));
            }
            OfferMode::Offer { timeout }
        }
        Err(_) => {
            return Err(Error::field(
                &format!("{field}.offer_mode"),
                "use OFFER_MODE_AUTO_ACCEPT, OFFER_MODE_OFFER or OFFER_MODE_PULL",
            ));
        }
    };
    let dedicated_timeout = or_default(
        &format!("{field}.dedicated_timeout"),
        p.dedicated_timeout.as_ref(),
        defaults.dedicated_timeout,
    )?;
    let last_agent_timeout = match (&p.last_agent_timeout, p.last_agent_preference) {
        (Some(d), true) => Some(from_duration(&format!("{field}.last_agent_timeout"), d)?),
        (None, true) => defaults.last_agent_timeout,
        (None, false) => None,
        (Some(_), false) => {
            return Err(Error::field(
                &format!("{field}.last_agent_timeout"),
                "is set but last_agent_preference is false: set last_agent_preference to true to prefer the last agent for that long, or leave last_agent_timeout unset to turn the preference off",
            ));
        }
    };
    let wrap_up = match optional(&format!("{field}.wrap_up"), p.wrap_up.as_ref())? {
        Some(duration) if !duration.is_zero() => {
            Some(WrapUp { duration, can_end_early: p.wrap_up_can_end_early })
        }
        _ if p.wrap_up_can_end_early => {
            return Err(Error::field(
                &format!("{field}.wrap_up_can_end_early"),
                "is true but wrap_up is unset: set wrap_up to how long the slot stays taken, or leave wrap_up_can_end_early false",
            ));
        }
        _ => None,
    };
    let priority_aging =
        match optional(&format!("{field}.priority_aging"), p.priority_aging.as_ref())? {
            Some(step) if step.is_zero() => None,
            Some(step)
                if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&step) =>
            {
                return Err(Error::field(
                    &format!("{field}.priority_aging"),
                    "must be 1 s to 24 h of waiting per priority level (or unset for no aging)",
                ));
            }
            step => step,
        };
    let min_level = level(&format!("{field}.min_level"), p.min_level)?;
    Ok(GroupPolicy {
        strategy,
        offer,
        dedicated_timeout,
        last_agent_timeout,
        wrap_up,
        priority_aging,
        min_level,
        // Steps and overflow name groups: the apply layer resolves them with the tenant's
        // names.
        steps: Vec::new(),
        overflow: None,
        hours: p
            .hours
            .as_ref()
            .map(|h| crate::calendar::hours(&format!("{field}.hours"), h))
            .transpose()?,
        when_closed: match pb::WhenClosed::try_from(p.when_closed) {
            Ok(pb::WhenClosed::Unspecified | pb::WhenClosed::Wait) => WhenClosed::Wait,
            Ok(pb::WhenClosed::Overflow) => WhenClosed::Overflow,
            Ok(pb::WhenClosed::End) => WhenClosed::End,
            Err(_) => {
                return Err(Error::field(
                    &format!("{field}.when_closed"),
                    "use WHEN_CLOSED_WAIT, WHEN_CLOSED_OVERFLOW or WHEN_CLOSED_END",
                ));
            }
        },
    })
}

pub fn strategy_to_pb(s: Strategy) -> pb::Strategy {
    match s {
        Strategy::LeastOccupied => pb::Strategy::LeastOccupied,
        Strategy::LongestIdle => pb::Strategy::LongestIdle,
        Strategy::RoundRobin => pb::Strategy::RoundRobin,
        Strategy::BestProficiency => pb::Strategy::BestProficiency,
    }
}

pub fn routing_policy_to_pb(p: &GroupPolicy) -> pb::RoutingPolicy {
    let (offer_mode, offer_timeout) = match p.offer {
        OfferMode::AutoAccept => (pb::OfferMode::AutoAccept, None),
        OfferMode::Offer { timeout } => (pb::OfferMode::Offer, Some(duration(timeout))),
        OfferMode::Pull => (pb::OfferMode::Pull, None),
    };
    pb::RoutingPolicy {
        strategy: strategy_to_pb(p.strategy) as i32,
        offer_mode: offer_mode as i32,
        offer_timeout,
        dedicated_timeout: Some(duration(p.dedicated_timeout)),
        last_agent_timeout: p.last_agent_timeout.map(duration),
        last_agent_preference: p.last_agent_timeout.is_some(),
        wrap_up: p.wrap_up.map(|w| duration(w.duration)),
        wrap_up_can_end_early: p.wrap_up.is_some_and(|w| w.can_end_early),
        priority_aging: p.priority_aging.map(duration),
        // Filled with group names by `resources::group`.
        steps: Vec::new(),
        overflow: None,
        min_level: p.min_level.map(u32::from),
        hours: p.hours.as_ref().map(crate::calendar::hours_to_pb),
        when_closed: match p.when_closed {
            WhenClosed::Wait => pb::WhenClosed::Wait,
            WhenClosed::Overflow => pb::WhenClosed::Overflow,
            WhenClosed::End => pb::WhenClosed::End,
        } as i32,
    }
}

/// A proficiency level as the API takes it (the core checks its range).
pub fn level(field: &str, l: Option<u32>) -> Result<Option<u8>> {
    l.map(|l| {
        u8::try_from(l)
            .map_err(|_| Error::field(field, format!("{l} is not a proficiency level (1-5)")))
    })
    .transpose()
}

// ----- helpers -----------------------------------------------------------------------------

fn optional(field: &str, d: Option<&prost_types::Duration>) -> Result<Option<Duration>> {
    d.map(|d| from_duration(field, d)).transpose()
}

fn or_default(
    field: &str,
    d: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<Duration> {
    Ok(optional(field, d)?.unwrap_or(default))
}

/// Re-roots a core validation error ("queue.rules[2].texts: text is empty") at the request
/// field holding the settings, with the path spelled as in the proto.
fn scoped(prefix: &str, e: switchboard_core::Error) -> Error {
    match e {
        switchboard_core::Error::InvalidArgument(msg) => match msg.split_once(": ") {
            Some((path, why)) => Error::field(&format!("{prefix}.{}", proto_path(path)), why),
            None => Error::field(prefix, msg),
        },
        other => other.into(),
    }
}

/// The core keeps some text lists bare where the proto wraps them in `Texts`.
fn proto_path(path: &str) -> String {
    for wrapped in ["manual_end", "batch_end", "open_service", "queue_full", "closed"] {
        if let Some(rest) = path.strip_prefix(wrapped)
            && (rest.is_empty() || rest.starts_with('['))
        {
            return format!("{wrapped}.texts{rest}");
        }
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_paths_become_request_paths() {
        let e = scoped(
            "settings.replies",
            switchboard_core::Error::InvalidArgument("manual_end[0]: text is empty".into()),
        );
        assert_eq!(e.to_string(), "settings.replies.manual_end.texts[0]: text is empty");
        let e = scoped(
            "replies",
            switchboard_core::Error::InvalidArgument(
                "queue.rules: at most 5 queue rules, got 6; remove one".into(),
            ),
        );
        assert_eq!(e.to_string(), "replies.queue.rules: at most 5 queue rules, got 6; remove one");
    }

    #[test]
    fn replies_round_trip_all_ten_kinds() {
        let d = |s| Some(prost_types::Duration { seconds: s, nanos: 0 });
        let texts = |t: &str| vec![t.to_owned()];
        let timed = |s, t: &str| Some(pb::TimedReply { after: d(s), texts: texts(t) });
        let pb = pb::ReplySettings {
            auto_accept: Some(pb::AutoAcceptReply { texts: texts("hi"), also_from_queue: true }),
            queue: Some(pb::QueueReply {
                rules: vec![pb::QueueRule { above: 10, texts: texts("{{queue_num}}") }],
                min_interval: d(30),
            }),
            agent_no_response: timed(60, "one moment"),
            customer_no_response: timed(120, "still there?"),
            idle_end: timed(600, "bye (idle)"),
            customer_no_response_end: timed(900, "bye (silent)"),
            manual_end: Some(pb::Texts { texts: texts("bye") }),
            batch_end: Some(pb::Texts { texts: texts("bye all") }),
            offline: Some(pb::OfflineReply { texts: texts("we are closed"), min_interval: d(0) }),
            queue_full: Some(pb::Texts { texts: texts("all lines busy") }),
            closed: Some(pb::Texts { texts: texts("we open at 9") }),
        };
        let core = reply_settings("replies", Some(&pb)).unwrap();
        assert_eq!(core.idle_end.as_ref().unwrap().after, Duration::from_secs(600));
        assert_eq!(reply_settings_to_pb(&core), pb);
    }

    #[test]
    fn a_timed_reply_without_after_names_its_field() {
        let pb = pb::ReplySettings {
            customer_no_response_end: Some(pb::TimedReply { after: None, texts: vec!["x".into()] }),
            ..Default::default()
        };
        let e = reply_settings("settings.channels[1].replies", Some(&pb)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("settings.channels[1].replies.customer_no_response_end.after:"),
            "{e}"
        );
        let pb = pb::ReplySettings {
            queue: Some(pb::QueueReply {
                rules: vec![],
                min_interval: Some(prost_types::Duration { seconds: -1, nanos: 0 }),
            }),
            ..Default::default()
        };
        let e = reply_settings("replies", Some(&pb)).unwrap_err();
        assert!(e.to_string().starts_with("replies.queue.min_interval:"), "{e}");
    }

    #[test]
    fn routing_policy_wrap_up_round_trips_and_refuses_a_flag_alone() {
        let minute = Some(prost_types::Duration { seconds: 60, nanos: 0 });
        for can_end_early in [false, true] {
            let p = pb::RoutingPolicy {
                wrap_up: minute,
                wrap_up_can_end_early: can_end_early,
                ..Default::default()
            };
            let p = routing_policy("policy", Some(&p)).unwrap();
            assert_eq!(
                p.wrap_up,
                Some(WrapUp { duration: Duration::from_secs(60), can_end_early })
            );
            assert_eq!(routing_policy("policy", Some(&routing_policy_to_pb(&p))).unwrap(), p);
        }
        let zero = pb::RoutingPolicy {
            wrap_up: Some(prost_types::Duration::default()),
            ..Default::default()
        };
        assert_eq!(routing_policy("policy", Some(&zero)).unwrap().wrap_up, None);
        let step = |seconds| pb::RoutingPolicy {
            priority_aging: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        };
        let aged = routing_policy("policy", Some(&step(30))).unwrap();
        assert_eq!(aged.priority_aging, Some(Duration::from_secs(30)));
        assert_eq!(routing_policy("policy", Some(&routing_policy_to_pb(&aged))).unwrap(), aged);
        assert_eq!(routing_policy("policy", Some(&step(0))).unwrap().priority_aging, None);
        let e = routing_policy("policy", Some(&step(86_401))).unwrap_err();
        assert!(e.to_string().starts_with("policy.priority_aging: must be"), "{e}");
        let flag = pb::RoutingPolicy { wrap_up_can_end_early: true, ..Default::default() };
        let e = routing_policy("policy", Some(&flag)).unwrap_err();
        assert!(e.to_string().starts_with("policy.wrap_up_can_end_early: is true but"), "{e}");
    }

    #[test]
    fn routing_policy_defaults_and_last_agent_switch() {
        assert_eq!(routing_policy("policy", None).unwrap(), GroupPolicy::default());
        let off = routing_policy("policy", Some(&pb::RoutingPolicy::default())).unwrap();
        assert_eq!(off.last_agent_timeout, None);
        assert_eq!(off.dedicated_timeout, Duration::from_secs(300));
        let on = pb::RoutingPolicy { last_agent_preference: true, ..Default::default() };
        let on = routing_policy("policy", Some(&on)).unwrap();
        assert_eq!(on.last_agent_timeout, Some(Duration::from_secs(60)));
        let ten = Some(prost_types::Duration { seconds: 10, nanos: 0 });
        let timed = pb::RoutingPolicy {
            last_agent_preference: true,
            last_agent_timeout: ten,
            ..Default::default()
        };
        let timed = routing_policy("policy", Some(&timed)).unwrap();
        assert_eq!(timed.last_agent_timeout, Some(Duration::from_secs(10)));
        let contradiction = pb::RoutingPolicy { last_agent_timeout: ten, ..Default::default() };
        let e = routing_policy("policy", Some(&contradiction)).unwrap_err();
        assert!(e.to_string().starts_with("policy.last_agent_timeout: is set but"), "{e}");
        let offer = pb::RoutingPolicy {
            offer_mode: pb::OfferMode::Offer as i32,
            strategy: pb::Strategy::RoundRobin as i32,
            ..Default::default()
        };
        let offer = routing_policy("policy", Some(&offer)).unwrap();
        assert_eq!(offer.offer, OfferMode::Offer { timeout: DEFAULT_OFFER_TIMEOUT });
        let back = routing_policy("policy", Some(&routing_policy_to_pb(&offer))).unwrap();
        assert_eq!(back, offer);
        let zero = pb::RoutingPolicy {
            offer_mode: pb::OfferMode::Offer as i32,
            offer_timeout: Some(prost_types::Duration::default()),
            ..Default::default()
        };
        let e = routing_policy("policy", Some(&zero)).unwrap_err();
        assert!(e.to_string().starts_with("policy.offer_timeout:"), "{e}");
    }

    #[test]
    fn tenant_settings_defaults_round_trip() {
        let state = TenantState::default();
        let core = tenant_settings(&state, &pb::TenantSettings::default()).unwrap();
        assert_eq!(core, TenantSettings::default());
        let back = tenant_settings(&state, &tenant_settings_to_pb(&state, &core)).unwrap();
        assert_eq!(back, core);
    }

    #[test]
    fn channel_settings_round_trip() {
        let state = TenantState::default();
        let hour = Some(prost_types::Duration { seconds: 3600, nanos: 0 });
        let pb = pb::TenantSettings {
            channels: vec![
                pb::ChannelSettings {
                    channel: pb::Channel::MiniProgram as i32,
                    replies: Some(pb::ReplySettings::default()),
                    ..Default::default()
                },
                pb::ChannelSettings {
                    channel: pb::Channel::Messenger as i32,
                    reply_window: hour,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let core = tenant_settings(&state, &pb).unwrap();
        assert_eq!(core.reply_window(Channel::Messenger), Duration::from_secs(3600));
        assert_eq!(tenant_settings_to_pb(&state, &core).channels, pb.channels);
    }

    #[test]
    fn tenant_settings_name_the_field_to_fix() {
        let state = TenantState::default();
        let bad = |s: pb::TenantSettings| tenant_settings(&state, &s).unwrap_err().to_string();
        let web = pb::ChannelSettings { channel: pb::Channel::Web as i32, ..Default::default() };
        assert!(
            bad(pb::TenantSettings { channels: vec![web.clone(), web], ..Default::default() })
                .starts_with("settings.channels[1].channel:")
        );
        assert!(
            bad(pb::TenantSettings {
                default_group: "tenants/acme/groups/sales".into(),
                ..Default::default()
            })
            .contains("settings.default_group")
        );
        assert!(
            bad(pb::TenantSettings {
                not_responding_status: pb::AgentStatus::Online as i32,
                ..Default::default()
            })
            .starts_with("settings.not_responding_status:")
        );
        let zero_window = pb::ChannelSettings {
            channel: pb::Channel::Web as i32,
            reply_window: Some(prost_types::Duration::default()),
            ..Default::default()
        };
        assert!(
            bad(pb::TenantSettings { channels: vec![zero_window], ..Default::default() })
                .starts_with("settings.channels[0].reply_window:")
        );
        assert!(
            bad(pb::TenantSettings { human_reserve: Some(21), ..Default::default() })
                .starts_with("settings.human_reserve:")
        );
        assert!(
            bad(pb::TenantSettings {
                keywords: vec![pb::KeywordRule { keywords: vec![], texts: vec!["x".into()] }],
                ..Default::default()
            })
            .starts_with("settings.keywords[0].keywords:")
        );
        assert!(
            bad(pb::TenantSettings {
                open_service: Some(pb::Texts { texts: vec![" ".into()] }),
                ..Default::default()
            })
            .starts_with("settings.open_service.texts[0]:")
        );
        assert!(
            bad(pb::TenantSettings {
                retention_accepted: Some(prost_types::Duration::default()),
                ..Default::default()
            })
            .starts_with("settings.retention_accepted:")
        );
    }
}
