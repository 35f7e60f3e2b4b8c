//! Administrator commands: the tenant, skill groups, agents, customers, shared quick replies.
//!
//! Each handler checks every field first and mutates only after the engine accepted the
//! change: a refusal is not logged, so anything it touched would differ after a replay. Ids
//! are interned only once the engine holds the new group or agent (`Ids::peek` gives the
//! number it will get).

use switchboard_core::config::{AgentSettings, CustomerSettings, GroupSettings};
use switchboard_core::{AgentId, CustomerId, Engine, GroupId, Timestamp};
use switchboard_proto::internal::v1::response;
use switchboard_proto::v1 as pb;

use super::{Output, emit};
use crate::convert::mask::{Mask, REPLY_KINDS, known_paths, merge_fields, updated_replies};
use crate::convert::{resources, settings};
use crate::error::{Error, Result};
use crate::names;
use crate::state::TenantState;

/// Longest display name of a tenant or group, and longest customer nickname, in bytes.
const MAX_DISPLAY_NAME: usize = 256;
/// Longest agent nickname, in bytes (it is shown to customers as `{{staff_name}}`).
const MAX_NICKNAME: usize = 64;
/// Customer groups one customer may be in, and the longest name of one.
const MAX_CUSTOMER_GROUPS: usize = 50;
const MAX_CUSTOMER_GROUP: usize = 64;
/// Longest language tag (BCP 47 tags stay well below this).
const MAX_LANGUAGE: usize = 35;

fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::field(field, format!("{} bytes; the limit is {max}", value.len())));
    }
    Ok(())
}

/// `tenants/{t}` naming this tenant.
fn check_tenant(state: &TenantState, field: &str, name: &str) -> Result<()> {
    if names::tenant(field, name)? != state.id {
        return Err(Error::field(field, format!("{name:?} is not tenant {}", state.id)));
    }
    Ok(())
}

/// `tenants/{t}/{kind}/{id}` within this tenant → id.
fn child_id(state: &TenantState, field: &str, name: &str, kind: &str) -> Result<String> {
    names::child_in(field, name, kind, &state.id)
}

/// `state` is a fresh `TenantState`. Groups do not exist yet, so the settings may not name
/// any: set `default_group` and channel groups with UpdateTenant after PutGroup.
pub(super) fn create_tenant(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::CreateTenantRequest,
    out: &mut Output,
) -> Result<response::Result> {
    if !state.id.is_empty() {
        return Err(Error::AlreadyExists(format!("tenant {}", state.id)));
    }
    names::check_id("tenant_id", &r.tenant_id)?;
    check_len("display_name", &r.display_name, MAX_DISPLAY_NAME)?;
    let pb_settings = r.settings.clone().unwrap_or_default();
    let no_groups_yet = "no skill group exists before the tenant does: create the tenant without \
                         it, PutGroup, then set it with UpdateTenant";
    if !pb_settings.default_group.is_empty() {
        return Err(Error::field("settings.default_group", no_groups_yet));
    }
    if let Some(i) = pb_settings.channels.iter().position(|c| !c.group.is_empty()) {
        return Err(Error::field(&format!("settings.channels[{i}].group"), no_groups_yet));
    }
    let actor_routing = match pb::TenantRouting::try_from(r.routing) {
        Ok(pb::TenantRouting::Unspecified | pb::TenantRouting::TenantActor) => false,
        Ok(pb::TenantRouting::Actors) => true,
        Err(_) => {
            return Err(Error::field(
                "routing",
                format!("{} is not a TenantRouting: use TENANT_ACTOR or ACTORS", r.routing),
            ));
        }
    };
    let engine = Engine::new(settings::tenant_settings(state, &pb_settings)?)?;
    state.id = r.tenant_id.clone();
    state.actor_routing = actor_routing;
    state.display_name = r.display_name.clone();
    state.created_at = now;
    state.engine = engine;
    // No group exists yet: nothing to place, only the table to keep.
    let offsets = crate::calendar::offsets(&state.engine.settings().time_zone, now);
    state.engine.set_calendar(now, offsets);
    // Written with the creation, so every node reads the mode without loading the tenant.
    out.actors.push(crate::actors::routing::row(actor_routing));
    Ok(response::Result::Tenant(resources::tenant(state)))
}

/// Updates the display name and settings under the request's field mask (without one: the
/// display name when not empty, all the settings when given).
pub(super) fn update_tenant(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::UpdateTenantRequest,
    out: &mut Output,
) -> Result<response::Result> {
    check_tenant(state, "name", &r.name)?;
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(&["display_name", "settings"], &[("settings", TENANT_SETTINGS)]),
        &[("display_name", !r.display_name.is_empty()), ("settings", r.settings.is_some())],
    )?;
    check_len("display_name", &r.display_name, MAX_DISPLAY_NAME)?;
    if mask.touches("settings") {
        let mut merged = settings::tenant_settings_to_pb(state, state.engine.settings());
        let new = r.settings.clone().unwrap_or_default();
        merge_fields!(
            mask,
            "settings.",
            merged,
            new,
            [
                transfer_to_human,
                replies,
                channels,
                keywords,
                message_received,
                open_service,
                human_reserve,
                unreplied_alert,
                retention_unaccepted,
                retention_accepted,
                offline_grace,
                not_responding_after,
                not_responding_status,
                rating_credit,
                default_group,
                customer_group_priorities,
                time_zone,
                hours,
            ]
        );
        let s = settings::tenant_settings(state, &merged)?;
        state.engine.set_settings(s)?;
        // Business hours: the zone's offsets from this command's time (so replaying the log
        // rebuilds the same table), every group's open state again.
        let offsets = crate::calendar::offsets(&state.engine.settings().time_zone, now);
        let effects = state.engine.set_calendar(now, offsets);
        emit(state, now, effects, out);
    }
    if mask.covers("display_name") {
        state.display_name = r.display_name.clone();
    }
    Ok(response::Result::Tenant(resources::tenant(state)))
}

/// The fields of `TenantSettings`, as paths under `settings`.
const TENANT_SETTINGS: &[&str] = &[
    "transfer_to_human",
    "replies",
    "channels",
    "keywords",
    "message_received",
    "open_service",
    "human_reserve",
    "unreplied_alert",
    "retention_unaccepted",
    "retention_accepted",
    "offline_grace",
    "not_responding_after",
    "not_responding_status",
    "rating_credit",
    "default_group",
    "customer_group_priorities",
    "time_zone",
    "hours",
];

/// The fields of `RoutingPolicy`, as paths under `policy`.
const POLICY_FIELDS: &[&str] = &[
    "strategy",
    "offer_mode",
    "offer_timeout",
    "dedicated_timeout",
    "last_agent_timeout",
    "last_agent_preference",
    "wrap_up",
    "wrap_up_can_end_early",
    "priority_aging",
    "min_level",
    // Not in the merge list below: steps and overflow name groups, resolved by
    // `routing_steps` and `routing_overflow`.
    "steps",
    "overflow",
    "hours",
    "when_closed",
];

/// Creates or updates a group under the request's field mask (fields it leaves out keep
/// their values, or their defaults on creation).
pub(super) fn put_group(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::PutGroupRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let id = child_id(state, "name", &r.name, "groups")?;
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(
            &["display_name", "policy", "replies"],
            &[("policy", POLICY_FIELDS), ("replies", REPLY_KINDS)],
        ),
        &[
            ("display_name", !r.display_name.is_empty()),
            ("policy", r.policy.is_some()),
            ("replies", r.replies.is_some()),
        ],
    )?;
    let g = GroupId(state.groups.peek(&id));
    let current = state.group("name", &id).ok().and_then(|g| state.engine.group_settings(g));
    let display_name = if mask.covers("display_name") {
        r.display_name.clone()
    } else {
        state.group_names.get(&g).cloned().unwrap_or_default()
    };
    check_len("display_name", &display_name, MAX_DISPLAY_NAME)?;
    let policy = match current {
        _ if mask.covers("policy") => settings::routing_policy("policy", r.policy.as_ref())?,
        Some(c) if !mask.touches("policy") => c.policy.clone(),
        None if !mask.touches("policy") => settings::routing_policy("policy", None)?,
        _ => {
            // Some fields of the policy: over the current one (or the defaults).
            let base = match current {
                Some(c) => c.policy.clone(),
                None => settings::routing_policy("policy", None)?,
            };
            let mut merged = settings::routing_policy_to_pb(&base);
            let new = r.policy.clone().unwrap_or_default();
            merge_fields!(
                mask,
                "policy.",
                merged,
                new,
                [
                    strategy,
                    offer_mode,
                    offer_timeout,
                    dedicated_timeout,
                    last_agent_timeout,
                    last_agent_preference,
                    wrap_up,
                    wrap_up_can_end_early,
                    priority_aging,
                    min_level,
                    hours,
                    when_closed,
                ]
            );
            settings::routing_policy("policy", Some(&merged))?
        }
    };
    let mut policy = policy;
    policy.steps = if mask.covers("policy.steps") {
        let steps = r.policy.as_ref().map_or(&[][..], |p| &p.steps[..]);
        routing_steps(state, g, steps)?
    } else {
        current.map(|c| c.policy.steps.clone()).unwrap_or_default()
    };
    policy.overflow = if mask.covers("policy.overflow") {
        let o = r.policy.as_ref().and_then(|p| p.overflow.as_ref());
        o.map(|o| routing_overflow(state, g, &r.name, o)).transpose()?
    } else {
        current.and_then(|c| c.policy.overflow)
    };
    let replies =
        updated_replies(&mask, "replies", current.map(|c| &c.replies), r.replies.as_ref())?;
    let group_settings = GroupSettings { name: display_name.clone(), policy, replies };
    let effects = state.engine.upsert_group(now, g, group_settings)?;
    state.groups.intern(&id);
    state.group_names.insert(g, display_name);
    emit(state, now, effects, out);
    Ok(response::Result::Group(resources::group(state, g)))
}

/// Refused while anything still leads to the group: members and waiting conversations (the
/// engine checks those), the tenant's default and channel groups, customers routed to it.
pub(super) fn delete_group(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::DeleteGroupRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let id = child_id(state, "name", &r.name, "groups")?;
    let g = state.group("name", &id)?;
    let s = state.engine.settings();
    if s.default_group == Some(g) {
        return Err(Error::FailedPrecondition(format!(
            "skill group {id:?} is the tenant's default group; name another with UpdateTenant first"
        )));
    }
    if let Some(c) = s.channel_groups.iter().find_map(|(c, cg)| (*cg == g).then_some(*c)) {
        return Err(Error::FailedPrecondition(format!(
            "skill group {id:?} is the group of channel {}; change it with UpdateTenant first",
            c.as_str()
        )));
    }
    let routed_here = state.customers.names_after("").find(|(_, u)| {
        state.engine.customer(CustomerId(*u)).is_some_and(|c| c.settings.group == Some(g))
    });
    if let Some((name, _)) = routed_here {
        return Err(Error::FailedPrecondition(format!(
            "customer {name:?} is routed to skill group {id:?}; change it with PutCustomer first"
        )));
    }
    state.engine.remove_group(g)?;
    state.groups.remove(&id);
    state.group_names.remove(&g);
    Ok(response::Result::Empty(Default::default()))
}

/// Creates or updates an agent under the request's field mask (fields it leaves out keep
/// their values, or their defaults on creation).
pub(super) fn put_agent(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::PutAgentRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let id = child_id(state, "name", &r.name, "agents")?;
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(
            &["nickname", "capacity", "groups", "replies", "supervisor", "proficiencies"],
            &[("replies", REPLY_KINDS)],
        ),
        &[
            ("nickname", !r.nickname.is_empty()),
            ("capacity", r.capacity != 0),
            ("groups", !r.groups.is_empty()),
            ("replies", r.replies.is_some()),
            ("supervisor", r.supervisor),
            ("proficiencies", !r.proficiencies.is_empty()),
        ],
    )?;
    let known = state.agent("name", &id).ok();
    let current = known.and_then(|a| state.engine.agent_settings(a));
    let mut m = match known {
        Some(a) => {
            let view = resources::agent(state, a);
            pb::PutAgentRequest {
                nickname: view.nickname,
                capacity: view.capacity,
                groups: view.groups,
                supervisor: view.supervisor,
                proficiencies: view.proficiencies,
                ..Default::default()
            }
        }
        None => pb::PutAgentRequest::default(),
    };
    merge_fields!(mask, "", m, r, [nickname, capacity, groups, supervisor, proficiencies]);
    check_len("nickname", &m.nickname, MAX_NICKNAME)?;
    let max = switchboard_core::config::MAX_CAPACITY;
    if m.capacity == 0 || m.capacity > max {
        return Err(Error::field(
            "capacity",
            format!("must be 1 to {max}, got {}; set a busy status to stop new work", m.capacity),
        ));
    }
    let mut groups = Vec::with_capacity(m.groups.len());
    for (i, name) in m.groups.iter().enumerate() {
        let g = state.group_ref(&format!("groups[{i}]"), name)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let replies =
        updated_replies(&mask, "replies", current.map(|c| &c.replies), r.replies.as_ref())?;
    // Kept levels follow the groups: those of a group the agent left go with it.
    let given = mask.covers("proficiencies");
    let proficiency = proficiencies(state, &m.proficiencies, &groups, given)?;
    let agent_settings =
        AgentSettings { nickname: m.nickname, capacity: m.capacity, groups, replies, proficiency };
    let a = AgentId(state.agents.peek(&id));
    let before = state.engine.router().agent(a).map(|x| x.groups.clone());
    let effects = state.engine.upsert_agent(now, a, agent_settings)?;
    state.agents.intern(&id);
    state.agent_extra.entry(a).or_default().supervisor = m.supervisor;
    if let Some(before) = before {
        super::unaccepted::regrouped(state, now, a, &before, out);
    }
    emit(state, now, effects, out);
    Ok(response::Result::Agent(resources::agent(state, a)))
}

/// A group's steps, each naming another group of the tenant by resource name (or none, for a
/// step of group `g` that only lowers the level).
fn routing_steps(
    state: &TenantState,
    g: switchboard_core::ids::GroupId,
    steps: &[pb::RoutingStep],
) -> Result<Vec<switchboard_core::config::Step>> {
    let max = switchboard_core::config::MAX_STEPS;
    if steps.len() > max {
        return Err(Error::field(
            "policy.steps",
            format!("at most {max} steps, got {}", steps.len()),
        ));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let field = format!("policy.steps[{i}].min_level");
        let min_level = crate::convert::settings::level(&field, s.min_level)?;
        let group = match (s.group.as_str(), min_level) {
            ("", Some(_)) => g,
            _ => state.group_ref(&format!("policy.steps[{i}].group"), &s.group)?,
        };
        let after = match &s.after {
            Some(d) => crate::convert::from_duration(&format!("policy.steps[{i}].after"), d)?,
            None => {
                return Err(Error::field(
                    &format!("policy.steps[{i}].after"),
                    "give the wait after which the step applies",
                ));
            }
        };
        out.push(switchboard_core::config::Step { after, group, min_level });
    }
    Ok(out)
}

/// A group's overflow rule, its target named by resource name; a chain that would come back
/// to the group (`name`) is refused naming each group on it.
fn routing_overflow(
    state: &TenantState,
    group: GroupId,
    name: &str,
    o: &pb::RoutingOverflow,
) -> Result<switchboard_core::config::Overflow> {
    let max_wait = match &o.max_wait {
        Some(d) => Some(crate::convert::from_duration("policy.overflow.max_wait", d)?),
        None => None,
    };
    let to = if o.group.is_empty() {
        None
    } else {
        Some(state.group_ref("policy.overflow.group", &o.group)?)
    };
    let mut chain = vec![group];
    let mut at = to;
    while let Some(next) = at {
        if chain.contains(&next) {
            if next != group {
                break; // an older loop (never stored): not this request's to name
            }
            let mut names: Vec<String> = chain
                .iter()
                .map(|g| if *g == group { name.to_owned() } else { state.group_name(*g) })
                .collect();
            names.push(name.to_owned());
            return Err(Error::field(
                "policy.overflow.group",
                format!(
                    "the overflow chain loops ({}); end it in a group without overflow or in a refusal (an empty group)",
                    names.join(" → ")
                ),
            ));
        }
        chain.push(next);
        at = state.engine.group_settings(next).and_then(|s| s.policy.overflow?.group);
    }
    Ok(switchboard_core::config::Overflow { max_waiting: o.max_waiting, max_wait, group: to })
}

/// An agent's proficiency levels, each in one of its `groups` (by resource name), 1 to 5.
/// Levels the request did not `give` (kept from before) are dropped for groups the agent
/// left instead of refused.
fn proficiencies(
    state: &TenantState,
    levels: &[pb::Proficiency],
    groups: &[GroupId],
    given: bool,
) -> Result<std::collections::BTreeMap<GroupId, u8>> {
    let (min, max) =
        (switchboard_core::config::MIN_PROFICIENCY, switchboard_core::config::MAX_PROFICIENCY);
    let mut out = std::collections::BTreeMap::new();
    for (i, p) in levels.iter().enumerate() {
        let field = format!("proficiencies[{i}].group");
        let g = state.group_ref(&field, &p.group)?;
        if !groups.contains(&g) && !given {
            continue;
        }
        if !groups.contains(&g) {
            return Err(Error::field(
                &field,
                format!("the agent is not in {}; add it to groups or drop its level", p.group),
            ));
        }
        let level =
            u8::try_from(p.level).ok().filter(|l| (min..=max).contains(l)).ok_or_else(|| {
                Error::field(
                    &format!("proficiencies[{i}].level"),
                    format!("must be {min} to {max}, got {}", p.level),
                )
            })?;
        if out.insert(g, level).is_some() {
            return Err(Error::field(&field, format!("{} is listed twice", p.group)));
        }
    }
    Ok(out)
}

/// Signs the agent out (its conversations go to the front of their groups), forgets it, and
/// releases the customers it was dedicated to so they route to their group instead of
/// waiting for (and getting offline replies on behalf of) someone who no longer exists.
pub(super) fn delete_agent(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::DeleteAgentRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let id = child_id(state, "name", &r.name, "agents")?;
    let a = state.agent("name", &id)?;
    let dedicated: Vec<(CustomerId, CustomerSettings)> = state
        .customers
        .names_after("")
        .filter_map(|(_, u)| {
            let u = CustomerId(u);
            let c = state.engine.customer(u)?;
            (c.settings.dedicated_agent == Some(a))
                .then(|| (u, CustomerSettings { dedicated_agent: None, ..c.settings.clone() }))
        })
        .collect();
    let mut effects = state.engine.remove_agent(now, a)?;
    for (u, s) in dedicated {
        // Cannot fail: the customer's group exists (groups in use are never deleted) and
        // it names no agent any more.
        effects.extend(state.engine.upsert_customer(now, u, s)?);
    }
    // The effects notify the agent's own stream, which is named after it: emit before
    // forgetting the name.
    emit(state, now, effects, out);
    state.agents.remove(&id);
    state.agent_extra.remove(&a);
    Ok(response::Result::Empty(Default::default()))
}

/// Creates or updates what an administrator sets on a customer, under the request's field
/// mask (without one: the fields it populates; the nickname the channel reported is kept
/// when the request leaves it out). Contact data agents edit is untouched.
pub(super) fn put_customer(
    state: &mut TenantState,
    now: Timestamp,
    r: &pb::PutCustomerRequest,
    out: &mut Output,
) -> Result<response::Result> {
    let id = child_id(state, "name", &r.name, "customers")?;
    let u = CustomerId(state.customers.peek(&id));
    let current = state.customers.get(&id).is_some().then(|| resources::customer(state, u));
    let put = customer_put(
        r,
        current,
        |field, name| state.group_ref(field, name),
        |field, name| state.agent_ref(field, name),
    )?;
    let effects = state.engine.upsert_customer(now, u, put.settings.clone())?;
    state.customers.intern(&id);
    let profile = state.profiles.entry(u).or_default();
    put.apply_profile(profile);
    emit(state, now, effects, out);
    Ok(response::Result::Customer(resources::customer(state, u)))
}

/// What PutCustomer leaves on a customer: its settings, and the profile fields it sets.
#[derive(Debug, Clone)]
pub(crate) struct CustomerPut {
    pub settings: CustomerSettings,
    pub language: String,
}

impl CustomerPut {
    /// The profile fields PutCustomer sets (the rest is the agents').
    pub fn apply_profile(self, profile: &mut crate::state::Profile) {
        profile.customer_groups = self.settings.customer_groups;
        profile.language = self.language;
    }
}

/// PutCustomer's rule, on whichever actor holds the customer (the tenant actor, or the
/// customer's conversation actor): `r` merged under its mask into the customer as it is
/// (`current`, its view; `None` for a new one) and checked, every field before anything
/// changes. `group_ref` and `agent_ref` resolve a reference field in the holder's
/// configuration (NOT_FOUND for an unknown one).
pub(crate) fn customer_put(
    r: &pb::PutCustomerRequest,
    current: Option<pb::Customer>,
    group_ref: impl Fn(&str, &str) -> Result<GroupId>,
    agent_ref: impl Fn(&str, &str) -> Result<AgentId>,
) -> Result<CustomerPut> {
    let mask = Mask::parse(
        r.update_mask.as_ref(),
        &known_paths(
            &["nickname", "priority", "group", "dedicated_agent", "customer_groups", "language"],
            &[],
        ),
        &[
            ("nickname", !r.nickname.is_empty()),
            ("priority", r.priority != 0),
            ("group", !r.group.is_empty()),
            ("dedicated_agent", !r.dedicated_agent.is_empty()),
            ("customer_groups", !r.customer_groups.is_empty()),
            ("language", !r.language.is_empty()),
        ],
    )?;
    let mut m = match current {
        Some(view) => pb::PutCustomerRequest {
            nickname: view.nickname,
            priority: view.priority,
            group: view.group,
            dedicated_agent: view.dedicated_agent,
            customer_groups: view.customer_groups,
            language: view.language,
            ..Default::default()
        },
        None => pb::PutCustomerRequest::default(),
    };
    merge_fields!(
        mask,
        "",
        m,
        r,
        [nickname, priority, group, dedicated_agent, customer_groups, language]
    );
    check_len("nickname", &m.nickname, MAX_DISPLAY_NAME)?;
    let priority = u8::try_from(m.priority)
        .map_err(|_| Error::field("priority", format!("must be 0 to 255, got {}", m.priority)))?;
    let group = if m.group.is_empty() { None } else { Some(group_ref("group", &m.group)?) };
    let dedicated_agent = if m.dedicated_agent.is_empty() {
        None
    } else {
        Some(agent_ref("dedicated_agent", &m.dedicated_agent)?)
    };
    if m.customer_groups.len() > MAX_CUSTOMER_GROUPS {
        return Err(Error::field(
            "customer_groups",
            format!("at most {MAX_CUSTOMER_GROUPS}, got {}", m.customer_groups.len()),
        ));
    }
    for (i, g) in m.customer_groups.iter().enumerate() {
        if g.trim().is_empty() || g.len() > MAX_CUSTOMER_GROUP {
            return Err(Error::field(
                &format!("customer_groups[{i}]"),
                format!("must be 1 to {MAX_CUSTOMER_GROUP} bytes"),
            ));
        }
    }
    check_len("language", &m.language, MAX_LANGUAGE)?;
    let nickname = (!m.nickname.is_empty()).then(|| m.nickname.clone());
    Ok(CustomerPut {
        settings: CustomerSettings {
            nickname,
            priority,
            group,
            dedicated_agent,
            customer_groups: m.customer_groups,
        },
        language: m.language,
    })
}

pub(super) fn put_shared_quick_replies(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::PutSharedQuickRepliesRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    check_tenant(state, "tenant", &r.tenant)?;
    state.shared_quick_replies = resources::check_quick_replies("replies", &r.replies)?;
    Ok(response::Result::QuickReplies(resources::quick_replies(state, None)))
}

#[cfg(test)]
pub(super) mod tests {
    use switchboard_proto::internal::v1::{Command, command::Op};

    use super::*;
    use crate::apply::apply;

    pub(in crate::apply) const T: &str = "tenants/acme";

    /// Applies one command at `at_ms`, returning its response variant.
    pub(in crate::apply) fn run(
        state: &mut TenantState,
        at_ms: u64,
        op: Op,
    ) -> Result<(response::Result, Output)> {
        let (response, out) = apply(state, &Command { at_ms, op: Some(op), ..Default::default() })?;
        Ok((response.result.expect("a response"), out))
    }

    /// Runs a command that must be refused, and checks it changed nothing.
    pub(in crate::apply) fn refused(state: &mut TenantState, op: Op) -> Error {
        let before = rmp_serde::to_vec_named(&*state).unwrap();
        let e = run(state, 9_000, op).expect_err("refused");
        assert_eq!(rmp_serde::to_vec_named(&*state).unwrap(), before, "{e} changed the state");
        e
    }

    pub(in crate::apply) fn group_op(id: &str) -> Op {
        Op::PutGroup(pb::PutGroupRequest {
            name: format!("{T}/groups/{id}"),
            display_name: id.to_uppercase(),
            ..Default::default()
        })
    }

    pub(in crate::apply) fn agent_op(id: &str, groups: &[&str], supervisor: bool) -> Op {
        Op::PutAgent(pb::PutAgentRequest {
            name: format!("{T}/agents/{id}"),
            nickname: id.to_uppercase(),
            capacity: 2,
            groups: groups.iter().map(|g| format!("{T}/groups/{g}")).collect(),
            supervisor,
            ..Default::default()
        })
    }

    /// A tenant with group `sales` as its default.
    pub(in crate::apply) fn tenant() -> TenantState {
        let mut state = TenantState::default();
        let create = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            display_name: "Acme".into(),
            ..Default::default()
        };
        run(&mut state, 1_000, Op::CreateTenant(create)).unwrap();
        run(&mut state, 1_000, group_op("sales")).unwrap();
        let settings =
            pb::TenantSettings { default_group: format!("{T}/groups/sales"), ..Default::default() };
        let update = pb::UpdateTenantRequest {
            name: T.into(),
            settings: Some(settings),
            ..Default::default()
        };
        run(&mut state, 1_000, Op::UpdateTenant(update)).unwrap();
        state
    }

    fn field(e: &Error) -> &str {
        match e {
            Error::Field { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn create_tenant_sets_identity_and_default_settings() {
        let mut state = TenantState::default();
        let create = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            display_name: "Acme".into(),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 1_000, Op::CreateTenant(create.clone())).unwrap();
        let response::Result::Tenant(t) = r else { panic!("{r:?}") };
        assert_eq!((t.name.as_str(), t.display_name.as_str()), ("tenants/acme", "Acme"));
        assert_eq!(state.created_at, Timestamp(1_000));
        let s = t.settings.unwrap();
        assert_eq!(s.human_reserve, Some(1));
        assert_eq!(s.not_responding_after, Some(2));
        assert_eq!(s.not_responding_status, pb::AgentStatus::Away as i32);
        assert_eq!(s.offline_grace, Some(prost_types::Duration { seconds: 120, nanos: 0 }));
        // Once created, a second create is refused.
        assert!(matches!(refused(&mut state, Op::CreateTenant(create)), Error::AlreadyExists(_)));
    }

    #[test]
    fn create_tenant_refuses_groups_and_bad_ids() {
        let mut state = TenantState::default();
        let with_group = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            settings: Some(pb::TenantSettings {
                default_group: format!("{T}/groups/sales"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = refused(&mut state, Op::CreateTenant(with_group));
        assert_eq!(field(&e), "settings.default_group");
        let bad_id = pb::CreateTenantRequest { tenant_id: "Acme!".into(), ..Default::default() };
        assert_eq!(field(&refused(&mut state, Op::CreateTenant(bad_id))), "tenant_id");
    }

    #[test]
    fn the_routing_mode_is_chosen_at_creation_and_shown() {
        let mut state = TenantState::default();
        let create = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            routing: pb::TenantRouting::Actors as i32,
            ..Default::default()
        };
        let (r, out) = run(&mut state, 1_000, Op::CreateTenant(create)).unwrap();
        let response::Result::Tenant(t) = r else { panic!("{r:?}") };
        assert_eq!(t.routing, pb::TenantRouting::Actors as i32);
        assert!(state.actor_routing);
        // The row every node reads the mode from, in the creation's batch.
        assert_eq!(out.actors, vec![crate::actors::routing::row(true)]);

        let mut state = TenantState::default();
        let (r, out) = run(
            &mut state,
            1_000,
            Op::CreateTenant(pb::CreateTenantRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            }),
        )
        .unwrap();
        let response::Result::Tenant(t) = r else { panic!("{r:?}") };
        assert_eq!(t.routing, pb::TenantRouting::TenantActor as i32, "unspecified: tenant actor");
        assert!(!state.actor_routing);
        assert_eq!(out.actors, vec![crate::actors::routing::row(false)]);

        // Its conversations are the actors': a call they do not serve yet is refused here
        // (not applied to an empty engine); its configuration is still the tenant actor's.
        let mut actors = TenantState::default();
        let create = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            routing: pb::TenantRouting::Actors as i32,
            ..Default::default()
        };
        run(&mut actors, 1_000, Op::CreateTenant(create)).unwrap();
        run(&mut actors, 2_000, group_op("support")).unwrap();
        let transfer = Op::Transfer(pb::TransferRequest {
            agent: format!("{T}/agents/ann"),
            conversation: format!("{T}/conversations/1"),
            ..Default::default()
        });
        assert!(matches!(refused(&mut actors, transfer), Error::FailedPrecondition(_)));

        let unknown =
            pb::CreateTenantRequest { tenant_id: "acme".into(), routing: 9, ..Default::default() };
        assert_eq!(
            field(&refused(&mut TenantState::default(), Op::CreateTenant(unknown))),
            "routing"
        );
    }

    #[test]
    fn put_group_interns_once_and_replaces() {
        let mut state = tenant();
        let (r, _) = run(&mut state, 2_000, group_op("support")).unwrap();
        let response::Result::Group(g) = r else { panic!("{r:?}") };
        assert_eq!(g.name, "tenants/acme/groups/support");
        assert_eq!(g.display_name, "SUPPORT");
        assert_eq!(
            g.policy.unwrap().last_agent_timeout,
            Some(prost_types::Duration { seconds: 60, nanos: 0 })
        );
        let id = state.groups.get("support").unwrap();
        let renamed = pb::PutGroupRequest {
            name: format!("{T}/groups/support"),
            display_name: "Support desk".into(),
            policy: Some(pb::RoutingPolicy {
                strategy: pb::Strategy::RoundRobin as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        run(&mut state, 3_000, Op::PutGroup(renamed)).unwrap();
        assert_eq!(state.groups.get("support"), Some(id));
        assert_eq!(state.group_names[&GroupId(id)], "Support desk");
    }

    #[test]
    fn proficiency_levels_follow_the_agents_groups() {
        let mut state = tenant();
        run(&mut state, 2_000, group_op("vip")).unwrap();
        let Op::PutAgent(mut put) = agent_op("alice", &["sales", "vip"], false) else {
            unreachable!()
        };
        let level = |g: &str, level| pb::Proficiency { group: format!("{T}/groups/{g}"), level };
        put.proficiencies = vec![level("sales", 2), level("vip", 5)];
        let (r, _) = run(&mut state, 2_000, Op::PutAgent(put.clone())).unwrap();
        let response::Result::Agent(a) = r else { panic!("{r:?}") };
        assert_eq!(a.proficiencies, put.proficiencies);
        let mut twice = put.clone();
        twice.proficiencies.push(level("vip", 1));
        assert_eq!(field(&refused(&mut state, Op::PutAgent(twice))), "proficiencies[2].group");
        // Leaving vip (a mask on groups only) drops its level rather than refusing.
        let leave = pb::PutAgentRequest {
            name: put.name.clone(),
            groups: vec![format!("{T}/groups/sales")],
            update_mask: Some(prost_types::FieldMask { paths: vec!["groups".into()] }),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 3_000, Op::PutAgent(leave)).unwrap();
        let response::Result::Agent(a) = r else { panic!("{r:?}") };
        assert_eq!(a.proficiencies, vec![level("sales", 2)]);
    }

    #[test]
    fn put_agent_checks_fields_then_creates_offline() {
        let mut state = tenant();
        let e = refused(&mut state, agent_op("alice", &["nope"], false));
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        let Op::PutAgent(mut zero) = agent_op("alice", &["sales"], false) else { unreachable!() };
        zero.capacity = 0;
        assert_eq!(field(&refused(&mut state, Op::PutAgent(zero))), "capacity");
        let Op::PutAgent(mut long) = agent_op("alice", &["sales"], false) else { unreachable!() };
        long.nickname = "x".repeat(65);
        assert_eq!(field(&refused(&mut state, Op::PutAgent(long))), "nickname");
        let Op::PutAgent(mut bad) = agent_op("alice", &["sales"], false) else { unreachable!() };
        bad.replies = Some(pb::ReplySettings {
            manual_end: Some(pb::Texts { texts: vec![String::new()] }),
            ..Default::default()
        });
        assert_eq!(field(&refused(&mut state, Op::PutAgent(bad))), "replies.manual_end.texts[0]");

        let (r, _) = run(&mut state, 2_000, agent_op("alice", &["sales", "sales"], true)).unwrap();
        let response::Result::Agent(a) = r else { panic!("{r:?}") };
        assert_eq!(a.groups, vec![format!("{T}/groups/sales")]);
        assert_eq!(a.status, pb::AgentStatus::Offline as i32);
        assert!(a.supervisor);
        let a = AgentId(state.agents.get("alice").unwrap());
        assert!(state.is_supervisor(a));
        let sales = GroupId(state.groups.get("sales").unwrap());
        assert_eq!(resources::group(&state, sales).members, vec!["tenants/acme/agents/alice"]);
    }

    #[test]
    fn update_tenant_sets_replies_channels_and_keeps_the_name() {
        let mut state = tenant();
        run(&mut state, 2_000, group_op("vip")).unwrap();
        let replies = pb::ReplySettings {
            queue: Some(pb::QueueReply {
                rules: vec![pb::QueueRule {
                    above: 10,
                    texts: vec!["You are {{queue_num}}".into()],
                }],
                min_interval: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
            }),
            ..Default::default()
        };
        let settings = pb::TenantSettings {
            default_group: format!("{T}/groups/sales"),
            replies: Some(replies.clone()),
            channels: vec![pb::ChannelSettings {
                channel: pb::Channel::MiniProgram as i32,
                group: format!("{T}/groups/vip"),
                replies: Some(pb::ReplySettings {
                    manual_end: Some(pb::Texts { texts: vec!["bye".into()] }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            human_reserve: Some(2),
            ..Default::default()
        };
        let update = pb::UpdateTenantRequest {
            name: T.into(),
            settings: Some(settings),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 3_000, Op::UpdateTenant(update)).unwrap();
        let response::Result::Tenant(t) = r else { panic!("{r:?}") };
        assert_eq!(t.display_name, "Acme", "an empty display name keeps the old one");
        let s = t.settings.unwrap();
        assert_eq!(s.replies, Some(replies));
        assert_eq!(s.channels[0].group, "tenants/acme/groups/vip");
        assert_eq!(s.human_reserve, Some(2));
        let core = state.engine.settings();
        assert_eq!(
            core.channel_groups[&switchboard_core::Channel::MiniProgram].0,
            state.groups.get("vip").unwrap()
        );
        assert!(core.channel_replies[&switchboard_core::Channel::MiniProgram].manual_end.is_some());

        // Settings left out stay as they are.
        let rename = pb::UpdateTenantRequest {
            name: T.into(),
            display_name: "Acme Inc".into(),
            ..Default::default()
        };
        run(&mut state, 4_000, Op::UpdateTenant(rename)).unwrap();
        assert_eq!(state.display_name, "Acme Inc");
        assert_eq!(state.engine.settings().human_reserve, 2);
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut state = tenant();
        run(&mut state, 2_000, agent_op("alice", &["sales"], false)).unwrap();
        let bad_replies = pb::TenantSettings {
            channels: vec![pb::ChannelSettings {
                channel: pb::Channel::Web as i32,
                replies: Some(pb::ReplySettings {
                    queue: Some(pb::QueueReply {
                        rules: (0..6)
                            .map(|n| pb::QueueRule { above: n, texts: vec!["wait".into()] })
                            .collect(),
                        min_interval: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let update = pb::UpdateTenantRequest {
            name: T.into(),
            settings: Some(bad_replies),
            ..Default::default()
        };
        assert_eq!(
            field(&refused(&mut state, Op::UpdateTenant(update))),
            "settings.channels[0].replies.queue.rules"
        );
        let other_tenant =
            pb::UpdateTenantRequest { name: "tenants/other".into(), ..Default::default() };
        assert_eq!(field(&refused(&mut state, Op::UpdateTenant(other_tenant))), "name");
        // A group whose policy is refused takes no id.
        let bad_group = pb::PutGroupRequest {
            name: format!("{T}/groups/new"),
            policy: Some(pb::RoutingPolicy { offer_mode: 9, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(field(&refused(&mut state, Op::PutGroup(bad_group))), "policy.offer_mode");
        // In use: members, and the tenant's default.
        let delete = |g: &str| {
            Op::DeleteGroup(pb::DeleteGroupRequest {
                name: format!("{T}/groups/{g}"),
                ..Default::default()
            })
        };
        assert!(matches!(refused(&mut state, delete("sales")), Error::FailedPrecondition(_)));
        assert!(matches!(refused(&mut state, delete("none")), Error::NotFound(_)));
        let customer = pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            priority: 256,
            ..Default::default()
        };
        assert_eq!(field(&refused(&mut state, Op::PutCustomer(customer))), "priority");
        let replies = pb::PutSharedQuickRepliesRequest {
            tenant: T.into(),
            replies: vec![pb::QuickReply { title: "t".into(), text: String::new() }],
            ..Default::default()
        };
        assert_eq!(
            field(&refused(&mut state, Op::PutSharedQuickReplies(replies))),
            "replies[0].text"
        );
    }

    #[test]
    fn delete_group_once_nothing_leads_to_it() {
        let mut state = tenant();
        run(&mut state, 2_000, group_op("vip")).unwrap();
        run(&mut state, 2_000, agent_op("alice", &["vip"], false)).unwrap();
        let customer = pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            group: format!("{T}/groups/vip"),
            ..Default::default()
        };
        run(&mut state, 2_000, Op::PutCustomer(customer)).unwrap();
        let delete = Op::DeleteGroup(pb::DeleteGroupRequest {
            name: format!("{T}/groups/vip"),
            ..Default::default()
        });
        let e = refused(&mut state, delete.clone());
        assert!(e.to_string().contains("customer \"u1\""), "{e}");
        // Clearing a field takes a mask naming it.
        let customer = pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            update_mask: Some(prost_types::FieldMask { paths: vec!["group".into()] }),
            ..Default::default()
        };
        run(&mut state, 3_000, Op::PutCustomer(customer)).unwrap();
        let e = refused(&mut state, delete.clone());
        assert!(e.to_string().contains("members"), "{e}");
        let Op::PutAgent(mut alice) = agent_op("alice", &[], false) else { unreachable!() };
        alice.update_mask = Some(prost_types::FieldMask { paths: vec!["groups".into()] });
        run(&mut state, 4_000, Op::PutAgent(alice)).unwrap();
        let vip = GroupId(state.groups.get("vip").unwrap());
        let (r, _) = run(&mut state, 5_000, delete).unwrap();
        assert!(matches!(r, response::Result::Empty(_)));
        assert_eq!(state.groups.get("vip"), None);
        assert!(
            state.engine.group_settings(vip).is_none() && !state.group_names.contains_key(&vip)
        );
    }

    #[test]
    fn customers_and_deleting_their_dedicated_agent() {
        let mut state = tenant();
        run(&mut state, 2_000, agent_op("alice", &["sales"], false)).unwrap();
        let put = pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            nickname: "Lee".into(),
            priority: 7,
            dedicated_agent: format!("{T}/agents/alice"),
            customer_groups: vec!["vip".into()],
            language: "zh-CN".into(),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 3_000, Op::PutCustomer(put)).unwrap();
        let response::Result::Customer(c) = r else { panic!("{r:?}") };
        assert_eq!(
            (c.nickname.as_str(), c.priority, c.dedicated_agent.as_str()),
            ("Lee", 7, "tenants/acme/agents/alice")
        );
        assert_eq!((c.customer_groups, c.language.as_str()), (vec!["vip".to_owned()], "zh-CN"));
        // Fields left out (no mask) keep their values.
        let again = pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            dedicated_agent: format!("{T}/agents/alice"),
            ..Default::default()
        };
        let (r, _) = run(&mut state, 3_500, Op::PutCustomer(again)).unwrap();
        let response::Result::Customer(c) = r else { panic!("{r:?}") };
        assert_eq!((c.nickname.as_str(), c.priority), ("Lee", 7));

        let delete = Op::DeleteAgent(pb::DeleteAgentRequest {
            name: format!("{T}/agents/alice"),
            ..Default::default()
        });
        run(&mut state, 4_000, delete.clone()).unwrap();
        assert_eq!(state.agents.get("alice"), None);
        let u = CustomerId(state.customers.get("u1").unwrap());
        assert_eq!(state.engine.customer(u).unwrap().settings.dedicated_agent, None);
        assert!(matches!(refused(&mut state, delete), Error::NotFound(_)));
    }

    #[test]
    fn shared_quick_replies_replace_the_list() {
        let mut state = tenant();
        let put = pb::PutSharedQuickRepliesRequest {
            tenant: T.into(),
            replies: vec![pb::QuickReply {
                title: "hello".into(),
                text: "Hello, how can I help?".into(),
            }],
            ..Default::default()
        };
        let (r, _) = run(&mut state, 2_000, Op::PutSharedQuickReplies(put)).unwrap();
        let response::Result::QuickReplies(q) = r else { panic!("{r:?}") };
        assert_eq!((q.shared.len(), q.personal.len()), (1, 0));
        assert_eq!(
            state.shared_quick_replies,
            vec![("hello".to_owned(), "Hello, how can I help?".to_owned())]
        );
    }

    /// Business hours in a zone with daylight-saving time: the table of offsets built by the
    /// settings command runs two years ahead; a tick (logged) 1.8 years later builds it again,
    /// so the calendar never runs out while the settings stay untouched.
    #[test]
    fn a_tick_builds_the_zone_table_again_before_it_runs_out() {
        use switchboard_proto::internal::v1::Advance;
        let mut state = tenant();
        let day = |d| pb::WeekdayHours {
            day: d,
            spans: vec![pb::OpenSpan { start: "09:00".into(), end: "17:00".into() }],
        };
        let settings = pb::TenantSettings {
            time_zone: "Europe/Berlin".into(),
            hours: Some(pb::BusinessHours {
                weekly: (1..=7).map(day).collect(),
                exceptions: vec![],
            }),
            ..Default::default()
        };
        let update = pb::UpdateTenantRequest {
            name: T.into(),
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["settings.time_zone".into(), "settings.hours".into()],
            }),
            ..Default::default()
        };
        let start: u64 = 1_800_000_000_000; // 2027-01-15
        run(&mut state, start, Op::UpdateTenant(update)).unwrap();
        let year = 365 * 86_400_000;
        let ends = |s: &TenantState, at| s.engine.router().zone_table_ends_before(Timestamp(at));
        assert!(!ends(&state, start + year));
        assert!(ends(&state, start + 3 * year));
        let later = start + year * 18 / 10;
        run(&mut state, later, Op::Advance(Advance {})).unwrap();
        assert!(!ends(&state, later + year), "built again");
    }
}
