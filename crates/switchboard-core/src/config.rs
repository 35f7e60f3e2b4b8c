//! What an administrator configures: tenant settings, skill-group routing policy, agents,
//! customers, and automatic replies at the three levels of SPEC §4.
//!
//! Every type here is plain data with serde support and a `validate` that names the field to fix.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::hours::Hours;
use crate::ids::{AgentId, GroupId};
use crate::queue::Priority;
use crate::time::{days, hours, mins, secs};

/// Most queue-reply rules one level may hold (SPEC §4.2).
pub const MAX_QUEUE_RULES: usize = 5;
/// Longest text of one configured reply, in bytes.
pub const MAX_REPLY_TEXT: usize = 4096;
/// Most texts one reply kind may send at once.
pub const MAX_REPLY_TEXTS: usize = 20;
/// Largest capacity an agent can be given.
pub const MAX_CAPACITY: u32 = 1000;

/// The texts a reply sends, in order; every text is one message and counts against budgets.
pub type Texts = Vec<String>;

/// One level of automatic-reply settings (tenant/channel, skill group or agent). A kind left
/// `None` defers to the next, less specific level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplySettings {
    pub auto_accept: Option<AutoAcceptReply>,
    pub queue: Option<QueueReply>,
    pub agent_no_response: Option<TimedReply>,
    pub customer_no_response: Option<TimedReply>,
    /// Idle auto-end: configuring it enables it.
    pub idle_end: Option<TimedReply>,
    /// Customer-no-response auto-end: configuring it enables it.
    pub customer_no_response_end: Option<TimedReply>,
    pub manual_end: Option<Texts>,
    pub batch_end: Option<Texts>,
    pub offline: Option<OfflineReply>,
    /// Sent when a full or overlong queue refuses the conversation, which then ends
    /// (`router/overflow.rs`); last, so older snapshots load without it.
    pub queue_full: Option<Texts>,
    /// Sent when the conversation's group is closed (business hours, `router/hours.rs`):
    /// once when it arrives in or waits in a group as it closes; last, like `queue_full`.
    pub closed: Option<Texts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoAcceptReply {
    pub texts: Texts,
    /// Also send when the conversation reaches an agent after waiting in the queue.
    pub also_from_queue: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueReply {
    /// Up to five rules; the one with the largest threshold below the position applies.
    pub rules: Vec<QueueRule>,
    /// No two queue replies to the same conversation closer together than this.
    #[serde(with = "duration_ms")]
    pub min_interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueRule {
    /// Fires when the position is strictly greater than this.
    pub above: u32,
    pub texts: Texts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimedReply {
    #[serde(with = "duration_ms")]
    pub after: Duration,
    pub texts: Texts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineReply {
    pub texts: Texts,
    /// Zero sends on every customer message.
    #[serde(with = "duration_ms")]
    pub min_interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeywordRule {
    /// Matches when the customer's message contains any of these, ignoring case.
    pub keywords: Vec<String>,
    pub texts: Texts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageReceivedReply {
    pub texts: Texts,
    /// Also answer messages of conversations an agent is serving.
    pub also_in_session: bool,
}

/// How the next agent is chosen among those who could take a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest conversations relative to capacity; ties go to the longest idle, then lowest id.
    #[default]
    LeastOccupied,
    /// Longest since the agent last received work (or came online); ties go to lowest id.
    LongestIdle,
    /// Next agent after the last one chosen, in id order.
    RoundRobin,
    /// Highest proficiency level in the group first (issue 14), then as least occupied.
    BestProficiency,
}

/// How a conversation reaches the chosen agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum OfferMode {
    /// Assigned at once.
    #[default]
    AutoAccept,
    /// Reserved for the agent, who must accept within the timeout.
    Offer {
        #[serde(with = "duration_ms")]
        timeout: Duration,
    },
    /// Nothing is pushed: agents pick from the unaccepted list of their groups.
    Pull,
}

impl OfferMode {
    pub fn pushes(self) -> bool {
        !matches!(self, OfferMode::Pull)
    }
}

/// Routing policy of one skill group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupPolicy {
    pub strategy: Strategy,
    pub offer: OfferMode,
    /// How long a conversation waits for its customer's dedicated agent (online but full, or
    /// not taking pushed work) before falling back to the group.
    #[serde(with = "duration_ms")]
    pub dedicated_timeout: Duration,
    /// The weaker preference for the last agent who served the customer: how long to wait for
    /// them while they are online but full. `None` turns the preference off.
    #[serde(with = "opt_duration_ms")]
    pub last_agent_timeout: Option<Duration>,
    /// After-conversation work: when an agent's conversation of this group ends, its slot
    /// stays taken this long (or, when allowed, until the agent ends it). `None`: no wrap-up.
    pub wrap_up: Option<WrapUp>,
    /// Priority aging: every this long of waiting raises a conversation's effective priority
    /// by one (continuously), so low priority is never starved. `None`: no aging. 1 s to 24 h.
    #[serde(with = "opt_duration_ms")]
    pub priority_aging: Option<Duration>,
    /// Criteria that widen over time (issue 14 item 1): after each step's wait, counted from
    /// the conversation's entry time, it may also go to that step's group's agents, keeping
    /// its place in line. In order of `after`; at most [`MAX_STEPS`].
    pub steps: Vec<Step>,
    /// Overflow and maximum queue size (issue 14 item 2, `router/overflow.rs`): past a
    /// waiting count or a wait, conversations go to another group or are refused. `None`:
    /// no limit.
    pub overflow: Option<Overflow>,
    /// Only agents of the group at this proficiency level or above take its conversations,
    /// until a step lowers it (issue 14 items 1 and 6). `None`: every level. Last, so older
    /// snapshots load without it.
    pub min_level: Option<u8>,
    /// Business hours (issue 14 item 3, `router/hours.rs`); `None` uses the tenant's
    /// (`TenantSettings::hours`), and a tenant without any is always open. Last, with
    /// `when_closed`, so older snapshots load without them.
    pub hours: Option<Hours>,
    /// What happens to conversations while the group is closed.
    pub when_closed: WhenClosed,
}

/// What a closed group does with its waiting and arriving conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenClosed {
    /// They wait for it to open (told once with the `closed` reply).
    #[default]
    Wait,
    /// They go to the group `overflow.group` names, keeping their entry time.
    Overflow,
    /// They end with cause `closed` and the `closed` reply.
    End,
}

/// A group's queue limits and where conversations go past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overflow {
    /// A conversation arriving when this many already wait in the group's queue (and no
    /// agent can take it at once) goes on at once. At least 1.
    pub max_waiting: Option<u32>,
    /// A conversation still waiting this long after its entry time goes on. More than zero.
    #[serde(with = "opt_duration_ms")]
    pub max_wait: Option<Duration>,
    /// Where it goes: another group's queue, keeping its entry time; `None` refuses it (it
    /// ends with cause `queue_full` and the `queue_full` reply).
    pub group: Option<GroupId>,
}
/// Most steps one group's policy may have.
pub const MAX_STEPS: usize = 5;

/// One step of a group's routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Wait from the conversation's entry time after which the step applies.
    #[serde(with = "duration_ms")]
    pub after: Duration,
    /// The group whose agents may then take it too; the group itself only for a step that
    /// only lowers the level (`min_level`).
    pub group: GroupId,
    /// From this step on, agents of the conversation's own group at this proficiency level
    /// or above may take it (lower than the policy's `min_level` and any earlier step's).
    /// Last, so older snapshots load without it.
    #[serde(default)]
    pub min_level: Option<u8>,
}

/// A group's wrap-up (after-conversation work) rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WrapUp {
    /// How long the slot stays taken after the conversation ends; more than zero.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// Optional wrap-up: the agent may end it early with an explicit call. Otherwise it is
    /// mandatory and lasts the full `duration`.
    pub can_end_early: bool,
}

impl Default for WrapUp {
    fn default() -> Self {
        WrapUp { duration: secs(30), can_end_early: true }
    }
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            strategy: Strategy::default(),
            offer: OfferMode::default(),
            dedicated_timeout: mins(5),
            last_agent_timeout: Some(secs(60)),
            wrap_up: None,
            priority_aging: None,
            steps: Vec::new(),
            overflow: None,
            min_level: None,
            hours: None,
            when_closed: WhenClosed::Wait,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    pub name: String,
    pub policy: GroupPolicy,
    pub replies: ReplySettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    pub nickname: String,
    /// Most assigned + offered conversations at once; at least 1.
    pub capacity: u32,
    pub groups: Vec<GroupId>,
    pub replies: ReplySettings,
    /// Proficiency level per group, [`MIN_PROFICIENCY`] to [`MAX_PROFICIENCY`]; a group left
    /// out is the lowest level. Read by the best-proficiency strategy.
    pub proficiency: BTreeMap<GroupId, u8>,
}

/// Proficiency levels (issue 14): 1 (lowest, and the level of an agent not rated) to 5.
pub const MIN_PROFICIENCY: u8 = 1;
pub const MAX_PROFICIENCY: u8 = 5;

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            nickname: String::new(),
            capacity: 5,
            groups: Vec::new(),
            replies: ReplySettings::default(),
            proficiency: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerSettings {
    pub nickname: Option<String>,
    /// Higher is served first (e.g. VIP customer groups).
    pub priority: Priority,
    /// Skill group this customer is routed to unless the integrator names one.
    pub group: Option<GroupId>,
    pub dedicated_agent: Option<AgentId>,
    /// Customer groups it belongs to (e.g. `vip`); a group the tenant gives a priority in
    /// [`TenantSettings::customer_group_priorities`] raises its conversations' priority.
    pub customer_groups: Vec<String>,
}

/// What happens to an agent's offers when it does not respond (decline or offer timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotRespondingPolicy {
    /// Consecutive missed offers after which the agent's status changes; 0 disables.
    pub after_misses: u32,
    /// The status it changes to.
    pub status: crate::router::AgentStatus,
}

impl Default for NotRespondingPolicy {
    fn default() -> Self {
        NotRespondingPolicy { after_misses: 2, status: crate::router::AgentStatus::Away }
    }
}

/// Who gets credit for a rating (SPEC §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatingCredit {
    #[default]
    AllServed,
    LastOnly,
}

/// Most customer groups a tenant may give a priority.
pub const MAX_CUSTOMER_GROUP_PRIORITIES: usize = 256;
/// Longest customer group name, in bytes.
pub const MAX_CUSTOMER_GROUP_NAME: usize = 64;

/// Settings of one tenant: the least specific reply level plus the tenant-wide rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// New conversations start with the bot until the customer asks for a human.
    pub transfer_to_human: bool,
    pub replies: ReplySettings,
    /// Channel-level replies sit at the tenant level: a kind configured for the channel wins
    /// over the tenant's.
    pub channel_replies: BTreeMap<Channel, ReplySettings>,
    pub keywords: Vec<KeywordRule>,
    pub message_received: Option<MessageReceivedReply>,
    pub open_service: Option<Texts>,
    /// Budget slots automatic replies must leave for human agents on limited channels.
    pub human_reserve: u32,
    /// Notify when a customer message stays unanswered this long.
    #[serde(with = "opt_duration_ms")]
    pub unreplied_alert: Option<Duration>,
    #[serde(with = "duration_ms")]
    pub retention_unaccepted: Duration,
    #[serde(with = "duration_ms")]
    pub retention_accepted: Duration,
    /// An offline agent keeps its conversations this long before they are requeued at the
    /// front of their groups.
    #[serde(with = "duration_ms")]
    pub offline_grace: Duration,
    pub not_responding: NotRespondingPolicy,
    pub rating_credit: RatingCredit,
    /// Group used when neither the integrator, the customer nor the channel names one.
    pub default_group: Option<GroupId>,
    pub channel_groups: BTreeMap<Channel, GroupId>,
    /// Reply windows that differ from the platform's (48 h; Messenger 7 days).
    #[serde(with = "duration_map_ms")]
    pub reply_windows: BTreeMap<Channel, Duration>,
    /// Routing priority of customer groups (SPEC §3, VIP groups): a conversation opens with
    /// the highest of its customer's groups', the customer's own and the message's.
    pub customer_group_priorities: BTreeMap<String, Priority>,
    /// The tenant's IANA time zone (`Asia/Shanghai`), which says when a day starts for
    /// "today" figures. The core reads no clock and no calendar: the shell resolves it.
    /// Empty is UTC.
    pub time_zone: String,
    /// The tenant's business hours, for groups without their own (`router/hours.rs`);
    /// `None`: always open. Last, so older snapshots load without it.
    pub hours: Option<Hours>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            transfer_to_human: false,
            replies: ReplySettings::default(),
            channel_replies: BTreeMap::new(),
            keywords: Vec::new(),
            message_received: None,
            open_service: None,
            human_reserve: 1,
            unreplied_alert: None,
            retention_unaccepted: hours(48),
            retention_accepted: days(60),
            offline_grace: mins(2),
            not_responding: NotRespondingPolicy::default(),
            rating_credit: RatingCredit::default(),
            default_group: None,
            channel_groups: BTreeMap::new(),
            reply_windows: BTreeMap::new(),
            customer_group_priorities: BTreeMap::new(),
            time_zone: String::new(),
            hours: None,
        }
    }
}

fn check_texts(field: &str, texts: &[String]) -> Result<()> {
    if texts.len() > MAX_REPLY_TEXTS {
        return Err(Error::InvalidArgument(format!(
            "{field}: at most {MAX_REPLY_TEXTS} texts, got {}",
            texts.len()
        )));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(Error::InvalidArgument(format!("{field}[{i}]: text is empty")));
        }
        if t.len() > MAX_REPLY_TEXT {
            return Err(Error::InvalidArgument(format!(
                "{field}[{i}]: text is {} bytes, the limit is {MAX_REPLY_TEXT}",
                t.len()
            )));
        }
    }
    Ok(())
}

fn check_positive(field: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(Error::InvalidArgument(format!("{field}: must be greater than zero")));
    }
    Ok(())
}

impl ReplySettings {
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = &self.auto_accept {
            check_texts("auto_accept.texts", &r.texts)?;
        }
        if let Some(q) = &self.queue {
            if q.rules.len() > MAX_QUEUE_RULES {
                return Err(Error::InvalidArgument(format!(
                    "queue.rules: at most {MAX_QUEUE_RULES} queue rules, got {}; remove one",
                    q.rules.len()
                )));
            }
            for (i, r) in q.rules.iter().enumerate() {
                check_texts(&format!("queue.rules[{i}].texts"), &r.texts)?;
                if q.rules[..i].iter().any(|o| o.above == r.above) {
                    return Err(Error::InvalidArgument(format!(
                        "queue.rules[{i}]: another rule already fires above {}",
                        r.above
                    )));
                }
            }
        }
        for (field, t) in [
            ("agent_no_response", &self.agent_no_response),
            ("customer_no_response", &self.customer_no_response),
            ("idle_end", &self.idle_end),
            ("customer_no_response_end", &self.customer_no_response_end),
        ] {
            if let Some(t) = t {
                check_positive(&format!("{field}.after"), t.after)?;
                check_texts(&format!("{field}.texts"), &t.texts)?;
            }
        }
        for (field, t) in [("manual_end", &self.manual_end), ("batch_end", &self.batch_end)] {
            if let Some(t) = t {
                check_texts(field, t)?;
            }
        }
        if let Some(o) = &self.offline {
            check_texts("offline.texts", &o.texts)?;
        }
        if let Some(t) = &self.queue_full {
            check_texts("queue_full", t)?;
        }
        if let Some(t) = &self.closed {
            check_texts("closed", t)?;
        }
        Ok(())
    }
}

impl GroupSettings {
    pub fn validate(&self) -> Result<()> {
        if let OfferMode::Offer { timeout } = self.policy.offer {
            check_positive("policy.offer.timeout", timeout)?;
        }
        if let Some(w) = self.policy.wrap_up {
            check_positive("policy.wrap_up.duration", w.duration)?;
        }
        if self.policy.steps.len() > MAX_STEPS {
            return Err(Error::InvalidArgument(format!(
                "policy.steps: at most {MAX_STEPS} steps, got {}",
                self.policy.steps.len()
            )));
        }
        for (i, w) in self.policy.steps.windows(2).enumerate() {
            if w[1].after < w[0].after {
                return Err(Error::InvalidArgument(format!(
                    "policy.steps[{}].after: steps go in order of their wait; it is shorter than step {i}'s",
                    i + 1
                )));
            }
        }
        self.policy.validate_levels()?;
        if let Some(step) = self.policy.priority_aging
            && !(secs(1)..=hours(24)).contains(&step)
        {
            return Err(Error::InvalidArgument(format!(
                "policy.priority_aging: one priority level per 1 s to 24 h of waiting, got {} ms",
                step.as_millis()
            )));
        }
        if let Some(h) = &self.policy.hours {
            h.validate("policy.hours")?;
        }
        let closed_overflow = self.policy.when_closed == WhenClosed::Overflow;
        if closed_overflow && self.policy.overflow.and_then(|o| o.group).is_none() {
            return Err(Error::InvalidArgument(
                "policy.when_closed: overflow needs policy.overflow.group to name where conversations go".into(),
            ));
        }
        if let Some(o) = self.policy.overflow {
            if o.max_waiting.is_none() && o.max_wait.is_none() && !closed_overflow {
                return Err(Error::InvalidArgument(
                    "policy.overflow: set max_waiting, max_wait or both".into(),
                ));
            }
            if o.max_waiting == Some(0) {
                return Err(Error::InvalidArgument(
                    "policy.overflow.max_waiting: at least 1 (leave it unset for no limit)".into(),
                ));
            }
            if let Some(w) = o.max_wait {
                check_positive("policy.overflow.max_wait", w)?;
            }
        }
        self.replies.validate()
    }
}

impl GroupPolicy {
    /// The level its own group's agents need for a conversation that has reached `reached`
    /// steps; `None`: any.
    pub fn min_level_after(&self, reached: usize) -> Option<u8> {
        self.steps
            .iter()
            .take(reached)
            .filter_map(|s| s.min_level)
            .fold(self.min_level, |m, l| Some(m.map_or(l, |m| m.min(l))))
    }

    /// A level is a proficiency level; each step's lowers what the group needs before it.
    fn validate_levels(&self) -> Result<()> {
        let level_range = MIN_PROFICIENCY..=MAX_PROFICIENCY;
        if let Some(l) = self.min_level.filter(|l| !level_range.contains(l)) {
            return Err(Error::InvalidArgument(format!(
                "policy.min_level: {l} is outside {MIN_PROFICIENCY} to {MAX_PROFICIENCY}"
            )));
        }
        let mut needed = self.min_level;
        for (i, s) in self.steps.iter().enumerate() {
            let Some(l) = s.min_level else { continue };
            if !level_range.contains(&l) {
                return Err(Error::InvalidArgument(format!(
                    "policy.steps[{i}].min_level: {l} is outside {MIN_PROFICIENCY} to {MAX_PROFICIENCY}"
                )));
            }
            match needed {
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "policy.steps[{i}].min_level: a step lowers the level the group needs; set policy.min_level first"
                    )));
                }
                Some(n) if l >= n => {
                    return Err(Error::InvalidArgument(format!(
                        "policy.steps[{i}].min_level: {l} does not lower the level needed before it ({n})"
                    )));
                }
                Some(_) => needed = Some(l),
            }
        }
        Ok(())
    }
}

impl AgentSettings {
    pub fn validate(&self) -> Result<()> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "capacity: must be between 1 and {MAX_CAPACITY}, got {}; set a busy status to stop new work",
                self.capacity
            )));
        }
        for (g, level) in &self.proficiency {
            if !self.groups.contains(g) {
                return Err(Error::InvalidArgument(format!(
                    "proficiency: the agent is not in group {g}; add the group or drop its level"
                )));
            }
            if !(MIN_PROFICIENCY..=MAX_PROFICIENCY).contains(level) {
                return Err(Error::InvalidArgument(format!(
                    "proficiency: level {level} in group {g} is outside {MIN_PROFICIENCY} to {MAX_PROFICIENCY}"
                )));
            }
        }
        self.replies.validate()
    }
}

impl TenantSettings {
    /// The reply window in force for a channel.
    pub fn reply_window(&self, channel: Channel) -> Duration {
        self.reply_windows.get(&channel).copied().unwrap_or_else(|| channel.reply_window())
    }

    /// The priority a customer's groups give its conversations (0 without any).
    pub fn customer_group_priority(&self, groups: &[String]) -> Priority {
        groups
            .iter()
            .filter_map(|g| self.customer_group_priorities.get(g))
            .copied()
            .max()
            .unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.hours {
            h.validate("hours")?;
        }
        if self.customer_group_priorities.len() > MAX_CUSTOMER_GROUP_PRIORITIES {
            return Err(Error::InvalidArgument(format!(
                "customer_group_priorities: at most {MAX_CUSTOMER_GROUP_PRIORITIES} groups, got {}",
                self.customer_group_priorities.len()
            )));
        }
        if let Some(g) = self
            .customer_group_priorities
            .keys()
            .find(|g| g.trim().is_empty() || g.len() > MAX_CUSTOMER_GROUP_NAME)
        {
            return Err(Error::InvalidArgument(format!(
                "customer_group_priorities: customer group {g:?} must be 1 to {MAX_CUSTOMER_GROUP_NAME} bytes"
            )));
        }
        self.replies.validate()?;
        for (channel, r) in &self.channel_replies {
            r.validate()
                .map_err(|e| Error::InvalidArgument(format!("channel_replies.{channel}: {e}")))?;
        }
        for (i, k) in self.keywords.iter().enumerate() {
            if k.keywords.is_empty() || k.keywords.iter().any(|w| w.trim().is_empty()) {
                return Err(Error::InvalidArgument(format!(
                    "keywords[{i}].keywords: give at least one non-empty keyword"
                )));
            }
            check_texts(&format!("keywords[{i}].texts"), &k.texts)?;
        }
        if let Some(m) = &self.message_received {
            check_texts("message_received.texts", &m.texts)?;
        }
        if let Some(t) = &self.open_service {
            check_texts("open_service", t)?;
        }
        if let Some(a) = self.unreplied_alert {
            check_positive("unreplied_alert", a)?;
        }
        check_positive("retention_unaccepted", self.retention_unaccepted)?;
        check_positive("retention_accepted", self.retention_accepted)?;
        for (channel, w) in &self.reply_windows {
            check_positive(&format!("reply_windows.{channel}"), *w)?;
        }
        if self.not_responding.status == crate::router::AgentStatus::Online {
            return Err(Error::InvalidArgument(
                "not_responding.status: must take the agent out of routing (busy, away, invisible or offline)".into(),
            ));
        }
        Ok(())
    }
}

/// Durations travel as whole milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

pub(crate) mod duration_map_ms {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::channel::Channel;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Channel, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let ms: BTreeMap<Channel, u64> =
            m.iter().map(|(c, d)| (*c, u64::try_from(d.as_millis()).unwrap_or(u64::MAX))).collect();
        ms.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Channel, Duration>, D::Error> {
        let ms = BTreeMap::<Channel, u64>::deserialize(d)?;
        Ok(ms.into_iter().map(|(c, v)| (c, Duration::from_millis(v))).collect())
    }
}

pub(crate) mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sixth_queue_rule_is_refused() {
        let rule = |n| QueueRule { above: n, texts: vec!["wait".into()] };
        let mut r = ReplySettings {
            queue: Some(QueueReply { rules: (0..5).map(rule).collect(), min_interval: secs(30) }),
            ..Default::default()
        };
        r.validate().unwrap();
        r.queue.as_mut().unwrap().rules.push(rule(99));
        let err = r.validate().unwrap_err();
        assert!(err.to_string().contains("at most 5 queue rules"), "{err}");
    }

    #[test]
    fn capacity_zero_is_refused() {
        let a = AgentSettings { capacity: 0, ..Default::default() };
        assert!(a.validate().unwrap_err().to_string().contains("capacity"));
    }

    #[test]
    fn empty_texts_are_refused() {
        let r = ReplySettings { manual_end: Some(vec![" ".into()]), ..Default::default() };
        assert!(r.validate().unwrap_err().to_string().contains("manual_end[0]"));
    }

    #[test]
    fn a_zero_wrap_up_is_refused() {
        let mut g = GroupSettings::default();
        g.policy.wrap_up = Some(WrapUp { duration: Duration::ZERO, can_end_early: true });
        let err = g.validate().unwrap_err();
        assert!(err.to_string().starts_with("policy.wrap_up.duration"), "{err}");
    }

    #[test]
    fn an_aging_step_outside_1s_to_24h_is_refused() {
        let mut g = GroupSettings::default();
        for (step, ok) in
            [(0, false), (999, false), (1000, true), (86_400_000, true), (86_400_001, false)]
        {
            g.policy.priority_aging = Some(Duration::from_millis(step));
            assert_eq!(g.validate().is_ok(), ok, "{step} ms");
        }
    }

    #[test]
    fn proficiency_levels_are_1_to_5_in_the_agents_groups() {
        let mut a = AgentSettings { groups: vec![GroupId(1)], ..Default::default() };
        a.proficiency.insert(GroupId(1), 5);
        a.validate().unwrap();
        a.proficiency.insert(GroupId(1), 6);
        assert!(a.validate().unwrap_err().to_string().contains("level 6 in group g1"));
        a.proficiency.insert(GroupId(1), 0);
        assert!(a.validate().is_err());
        a.proficiency = [(GroupId(2), 3)].into();
        assert!(a.validate().unwrap_err().to_string().contains("not in group g2"));
    }

    #[test]
    fn a_policy_written_before_wrap_up_still_loads() {
        #[derive(Serialize)]
        struct Before {
            strategy: Strategy,
            offer: OfferMode,
            dedicated_timeout: u64,
            last_agent_timeout: Option<u64>,
        }
        let before = Before {
            strategy: Strategy::LongestIdle,
            offer: OfferMode::Pull,
            dedicated_timeout: 1000,
            last_agent_timeout: None,
        };
        let bytes = rmp_serde::to_vec(&before).unwrap();
        let now: GroupPolicy = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(now.strategy, Strategy::LongestIdle);
        assert_eq!(now.wrap_up, None);
        assert_eq!(now.priority_aging, None);
        assert!(now.steps.is_empty());
        assert_eq!(now.overflow, None);
    }

    #[test]
    fn reply_settings_written_before_queue_full_still_load() {
        // The nine kinds before, by position (MessagePack arrays, as snapshots are written).
        let manual_end = Some(vec!["bye".to_owned()]);
        let nine = (
            None::<()>,
            None::<()>,
            None::<()>,
            None::<()>,
            None::<()>,
            None::<()>,
            &manual_end,
            None::<()>,
            None::<()>,
        );
        let bytes = rmp_serde::to_vec(&nine).unwrap();
        let now: ReplySettings = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(now.manual_end, manual_end);
        assert_eq!(now.queue_full, None);
    }

    #[test]
    fn an_overflow_needs_a_limit() {
        let mut g = GroupSettings::default();
        g.policy.overflow = Some(Overflow { max_waiting: None, max_wait: None, group: None });
        assert!(g.validate().unwrap_err().to_string().contains("max_waiting, max_wait"));
        g.policy.overflow = Some(Overflow { max_waiting: Some(0), max_wait: None, group: None });
        assert!(g.validate().unwrap_err().to_string().contains("max_waiting: at least 1"));
        g.policy.overflow =
            Some(Overflow { max_waiting: None, max_wait: Some(Duration::ZERO), group: None });
        assert!(g.validate().unwrap_err().to_string().contains("max_wait"));
        g.policy.overflow = Some(Overflow { max_waiting: Some(3), max_wait: None, group: None });
        g.validate().unwrap();
    }

    #[test]
    fn defaults_are_valid() {
        TenantSettings::default().validate().unwrap();
        GroupSettings::default().validate().unwrap();
        AgentSettings::default().validate().unwrap();
    }
}
