//! Everything a tenant actor holds: the pure routing engine plus the data around it that is
//! not a routing rule (ids, contact fields, tags, quick replies, stream cursors). Serializable
//! as one snapshot; rebuilt by replaying the command log after it.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use switchboard_core::login::FirstLogin;
use switchboard_core::{AgentId, ConversationId, CustomerId, Engine, GroupId, Timestamp};

use crate::error::{Error, Result};

/// Caller-chosen ids of one kind, mapped onto the core's numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ids {
    by_name: BTreeMap<String, u64>,
    by_num: FxHashMap<u64, String>,
    next: u64,
}

impl Ids {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// The number of `name`, allocating one the first time.
    pub fn intern(&mut self, name: &str) -> u64 {
        if let Some(n) = self.by_name.get(name) {
            return *n;
        }
        self.next += 1;
        self.by_name.insert(name.to_owned(), self.next);
        self.by_num.insert(self.next, name.to_owned());
        self.next
    }

    /// The number `name` has or would get, without allocating it (handlers allocate only
    /// once the command has succeeded, so refusals change nothing).
    pub fn peek(&self, name: &str) -> u64 {
        self.get(name).unwrap_or(self.next + 1)
    }

    pub fn name(&self, n: u64) -> &str {
        self.by_num.get(&n).map_or("", String::as_str)
    }

    /// Puts back a name that was removed with its number (an evicted customer coming back).
    pub fn restore(&mut self, name: &str, n: u64) {
        self.by_name.insert(name.to_owned(), n);
        self.by_num.insert(n, name.to_owned());
        self.next = self.next.max(n);
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(n) = self.by_name.remove(name) {
            self.by_num.remove(&n);
        }
    }

    /// Names in order, from after `after`.
    pub fn names_after<'a>(
        &'a self,
        after: &'a str,
    ) -> impl Iterator<Item = (&'a String, u64)> + 'a {
        self.by_name
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(k, v)| (k, *v))
    }
}

/// Contact data of a customer (SPEC §6): edited by agents, shown in every view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub remark_name: String,
    pub phone: String,
    pub email: String,
    pub tags: Vec<String>,
    pub customer_groups: Vec<String>,
    pub language: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentExtra {
    pub supervisor: bool,
    /// The first sign-in of the day it happened (`switchboard_core::login`; the day in the
    /// tenant's time zone). Stored as the pair (day, time) it always was.
    pub first_login: Option<FirstLogin>,
    pub quick_replies: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationExtra {
    pub tags: Vec<String>,
    pub note: String,
    /// Last transcript sequence number.
    pub transcript_seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantState {
    pub id: String,
    pub display_name: String,
    pub created_at: Timestamp,
    pub engine: Engine,
    pub groups: Ids,
    pub agents: Ids,
    pub customers: Ids,
    pub group_names: FxHashMap<GroupId, String>,
    pub profiles: FxHashMap<CustomerId, Profile>,
    pub agent_extra: FxHashMap<AgentId, AgentExtra>,
    pub conversation_extra: FxHashMap<ConversationId, ConversationExtra>,
    pub shared_quick_replies: Vec<(String, String)>,
    pub next_conversation: u64,
    /// Last sequence number of every stream.
    pub stream_seq: BTreeMap<String, u64>,
    /// Conversations archived by commands whose batch is not durable yet: (log seq of the
    /// command, encoded [`crate::archive::Archived`]). Not snapshotted (a snapshot follows
    /// durable commands only); see `archive`.
    #[serde(skip)]
    pub archiving: FxHashMap<u64, (u64, Vec<u8>)>,
    /// Customers evicted by commands whose batch is not durable yet, by id: (log seq,
    /// encoded [`crate::archive::CustomerRecord`]). Not snapshotted.
    #[serde(skip)]
    pub evicting: FxHashMap<String, (u64, Vec<u8>)>,
    /// `at_ms` of the last command applied. A reloaded tenant's clock starts here, so it never
    /// runs backwards across a restart or a move to a node whose wall clock is behind.
    /// Defaulted for snapshots taken before it existed (the log after them still sets it).
    #[serde(default)]
    pub last_at: Timestamp,
    /// HTTP webhooks by id, with their delivery cursors. Defaulted for older snapshots.
    #[serde(default)]
    pub webhooks: BTreeMap<String, crate::webhooks::Webhook>,
    /// Where the agents were last told each waiting conversation waits (the live unaccepted
    /// list, `apply::unaccepted`). Defaulted for older snapshots.
    #[serde(default)]
    pub unaccepted: crate::apply::unaccepted::Unaccepted,
    /// Served by conversation, agent and router actors (`TENANT_ROUTING_ACTORS`), fixed at
    /// creation; otherwise by this tenant actor. Defaulted (false) for older snapshots.
    #[serde(default)]
    pub actor_routing: bool,
}

/// Leading byte of a snapshot in the compact encoding (MessagePack, fields by position). An
/// older snapshot (fields by name) starts with a map marker instead, and still loads.
const SNAPSHOT_V2: u8 = 2;

impl TenantState {
    /// The snapshot of this state: live work only (open conversations, customers with
    /// something open or routing of their own, agents, settings), since ended conversations
    /// and idle customers live in the store.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![SNAPSHOT_V2];
        rmp_serde::encode::write(&mut bytes, self)
            .map_err(|e| Error::Internal(format!("snapshot encoding: {e}")))?;
        Ok(bytes)
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<TenantState> {
        let body = match bytes.split_first() {
            Some((&SNAPSHOT_V2, rest)) => rest,
            _ => bytes,
        };
        rmp_serde::from_slice(body).map_err(|e| Error::Internal(format!("snapshot decoding: {e}")))
    }

    pub fn group(&self, field: &str, id: &str) -> Result<GroupId> {
        self.groups
            .get(id)
            .map(GroupId)
            .filter(|g| self.engine.group_settings(*g).is_some())
            .ok_or_else(|| {
                Error::NotFound(format!("{field}: skill group {id:?} of tenant {}", self.id))
            })
    }

    pub fn agent(&self, field: &str, id: &str) -> Result<AgentId> {
        self.agents
            .get(id)
            .map(AgentId)
            .filter(|a| self.engine.agent_settings(*a).is_some())
            .ok_or_else(|| Error::NotFound(format!("{field}: agent {id:?} of tenant {}", self.id)))
    }

    /// A conversation in memory. One that ended (archived, or purged since) is refused as
    /// the core refuses acting on an ended conversation; the few commands an ended one still
    /// takes get it back in memory first (see `crate::archive`).
    pub fn conversation(&self, n: u64) -> Result<ConversationId> {
        let c = ConversationId(n);
        if self.engine.conversation(c).is_some() {
            Ok(c)
        } else if n >= 1 && n <= self.next_conversation {
            Err(switchboard_core::Error::InvalidTransition {
                conversation: c,
                state: switchboard_core::State::Ended,
                action: "act on an ended conversation",
            }
            .into())
        } else {
            Err(Error::NotFound(format!("conversation {n} of tenant {}", self.id)))
        }
    }

    /// A group named by a reference field: `tenants/{t}/groups/{g}` of this tenant.
    pub fn group_ref(&self, field: &str, name: &str) -> Result<GroupId> {
        let id = crate::names::child_in(field, name, "groups", &self.id)?;
        self.group(field, &id)
    }

    /// An agent named by a reference field: `tenants/{t}/agents/{a}` of this tenant.
    pub fn agent_ref(&self, field: &str, name: &str) -> Result<AgentId> {
        let id = crate::names::child_in(field, name, "agents", &self.id)?;
        self.agent(field, &id)
    }

    /// The resource name of a group; empty for one deleted since (never a dangling name).
    pub fn group_name(&self, g: GroupId) -> String {
        Self::name_of(&self.id, "groups", self.groups.name(g.0))
    }

    /// The resource name of an agent; empty for one deleted since.
    pub fn agent_name(&self, a: AgentId) -> String {
        Self::name_of(&self.id, "agents", self.agents.name(a.0))
    }

    pub fn customer_name(&self, u: CustomerId) -> String {
        Self::name_of(&self.id, "customers", self.customers.name(u.0))
    }

    fn name_of(tenant: &str, kind: &str, id: &str) -> String {
        if id.is_empty() { String::new() } else { crate::names::child_name(tenant, kind, id) }
    }

    pub fn conversation_name(&self, c: ConversationId) -> String {
        crate::names::numbered_name(&self.id, "conversations", c.0)
    }

    /// The next sequence number of a stream.
    pub fn next_stream_seq(&mut self, stream: &str) -> u64 {
        let seq = self.stream_seq.entry(stream.to_owned()).or_default();
        *seq += 1;
        *seq
    }

    pub fn is_supervisor(&self, a: AgentId) -> bool {
        self.agent_extra.get(&a).is_some_and(|x| x.supervisor)
    }
}

impl crate::apply::Names for TenantState {
    fn agent_name(&self, agent: AgentId) -> String {
        TenantState::agent_name(self, agent)
    }

    fn group_name(&self, group: GroupId) -> String {
        TenantState::group_name(self, group)
    }

    fn customer_name(&self, customer: CustomerId) -> String {
        TenantState::customer_name(self, customer)
    }

    fn conversation_name(&self, conversation: ConversationId) -> String {
        TenantState::conversation_name(self, conversation)
    }
}

/// Stream of one agent's desktop events.
pub fn agent_stream(agent_id: &str) -> String {
    format!("{AGENT_STREAMS}{agent_id}")
}

/// What every agent's desk stream's name begins with.
const AGENT_STREAMS: &str = "agent/";

/// Stream of messages for channel gateways to deliver.
pub const OUTBOX: &str = "outbox";
/// Stream of integrator events.
pub const EVENTS: &str = "events";

/// The streams with many writers (store-assigned positions, `Batch::appends`; see "Streams
/// with many writers" in `switchboard_store`), for a tenant served by actors: its
/// conversation and router actors on every node append to them. The one name list (with
/// every agent's desk stream, [`agent_stream`], written by the router and conversation
/// actors): the store does not check a writer-numbered entry against it. A tenant served by
/// its tenant actor numbers these same streams itself (`TenantState::next_stream_seq`), so a
/// tenant must never be served by both (the cut-over's opt-in is per tenant, fixed at
/// creation). An agent's desk stream written by its agent actor before (writer-numbered)
/// turned shared with its first store-assigned entry, its cursors still valid.
pub const SHARED_STREAMS: &[&str] = &[OUTBOX, EVENTS];

/// Whether actors write `stream` with store-assigned positions.
pub fn is_shared(stream: &str) -> bool {
    SHARED_STREAMS.contains(&stream) || stream.starts_with(AGENT_STREAMS)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use switchboard_core::config::CustomerSettings;
    use switchboard_core::login::FirstLogin;
    use switchboard_core::{AgentId, GroupId, Timestamp};

    use super::AgentExtra;

    /// Snapshots and customer rows are positional MessagePack: a settings struct that gains a
    /// trailing field (here `customer_groups`) still reads what older nodes wrote.
    #[test]
    fn settings_written_before_a_new_trailing_field_still_load() {
        #[derive(Serialize)]
        struct Before {
            nickname: Option<String>,
            priority: u8,
            group: Option<GroupId>,
            dedicated_agent: Option<AgentId>,
        }
        let before = Before {
            nickname: Some("Wang".into()),
            priority: 3,
            group: Some(GroupId(2)),
            dedicated_agent: None,
        };
        let bytes = rmp_serde::to_vec(&before).unwrap();
        let now: CustomerSettings = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!((now.nickname.as_deref(), now.priority), (Some("Wang"), 3));
        assert_eq!(now.group, Some(GroupId(2)));
        assert!(now.customer_groups.is_empty());
    }

    /// An agent's first sign-in was stored as a (day, time) pair before the core kept the
    /// rule (`switchboard_core::login::FirstLogin`): snapshots written then still load, by
    /// position (the current encoding) and by name (the older one).
    #[test]
    fn first_logins_stored_as_pairs_still_load() {
        #[derive(Serialize)]
        struct Before {
            supervisor: bool,
            first_login: Option<(u64, Timestamp)>,
            quick_replies: Vec<(String, String)>,
        }
        let before = Before {
            supervisor: true,
            first_login: Some((20_000, Timestamp(7))),
            quick_replies: vec![],
        };
        let want = Some(FirstLogin { day: 20_000, at: Timestamp(7) });
        for bytes in
            [rmp_serde::to_vec(&before).unwrap(), rmp_serde::to_vec_named(&before).unwrap()]
        {
            let now: AgentExtra = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(now.first_login, want);
            assert!(now.supervisor);
        }
        // And what is written now reads back the same.
        let now = AgentExtra { first_login: want, ..AgentExtra::default() };
        let back: AgentExtra = rmp_serde::from_slice(&rmp_serde::to_vec(&now).unwrap()).unwrap();
        assert_eq!(back.first_login, want);
    }
}
