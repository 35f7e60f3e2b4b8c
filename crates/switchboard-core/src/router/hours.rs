//! Business hours and holidays (issue 14 item 3): each group with a calendar (its own, else
//! the tenant's; none is always open) is open or closed, with a deadline at its next change
//! (`Timer::Hours`, held in `Calendar::groups`, so it survives a snapshot like every other).
//!
//! A closed group offers and assigns nothing: its queue, its conversations standing in step
//! groups' overflow queues and those pinned to one of its agents wait; an agent may not pick
//! them; work conservation skips them (its agents are not "free" for them). Offers made
//! before it closed may still be accepted, and assignments stay. Its policy
//! (`GroupPolicy::when_closed`) says what becomes of conversations that *enter* it while
//! closed (routed, transferred, overflowed in, a pin that ran out) and of those waiting in
//! its queue when it closes:
//! - `wait`: they wait ([`Effect::OutsideHours`], for the `closed` reply once);
//! - `overflow`: they go on to `overflow.group` as a full queue sends them (`overflow.rs`),
//!   keeping their entry time; with no such group they end as under `end`;
//! - `end`: the router lets go ([`Effect::Closed`]); the session ends them with cause
//!   `closed` and the `closed` reply.
//!
//! Conversations requeued at the front (their agent went offline) wait, untold.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{Effect, Router, Timer};
use crate::config::WhenClosed;
use crate::hours::{Hours, Offsets, OpenState};
use crate::ids::{ConversationId, GroupId};
use crate::time::Timestamp;

/// The tenant's calendar and the zone's offsets, with each calendared group's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Calendar {
    tenant: Option<Hours>,
    offsets: Offsets,
    /// Groups with a calendar (their own or the tenant's): open or closed, until when.
    groups: FxHashMap<GroupId, OpenState>,
}

impl Router {
    /// Sets the tenant's hours and its zone's offsets (the shell rebuilds them when the
    /// settings change, and on a tick before the table runs out: always at a logged time);
    /// every group's state is computed again.
    pub fn set_calendar(
        &mut self,
        now: Timestamp,
        tenant: Option<Hours>,
        offsets: Offsets,
        out: &mut Vec<Effect>,
    ) {
        self.calendar.tenant = tenant;
        self.calendar.offsets = offsets;
        let mut ids: Vec<GroupId> = self.groups.keys().copied().collect();
        ids.sort();
        for g in ids {
            self.recalendar(now, g, false, out);
        }
        self.settle(now, out);
    }

    /// Whether calendars use the zone's table of offsets and its last change comes before
    /// `horizon`: the shell built it some years ahead at a logged time, and builds it again
    /// (at another logged time, so a replay does the same) before it runs out. A zone with no
    /// change in its table (no daylight-saving time) never runs out.
    pub fn zone_table_ends_before(&self, horizon: Timestamp) -> bool {
        let changes = &self.calendar.offsets.changes;
        !self.calendar.groups.is_empty()
            && changes.len() > 1
            && changes.last().is_some_and(|(at, _)| *at < horizon)
    }

    /// Whether `group` is closed now (outside its business hours).
    pub fn closed(&self, group: GroupId) -> bool {
        self.calendar.groups.get(&group).is_some_and(|s| !s.open)
    }

    /// When `group`'s open state next changes, if it has a calendar and it changes at all.
    pub fn hours_change(&self, group: GroupId) -> Option<Timestamp> {
        self.calendar.groups.get(&group).and_then(|s| s.until)
    }

    /// Whether the group's agents take pushed work from it now: it pushes and is open.
    pub(super) fn serves(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|g| g.policy.offer.pushes()) && !self.closed(group)
    }

    /// Forgets a group's open state and deadline (it is removed, or closed anew).
    pub(super) fn calendar_reset(&mut self, group: GroupId) {
        if let Some(at) = self.calendar.groups.remove(&group).and_then(|s| s.until) {
            self.timers.remove(&(at, Timer::Hours(group)));
        }
    }

    /// Computes a group's open state at `now` and its next deadline, and applies a change;
    /// `anew`: a closed group closes again (its closed policy changed).
    pub(super) fn recalendar(
        &mut self,
        now: Timestamp,
        group: GroupId,
        anew: bool,
        out: &mut Vec<Effect>,
    ) {
        if !self.groups.contains_key(&group) {
            return;
        }
        let was_closed = self.closed(group);
        self.calendar_reset(group);
        let g = &self.groups[&group];
        let hours = g.policy.hours.as_ref().or(self.calendar.tenant.as_ref());
        if let Some(h) = hours {
            let s = h.state(&self.calendar.offsets, now);
            if let Some(at) = s.until {
                self.timers.insert((at, Timer::Hours(group)));
            }
            self.calendar.groups.insert(group, s);
        }
        match (was_closed, self.closed(group)) {
            (true, false) => self.opened(group),
            (false, true) => self.closing(now, group, out),
            (true, true) if anew => self.closing(now, group, out),
            _ => {}
        }
    }

    /// A group's hours deadline fired (only if it is still the group's).
    pub(super) fn hours_due(
        &mut self,
        now: Timestamp,
        at: Timestamp,
        group: GroupId,
        out: &mut Vec<Effect>,
    ) {
        if self.hours_change(group) == Some(at) {
            self.recalendar(now, group, false, out);
        }
    }

    /// The group opened: whatever waits for its agents, or for agents of its steps, may go.
    fn opened(&mut self, group: GroupId) {
        self.dirty_groups.insert(group);
        let steps: Vec<GroupId> =
            self.groups[&group].policy.steps.iter().map(|s| s.group).collect();
        self.dirty_groups.extend(steps);
        let pinned: Vec<_> =
            self.agents.iter().filter(|(_, a)| !a.pinned.is_empty()).map(|(id, _)| *id).collect();
        self.dirty_agents.extend(pinned);
    }

    /// The group closed: its waiting conversations wait, move on or end by its policy.
    fn closing(&mut self, now: Timestamp, group: GroupId, out: &mut Vec<Effect>) {
        let g = &self.groups[&group];
        let when = g.policy.when_closed;
        let waiting: Vec<ConversationId> = g.queue.iter().map(|(_, c)| c).collect();
        for conv in waiting {
            let key = self.placements[&conv].key();
            if key.front() {
                continue;
            }
            match when {
                WhenClosed::Wait => out.push(Effect::OutsideHours { conversation: conv, group }),
                WhenClosed::Overflow | WhenClosed::End => {
                    let declined = self.placements[&conv].declined().to_vec();
                    self.take(conv);
                    self.enter(now, conv, group, key, declined, out);
                }
            }
        }
    }

    /// Every calendared group has its state and exactly its deadline armed; no other has.
    pub(super) fn check_hours(&self) -> std::result::Result<(), String> {
        for (id, g) in &self.groups {
            let has = g.policy.hours.is_some() || self.calendar.tenant.is_some();
            match self.calendar.groups.get(id) {
                None if has => return Err(format!("group {id} has hours but no open state")),
                Some(_) if !has => {
                    return Err(format!("group {id} has an open state but no hours"));
                }
                Some(s) => {
                    if let Some(at) = s.until
                        && !self.timers.contains(&(at, Timer::Hours(*id)))
                    {
                        return Err(format!("group {id}'s hours change at {at:?} has no deadline"));
                    }
                }
                None => {}
            }
        }
        for (at, t) in &self.timers {
            if let Timer::Hours(g) = t
                && self.hours_change(*g) != Some(*at)
            {
                return Err(format!("hours deadline of {g} at {at:?} is stale"));
            }
        }
        Ok(())
    }
}
