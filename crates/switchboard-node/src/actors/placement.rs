//! Where an actor lives (issue 12 item 2): every actor key hashes onto the cluster's shards
//! (the same fixed count tenants hash onto, default 1024), and a shard's owner in the
//! [`Ownership`] view serves every actor whose key lands in it.
//!
//! - The **router** key is the tenant: it hashes exactly as the tenant does
//!   ([`crate::cluster::shard_of`]), so the router lives where the tenant lives today.
//! - A **conversation** key is the tenant and the customer: FNV-1a over the tenant's bytes, a
//!   separator no UTF-8 string holds, and the customer's number, then a 64-bit avalanche
//!   (splitmix's finaliser, as `desired_owner` does): FNV-1a alone mixes its last bytes into
//!   the low bits poorly, and a shard is the hash modulo a power of two. So one tenant's
//!   customers spread over every shard, hence over every node.
//! - An **agent** key is the tenant and the agent, hashed as a conversation's with another
//!   separator (0xfe), so agent 7 and customer 7 of a tenant are independent keys and one
//!   tenant's agents spread over every shard too.
//!
//! - **Numbers that carry their shard.** A tenant served by actors names its customers and
//!   conversations by numbers from the store's block allocator, laid out by
//!   [`number_in_shard`]: bit 52 set (so they never meet the small numbers a tenant actor
//!   hands out), the shard in bits 36–51, a sequence in bits 0–35 (68.7 billion per tenant);
//!   all below 2^53, so JSON clients read them exactly. A customer's number carries the shard
//!   of its *name* ([`customer_shard`]): a public call naming the customer and an envelope
//!   naming its number reach the same owner without a lookup. A conversation number carries
//!   its customer's shard, so a call naming only the conversation gets there too.
//!
//! Pure functions of the key and the shard count; the resolver reads the node's current view.

use std::fmt;

use switchboard_core::{AgentId, CustomerId};

use crate::cluster::{Ownership, Route, avalanche, fnv1a_parts, shard_of};

/// What placement hashes: one actor's identity in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKey<'a> {
    /// The tenant's router actor.
    Router { tenant: &'a str },
    /// The conversation actor of one customer of the tenant.
    Conversation { tenant: &'a str, customer: CustomerId },
    /// The agent actor of one agent of the tenant.
    Agent { tenant: &'a str, agent: AgentId },
}

impl ActorKey<'_> {
    pub fn tenant(&self) -> &str {
        match self {
            ActorKey::Router { tenant }
            | ActorKey::Conversation { tenant, .. }
            | ActorKey::Agent { tenant, .. } => tenant,
        }
    }

    /// The shard this key lives in, out of `shards`.
    pub fn shard(&self, shards: u32) -> u32 {
        match *self {
            ActorKey::Router { tenant } => shard_of(tenant, shards),
            ActorKey::Conversation { tenant, customer } => match shard_in_number(customer.0) {
                Some(shard) => shard % shards.max(1),
                None => spread(tenant, 0xff, customer.0, shards),
            },
            ActorKey::Agent { tenant, agent } => spread(tenant, 0xfe, agent.0, shards),
        }
    }
}

/// Bit 52: the number carries a shard ([`number_in_shard`]).
pub const SHARDED: u64 = 1 << 52;
/// Where the shard starts in a number that carries one.
pub const SHARD_SHIFT: u32 = 36;
/// The largest sequence a number that carries a shard can hold.
pub const MAX_SEQUENCE: u64 = (1 << SHARD_SHIFT) - 1;

/// The number of sequence `seq` in `shard` (a shard below 65,536, the most a cluster may
/// have; a sequence at most [`MAX_SEQUENCE`]); `None` outside those bounds.
pub fn number_in_shard(shard: u32, seq: u64) -> Option<u64> {
    (shard < 1 << 16 && seq <= MAX_SEQUENCE)
        .then(|| SHARDED | (u64::from(shard) << SHARD_SHIFT) | seq)
}

/// The shard a number carries, if it carries one (see [`number_in_shard`]).
pub fn shard_in_number(n: u64) -> Option<u32> {
    (n & !((SHARDED << 1) - 1) == 0 && n & SHARDED != 0)
        .then_some(((n >> SHARD_SHIFT) & 0xffff) as u32)
}

/// The shard of the customer named `name` (its id within the tenant, as in
/// `tenants/{t}/customers/{name}`), out of `shards`: where its conversation actor lives, and
/// the shard its number carries.
pub fn customer_shard(tenant: &str, name: &str, shards: u32) -> u32 {
    let key = fnv1a_parts(&[tenant.as_bytes(), &[0xfd], name.as_bytes()]);
    (avalanche(key) % u64::from(shards.max(1))) as u32
}

/// A key of a tenant and a number: FNV-1a over the tenant, a separator byte (one no UTF-8
/// string holds, different per kind) and the number, then the avalanche.
fn spread(tenant: &str, separator: u8, n: u64, shards: u32) -> u32 {
    let key = fnv1a_parts(&[tenant.as_bytes(), &[separator], &n.to_be_bytes()]);
    (avalanche(key) % u64::from(shards.max(1))) as u32
}

impl fmt::Display for ActorKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActorKey::Router { tenant } => write!(f, "router of tenant {tenant}"),
            ActorKey::Conversation { tenant, customer } => {
                write!(f, "conversation actor of tenant {tenant}, customer {}", customer.0)
            }
            ActorKey::Agent { tenant, agent } => {
                write!(f, "agent actor of tenant {tenant}, agent {}", agent.0)
            }
        }
    }
}

/// Where the actor of `key` lives as this node sees it: here (under the shard's fence), on
/// another node (its id and address), or nowhere right now (a handover in progress).
pub fn resolve(ownership: &Ownership, key: ActorKey<'_>) -> Route {
    ownership.route_shard(key.shard(ownership.shards()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARDS: u32 = 1024;

    #[test]
    fn the_router_lives_in_its_tenants_shard() {
        for i in 0..1000 {
            let tenant = format!("tenant-{i}");
            let key = ActorKey::Router { tenant: &tenant };
            assert_eq!(key.shard(SHARDS), shard_of(&tenant, SHARDS), "{tenant}");
        }
    }

    #[test]
    fn one_tenants_customers_spread_over_the_shards() {
        spreads(|n| ActorKey::Conversation { tenant: "acme", customer: CustomerId(n) });
    }

    #[test]
    fn one_tenants_agents_spread_over_the_shards() {
        spreads(|n| ActorKey::Agent { tenant: "acme", agent: AgentId(n) });
        // Agent n and customer n of a tenant are different keys: most land apart.
        let apart = (1..=1000u64)
            .filter(|&n| {
                let agent = ActorKey::Agent { tenant: "acme", agent: AgentId(n) };
                let customer = ActorKey::Conversation { tenant: "acme", customer: CustomerId(n) };
                agent.shard(SHARDS) != customer.shard(SHARDS)
            })
            .count();
        assert!(apart > 990, "{apart}");
    }

    /// The keys `key(1..)` (numbered as the core numbers them) spread evenly over the shards
    /// and over the shards of a few nodes.
    fn spreads(key: impl Fn(u64) -> ActorKey<'static>) {
        // 64 keys a shard on average.
        let per_shard = 64;
        let mut counts = vec![0u32; SHARDS as usize];
        for n in 1..=u64::from(SHARDS) * per_shard {
            counts[key(n).shard(SHARDS) as usize] += 1;
        }
        // Binomial(65536, 1/1024): sd ~8; every shard within 5 sd, and a chi-squared
        // statistic well within its 1023 degrees of freedom (mean 1023, sd ~45).
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min >= 24 && *max <= 104, "min {min}, max {max}");
        let expected = per_shard as f64;
        let chi2: f64 = counts.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
        assert!(chi2 < 1023.0 + 6.0 * 45.0, "chi-squared {chi2}");
        // And the shards of a few nodes: each gets about its share of the customers.
        for nodes in [3u32, 5] {
            let mut per_node = vec![0u32; nodes as usize];
            for (shard, c) in counts.iter().enumerate() {
                per_node[shard % nodes as usize] += c;
            }
            let share = (u64::from(SHARDS) * per_shard) as f64 / f64::from(nodes);
            for c in &per_node {
                assert!((f64::from(*c) - share).abs() < share * 0.05, "{per_node:?}");
            }
        }
    }

    #[test]
    fn conversation_keys_are_stable_and_differ_by_tenant() {
        let a = ActorKey::Conversation { tenant: "acme", customer: CustomerId(7) };
        assert_eq!(a.shard(SHARDS), a.shard(SHARDS));
        // The same customer number of 200 tenants lands on many shards, not one.
        let shards: std::collections::HashSet<u32> = (0..200)
            .map(|i| {
                let tenant = format!("t{i}");
                ActorKey::Conversation { tenant: &tenant, customer: CustomerId(7) }.shard(SHARDS)
            })
            .collect();
        assert!(shards.len() > 150, "{}", shards.len());
        // With one shard, every key is in shard 0.
        assert_eq!(ActorKey::Router { tenant: "x" }.shard(1), 0);
        assert_eq!(a.shard(1), 0);
    }

    #[test]
    fn numbers_carry_their_shard_and_customers_land_on_the_shard_of_their_name() {
        assert_eq!(shard_in_number(7), None, "a tenant actor's numbers carry none");
        for (shard, seq) in [(0, 0), (1023, 1), (65_535, MAX_SEQUENCE), (17, 123_456)] {
            let n = number_in_shard(shard, seq).unwrap();
            assert!(n < 1 << 53, "{n} is exact in a JSON number");
            assert_eq!(shard_in_number(n), Some(shard));
            assert_eq!(n & MAX_SEQUENCE, seq);
        }
        assert_eq!(number_in_shard(65_536, 0), None);
        assert_eq!(number_in_shard(0, MAX_SEQUENCE + 1), None);
        assert_eq!(shard_in_number(1 << 53 | SHARDED), None, "above 2^53: not ours");
        // A customer's number carries the shard of its name: both reach one owner.
        for i in 0..1000 {
            let name = format!("customer-{i}");
            let shard = customer_shard("acme", &name, SHARDS);
            let customer = CustomerId(number_in_shard(shard, i).unwrap());
            let key = ActorKey::Conversation { tenant: "acme", customer };
            assert_eq!(key.shard(SHARDS), shard);
        }
        // Names spread over the shards as numbers do.
        let mut counts = vec![0u32; SHARDS as usize];
        for i in 0..u64::from(SHARDS) * 64 {
            counts[customer_shard("acme", &format!("u{i}"), SHARDS) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min >= 24 && *max <= 104, "min {min}, max {max}");
    }

    #[test]
    fn the_resolver_reads_the_view() {
        use std::collections::{BTreeMap, HashMap};

        use crate::cluster::{Owner, View};
        let router = ActorKey::Router { tenant: "acme" };
        let conversation = (1..)
            .map(|n| ActorKey::Conversation { tenant: "acme", customer: CustomerId(n) })
            .find(|k| k.shard(SHARDS) != router.shard(SHARDS))
            .unwrap();
        let (rs, cs) = (router.shard(SHARDS), conversation.shard(SHARDS));
        let view = View {
            members: BTreeMap::from([("b".to_owned(), "127.0.0.1:2".to_owned())]),
            owners: HashMap::from([(rs, Owner { node: "b".into(), epoch: 3, lease: 0 })]),
        };
        let here = Ownership::fixed("a".into(), SHARDS, [(cs, 5)], view, None);
        assert_eq!(
            resolve(&here, conversation),
            Route::Local(switchboard_store::Fence { shard: cs, epoch: 5 })
        );
        assert_eq!(
            resolve(&here, router),
            Route::Remote { node: "b".into(), addr: "127.0.0.1:2".into() }
        );
        let other = ActorKey::Conversation { tenant: "other", customer: CustomerId(1) };
        let os = other.shard(SHARDS);
        if os != rs && os != cs {
            assert_eq!(resolve(&here, other), Route::Unowned { shard: os });
        }
    }
}
