//! An agent's first sign-in of the day (SPEC §8: the agent board shows "today's first login
//! time"). Signing in is leaving `offline`; the first time an agent does so on a local day is
//! kept until its next sign-in on a later day, and it is *today's* only on that day.
//!
//! Days are the shell's: a day number (days since 1970-01-01 in the tenant's time zone),
//! asked for only when an agent signs in. The rule is here once, for both shells: the tenant
//! actor applies it to each status change it makes ([`FirstLogin::after`]), the router actor
//! of a tenant on actors to the router's status-change events of each step ([`Logins`], kept
//! in the router side's durable row).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Effect, Event};
use crate::ids::AgentId;
use crate::router::AgentStatus;
use crate::time::Timestamp;

/// The first sign-in of one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstLogin {
    /// The local day it happened on (days since 1970-01-01 in the tenant's time zone).
    pub day: u64,
    /// When.
    pub at: Timestamp,
}

impl FirstLogin {
    /// What is kept after a status change `from` → `to` at `now`: a sign-in (leaving
    /// `offline`) on a day without one becomes that day's first; anything else keeps `kept`.
    /// `day` gives the local day of `now`, asked only for a sign-in.
    pub fn after(
        kept: Option<FirstLogin>,
        from: AgentStatus,
        to: AgentStatus,
        now: Timestamp,
        day: impl FnOnce() -> u64,
    ) -> Option<FirstLogin> {
        if from != AgentStatus::Offline || to == AgentStatus::Offline {
            return kept;
        }
        let day = day();
        match kept {
            Some(k) if k.day == day => Some(k),
            _ => Some(FirstLogin { day, at: now }),
        }
    }

    /// When `kept` happened, if that was on local day `today` (a first sign-in of an earlier
    /// day is not today's).
    pub fn today(kept: Option<FirstLogin>, today: u64) -> Option<Timestamp> {
        kept.filter(|k| k.day == today).map(|k| k.at)
    }
}

/// Every agent's first sign-in, by agent, as the router's status changes make them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Logins(BTreeMap<AgentId, FirstLogin>);

impl Logins {
    /// Applies [`FirstLogin::after`] to each agent status change among one step's `effects`
    /// (`Event::AgentStatusChanged`, in order), at the step's time `now`; `day` gives its local
    /// day, asked at most once and only if someone signed in.
    pub fn note(&mut self, now: Timestamp, effects: &[Effect], day: impl FnOnce() -> u64) {
        let mut day = Some(day);
        let mut today = None;
        for effect in effects {
            let Effect::Event(Event::AgentStatusChanged { agent, from, to, .. }) = *effect else {
                continue;
            };
            let kept = self.0.get(&agent).copied();
            let ask = || *today.get_or_insert_with(|| day.take().map_or(0, |d| d()));
            if let Some(first) = FirstLogin::after(kept, from, to, now, ask) {
                self.0.insert(agent, first);
            }
        }
    }

    /// The agent's first sign-in as kept (of whichever day it was).
    pub fn get(&self, agent: AgentId) -> Option<FirstLogin> {
        self.0.get(&agent).copied()
    }

    /// Forgets an agent (removed from the configuration).
    pub fn remove(&mut self, agent: AgentId) {
        self.0.remove(&agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::StatusCause;

    const DAY: u64 = 20_000;

    fn at(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn changed(agent: u64, from: AgentStatus, to: AgentStatus) -> Effect {
        let (agent, cause) = (AgentId(agent), StatusCause::Agent);
        Effect::Event(Event::AgentStatusChanged { agent, from, to, cause })
    }

    #[test]
    fn the_first_sign_in_of_a_day_is_kept_until_a_later_days() {
        use AgentStatus::{Away, Offline, Online};
        let first = FirstLogin::after(None, Offline, Online, at(10), || DAY);
        assert_eq!(first, Some(FirstLogin { day: DAY, at: at(10) }));
        // Status changes that are not sign-ins keep it, and do not ask for the day.
        let never = || -> u64 { panic!("the day is asked only for a sign-in") };
        assert_eq!(FirstLogin::after(first, Online, Away, at(20), never), first);
        assert_eq!(FirstLogin::after(first, Away, Offline, at(30), never), first);
        assert_eq!(FirstLogin::after(None, Offline, Offline, at(30), never), None);
        // Signing in again the same day keeps the first; the next day starts again.
        assert_eq!(FirstLogin::after(first, Offline, Away, at(40), || DAY), first);
        let next = FirstLogin::after(first, Offline, Online, at(50), || DAY + 1);
        assert_eq!(next, Some(FirstLogin { day: DAY + 1, at: at(50) }));
        // Today's only on its day.
        assert_eq!(FirstLogin::today(first, DAY), Some(at(10)));
        assert_eq!(FirstLogin::today(first, DAY + 1), None);
        assert_eq!(FirstLogin::today(None, DAY), None);
    }

    #[test]
    fn logins_follow_the_routers_status_changes() {
        use AgentStatus::{Away, Offline, Online};
        let mut logins = Logins::default();
        let mut asked = 0;
        let step =
            [changed(1, Offline, Online), changed(2, Offline, Away), changed(3, Online, Away)];
        logins.note(at(10), &step, || {
            asked += 1;
            DAY
        });
        assert_eq!(asked, 1, "the day is asked once per step");
        assert_eq!(logins.get(AgentId(1)), Some(FirstLogin { day: DAY, at: at(10) }));
        assert_eq!(logins.get(AgentId(2)), Some(FirstLogin { day: DAY, at: at(10) }));
        assert_eq!(logins.get(AgentId(3)), None, "no sign-in");
        // Out and in again the same day: the first stays; the next day: a new first.
        logins.note(at(20), &[changed(1, Online, Offline), changed(1, Offline, Online)], || DAY);
        assert_eq!(logins.get(AgentId(1)).map(|f| f.at), Some(at(10)));
        let quiet = [Effect::Event(Event::AgentStatusChanged {
            agent: AgentId(2),
            from: Away,
            to: Online,
            cause: StatusCause::Agent,
        })];
        logins.note(at(25), &quiet, || panic!("nobody signed in"));
        logins.note(at(30), &[changed(2, Offline, Online)], || DAY + 1);
        assert_eq!(logins.get(AgentId(2)), Some(FirstLogin { day: DAY + 1, at: at(30) }));
        logins.remove(AgentId(2));
        assert_eq!(logins.get(AgentId(2)), None);
    }
}
