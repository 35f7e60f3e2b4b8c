//! The block allocator (`Store::reserve`) and customer numbers (`Store::bind_customer`),
//! against each backend, and on PostgreSQL with two stores (two nodes) over one database.

#[macro_use]
mod common;

use std::sync::{Arc, Barrier};

use common::{Backend, command, open_pg};
use switchboard_store::testing::PgServer;
use switchboard_store::{Error, Store};

/// Reserves blocks of `sizes` one after another from `threads` threads at once; returns every
/// block `(first, count)` handed out.
fn reserve_concurrently(
    stores: &[Arc<dyn Store>],
    threads: usize,
    sizes: &[u64],
) -> Vec<(u64, u64)> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, barrier) = (stores[t % stores.len()].clone(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    sizes
                        .iter()
                        .map(|&count| (store.reserve("acme", "customer", count).unwrap(), count))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The blocks are disjoint and together cover exactly 1..=total.
fn assert_tiles(mut blocks: Vec<(u64, u64)>) {
    blocks.sort_unstable();
    let mut next = 1;
    for (first, count) in &blocks {
        assert_eq!(*first, next, "blocks {blocks:?}");
        next += count;
    }
}

/// Blocks follow each other per (tenant, counter), from 1; counters and tenants are apart;
/// they survive reopening; a reservation may share a commit with batches.
async fn blocks_never_overlap_and_survive_reopening<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    assert_eq!(store.reserve("acme", "customer", 1024).unwrap(), 1);
    assert_eq!(store.reserve("acme", "customer", 1024).unwrap(), 1025);
    assert_eq!(store.reserve("acme", "customer", 1).unwrap(), 2049);
    assert_eq!(store.reserve("acme", "conversation", 5).unwrap(), 1);
    assert_eq!(store.reserve("other", "customer", 3).unwrap(), 1);
    let empty = store.reserve("acme", "customer", 0);
    assert!(matches!(empty, Err(Error::EmptyReservation { .. })), "{empty:?}");
    let huge = store.reserve("acme", "conversation", u64::MAX);
    assert!(matches!(huge, Err(Error::OutOfRange { .. })), "{huge:?}");
    // Batches in flight while reserving: a reservation rides their commit (SQLite) or not.
    let pending: Vec<_> = (1..=20).map(|seq| store.append(command("acme", seq))).collect();
    assert_eq!(store.reserve("acme", "conversation", 10).unwrap(), 6);
    for pending in pending {
        pending.await.unwrap();
    }
    drop(store);
    let store = B::open(&place);
    assert_eq!(store.reserve("acme", "customer", 10).unwrap(), 2050);
    assert_eq!(store.reserve("acme", "conversation", 1).unwrap(), 16);
    // Concurrent callers of one store get disjoint blocks covering what they asked for.
    let blocks =
        reserve_concurrently(std::slice::from_ref(&store.store), 4, &[1, 7, 1024, 3, 2, 64]);
    assert_eq!(blocks.len(), 24);
    let mut all = blocks.clone();
    all.push((1, 2059)); // everything reserved before
    assert_tiles(all);
}

/// The counter refuses to pass what a signed 64-bit column holds, and stays usable below it.
async fn an_exhausted_counter_is_refused<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let big = u64::try_from(i64::MAX).unwrap() - 10;
    assert_eq!(store.reserve("acme", "customer", big).unwrap(), 1);
    let over = store.reserve("acme", "customer", 20);
    assert!(matches!(over, Err(Error::Exhausted { .. })), "{over:?}");
    assert_eq!(store.reserve("acme", "customer", 10).unwrap(), big + 1, "nothing was taken");
    let full = store.reserve("acme", "customer", 1);
    assert!(matches!(full, Err(Error::Exhausted { .. })), "{full:?}");
}

/// A name binds once: the earlier binding wins (sequentially and in a race of threads), both
/// callers get its number, and the reverse lookup names it; the loser's number stays free.
async fn the_earlier_binding_wins<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    assert_eq!(store.customer_number("acme", "carol").unwrap(), None);
    assert_eq!(store.bind_customer("acme", "carol", 7).unwrap(), 7);
    assert_eq!(store.bind_customer("acme", "carol", 8).unwrap(), 7, "bound already");
    assert_eq!(store.customer_number("acme", "carol").unwrap(), Some(7));
    assert_eq!(store.customer_name("acme", 7).unwrap().as_deref(), Some("carol"));
    assert_eq!(store.customer_name("acme", 8).unwrap(), None);
    assert_eq!(store.customer_name("acme", u64::MAX).unwrap(), None);
    // Tenants are apart.
    assert_eq!(store.customer_number("other", "carol").unwrap(), None);
    assert_eq!(store.bind_customer("other", "carol", 8).unwrap(), 8);
    // A number held by another name is refused.
    let taken = store.bind_customer("acme", "dave", 7);
    assert!(matches!(taken, Err(Error::NumberTaken { number: 7, .. })), "{taken:?}");
    assert_eq!(store.customer_number("acme", "dave").unwrap(), None);

    let stores = [store.store.clone()];
    let races = bind_races(&stores, 50);
    drop(store);
    let store = B::open(&place);
    for (name, number) in races {
        assert_eq!(store.customer_number("acme", &name).unwrap(), Some(number), "{name}");
    }
    assert_eq!(store.customer_number("acme", "carol").unwrap(), Some(7));
}

/// `rounds` races: two threads (on `stores`, alternating) bind one new name to different
/// numbers at once. Each race has one winner, both callers get its number, and only it is
/// bound. Returns the winners.
fn bind_races(stores: &[Arc<dyn Store>], rounds: u64) -> Vec<(String, u64)> {
    (0..rounds)
        .map(|round| {
            let name = format!("racer-{round}");
            let barrier = Barrier::new(2);
            let got: Vec<u64> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..2u64)
                    .map(|t| {
                        let store = stores[t as usize % stores.len()].clone();
                        let (name, barrier) = (&name, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            store.bind_customer("acme", name, 1_000 + round * 2 + t).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(got[0], got[1], "{name}: both callers get the winner's number");
            let (winner, loser) =
                (got[0], if got[0].is_multiple_of(2) { got[0] + 1 } else { got[0] - 1 });
            let store = &stores[0];
            assert_eq!(store.customer_name("acme", winner).unwrap().as_deref(), Some(&*name));
            assert_eq!(store.customer_name("acme", loser).unwrap(), None, "{name}");
            (name, winner)
        })
        .collect()
}

/// An older database gains the tables when opened.
async fn an_old_database_gains_counters_and_customer_numbers<B: Backend>() {
    let place = B::place();
    B::execute(&place, B::SCHEMA_V1);
    let store = B::open(&place);
    assert_eq!(store.reserve("acme", "customer", 2).unwrap(), 1);
    assert_eq!(store.bind_customer("acme", "carol", 1).unwrap(), 1);
    const { assert!(switchboard_store::SCHEMA_VERSION >= 8, "counters and bindings came with 8") };
}

both!(
    blocks_never_overlap_and_survive_reopening,
    an_exhausted_counter_is_refused,
    the_earlier_binding_wins,
    an_old_database_gains_counters_and_customer_numbers,
);

/// Two stores over one PostgreSQL database (two nodes), four threads each reserving blocks of
/// assorted sizes at once: the blocks are disjoint and cover exactly what was asked for.
#[test]
fn two_stores_on_one_database_reserve_disjoint_blocks() {
    let url = PgServer::shared().database();
    let stores: Vec<Arc<dyn Store>> =
        (0..2).map(|_| Arc::new(open_pg(&url)) as Arc<dyn Store>).collect();
    let sizes: Vec<u64> = (0..40).map(|i| [1, 1024, 3, 17][i % 4]).collect();
    let blocks = reserve_concurrently(&stores, 4, &sizes);
    assert_eq!(blocks.len(), 160);
    let total: u64 = blocks.iter().map(|(_, count)| count).sum();
    assert_tiles(blocks);
    // A third store, opened later, goes on after all of them.
    assert_eq!(open_pg(&url).reserve("acme", "customer", 1).unwrap(), total + 1);
}

/// Races to bind one name from two stores over one database: one winner each time.
#[test]
fn two_stores_on_one_database_agree_on_each_binding() {
    let url = PgServer::shared().database();
    let stores: Vec<Arc<dyn Store>> =
        (0..2).map(|_| Arc::new(open_pg(&url)) as Arc<dyn Store>).collect();
    for (name, number) in bind_races(&stores, 50) {
        assert_eq!(stores[1].customer_number("acme", &name).unwrap(), Some(number));
    }
}

/// Actor rows (a router's is rewritten whole on every flush) are not compressed with pglz:
/// lz4 where the server has it, else stored as they are; set without a schema version, so
/// a node of the previous version still opens the database.
#[test]
fn actor_rows_are_not_compressed_with_pglz() {
    let url = PgServer::shared().database();
    drop(open_pg(&url));
    drop(open_pg(&url)); // found set: nothing to do
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT attcompression::text, attstorage::text FROM pg_attribute
             WHERE attrelid = 'actors'::regclass AND attname = 'body'",
            &[],
        )
        .unwrap();
    let (compression, storage): (String, String) = (row.get(0), row.get(1));
    assert!(
        compression == "l" || storage == "e",
        "compression {compression:?}, storage {storage:?}"
    );
    let version: i64 =
        client.query_one("SELECT MAX(version) FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(version, switchboard_store::SCHEMA_VERSION);
}
