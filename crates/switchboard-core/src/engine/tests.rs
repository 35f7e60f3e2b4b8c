//! Rules of SPEC §2, §4 and §5 through the engine, and the worked case of seed 001.

use std::time::Duration;

use super::*;
use crate::channel::MessageTag;
use crate::config::{
    AutoAcceptReply, GroupPolicy, KeywordRule, MessageReceivedReply, OfferMode, OfflineReply,
    QueueReply, QueueRule, RatingCredit, ReplySettings, Texts, TimedReply,
};
use crate::engine::customer_message::CustomerMessage;
use crate::router::AgentStatus;
use crate::time::{days, hours, mins, secs};

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);
const A1: AgentId = AgentId(1);
const A2: AgentId = AgentId(2);
const U1: CustomerId = CustomerId(1);
const U2: CustomerId = CustomerId(2);

fn at(d: Duration) -> Timestamp {
    Timestamp(0) + d
}

fn texts(t: &[&str]) -> Texts {
    t.iter().map(|s| s.to_string()).collect()
}

/// A test bench: one engine, a conversation-id counter, and the clock.
struct Bench {
    e: Engine,
    next: u64,
}

impl Bench {
    fn new(settings: TenantSettings) -> Self {
        let mut e = Engine::new(settings).unwrap();
        for g in [G1, G2] {
            e.upsert_group(Timestamp(0), g, GroupSettings::default()).unwrap();
        }
        Bench { e, next: 0 }
    }

    fn agent(&mut self, id: AgentId, nickname: &str, capacity: u32, status: AgentStatus) {
        let s = AgentSettings {
            nickname: nickname.into(),
            capacity,
            groups: vec![G1],
            replies: ReplySettings::default(),
            ..Default::default()
        };
        self.e.upsert_agent(Timestamp(0), id, s).unwrap();
        self.e.set_agent_status(Timestamp(0), id, status, Actor::Agent(id)).unwrap();
        self.check();
    }

    fn customer(&mut self, id: CustomerId, nickname: &str) {
        let s = CustomerSettings { nickname: Some(nickname.into()), ..Default::default() };
        self.e.upsert_customer(Timestamp(0), id, s).unwrap();
    }

    fn say(
        &mut self,
        now: Timestamp,
        customer: CustomerId,
        text: &str,
    ) -> (ConversationId, Vec<Effect>) {
        self.say_on(now, customer, Channel::Web, text)
    }

    fn say_on(
        &mut self,
        now: Timestamp,
        customer: CustomerId,
        channel: Channel,
        text: &str,
    ) -> (ConversationId, Vec<Effect>) {
        let r = self.say_unchecked(now, customer, channel, text);
        self.check();
        r
    }

    /// For loops over thousands of messages, where checking every invariant each time would
    /// be quadratic.
    fn say_unchecked(
        &mut self,
        now: Timestamp,
        customer: CustomerId,
        channel: Channel,
        text: &str,
    ) -> (ConversationId, Vec<Effect>) {
        self.next += 1;
        let msg = CustomerMessage {
            customer,
            channel,
            text: text.into(),
            new_conversation: ConversationId(self.next),
            group: None,
            priority: None,
        };
        let o = self.e.customer_message(now, msg).unwrap();
        (o.conversation, o.effects)
    }

    fn advance(&mut self, now: Timestamp) -> Vec<Effect> {
        let out = self.e.advance(now);
        self.check();
        out
    }

    fn state(&self, c: ConversationId) -> State {
        self.e.conversation(c).unwrap().state
    }

    fn check(&self) {
        self.e.check_invariants().unwrap();
    }
}

/// The kinds of automatic replies sent, one entry per text, in order.
fn replies(effects: &[Effect]) -> Vec<ReplyKind> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { from: Sender::Auto(k), .. } => Some(*k),
            _ => None,
        })
        .collect()
}

/// The texts sent among `effects`, in order (the mesh's tests read them too).
pub(crate) fn sent_texts(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn default_group() -> TenantSettings {
    TenantSettings { default_group: Some(G1), offline_grace: secs(0), ..Default::default() }
}

/// The administrator's eight rules from seed 001.
fn seed_001_settings() -> TenantSettings {
    TenantSettings {
        message_received: Some(MessageReceivedReply {
            texts: texts(&["收到1", "收到2"]),
            also_in_session: false,
        }),
        keywords: vec![KeywordRule {
            keywords: texts(&["价格"]),
            texts: texts(&["关键词1", "关键词2"]),
        }],
        open_service: Some(texts(&["欢迎"])),
        replies: ReplySettings {
            auto_accept: Some(AutoAcceptReply {
                texts: texts(&["{{nick_name}},你好,客服{{staff_name}}负责接待您"]),
                also_from_queue: false,
            }),
            queue: Some(QueueReply {
                rules: vec![QueueRule {
                    above: 0,
                    texts: texts(&["{{nick_name}},当前还有{{queue_num}}人在排队中"]),
                }],
                min_interval: secs(60),
            }),
            agent_no_response: Some(TimedReply {
                after: mins(2), texts: texts(&["客服无响应"])
            }),
            customer_no_response: Some(TimedReply {
                after: mins(3),
                texts: texts(&["访客无响应"]),
            }),
            customer_no_response_end: Some(TimedReply {
                after: mins(10),
                texts: texts(&["自动结束"]),
            }),
            manual_end: Some(texts(&["手动结束"])),
            offline: Some(OfflineReply {
                texts: texts(&["离线1", "离线2"]),
                min_interval: secs(0),
            }),
            ..Default::default()
        },
        ..default_group()
    }
}

/// Seed 001's worked case: eight configured rules and an 11-step conversation, checking
/// exactly which replies fire at each step.
#[test]
fn seed_001_worked_case() {
    use ReplyKind::*;
    let mut b = Bench::new(seed_001_settings());
    b.agent(A1, "张三", 1, AgentStatus::Online);
    b.customer(U1, "小明");

    // 1-2. The customer writes; the agent takes it automatically: the auto-accept reply, and
    // no message-received reply since "also in session" is off.
    let (c1, fx) = b.say(at(secs(10)), U1, "你好");
    assert_eq!(b.state(c1), State::Assigned);
    assert_eq!(replies(&fx), vec![AutoAccept]);
    assert_eq!(sent_texts(&fx), vec!["小明,你好,客服张三负责接待您"]);

    // 3. The agent does not respond: the agent-no-response reply.
    assert_eq!(b.e.next_deadline(), Some(at(secs(10) + mins(2))));
    assert!(replies(&b.advance(at(secs(10) + mins(2)) - secs(1))).is_empty());
    assert_eq!(replies(&b.advance(at(secs(10) + mins(2)))), vec![AgentNoResponse]);

    // 4. The agent replies.
    let fx = b.e.agent_message(at(mins(3)), A1, c1, "您好,请问有什么可以帮您?", None).unwrap();
    assert_eq!(sent_texts(&fx), vec!["您好,请问有什么可以帮您?"]);

    // 5. The customer does not respond: the customer-no-response reply.
    assert_eq!(replies(&b.advance(at(mins(6)))), vec![CustomerNoResponse]);

    // 6. Auto-end conditions hold: the conversation ends with its reply.
    assert_eq!(replies(&b.advance(at(mins(13)))), vec![CustomerNoResponseEnd]);
    assert_eq!(b.state(c1), State::Ended);
    assert_eq!(
        b.e.conversation(c1).unwrap().transitions.last().unwrap().cause,
        Cause::CustomerNoResponse
    );

    // 7. The customer writes again: a new conversation that remembers the last agent, and
    // the auto-accept reply.
    let (c2, fx) = b.say(at(mins(14)), U1, "还在吗");
    assert_ne!(c2, c1);
    assert_eq!(b.e.conversation(c2).unwrap().agent, Some(A1));
    assert_eq!(replies(&fx), vec![AutoAccept]);

    // 8. The agent does not respond: the agent-no-response reply.
    assert_eq!(replies(&b.advance(at(mins(16)))), vec![AgentNoResponse]);

    // 9. The agent ends the conversation: the manual-end reply.
    let fx = b.e.end(at(mins(17)), c2, Actor::Agent(A1)).unwrap();
    assert_eq!(replies(&fx), vec![ManualEnd]);
    b.check();

    // 10. The customer writes while the agent is offline: queued, with the message-received
    // reply and the offline reply, which replaces the queue reply.
    b.e.set_agent_status(at(mins(18)), A1, AgentStatus::Offline, Actor::Agent(A1)).unwrap();
    let (c3, fx) = b.say(at(mins(19)), U1, "在吗");
    assert_eq!(b.state(c3), State::Queued);
    assert_eq!(replies(&fx), vec![MessageReceived, MessageReceived, Offline, Offline]);

    // 11. The agent is online but full: a new customer queues and gets the queue reply with
    // its live position.
    b.e.set_agent_status(at(mins(20)), A1, AgentStatus::Online, Actor::Agent(A1)).unwrap();
    b.check();
    assert_eq!(b.state(c3), State::Assigned, "leaving the queue sends no auto-accept reply");
    b.customer(U2, "小红");
    let (c4, fx) = b.say(at(mins(21)), U2, "你好");
    assert_eq!(b.state(c4), State::Queued);
    assert_eq!(replies(&fx), vec![MessageReceived, MessageReceived, Queue]);
    assert!(sent_texts(&fx).contains(&"小红,当前还有1人在排队中".to_string()));

    // And a keyword: it replaces the message-received reply and silences the queue reply.
    let (_, fx) = b.say(at(mins(23)), U2, "价格多少");
    assert_eq!(replies(&fx), vec![Keyword, Keyword]);
}

#[test]
fn before_transfer_to_human_only_keyword_received_and_open_service_fire() {
    use ReplyKind::*;
    let mut b = Bench::new(TenantSettings { transfer_to_human: true, ..seed_001_settings() });
    b.agent(A1, "张三", 1, AgentStatus::Offline);
    b.next += 1;
    let o = b.e.open_service(at(secs(1)), U1, Channel::Web, ConversationId(b.next)).unwrap();
    assert_eq!(replies(&o.effects), vec![OpenService]);
    let c = o.conversation;
    assert_eq!(b.state(c), State::Bot);
    let (_, fx) = b.say(at(secs(2)), U1, "hi");
    assert_eq!(
        replies(&fx),
        vec![MessageReceived, MessageReceived],
        "no offline reply in the bot stage"
    );
    let (_, fx) = b.say(at(secs(3)), U1, "价格");
    assert_eq!(replies(&fx), vec![Keyword, Keyword]);
    assert!(replies(&b.advance(at(hours(1)))).is_empty(), "no in-session replies with the bot");
    let fx = b.e.request_human(at(hours(1)), c).unwrap();
    b.check();
    assert_eq!(b.state(c), State::Queued);
    assert_eq!(
        replies(&fx),
        vec![Offline, Offline],
        "after transfer the rules apply as without a bot"
    );
    assert_eq!(b.e.conversation(c).unwrap().transitions[1].cause, Cause::TransferToHuman);
    let fx = b.e.end(at(hours(2)), c, Actor::Supervisor(A1)).unwrap();
    assert!(replies(&fx).is_empty(), "ended from the queue: no end reply");
}

#[test]
fn message_received_in_session_needs_its_switch() {
    let mut settings = seed_001_settings();
    settings.message_received.as_mut().unwrap().also_in_session = true;
    let mut b = Bench::new(settings);
    b.agent(A1, "张三", 1, AgentStatus::Online);
    let (_, fx) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(
        replies(&fx),
        vec![ReplyKind::MessageReceived, ReplyKind::MessageReceived, ReplyKind::AutoAccept]
    );
}

#[test]
fn auto_accept_from_the_queue_needs_its_switch() {
    let mut settings = seed_001_settings();
    settings.replies.auto_accept.as_mut().unwrap().also_from_queue = true;
    let mut b = Bench::new(settings);
    b.agent(A1, "张三", 1, AgentStatus::Online);
    let (c1, _) = b.say(at(secs(1)), U1, "hi");
    let (c2, _) = b.say(at(secs(2)), U2, "hi");
    assert_eq!(b.state(c2), State::Queued);
    let fx = b.e.end(at(secs(3)), c1, Actor::Agent(A1)).unwrap();
    assert_eq!(b.state(c2), State::Assigned);
    assert_eq!(replies(&fx), vec![ReplyKind::ManualEnd, ReplyKind::AutoAccept]);
}

#[test]
fn reply_levels_agent_over_group_over_channel_over_tenant() {
    let offline = |t: &str| ReplySettings {
        offline: Some(OfflineReply { texts: texts(&[t]), min_interval: secs(0) }),
        ..Default::default()
    };
    let mut settings = default_group();
    settings.replies = offline("tenant");
    settings.channel_replies.insert(Channel::App, offline("app"));
    let mut b = Bench::new(settings);
    let agent = AgentSettings {
        nickname: "A".into(),
        capacity: 1,
        groups: vec![G1],
        replies: offline("agent"),
        ..Default::default()
    };
    b.e.upsert_agent(Timestamp(0), A1, agent).unwrap();
    b.e.set_agent_status(Timestamp(0), A1, AgentStatus::Online, Actor::Agent(A1)).unwrap();
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    b.e.set_agent_status(at(secs(2)), A1, AgentStatus::Offline, Actor::Agent(A1)).unwrap();
    let (_, fx) = b.say(at(secs(3)), U1, "anyone?");
    // Grace is zero: the conversation went back to the queue, where the group is all offline.
    assert_eq!(b.state(c), State::Queued);
    assert_eq!(sent_texts(&fx), vec!["tenant"]);
    b.e.upsert_group(
        at(secs(4)),
        G1,
        GroupSettings { replies: offline("group"), ..Default::default() },
    )
    .unwrap();
    let (_, fx) = b.say(at(secs(5)), U1, "anyone?");
    assert_eq!(sent_texts(&fx), vec!["group"]);
    let (_, fx) = b.say_on(at(secs(6)), U2, Channel::App, "app user");
    assert_eq!(sent_texts(&fx), vec!["group"], "group beats channel");
    b.e.upsert_group(at(secs(7)), G1, GroupSettings::default()).unwrap();
    let (_, fx) = b.say_on(at(secs(8)), U2, Channel::App, "app user");
    assert_eq!(sent_texts(&fx), vec!["app"], "channel beats tenant");
}

#[test]
fn offline_reply_uses_the_assigned_agents_settings_during_grace_and_honours_its_interval() {
    let mut settings = default_group();
    settings.offline_grace = mins(10);
    let mut b = Bench::new(settings);
    let replies_of_agent = ReplySettings {
        offline: Some(OfflineReply {
            texts: texts(&["{{staff_name}} is away"]),
            min_interval: mins(1),
        }),
        ..Default::default()
    };
    let agent = AgentSettings {
        nickname: "Zhang".into(),
        capacity: 1,
        groups: vec![G1],
        replies: replies_of_agent,
        ..Default::default()
    };
    b.e.upsert_agent(Timestamp(0), A1, agent).unwrap();
    b.e.set_agent_status(Timestamp(0), A1, AgentStatus::Online, Actor::Agent(A1)).unwrap();
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    b.e.set_agent_status(at(secs(2)), A1, AgentStatus::Offline, Actor::Agent(A1)).unwrap();
    assert_eq!(b.state(c), State::Assigned, "kept for the grace period");
    let (_, fx) = b.say(at(secs(3)), U1, "hello?");
    assert_eq!(sent_texts(&fx), vec!["Zhang is away"]);
    let (_, fx) = b.say(at(secs(30)), U1, "hello??");
    assert!(sent_texts(&fx).is_empty(), "within the minimum interval");
    let (_, fx) = b.say(at(secs(64)), U1, "hello???");
    assert_eq!(sent_texts(&fx).len(), 1);
    assert!(
        replies(&b.advance(at(mins(5)))).is_empty(),
        "no agent-no-response after an offline reply"
    );
    b.advance(at(mins(11)));
    assert_eq!(b.state(c), State::Queued, "requeued after the grace period");
}

#[test]
fn offline_reply_for_a_queued_customer_whose_dedicated_agent_is_offline() {
    let mut settings = default_group();
    settings.replies.offline =
        Some(OfflineReply { texts: texts(&["[{{staff_name}}] offline"]), min_interval: secs(0) });
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Offline);
    b.e.upsert_customer(
        at(secs(0)),
        U1,
        CustomerSettings { dedicated_agent: Some(A2), ..Default::default() },
    )
    .unwrap();
    b.e.upsert_customer(at(secs(0)), U2, CustomerSettings::default()).unwrap();
    let (_, _) = b.say(at(secs(1)), U2, "occupy A1");
    let (c, fx) = b.say(at(secs(2)), U1, "hi");
    assert_eq!(b.state(c), State::Queued);
    assert_eq!(sent_texts(&fx), vec!["[Li] offline"]);
    let (_, fx) = b.say(at(secs(3)), U2, "more");
    assert!(sent_texts(&fx).is_empty(), "U2's agent is online");
}

/// A customer waiting for its dedicated agent, who is full, while another agent is free:
/// when an administrator clears the customer's dedicated agent, the conversation is served
/// by the group at once, not when the wait for the old one times out.
#[test]
fn clearing_a_waiting_customers_dedicated_agent_releases_it_to_the_group() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Online);
    let loyal = CustomerSettings { dedicated_agent: Some(A2), ..Default::default() };
    b.e.upsert_customer(at(secs(0)), U1, loyal.clone()).unwrap();
    b.e.upsert_customer(at(secs(0)), U2, loyal).unwrap();
    let (first, _) = b.say(at(secs(1)), U2, "A2 takes me");
    assert_eq!(b.e.conversation(first).unwrap().agent, Some(A2));
    let (c, _) = b.say(at(secs(2)), U1, "hi");
    assert_eq!(b.state(c), State::Queued, "waits for A2 though A1 is free");
    let fx = b.e.upsert_customer(at(secs(3)), U1, CustomerSettings::default()).unwrap();
    b.check();
    assert_eq!((b.state(c), b.e.conversation(c).unwrap().agent), (State::Assigned, Some(A1)));
    assert!(fx.iter().any(|e| matches!(e, Effect::Notify { agent: A1, .. })), "{fx:?}");
}

#[test]
fn queue_reply_rules_interval_and_5000_plus() {
    let mut settings = default_group();
    settings.replies.queue = Some(QueueReply {
        rules: vec![
            QueueRule { above: 10, texts: texts(&[">10: {{queue_num}}"]) },
            QueueRule { above: 100, texts: texts(&[">100: {{queue_num}}"]) },
        ],
        min_interval: secs(30),
    });
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let mut last = Vec::new();
    for n in 0..5_002u64 {
        let (_, fx) = b.say_unchecked(at(secs(1)), CustomerId(100 + n), Channel::Web, "hi");
        last = sent_texts(&fx);
        if n == 5 {
            assert!(last.is_empty(), "position 5 is under every rule");
        }
        if n == 11 {
            assert_eq!(last, vec![">10: 11"]);
        }
        if n == 101 {
            assert_eq!(last, vec![">100: 101"]);
        }
    }
    b.check();
    assert_eq!(last, vec![">100: 5000+"], "position 5001 displays as 5000+");
    let (c, fx) = b.say(at(secs(10)), CustomerId(100 + 5_001), "still there?");
    assert!(sent_texts(&fx).is_empty(), "within the minimum interval");
    assert_eq!(b.e.displayed_position(c).as_deref(), Some("5000+"));
    let (_, fx) = b.say(at(secs(31)), CustomerId(100 + 5_001), "still there?");
    assert_eq!(sent_texts(&fx).len(), 1);
}

#[test]
fn mini_program_budget_keeps_the_reserve_for_humans() {
    let mut settings = seed_001_settings();
    settings.human_reserve = 1;
    let mut b = Bench::new(settings);
    b.agent(A1, "张三", 1, AgentStatus::Online);
    b.agent(A2, "李四", 1, AgentStatus::Online);
    // Keyword (2) + auto-accept (1) + agent-no-response (1) = 4 = 5 - reserve.
    let (c, fx) = b.say_on(at(secs(1)), U1, Channel::MiniProgram, "价格");
    assert_eq!(replies(&fx), vec![ReplyKind::Keyword, ReplyKind::Keyword, ReplyKind::AutoAccept]);
    let fx = b.advance(at(mins(5)));
    assert_eq!(replies(&fx), vec![]);
    assert_eq!(
        b.e.conversation(c).unwrap().consecutive_service,
        3,
        "keyword reply disarmed the timer"
    );
    // Transfer to another agent: its auto-accept takes the 4th slot, then nothing more.
    b.e.transfer(at(mins(6)), c, Target::Agent(A2), Actor::Supervisor(A1)).unwrap();
    assert_eq!(b.e.conversation(c).unwrap().consecutive_service, 4);
    let fx = b.e.transfer(at(mins(7)), c, Target::Agent(A1), Actor::Supervisor(A2)).unwrap();
    assert!(
        fx.iter().any(|e| matches!(e, Effect::ReplySuppressed { kind: ReplyKind::AutoAccept, .. }))
    );
    // The human still has the last slot, and no more.
    b.e.agent_message(at(mins(8)), A1, c, "hello", None).unwrap();
    let err = b.e.agent_message(at(mins(9)), A1, c, "again", None).unwrap_err();
    assert!(matches!(err, Error::BudgetExhausted { limit: 5, .. }), "{err}");
    // A customer message resets the budget.
    b.say_on(at(mins(10)), U1, Channel::MiniProgram, "ok");
    b.e.agent_message(at(mins(11)), A1, c, "again", None).unwrap();
    b.check();
}

#[test]
fn end_replies_manual_batch_idle_and_none_from_the_queue() {
    let mut settings = seed_001_settings();
    settings.replies.batch_end = Some(texts(&["批量结束"]));
    settings.replies.idle_end =
        Some(TimedReply { after: mins(30), texts: texts(&["超时结束"]) });
    settings.replies.agent_no_response = None;
    settings.replies.customer_no_response = None;
    settings.replies.customer_no_response_end = None;
    settings.message_received = None;
    let mut b = Bench::new(settings);
    b.agent(A1, "张三", 2, AgentStatus::Online);
    let (c1, _) = b.say(at(secs(1)), U1, "a");
    let (c2, _) = b.say(at(secs(1)), U2, "b");
    let (c3, _) = b.say(at(secs(1)), CustomerId(3), "c");
    assert_eq!(b.state(c3), State::Queued);
    let (results, fx) = b.e.end_batch(at(secs(5)), &[c3, c1, ConversationId(999)]);
    b.check();
    assert!(results[0].1.is_ok() && results[1].1.is_ok());
    assert_eq!(results[2].1, Err(Error::UnknownConversation(ConversationId(999))));
    assert_eq!(
        replies(&fx),
        vec![ReplyKind::BatchEnd],
        "batch end reply for the assigned one only"
    );
    // Idle auto-end: no message from either side for 30 minutes.
    b.e.agent_message(at(mins(10)), A1, c2, "hi", None).unwrap();
    assert!(replies(&b.advance(at(mins(39)))).is_empty());
    let fx = b.advance(at(mins(40)));
    assert_eq!(replies(&fx), vec![ReplyKind::IdleEnd]);
    assert_eq!(b.state(c2), State::Ended);
}

#[test]
fn reply_window_ends_the_conversation_and_refuses_late_messages() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 2, AgentStatus::Online);
    let (c, _) = b.say_on(at(secs(0)), U1, Channel::MiniProgram, "hi");
    b.e.agent_message(at(hours(1)), A1, c, "hello", None).unwrap();
    assert_eq!(b.e.next_deadline(), Some(at(hours(49))));
    b.advance(at(hours(49)));
    assert_eq!(b.state(c), State::Ended);
    assert_eq!(
        b.e.conversation(c).unwrap().transitions.last().unwrap().cause,
        Cause::ReplyWindowClosed
    );
    let err = b.e.agent_message(at(hours(50)), A1, c, "late", None).unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { state: State::Ended, .. }), "{err}");

    // Messenger: past 7 days a reply needs a tag, and the conversation stays open.
    let (m, _) = b.say_on(at(days(10)), U2, Channel::Messenger, "hi");
    b.advance(at(days(18)));
    assert_eq!(b.state(m), State::Assigned);
    let err = b.e.agent_message(at(days(18)), A1, m, "late", None).unwrap_err();
    assert_eq!(err, Error::TagRequired(m));
    b.e.agent_message(
        at(days(18)),
        A1,
        m,
        "your order shipped",
        Some(MessageTag::PostPurchaseUpdate),
    )
    .unwrap();
}

/// Past Messenger's 7 days an automatic reply, which carries no tag, is suppressed as the
/// agent's untagged message is refused; within them it goes.
#[test]
fn no_automatic_reply_goes_past_the_reply_window() {
    let mut settings = seed_001_settings();
    settings.default_group = Some(G1);
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 2, AgentStatus::Online);
    let (early, _) = b.say_on(at(secs(0)), U1, Channel::Messenger, "hi");
    let fx = b.e.end(at(days(1)), early, Actor::Agent(A1)).unwrap();
    assert_eq!(replies(&fx), vec![ReplyKind::ManualEnd], "within the window");
    let (late, _) = b.say_on(at(days(2)), U2, Channel::Messenger, "hi");
    let fx = b.e.end(at(days(10)), late, Actor::Agent(A1)).unwrap();
    assert!(replies(&fx).is_empty(), "past it: {fx:?}");
    let suppressed = fx.iter().any(|e| {
        matches!(e, Effect::ReplySuppressed { conversation, kind: ReplyKind::ManualEnd } if *conversation == late)
    });
    assert!(suppressed, "{fx:?}");
}

#[test]
fn an_unanswered_customer_past_the_window_cannot_be_answered() {
    let mut b = Bench::new(TenantSettings { retention_unaccepted: hours(1), ..default_group() });
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (c, _) = b.say_on(at(secs(0)), U1, Channel::Web, "hi");
    let err = b.e.agent_message(at(hours(48)), A1, c, "sorry", None).unwrap_err();
    assert!(matches!(err, Error::OutsideReplyWindow { channel: Channel::Web, .. }), "{err}");
    // Nothing can be sent any more, so the conversation ends when the window closes.
    b.advance(at(hours(48)));
    assert_eq!(b.state(c), State::Ended);
}

#[test]
fn unreplied_alert_goes_to_the_agent_or_the_whole_group() {
    let mut b = Bench::new(TenantSettings { unreplied_alert: Some(mins(5)), ..default_group() });
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Busy);
    let (c1, _) = b.say(at(secs(0)), U1, "hi");
    let (c2, _) = b.say(at(secs(0)), U2, "hi");
    let fx = b.advance(at(mins(5)));
    let alerts: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Event(Event::UnrepliedAlert { conversation, notify }) => {
                Some((*conversation, notify.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(alerts, vec![(c1, vec![A1]), (c2, vec![A1, A2])]);
    assert!(b.advance(at(mins(30))).is_empty(), "once per unanswered message");
}

#[test]
fn retention_purges_unaccepted_after_48_hours_and_accepted_after_60_days() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (served, _) = b.say(at(secs(0)), U1, "hi");
    let (never, _) = b.say(at(secs(0)), U2, "hi");
    b.e.channel_closed(at(secs(5)), never).unwrap();
    b.e.end(at(secs(10)), served, Actor::Agent(A1)).unwrap();
    b.advance(at(secs(10) + hours(48)));
    assert!(b.e.conversation(never).is_none());
    assert!(b.e.conversation(served).is_some());
    let fx = b.advance(at(secs(10) + days(60)));
    assert!(fx.contains(&Effect::Purge { conversation: served }));
    assert!(b.e.conversation(served).is_none());
}

#[test]
fn transitions_record_time_and_cause() {
    let mut b = Bench::new(default_group());
    b.e.upsert_group(
        Timestamp(0),
        G1,
        GroupSettings {
            policy: GroupPolicy {
                offer: OfferMode::Offer { timeout: secs(20) },
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Online);
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    b.e.decline(at(secs(2)), A1, c).unwrap();
    b.e.accept(at(secs(3)), A2, c).unwrap();
    b.e.transfer(
        at(secs(4)),
        c,
        Target::Group { group: G2, keep_entry_time: true },
        Actor::Agent(A2),
    )
    .unwrap();
    b.e.end(at(secs(5)), c, Actor::Supervisor(A1)).unwrap();
    b.check();
    let got: Vec<_> =
        b.e.conversation(c)
            .unwrap()
            .transitions
            .iter()
            .map(|t| (t.at, t.to, t.cause, t.agent))
            .collect();
    assert_eq!(
        got,
        vec![
            // No bot stage: straight to routing, and the first transition says why.
            (at(secs(1)), State::Offered, Cause::Opened, Some(A1)),
            (at(secs(2)), State::Queued, Cause::Declined, None),
            (at(secs(2)), State::Offered, Cause::Routed, Some(A2)),
            (at(secs(3)), State::Assigned, Cause::Accepted, Some(A2)),
            (at(secs(4)), State::Queued, Cause::Transferred, None),
            (at(secs(5)), State::Ended, Cause::EndedBySupervisor, None),
        ]
    );
}

#[test]
fn history_visibility_and_rating_credit() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Online);
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(b.e.conversation(c).unwrap().agent, Some(A1));
    b.e.transfer(at(secs(10)), c, Target::Agent(A2), Actor::Agent(A1)).unwrap();
    assert_eq!(b.e.visible_until(c, Actor::Agent(A2)), Some(None), "the new agent sees everything");
    assert_eq!(
        b.e.visible_until(c, Actor::Agent(A1)),
        Some(Some(at(secs(10)))),
        "the earlier one sees up to the handover"
    );
    assert_eq!(b.e.visible_until(c, Actor::Agent(AgentId(9))), None);
    let fx = b.e.rate(at(secs(20)), c, 5, "great").unwrap();
    assert_eq!(
        fx,
        vec![Effect::Event(Event::Rated { conversation: c, score: 5, credited: vec![A1, A2] })]
    );
    b.e.set_settings(TenantSettings { rating_credit: RatingCredit::LastOnly, ..default_group() })
        .unwrap();
    let fx = b.e.rate(at(secs(21)), c, 4, "").unwrap();
    assert_eq!(
        fx,
        vec![Effect::Event(Event::Rated { conversation: c, score: 4, credited: vec![A2] })]
    );
    assert!(b.e.rate(at(secs(21)), c, 6, "").is_err());
}

#[test]
fn bot_hosting_switches_for_one_some_or_all_assigned() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 2, AgentStatus::Online);
    b.agent(A2, "Li", 1, AgentStatus::Online);
    let (c1, _) = b.say(at(secs(1)), U1, "a");
    let (c2, _) = b.say(at(secs(1)), U2, "b");
    let (c3, _) = b.say(at(secs(1)), CustomerId(3), "c");
    let (n, _) = b.e.set_bot_hosting(at(secs(2)), &Selection::Conversations(vec![c1]), true);
    assert_eq!(n, 1);
    let (n, _) = b.e.set_bot_hosting(at(secs(2)), &Selection::All, true);
    assert_eq!(n, 2);
    let holder = b.e.conversation(c3).unwrap().agent.unwrap();
    let (n, _) = b.e.set_bot_hosting(at(secs(3)), &Selection::AssignedTo(holder), false);
    assert_eq!(n, b.e.router().agent(holder).unwrap().assigned.len());
    let (_, fx) = b.say(at(secs(4)), U1, "x");
    let hosted = fx.iter().any(|e| {
        matches!(e, Effect::Notify { note: Note::CustomerMessage { bot_hosting: true, .. }, .. })
    });
    assert_eq!(hosted, b.e.conversation(c1).unwrap().bot_hosting);
    let _ = c2;
}

#[test]
fn read_but_unreplied_marker() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    let fx = b.e.mark_read(at(secs(2)), A1, c).unwrap();
    assert_eq!(
        fx,
        vec![Effect::Notify { agent: A1, note: Note::ReadUnreplied { conversation: c } }]
    );
    b.e.agent_message(at(secs(3)), A1, c, "hello", None).unwrap();
    assert!(b.e.mark_read(at(secs(4)), A1, c).unwrap().is_empty());
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let mut b = Bench::new(TenantSettings::default());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let msg = |text: &str| CustomerMessage {
        customer: U1,
        channel: Channel::Web,
        text: text.into(),
        new_conversation: ConversationId(1),
        group: None,
        priority: None,
    };
    let err = b.e.customer_message(at(secs(1)), msg("")).unwrap_err();
    assert_eq!(err.code(), crate::Code::InvalidArgument);
    let err =
        b.e.customer_message(at(secs(1)), msg(&"x".repeat(MAX_MESSAGE_TEXT + 1))).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let err = b.e.customer_message(at(secs(1)), msg("hi")).unwrap_err();
    assert!(err.to_string().contains("no skill group"), "{err}");
    let err = b
        .e
        .customer_message(at(secs(1)), CustomerMessage { group: Some(GroupId(77)), ..msg("hi") })
        .unwrap_err();
    assert_eq!(err, Error::UnknownGroup(GroupId(77)));
    let err = b.e.accept(at(secs(1)), A1, ConversationId(5)).unwrap_err();
    assert_eq!(err.code(), crate::Code::NotFound);
    let err =
        b.e.upsert_agent(at(secs(1)), A2, AgentSettings { capacity: 0, ..Default::default() })
            .unwrap_err();
    assert_eq!(err.code(), crate::Code::InvalidArgument);
    let err =
        b.e.set_agent_status(at(secs(1)), A1, AgentStatus::Busy, Actor::Agent(A2)).unwrap_err();
    assert_eq!(err.code(), crate::Code::InvalidArgument);
    b.check();
}

#[test]
fn batch_reassign_moves_each_or_says_why_not() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 3, AgentStatus::Online);
    b.agent(A2, "Li", 2, AgentStatus::Online);
    let (c1, _) = b.say(at(secs(1)), U1, "a");
    let (c2, _) = b.say(at(secs(2)), U2, "b");
    let (c3, _) = b.say(at(secs(3)), CustomerId(3), "c");
    let on_a1: Vec<_> = [c1, c2, c3]
        .into_iter()
        .filter(|c| b.e.conversation(*c).unwrap().agent == Some(A1))
        .collect();
    let (results, fx) =
        b.e.reassign_batch(at(secs(4)), &[c1, c2, c3], Target::Agent(A2), Actor::Supervisor(A1));
    b.check();
    let moved = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert!(moved >= 1, "{results:?}");
    for (c, r) in &results {
        match r {
            Ok(()) => assert_eq!(b.e.conversation(*c).unwrap().agent, Some(A2)),
            Err(e) => {
                assert!(matches!(e, Error::AgentFull { .. } | Error::InvalidArgument(_)), "{e}")
            }
        }
    }
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Event(Event::Transferred { to: Target::Agent(A2), .. })))
    );
    assert!(!on_a1.is_empty());
    // To a group: every one queues there, keeping its entry time.
    let (results, _) = b.e.reassign_batch(
        at(secs(5)),
        &[c1, c2, c3],
        Target::Group { group: G2, keep_entry_time: true },
        Actor::Supervisor(A1),
    );
    b.check();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert_eq!(b.e.position(c1), Some(1));
    assert_eq!(b.e.position(c3), Some(3));
}

#[test]
fn staff_name_is_empty_without_an_assigned_or_dedicated_agent() {
    let mut settings = default_group();
    settings.replies.offline = Some(OfflineReply {
        texts: texts(&["[{{staff_name}}][{{nick_name}}]"]),
        min_interval: secs(0),
    });
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 1, AgentStatus::Offline);
    let (_, fx) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(sent_texts(&fx), vec!["[][]"], "no agent, no nickname known");
}

#[test]
fn reply_windows_can_be_configured_per_channel() {
    let mut settings = default_group();
    settings.reply_windows.insert(Channel::Web, mins(30));
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (c, _) = b.say(at(secs(0)), U1, "hi");
    let err = b.e.agent_message(at(mins(30)), A1, c, "late", None).unwrap_err();
    assert!(matches!(err, Error::OutsideReplyWindow { .. }), "{err}");
    b.advance(at(mins(30)));
    assert_eq!(b.state(c), State::Ended);
}

#[test]
fn events_carry_abandonment_waits_and_the_first_response() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (served, _) = b.say(at(secs(0)), U1, "hi");
    let (waiting, _) = b.say(at(secs(5)), U2, "hi");
    let fx =
        b.e.transfer(
            at(secs(8)),
            waiting,
            Target::Group { group: G2, keep_entry_time: true },
            Actor::Supervisor(A1),
        )
        .unwrap();
    let left = fx.iter().find_map(|e| match e {
        Effect::Event(Event::Transferred { left_queue, .. }) => Some(*left_queue),
        _ => None,
    });
    assert_eq!(left, Some(Some((G1, 3_000))), "left G1's queue after 3 s");
    let fx = b.e.channel_closed(at(secs(20)), waiting).unwrap();
    let ended = fx.iter().find_map(|e| match e {
        Effect::Event(Event::Ended { from, waited_ms, cause, group, .. }) => {
            Some((*from, *waited_ms, *cause, *group))
        }
        _ => None,
    });
    assert_eq!(
        ended,
        Some((State::Queued, Some(15_000), Cause::ChannelClosed, G2)),
        "waited since it first queued"
    );
    let first = |fx: &[Effect]| {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Event(Event::FirstResponse {
                    since_opened_ms, since_assigned_ms, ..
                }) => Some((*since_opened_ms, *since_assigned_ms)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let fx = b.e.agent_message(at(secs(30)), A1, served, "hello", None).unwrap();
    assert_eq!(first(&fx), vec![(30_000, 30_000)]);
    let fx = b.e.agent_message(at(secs(31)), A1, served, "again", None).unwrap();
    assert!(first(&fx).is_empty(), "only the first answer counts");
}

/// History leaves the engine: an ended conversation is handed out once with its retention
/// deadline, the customer keeps its last agent, and the engine holds live work only.
#[test]
fn ended_conversations_are_handed_out_once_with_their_retention() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (served, _) = b.say(at(secs(0)), U1, "hi");
    let (never, _) = b.say(at(secs(0)), U2, "hi");
    b.e.channel_closed(at(secs(5)), never).unwrap();
    b.e.end(at(secs(10)), served, Actor::Agent(A1)).unwrap();
    let ended = b.e.take_ended();
    let by_id: Vec<(ConversationId, Timestamp)> =
        ended.iter().map(|e| (e.conversation.id, e.purge_at)).collect();
    assert_eq!(by_id, vec![(never, at(secs(5) + hours(48))), (served, at(secs(10) + days(60)))]);
    assert!(b.e.take_ended().is_empty(), "handed out once");
    assert_eq!(b.e.conversation_count(), 0);
    assert_eq!(b.e.next_deadline(), None, "no purge timer stays behind");
    assert_eq!(b.e.customer(U1).unwrap().last_agent, Some(A1));
    b.check();

    // A rating after the end: the conversation comes back for one command and leaves again.
    let mut archived = ended[1].conversation.clone();
    archived.rating = None;
    b.e.restore_ended(archived);
    let fx = b.e.rate(at(secs(20)), served, 5, "").unwrap();
    assert_eq!(
        fx,
        vec![Effect::Event(Event::Rated { conversation: served, score: 5, credited: vec![A1] })]
    );
    let again = b.e.take_ended();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].purge_at, at(secs(10) + days(60)));
    assert_eq!(again[0].conversation.rating.as_ref().map(|r| r.score), Some(5));
    assert_eq!(again[0].conversation.visible_until(Actor::Agent(A1)), Some(Some(at(secs(10)))));
    b.check();
}

/// A customer with nothing open can leave memory and come back with what routing needs;
/// references deleted meanwhile are dropped.
#[test]
fn customers_with_nothing_open_are_evicted_and_restored() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    b.customer(U1, "Wang");
    let (c, _) = b.say(at(secs(0)), U1, "hi");
    assert_eq!(b.e.evict_customer(U1), None, "a customer with an open conversation stays");
    b.e.end(at(secs(10)), c, Actor::Agent(A1)).unwrap();
    b.e.take_ended();
    let kept = b.e.evict_customer(U1).expect("nothing open");
    assert_eq!(kept.last_agent, Some(A1));
    assert!(b.e.customer(U1).is_none());
    b.check();
    b.e.restore_customer(U1, kept.clone());
    assert_eq!(b.e.customer(U1), Some(&kept));
    b.check();
    b.e.evict_customer(U1);
    b.e.remove_agent(at(secs(20)), A1).unwrap();
    b.e.restore_customer(U1, kept);
    assert_eq!(b.e.customer(U1).unwrap().last_agent, None, "the agent is gone");
    b.check();
}

#[test]
fn the_first_transition_keeps_what_routed_it() {
    // Without the bot stage a conversation opens straight into its queue.
    let mut b = Bench::new(default_group());
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    let first = &b.e.conversation(c).unwrap().transitions[0];
    assert_eq!((first.from, first.to, first.cause), (None, State::Queued, Cause::Opened));

    // With it, an agent free at once still records the transfer to a human.
    let mut b = Bench::new(TenantSettings { transfer_to_human: true, ..default_group() });
    b.agent(A1, "Zhang", 1, AgentStatus::Online);
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    b.e.request_human(at(secs(2)), c).unwrap();
    b.check();
    let got: Vec<_> =
        b.e.conversation(c).unwrap().transitions.iter().map(|t| (t.to, t.cause)).collect();
    assert_eq!(got, [(State::Bot, Cause::Opened), (State::Assigned, Cause::TransferToHuman)]);
}

#[test]
fn a_transfer_to_ones_own_group_goes_to_someone_else() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 2, AgentStatus::Online);
    b.agent(A2, "Li", 2, AgentStatus::Online);
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    let holder = b.e.conversation(c).unwrap().agent.unwrap();
    let other = if holder == A1 { A2 } else { A1 };
    let to_g1 = Target::Group { group: G1, keep_entry_time: true };
    b.e.transfer(at(secs(2)), c, to_g1, Actor::Agent(holder)).unwrap();
    b.check();
    assert_eq!(b.e.conversation(c).unwrap().agent, Some(other), "the other agent had room");

    // Alone in the group, the agent does not get it straight back; it waits, and the agent
    // may still pick it.
    b.e.set_agent_status(at(secs(3)), holder, AgentStatus::Offline, Actor::Agent(holder)).unwrap();
    b.e.transfer(at(secs(4)), c, to_g1, Actor::Agent(other)).unwrap();
    b.check();
    assert_eq!(b.state(c), State::Queued);
    b.e.pick(at(secs(5)), other, c).unwrap();
    b.check();
    assert_eq!(b.e.conversation(c).unwrap().agent, Some(other));
}

/// A transfer to another group that an agent there takes at once (no queue entry between)
/// still moves the conversation to that group: its group is where the router holds it.
#[test]
fn a_transfer_to_a_group_taken_at_once_is_of_that_group() {
    let mut b = Bench::new(default_group());
    b.agent(A1, "Zhang", 2, AgentStatus::Online);
    b.agent(A2, "Li", 2, AgentStatus::Online);
    let in_g2 = AgentSettings {
        nickname: "Li".into(),
        capacity: 2,
        groups: vec![G2],
        ..Default::default()
    };
    b.e.upsert_agent(Timestamp(0), A2, in_g2).unwrap();
    let (c, _) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(b.e.conversation(c).unwrap().agent, Some(A1));
    let to_g2 = Target::Group { group: G2, keep_entry_time: true };
    b.e.transfer(at(secs(2)), c, to_g2, Actor::Agent(A1)).unwrap();
    b.check();
    let conv = b.e.conversation(c).unwrap();
    assert_eq!((conv.agent, conv.group), (Some(A2), G2));
}

#[test]
fn a_priority_raised_while_waiting_moves_up_and_keeps_its_entry_time() {
    let mut b = Bench::new(default_group());
    let (c1, _) = b.say(at(secs(1)), U1, "first");
    let (c2, _) = b.say(at(secs(2)), U2, "second");
    assert_eq!((b.e.position(c1), b.e.position(c2)), (Some(1), Some(2)));
    let msg = |text: &str, priority| CustomerMessage {
        customer: U2,
        channel: Channel::Web,
        text: text.into(),
        new_conversation: ConversationId(99),
        group: None,
        priority: Some(priority),
    };
    let o = b.e.customer_message(at(secs(3)), msg("urgent", 5)).unwrap();
    b.check();
    assert_eq!(o.conversation, c2);
    assert_eq!((b.e.position(c1), b.e.position(c2)), (Some(2), Some(1)));
    assert_eq!(b.e.conversation(c2).unwrap().priority, 5);
    let Some(Placement::Queued { key, .. }) = b.e.router().placement(c2) else { panic!() };
    assert_eq!(key.entered_at(), at(secs(2)), "the entry time is kept");

    // A lower priority later never lowers it.
    b.e.customer_message(at(secs(4)), msg("again", 1)).unwrap();
    b.check();
    assert_eq!(b.e.conversation(c2).unwrap().priority, 5);
    assert_eq!(b.e.position(c2), Some(1));
}

#[test]
fn vip_customer_groups_raise_the_priority_of_their_members() {
    let mut settings = default_group();
    settings.customer_group_priorities.insert("vip".into(), 7);
    settings.customer_group_priorities.insert("gold".into(), 3);
    let mut b = Bench::new(settings);
    let (plain, _) = b.say(at(secs(1)), U1, "first");
    let vip = CustomerSettings {
        customer_groups: vec!["gold".into(), "vip".into()],
        ..Default::default()
    };
    b.e.upsert_customer(at(secs(0)), U2, vip).unwrap();
    let (member, _) = b.say(at(secs(2)), U2, "second");
    assert_eq!(b.e.conversation(member).unwrap().priority, 7, "the highest of its groups");
    assert_eq!((b.e.position(member), b.e.position(plain)), (Some(1), Some(2)));
}

#[test]
fn queue_replies_carry_a_live_estimated_wait() {
    let mut settings = default_group();
    settings.replies.queue = Some(QueueReply {
        rules: vec![QueueRule {
            above: 0,
            texts: texts(&["{{queue_num}} ahead, about {{wait_time}}"]),
        }],
        min_interval: secs(0),
    });
    let mut b = Bench::new(settings);
    b.agent(A1, "Zhang", 1, AgentStatus::Busy);
    // Nobody served yet: no estimate, the placeholder is empty.
    let (c1, fx) = b.say(at(secs(60)), U1, "hi");
    assert_eq!(sent_texts(&fx), vec!["1 ahead, about "]);
    assert_eq!(b.e.estimated_wait(at(secs(60)), c1), None);
    b.e.set_agent_status(at(secs(120)), A1, AgentStatus::Online, Actor::Agent(A1)).unwrap();
    assert_eq!(b.state(c1), State::Assigned);
    assert_eq!(b.e.estimated_wait(at(secs(120)), c1), None, "assigned: no estimate");
    // One served in two minutes: the next in line waits about two minutes.
    let (c2, fx) = b.say(at(secs(180)), U2, "hi");
    let w2 = b.e.estimated_wait(at(secs(180)), c2).expect("the group has served one");
    assert!(w2 > secs(60) && w2 < secs(180), "{w2:?}");
    assert_eq!(sent_texts(&fx), vec![format!("1 ahead, about {}", replies::display_wait(w2))]);
    let (c3, _) = b.say(at(secs(180)), CustomerId(3), "hi");
    let w3 = b.e.estimated_wait(at(secs(180)), c3).unwrap();
    assert_eq!(b.e.position(c3), Some(2));
    assert!(w3.abs_diff(w2 * 2) < Duration::from_millis(1), "proportional to the position");
    // Kept live: nobody served for a while, the same position waits longer.
    let later = b.e.estimated_wait(at(secs(600)), c2).unwrap();
    assert!(later > w2, "{later:?} > {w2:?}");
}

#[test]
fn a_full_queue_ends_the_conversation_with_the_queue_full_reply() {
    let mut b = Bench::new(default_group());
    let mut g1 = GroupSettings::default();
    g1.policy.overflow = Some(crate::config::Overflow {
        max_waiting: Some(1),
        max_wait: Some(mins(10)),
        group: None,
    });
    g1.replies.queue_full = Some(texts(&["Sorry {{nick_name}}, all lines are busy"]));
    b.e.upsert_group(Timestamp(0), G1, g1).unwrap();
    b.customer(U1, "Li");
    b.customer(U2, "Wang");
    let (c1, _) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(b.state(c1), State::Queued);
    // The second finds the queue full: refused at once, with the group's reply.
    let (c2, fx) = b.say(at(secs(2)), U2, "hi");
    assert_eq!(b.state(c2), State::Ended);
    assert_eq!(b.e.conversation(c2).unwrap().transitions.last().unwrap().cause, Cause::QueueFull);
    assert_eq!(replies(&fx), vec![ReplyKind::QueueFull]);
    assert_eq!(sent_texts(&fx), vec!["Sorry Wang, all lines are busy"]);
    assert_eq!(b.e.customer(U2).unwrap().open, None, "the customer may write again");
    // The first waits ten minutes, then is refused by the max wait (a core deadline).
    assert_eq!(b.e.next_deadline(), Some(at(secs(1) + mins(10))));
    let fx = b.advance(at(secs(1) + mins(10)));
    assert_eq!(b.state(c1), State::Ended);
    assert_eq!(sent_texts(&fx), vec!["Sorry Li, all lines are busy"]);
}

#[test]
fn an_overflow_chain_that_loops_is_refused_naming_the_loop() {
    let mut b = Bench::new(default_group());
    let overflow = |to| {
        let mut g = GroupSettings::default();
        g.policy.overflow =
            Some(crate::config::Overflow { max_waiting: Some(5), max_wait: None, group: Some(to) });
        g
    };
    b.e.upsert_group(Timestamp(0), G1, overflow(G2)).unwrap();
    let err = b.e.upsert_group(Timestamp(0), G2, overflow(G1)).unwrap_err();
    assert!(err.to_string().contains("loops (g2 → g1 → g2)"), "{err}");
    let err = b.e.upsert_group(Timestamp(0), G2, overflow(GroupId(9))).unwrap_err();
    assert!(matches!(err, Error::UnknownGroup(GroupId(9))), "{err}");
    // Moved by the cap: the transition says why, and it keeps waiting there.
    b.e.upsert_group(Timestamp(0), G2, GroupSettings::default()).unwrap();
    let ids: Vec<_> = (0..6).map(|i| b.say(at(secs(i)), CustomerId(10 + i), "hi").0).collect();
    let last = b.e.conversation(ids[5]).unwrap();
    assert_eq!((last.state, last.group), (State::Queued, G2));
    assert_eq!(last.transitions.last().unwrap().cause, Cause::Overflowed);
}

#[test]
fn a_conversation_moved_by_max_wait_to_a_free_agent_is_of_the_new_group() {
    let mut b = Bench::new(default_group());
    let mut g1 = GroupSettings::default();
    g1.policy.overflow = Some(crate::config::Overflow {
        max_waiting: None,
        max_wait: Some(secs(30)),
        group: Some(G2),
    });
    b.e.upsert_group(Timestamp(0), G1, g1).unwrap();
    let s = AgentSettings {
        nickname: "Bo".into(),
        capacity: 1,
        groups: vec![G2],
        ..Default::default()
    };
    b.e.upsert_agent(Timestamp(0), A2, s).unwrap();
    b.e.set_agent_status(Timestamp(0), A2, AgentStatus::Online, Actor::Agent(A2)).unwrap();
    let (c1, _) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(b.state(c1), State::Queued);
    b.advance(at(secs(31)));
    let c = b.e.conversation(c1).unwrap();
    assert_eq!((c.state, c.agent, c.group), (State::Assigned, Some(A2), G2));
}

/// Business hours (`router/hours.rs`): a conversation arriving in a closed group gets the
/// `closed` reply once, not on its later messages; when the group closes on a waiting one
/// it is told again; with `end` it ends with cause `closed`.
#[test]
fn a_closed_group_sends_the_closed_reply_once_and_ends_under_end() {
    use crate::hours::{Hours, Offsets, Span};
    let mut b = Bench::new(default_group());
    let mut g1 = GroupSettings::default();
    // Open 01:00-02:00 UTC every day.
    let span = vec![Span { start: 60, end: 120 }];
    g1.policy.hours =
        Some(Hours { weekly: std::array::from_fn(|_| span.clone()), ..Default::default() });
    g1.replies.closed = Some(texts(&["Closed, {{nick_name}}"]));
    b.e.upsert_group(Timestamp(0), G1, g1.clone()).unwrap();
    b.e.set_calendar(Timestamp(0), Offsets::default());
    b.customer(U1, "Li");
    let (c1, fx) = b.say(at(secs(1)), U1, "hi");
    assert_eq!(b.state(c1), State::Queued);
    assert_eq!(replies(&fx).iter().filter(|k| **k == ReplyKind::Closed).count(), 1);
    assert_eq!(sent_texts(&fx).last().map(String::as_str), Some("Closed, Li"));
    let (_, fx) = b.say(at(secs(2)), U1, "anyone?");
    assert!(!replies(&fx).contains(&ReplyKind::Closed), "once per arrival: {:?}", replies(&fx));
    // Switched to `end` while closed: the waiting conversation ends, told again.
    g1.policy.when_closed = crate::config::WhenClosed::End;
    let fx = b.e.upsert_group(at(secs(3)), G1, g1).unwrap();
    assert_eq!(b.state(c1), State::Ended);
    assert_eq!(b.e.conversation(c1).unwrap().transitions.last().unwrap().cause, Cause::Closed);
    assert_eq!(replies(&fx), vec![ReplyKind::Closed]);
}
