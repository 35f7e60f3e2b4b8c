//! The service side: agent status, offers, messages, transfers, ends, bot hosting, ratings
//! (SPEC §2, §3, §6, §8).

use super::{Actor, Effect, Engine, Selection, Target};
use crate::channel::MessageTag;
use crate::conversation::{Cause, State};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId};
use crate::replies::ReplyKind;
use crate::router::{AgentStatus, StatusCause};
use crate::session::check_text;
use crate::time::Timestamp;

impl Engine {
    /// Changes an agent's status. Supervisors may change others' status but never take an
    /// offline agent out of `offline`.
    pub fn set_agent_status(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        status: AgentStatus,
        by: Actor,
    ) -> Result<Vec<Effect>> {
        let cause = match by {
            Actor::Agent(a) if a == agent => StatusCause::Agent,
            Actor::Agent(a) => {
                return Err(Error::InvalidArgument(format!(
                    "agent {a} cannot change agent {agent}'s status; a supervisor can"
                )));
            }
            Actor::Supervisor(_) | Actor::System => StatusCause::Supervisor,
        };
        self.routed(now, Cause::AgentOffline, |r, out| r.set_status(now, agent, status, cause, out))
    }

    /// The agent ends its wrap-up (of one ended conversation, or all it may end early).
    pub fn end_wrap_up(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conversation: Option<ConversationId>,
    ) -> Result<Vec<Effect>> {
        self.routed(now, Cause::Routed, |r, out| r.end_wrap_up(now, agent, conversation, out))
    }

    pub fn accept(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.routed_conv(id, "accept")?;
        self.routed(now, Cause::Accepted, |r, out| r.accept(now, agent, id, out))
    }

    pub fn decline(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.routed_conv(id, "decline")?;
        self.routed(now, Cause::Declined, |r, out| r.decline(now, agent, id, out))
    }

    /// The agent picks a conversation from its unaccepted list.
    pub fn pick(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.routed_conv(id, "pick")?;
        self.routed(now, Cause::Picked, |r, out| r.pick(now, agent, id, out))
    }

    /// A message from the conversation's agent to the customer, within the channel's reply
    /// window (Messenger: or with a tag) and budget.
    pub fn agent_message(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
        text: &str,
        tag: Option<MessageTag>,
    ) -> Result<Vec<Effect>> {
        check_text(text)?;
        self.open_conv(id)?;
        let out = self.session(now, id).expect("open").agent_message(now, agent, text, tag)?;
        self.reschedule(id);
        Ok(out)
    }

    /// A supervisor's guidance, visible to the agent side only.
    pub fn whisper(
        &mut self,
        now: Timestamp,
        from: AgentId,
        id: ConversationId,
        text: &str,
    ) -> Result<Vec<Effect>> {
        check_text(text)?;
        self.open_conv(id)?;
        self.session(now, id).expect("open").whisper(from, text)
    }

    /// The agent read the conversation; flags it read-but-unreplied when the customer waits.
    pub fn mark_read(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        self.session(now, id).expect("open").mark_read(now, agent)
    }

    /// Moves a conversation to another agent or group. An agent may move only its own.
    pub fn transfer(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        target: Target,
        by: Actor,
    ) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        let event = self.session(now, id).expect("open").transfer(now, target, by)?;
        let mut rout = Vec::new();
        match target {
            Target::Agent(a) => {
                if !self.agents.contains_key(&a) {
                    return Err(Error::UnknownAgent(a));
                }
                self.router.transfer_to_agent(now, id, a, &mut rout)?;
            }
            Target::Group { group, keep_entry_time } => {
                self.router.transfer_to_group(now, id, group, keep_entry_time, &mut rout)?;
            }
        }
        let mut out = vec![Effect::Event(event)];
        self.apply(now, rout, Cause::Transferred, &mut out);
        Ok(out)
    }

    /// Reassigns many conversations; each succeeds or fails on its own.
    pub fn reassign_batch(
        &mut self,
        now: Timestamp,
        ids: &[ConversationId],
        target: Target,
        by: Actor,
    ) -> (Vec<(ConversationId, Result<()>)>, Vec<Effect>) {
        let mut out = Vec::new();
        let results = ids
            .iter()
            .map(|&id| {
                let r = self.transfer(now, id, target, by).map(|mut e| out.append(&mut e));
                (id, r)
            })
            .collect();
        (results, out)
    }

    /// Ends one conversation: by its agent, or by a supervisor.
    pub fn end(&mut self, now: Timestamp, id: ConversationId, by: Actor) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        let cause = self.session(now, id).expect("open").end_cause(by)?;
        let mut out = Vec::new();
        self.finish(now, id, cause, Some(ReplyKind::ManualEnd), &mut out);
        Ok(out)
    }

    /// A supervisor ends many conversations; the batch-end reply replaces the manual one.
    pub fn end_batch(
        &mut self,
        now: Timestamp,
        ids: &[ConversationId],
    ) -> (Vec<(ConversationId, Result<()>)>, Vec<Effect>) {
        let mut out = Vec::new();
        let results = ids
            .iter()
            .map(|&id| {
                let r = self.open_conv(id).map(|_| ());
                if r.is_ok() {
                    self.finish(now, id, Cause::EndedInBatch, Some(ReplyKind::BatchEnd), &mut out);
                }
                (id, r)
            })
            .collect();
        (results, out)
    }

    /// Switches bot hosting on or off for assigned conversations; returns how many changed.
    pub fn set_bot_hosting(
        &mut self,
        now: Timestamp,
        selection: &Selection,
        on: bool,
    ) -> (usize, Vec<Effect>) {
        let ids: Vec<ConversationId> = match selection {
            Selection::Conversations(ids) => ids.clone(),
            Selection::AssignedTo(a) => self
                .router
                .agent(*a)
                .map(|a| a.assigned.iter().copied().collect())
                .unwrap_or_default(),
            Selection::All => {
                let mut ids: Vec<ConversationId> = self
                    .conversations
                    .values()
                    .filter(|c| c.state == State::Assigned)
                    .map(|c| c.id)
                    .collect();
                ids.sort();
                ids
            }
        };
        let mut out = Vec::new();
        let mut changed = 0;
        for id in ids {
            if let Some(mut s) = self.session(now, id)
                && s.set_bot_hosting(on, &mut out)
            {
                changed += 1;
            }
        }
        (changed, out)
    }

    /// The customer rates a conversation that an agent served; credit per tenant setting.
    pub fn rate(
        &mut self,
        _now: Timestamp,
        id: ConversationId,
        score: u8,
        comment: &str,
    ) -> Result<Vec<Effect>> {
        let credit = self.settings.rating_credit;
        let c = self.conversations.get_mut(&id).ok_or(Error::UnknownConversation(id))?;
        Ok(vec![Effect::Event(c.rate(credit, score, comment)?)])
    }
}
