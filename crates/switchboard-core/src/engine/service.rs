//! The service side: agent status, offers, messages, transfers, ends, bot hosting, ratings
//! (SPEC §2, §3, §6, §8).

use super::{Actor, Effect, Engine, Event, Note, Selection, Sender, Target, check_text};
use crate::channel::MessageTag;
use crate::conversation::{Cause, State};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId};
use crate::replies::ReplyKind;
use crate::router::{AgentStatus, StatusCause};
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

    pub fn accept(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        self.routed(now, Cause::Accepted, |r, out| r.accept(now, agent, id, out))
    }

    pub fn decline(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        self.routed(now, Cause::Declined, |r, out| r.decline(now, agent, id, out))
    }

    /// The agent picks a conversation from its unaccepted list.
    pub fn pick(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
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
        let c = self.open_conv(id)?;
        if c.state != State::Assigned || c.agent != Some(agent) {
            return Err(Error::NotAssigned { conversation: id, agent });
        }
        let window_from = c.last_customer_at.unwrap_or(c.opened_at);
        if now >= window_from + self.settings.reply_window(c.channel) {
            if !c.channel.window_allows_tags() {
                return Err(Error::OutsideReplyWindow { conversation: id, channel: c.channel });
            }
            if tag.is_none() {
                return Err(Error::TagRequired(id));
            }
        }
        if let Some(limit) = c.channel.reply_budget()
            && c.consecutive_service >= limit
        {
            return Err(Error::BudgetExhausted { conversation: id, channel: c.channel, limit });
        }
        let channel = c.channel;
        let c = self.conversations.get_mut(&id).expect("conversation exists");
        let first = c.first_response_at.is_none();
        c.record_agent_message(now);
        let mut out = Vec::new();
        if first {
            out.push(Effect::Event(Event::FirstResponse {
                conversation: id,
                agent,
                group: c.group,
                since_opened_ms: super::millis(now.since(c.opened_at)),
                since_assigned_ms: super::millis(now.since(c.assigned_at.unwrap_or(c.opened_at))),
            }));
        }
        c.read_at = Some(now);
        self.reschedule(id);
        out.push(Effect::Send {
            conversation: id,
            channel,
            text: text.to_owned(),
            from: Sender::Agent(agent),
            tag,
        });
        Ok(out)
    }

    /// A supervisor's guidance, visible to the agent side only.
    pub fn whisper(
        &mut self,
        _now: Timestamp,
        from: AgentId,
        id: ConversationId,
        text: &str,
    ) -> Result<Vec<Effect>> {
        check_text(text)?;
        let c = self.open_conv(id)?;
        let Some(agent) = c.agent else {
            return Err(Error::InvalidTransition {
                conversation: id,
                state: c.state,
                action: "whisper (no agent holds it)",
            });
        };
        Ok(vec![Effect::Notify {
            agent,
            note: Note::Whisper { conversation: id, from, text: text.to_owned() },
        }])
    }

    /// The agent read the conversation; flags it read-but-unreplied when the customer waits.
    pub fn mark_read(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        let c = self.open_conv(id)?;
        if c.agent != Some(agent) {
            return Err(Error::NotAssigned { conversation: id, agent });
        }
        let c = self.conversations.get_mut(&id).expect("conversation exists");
        c.read_at = Some(now);
        let out = if c.read_unreplied() {
            vec![Effect::Notify { agent, note: Note::ReadUnreplied { conversation: id } }]
        } else {
            Vec::new()
        };
        Ok(out)
    }

    /// Moves a conversation to another agent or group. An agent may move only its own.
    pub fn transfer(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        target: Target,
        by: Actor,
    ) -> Result<Vec<Effect>> {
        let c = self.open_conv(id)?;
        if let Actor::Agent(a) = by
            && c.agent != Some(a)
        {
            return Err(Error::NotAssigned { conversation: id, agent: a });
        }
        if c.state == State::Bot {
            return Err(Error::InvalidTransition {
                conversation: id,
                state: c.state,
                action: "transfer before transfer to a human",
            });
        }
        let from = c.agent;
        let left_queue = match target {
            Target::Group { .. } => super::waited_ms(c, now).map(|ms| (c.group, ms)),
            Target::Agent(_) => None,
        };
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
        let mut out = vec![Effect::Event(Event::Transferred {
            conversation: id,
            from,
            to: target,
            left_queue,
        })];
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
        let c = self.open_conv(id)?;
        let cause = match by {
            Actor::Agent(a) if c.agent == Some(a) => Cause::EndedByAgent,
            Actor::Agent(a) => {
                return Err(Error::NotAssigned { conversation: id, agent: a });
            }
            Actor::Supervisor(_) | Actor::System => Cause::EndedBySupervisor,
        };
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
        _now: Timestamp,
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
        for id in ids {
            let Some(c) = self.conversations.get_mut(&id) else {
                continue;
            };
            if c.state != State::Assigned || c.bot_hosting == on {
                continue;
            }
            c.bot_hosting = on;
            if let Some(agent) = c.agent {
                out.push(Effect::Notify { agent, note: Note::BotHosting { conversation: id, on } });
            }
        }
        let changed = out.len();
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
