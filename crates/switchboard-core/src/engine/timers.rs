//! Timers as state (SPEC §5): each conversation's next deadline is indexed, and `advance`
//! fires whatever is due — router deadlines (offers, affinity, offline grace) and
//! conversation deadlines (in-session replies, auto-ends, reply window, alerts, retention).

use super::{Effect, Engine, Event, Note};
use crate::conversation::{Cause, Conversation, Due, Thresholds};
use crate::ids::ConversationId;
use crate::replies::ReplyKind;
use crate::time::Timestamp;

impl Engine {
    /// The earliest moment something is due.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let conv = self.deadlines.first().map(|(at, _)| *at);
        match (self.router.next_deadline(), conv) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires everything due at `now`.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut out = Vec::new();
        loop {
            if self.router.next_deadline().is_some_and(|at| at <= now) {
                let mut rout = Vec::new();
                self.router.advance(now, &mut rout);
                self.apply(now, rout, Cause::Routed, &mut out);
            } else if let Some(&(at, id)) = self.deadlines.first()
                && at <= now
            {
                self.fire(now, id, &mut out);
            } else {
                return out;
            }
        }
    }

    /// The thresholds in force for a conversation.
    pub fn thresholds(&self, c: &Conversation) -> Thresholds {
        let levels = self.levels(c, c.agent);
        Thresholds {
            agent_no_response: levels.resolve(|r| r.agent_no_response.as_ref()).map(|r| r.after),
            customer_no_response: levels
                .resolve(|r| r.customer_no_response.as_ref())
                .map(|r| r.after),
            idle_end: levels.resolve(|r| r.idle_end.as_ref()).map(|r| r.after),
            customer_no_response_end: levels
                .resolve(|r| r.customer_no_response_end.as_ref())
                .map(|r| r.after),
            unreplied_alert: self.settings.unreplied_alert,
            reply_window: self.settings.reply_window(c.channel),
            window_ends: !c.channel.window_allows_tags(),
            retention_unaccepted: self.settings.retention_unaccepted,
            retention_accepted: self.settings.retention_accepted,
        }
    }

    /// Recomputes one conversation's next deadline in the index.
    pub(super) fn reschedule(&mut self, id: ConversationId) {
        if let Some(at) = self.scheduled.remove(&id) {
            self.deadlines.remove(&(at, id));
        }
        let Some(c) = self.conversations.get(&id) else {
            return;
        };
        if let Some((at, _)) = c.next_deadline(&self.thresholds(c)) {
            self.deadlines.insert((at, id));
            self.scheduled.insert(id, at);
        }
    }

    /// Recomputes the deadlines of every conversation matching `pred` (after a settings change).
    pub(super) fn reschedule_where(&mut self, pred: impl Fn(&Conversation) -> bool) {
        let ids: Vec<ConversationId> =
            self.conversations.values().filter(|c| pred(c)).map(|c| c.id).collect();
        for id in ids {
            self.reschedule(id);
        }
    }

    /// Fires the due deadlines of one conversation, earliest first.
    fn fire(&mut self, now: Timestamp, id: ConversationId, out: &mut Vec<Effect>) {
        let Some(c) = self.conversations.get(&id) else {
            self.reschedule(id);
            return;
        };
        let Some((at, due)) = c.next_deadline(&self.thresholds(c)) else {
            self.reschedule(id);
            return;
        };
        if at > now {
            self.reschedule(id);
            return;
        }
        let (agent, group) = (c.agent, c.group);
        match due {
            Due::AgentNoResponse => {
                let reply = self
                    .levels(c, agent)
                    .resolve(|r| r.agent_no_response.as_ref())
                    .map(|r| r.texts.clone());
                self.conversations
                    .get_mut(&id)
                    .expect("conversation exists")
                    .agent_no_response_from = None;
                if let Some(texts) = reply {
                    self.send_auto(now, id, ReplyKind::AgentNoResponse, &texts, agent, out);
                }
            }
            Due::CustomerNoResponse => {
                let reply = self
                    .levels(c, agent)
                    .resolve(|r| r.customer_no_response.as_ref())
                    .map(|r| r.texts.clone());
                self.conversations
                    .get_mut(&id)
                    .expect("conversation exists")
                    .customer_no_response_sent = true;
                if let Some(texts) = reply {
                    self.send_auto(now, id, ReplyKind::CustomerNoResponse, &texts, agent, out);
                }
            }
            Due::UnrepliedAlert => {
                let notify: Vec<_> = match agent {
                    Some(a) => vec![a],
                    None => self.router.group_members(group).collect(),
                };
                self.conversations.get_mut(&id).expect("conversation exists").alert_sent = true;
                for &a in &notify {
                    out.push(Effect::Notify {
                        agent: a,
                        note: Note::UnrepliedAlert { conversation: id },
                    });
                }
                out.push(Effect::Event(Event::UnrepliedAlert { conversation: id, notify }));
            }
            Due::CustomerNoResponseEnd => {
                self.finish(
                    now,
                    id,
                    Cause::CustomerNoResponse,
                    Some(ReplyKind::CustomerNoResponseEnd),
                    out,
                );
            }
            Due::IdleEnd => self.finish(now, id, Cause::IdleTimeout, Some(ReplyKind::IdleEnd), out),
            Due::ReplyWindow => self.finish(now, id, Cause::ReplyWindowClosed, None, out),
            Due::Purge => {
                self.conversations.remove(&id);
                out.push(Effect::Purge { conversation: id });
            }
        }
        self.reschedule(id);
    }
}
