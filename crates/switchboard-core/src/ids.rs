//! Identifiers. Inside one tenant every id is a small copyable number; the API layer maps its
//! resource names onto them. Tenants never meet inside the core: one [`crate::Engine`] is one
//! tenant.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

id!(
    /// One conversation; unique and never reused within a tenant.
    ConversationId,
    "c"
);
id!(
    /// A person answering.
    AgentId,
    "a"
);
id!(
    /// A skill group: a team of agents with one queue.
    GroupId,
    "g"
);
id!(
    /// The person asking.
    CustomerId,
    "u"
);
