//! Timers as state (SPEC §5): each conversation's next deadline is indexed, and `advance`
//! fires whatever is due — router deadlines (offers, affinity, offline grace) and
//! conversation deadlines (in-session replies, auto-ends, reply window, alerts, retention).

use super::{Effect, Engine};
use crate::conversation::{Cause, Conversation, Due, Thresholds};
use crate::ids::ConversationId;
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
        self.config().thresholds(c)
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

    /// Fires the due deadline of one conversation: an open one's through its session, an
    /// ended one's retention here.
    fn fire(&mut self, now: Timestamp, id: ConversationId, out: &mut Vec<Effect>) {
        if let Some(c) = self.conversations.get(&id).filter(|c| !c.is_open()) {
            let due = c.next_deadline(&self.thresholds(c));
            if due.is_some_and(|(at, due)| at <= now && due == Due::Purge) {
                self.conversations.remove(&id);
                out.push(Effect::Purge { conversation: id });
            }
        } else {
            let ask = self.session(now, id).and_then(|mut s| s.fire(now, out));
            self.settle(now, id, ask, out);
        }
        self.reschedule(id);
    }
}
