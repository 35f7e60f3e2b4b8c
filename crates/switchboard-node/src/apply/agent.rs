//! Agent desktop commands. `agent` in each request is the acting agent.

use switchboard_core::engine::{Actor, Effect, Selection, Sender, Target};
use switchboard_core::login::FirstLogin;
use switchboard_core::{AgentId, AgentStatus, ConversationId, CustomerId, Timestamp};
use switchboard_proto::internal::v1::response;
use switchboard_proto::v1 as pb;

use super::channel::{check_text, conversation};
use super::{Output, emit};
use crate::convert::mask::{Mask, REPLY_KINDS, known_paths, merge_fields, updated_replies};
use crate::convert::{self, resources, views};
use crate::error::{Error, Result};
use crate::names;
use crate::scope;
use crate::state::TenantState;

/// Text of the rating invitation sent to the customer.
pub const RATING_INVITATION: &str = "How did we do? Please rate this conversation from 1 to 5.";
/// Longest note and tag a conversation or customer may carry.
const MAX_NOTE: usize = 4096;
const MAX_TAG: usize = 64;
const MAX_TAGS: usize = 50;

/// The acting agent of a request, checked to belong to this tenant.
pub(super) fn acting(state: &TenantState, field: &str, name: &str) -> Result<AgentId> {
    state.agent_ref(field, name)
}

/// How the acting agent acts: supervisors may act on any conversation.
fn actor(state: &TenantState, a: AgentId) -> Actor {
    scope::viewer(state, a)
}

fn conversation_response(state: &TenantState, c: ConversationId) -> response::Result {
    response::Result::Conversation(views::conversation(state, c))
}

/// The acting agent does `op` on the named conversation; answers with the conversation.
fn on_conversation(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
    op: fn(
        &mut switchboard_core::Engine,
        Timestamp,
        AgentId,
        ConversationId,
    ) -> switchboard_core::Result<Vec<Effect>>,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    let effects = op(&mut state.engine, now, a, c)?;
    emit(state, now, effects, out);
    Ok(conversation_response(state, c))
}

/// Records today's first sign-in (the tenant's day) when an agent leaves `offline`.
pub(super) fn note_login(
    state: &mut TenantState,
    now: Timestamp,
    a: AgentId,
    from: AgentStatus,
    to: AgentStatus,
) {
    let zone = &state.engine.settings().time_zone;
    let kept = state.agent_extra.get(&a).and_then(|x| x.first_login);
    let day = || crate::calendar::day(zone, now);
    let first = FirstLogin::after(kept, from, to, now, day);
    if first != kept {
        state.agent_extra.entry(a).or_default().first_login = first;
    }
}

pub(super) fn set_status(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::SetStatusRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let status = convert::status("status", r.status)?;
    let from = state.engine.router().agent(a).map_or(AgentStatus::Offline, |x| x.status);
    let effects = state.engine.set_agent_status(now, a, status, Actor::Agent(a))?;
    note_login(state, now, a, from, status);
    emit(state, now, effects, out);
    Ok(response::Result::Agent(resources::agent(state, a)))
}

/// The agent ends its optional wrap-up: of the named ended conversation, or every one.
pub(super) fn end_wrap_up(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::EndWrapUpRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    // The conversation has ended and left memory: its name is checked, not its state.
    let c = if r.conversation.is_empty() {
        None
    } else {
        let (t, n) = names::conversation("conversation", &r.conversation)?;
        if t != state.id {
            return Err(Error::field(
                "conversation",
                format!("{:?} is not in tenant {}", r.conversation, state.id),
            ));
        }
        Some(ConversationId(n))
    };
    let effects = state.engine.end_wrap_up(now, a, c)?;
    emit(state, now, effects, out);
    Ok(response::Result::Agent(resources::agent(state, a)))
}

pub(super) fn accept(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    on_conversation(state, now, r, out, switchboard_core::Engine::accept)
}

pub(super) fn decline(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    on_conversation(state, now, r, out, switchboard_core::Engine::decline)
}

pub(super) fn pick(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    on_conversation(state, now, r, out, switchboard_core::Engine::pick)
}

pub(super) fn send_message(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::SendMessageRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    check_text("text", &r.text)?;
    let tag = convert::tag("tag", r.tag)?;
    let effects = state.engine.agent_message(now, a, c, &r.text, tag)?;
    emit(state, now, effects, out);
    let message = out.transcript.last().map(|row| row.message.clone());
    Ok(response::Result::SendMessage(pb::SendMessageResponse { message }))
}

pub(super) fn mark_read(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    on_conversation(state, now, r, out, switchboard_core::Engine::mark_read)
}

/// Where a transfer goes, from the request's oneof.
pub(super) fn target(
    state: &TenantState,
    to_agent: Option<&str>,
    to_group: Option<&str>,
    reset: bool,
) -> Result<Target> {
    match (to_agent, to_group) {
        (Some(name), None) => Ok(Target::Agent(acting(state, "to_agent", name)?)),
        (None, Some(name)) => {
            Ok(Target::Group { group: state.group_ref("to_group", name)?, keep_entry_time: !reset })
        }
        _ => Err(Error::field("to", "name exactly one of to_agent or to_group")),
    }
}

pub(super) fn transfer(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::TransferRequest,
    out: &mut Output,
) -> Result<response::Result> {
    use pb::transfer_request::To;
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    let (to_agent, to_group) = match &r.to {
        Some(To::ToAgent(n)) => (Some(n.as_str()), None),
        Some(To::ToGroup(n)) => (None, Some(n.as_str())),
        None => (None, None),
    };
    let target = target(state, to_agent, to_group, r.reset_entry_time)?;
    let effects = state.engine.transfer(now, c, target, actor(state, a))?;
    emit(state, now, effects, out);
    Ok(conversation_response(state, c))
}

pub(super) fn end(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    // A supervisor may end any conversation (its own as its agent: the core's rule).
    let effects = state.engine.end(now, c, actor(state, a))?;
    emit(state, now, effects, out);
    Ok(conversation_response(state, c))
}

pub(super) fn bot_hosting(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentBotHostingRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    let holder = state.engine.conversation(c).and_then(|x| x.agent);
    if holder != Some(a) && !state.is_supervisor(a) {
        return Err(switchboard_core::Error::NotAssigned { conversation: c, agent: a }.into());
    }
    let (_, effects) = state.engine.set_bot_hosting(now, &Selection::Conversations(vec![c]), r.on);
    emit(state, now, effects, out);
    Ok(conversation_response(state, c))
}

/// Sends the rating invitation through the agent's own message path, so it counts against
/// the channel budget and the reply window like any service message.
pub(super) fn invite_rating(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::AgentConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    let effects = state.engine.agent_message(now, a, c, RATING_INVITATION, None)?;
    let before = out.items.len();
    emit(state, now, effects.clone(), out);
    // Mark what went out as the invitation rather than an agent's words.
    for (_, _, item) in &mut out.items[before..] {
        if let Some(switchboard_proto::internal::v1::stream_item::Item::Outbound(m)) =
            &mut item.item
        {
            m.reply_kind = pb::ReplyKind::RatingInvitation as i32;
        }
    }
    if let Some(row) = out.transcript.last_mut()
        && effects.iter().any(|e| matches!(e, Effect::Send { from: Sender::Agent(_), .. }))
    {
        row.message.reply_kind = pb::ReplyKind::RatingInvitation as i32;
    }
    Ok(conversation_response(state, c))
}

fn check_tags(field: &str, tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::field(field, format!("at most {MAX_TAGS} tags")));
    }
    if let Some(t) = tags.iter().find(|t| t.trim().is_empty() || t.len() > MAX_TAG) {
        return Err(Error::field(field, format!("tag {t:?} must be 1 to {MAX_TAG} bytes")));
    }
    Ok(())
}

pub(super) fn update_conversation(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::UpdateConversationRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    if let Some(conv) = state.engine.conversation(c) {
        scope::conversation(state, a, conv)?;
    }
    let mask = conversation_update(r)?;
    let extra = state.conversation_extra.entry(c).or_default();
    merge_fields!(mask, "", extra, r, [tags, note]);
    Ok(conversation_response(state, c))
}

/// UpdateConversation's mask and fields, checked (both paths: this one and the conversation
/// actors', `service::on_actors`).
pub(crate) fn conversation_update(r: &pb::UpdateConversationRequest) -> Result<Mask> {
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(&["tags", "note"], &[]),
        &[("tags", !r.tags.is_empty()), ("note", !r.note.is_empty())],
    )?;
    check_tags("tags", &r.tags)?;
    if r.note.len() > MAX_NOTE {
        return Err(Error::field("note", format!("longer than {MAX_NOTE} bytes")));
    }
    Ok(mask)
}

/// The customer a profile request names, in this tenant and in memory.
fn profile_customer(state: &TenantState, name: &str) -> Result<CustomerId> {
    let id = names::child_in("customer", name, "customers", &state.id)?;
    let u = state.customers.get(&id).ok_or_else(|| Error::NotFound(format!("customer {id:?}")))?;
    Ok(CustomerId(u))
}

pub(super) fn update_customer_profile(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::UpdateCustomerProfileRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let u = profile_customer(state, &r.customer)?;
    scope::customer(state, a, &r.customer, state.engine.customer(u))?;
    let mut profile = state.profiles.get(&u).cloned().unwrap_or_default();
    profile_update(r, &mut profile)?;
    state.profiles.insert(u, profile);
    Ok(response::Result::Customer(resources::customer(state, u)))
}

/// UpdateCustomerProfile's rule, on whichever actor holds the customer (the tenant actor, or
/// the customer's conversation actor): the contact data and tags of `r` merged into
/// `profile` under its mask, every field checked before anything changes.
pub(crate) fn profile_update(
    r: &pb::UpdateCustomerProfileRequest,
    profile: &mut crate::state::Profile,
) -> Result<()> {
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(&["remark_name", "phone", "email", "tags"], &[]),
        &[
            ("remark_name", !r.remark_name.is_empty()),
            ("phone", !r.phone.is_empty()),
            ("email", !r.email.is_empty()),
            ("tags", !r.tags.is_empty()),
        ],
    )?;
    check_tags("tags", &r.tags)?;
    for (field, v) in [("remark_name", &r.remark_name), ("phone", &r.phone), ("email", &r.email)] {
        if v.len() > 256 {
            return Err(Error::field(field, "longer than 256 bytes"));
        }
    }
    if !r.email.is_empty() && !r.email.contains('@') {
        return Err(Error::field("email", format!("{:?} is not an e-mail address", r.email)));
    }
    merge_fields!(mask, "", profile, r, [remark_name, phone, email, tags]);
    Ok(())
}

/// The agent sets its own automatic replies (the agent level of SPEC §4), kind by kind.
pub(super) fn update_agent_replies(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::UpdateAgentRepliesRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let new = r.replies.clone().unwrap_or_default();
    let populated = [
        ("auto_accept", new.auto_accept.is_some()),
        ("queue", new.queue.is_some()),
        ("agent_no_response", new.agent_no_response.is_some()),
        ("customer_no_response", new.customer_no_response.is_some()),
        ("idle_end", new.idle_end.is_some()),
        ("customer_no_response_end", new.customer_no_response_end.is_some()),
        ("manual_end", new.manual_end.is_some()),
        ("batch_end", new.batch_end.is_some()),
        ("offline", new.offline.is_some()),
    ];
    let mask = Mask::parse(r.update_mask.as_ref(), &known_paths(REPLY_KINDS, &[]), &populated)?;
    let current = state
        .engine
        .agent_settings(a)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("agent: {}", r.agent)))?;
    let replies = updated_replies(&mask, "", Some(&current.replies), Some(&new))?;
    let agent_settings = switchboard_core::config::AgentSettings { replies, ..current };
    let effects = state.engine.upsert_agent(now, a, agent_settings)?;
    emit(state, now, effects, out);
    Ok(response::Result::Agent(resources::agent(state, a)))
}

pub(super) fn put_quick_replies(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::PutPersonalQuickRepliesRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let a = acting(state, "agent", &r.agent)?;
    let replies = resources::check_quick_replies("replies", &r.replies)?;
    state.agent_extra.entry(a).or_default().quick_replies = replies;
    Ok(response::Result::QuickReplies(resources::quick_replies(state, Some(a))))
}
