//! Applying one logged command to a tenant: the boundary where proto requests become core
//! calls, and core effects become durable stream items and transcript rows.
//!
//! `apply` is deterministic: the same command on the same state at the same `at_ms` gives the
//! same state, response and output. That is what lets a tenant be rebuilt by replaying its
//! log. A handler that returns an error must leave the state untouched (refusals are not
//! logged, so a change they made would not survive a restart).

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod channel;
pub(crate) mod events;
pub mod rows;
pub(crate) mod supervisor;
pub mod unaccepted;
pub mod webhooks;

use switchboard_core::engine::{Effect, Event, Note, Sender};
use switchboard_core::{AgentId, ConversationId, CustomerId, ReplyKind, Timestamp};
use switchboard_proto::internal::v1::{Command, Response, StreamItem, command::Op, response};
use switchboard_proto::v1 as pb;
use switchboard_store::{Archived, CustomerRecord};

use crate::archive;
use crate::convert;
use crate::error::{Error, Result};
use crate::state::{EVENTS, OUTBOX, TenantState, agent_stream};

pub use self::rows::Names;

/// How long before the zone's table of offsets runs out a tick builds it again (it reaches
/// two years ahead, `calendar::offsets`).
const ZONE_TABLE_MARGIN: std::time::Duration = std::time::Duration::from_secs(180 * 86_400);

/// A transcript row to store.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptRow {
    pub conversation: u64,
    pub message: pb::Message,
}

/// What applying a command produced besides its response.
#[derive(Debug, Default)]
pub struct Output {
    /// (stream, sequence number, item), in order.
    pub items: Vec<(String, u64, StreamItem)>,
    pub transcript: Vec<TranscriptRow>,
    pub purges: Vec<u64>,
    /// Automatic replies withheld to keep the humans' budget, with the conversation's
    /// channel (for metrics).
    pub suppressed: Vec<(ReplyKind, Option<switchboard_core::Channel>)>,
    /// Automatic replies sent (for metrics).
    pub replies: Vec<ReplyKind>,
    /// Core events, for metrics.
    pub events: Vec<Event>,
    /// Conversations that left their agent because it signed out (for metrics).
    pub released_offline: u32,
    /// Conversations that ended (or changed after their end) in this command, to write to the
    /// store's archive.
    pub archive: Vec<Archived>,
    /// Customers evicted by this command (body: encoded `archive::CustomerRecord`).
    pub customers: Vec<CustomerRecord>,
    /// Actor rows written with the command: CreateTenant's routing row
    /// (`actors::routing::row`).
    pub actors: Vec<switchboard_store::ActorState>,
}

/// Applies a logged command. A command carrying an archived conversation or an evicted
/// customer gets it back in memory for its duration; afterwards every conversation ended (or
/// touched after its end) and every customer left with nothing to route leaves memory again,
/// into `Output::archive` and `Output::customers` (also when the command is refused, then
/// unchanged and unwritten).
pub fn apply(state: &mut TenantState, cmd: &Command) -> Result<(Response, Output)> {
    let mut restored = None;
    if !cmd.archived.is_empty() {
        let a = archive::decode(&cmd.archived)?;
        let id = a.conversation.id;
        if state.engine.conversation(id).is_none() {
            state.conversation_extra.insert(id, a.extra);
            state.engine.restore_ended(a.conversation);
            restored = Some((id, a.customer));
        }
    }
    let mut customer = None;
    if !cmd.customer.is_empty() {
        let r = archive::decode_customer(&cmd.customer)?;
        if state.customers.get(&r.id).is_none() {
            let u = CustomerId(r.num);
            state.customers.restore(&r.id, r.num);
            state.profiles.insert(u, r.profile);
            state.engine.restore_customer(u, r.customer);
        }
        customer = Some(r.id);
    }
    let named = cmd.op.as_ref().and_then(customer_named).map(str::to_owned);
    match apply_op(state, cmd) {
        Ok((response, mut out)) => {
            let ended = archive_ended(state, &mut out, restored);
            let candidates = customer.into_iter().chain(named).chain(ended);
            for id in candidates {
                if let Some(record) = evict(state, &id) {
                    out.customers.push(archive::customer_row(&record));
                }
            }
            Ok((response, out))
        }
        Err(e) => {
            // Told in resource names while everything it may name is still in memory.
            let e = convert::refusal::named(state, e);
            // Refused: what was brought back leaves as it came, unchanged.
            for ended in state.engine.take_ended() {
                state.conversation_extra.remove(&ended.conversation.id);
            }
            if let Some(id) = customer {
                evict(state, &id);
            }
            Err(e)
        }
    }
}

/// The id of the customer a command names, if any.
fn customer_named(op: &Op) -> Option<&str> {
    let name = match op {
        Op::PostMessage(r) => &r.customer,
        Op::OpenService(r) => &r.customer,
        Op::PutCustomer(r) => &r.name,
        Op::UpdateCustomerProfile(r) => &r.customer,
        _ => return None,
    };
    name.rsplit_once("/customers/").map(|(_, id)| id)
}

/// Forgets a customer that has nothing open and no routing of its own, returning what to
/// store of it (see `crate::archive`).
fn evict(state: &mut TenantState, id: &str) -> Option<archive::CustomerRecord> {
    let num = state.customers.get(id)?;
    let u = CustomerId(num);
    if let Some(c) = state.engine.customer(u) {
        let routed = c.settings.group.is_some() || c.settings.dedicated_agent.is_some();
        if c.open.is_some() || routed {
            return None;
        }
    }
    let customer = state.engine.evict_customer(u).unwrap_or_default();
    let profile = state.profiles.remove(&u).unwrap_or_default();
    state.customers.remove(id);
    Some(archive::CustomerRecord { id: id.to_owned(), num, customer, profile })
}

/// The evicted customer a command names, if it is not in memory: what the actor must read
/// from the store and put in the command before applying it (none for a new customer).
pub fn customer_target(state: &TenantState, op: &Op) -> Option<String> {
    let id = customer_named(op)?;
    (!id.is_empty() && state.customers.get(id).is_none()).then(|| id.to_owned())
}

/// The ended conversation a command acts on, if it names one no longer in memory: what the
/// actor must read from the archive and put in the command before applying it. Only a rating
/// and tags or a note apply to an ended conversation; every other command refuses it.
pub fn archived_target(state: &TenantState, op: &Op) -> Option<u64> {
    let name = match op {
        Op::RateConversation(r) => &r.conversation,
        Op::UpdateConversation(r) => &r.conversation,
        _ => return None,
    };
    let (tenant, n) = crate::names::conversation("conversation", name).ok()?;
    let known = tenant == state.id && n >= 1 && n <= state.next_conversation;
    (known && state.engine.conversation(ConversationId(n)).is_none()).then_some(n)
}

/// Moves every conversation the core handed out into the archive rows of the batch, and
/// returns their customers' ids. `restored` is the archived conversation the command brought
/// back, with its customer's id (that customer may be out of memory).
fn archive_ended(
    state: &mut TenantState,
    out: &mut Output,
    restored: Option<(ConversationId, String)>,
) -> Vec<String> {
    let mut customers = Vec::new();
    for ended in state.engine.take_ended() {
        let c = ended.conversation;
        let extra = state.conversation_extra.remove(&c.id).unwrap_or_default();
        let customer = match &restored {
            Some((id, customer)) if *id == c.id => customer.clone(),
            _ => state.customers.name(c.customer.0).to_owned(),
        };
        customers.push(customer.clone());
        out.archive.push(Archived {
            conversation: c.id.0,
            opened_at_ms: c.opened_at.as_millis(),
            ended_at_ms: c.ended_at.unwrap_or(c.opened_at).as_millis(),
            purge_at_ms: ended.purge_at.as_millis(),
            body: archive::encode(&archive::Archived {
                conversation: c,
                customer: customer.clone(),
                extra,
                purge_at: ended.purge_at,
            }),
            customer,
        });
    }
    customers
}

/// What the tenant actor of a tenant served by actors still applies: its configuration
/// (settings, groups, agents and their settings, quick replies, webhooks) and its ticks.
/// Everything about conversations, customers (their settings and profiles are their
/// conversation actors') and agents' work is the actors'.
fn tenant_actor_serves(op: &Op) -> bool {
    matches!(
        op,
        Op::CreateTenant(_)
            | Op::UpdateTenant(_)
            | Op::PutGroup(_)
            | Op::DeleteGroup(_)
            | Op::PutAgent(_)
            | Op::DeleteAgent(_)
            | Op::PutSharedQuickReplies(_)
            | Op::PutPersonalQuickReplies(_)
            | Op::UpdateAgentReplies(_)
            | Op::PutWebhook(_)
            | Op::DeleteWebhook(_)
            | Op::WebhookProgress(_)
            | Op::Advance(_)
    )
}

fn apply_op(state: &mut TenantState, cmd: &Command) -> Result<(Response, Output)> {
    let now = Timestamp(cmd.at_ms);
    let mut out = Output::default();
    let op = cmd.op.as_ref().ok_or_else(|| Error::field("op", "empty command"))?;
    if state.actor_routing && !tenant_actor_serves(op) {
        // Its conversations live in its conversation, agent and router actors, not in this
        // engine: a call the actors do not serve yet must not act on an empty engine.
        return Err(Error::FailedPrecondition(format!(
            "tenant {} is served by its actors (TENANT_ROUTING_ACTORS) and this call is not \
             served on actors yet (see ARCHITECTURE.md, \"Serving the public API from the \
             actors\")",
            state.id
        )));
    }
    let result = match op {
        Op::CreateTenant(r) => admin::create_tenant(state, now, r, &mut out)?,
        Op::UpdateTenant(r) => admin::update_tenant(state, now, r, &mut out)?,
        Op::PutGroup(r) => admin::put_group(state, now, r, &mut out)?,
        Op::DeleteGroup(r) => admin::delete_group(state, now, r, &mut out)?,
        Op::PutAgent(r) => admin::put_agent(state, now, r, &mut out)?,
        Op::DeleteAgent(r) => admin::delete_agent(state, now, r, &mut out)?,
        Op::PutCustomer(r) => admin::put_customer(state, now, r, &mut out)?,
        Op::PutSharedQuickReplies(r) => admin::put_shared_quick_replies(state, now, r, &mut out)?,

        Op::PostMessage(r) => channel::post_message(state, now, r, &mut out)?,
        Op::OpenService(r) => channel::open_service(state, now, r, &mut out)?,
        Op::RequestHuman(r) => channel::request_human(state, now, r, &mut out)?,
        Op::CloseConversation(r) => channel::close(state, now, r, &mut out)?,
        Op::RateConversation(r) => channel::rate(state, now, r, &mut out)?,

        Op::SetStatus(r) => agent::set_status(state, now, r, &mut out)?,
        Op::Accept(r) => agent::accept(state, now, r, &mut out)?,
        Op::Decline(r) => agent::decline(state, now, r, &mut out)?,
        Op::Pick(r) => agent::pick(state, now, r, &mut out)?,
        Op::SendMessage(r) => agent::send_message(state, now, r, &mut out)?,
        Op::MarkRead(r) => agent::mark_read(state, now, r, &mut out)?,
        Op::Transfer(r) => agent::transfer(state, now, r, &mut out)?,
        Op::EndConversation(r) => agent::end(state, now, r, &mut out)?,
        Op::AgentBotHosting(r) => agent::bot_hosting(state, now, r, &mut out)?,
        Op::InviteRating(r) => agent::invite_rating(state, now, r, &mut out)?,
        Op::UpdateConversation(r) => agent::update_conversation(state, now, r, &mut out)?,
        Op::UpdateCustomerProfile(r) => agent::update_customer_profile(state, now, r, &mut out)?,
        Op::PutPersonalQuickReplies(r) => agent::put_quick_replies(state, now, r, &mut out)?,
        Op::UpdateAgentReplies(r) => agent::update_agent_replies(state, now, r, &mut out)?,
        Op::EndWrapUp(r) => agent::end_wrap_up(state, now, r, &mut out)?,

        Op::Whisper(r) => supervisor::whisper(state, now, r, &mut out)?,
        Op::SupervisorSetStatus(r) => supervisor::set_status(state, now, r, &mut out)?,
        Op::ReassignBatch(r) => supervisor::reassign_batch(state, now, r, &mut out)?,
        Op::EndBatch(r) => supervisor::end_batch(state, now, r, &mut out)?,
        Op::SetBotHosting(r) => supervisor::set_bot_hosting(state, now, r, &mut out)?,
        Op::SupervisorEnd(r) => supervisor::end(state, now, r, &mut out)?,

        Op::PutWebhook(r) => webhooks::put_webhook(state, cmd.events_head, r, &mut out)?,
        Op::DeleteWebhook(r) => webhooks::delete_webhook(state, now, r, &mut out)?,
        Op::WebhookProgress(r) => webhooks::progress(state, now, r, &mut out)?,

        Op::Advance(_) => {
            let mut effects = state.engine.advance(now);
            // Business hours: the zone's offsets were built two years ahead of the settings
            // command that set them; a tick (logged, so a replay does the same) builds them
            // again when half a year is left.
            if state.engine.router().zone_table_ends_before(now + ZONE_TABLE_MARGIN) {
                let offsets = crate::calendar::offsets(&state.engine.settings().time_zone, now);
                effects.extend(state.engine.set_calendar(now, offsets));
            }
            emit(state, now, effects, &mut out);
            response::Result::Empty(Default::default())
        }
    };
    unaccepted::track(state, now, &mut out);
    // Accepted: this is now the latest logged time (replay sets it the same way).
    state.last_at = state.last_at.max(now);
    Ok((Response { result: Some(result), call: Vec::new() }, out))
}

/// Translates core effects into stream items and transcript rows.
pub fn emit(state: &mut TenantState, now: Timestamp, effects: Vec<Effect>, out: &mut Output) {
    for effect in effects {
        match effect {
            Effect::Send { conversation, channel, text, from, tag } => {
                if let Sender::Auto(k) = from {
                    out.replies.push(k);
                }
                let customer = state
                    .engine
                    .conversation(conversation)
                    .map(|c| state.customer_name(c.customer))
                    .unwrap_or_default();
                let message = rows::outbound_message(
                    &*state,
                    now,
                    conversation,
                    customer,
                    channel,
                    &text,
                    from,
                    tag,
                    || state.engine.estimated_wait(now, conversation),
                );
                let (agent, reply_kind) = (message.agent.clone(), message.reply_kind());
                transcript(
                    state,
                    now,
                    conversation,
                    rows::sender_of(from),
                    &agent,
                    reply_kind,
                    &text,
                    message.tag,
                    out,
                );
                push(
                    state,
                    out,
                    OUTBOX,
                    StreamItem { item: Some(stream_item::Item::Outbound(message)) },
                );
            }
            Effect::ReplySuppressed { kind, conversation } => {
                let channel = state.engine.conversation(conversation).map(|c| c.channel);
                out.suppressed.push((kind, channel));
            }
            Effect::Notify { agent, note } => {
                if let Note::Released {
                    reason: switchboard_core::router::Release::AgentOffline,
                    ..
                } = note
                {
                    out.released_offline += 1;
                }
                let event = agent_event(state, now, note);
                let stream = agent_stream(state.agents.name(agent.0));
                push(
                    state,
                    out,
                    &stream,
                    StreamItem { item: Some(stream_item::Item::AgentEvent(event)) },
                );
            }
            Effect::Event(event) => {
                let pb_event = events::integrator_event(state, now, &event);
                push(
                    state,
                    out,
                    EVENTS,
                    StreamItem { item: Some(stream_item::Item::Event(pb_event)) },
                );
                out.events.push(event);
            }
            Effect::Purge { conversation } => {
                state.conversation_extra.remove(&conversation);
                out.purges.push(conversation.0);
            }
        }
    }
}

use switchboard_proto::internal::v1::stream_item;

/// Appends an item to a stream, numbering it.
fn push(state: &mut TenantState, out: &mut Output, stream: &str, mut item: StreamItem) {
    let seq = state.next_stream_seq(stream);
    match &mut item.item {
        Some(stream_item::Item::Outbound(m)) => m.cursor = seq,
        Some(stream_item::Item::AgentEvent(e)) => e.cursor = seq,
        Some(stream_item::Item::Event(e)) => e.cursor = seq,
        Some(stream_item::Item::WebhookDeadLetter(d)) => d.cursor = seq,
        Some(stream_item::Item::DeskRefusal(_)) | None => {}
    }
    out.items.push((stream.to_owned(), seq, item));
}

/// Records a transcript row.
#[allow(clippy::too_many_arguments)]
pub fn transcript(
    state: &mut TenantState,
    now: Timestamp,
    conversation: ConversationId,
    sender: &str,
    agent: &str,
    reply_kind: pb::ReplyKind,
    text: &str,
    tag: i32,
    out: &mut Output,
) {
    let extra = state.conversation_extra.entry(conversation).or_default();
    extra.transcript_seq += 1;
    out.transcript.push(TranscriptRow {
        conversation: conversation.0,
        message: rows::transcript_message(
            extra.transcript_seq,
            now,
            sender,
            agent,
            reply_kind,
            text,
            tag,
        ),
    });
}

fn agent_event(state: &TenantState, now: Timestamp, note: Note) -> pb::AgentEvent {
    note_event(&state.id, now, note, |a| state.agent_name(a))
}

/// A desk note as the agent's stream stores it (`AgentService.StreamEvents` serves it), with
/// its cursor still 0. `agent_name` names a whisper's supervisor. The tenant actor and the
/// agent actors (`actors::agent`) both encode their notes here.
pub fn note_event(
    tenant: &str,
    now: Timestamp,
    note: Note,
    agent_name: impl Fn(AgentId) -> String,
) -> pb::AgentEvent {
    use pb::agent_event::{self as ev, Event as E};
    let (conversation, event) = match note {
        Note::Offered { conversation, expires } => (
            Some(conversation),
            E::Offered(ev::Offered { expires: Some(convert::timestamp(expires)) }),
        ),
        Note::Assigned { conversation, via } => {
            (Some(conversation), E::Assigned(ev::Assigned { via: convert::snake(&via) }))
        }
        Note::Released { conversation, reason } => {
            (Some(conversation), E::Released(ev::Released { reason: convert::snake(&reason) }))
        }
        Note::CustomerMessage { conversation, text, bot_hosting } => {
            (Some(conversation), E::CustomerMessage(ev::CustomerMessage { text, bot_hosting }))
        }
        Note::Whisper { conversation, from, text } => {
            (Some(conversation), E::Whisper(ev::Whisper { supervisor: agent_name(from), text }))
        }
        Note::ReadUnreplied { conversation } => {
            (Some(conversation), E::ReadUnreplied(ev::ReadUnreplied {}))
        }
        Note::BotHosting { conversation, on } => {
            (Some(conversation), E::BotHosting(ev::BotHosting { on }))
        }
        Note::UnrepliedAlert { conversation } => {
            (Some(conversation), E::UnrepliedAlert(ev::UnrepliedAlert {}))
        }
        Note::StatusChanged { status, cause } => (
            None,
            E::StatusChanged(ev::StatusChanged {
                status: convert::status_to_pb(status) as i32,
                cause: convert::snake(&cause),
            }),
        ),
    };
    pb::AgentEvent {
        cursor: 0,
        at: Some(convert::timestamp(now)),
        conversation: conversation
            .map(|c| crate::names::numbered_name(tenant, "conversations", c.0))
            .unwrap_or_default(),
        event: Some(event),
    }
}
