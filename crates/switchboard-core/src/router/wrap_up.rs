//! Wrap-up (after-conversation work, issue 14 item 4): when an assigned conversation ends,
//! its group's `wrap_up` keeps the agent's slot taken for a while. The slot counts in the
//! agent's load, so capacity, the strategies' occupancy and work conservation all see it.
//! Its end is a router deadline (state, like every timer: a snapshot or a replay re-arms
//! it); an optional wrap-up may also be ended early by the agent.

use super::{Effect, Router, Timer, Wrap};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::time::Timestamp;

impl Router {
    /// The agent's conversation of `group` ended: hold its slot if the group wraps up.
    pub(super) fn start_wrap_up(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conv: ConversationId,
        group: GroupId,
        out: &mut Vec<Effect>,
    ) {
        let Some(w) = self.groups.get(&group).and_then(|g| g.policy.wrap_up) else { return };
        let Some(a) = self.agents.get_mut(&agent) else { return };
        let until = now + w.duration;
        a.wrapping.insert(conv, Wrap { until, can_end_early: w.can_end_early });
        self.timers.insert((until, Timer::WrapUp(agent, conv)));
        self.refresh(agent);
        out.push(Effect::WrappingUp { agent, conversation: conv, until });
    }

    /// The agent says its wrap-up is done: of `conv`, or (`None`) every wrap-up it may end.
    /// Refused when there is none, or when the group's wrap-up is mandatory.
    pub fn end_wrap_up(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        conv: Option<ConversationId>,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let a = self.agents.get(&agent).ok_or(Error::UnknownAgent(agent))?;
        let wraps: Vec<(ConversationId, Wrap)> = match conv {
            Some(c) => a.wrapping.get(&c).map(|w| (c, *w)).into_iter().collect(),
            None => a.wrapping.iter().map(|(c, w)| (*c, *w)).collect(),
        };
        if wraps.is_empty() {
            return Err(Error::NotWrappingUp { agent, conversation: conv });
        }
        let ending: Vec<ConversationId> =
            wraps.iter().filter(|(_, w)| w.can_end_early).map(|(c, _)| *c).collect();
        if ending.is_empty() {
            let until = wraps.iter().map(|(_, w)| w.until).min().expect("not empty");
            return Err(Error::WrapUpMandatory { agent, until });
        }
        for c in ending {
            self.finish_wrap_up(agent, c, true, out);
        }
        self.settle(now, out);
        Ok(())
    }

    /// A wrap-up deadline fired (only if it is still the wrap-up's own).
    pub(super) fn wrap_up_due(
        &mut self,
        at: Timestamp,
        agent: AgentId,
        conv: ConversationId,
        out: &mut Vec<Effect>,
    ) {
        let due = self
            .agents
            .get(&agent)
            .and_then(|a| a.wrapping.get(&conv))
            .is_some_and(|w| w.until == at);
        if due {
            self.finish_wrap_up(agent, conv, false, out);
        }
    }

    /// Ends wrap-ups, soonest first, until the agent's load fits `capacity` (an administrator
    /// lowered it); conversations it serves are never dropped here.
    pub(super) fn fit_wrap_ups(&mut self, agent: AgentId, capacity: u32, out: &mut Vec<Effect>) {
        let Some(a) = self.agents.get(&agent) else { return };
        let excess = (a.load() as usize).saturating_sub(capacity as usize);
        let mut wraps: Vec<(Timestamp, ConversationId)> =
            a.wrapping.iter().map(|(c, w)| (w.until, *c)).collect();
        wraps.sort_unstable();
        for (_, c) in wraps.into_iter().take(excess) {
            self.finish_wrap_up(agent, c, true, out);
        }
    }

    /// Drops the deadlines of a removed agent's wrap-ups.
    pub(super) fn forget_wrap_ups(&mut self, agent: AgentId) {
        let Some(a) = self.agents.get_mut(&agent) else { return };
        for (c, w) in std::mem::take(&mut a.wrapping) {
            self.timers.remove(&(w.until, Timer::WrapUp(agent, c)));
        }
    }

    fn finish_wrap_up(
        &mut self,
        agent: AgentId,
        conv: ConversationId,
        early: bool,
        out: &mut Vec<Effect>,
    ) {
        let a = self.agents.get_mut(&agent).expect("wrapping agent exists");
        let Some(w) = a.wrapping.remove(&conv) else { return };
        self.timers.remove(&(w.until, Timer::WrapUp(agent, conv)));
        self.refresh(agent);
        out.push(Effect::WrapUpEnded { agent, conversation: conv, early });
    }
}
