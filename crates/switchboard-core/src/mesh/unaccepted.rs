//! The live unaccepted list (SPEC §6) across actors: when a conversation enters or leaves the
//! unaccepted list of a signed-in agent (waiting in one of its groups' queues, or for it in
//! particular), the router side tells the agent on its link ([`ToAgent::Unaccepted`]), and
//! its desk shows it.
//!
//! The same rule as the tenant actor's (`switchboard-node`'s `apply/unaccepted`), derived
//! from the router's placements: after each router operation, the conversations its effects
//! name (and every conversation waiting for one agent, whose pin can lapse without an effect)
//! are compared with where the side last said they wait, and each agent that gains or loses
//! one is told. Agents who are offline are not told (their desktop reads the list when it
//! signs in). A signed-in agent whose groups change is told what waits in the groups it
//! joined and what it no longer sees in those it left ([`Unaccepted::regrouped`]), before
//! the operation's own changes.
//!
//! [`ToAgent::Unaccepted`]: super::ToAgent::Unaccepted

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ConversationId, GroupId};
use crate::router::{AgentStatus, Placement, Router};

/// Where a conversation waits, as far as unaccepted lists go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    Group(GroupId),
    Pinned(GroupId, AgentId),
}

/// Why a conversation left an agent's unaccepted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gone {
    /// Offered to an agent.
    Offered,
    /// Assigned to an agent.
    Assigned,
    /// Still waiting, somewhere this agent does not see (another group, another agent's pin).
    Moved,
    /// No longer routed: it ended (or was refused, or closed).
    Ended,
}

impl Gone {
    /// As the API says it (`UnacceptedRemoved.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Offered => "offered",
            Gone::Assigned => "assigned",
            Gone::Moved => "moved",
            Gone::Ended => "ended",
        }
    }
}

/// One change of one agent's unaccepted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The conversation waits where this agent sees it: in `group`'s queue, or (`pinned`)
    /// for this agent in particular.
    Added {
        conversation: ConversationId,
        group: GroupId,
        pinned: bool,
    },
    Removed {
        conversation: ConversationId,
        gone: Gone,
    },
}

/// Where the side last said each waiting conversation waits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Unaccepted {
    waiting: BTreeMap<ConversationId, Waiting>,
}

fn waiting(router: &Router, c: ConversationId) -> Option<Waiting> {
    match router.placement(c)? {
        Placement::Queued { group, pin: Some(p), .. } => Some(Waiting::Pinned(*group, p.agent)),
        Placement::Queued { group, pin: None, .. } => Some(Waiting::Group(*group)),
        _ => None,
    }
}

/// The signed-in agents whose list holds a conversation waiting at `w`.
fn eligible(router: &Router, w: Waiting) -> BTreeSet<AgentId> {
    let signed_in =
        |a: &AgentId| router.agent(*a).is_some_and(|x| x.status != AgentStatus::Offline);
    match w {
        Waiting::Group(g) => router.group_members(g).filter(signed_in).collect(),
        Waiting::Pinned(_, a) => std::iter::once(a).filter(signed_in).collect(),
    }
}

impl Unaccepted {
    /// Compares `touched` (the conversations an operation's effects name) and every pinned
    /// one with where they were last said to wait; returns each agent's changes, in
    /// conversation order.
    pub fn track(
        &mut self,
        router: &Router,
        touched: impl IntoIterator<Item = ConversationId>,
    ) -> BTreeMap<AgentId, Vec<Change>> {
        let mut candidates: BTreeSet<ConversationId> = touched.into_iter().collect();
        candidates.extend(
            self.waiting.iter().filter(|(_, w)| matches!(w, Waiting::Pinned(..))).map(|(c, _)| *c),
        );
        let mut changes: BTreeMap<AgentId, Vec<Change>> = BTreeMap::new();
        for conversation in candidates {
            let before = self.waiting.get(&conversation).copied();
            let after = waiting(router, conversation);
            if before == after {
                continue;
            }
            match after {
                Some(w) => self.waiting.insert(conversation, w),
                None => self.waiting.remove(&conversation),
            };
            let old = before.map(|w| eligible(router, w)).unwrap_or_default();
            let new = after.map(|w| eligible(router, w)).unwrap_or_default();
            if let Some(w) = after {
                let (group, pinned) = match w {
                    Waiting::Group(g) => (g, false),
                    Waiting::Pinned(g, _) => (g, true),
                };
                for a in new.difference(&old) {
                    let added = Change::Added { conversation, group, pinned };
                    changes.entry(*a).or_default().push(added);
                }
            }
            let gone = match router.placement(conversation) {
                Some(Placement::Offered { .. }) => Gone::Offered,
                Some(Placement::Assigned { .. }) => Gone::Assigned,
                Some(Placement::Queued { .. }) => Gone::Moved,
                None => Gone::Ended,
            };
            for a in old.difference(&new) {
                changes.entry(*a).or_default().push(Change::Removed { conversation, gone });
            }
        }
        changes
    }
}

impl Unaccepted {
    /// `agent`'s groups changed from `before` to those the router has now: its list gains
    /// the conversations last said to wait in a group it joined and loses those of a group it
    /// left, in conversation order. Called before the operation's [`track`](Self::track) (which
    /// reads membership as it is now), with where conversations were last said to wait. Nothing
    /// for an agent signed out.
    pub fn regrouped(&self, router: &Router, agent: AgentId, before: &[GroupId]) -> Vec<Change> {
        let Some(now) = router
            .agent(agent)
            .filter(|a| a.status != AgentStatus::Offline)
            .map(|a| &a.groups)
            .filter(|now| now.as_slice() != before)
        else {
            return Vec::new();
        };
        let joined = |g: &GroupId| now.contains(g) && !before.contains(g);
        let left = |g: &GroupId| before.contains(g) && !now.contains(g);
        self.waiting
            .iter()
            .filter_map(|(&conversation, w)| match w {
                Waiting::Group(g) if joined(g) => {
                    Some(Change::Added { conversation, group: *g, pinned: false })
                }
                Waiting::Group(g) if left(g) => {
                    Some(Change::Removed { conversation, gone: Gone::Moved })
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GroupPolicy, OfferMode};
    use crate::router::{RouteRequest, StatusCause};
    use crate::time::{Timestamp, secs};

    const G: GroupId = GroupId(1);
    const C: ConversationId = ConversationId(7);
    const A1: AgentId = AgentId(1);
    const A2: AgentId = AgentId(2);
    const A3: AgentId = AgentId(3);

    /// A pull group of three members, A3 offline.
    fn router() -> Router {
        let t0 = Timestamp(0);
        let mut r = Router::new(secs(60), Default::default());
        let mut out = Vec::new();
        let policy = GroupPolicy { offer: OfferMode::Pull, ..Default::default() };
        r.upsert_group(t0, G, policy, &mut out);
        for a in [A1, A2, A3] {
            r.upsert_agent(t0, a, 2, vec![G], Default::default(), &mut out).unwrap();
        }
        for a in [A1, A2] {
            r.set_status(t0, a, AgentStatus::Online, StatusCause::Agent, &mut out).unwrap();
        }
        r
    }

    /// A conversation waiting for its dedicated agent is on that agent's list only; when the
    /// wait lapses (a deadline, which names no conversation) the rest of the group hears of
    /// it; when it ends every list loses it. The offline member hears nothing.
    #[test]
    fn a_dedicated_wait_that_lapses_reaches_the_group_and_an_end_leaves_every_list() {
        let mut r = router();
        let mut lists = Unaccepted::default();
        let mut out = Vec::new();
        let now = Timestamp(1_000);
        let req = RouteRequest {
            group: G,
            priority: 0,
            entered_at: now,
            dedicated: Some(A1),
            last_agent: None,
        };
        r.route(now, C, req, &mut out).unwrap();
        let pinned = Change::Added { conversation: C, group: G, pinned: true };
        assert_eq!(lists.track(&r, [C]), BTreeMap::from([(A1, vec![pinned])]));
        assert!(lists.track(&r, []).is_empty(), "told once");

        r.advance(now + GroupPolicy::default().dedicated_timeout, &mut out);
        let group = Change::Added { conversation: C, group: G, pinned: false };
        assert_eq!(lists.track(&r, []), BTreeMap::from([(A2, vec![group])]), "A1 had it");

        r.remove(now + secs(1_000), C, &mut out);
        let ended = Change::Removed { conversation: C, gone: Gone::Ended };
        assert_eq!(lists.track(&r, [C]), BTreeMap::from([(A1, vec![ended]), (A2, vec![ended])]));
        assert!(lists.waiting.is_empty());
    }

    /// A signed-in agent that leaves a group loses what waits there, and gains it when it
    /// joins again; an offline one hears nothing; a wait pinned to the agent stays.
    #[test]
    fn an_agent_joining_or_leaving_a_group_gains_or_loses_what_waits_there() {
        const G2: GroupId = GroupId(2);
        let mut r = router();
        let mut lists = Unaccepted::default();
        let mut out = Vec::new();
        let t0 = Timestamp(0);
        let policy = GroupPolicy { offer: OfferMode::Pull, ..Default::default() };
        r.upsert_group(t0, G2, policy, &mut out);
        let req = |dedicated| RouteRequest {
            group: G,
            priority: 0,
            entered_at: t0,
            dedicated,
            last_agent: None,
        };
        const PINNED: ConversationId = ConversationId(8);
        r.route(t0, C, req(None), &mut out).unwrap();
        r.route(t0, PINNED, req(Some(A1)), &mut out).unwrap();
        lists.track(&r, [C, PINNED]);
        let mut regroup = |r: &mut Router, a, groups: Vec<GroupId>| {
            let before = r.agent(a).unwrap().groups.clone();
            r.upsert_agent(t0, a, 2, groups, Default::default(), &mut out).unwrap();
            lists.regrouped(r, a, &before)
        };
        let moved = Change::Removed { conversation: C, gone: Gone::Moved };
        assert_eq!(regroup(&mut r, A1, vec![G2]), [moved]);
        assert_eq!(regroup(&mut r, A1, vec![G2]), [], "no change, nothing to tell");
        let back = Change::Added { conversation: C, group: G, pinned: false };
        assert_eq!(regroup(&mut r, A1, vec![G2, G]), [back]);
        assert_eq!(regroup(&mut r, A3, vec![G2]), [], "offline");
    }
}
