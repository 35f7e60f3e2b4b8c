//! Ended conversations out of memory. When a conversation ends, the core hands it out
//! ([`Engine::take_ended`](switchboard_core::Engine::take_ended)); the apply layer encodes it
//! with what the node keeps beside it (tags, note, transcript counter) and the batch of the
//! same command writes it to the store's archive, keyed by tenant and conversation. The tenant
//! keeps nothing of it but the customer's last agent (on the customer).
//!
//! What still happens to an ended conversation (a rating, tags or a note) is a command like
//! any other: the actor reads the archived conversation before applying it and puts it in the
//! logged command (`Command.archived`), the core takes it back for that one command
//! ([`Engine::restore_ended`](switchboard_core::Engine::restore_ended)), and the batch
//! rewrites the archive row. Replay reads the conversation from the log, never from the store,
//! so it stays deterministic. Reads (`GetConversation`, history, boards, queue statistics)
//! read the archive off the actor.
//!
//! Customers leave memory the same way: once a command leaves a customer with nothing open
//! and no routing of its own (no group, no dedicated agent: the anonymous visitors that make
//! up most traffic), its record (number, last agent, nickname, contact data) goes to the
//! store and it is forgotten; a command that names it again carries the record in
//! `Command.customer`. Customers an administrator routed stay in memory, so deleting a group
//! or an agent still sees every customer that refers to it.
//!
//! Until its batch is durable, an archived conversation is also kept in the tenant's
//! `archiving` map, so that a command or read right after the end finds it although the store
//! does not have it yet. The committer removes it once durable.

use serde::{Deserialize, Serialize};
use switchboard_core::engine::Customer;
use switchboard_core::{Conversation, Timestamp};

use crate::error::{Error, Result};
use crate::state::{ConversationExtra, Profile};

/// Leading byte of the encoding: a new layout gets a new number and old rows stay readable.
const VERSION: u8 = 1;

/// An ended conversation as archived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Archived {
    pub conversation: Conversation,
    /// The customer's caller-chosen id (the customer may be evicted meanwhile).
    pub customer: String,
    pub extra: ConversationExtra,
    /// When retention deletes it and its transcript.
    pub purge_at: Timestamp,
}

/// An evicted customer as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// The caller-chosen id.
    pub id: String,
    /// Its number in the tenant (kept, so archived conversations still name it).
    pub num: u64,
    pub customer: Customer,
    pub profile: Profile,
}

pub fn encode(archived: &Archived) -> Vec<u8> {
    encode_any(archived)
}

pub fn decode(bytes: &[u8]) -> Result<Archived> {
    decode_any(bytes, "archived conversation")
}

pub fn encode_customer(record: &CustomerRecord) -> Vec<u8> {
    encode_any(record)
}

/// The store's `customers` row of a customer: its record encoded, keyed by its id, with the
/// profile's contact data in the indexed columns (the customer searches).
pub fn customer_row(record: &CustomerRecord) -> switchboard_store::CustomerRecord {
    let p = &record.profile;
    let contact = switchboard_store::Contact {
        remark_name: p.remark_name.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
    };
    let body = encode_customer(record);
    switchboard_store::CustomerRecord { customer: record.id.clone(), body, contact }
}

pub fn decode_customer(bytes: &[u8]) -> Result<CustomerRecord> {
    decode_any(bytes, "customer record")
}

fn encode_any<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![VERSION];
    // Encoding plain data into a Vec cannot fail.
    rmp_serde::encode::write(&mut bytes, value).expect("plain data encodes");
    bytes
}

fn decode_any<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => rmp_serde::from_slice(rest)
            .map_err(|e| Error::Internal(format!("{what} does not decode: {e}"))),
        Some((v, _)) => Err(Error::Internal(format!("{what} of unknown version {v}"))),
        None => Err(Error::Internal(format!("empty {what}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let c = minimal();
        let a = Archived {
            conversation: c,
            customer: "u1".into(),
            extra: ConversationExtra::default(),
            purge_at: Timestamp(9),
        };
        let bytes = encode(&a);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.conversation, a.conversation);
        assert_eq!(back.purge_at, Timestamp(9));
        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(decode(&wrong).is_err());
        assert!(decode(&[]).is_err());
    }

    /// One open conversation, as an engine opens it (also for other modules' tests).
    pub(crate) fn minimal() -> Conversation {
        let mut e =
            switchboard_core::Engine::new(switchboard_core::config::TenantSettings::default())
                .unwrap();
        let g = switchboard_core::GroupId(1);
        e.upsert_group(Timestamp(0), g, Default::default()).unwrap();
        e.set_settings(switchboard_core::config::TenantSettings {
            default_group: Some(g),
            ..Default::default()
        })
        .unwrap();
        let u = switchboard_core::CustomerId(1);
        let o = e
            .customer_message(
                Timestamp(1),
                switchboard_core::CustomerMessage {
                    customer: u,
                    channel: switchboard_core::Channel::Web,
                    text: "hi".into(),
                    new_conversation: switchboard_core::ConversationId(1),
                    group: None,
                    priority: None,
                },
            )
            .unwrap();
        e.conversation(o.conversation).unwrap().clone()
    }
}
