//! Automatic-reply selection (SPEC §4): which level of settings wins, which queue rule
//! applies, keyword matching, placeholders, and the channel budget.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{KeywordRule, QueueReply, QueueRule, ReplySettings};

/// Displayed queue positions above this read `5000+`.
pub const MAX_DISPLAYED_POSITION: usize = 5000;

/// Every kind of automatic reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    AutoAccept,
    Queue,
    AgentNoResponse,
    CustomerNoResponse,
    IdleEnd,
    CustomerNoResponseEnd,
    ManualEnd,
    BatchEnd,
    Offline,
    Keyword,
    MessageReceived,
    OpenService,
    /// A full or overlong queue refused the conversation (`router/overflow.rs`).
    QueueFull,
    /// The conversation's group is closed (business hours, `router/hours.rs`).
    Closed,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 14] = [
        ReplyKind::AutoAccept,
        ReplyKind::Queue,
        ReplyKind::AgentNoResponse,
        ReplyKind::CustomerNoResponse,
        ReplyKind::IdleEnd,
        ReplyKind::CustomerNoResponseEnd,
        ReplyKind::ManualEnd,
        ReplyKind::BatchEnd,
        ReplyKind::Offline,
        ReplyKind::Keyword,
        ReplyKind::MessageReceived,
        ReplyKind::OpenService,
        ReplyKind::QueueFull,
        ReplyKind::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::AutoAccept => "auto_accept",
            ReplyKind::Queue => "queue",
            ReplyKind::AgentNoResponse => "agent_no_response",
            ReplyKind::CustomerNoResponse => "customer_no_response",
            ReplyKind::IdleEnd => "idle_end",
            ReplyKind::CustomerNoResponseEnd => "customer_no_response_end",
            ReplyKind::ManualEnd => "manual_end",
            ReplyKind::BatchEnd => "batch_end",
            ReplyKind::Offline => "offline",
            ReplyKind::Keyword => "keyword",
            ReplyKind::MessageReceived => "message_received",
            ReplyKind::OpenService => "open_service",
            ReplyKind::QueueFull => "queue_full",
            ReplyKind::Closed => "closed",
        }
    }
}

/// The levels of reply settings that apply to one conversation, most specific first:
/// agent > skill group > channel > tenant. The first level that configures a kind wins.
#[derive(Debug, Clone, Copy)]
pub struct Levels<'a> {
    pub agent: Option<&'a ReplySettings>,
    pub group: Option<&'a ReplySettings>,
    pub channel: Option<&'a ReplySettings>,
    pub tenant: &'a ReplySettings,
}

impl<'a> Levels<'a> {
    pub fn resolve<T: 'a>(
        &self,
        kind: impl Fn(&'a ReplySettings) -> Option<&'a T>,
    ) -> Option<&'a T> {
        [self.agent, self.group, self.channel, Some(self.tenant)]
            .into_iter()
            .flatten()
            .find_map(kind)
    }
}

/// The queue rule for a position: the one with the largest threshold the position exceeds.
pub fn queue_rule(reply: &QueueReply, position: usize) -> Option<&QueueRule> {
    reply.rules.iter().filter(|r| position > r.above as usize).max_by_key(|r| r.above)
}

/// The first keyword rule whose keyword the text contains, ignoring case.
pub fn keyword_rule<'a>(rules: &'a [KeywordRule], text: &str) -> Option<&'a KeywordRule> {
    if rules.is_empty() {
        return None;
    }
    let text = text.to_lowercase();
    rules.iter().find(|r| r.keywords.iter().any(|k| text.contains(&k.to_lowercase())))
}

/// A queue position as customers see it.
pub fn display_position(position: usize) -> String {
    if position > MAX_DISPLAYED_POSITION {
        format!("{MAX_DISPLAYED_POSITION}+")
    } else {
        position.to_string()
    }
}

/// An estimated wait as customers see it: whole minutes rounded up (at least one), `"3 min"`;
/// from an hour on, hours and minutes, `"1 h"`, `"2 h 5 min"`.
pub fn display_wait(wait: Duration) -> String {
    let minutes = wait_minutes(wait);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// A wait in whole minutes as `{{wait_time}}` shows it: rounded up, at least one.
pub fn wait_minutes(wait: Duration) -> u64 {
    wait.as_secs().div_ceil(60).max(1)
}

/// Values for the four placeholders; `None` renders as empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placeholders<'a> {
    pub nick_name: Option<&'a str>,
    pub staff_name: Option<&'a str>,
    pub queue_num: Option<usize>,
    /// The estimated wait (`router/ewt.rs`); empty while there is no estimate.
    pub wait_time: Option<Duration>,
}

/// Replaces `{{nick_name}}`, `{{staff_name}}`, `{{queue_num}}` and `{{wait_time}}`; other
/// text is kept as is.
pub fn render(template: &str, p: &Placeholders<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim() {
            "nick_name" => out.push_str(p.nick_name.unwrap_or("")),
            "staff_name" => out.push_str(p.staff_name.unwrap_or("")),
            "queue_num" => {
                if let Some(n) = p.queue_num {
                    out.push_str(&display_position(n));
                }
            }
            "wait_time" => {
                if let Some(w) = p.wait_time {
                    out.push_str(&display_wait(w));
                }
            }
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// How many automatic messages may still go out: budgeted channels keep `reserve` slots of
/// their `limit` for humans. `None` means no limit.
pub fn auto_allowance(limit: Option<u32>, reserve: u32, used: u32) -> Option<u32> {
    limit.map(|l| l.saturating_sub(reserve).saturating_sub(used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OfflineReply, TimedReply};
    use crate::time::secs;

    #[test]
    fn placeholders_render_and_empty_cases() {
        let p = Placeholders {
            nick_name: Some("Li"),
            staff_name: Some("Zhang"),
            queue_num: Some(7),
            wait_time: None,
        };
        assert_eq!(
            render("{{nick_name}}, agent {{staff_name}} here; {{queue_num}} ahead", &p),
            "Li, agent Zhang here; 7 ahead"
        );
        let empty = Placeholders::default();
        assert_eq!(render("hi {{nick_name}}!{{staff_name}}", &empty), "hi !");
        assert_eq!(
            render("{{queue_num}}", &Placeholders { queue_num: Some(5001), ..empty }),
            "5000+"
        );
        assert_eq!(
            render("{{queue_num}}", &Placeholders { queue_num: Some(5000), ..empty }),
            "5000"
        );
        assert_eq!(render("{{other}} {{ unclosed", &empty), "{{other}} {{ unclosed");
    }

    #[test]
    fn wait_time_renders_in_minutes_rounded_up_and_empty_without_an_estimate() {
        let empty = Placeholders::default();
        let wait = |s: u64| Placeholders { wait_time: Some(secs(s)), ..empty };
        assert_eq!(render("about {{wait_time}}", &wait(0)), "about 1 min");
        assert_eq!(render("about {{wait_time}}", &wait(61)), "about 2 min");
        assert_eq!(render("{{wait_time}}", &wait(180)), "3 min");
        assert_eq!(render("{{wait_time}}", &wait(3600)), "1 h");
        assert_eq!(render("{{ wait_time }}", &wait(3600 + 4 * 60 + 1)), "1 h 5 min");
        assert_eq!(render("about {{wait_time}}", &empty), "about ");
    }

    #[test]
    fn the_largest_exceeded_threshold_wins() {
        let rule = |n: u32| QueueRule { above: n, texts: vec![format!("> {n}")] };
        let q = QueueReply { rules: vec![rule(100), rule(0), rule(10)], min_interval: secs(0) };
        assert_eq!(queue_rule(&q, 1).unwrap().above, 0);
        assert_eq!(queue_rule(&q, 10).unwrap().above, 0);
        assert_eq!(queue_rule(&q, 11).unwrap().above, 10);
        assert_eq!(queue_rule(&q, 5000).unwrap().above, 100);
        let q = QueueReply { rules: vec![rule(10)], min_interval: secs(0) };
        assert!(queue_rule(&q, 3).is_none());
    }

    #[test]
    fn agent_beats_group_beats_channel_beats_tenant() {
        let offline = |t: &str| ReplySettings {
            offline: Some(OfflineReply { texts: vec![t.into()], min_interval: secs(0) }),
            ..Default::default()
        };
        let (agent, group, channel, tenant) =
            (offline("agent"), offline("group"), offline("channel"), offline("tenant"));
        let none = ReplySettings::default();
        let pick = |l: Levels<'_>| l.resolve(|r| r.offline.as_ref()).map(|o| o.texts[0].clone());
        let all = Levels {
            agent: Some(&agent),
            group: Some(&group),
            channel: Some(&channel),
            tenant: &tenant,
        };
        assert_eq!(pick(all).as_deref(), Some("agent"));
        assert_eq!(pick(Levels { agent: Some(&none), ..all }).as_deref(), Some("group"));
        assert_eq!(pick(Levels { agent: None, group: None, ..all }).as_deref(), Some("channel"));
        assert_eq!(
            pick(Levels { agent: None, group: None, channel: None, ..all }).as_deref(),
            Some("tenant")
        );
        let nothing = Levels { agent: None, group: None, channel: None, tenant: &none };
        let none: Option<&TimedReply> = nothing.resolve(|r| r.agent_no_response.as_ref());
        assert!(none.is_none());
    }

    #[test]
    fn keywords_match_ignoring_case() {
        let rules = vec![KeywordRule {
            keywords: vec!["Refund".into(), "退款".into()],
            texts: vec!["see policy".into()],
        }];
        assert!(keyword_rule(&rules, "I want a REFUND now").is_some());
        assert!(keyword_rule(&rules, "我要退款").is_some());
        assert!(keyword_rule(&rules, "hello").is_none());
    }

    #[test]
    fn automatic_replies_leave_the_reserve_to_humans() {
        assert_eq!(auto_allowance(Some(5), 1, 0), Some(4));
        assert_eq!(auto_allowance(Some(5), 1, 4), Some(0));
        assert_eq!(auto_allowance(Some(5), 2, 4), Some(0));
        assert_eq!(auto_allowance(None, 1, 100), None);
    }
}
