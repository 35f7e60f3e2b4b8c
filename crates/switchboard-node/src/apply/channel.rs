//! Channel gateway commands: customer messages, open service, transfer to a human, close,
//! rating.

use switchboard_core::engine::MAX_MESSAGE_TEXT;
use switchboard_core::{ConversationId, CustomerId, CustomerMessage, Timestamp};
use switchboard_proto::internal::v1::response;
use switchboard_proto::v1 as pb;

use super::{Output, emit, transcript};
use crate::convert::{self, refusal, views};
use crate::error::{Error, Result};
use crate::names;
use crate::state::TenantState;

/// The conversation a request names, checked to belong to this tenant.
pub(super) fn conversation(state: &TenantState, field: &str, name: &str) -> Result<ConversationId> {
    let (t, n) = names::conversation(field, name)?;
    if t != state.id {
        return Err(Error::field(field, format!("{name:?} is not in tenant {}", state.id)));
    }
    state.conversation(n)
}

pub(crate) fn check_text(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::field(field, "the message is empty"));
    }
    if text.len() > MAX_MESSAGE_TEXT {
        return Err(Error::field(
            field,
            format!(
                "the message is {} bytes; the limit is {MAX_MESSAGE_TEXT}, split it",
                text.len()
            ),
        ));
    }
    Ok(())
}

struct Opening {
    /// The caller-chosen customer id.
    id: String,
    customer: CustomerId,
    new_conversation: ConversationId,
}

/// Validates the customer's name and the ids a new conversation would take, without
/// allocating.
fn opening(state: &TenantState, customer_field: &str, customer: &str) -> Result<Opening> {
    let id = names::child_in(customer_field, customer, "customers", &state.id)?;
    Ok(Opening {
        customer: CustomerId(state.customers.peek(&id)),
        id,
        new_conversation: ConversationId(state.next_conversation + 1),
    })
}

/// Commits the ids once the core accepted the operation.
fn opened(state: &mut TenantState, customer: &str, opened: bool) {
    state.customers.intern(customer);
    if opened {
        state.next_conversation += 1;
    }
}

pub(super) fn post_message(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::PostMessageRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let o = opening(state, "customer", &r.customer)?;
    let channel = convert::channel("channel", r.channel)?;
    check_text("text", &r.text)?;
    let group = if r.group.is_empty() { None } else { Some(state.group_ref("group", &r.group)?) };
    let priority = u8::try_from(r.priority).map_err(|_| {
        Error::field("priority", format!("{} is above the highest priority, 255", r.priority))
    })?;
    if r.nickname.len() > 256 {
        return Err(Error::field("nickname", "longer than 256 bytes"));
    }
    let msg = CustomerMessage {
        customer: o.customer,
        channel,
        text: r.text.clone(),
        new_conversation: o.new_conversation,
        group,
        priority: (priority > 0).then_some(priority),
    };
    // The nickname the channel knows goes in before the message, so its replies can greet,
    // and only once the message is sure to be accepted (the core's rule).
    let outcome = state
        .engine
        .customer_message_named(now, msg, &r.nickname)
        .map_err(|e| refusal::new_customer(state, e, o.customer, &o.id))?;
    opened(state, &o.id, outcome.opened);
    transcript(
        state,
        now,
        outcome.conversation,
        "customer",
        "",
        pb::ReplyKind::Unspecified,
        &r.text,
        0,
        out,
    );
    emit(state, now, outcome.effects, out);
    Ok(response::Result::PostMessage(pb::PostMessageResponse {
        conversation: Some(views::conversation(state, outcome.conversation)),
        opened: outcome.opened,
    }))
}

pub(super) fn open_service(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::OpenServiceRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let o = opening(state, "customer", &r.customer)?;
    let channel = convert::channel("channel", r.channel)?;
    let outcome = state.engine.open_service(now, o.customer, channel, o.new_conversation)?;
    opened(state, &o.id, outcome.opened);
    emit(state, now, outcome.effects, out);
    Ok(response::Result::PostMessage(pb::PostMessageResponse {
        conversation: Some(views::conversation(state, outcome.conversation)),
        opened: outcome.opened,
    }))
}

pub(super) fn request_human(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::ConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let c = conversation(state, "conversation", &r.conversation)?;
    let effects = state.engine.request_human(now, c)?;
    emit(state, now, effects, out);
    Ok(response::Result::Conversation(views::conversation(state, c)))
}

pub(super) fn close(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::ConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let c = conversation(state, "conversation", &r.conversation)?;
    let effects = state.engine.channel_closed(now, c)?;
    emit(state, now, effects, out);
    Ok(response::Result::Conversation(views::conversation(state, c)))
}

pub(super) fn rate(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::RateConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let c = conversation(state, "conversation", &r.conversation)?;
    let score = u8::try_from(r.score).map_err(|_| Error::field("score", "must be 1 to 5"))?;
    let effects = state.engine.rate(now, c, score, &r.comment)?;
    emit(state, now, effects, out);
    Ok(response::Result::Conversation(views::conversation(state, c)))
}

#[cfg(test)]
mod tests {
    use switchboard_proto::internal::v1::{Command, command::Op};
    use switchboard_proto::v1 as pb;

    use crate::apply::apply;
    use crate::state::TenantState;

    const HOUR: u64 = 3_600_000;

    fn run(state: &mut TenantState, at_ms: u64, op: Op) -> crate::apply::Output {
        apply(state, &Command { at_ms, op: Some(op), ..Default::default() }).expect("accepted").1
    }

    /// A refused message changes nothing, the nickname it carried included: on a tenant with
    /// no default group, a new customer's first message is refused and leaves no customer.
    #[test]
    fn a_refused_message_leaves_no_customer_behind() {
        use super::super::admin::tests::{T, group_op, refused, run as try_run};

        let mut s = TenantState::default();
        let create = pb::CreateTenantRequest { tenant_id: "acme".into(), ..Default::default() };
        try_run(&mut s, 1_000, Op::CreateTenant(create)).unwrap();
        try_run(&mut s, 1_000, group_op("g")).unwrap();
        let post = |customer: &str, nickname: &str, group: &str| {
            Op::PostMessage(pb::PostMessageRequest {
                customer: format!("{T}/customers/{customer}"),
                channel: pb::Channel::Web as i32,
                text: "hello".into(),
                nickname: nickname.into(),
                group: if group.is_empty() {
                    String::new()
                } else {
                    format!("tenants/acme/groups/{group}")
                },
                ..Default::default()
            })
        };
        let nickname = |s: &TenantState, customer: &str| {
            let u = switchboard_core::CustomerId(s.customers.get(customer)?);
            s.engine.customer(u)?.settings.nickname.clone()
        };

        // `refused` also checks the state is byte for byte what it was.
        let e = refused(&mut s, post("u1", "Ann", ""));
        assert!(e.to_string().contains("no skill group"), "{e}");
        let next = switchboard_core::CustomerId(s.customers.peek("u1"));
        assert!(s.engine.customer(next).is_none(), "no customer left in the engine");
        refused(&mut s, post("u1", "", ""));

        // A known customer keeps the nickname it had.
        let put = Op::PutCustomer(pb::PutCustomerRequest {
            name: format!("{T}/customers/u2"),
            nickname: "Bo".into(),
            ..Default::default()
        });
        let (_, out) = try_run(&mut s, 2_000, put).unwrap();
        // Nothing open and no routing of its own: it leaves memory, nickname and all.
        let record = crate::archive::decode_customer(&out.customers[0].body).unwrap();
        assert_eq!(record.customer.settings.nickname.as_deref(), Some("Bo"));
        refused(&mut s, post("u2", "Bob", ""));
        // Brought back for the refused message, and put back as it was.
        let back = Command {
            at_ms: 2_500,
            op: Some(post("u2", "Bob", "")),
            customer: out.customers[0].body.clone(),
            ..Default::default()
        };
        assert!(apply(&mut s, &back).is_err());
        assert_eq!(nickname(&s, "u2"), None, "evicted again");

        // Accepted once it names a group, with the nickname.
        try_run(&mut s, 3_000, post("u1", "Ann", "g")).unwrap();
        assert_eq!(nickname(&s, "u1").as_deref(), Some("Ann"));
    }

    /// An ended conversation leaves memory into the batch's archive rows, with the retention
    /// deadline the store deletes it (and its transcript) at; a rating after the end brings
    /// it back for that one command and archives it again.
    #[test]
    fn ended_conversations_are_archived_with_their_retention() {
        let mut s = TenantState::default();
        let t0 = 1_700_000_000_000;
        run(
            &mut s,
            t0,
            Op::CreateTenant(pb::CreateTenantRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            }),
        );
        run(
            &mut s,
            t0,
            Op::PutGroup(pb::PutGroupRequest {
                name: "tenants/acme/groups/g".into(),
                ..Default::default()
            }),
        );
        let out = run(
            &mut s,
            t0,
            Op::PostMessage(pb::PostMessageRequest {
                customer: "tenants/acme/customers/u1".into(),
                channel: pb::Channel::Web as i32,
                text: "hello".into(),
                group: "tenants/acme/groups/g".into(),
                ..Default::default()
            }),
        );
        assert_eq!(out.transcript.len(), 1, "the customer's message is kept");
        let out = run(
            &mut s,
            t0 + 1000,
            Op::CloseConversation(pb::ConversationRequest {
                conversation: "tenants/acme/conversations/1".into(),
                ..Default::default()
            }),
        );
        // Never accepted: kept 48 hours after it ended.
        assert_eq!(out.archive.len(), 1);
        let row = &out.archive[0];
        assert_eq!((row.conversation, row.customer.as_str()), (1, "u1"));
        assert_eq!((row.opened_at_ms, row.ended_at_ms), (t0, t0 + 1000));
        assert_eq!(row.purge_at_ms, t0 + 1000 + 48 * HOUR);
        assert!(s.engine.conversation(switchboard_core::ConversationId(1)).is_none());
        assert!(s.conversation_extra.is_empty(), "nothing of it stays in memory");
        // Its customer, with nothing open and no routing of its own, leaves memory too.
        assert_eq!(out.customers.len(), 1);
        assert_eq!(out.customers[0].customer, "u1");
        assert_eq!((s.engine.customer_count(), s.customers.get("u1")), (0, None));
        let record = crate::archive::decode_customer(&out.customers[0].body).unwrap();
        assert_eq!(record.num, 1);
        assert_eq!(s.engine.next_deadline(), None);
        let archived = crate::archive::decode(&row.body).unwrap();
        assert_eq!(archived.extra.transcript_seq, 1);

        // A refused command on it (no agent served it, so it cannot be rated) changes nothing.
        let rate = Command {
            at_ms: t0 + 2000,
            op: Some(Op::RateConversation(pb::RateConversationRequest {
                conversation: "tenants/acme/conversations/1".into(),
                score: 5,
                ..Default::default()
            })),
            archived: row.body.clone(),
            ..Default::default()
        };
        assert!(apply(&mut s, &rate).is_err());
        assert!(s.engine.conversation(switchboard_core::ConversationId(1)).is_none());
        assert!(s.conversation_extra.is_empty());
    }
}
