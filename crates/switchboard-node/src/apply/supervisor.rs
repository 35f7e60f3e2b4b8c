//! Supervisor commands (SPEC §8): whisper, another agent's status, batch reassign and end,
//! bot hosting. `supervisor` in each request is the acting agent and must carry the
//! supervisor flag; the engine then acts as `Actor::Supervisor`.

use switchboard_core::engine::{Actor, Selection};
use switchboard_core::{AgentId, ConversationId, Timestamp};
use switchboard_proto::internal::v1::response;
use switchboard_proto::v1 as pb;

use super::agent::{acting, note_login, target};
use super::channel::{check_text, conversation};
use super::{Output, emit, transcript};
use crate::convert::{self, resources};
use crate::error::{Error, Result};
use crate::state::TenantState;

/// Most conversations one batch may name.
pub const MAX_BATCH: usize = 1000;

/// The acting agent, refused unless it is a supervisor.
fn supervisor(state: &TenantState, name: &str) -> Result<AgentId> {
    let a = acting(state, "supervisor", name)?;
    if !state.is_supervisor(a) {
        return Err(Error::PermissionDenied(format!(
            "{name} is not a supervisor; an administrator grants the flag with PutAgent"
        )));
    }
    Ok(a)
}

pub(super) fn whisper(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::WhisperRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let sup = supervisor(state, &r.supervisor)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    check_text("text", &r.text)?;
    let effects = state.engine.whisper(now, sup, c, &r.text)?;
    // In the transcript for the agent side and supervisors; never sent to the customer.
    let from = state.agent_name(sup);
    transcript(state, now, c, "whisper", &from, pb::ReplyKind::Unspecified, &r.text, 0, out);
    let message = out.transcript.last().map(|row| row.message.clone());
    emit(state, now, effects, out);
    Ok(response::Result::Whisper(pb::WhisperResponse { message }))
}

/// A supervisor changes an agent's status; the engine refuses taking an agent out of
/// `offline`. Its own status it changes as an agent does, signing in included.
pub(super) fn set_status(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::SupervisorSetStatusRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let sup = supervisor(state, &r.supervisor)?;
    let a = acting(state, "agent", &r.agent)?;
    let status = convert::status("status", r.status)?;
    let by = if a == sup { Actor::Agent(sup) } else { Actor::Supervisor(sup) };
    let from =
        state.engine.router().agent(a).map_or(switchboard_core::AgentStatus::Offline, |x| x.status);
    let effects = state.engine.set_agent_status(now, a, status, by)?;
    note_login(state, now, a, from, status);
    emit(state, now, effects, out);
    Ok(response::Result::Agent(resources::agent(state, a)))
}

/// A batch names 1 to [`MAX_BATCH`] conversations (on either path).
pub(crate) fn batch_size(names: &[String]) -> Result<()> {
    if names.is_empty() || names.len() > MAX_BATCH {
        return Err(Error::field(
            "conversations",
            format!("name 1 to {MAX_BATCH} conversations, got {}", names.len()),
        ));
    }
    Ok(())
}

/// One item's result as the API shows it (on either path).
pub(crate) fn batch_result(
    conversation: String,
    outcome: std::result::Result<(), String>,
) -> pb::BatchResult {
    let (ok, error) = match outcome {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    pb::BatchResult { conversation, ok, error }
}

/// The conversations of a batch, each parsed on its own: a bad name fails that item only.
fn batch_items(
    state: &TenantState,
    names: &[String],
) -> Result<Vec<(String, std::result::Result<ConversationId, String>)>> {
    batch_size(names)?;
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let c = conversation(state, &format!("conversations[{i}]"), name)
                .map_err(|e| convert::refusal::named(state, e).to_string());
            (name.clone(), c)
        })
        .collect())
}

/// Joins the engine's results (for the well-formed items, in order) with the parse failures.
fn batch_response(
    state: &TenantState,
    items: Vec<(String, std::result::Result<ConversationId, String>)>,
    results: Vec<(ConversationId, switchboard_core::Result<()>)>,
) -> response::Result {
    let mut results = results.into_iter();
    let results = items
        .into_iter()
        .map(|(conversation, parsed)| {
            let outcome = match parsed {
                Ok(_) => match results.next() {
                    Some((_, Ok(()))) => Ok(()),
                    Some((_, Err(e))) => Err(convert::refusal::describe(state, &e)),
                    None => Err("internal error: no result for this conversation".to_owned()),
                },
                Err(e) => Err(e),
            };
            batch_result(conversation, outcome)
        })
        .collect();
    response::Result::Batch(pb::BatchResponse { results })
}

pub(super) fn reassign_batch(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::ReassignBatchRequest,
    out: &mut Output,
) -> Result<response::Result> {
    use pb::reassign_batch_request::To;
    let sup = supervisor(state, &r.supervisor)?;
    let (to_agent, to_group) = match &r.to {
        Some(To::ToAgent(n)) => (Some(n.as_str()), None),
        Some(To::ToGroup(n)) => (None, Some(n.as_str())),
        None => (None, None),
    };
    let target = target(state, to_agent, to_group, r.reset_entry_time)?;
    let items = batch_items(state, &r.conversations)?;
    let ids: Vec<ConversationId> =
        items.iter().filter_map(|(_, c)| c.as_ref().ok().copied()).collect();
    let (results, effects) = state.engine.reassign_batch(now, &ids, target, Actor::Supervisor(sup));
    emit(state, now, effects, out);
    Ok(batch_response(state, items, results))
}

pub(super) fn end_batch(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::EndBatchRequest,
    out: &mut Output,
) -> Result<response::Result> {
    supervisor(state, &r.supervisor)?;
    let items = batch_items(state, &r.conversations)?;
    let ids: Vec<ConversationId> =
        items.iter().filter_map(|(_, c)| c.as_ref().ok().copied()).collect();
    let (results, effects) = state.engine.end_batch(now, &ids);
    emit(state, now, effects, out);
    Ok(batch_response(state, items, results))
}

/// A supervisor ends one conversation: cause `ended_by_supervisor` and the manual-end reply
/// (the batch-end reply is only for `EndBatch`). Its own conversation it ends as its agent
/// (the core's rule).
pub(super) fn end(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::SupervisorConversationRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let sup = supervisor(state, &r.supervisor)?;
    let c = conversation(state, "conversation", &r.conversation)?;
    let effects = state.engine.end(now, c, Actor::Supervisor(sup))?;
    emit(state, now, effects, out);
    Ok(response::Result::Conversation(crate::convert::views::conversation(state, c)))
}

/// The answer is only a count, so unlike the batches a bad conversation name refuses the
/// whole request: the caller could not tell which one was skipped.
pub(super) fn set_bot_hosting(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::SetBotHostingRequest,
    out: &mut Output,
) -> Result<response::Result> {
    use pb::set_bot_hosting_request::Selection as S;
    supervisor(state, &r.supervisor)?;
    let selection = match &r.selection {
        Some(S::Conversations(list)) => {
            if list.conversations.is_empty() || list.conversations.len() > MAX_BATCH {
                return Err(Error::field(
                    "conversations.conversations",
                    format!(
                        "name 1 to {MAX_BATCH} conversations, got {}",
                        list.conversations.len()
                    ),
                ));
            }
            let ids = list
                .conversations
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    conversation(state, &format!("conversations.conversations[{i}]"), name)
                })
                .collect::<Result<Vec<_>>>()?;
            Selection::Conversations(ids)
        }
        Some(S::Agent(name)) => Selection::AssignedTo(acting(state, "agent", name)?),
        Some(S::All(true)) => Selection::All,
        Some(S::All(false)) | None => {
            return Err(Error::field("selection", "choose conversations, an agent, or all = true"));
        }
    };
    let (changed, effects) = state.engine.set_bot_hosting(now, &selection, r.on);
    emit(state, now, effects, out);
    Ok(response::Result::BotHosting(pb::SetBotHostingResponse {
        changed: u32::try_from(changed).unwrap_or(u32::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use switchboard_core::State;
    use switchboard_proto::internal::v1::command::Op;

    use super::super::admin::tests::{T, agent_op, refused, run, tenant};
    use super::*;

    fn sign_in(state: &mut TenantState, at: u64, agent: &str) {
        let op = Op::SetStatus(pb::SetStatusRequest {
            agent: format!("{T}/agents/{agent}"),
            status: pb::AgentStatus::Online as i32,
            ..Default::default()
        });
        run(state, at, op).unwrap();
    }

    /// A customer message; returns the conversation's resource name.
    fn say(state: &mut TenantState, at: u64, customer: &str) -> String {
        let op = Op::PostMessage(pb::PostMessageRequest {
            customer: format!("{T}/customers/{customer}"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            ..Default::default()
        });
        let (r, _) = run(state, at, op).unwrap();
        let response::Result::PostMessage(p) = r else { panic!("{r:?}") };
        p.conversation.unwrap().name
    }

    /// A conversation out of memory has ended (it was archived).
    fn conversation_state(state: &TenantState, name: &str) -> (State, Option<String>) {
        let n = name.rsplit('/').next().unwrap().parse().unwrap();
        let Some(c) = state.engine.conversation(ConversationId(n)) else {
            return (State::Ended, None);
        };
        (c.state, c.agent.map(|a| state.agents.name(a.0).to_owned()))
    }

    /// Tenant `acme`: supervisor `boss`, agents `alice` (online, serving c1 and c2) and `bob`.
    fn floor() -> (TenantState, String, String) {
        let mut state = tenant();
        run(&mut state, 1_000, agent_op("boss", &["sales"], true)).unwrap();
        run(&mut state, 1_000, agent_op("alice", &["sales"], false)).unwrap();
        run(&mut state, 1_000, agent_op("bob", &["sales"], false)).unwrap();
        sign_in(&mut state, 2_000, "alice");
        let c1 = say(&mut state, 3_000, "u1");
        let c2 = say(&mut state, 3_000, "u2");
        assert_eq!(conversation_state(&state, &c1), (State::Assigned, Some("alice".into())));
        assert_eq!(conversation_state(&state, &c2), (State::Assigned, Some("alice".into())));
        (state, c1, c2)
    }

    #[test]
    fn only_supervisors_whisper_and_whispers_stay_on_the_agent_side() {
        let (mut state, c1, _) = floor();
        let whisper = |who: &str| {
            Op::Whisper(pb::WhisperRequest {
                supervisor: format!("{T}/agents/{who}"),
                conversation: c1.clone(),
                text: "offer the discount".into(),
                ..Default::default()
            })
        };
        let e = refused(&mut state, whisper("bob"));
        assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
        assert!(e.to_string().contains("not a supervisor"), "{e}");

        let (r, out) = run(&mut state, 4_000, whisper("boss")).unwrap();
        let response::Result::Whisper(w) = r else { panic!("{r:?}") };
        let m = w.message.unwrap();
        assert_eq!((m.sender.as_str(), m.agent.as_str()), ("whisper", "tenants/acme/agents/boss"));
        assert_eq!(out.transcript.len(), 1);
        assert!(out.items.iter().all(|(stream, _, _)| stream == "agent/alice"), "{:?}", out.items);
        assert!(!out.items.is_empty());
    }

    #[test]
    fn supervisors_change_status_but_never_sign_agents_in() {
        let (mut state, _, _) = floor();
        let set = |who: &str, agent: &str, status: pb::AgentStatus| {
            Op::SupervisorSetStatus(pb::SupervisorSetStatusRequest {
                supervisor: format!("{T}/agents/{who}"),
                agent: format!("{T}/agents/{agent}"),
                status: status as i32,
                ..Default::default()
            })
        };
        assert!(matches!(
            refused(&mut state, set("alice", "bob", pb::AgentStatus::Busy)),
            Error::PermissionDenied(_)
        ));
        let e = refused(&mut state, set("boss", "bob", pb::AgentStatus::Online));
        assert!(e.to_string().contains("offline"), "{e}");
        let (r, _) = run(&mut state, 4_000, set("boss", "alice", pb::AgentStatus::Busy)).unwrap();
        let response::Result::Agent(a) = r else { panic!("{r:?}") };
        assert_eq!((a.status, a.load), (pb::AgentStatus::Busy as i32, 2));
        // Its own status a supervisor sets as an agent, signing in included.
        let (r, _) = run(&mut state, 5_000, set("boss", "boss", pb::AgentStatus::Online)).unwrap();
        let response::Result::Agent(a) = r else { panic!("{r:?}") };
        assert_eq!(a.status, pb::AgentStatus::Online as i32);
        assert!(a.first_login_today.is_some());
    }

    #[test]
    fn batches_answer_per_conversation() {
        let (mut state, c1, c2) = floor();
        let Op::PutAgent(mut bob) = agent_op("bob", &["sales"], false) else { unreachable!() };
        bob.capacity = 1;
        run(&mut state, 3_500, Op::PutAgent(bob)).unwrap();
        sign_in(&mut state, 3_500, "bob");
        let missing = format!("{T}/conversations/999");
        let items = vec![c1.clone(), "tenants/acme/conversations/x".into(), missing, c2.clone()];
        let reassign = pb::ReassignBatchRequest {
            supervisor: format!("{T}/agents/boss"),
            conversations: items.clone(),
            to: Some(pb::reassign_batch_request::To::ToAgent(format!("{T}/agents/bob"))),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 4_000, Op::ReassignBatch(reassign.clone())).unwrap();
        let response::Result::Batch(b) = r else { panic!("{r:?}") };
        let oks: Vec<bool> = b.results.iter().map(|r| r.ok).collect();
        assert_eq!(oks, vec![true, false, false, false], "{b:?}");
        assert_eq!(b.results.iter().map(|r| r.conversation.clone()).collect::<Vec<_>>(), items);
        assert!(b.results[1].error.contains("conversations[1]"), "{b:?}");
        assert!(b.results[2].error.contains("not found"), "{b:?}");
        assert!(b.results[3].error.contains("capacity"), "bob holds 1 at most: {b:?}");
        assert_eq!(conversation_state(&state, &c1), (State::Assigned, Some("bob".into())));

        // A bad target refuses the whole request; so does a non-supervisor.
        let mut bad = reassign.clone();
        bad.to = Some(pb::reassign_batch_request::To::ToGroup(format!("{T}/groups/none")));
        assert!(matches!(refused(&mut state, Op::ReassignBatch(bad)), Error::NotFound(_)));
        let mut not_boss = reassign;
        not_boss.supervisor = format!("{T}/agents/alice");
        assert!(matches!(
            refused(&mut state, Op::ReassignBatch(not_boss)),
            Error::PermissionDenied(_)
        ));

        let end = pb::EndBatchRequest {
            supervisor: format!("{T}/agents/boss"),
            conversations: vec![c1.clone(), c2.clone(), c1.clone()],
            ..Default::default()
        };
        let (r, _) = run(&mut state, 5_000, Op::EndBatch(end)).unwrap();
        let response::Result::Batch(b) = r else { panic!("{r:?}") };
        let oks: Vec<bool> = b.results.iter().map(|r| r.ok).collect();
        assert_eq!(oks, vec![true, true, false], "ending twice fails the repeat: {b:?}");
        assert_eq!(conversation_state(&state, &c1).0, State::Ended);
        let empty =
            pb::EndBatchRequest { supervisor: format!("{T}/agents/boss"), ..Default::default() };
        assert!(matches!(refused(&mut state, Op::EndBatch(empty)), Error::Field { .. }));
    }

    #[test]
    fn bot_hosting_by_selection() {
        use pb::set_bot_hosting_request::{ConversationList, Selection as S};
        let (mut state, c1, _) = floor();
        let host = |selection: Option<S>, on: bool| {
            Op::SetBotHosting(pb::SetBotHostingRequest {
                supervisor: format!("{T}/agents/boss"),
                selection,
                on,
                ..Default::default()
            })
        };
        let changed = |state: &mut TenantState, at, op| match run(state, at, op).unwrap().0 {
            response::Result::BotHosting(r) => r.changed,
            r => panic!("{r:?}"),
        };
        let one = S::Conversations(ConversationList { conversations: vec![c1.clone()] });
        assert_eq!(changed(&mut state, 4_000, host(Some(one.clone()), true)), 1);
        assert_eq!(changed(&mut state, 4_000, host(Some(one), true)), 0, "already on");
        assert_eq!(changed(&mut state, 5_000, host(Some(S::All(true)), true)), 1);
        let alice = S::Agent(format!("{T}/agents/alice"));
        assert_eq!(changed(&mut state, 6_000, host(Some(alice), false)), 2);
        assert!(matches!(refused(&mut state, host(None, true)), Error::Field { .. }));
        assert!(matches!(
            refused(&mut state, host(Some(S::All(false)), true)),
            Error::Field { .. }
        ));
        let bad = S::Conversations(ConversationList { conversations: vec!["nope".into()] });
        let e = refused(&mut state, host(Some(bad), true));
        assert!(e.to_string().starts_with("conversations.conversations[0]"), "{e}");
    }

    #[test]
    fn replaying_the_same_commands_rebuilds_the_same_state() {
        let replay = || {
            let (mut state, c1, c2) = floor();
            let end = pb::EndBatchRequest {
                supervisor: format!("{T}/agents/boss"),
                conversations: vec![c1, c2],
                ..Default::default()
            };
            run(&mut state, 5_000, Op::EndBatch(end)).unwrap();
            rmp_serde::to_vec_named(&state).unwrap()
        };
        assert_eq!(replay(), replay());
    }
}
