//! Customer and conversation numbers of tenants served by actors (issue 12's cut-over).
//!
//! No single writer numbers them: each node takes blocks of [`BLOCK`] numbers of a
//! tenant-wide counter from the store ([`Store::reserve`], durable, never given twice) and
//! hands them out from memory, so a node makes one store round trip per 1,024 numbers. A
//! number carries its shard ([`placement::number_in_shard`]): a customer's the shard of its
//! name ([`placement::customer_shard`], with the node's shard count), a conversation's its
//! customer's. A customer's name is bound to its number in the store on first use
//! ([`Store::bind_customer`]: the earlier binding wins, on any node), and both directions
//! are cached in a bounded cache ([`CACHE_ENTRIES`]). A name the cache misses takes a number
//! first and then looks itself up and binds in one trip to the blocking pool; a name found
//! bound leaves that number unused.
//!
//! Concurrency: each (tenant, counter) has its own async lock around its block; a caller
//! that finds the block empty fetches the next one on the blocking pool while holding that
//! lock, so concurrent callers of that counter wait for the one fetch in flight and then take
//! from its block (no thundering herd), and no other counter or tenant waits for it. The
//! node-wide maps are std mutexes held only to find an entry, never across an await. A
//! caller that gives up mid-fetch loses at most that block (numbers may skip; none repeats).

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use switchboard_core::{ConversationId, CustomerId};
use switchboard_store::Store;

use super::placement::{self, MAX_SEQUENCE};
use crate::error::{Error, Result};

/// Numbers a node takes from the store in one round trip, per (tenant, counter).
pub const BLOCK: u64 = 1024;

/// Name ↔ number pairs the cache holds at most (each direction), over every tenant: enough
/// for the customers a node serves at once (an entry in use stays), and a miss is one
/// indexed read. It bounds memory that would otherwise follow every customer ever seen
/// (40 MB at 100,000 entries when each key held its own copy of the tenant's name and each
/// direction its own copy of the customer's, which `loadtest history` saw as growth per
/// conversation up to that many customers; see [`Cache`] for what an entry holds now).
pub const CACHE_ENTRIES: usize = 32_768;

/// The store counter of customer numbers.
pub const CUSTOMER_COUNTER: &str = "customer";
/// The store counter of conversation numbers.
pub const CONVERSATION_COUNTER: &str = "conversation";

/// What is left of a (tenant, counter)'s block on this node; locked across its refill.
type Block = tokio::sync::Mutex<Range<u64>>;

/// The node's numbering of actor tenants' customers and conversations (see the module docs).
/// Cheap to share: hold it as `Arc<Numbers>` (`Meshes::numbers`).
pub struct Numbers {
    store: Arc<dyn Store>,
    shards: u32,
    /// Each (tenant, counter)'s current block. Keyed by tenant, not by customer.
    blocks: Mutex<FxHashMap<(String, &'static str), Arc<Block>>>,
    cache: Mutex<Cache>,
}

/// The cached pairs of every tenant, under one lock held only to find or insert. A tenant is
/// interned to a small number (tenants are few, and created by their admins), so an entry
/// holds no copy of its tenant's name, and a customer's name is one allocation that both
/// directions share (by our count of slots and allocations, some 130 bytes per customer and
/// conversation over the three maps, where a copy of the tenant per key and of the name per
/// direction took about 310).
struct Cache {
    tenants: FxHashMap<Box<str>, u32>,
    by_name: Generations<(u32, Arc<str>), u64>,
    by_number: Generations<(u32, u64), Arc<str>>,
    /// Conversation number → its customer's number: written once when the conversation
    /// opens and never changed, so a cached answer stays right (until retention deletes the
    /// conversation, when a call naming it reaches its customer's actor, which knows it not).
    owners: Generations<(u32, u64), u64>,
}

impl Cache {
    fn new(bound: usize) -> Self {
        Cache {
            tenants: FxHashMap::default(),
            by_name: Generations::new(bound),
            by_number: Generations::new(bound),
            owners: Generations::new(bound),
        }
    }

    /// The tenant's number in this cache (given on first sight, kept for the node's life).
    fn tenant(&mut self, tenant: &str) -> u32 {
        if let Some(&n) = self.tenants.get(tenant) {
            return n;
        }
        let n = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        self.tenants.insert(tenant.into(), n);
        n
    }

    fn remember(&mut self, tenant: &str, name: &str, number: u64) {
        let t = self.tenant(tenant);
        let name: Arc<str> = name.into();
        self.by_number.insert((t, number), name.clone());
        self.by_name.insert((t, name), number);
    }
}

impl std::fmt::Debug for Numbers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Numbers").field("shards", &self.shards).finish_non_exhaustive()
    }
}

impl Numbers {
    /// Numbers from `store` for a cluster of `shards` shards (1 on a single node).
    pub fn new(store: Arc<dyn Store>, shards: u32) -> Self {
        Numbers {
            store,
            shards: shards.max(1),
            blocks: Mutex::default(),
            cache: Mutex::new(Cache::new(CACHE_ENTRIES)),
        }
    }

    /// The customer's number, bound on first use (a number carrying customer_shard(name)).
    pub async fn customer(&self, tenant: &str, name: &str) -> Result<CustomerId> {
        self.customer_noting(tenant, name, |_, _| {}).await
    }

    /// [`customer`](Self::customer), telling `note` about a number this call binds: `(number,
    /// true)` before the binding is written, so nothing can name the number before `note`
    /// heard of it, and `(number, false)` if another binding of the name won (the number is
    /// never used). A number noted `true` and not withdrawn was bound by this call: nothing
    /// was ever stored under it (`Mesh::note_new_customer`).
    pub async fn customer_noting(
        &self,
        tenant: &str,
        name: &str,
        note: impl Fn(CustomerId, bool),
    ) -> Result<CustomerId> {
        {
            let mut cache = lock(&self.cache);
            let key = (cache.tenant(tenant), Arc::from(name));
            if let Some(number) = cache.by_name.get(&key) {
                return Ok(CustomerId(number));
            }
        }
        // A number is taken before the lookup, so that the lookup and the binding are one
        // trip to the blocking pool; a name found bound leaves it unused (numbers may skip,
        // none repeats).
        let shard = placement::customer_shard(tenant, name, self.shards);
        let candidate = (self.next(tenant, CUSTOMER_COUNTER).await)
            .and_then(|seq| in_shard(tenant, CUSTOMER_COUNTER, shard, seq));
        let (store, owned, bound_name) = (self.store.clone(), tenant.to_owned(), name.to_owned());
        let Ok(candidate) = candidate else {
            // No number left to give (or none to be had now): a name bound before still
            // has its own.
            let found = blocking(move || store.customer_number(&owned, &bound_name)).await?;
            let number = found.map_or(candidate, Ok)?;
            lock(&self.cache).remember(tenant, name, number);
            return Ok(CustomerId(number));
        };
        note(CustomerId(candidate), true);
        // Another caller (here or on another node) may have bound the name since the lookup:
        // its number wins, and the candidate is never used.
        let bound = blocking(move || match store.customer_number(&owned, &bound_name)? {
            Some(number) => Ok(number),
            None => store.bind_customer(&owned, &bound_name, candidate),
        })
        .await;
        if !bound.as_ref().is_ok_and(|&number| number == candidate) {
            note(CustomerId(candidate), false);
        }
        let number = bound?;
        lock(&self.cache).remember(tenant, name, number);
        Ok(CustomerId(number))
    }

    /// A new conversation number carrying the customer's shard. INVALID_ARGUMENT for a
    /// customer number that carries no shard (a tenant actor's).
    pub async fn conversation(&self, tenant: &str, customer: CustomerId) -> Result<ConversationId> {
        let shard = placement::shard_in_number(customer.0).ok_or_else(|| {
            Error::field(
                "customer",
                format!(
                    "customer number {} of tenant {tenant} carries no shard: only customers \
                     numbered by the actors' allocator have conversations numbered by it",
                    customer.0
                ),
            )
        })?;
        let seq = self.next(tenant, CONVERSATION_COUNTER).await?;
        Ok(ConversationId(in_shard(tenant, CONVERSATION_COUNTER, shard, seq)?))
    }

    /// The name bound to a customer number (None: never bound).
    pub async fn customer_name(
        &self,
        tenant: &str,
        customer: CustomerId,
    ) -> Result<Option<String>> {
        {
            let mut cache = lock(&self.cache);
            let key = (cache.tenant(tenant), customer.0);
            if let Some(name) = cache.by_number.get(&key) {
                return Ok(Some(name.as_ref().to_owned()));
            }
        }
        let (store, owned) = (self.store.clone(), tenant.to_owned());
        let name = blocking(move || store.customer_name(&owned, customer.0)).await?;
        if let Some(name) = &name {
            lock(&self.cache).remember(tenant, name, customer.0);
        }
        Ok(name)
    }

    /// The customer holding a conversation number, by the owner row its opening step wrote
    /// (None: no conversation of an actor's opened with that number). Every call naming a
    /// conversation asks this, so found owners are cached.
    pub async fn owner(&self, tenant: &str, conversation: u64) -> Result<Option<CustomerId>> {
        {
            let mut cache = lock(&self.cache);
            let key = (cache.tenant(tenant), conversation);
            if let Some(customer) = cache.owners.get(&key) {
                return Ok(Some(CustomerId(customer)));
            }
        }
        let (store, owned) = (self.store.clone(), tenant.to_owned());
        let found = blocking(move || store.conversation_customer(&owned, conversation)).await?;
        if let Some(customer) = found {
            let mut cache = lock(&self.cache);
            let key = (cache.tenant(tenant), conversation);
            cache.owners.insert(key, customer);
        }
        Ok(found.map(CustomerId))
    }

    /// Remembers that `conversation` is `customer`'s: its opening step is durable (the owner
    /// row was in it), so calls naming it find the actor without a store read.
    pub fn remember_owner(&self, tenant: &str, conversation: u64, customer: CustomerId) {
        let mut cache = lock(&self.cache);
        let key = (cache.tenant(tenant), conversation);
        cache.owners.insert(key, customer.0);
    }

    /// The next number of the tenant's `counter`: from this node's block, or the first of a
    /// new block fetched on the blocking pool (one fetch in flight per counter).
    async fn next(&self, tenant: &str, counter: &'static str) -> Result<u64> {
        let block = {
            let mut blocks = lock(&self.blocks);
            blocks.entry((tenant.to_owned(), counter)).or_default().clone()
        };
        let mut block = block.lock().await;
        if block.is_empty() {
            let (store, owned) = (self.store.clone(), tenant.to_owned());
            let first = blocking(move || store.reserve(&owned, counter, BLOCK)).await?;
            *block = first..first.saturating_add(BLOCK);
        }
        let n = block.start;
        block.start += 1;
        Ok(n)
    }
}

/// The number of sequence `seq` in `shard`, or RESOURCE_EXHAUSTED past [`MAX_SEQUENCE`]
/// (never a wrap onto numbers already given).
fn in_shard(tenant: &str, counter: &str, shard: u32, seq: u64) -> Result<u64> {
    placement::number_in_shard(shard, seq).ok_or_else(|| {
        Error::ResourceExhausted(format!(
            "tenant {tenant} has used every {counter} number (sequence {seq} is past \
             {MAX_SEQUENCE}, the most a number carrying its shard holds): \
             create a new tenant for further {counter}s"
        ))
    })
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> switchboard_store::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(switchboard_store::Error::Exhausted { tenant, counter })) => {
            Err(Error::ResourceExhausted(format!(
                "tenant {tenant} has used every {counter} number the store can count: \
                 create a new tenant for further {counter}s"
            )))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Error::Unavailable(format!("numbering interrupted: {e}"))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a map lookup or insert: nothing is left half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded map in two generations: inserts go to the young one; when it holds half the
/// bound, it becomes the old one and the old one is dropped. A hit in the old generation
/// moves to the young one. At most `bound` entries, and what is used stays.
struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq, V: Clone> Generations<K, V> {
    fn new(bound: usize) -> Self {
        Generations { young: HashMap::new(), old: HashMap::new(), half: (bound / 2).max(1) }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.young.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.old.remove_entry(key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use switchboard_store::{
        ActorState, ArchiveQuery, ArchiveScan, ArchiveWindow, Archived, Assigned, Batch,
        ContactField, CustomerRecord, Fence, Loaded, Message, Pending, Result as StoreResult,
        SqliteOptions, SqliteStore, StreamEntry,
    };

    use super::*;
    use crate::actors::placement::{customer_shard, shard_in_number};

    const SHARDS: u32 = 1024;

    /// A SQLite store that counts the calls `Numbers` makes.
    struct Counting {
        inner: SqliteStore,
        reserves: AtomicUsize,
        binds: AtomicUsize,
        lookups: AtomicUsize,
    }

    impl Counting {
        fn open(dir: &std::path::Path) -> Arc<Counting> {
            Arc::new(Counting {
                inner: SqliteStore::open(dir, SqliteOptions::default()).unwrap(),
                reserves: AtomicUsize::new(0),
                binds: AtomicUsize::new(0),
                lookups: AtomicUsize::new(0),
            })
        }

        fn counts(&self) -> (usize, usize, usize) {
            let get = |c: &AtomicUsize| c.load(Ordering::SeqCst);
            (get(&self.reserves), get(&self.binds), get(&self.lookups))
        }
    }

    impl Store for Counting {
        fn reserve(&self, tenant: &str, counter: &str, count: u64) -> StoreResult<u64> {
            self.reserves.fetch_add(1, Ordering::SeqCst);
            self.inner.reserve(tenant, counter, count)
        }
        fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> StoreResult<u64> {
            self.binds.fetch_add(1, Ordering::SeqCst);
            self.inner.bind_customer(tenant, name, number)
        }
        fn customer_number(&self, tenant: &str, name: &str) -> StoreResult<Option<u64>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.inner.customer_number(tenant, name)
        }
        fn customer_name(&self, tenant: &str, number: u64) -> StoreResult<Option<String>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.inner.customer_name(tenant, number)
        }
        fn append(&self, batch: Batch) -> Pending {
            self.inner.append(batch)
        }
        fn append_assigned(&self, batch: Batch) -> Assigned {
            self.inner.append_assigned(batch)
        }
        fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending {
            self.inner.snapshot(tenant, fence, seq, bytes)
        }
        fn raise_fence(&self, fence: Fence) -> Pending {
            self.inner.raise_fence(fence)
        }
        fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending {
            self.inner.trim_stream(tenant, stream, keep_last)
        }
        fn tenants(&self) -> StoreResult<Vec<String>> {
            self.inner.tenants()
        }
        fn load(&self, tenant: &str) -> StoreResult<Loaded> {
            self.inner.load(tenant)
        }
        fn read_stream(
            &self,
            tenant: &str,
            stream: &str,
            after_seq: u64,
            limit: usize,
        ) -> StoreResult<Vec<StreamEntry>> {
            self.inner.read_stream(tenant, stream, after_seq, limit)
        }
        fn last_stream_seq(&self, tenant: &str, stream: &str) -> StoreResult<Option<u64>> {
            self.inner.last_stream_seq(tenant, stream)
        }
        fn messages(
            &self,
            tenant: &str,
            conversation: u64,
            after_seq: u64,
            limit: usize,
        ) -> StoreResult<Vec<Message>> {
            self.inner.messages(tenant, conversation, after_seq, limit)
        }
        fn request_retention(&self) -> std::time::Duration {
            self.inner.request_retention()
        }
        fn stats(&self) -> switchboard_store::Stats {
            self.inner.stats()
        }
        fn generation(&self, tenant: &str) -> Option<u64> {
            self.inner.generation(tenant)
        }
        fn find_response(&self, tenant: &str, request_id: &str) -> StoreResult<Option<Vec<u8>>> {
            self.inner.find_response(tenant, request_id)
        }
        fn actor_response(&self, tenant: &str, id: &str) -> StoreResult<Option<Vec<u8>>> {
            self.inner.actor_response(tenant, id)
        }
        fn tenant_exists(&self, tenant: &str) -> StoreResult<bool> {
            self.inner.tenant_exists(tenant)
        }
        fn conversation_customer(&self, tenant: &str, n: u64) -> StoreResult<Option<u64>> {
            self.inner.conversation_customer(tenant, n)
        }
        fn archived(&self, tenant: &str, conversation: u64) -> StoreResult<Option<Archived>> {
            self.inner.archived(tenant, conversation)
        }
        fn list_archived(&self, tenant: &str, query: &ArchiveQuery) -> StoreResult<Vec<Archived>> {
            self.inner.list_archived(tenant, query)
        }
        fn count_archived(&self, tenant: &str) -> StoreResult<u64> {
            self.inner.count_archived(tenant)
        }
        fn customer(&self, tenant: &str, customer: &str) -> StoreResult<Option<Vec<u8>>> {
            self.inner.customer(tenant, customer)
        }
        fn actor(&self, tenant: &str, kind: &str, key: &str) -> StoreResult<Option<ActorState>> {
            self.inner.actor(tenant, kind, key)
        }
        fn list_actors(
            &self,
            tenant: &str,
            kind: &str,
            after: &str,
            limit: usize,
        ) -> StoreResult<Vec<ActorState>> {
            self.inner.list_actors(tenant, kind, after, limit)
        }
        fn scan_archived(&self, tenant: &str, scan: &ArchiveScan) -> StoreResult<ArchiveWindow> {
            self.inner.scan_archived(tenant, scan)
        }
        fn scan_customers(
            &self,
            tenant: &str,
            after: &str,
            limit: usize,
        ) -> StoreResult<Vec<CustomerRecord>> {
            self.inner.scan_customers(tenant, after, limit)
        }
        fn find_customers(
            &self,
            tenant: &str,
            field: ContactField,
            value: &str,
            after: &str,
            limit: usize,
        ) -> StoreResult<Vec<CustomerRecord>> {
            self.inner.find_customers(tenant, field, value, after, limit)
        }
        fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, before_ms: u64) -> Pending {
            self.inner.retain(tenant, fence, now_ms, before_ms)
        }
    }

    fn numbers(store: &Arc<Counting>, shards: u32) -> Numbers {
        Numbers::new(store.clone(), shards)
    }

    /// Customers carry the shard of their name, conversations their customer's; names on
    /// different shards get numbers on those shards; the sequences start at 1.
    #[tokio::test]
    async fn numbers_carry_the_shard_of_the_customers_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let numbers = numbers(&store, SHARDS);
        let mut shards = HashSet::new();
        for i in 0..50 {
            let name = format!("customer-{i}");
            let customer = numbers.customer("acme", &name).await.unwrap();
            let shard = customer_shard("acme", &name, SHARDS);
            shards.insert(shard);
            assert_eq!(shard_in_number(customer.0), Some(shard), "{name}");
            assert_eq!(customer.0 & MAX_SEQUENCE, i + 1, "{name}: sequences from 1");
            let conversation = numbers.conversation("acme", customer).await.unwrap();
            assert_eq!(shard_in_number(conversation.0), Some(shard), "{name}");
            assert_eq!(conversation.0 & MAX_SEQUENCE, i + 1);
        }
        assert!(shards.len() > 40, "50 names on {} shards", shards.len());
        // A single node has one shard: every number carries shard 0.
        let single = Numbers::new(store.clone(), 1);
        let customer = single.customer("solo", "carol").await.unwrap();
        assert_eq!(shard_in_number(customer.0), Some(0));
        let conversation = single.conversation("solo", customer).await.unwrap();
        assert_eq!(shard_in_number(conversation.0), Some(0));
    }

    /// One store round trip per 1,024 numbers, a bind per new customer, and none for a name
    /// already cached.
    #[tokio::test]
    async fn one_store_round_trip_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let numbers = numbers(&store, SHARDS);
        let mut seen = HashSet::new();
        let mut customers = Vec::new();
        for i in 0..2_000 {
            let customer = numbers.customer("acme", &format!("u{i}")).await.unwrap();
            assert!(seen.insert(customer.0));
            customers.push(customer);
        }
        assert_eq!(store.counts(), (2, 2_000, 2_000), "reserves, binds, lookups");
        for (i, customer) in customers.iter().enumerate() {
            let again = numbers.customer("acme", &format!("u{i}")).await.unwrap();
            assert_eq!(again, *customer);
        }
        assert_eq!(store.counts(), (2, 2_000, 2_000), "all from the cache");
        // Conversations count apart from customers (another kind of id).
        let mut conversations = HashSet::new();
        for i in 0..3_000 {
            let conversation = numbers.conversation("acme", customers[i % 2_000]).await.unwrap();
            assert!(conversations.insert(conversation.0), "{conversation:?}");
        }
        assert_eq!(store.counts().0, 2 + 3, "3,000 conversations: three blocks");
    }

    /// Many callers at once share one fetch in flight.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let numbers = Arc::new(numbers(&store, SHARDS));
        let customer = numbers.customer("acme", "carol").await.unwrap();
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let numbers = numbers.clone();
                tokio::spawn(async move { numbers.conversation("acme", customer).await })
            })
            .collect();
        let mut got = HashSet::new();
        for task in tasks {
            assert!(got.insert(task.await.unwrap().unwrap()));
        }
        assert_eq!(store.counts().0, 2, "one block of customers, one of conversations");
    }

    /// Another node on the same store: the same number for a bound name, a block of its own
    /// for new ones, and the name back from the number; the earlier binding wins.
    #[tokio::test]
    async fn nodes_agree_on_bindings_and_never_share_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let (a, b) = (numbers(&store, SHARDS), numbers(&store, SHARDS));
        let carol = a.customer("acme", "carol").await.unwrap();
        assert_eq!(b.customer("acme", "carol").await.unwrap(), carol);
        assert_eq!(b.customer_name("acme", carol).await.unwrap().as_deref(), Some("carol"));
        let dave = b.customer("acme", "dave").await.unwrap();
        // b took a number before finding carol bound: it skips, unused.
        assert_eq!(dave.0 & MAX_SEQUENCE, BLOCK + 2, "b's own block");
        assert_eq!(a.customer_name("acme", dave).await.unwrap().as_deref(), Some("dave"));
        assert_eq!(a.customer_name("acme", CustomerId(carol.0 + 1)).await.unwrap(), None);
        assert_eq!(a.customer_name("other", carol).await.unwrap(), None, "tenants apart");
        let (x, y) = (a.conversation("acme", carol).await, b.conversation("acme", carol).await);
        assert_ne!(x.unwrap(), y.unwrap());
    }

    /// A number the call binds is told to `note` before its binding is written; a cached name
    /// notes nothing, one found bound in the store withdraws the number it took; a binding
    /// that loses to another node's is withdrawn, and the other node's number is the answer.
    /// An opened conversation's owner, once remembered, is answered without the store.
    #[tokio::test]
    async fn a_number_bound_by_the_call_is_noted_before_its_binding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let numbers = numbers(&store, SHARDS);
        let notes = std::sync::Mutex::new(Vec::new());
        let noting = |customer: CustomerId, new: bool| {
            let bound = store.inner.customer_number("acme", "carol").unwrap();
            notes.lock().unwrap().push((customer, new, bound));
        };
        let carol = numbers.customer_noting("acme", "carol", noting).await.unwrap();
        assert_eq!(notes.lock().unwrap().as_slice(), [(carol, true, None)], "before its binding");
        numbers.customer_noting("acme", "carol", noting).await.unwrap();
        assert_eq!(notes.lock().unwrap().len(), 1, "cached: nothing noted");
        let other = Numbers::new(store.clone(), SHARDS);
        assert_eq!(other.customer_noting("acme", "carol", noting).await.unwrap(), carol);
        let noted = notes.lock().unwrap().clone();
        let [_, (taken, true, _), (withdrawn, false, _)] = noted.as_slice() else {
            panic!("bound before: the number taken is withdrawn, {noted:?}");
        };
        assert_eq!(taken, withdrawn);

        // Another node binds "dave" between this node's lookup and its binding.
        let notes = std::sync::Mutex::new(Vec::new());
        let racing = |customer: CustomerId, new: bool| {
            if new {
                store.inner.bind_customer("acme", "dave", 99).unwrap();
            }
            notes.lock().unwrap().push((customer, new));
        };
        let dave = numbers.customer_noting("acme", "dave", racing).await.unwrap();
        assert_eq!(dave, CustomerId(99), "the earlier binding wins");
        let noted = notes.lock().unwrap().clone();
        assert_eq!(noted.len(), 2, "{noted:?}");
        assert_eq!((noted[0].1, noted[1]), (true, (noted[0].0, false)), "noted, then withdrawn");

        numbers.remember_owner("acme", 77, carol);
        assert_eq!(numbers.owner("acme", 77).await.unwrap(), Some(carol), "no owner row needed");
    }

    /// Past the last sequence a number can carry: RESOURCE_EXHAUSTED, never a wrap. A
    /// customer number without a shard: INVALID_ARGUMENT.
    #[tokio::test]
    async fn running_out_is_resource_exhausted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let numbers = numbers(&store, SHARDS);
        let carol = numbers.customer("acme", "carol").await.unwrap();
        store.inner.reserve("acme", CONVERSATION_COUNTER, MAX_SEQUENCE).unwrap();
        let error = numbers.conversation("acme", carol).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
        assert!(error.to_string().contains("conversation"), "{error}");
        let error = numbers.conversation("acme", CustomerId(7)).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error}");
        // Out of customer numbers: a name bound before still has its own (on a node that
        // has not cached it), a new one is refused.
        store.inner.reserve("acme", CUSTOMER_COUNTER, MAX_SEQUENCE).unwrap();
        let other = Numbers::new(store.clone(), SHARDS);
        assert_eq!(other.customer("acme", "carol").await.unwrap(), carol);
        let error = other.customer("acme", "dave").await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
    }

    /// `Meshes` are built as before and hold the node's `Numbers`, with its shard count.
    #[tokio::test]
    async fn meshes_hold_the_nodes_numbers() {
        use crate::actors::MeshOptions;
        use crate::actors::meshes::Meshes;
        use crate::cluster::Ownership;

        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path());
        let ownership = Ownership::fixed("a".into(), SHARDS, [], Default::default(), None);
        let meshes = Meshes::new(store.clone(), ownership, MeshOptions::default());
        let carol = meshes.numbers().customer("acme", "carol").await.unwrap();
        assert_eq!(shard_in_number(carol.0), Some(customer_shard("acme", "carol", SHARDS)));
        assert!(Arc::ptr_eq(meshes.numbers(), meshes.numbers()));
    }

    /// The cache never holds more than its bound, and keeps what is used.
    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_used() {
        let mut cache = Generations::new(100);
        for i in 0..1_000u64 {
            cache.insert(i, i);
            assert_eq!(cache.get(&0), Some(0), "used all along");
            assert!(cache.len() <= 100, "{}", cache.len());
        }
        assert_eq!(cache.get(&1), None, "unused and old: evicted");
        assert_eq!(cache.get(&999), Some(999));
    }
}
