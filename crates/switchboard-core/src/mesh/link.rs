//! One conversation's link between a conversation side and the router side: each end has an
//! [`Outbox`] (durable: what it sent and the peer has not acknowledged) and an [`Inbox`]
//! (durable: the next sequence number it will apply and the newest epoch it has seen;
//! volatile: what arrived early). Together they turn an at-least-once, reordering network into
//! exactly-once, in-order application per link.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{Body, Envelope};
use crate::ids::{ConversationId, CustomerId};

/// How far ahead of the next expected sequence number an early message is held back; later
/// ones are dropped (the sender resends them). A link rarely has more than a few messages in
/// flight: one per operation on its conversation.
pub const HOLD_BACK: u64 = 256;

/// The sending half: sequence numbers start at 1 and never repeat on a link, across restarts
/// too, because the counter and the unacknowledged messages are durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbox<M> {
    next: u64,
    unacked: VecDeque<(u64, M)>,
    /// Messages below this were handed to the network by this incarnation (0 after a restart,
    /// so a restarted sender sends everything unacknowledged again).
    #[serde(skip)]
    sent: u64,
}

/// Equal as durable state: what a restart keeps (`sent` aside).
impl<M: PartialEq> PartialEq for Outbox<M> {
    fn eq(&self, other: &Self) -> bool {
        self.next == other.next && self.unacked == other.unacked
    }
}

impl<M> Default for Outbox<M> {
    fn default() -> Self {
        Outbox { next: 1, unacked: VecDeque::new(), sent: 0 }
    }
}

impl<M: Clone> Outbox<M> {
    /// Queues a message; it leaves with the next [`Link::outgoing`], after the state that
    /// queued it is durable.
    pub fn push(&mut self, message: M) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.unacked.push_back((seq, message));
        seq
    }

    /// The peer applied everything below `next`.
    pub fn ack(&mut self, next: u64) {
        while self.unacked.front().is_some_and(|(seq, _)| *seq < next) {
            self.unacked.pop_front();
        }
    }

    /// How many messages were ever queued on it (the newest one's sequence number).
    pub fn pushed(&self) -> u64 {
        self.next - 1
    }

    /// Nothing is waiting for an acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    /// Forgets what is unacknowledged: the conversation left, so it is moot.
    pub fn clear(&mut self) {
        self.unacked.clear();
    }

    fn unsent(&mut self) -> impl Iterator<Item = (u64, M)> + '_ {
        let from = self.sent;
        self.sent = self.next;
        self.unacked.iter().filter(move |(seq, _)| *seq >= from).cloned()
    }
}

/// The receiving half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Inbox<M> {
    /// The newest sender incarnation seen; anything from an older one is dropped.
    epoch: u64,
    /// The next sequence number to apply.
    next: u64,
    /// Arrived ahead of `next` (volatile: the sender resends what a restart loses).
    #[serde(skip)]
    held: BTreeMap<u64, M>,
    /// An acknowledgement is owed (after the next commit).
    #[serde(skip)]
    ack_due: bool,
}

/// Equal as durable state: what a restart keeps (what arrived early and the acknowledgement
/// owed aside).
impl<M> PartialEq for Inbox<M> {
    fn eq(&self, other: &Self) -> bool {
        self.epoch == other.epoch && self.next == other.next
    }
}

impl<M> Default for Inbox<M> {
    fn default() -> Self {
        Inbox { epoch: 0, next: 1, held: BTreeMap::new(), ack_due: false }
    }
}

impl<M> Inbox<M> {
    /// Takes one arriving message and returns those that may now be applied, in order.
    /// Duplicates are dropped (and acknowledged again, so the sender stops resending);
    /// messages from an epoch older than the newest seen are dropped unacknowledged.
    pub fn receive(&mut self, epoch: u64, seq: u64, message: M) -> Vec<M> {
        if epoch < self.epoch {
            return Vec::new();
        }
        self.epoch = epoch;
        if seq < self.next {
            self.ack_due = true;
            return Vec::new();
        }
        if seq == self.next && self.held.is_empty() {
            // In order, nothing held: applied at once. Not through `held`, whose first node
            // a map keeps once emptied (~1 KB per link, for the link's whole life).
            self.next += 1;
            self.ack_due = true;
            return vec![message];
        }
        if seq < self.next + HOLD_BACK {
            self.held.entry(seq).or_insert(message);
        }
        let mut ready = Vec::new();
        while let Some(m) = self.held.remove(&self.next) {
            ready.push(m);
            self.next += 1;
        }
        if self.held.is_empty() {
            // Frees the node an emptied map keeps.
            self.held = BTreeMap::new();
        }
        self.ack_due |= !ready.is_empty();
        ready
    }

    /// Every message below this was applied.
    pub fn applied_below(&self) -> u64 {
        self.next
    }

    /// The newest sender incarnation seen.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What arrived ahead of the next expected message, by sequence number (volatile).
    pub fn held(&self) -> impl Iterator<Item = (u64, &M)> {
        self.held.iter().map(|(seq, m)| (*seq, m))
    }
}

/// Both halves of one conversation's link, as one end holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "Out: Serialize", deserialize = "Out: Deserialize<'de>"))]
pub struct Link<Out, In> {
    pub out: Outbox<Out>,
    pub inbox: Inbox<In>,
}

impl<Out, In> Default for Link<Out, In> {
    fn default() -> Self {
        Link { out: Outbox::default(), inbox: Inbox::default() }
    }
}

impl<Out, In> Link<Out, In> {
    /// Drops what a restart loses (what arrived early, the acknowledgement owed, what this
    /// incarnation sent): the link as a decoded copy of it is.
    pub fn forget_volatile(&mut self) {
        self.out.sent = 0;
        self.inbox.held = BTreeMap::new();
        self.inbox.ack_due = false;
    }
}

impl<Out: Clone, In> Link<Out, In> {
    /// Takes an arriving envelope's body; returns the messages to apply now, in order.
    pub fn receive(&mut self, epoch: u64, body: Body<In>) -> Vec<In> {
        match body {
            // An acknowledgement is a durable fact of the peer whatever its incarnation.
            Body::Ack { next } => {
                self.out.ack(next);
                Vec::new()
            }
            Body::Message { seq, message } => self.inbox.receive(epoch, seq, message),
        }
    }

    /// What to put on the network once the state is durable: messages not sent yet by this
    /// incarnation, and the acknowledgement owed, if any.
    pub fn outgoing(
        &mut self,
        conversation: ConversationId,
        customer: CustomerId,
        epoch: u64,
        out: &mut Vec<Envelope<Out>>,
    ) {
        let envelope = |body| Envelope { conversation, customer, epoch, body };
        out.extend(self.bodies().into_iter().map(envelope));
    }

    /// [`Link::outgoing`]'s bodies, for a link whose envelopes name something else (an
    /// agent's link, [`super::agent`]).
    pub fn bodies(&mut self) -> Vec<Body<Out>> {
        let mut out: Vec<_> =
            self.out.unsent().map(|(seq, message)| Body::Message { seq, message }).collect();
        if std::mem::take(&mut self.inbox.ack_due) {
            out.push(Body::Ack { next: self.inbox.next });
        }
        out
    }

    /// [`Link::retransmit`]'s bodies.
    pub fn unacked_bodies(&self) -> Vec<Body<Out>> {
        let unacked = self.out.unacked.iter();
        unacked
            .map(|(seq, message)| Body::Message { seq: *seq, message: message.clone() })
            .collect()
    }

    /// Everything unacknowledged, again (the retransmission timer).
    pub fn retransmit(
        &self,
        conversation: ConversationId,
        customer: CustomerId,
        epoch: u64,
        out: &mut Vec<Envelope<Out>>,
    ) {
        let envelope = |body| Envelope { conversation, customer, epoch, body };
        out.extend(self.unacked_bodies().into_iter().map(envelope));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordered_and_duplicated_messages_apply_once_in_order() {
        let mut inbox: Inbox<&str> = Inbox::default();
        assert!(inbox.receive(1, 2, "b").is_empty(), "held back until 1 arrives");
        assert_eq!(inbox.receive(1, 1, "a"), ["a", "b"]);
        assert!(inbox.receive(1, 1, "a").is_empty(), "a duplicate is dropped");
        assert!(inbox.ack_due, "and acknowledged again");
        assert_eq!(inbox.receive(1, 3, "c"), ["c"]);
        assert_eq!(inbox.applied_below(), 4);
    }

    #[test]
    fn a_deposed_incarnation_is_not_heard() {
        let mut inbox: Inbox<&str> = Inbox::default();
        assert_eq!(inbox.receive(2, 1, "a"), ["a"]);
        // Epoch 1's copy of message 2 comes late: epoch 2 resends it.
        assert!(inbox.receive(1, 2, "b").is_empty());
        assert_eq!(inbox.receive(2, 2, "b"), ["b"]);
    }

    #[test]
    fn a_restarted_sender_resends_everything_unacknowledged() {
        let mut link: Link<String, ()> = Link::default();
        link.out.push("a".into());
        link.out.push("b".into());
        let mut wire = Vec::new();
        link.outgoing(ConversationId(1), CustomerId(1), 1, &mut wire);
        assert_eq!(wire.len(), 2);
        link.receive(1, Body::Ack { next: 2 });
        // Restart: the durable part survives, the record of what was sent does not.
        let bytes = rmp_serde::to_vec_named(&link).unwrap();
        let mut link: Link<String, ()> = rmp_serde::from_slice(&bytes).unwrap();
        let mut wire = Vec::new();
        link.outgoing(ConversationId(1), CustomerId(1), 2, &mut wire);
        assert_eq!(wire.len(), 1);
        assert!(matches!(&wire[0].body, Body::Message { seq: 2, message } if message == "b"));
        assert_eq!(link.out.push("c".into()), 3, "sequence numbers continue");
    }
}
