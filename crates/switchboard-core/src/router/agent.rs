//! An agent as the router sees it: status, capacity, load and the conversations pinned to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, GroupId};
use crate::queue::RankedQueue;
use crate::time::Timestamp;

/// Agent status (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Receives pushed work.
    Online,
    /// Keeps its conversations, receives none.
    Busy,
    /// Receives no pushed work.
    Away,
    /// Receives no pushed work; can pick from the unaccepted list.
    Invisible,
    /// Signed out; its conversations follow the offline policy.
    #[default]
    Offline,
}

impl AgentStatus {
    pub const ALL: [AgentStatus; 5] = [
        AgentStatus::Online,
        AgentStatus::Busy,
        AgentStatus::Away,
        AgentStatus::Invisible,
        AgentStatus::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Busy => "busy",
            AgentStatus::Away => "away",
            AgentStatus::Invisible => "invisible",
            AgentStatus::Offline => "offline",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Routing state of one agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    pub status: AgentStatus,
    pub capacity: u32,
    pub groups: Vec<GroupId>,
    pub assigned: BTreeSet<ConversationId>,
    pub offered: BTreeSet<ConversationId>,
    /// Conversations waiting for this agent in particular (dedicated or last agent).
    pub pinned: RankedQueue<ConversationId>,
    /// When the agent last received work or came online (longest-idle strategy).
    pub idle_since: Timestamp,
    /// Consecutive offers declined or timed out.
    pub misses: u32,
    /// Set while offline with conversations kept for the grace period.
    pub offline_since: Option<Timestamp>,
    /// The rank it is listed under in its groups' availability indexes, when listed.
    pub(super) listed: Option<(u64, Timestamp)>,
    /// Conversations it served that ended and whose wrap-up still holds a slot.
    #[serde(default)]
    pub wrapping: BTreeMap<ConversationId, Wrap>,
    /// Proficiency level (1-5) per group; a group missing here is the lowest level.
    #[serde(default)]
    pub proficiency: BTreeMap<GroupId, u8>,
}

/// A slot held after a conversation ended (after-conversation work, the group's `wrap_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    /// When the slot frees by itself.
    pub until: Timestamp,
    /// The agent may end it earlier (the group's wrap-up is optional, not mandatory).
    pub can_end_early: bool,
}

impl Agent {
    pub fn new(capacity: u32, groups: Vec<GroupId>) -> Self {
        Agent {
            status: AgentStatus::Offline,
            capacity,
            groups,
            assigned: BTreeSet::new(),
            offered: BTreeSet::new(),
            pinned: RankedQueue::new(),
            idle_since: Timestamp::ZERO,
            misses: 0,
            offline_since: None,
            listed: None,
            wrapping: BTreeMap::new(),
            proficiency: BTreeMap::new(),
        }
    }

    /// Its proficiency level in `group` (the lowest when not set).
    pub fn level(&self, group: GroupId) -> u8 {
        self.proficiency.get(&group).copied().unwrap_or(crate::config::MIN_PROFICIENCY)
    }

    /// Assigned plus offered conversations, plus the slots wrap-ups still hold.
    pub fn load(&self) -> u32 {
        u32::try_from(self.assigned.len() + self.offered.len() + self.wrapping.len())
            .unwrap_or(u32::MAX)
    }

    pub fn has_room(&self) -> bool {
        self.load() < self.capacity
    }

    /// Online and under capacity: the router may push work to it.
    pub fn can_push(&self) -> bool {
        self.status == AgentStatus::Online && self.has_room()
    }

    /// May pick from the unaccepted list.
    pub fn can_pick(&self) -> bool {
        self.status != AgentStatus::Offline && self.has_room()
    }
}
