//! Tenants, groups, agents, customers and quick replies as the API shows them: settings from
//! the engine, live figures from its router, and the data the node keeps beside it.
//!
//! Groups, agents and customers refer to each other by id (as the Put requests take them);
//! group members are agent resource names, conversations are always resource names.

use switchboard_core::config::AgentSettings;
use switchboard_core::login::FirstLogin;
use switchboard_core::{AgentId, AgentStatus, CustomerId, GroupId, Timestamp};
use switchboard_proto::v1 as pb;

use super::settings::{reply_settings_to_pb, routing_policy_to_pb, tenant_settings_to_pb};
use super::{status_to_pb, timestamp};
use crate::apply::Names;
use crate::error::{Error, Result};
use crate::names;
use crate::state::TenantState;

/// Most quick replies one list (shared, or one agent's personal) may hold.
pub const MAX_QUICK_REPLIES: usize = 200;
/// Longest quick-reply title, in bytes.
pub const MAX_QUICK_REPLY_TITLE: usize = 64;
/// Longest quick-reply text, in bytes.
pub const MAX_QUICK_REPLY_TEXT: usize = 4096;

pub fn tenant(state: &TenantState) -> pb::Tenant {
    pb::Tenant {
        name: names::tenant_name(&state.id),
        display_name: state.display_name.clone(),
        settings: Some(tenant_settings_to_pb(state, state.engine.settings())),
        created_at: Some(timestamp(state.created_at)),
        routing: if state.actor_routing {
            pb::TenantRouting::Actors
        } else {
            pb::TenantRouting::TenantActor
        } as i32,
    }
}

pub fn group(state: &TenantState, g: GroupId) -> pb::Group {
    let settings = state.engine.group_settings(g);
    let router = state.engine.router();
    let mut members: Vec<String> = router.group_members(g).map(|a| state.agent_name(a)).collect();
    members.sort();
    pb::Group {
        name: state.group_name(g),
        display_name: state.group_names.get(&g).cloned().unwrap_or_default(),
        policy: settings.map(|s| {
            let mut p = routing_policy_to_pb(&s.policy);
            p.steps = s
                .policy
                .steps
                .iter()
                .map(|step| pb::RoutingStep {
                    after: Some(super::duration(step.after)),
                    // A step of the group itself only lowers the level.
                    group: if step.group == g {
                        String::new()
                    } else {
                        state.group_name(step.group)
                    },
                    min_level: step.min_level.map(u32::from),
                })
                .collect();
            p.overflow = s.policy.overflow.map(|o| pb::RoutingOverflow {
                max_waiting: o.max_waiting,
                max_wait: o.max_wait.map(super::duration),
                group: o.group.map(|g| state.group_name(g)).unwrap_or_default(),
            });
            p
        }),
        replies: settings.map(|s| reply_settings_to_pb(&s.replies)),
        waiting: router.queue_len(g) as u64,
        members,
    }
}

/// An agent with its live status and load. `first_login_today` is the stored first sign-in
/// of the day it happened; reads that know today's date use [`agent_on`].
pub fn agent(state: &TenantState, a: AgentId) -> pb::Agent {
    let extra = state.agent_extra.get(&a);
    let (settings, live) = (state.engine.agent_settings(a), state.engine.router().agent(a));
    pb::Agent {
        supervisor: extra.is_some_and(|x| x.supervisor),
        first_login_today: extra.and_then(|x| x.first_login).map(|f| timestamp(f.at)),
        ..agent_named(state, a, settings, live)
    }
}

/// [`agent`] from its parts: names from `names` (the tenant actor's state, or a mesh's
/// configuration), the agent's settings and the router's live view of it. Neither
/// `supervisor` nor `first_login_today` is set (the node keeps them beside the engine).
pub fn agent_named(
    names: &dyn Names,
    a: AgentId,
    settings: Option<&AgentSettings>,
    live: Option<&switchboard_core::router::Agent>,
) -> pb::Agent {
    pb::Agent {
        name: names.agent_name(a),
        nickname: settings.map(|s| s.nickname.clone()).unwrap_or_default(),
        capacity: settings.map_or(0, |s| s.capacity),
        groups: settings
            .map(|s| s.groups.iter().map(|g| names.group_name(*g)).collect())
            .unwrap_or_default(),
        replies: settings.map(|s| reply_settings_to_pb(&s.replies)),
        supervisor: false,
        status: status_to_pb(live.map_or(AgentStatus::Offline, |x| x.status)) as i32,
        load: live.map_or(0, |x| x.load()),
        first_login_today: None,
        wrap_ups: live.map(|x| wrap_ups(names, x)).unwrap_or_default(),
        proficiencies: settings
            .map(|s| {
                s.proficiency
                    .iter()
                    .map(|(g, level)| pb::Proficiency {
                        group: names.group_name(*g),
                        level: u32::from(*level),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// An agent's wrap-ups, soonest end first.
fn wrap_ups(names: &dyn Names, a: &switchboard_core::router::Agent) -> Vec<pb::AgentWrapUp> {
    let mut wraps: Vec<_> = a.wrapping.iter().collect();
    wraps.sort_by_key(|(c, w)| (w.until, **c));
    wraps
        .into_iter()
        .map(|(c, w)| pb::AgentWrapUp {
            conversation: names.conversation_name(*c),
            end_time: Some(timestamp(w.until)),
            can_end_early: w.can_end_early,
        })
        .collect()
}

/// [`agent`] as seen at `now`: a first sign-in from an earlier day (in the tenant's time
/// zone) is not today's.
pub fn agent_on(state: &TenantState, a: AgentId, now: Timestamp) -> pb::Agent {
    let kept = state.agent_extra.get(&a).and_then(|x| x.first_login);
    let zone = &state.engine.settings().time_zone;
    pb::Agent { first_login_today: first_login_today(zone, kept, now), ..agent(state, a) }
}

/// `first_login_today` as seen at `now`: the kept first sign-in if it is of today in `zone`
/// (the tenant's time zone), else none (`switchboard_core::login`'s rule, for both paths).
pub fn first_login_today(
    zone: &str,
    kept: Option<FirstLogin>,
    now: Timestamp,
) -> Option<prost_types::Timestamp> {
    FirstLogin::today(kept, crate::calendar::day(zone, now)).map(timestamp)
}

pub fn customer(state: &TenantState, u: CustomerId) -> pb::Customer {
    let id = state.customers.name(u.0);
    customer_view(state, id, state.engine.customer(u), state.profiles.get(&u))
}

/// A customer in memory or out of the store (`id`: its caller-chosen id).
pub fn customer_view(
    state: &TenantState,
    id: &str,
    c: Option<&switchboard_core::engine::Customer>,
    profile: Option<&crate::state::Profile>,
) -> pb::Customer {
    customer_named(state, &state.id, id, c, profile)
}

/// A customer as the API shows it, with the names of whoever holds it (the tenant actor's
/// state, a mesh's configuration): `tenant` and `id` name it, `c` is its routing record and
/// `profile` its contact data.
pub fn customer_named(
    names: &dyn crate::apply::Names,
    tenant: &str,
    id: &str,
    c: Option<&switchboard_core::engine::Customer>,
    profile: Option<&crate::state::Profile>,
) -> pb::Customer {
    let settings = c.map(|c| &c.settings);
    // An agent deleted since keeps no name; show nothing rather than a dangling one.
    let agent_name = |a: Option<AgentId>| a.map(|a| names.agent_name(a)).unwrap_or_default();
    pb::Customer {
        name: crate::names::child_name(tenant, "customers", id),
        nickname: settings.and_then(|s| s.nickname.clone()).unwrap_or_default(),
        priority: settings.map_or(0, |s| u32::from(s.priority)),
        group: settings.and_then(|s| s.group).map(|g| names.group_name(g)).unwrap_or_default(),
        dedicated_agent: agent_name(settings.and_then(|s| s.dedicated_agent)),
        last_agent: agent_name(c.and_then(|c| c.last_agent)),
        remark_name: profile.map(|p| p.remark_name.clone()).unwrap_or_default(),
        phone: profile.map(|p| p.phone.clone()).unwrap_or_default(),
        email: profile.map(|p| p.email.clone()).unwrap_or_default(),
        tags: profile.map(|p| p.tags.clone()).unwrap_or_default(),
        customer_groups: profile.map(|p| p.customer_groups.clone()).unwrap_or_default(),
        language: profile.map(|p| p.language.clone()).unwrap_or_default(),
        open_conversation: c
            .and_then(|c| c.open)
            .map(|id| names.conversation_name(id))
            .unwrap_or_default(),
    }
}

/// The shared quick replies, plus `agent`'s personal ones when given.
pub fn quick_replies(state: &TenantState, agent: Option<AgentId>) -> pb::QuickReplies {
    let list = |v: &[(String, String)]| {
        v.iter()
            .map(|(title, text)| pb::QuickReply { title: title.clone(), text: text.clone() })
            .collect()
    };
    pb::QuickReplies {
        shared: list(&state.shared_quick_replies),
        personal: agent
            .and_then(|a| state.agent_extra.get(&a))
            .map(|x| list(&x.quick_replies))
            .unwrap_or_default(),
    }
}

/// Checks a quick-reply list from a request; `field` names the list (`replies`).
pub fn check_quick_replies(
    field: &str,
    replies: &[pb::QuickReply],
) -> Result<Vec<(String, String)>> {
    if replies.len() > MAX_QUICK_REPLIES {
        return Err(Error::field(
            field,
            format!("at most {MAX_QUICK_REPLIES} quick replies, got {}", replies.len()),
        ));
    }
    for (i, r) in replies.iter().enumerate() {
        if r.title.len() > MAX_QUICK_REPLY_TITLE {
            return Err(Error::field(
                &format!("{field}[{i}].title"),
                format!("{} bytes; the limit is {MAX_QUICK_REPLY_TITLE}", r.title.len()),
            ));
        }
        if r.text.trim().is_empty() {
            return Err(Error::field(&format!("{field}[{i}].text"), "the text is empty"));
        }
        if r.text.len() > MAX_QUICK_REPLY_TEXT {
            return Err(Error::field(
                &format!("{field}[{i}].text"),
                format!("{} bytes; the limit is {MAX_QUICK_REPLY_TEXT}", r.text.len()),
            ));
        }
    }
    Ok(replies.iter().map(|r| (r.title.clone(), r.text.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_replies_are_bounded() {
        let r = |title: &str, text: &str| pb::QuickReply { title: title.into(), text: text.into() };
        assert_eq!(
            check_quick_replies("replies", &[r("hi", "Hello!")]).unwrap(),
            vec![("hi".to_owned(), "Hello!".to_owned())]
        );
        let e = check_quick_replies("replies", &[r("ok", "x"), r("", " ")]).unwrap_err();
        assert!(e.to_string().starts_with("replies[1].text:"), "{e}");
        let e = check_quick_replies("replies", &[r(&"t".repeat(65), "x")]).unwrap_err();
        assert!(e.to_string().starts_with("replies[0].title:"), "{e}");
        let e = check_quick_replies("replies", &[r("t", &"x".repeat(4097))]).unwrap_err();
        assert!(e.to_string().starts_with("replies[0].text:"), "{e}");
        let many = vec![r("t", "x"); 201];
        assert!(check_quick_replies("replies", &many).is_err());
    }
}
