//! What a router operation means for the rest of the tenant: each [`router::Effect`] becomes
//! a [`Placed`] fact for one conversation's session, an agent note or event, or a status change
//! whose agent's conversations must be looked at again. The [`Engine`](super::Engine) delivers
//! these at once; the router side of the cross-actor protocol ([`crate::mesh`]) sends the facts
//! as messages. Both read them from here, so the causes a transition carries are decided once.

use rustc_hash::FxHashMap;

use super::{Effect, Event, Note};
use crate::conversation::Cause;
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::router::{self, Release, Router, Via};
use crate::session::Placed;

/// One consequence of a router operation, in the order the engine applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A decision about one conversation, for its session.
    Placed(ConversationId, Placed),
    /// An agent note or an event of the router's own.
    Effect(Effect),
    /// An agent's status changed: the offline condition and thresholds of what it holds did.
    Status(AgentId),
}

/// Translates router effects. `cause` names the operation for transitions whose router effect
/// carries none; wherever `routed` lands (queued, offered, assigned), its transition carries
/// `cause` (the operation that first routed it). Offers of conversations `known` denies are
/// dropped (the engine keeps no session for them).
pub(crate) fn steps(
    effects: Vec<router::Effect>,
    cause: Cause,
    routed: Option<ConversationId>,
    known: impl Fn(ConversationId) -> bool,
) -> Vec<Step> {
    let mut released: FxHashMap<ConversationId, Release> = FxHashMap::default();
    // Conversations an overflow rule moved in this operation, to the group they went to.
    let mut overflowed: FxHashMap<ConversationId, GroupId> = FxHashMap::default();
    // Conversations a transfer moved into another group in this operation, to that group.
    let mut entered: FxHashMap<ConversationId, GroupId> = FxHashMap::default();
    let mut out = Vec::with_capacity(effects.len());
    for e in effects {
        match e {
            router::Effect::Queued { conversation, group, pinned_to } => {
                entered.remove(&conversation);
                let cause = if overflowed.remove(&conversation).is_some() {
                    released.remove(&conversation);
                    Cause::Overflowed
                } else {
                    released.remove(&conversation).map_or(cause, release_cause)
                };
                out.push(Step::Placed(conversation, Placed::Queued { group, pinned_to, cause }));
            }
            router::Effect::Offered { conversation, agent, expires } => {
                if !known(conversation) {
                    continue;
                }
                let moved = overflowed.remove(&conversation);
                if let Some(group) = moved.or(entered.remove(&conversation)) {
                    out.push(Step::Placed(conversation, Placed::Moved { group }));
                }
                let cause = if routed == Some(conversation) { cause } else { Cause::Routed };
                out.push(Step::Placed(conversation, Placed::Offered { agent, cause }));
                out.push(Step::Effect(Effect::Notify {
                    agent,
                    note: Note::Offered { conversation, expires },
                }));
                out.push(Step::Effect(Effect::Event(Event::Offered { conversation, agent })));
            }
            router::Effect::Assigned { conversation, agent, via } => {
                released.remove(&conversation);
                let moved = overflowed.remove(&conversation);
                if let Some(group) = moved.or(entered.remove(&conversation)) {
                    out.push(Step::Placed(conversation, Placed::Moved { group }));
                }
                let cause = (routed == Some(conversation) && via == Via::Auto).then_some(cause);
                out.push(Step::Placed(conversation, Placed::Assigned { agent, via, cause }));
            }
            router::Effect::Released { conversation, agent, reason, was_assigned } => {
                released.insert(conversation, reason);
                out.push(Step::Effect(Effect::Notify {
                    agent,
                    note: Note::Released { conversation, reason },
                }));
                if !was_assigned && matches!(reason, Release::Declined | Release::TimedOut) {
                    out.push(Step::Effect(Effect::Event(Event::OfferMissed {
                        conversation,
                        agent,
                        reason,
                    })));
                }
            }
            router::Effect::StatusChanged { agent, from, to, cause } => {
                out.push(Step::Effect(Effect::Notify {
                    agent,
                    note: Note::StatusChanged { status: to, cause },
                }));
                out.push(Step::Effect(Effect::Event(Event::AgentStatusChanged {
                    agent,
                    from,
                    to,
                    cause,
                })));
                out.push(Step::Status(agent));
            }
            // A wrap-up holds an agent's slot after its conversation ended; the agent's
            // resource shows it (`Router::agent`), and the conversation has no state left.
            router::Effect::WrappingUp { .. } | router::Effect::WrapUpEnded { .. } => {}
            // Overflow (`router/overflow.rs`): its next queue entry carries the cause; a
            // refusal ends it.
            router::Effect::Entered { conversation, group } => {
                entered.insert(conversation, group);
            }
            router::Effect::Overflowed { conversation, to, .. } => {
                overflowed.insert(conversation, to);
            }
            router::Effect::Refused { conversation, group } => {
                overflowed.remove(&conversation);
                out.push(Step::Placed(conversation, Placed::Refused { group }));
            }
            // Business hours (`router/hours.rs`): the `closed` reply, and for `Closed` the end.
            router::Effect::OutsideHours { conversation, group } => {
                out.push(Step::Placed(conversation, Placed::OutsideHours { group }));
            }
            router::Effect::Closed { conversation, group } => {
                overflowed.remove(&conversation);
                out.push(Step::Placed(conversation, Placed::Closed { group }));
            }
        }
    }
    out
}

/// The unreplied alert (SPEC §4): to the agent holding the conversation, else to every member
/// of its group.
pub(crate) fn alert(
    router: &Router,
    conversation: ConversationId,
    agent: Option<AgentId>,
    group: GroupId,
    out: &mut Vec<Effect>,
) {
    let notify: Vec<_> = match agent {
        Some(a) => vec![a],
        None => router.group_members(group).collect(),
    };
    for &a in &notify {
        out.push(Effect::Notify { agent: a, note: Note::UnrepliedAlert { conversation } });
    }
    out.push(Effect::Event(Event::UnrepliedAlert { conversation, notify }));
}

fn release_cause(r: Release) -> Cause {
    match r {
        Release::Declined => Cause::Declined,
        Release::TimedOut => Cause::OfferTimedOut,
        Release::AgentOffline => Cause::AgentOffline,
        Release::Transferred | Release::Ended => Cause::Transferred,
    }
}
