//! Explain (issue 14 item 8): why a waiting conversation waits, why an assigned one went to
//! its agent, and why an agent gets nothing — read from the router's own state.
//!
//! Nothing here decides anything. Per agent, the verdict on a waiting conversation is
//! [`Router::refusal`] (`dispatch.rs`), the very predicate dispatch uses to skip an agent;
//! at rest (every operation settles) work conservation means it refuses every agent of a
//! waiting conversation's groups, so [`Verdict::TakesOthersFirst`] is shown only while a
//! conversation is behind others the agent takes first. Why an agent got a conversation is
//! the [`Decision`] dispatch recorded when it chose: the router keeps one per conversation
//! it holds offered or assigned (dropped when the conversation leaves the agent), so the
//! record is bounded by the live assignments.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Agent, AgentStatus, Pin, PinKind, Placement, Router};
use crate::config::Strategy;
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::Priority;
use crate::time::Timestamp;

/// Most conversations an agent's explanation lists, and most conversations named as ahead.
pub const MAX_LISTED: usize = 20;

/// Why an agent does not take a waiting conversation now. A new routing rule that keeps an
/// agent from a conversation (business hours, say) is a new variant here, checked in
/// [`Router::refusal`]; the compiler then points at every place that shows reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Signed out.
    Offline,
    /// Signed in but not taking pushed work (busy, away, invisible).
    NotOnline(AgentStatus),
    /// Its slots are all taken by conversations it serves or is offered.
    AtCapacity { load: u32, capacity: u32 },
    /// Full, and wrap-ups hold some of its slots; the first frees at `until`.
    WrappingUp { load: u32, capacity: u32, until: Timestamp },
    /// This group's conversations are not pushed: agents pick them (offer mode `pull`).
    GroupPulls(GroupId),
    /// The conversation waits for another agent in particular (dedicated or last agent).
    WaitsForAgent(AgentId),
    /// None of the agent's groups is one the conversation's steps admit yet; `from`: when a
    /// step will (none: no step names its groups).
    NotAdmitted { from: Option<Timestamp> },
    /// The agent declined it (or let its offer lapse, or it was transferred away from it).
    Declined,
    /// In the conversation's group at a proficiency level below what the group needs for it
    /// now (`policy.min_level`, lowered by its steps); `from`: when a step lowers it to the
    /// agent's level (none: no step does).
    BelowLevel { level: u8, needs: u8, from: Option<Timestamp> },
    /// `group` (the conversation's, or the one the agent would take it through) is outside
    /// its business hours (`hours.rs`); `until`: when it opens (none: not within the zone
    /// table).
    OutsideHours { group: GroupId, until: Option<Timestamp> },
}

/// One agent's verdict on one waiting conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It cannot take it now, and why.
    CannotTake(Refusal),
    /// It could take it but takes these first (best first, at most [`MAX_LISTED`]).
    TakesOthersFirst { ahead: Vec<ConversationId> },
}

/// How an offered or assigned conversation's agent was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The group's strategy chose among its available agents.
    Strategy(Strategy),
    /// The agent came free (or online) and this was the best conversation waiting for it
    /// (priority, then entry time, across its groups); no strategy compared agents.
    FreedAgent,
    /// It was the customer's dedicated or last agent.
    Affinity(PinKind),
    /// The agent picked it from its unaccepted list.
    Picked,
    /// It was transferred to the agent directly.
    Transferred,
}

/// What set the chosen agent ahead of the next one the strategy would have taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// No other agent could take it.
    OnlyCandidate,
    /// A higher proficiency level (best proficiency).
    Level,
    /// A lower load relative to capacity.
    Occupancy,
    /// Idle longer.
    IdleTime,
    /// Everything else equal: the lower agent id.
    AgentId,
    /// Round robin: its turn came first after the last agent chosen.
    Turn,
}

/// An agent's figures as compared at a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub load: u32,
    pub capacity: u32,
    /// Proficiency in the deciding group.
    pub level: u8,
    pub idle_since: Timestamp,
}

impl Figures {
    pub(super) fn of(a: &Agent, group: GroupId) -> Self {
        Figures {
            load: a.load(),
            capacity: a.capacity,
            level: a.level(group),
            idle_since: a.idle_since,
        }
    }
}

/// The record of why a conversation went to its agent, kept while the agent holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: Timestamp,
    /// The group whose agents were choosing (a step's group for a widened conversation).
    pub group: GroupId,
    pub basis: Basis,
    /// The chosen agent's figures just before it got the conversation.
    pub chosen: Figures,
    /// The agent the strategy would have taken next, and its figures.
    pub runner_up: Option<(AgentId, Figures)>,
    /// Set when a strategy chose.
    pub tie_break: Option<TieBreak>,
}

/// One agent of a waiting conversation's groups and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentVerdict {
    pub agent: AgentId,
    pub verdict: Verdict,
}

/// A step not reached yet: when it is due, the group it adds (the conversation's own for a
/// step that only lowers the level) and the level it lowers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    pub at: Timestamp,
    pub group: GroupId,
    pub min_level: Option<u8>,
}

/// Why a waiting conversation waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingExplanation {
    pub group: GroupId,
    pub priority: Priority,
    pub entered_at: Timestamp,
    /// Exact 1-based position in the queue it waits in (its group's, or its pin's).
    pub position: Option<usize>,
    pub pin: Option<Pin>,
    /// Steps of its group's policy reached, and the groups they admit.
    pub steps_reached: usize,
    pub widened: Vec<GroupId>,
    pub next_step: Option<NextStep>,
    /// Estimated wait (`ewt.rs`).
    pub wait: Option<Duration>,
    /// The pinned agent, the members of its group, of the groups its steps admit and of
    /// those its later steps will admit, by id.
    pub agents: Vec<AgentVerdict>,
}

/// Who holds an offered or assigned conversation and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldExplanation {
    pub agent: AgentId,
    pub group: GroupId,
    /// Set while it is an offer awaiting acceptance.
    pub offer_expires: Option<Timestamp>,
    /// None for a conversation placed before the router kept records.
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationExplanation {
    Waiting(WaitingExplanation),
    Held(HeldExplanation),
}

/// One group of an agent with what waits in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLoad {
    pub group: GroupId,
    /// Its own waiting conversations.
    pub waiting: usize,
    /// Conversations of other groups whose steps admit this one.
    pub widened: usize,
    pub pushes: bool,
}

/// Why an agent gets (no more) work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExplanation {
    pub status: AgentStatus,
    pub load: u32,
    pub capacity: u32,
    pub assigned: usize,
    pub offered: usize,
    /// Wrap-ups holding slots: conversation and when each frees.
    pub wrap_ups: Vec<(ConversationId, Timestamp)>,
    /// Why it takes no pushed work at all now; `None`: it takes work.
    pub refusal: Option<Refusal>,
    pub groups: Vec<GroupLoad>,
    /// Every conversation it could be given or pick (pinned to it, waiting in its groups).
    pub waiting_total: usize,
    /// The first [`MAX_LISTED`] of them, best first, each with its verdict.
    pub waiting: Vec<(ConversationId, Verdict)>,
}

impl Router {
    /// Why `agent` does not take waiting conversation `conv` now (`None`: it may, or `conv`
    /// does not wait).
    pub fn refusal_of(&self, agent: AgentId, conv: ConversationId) -> Option<Refusal> {
        self.refusal(agent, &self.waiting(conv)?)
    }

    /// The record of why the agent holding `conv` got it.
    pub fn decision(&self, conv: ConversationId) -> Option<&Decision> {
        self.decisions.get(&conv)
    }

    /// The agent's verdict on a waiting conversation.
    pub fn verdict(&self, now: Timestamp, agent: AgentId, conv: ConversationId) -> Option<Verdict> {
        let w = self.waiting(conv)?;
        Some(match self.refusal(agent, &w) {
            Some(why) => Verdict::CannotTake(why),
            None => Verdict::TakesOthersFirst {
                ahead: self
                    .unaccepted(agent, now)
                    .into_iter()
                    .take_while(|c| *c != conv)
                    .filter(|c| self.refusal_of(agent, *c).is_none())
                    .take(MAX_LISTED)
                    .collect(),
            },
        })
    }

    /// Why a routed conversation waits or who holds it and why; `None` when the router does
    /// not hold it.
    pub fn explain_conversation(
        &self,
        now: Timestamp,
        conv: ConversationId,
    ) -> Option<ConversationExplanation> {
        let placement = self.placements.get(&conv)?;
        let (group, key, pin) = match placement {
            Placement::Queued { group, key, pin, .. } => (*group, *key, *pin),
            Placement::Offered { agent, group, .. } | Placement::Assigned { agent, group, .. } => {
                let offer_expires = match placement {
                    Placement::Offered { expires, .. } => Some(*expires),
                    _ => None,
                };
                return Some(ConversationExplanation::Held(HeldExplanation {
                    agent: *agent,
                    group: *group,
                    offer_expires,
                    decision: self.decisions.get(&conv).copied(),
                }));
            }
        };
        let steps = self.groups.get(&group).map(|g| g.policy.steps.as_slice()).unwrap_or(&[]);
        let reached = self.widened.get(&conv).map_or(0, |w| w.reached);
        let next_step = self
            .widened
            .get(&conv)
            .and_then(|w| w.next)
            .zip(steps.get(reached))
            .map(|(at, s)| NextStep { at, group: s.group, min_level: s.min_level });
        let mut agents: BTreeSet<AgentId> = pin.map(|p| p.agent).into_iter().collect();
        let groups = std::iter::once(group)
            .chain(self.widened_groups(conv).iter().copied())
            .chain(steps.iter().map(|s| s.group));
        for g in groups {
            agents.extend(self.group_members(g));
        }
        let agents = agents
            .into_iter()
            .filter_map(|a| Some(AgentVerdict { agent: a, verdict: self.verdict(now, a, conv)? }))
            .collect();
        Some(ConversationExplanation::Waiting(WaitingExplanation {
            group,
            priority: key.priority(),
            entered_at: key.entered_at(),
            position: self.position(conv),
            pin,
            steps_reached: reached,
            widened: self.widened_groups(conv).to_vec(),
            next_step,
            wait: self.estimated_wait(now, conv),
            agents,
        }))
    }

    /// Why an agent gets no (more) work: its own state, its groups and what waits in them,
    /// and for the best waiting conversations why it does not take each. `None` for an
    /// unknown agent.
    pub fn explain_agent(&self, now: Timestamp, agent: AgentId) -> Option<AgentExplanation> {
        let a = self.agents.get(&agent)?;
        let groups = a
            .groups
            .iter()
            .filter_map(|id| {
                let g = self.groups.get(id)?;
                Some(GroupLoad {
                    group: *id,
                    waiting: g.queue.len(),
                    widened: g.overflow.len(),
                    pushes: g.policy.offer.pushes(),
                })
            })
            .collect();
        let list = self.unaccepted(agent, now);
        let waiting = list
            .iter()
            .take(MAX_LISTED)
            .filter_map(|c| Some((*c, self.verdict(now, agent, *c)?)))
            .collect();
        Some(AgentExplanation {
            status: a.status,
            load: a.load(),
            capacity: a.capacity,
            assigned: a.assigned.len(),
            offered: a.offered.len(),
            wrap_ups: a.wrapping.iter().map(|(c, w)| (*c, w.until)).collect(),
            refusal: Self::agent_refusal(a),
            groups,
            waiting_total: list.len(),
            waiting,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{GroupPolicy, NotRespondingPolicy, OfferMode, Step, WrapUp};
    use crate::router::{Effect, RouteRequest, StatusCause};
    use crate::time::secs;

    const G1: GroupId = GroupId(1);
    const G2: GroupId = GroupId(2);
    const A1: AgentId = AgentId(1);
    const A2: AgentId = AgentId(2);

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn c(n: u64) -> ConversationId {
        ConversationId(n)
    }

    struct F {
        r: Router,
        out: Vec<Effect>,
    }

    impl F {
        /// Groups G1 (with `policy`) and G2 (default).
        fn new(policy: GroupPolicy) -> Self {
            let nr = NotRespondingPolicy { after_misses: 0, status: AgentStatus::Away };
            let mut f = F { r: Router::new(secs(0), nr), out: Vec::new() };
            f.r.upsert_group(t(0), G1, policy, &mut f.out);
            f.r.upsert_group(t(0), G2, GroupPolicy::default(), &mut f.out);
            f
        }

        fn agent(&mut self, id: AgentId, capacity: u32, groups: &[GroupId], s: AgentStatus) {
            self.agent_at(id, capacity, groups, s, BTreeMap::new());
        }

        fn agent_at(
            &mut self,
            id: AgentId,
            capacity: u32,
            groups: &[GroupId],
            s: AgentStatus,
            levels: BTreeMap<GroupId, u8>,
        ) {
            self.r
                .upsert_agent(t(0), id, capacity, groups.to_vec(), levels, &mut self.out)
                .unwrap();
            self.r.set_status(t(0), id, s, StatusCause::Agent, &mut self.out).unwrap();
        }

        fn route(&mut self, now: Timestamp, conv: u64, dedicated: Option<AgentId>) {
            let req = RouteRequest {
                group: G1,
                priority: 0,
                entered_at: now,
                dedicated,
                last_agent: None,
            };
            self.r.route(now, c(conv), req, &mut self.out).unwrap();
            self.r.check_invariants().unwrap();
        }

        fn waiting(&self, now: Timestamp, conv: u64) -> WaitingExplanation {
            match self.r.explain_conversation(now, c(conv)) {
                Some(ConversationExplanation::Waiting(w)) => w,
                other => panic!("{conv} does not wait: {other:?}"),
            }
        }

        fn held(&self, conv: u64) -> HeldExplanation {
            match self.r.explain_conversation(t(0), c(conv)) {
                Some(ConversationExplanation::Held(h)) => h,
                other => panic!("{conv} is not held: {other:?}"),
            }
        }

        fn verdict(&self, now: Timestamp, conv: u64, agent: AgentId) -> Verdict {
            let w = self.waiting(now, conv);
            w.agents.into_iter().find(|v| v.agent == agent).expect("agent listed").verdict
        }
    }

    fn cannot(r: Refusal) -> Verdict {
        Verdict::CannotTake(r)
    }

    #[test]
    fn offline_and_not_online_agents_are_named_with_their_status() {
        let mut f = F::new(GroupPolicy::default());
        f.agent(A1, 1, &[G1], AgentStatus::Offline);
        f.agent(A2, 1, &[G1], AgentStatus::Away);
        f.route(t(1), 1, None);
        let w = f.waiting(t(2), 1);
        assert_eq!((w.group, w.position, w.steps_reached), (G1, Some(1), 0));
        assert_eq!(f.verdict(t(2), 1, A1), cannot(Refusal::Offline));
        assert_eq!(f.verdict(t(2), 1, A2), cannot(Refusal::NotOnline(AgentStatus::Away)));
    }

    #[test]
    fn a_full_agent_shows_its_load_and_the_held_one_its_decision() {
        let mut f = F::new(GroupPolicy::default());
        f.agent(A1, 1, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        f.route(t(2), 2, None);
        assert_eq!(f.waiting(t(3), 2).position, Some(1));
        assert_eq!(f.verdict(t(3), 2, A1), cannot(Refusal::AtCapacity { load: 1, capacity: 1 }));
        let h = f.held(1);
        assert_eq!((h.agent, h.group, h.offer_expires), (A1, G1, None));
        let d = h.decision.unwrap();
        assert_eq!(d.basis, Basis::Strategy(Strategy::LeastOccupied));
        assert_eq!((d.chosen.load, d.chosen.capacity, d.runner_up), (0, 1, None));
        assert_eq!(d.tie_break, Some(TieBreak::OnlyCandidate));
        // Ending it hands the next one over: a freed agent with no one else to compare.
        f.r.remove(t(4), c(1), &mut f.out);
        let d = f.held(2).decision.unwrap();
        assert_eq!((d.basis, d.at, d.tie_break), (Basis::FreedAgent, t(4), None));
        assert!(f.r.decision(c(1)).is_none(), "records go with the conversation");
    }

    #[test]
    fn a_wrap_up_shows_until_when_it_holds_the_slot() {
        let wrap_up = Some(WrapUp { duration: secs(30), can_end_early: true });
        let mut f = F::new(GroupPolicy { wrap_up, ..Default::default() });
        f.agent(A1, 1, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        f.r.remove(t(2), c(1), &mut f.out);
        f.route(t(3), 2, None);
        let why = Refusal::WrappingUp { load: 1, capacity: 1, until: t(32) };
        assert_eq!(f.verdict(t(4), 2, A1), cannot(why));
        let a = f.r.explain_agent(t(4), A1).unwrap();
        assert_eq!(a.refusal, Some(why));
        assert_eq!(a.wrap_ups, vec![(c(1), t(32))]);
        assert_eq!(a.waiting, vec![(c(2), cannot(why))]);
    }

    #[test]
    fn a_declined_conversation_and_an_offer_are_explained() {
        let offer = OfferMode::Offer { timeout: secs(30) };
        let mut f = F::new(GroupPolicy { offer, ..Default::default() });
        f.agent(A1, 2, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        assert_eq!(f.held(1).offer_expires, Some(t(31)));
        f.r.decline(t(2), A1, c(1), &mut f.out).unwrap();
        assert_eq!(f.verdict(t(3), 1, A1), cannot(Refusal::Declined));
        let a = f.r.explain_agent(t(3), A1).unwrap();
        assert_eq!((a.refusal, a.waiting_total), (None, 1));
        // Accepting keeps the offer's record.
        f.route(t(4), 2, None);
        f.r.accept(t(5), A1, c(2), &mut f.out).unwrap();
        assert_eq!(f.held(2).decision.unwrap().at, t(4));
        // Picking the declined one records the pick.
        f.r.pick(t(6), A1, c(1), &mut f.out).unwrap();
        assert_eq!(f.held(1).decision.unwrap().basis, Basis::Picked);
        f.agent(A2, 1, &[G2], AgentStatus::Online);
        f.r.transfer_to_agent(t(7), c(1), A2, &mut f.out).unwrap();
        assert_eq!(f.held(1).decision.unwrap().basis, Basis::Transferred);
        f.r.check_invariants().unwrap();
    }

    #[test]
    fn a_pulling_group_and_a_pinned_conversation_are_explained() {
        let mut f = F::new(GroupPolicy { offer: OfferMode::Pull, ..Default::default() });
        f.agent(A1, 1, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        assert_eq!(f.verdict(t(2), 1, A1), cannot(Refusal::GroupPulls(G1)));

        let mut f = F::new(GroupPolicy { dedicated_timeout: secs(60), ..Default::default() });
        f.agent(A1, 1, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        f.agent(A2, 1, &[G1], AgentStatus::Online);
        f.route(t(2), 2, Some(A1));
        let w = f.waiting(t(3), 2);
        assert_eq!(w.pin.map(|p| (p.agent, p.kind)), Some((A1, PinKind::Dedicated)));
        assert_eq!(f.verdict(t(3), 2, A2), cannot(Refusal::WaitsForAgent(A1)));
        assert_eq!(f.verdict(t(3), 2, A1), cannot(Refusal::AtCapacity { load: 1, capacity: 1 }));
        f.r.remove(t(4), c(1), &mut f.out);
        assert_eq!(f.held(2).decision.unwrap().basis, Basis::Affinity(PinKind::Dedicated));
    }

    #[test]
    fn a_later_step_names_when_it_admits_an_agent() {
        let steps = vec![Step { after: secs(60), group: G2, min_level: None }];
        let mut f = F::new(GroupPolicy { steps, ..Default::default() });
        f.agent(A1, 1, &[G1], AgentStatus::Offline);
        f.agent(A2, 1, &[G2], AgentStatus::Online);
        f.route(t(1), 1, None);
        let w = f.waiting(t(2), 1);
        assert_eq!(w.next_step, Some(NextStep { at: t(61), group: G2, min_level: None }));
        assert_eq!(f.verdict(t(2), 1, A2), cannot(Refusal::NotAdmitted { from: Some(t(61)) }));
        f.r.advance(t(61), &mut f.out);
        let d = f.held(1).decision.unwrap();
        assert_eq!((d.group, d.basis), (G2, Basis::Strategy(Strategy::LeastOccupied)));
    }

    #[test]
    fn the_tie_break_names_the_figure_that_decided() {
        let mut f = F::new(GroupPolicy::default());
        f.agent(A1, 2, &[G1], AgentStatus::Online);
        f.agent(A2, 2, &[G1], AgentStatus::Online);
        f.route(t(1), 1, None);
        let d = f.held(1).decision.unwrap();
        assert_eq!(f.held(1).agent, A1);
        assert_eq!(d.runner_up.map(|r| r.0), Some(A2));
        assert_eq!(d.tie_break, Some(TieBreak::AgentId));
        f.route(t(2), 2, None);
        let d = f.held(2).decision.unwrap();
        assert_eq!((f.held(2).agent, d.tie_break), (A2, Some(TieBreak::Occupancy)));
        assert_eq!(d.runner_up.map(|(a, x)| (a, x.load)), Some((A1, 1)));

        let policy = GroupPolicy { strategy: Strategy::BestProficiency, ..Default::default() };
        let mut f = F::new(policy);
        f.agent(A1, 2, &[G1], AgentStatus::Online);
        f.agent_at(A2, 2, &[G1], AgentStatus::Online, [(G1, 4)].into());
        f.route(t(1), 1, None);
        let d = f.held(1).decision.unwrap();
        assert_eq!((f.held(1).agent, d.chosen.level, d.tie_break), (A2, 4, Some(TieBreak::Level)));

        let policy = GroupPolicy { strategy: Strategy::LongestIdle, ..Default::default() };
        let mut f = F::new(policy);
        f.agent(A1, 2, &[G1], AgentStatus::Online);
        f.agent(A2, 2, &[G1], AgentStatus::Offline);
        f.r.set_status(t(5), A2, AgentStatus::Online, StatusCause::Agent, &mut f.out).unwrap();
        f.route(t(6), 1, None);
        let d = f.held(1).decision.unwrap();
        assert_eq!((f.held(1).agent, d.tie_break), (A1, Some(TieBreak::IdleTime)));
    }

    #[test]
    fn an_idle_agent_with_nothing_waiting_says_so_and_records_survive_a_snapshot() {
        let mut f = F::new(GroupPolicy::default());
        f.agent(A1, 2, &[G1, G2], AgentStatus::Online);
        let a = f.r.explain_agent(t(1), A1).unwrap();
        assert_eq!((a.refusal, a.load, a.capacity, a.waiting_total), (None, 0, 2, 0));
        let loads: Vec<_> = a.groups.iter().map(|g| (g.group, g.waiting, g.pushes)).collect();
        assert_eq!(loads, vec![(G1, 0, true), (G2, 0, true)]);
        assert!(f.r.explain_agent(t(1), AgentId(9)).is_none());
        assert!(f.r.explain_conversation(t(1), c(9)).is_none());
        f.route(t(2), 1, None);
        let bytes = rmp_serde::to_vec(&f.r).unwrap();
        let back: Router = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.decision(c(1)), f.r.decision(c(1)));
        assert!(back.decision(c(1)).is_some());
    }
}
