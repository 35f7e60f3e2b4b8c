//! Numbers the store hands out (issue 12's cut-over): a block allocator per (tenant,
//! counter), and the binding of a customer's name to its number.
//!
//! - **Counters.** One row per (tenant, counter) in `counters` holds the last number handed
//!   out (none: 0, so numbers start at 1). [`crate::Store::reserve`] moves it by `count` in
//!   one transaction and answers the first number of the block once that transaction is
//!   durable. The row only ever grows, so no number is handed out twice, across nodes,
//!   restarts and kill -9: a block whose caller died before using it is lost, never reissued.
//!   SQLite: a job of the single writer (it rides a group commit; the writer never races
//!   itself, so a read and an upsert suffice). PostgreSQL: one autocommitted
//!   `INSERT … ON CONFLICT DO UPDATE … RETURNING` on a connection of its own (a reader's),
//!   so the counter row is locked only for that statement, never across a group commit
//!   where two writers could take counter rows crosswise.
//! - **Customer numbers.** `customer_numbers` binds (tenant, name) to a number, unique both
//!   ways (primary key (tenant, name), unique index (tenant, number)).
//!   [`crate::Store::bind_customer`] inserts if absent and reads back what is bound: the
//!   earlier binding wins a race and both callers get its number. A number already bound to
//!   another name is refused ([`Error::NumberTaken`]): numbers come from the allocator, so
//!   that is a caller's bug.
//! - **Lifetime.** Counters and bindings are kept while the tenant lives (a binding is a
//!   name and a number, about 50 bytes a customer; retention deletes neither: a customer's
//!   history in the archive names its number). Nothing deletes a tenant's rows yet: tenant
//!   deletion leaves them, as it leaves the tenant's log.

use rusqlite::{Connection, OptionalExtension, params};

use crate::schema::{ordered, unsigned};
use crate::{Error, Result};

/// Version 8: the counters of the block allocator and the customers' numbers. Plain SQL that
/// PostgreSQL runs too.
pub(crate) const MIGRATE_V8: &str = "
CREATE TABLE counters (
    tenant  TEXT   NOT NULL,
    counter TEXT   NOT NULL,
    last    BIGINT NOT NULL,
    PRIMARY KEY (tenant, counter)
);
CREATE TABLE customer_numbers (
    tenant TEXT   NOT NULL,
    name   TEXT   NOT NULL,
    number BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE UNIQUE INDEX customer_numbers_by_number ON customer_numbers (tenant, number);
";

/// Reads a customer's number (either backend, `$1` tenant, `$2` name; SQLite takes `$n`).
pub(crate) const CUSTOMER_NUMBER: &str =
    "SELECT number FROM customer_numbers WHERE tenant = $1 AND name = $2";

/// Reads the name bound to a number (`$1` tenant, `$2` number).
pub(crate) const CUSTOMER_NAME: &str =
    "SELECT name FROM customer_numbers WHERE tenant = $1 AND number = $2";

/// Binds a name unless it is bound (or the number is): `$1` tenant, `$2` name, `$3` number.
pub(crate) const BIND: &str = "INSERT INTO customer_numbers (tenant, name, number)
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// PostgreSQL's reservation in one statement: `$1` tenant, `$2` counter, `$3` count; returns
/// the new last number.
pub(crate) const PG_RESERVE: &str = "INSERT INTO counters (tenant, counter, last)
     VALUES ($1, $2, $3)
     ON CONFLICT (tenant, counter) DO UPDATE SET last = counters.last + excluded.last
     RETURNING last";

/// Checks a reservation's count (at least 1, at most what a signed 64-bit column holds).
pub(crate) fn count(tenant: &str, counter: &str, count: u64) -> Result<i64> {
    if count == 0 {
        return Err(Error::EmptyReservation {
            tenant: tenant.to_owned(),
            counter: counter.to_owned(),
        });
    }
    ordered("reservation count", count)
}

/// The first number of a block that ends at `last` (inclusive) and holds `count`.
pub(crate) fn first_of(last: u64, count: u64) -> u64 {
    last - count + 1
}

/// The counter would pass the largest number a signed 64-bit column holds.
pub(crate) fn exhausted(tenant: &str, counter: &str) -> Error {
    Error::Exhausted { tenant: tenant.to_owned(), counter: counter.to_owned() }
}

/// SQLite, inside the writer's transaction: moves the counter by `count` and returns the
/// first number of the block.
pub(crate) fn sqlite_reserve(
    conn: &Connection,
    tenant: &str,
    counter: &str,
    requested: u64,
) -> Result<u64> {
    let n = count(tenant, counter, requested)?;
    let last: i64 = conn
        .prepare_cached("SELECT last FROM counters WHERE tenant = ?1 AND counter = ?2")?
        .query_row(params![tenant, counter], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    // In Rust, not SQL: SQLite turns an overflowing integer sum into a float.
    let new_last = last.checked_add(n).ok_or_else(|| exhausted(tenant, counter))?;
    conn.prepare_cached(
        "INSERT INTO counters (tenant, counter, last) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant, counter) DO UPDATE SET last = excluded.last",
    )?
    .execute(params![tenant, counter, new_last])?;
    Ok(first_of(unsigned(new_last), requested))
}

/// SQLite, inside the writer's transaction: binds `name` to `number` unless it is bound, and
/// returns what it is bound to.
pub(crate) fn sqlite_bind(conn: &Connection, tenant: &str, name: &str, number: u64) -> Result<u64> {
    let n = ordered("customer number", number)?;
    conn.prepare_cached(BIND)?.execute(params![tenant, name, n])?;
    let bound: Option<i64> = conn
        .prepare_cached(CUSTOMER_NUMBER)?
        .query_row(params![tenant, name], |row| row.get(0))
        .optional()?;
    bound.map(unsigned).ok_or_else(|| taken(tenant, name, number))
}

/// The number is bound to another name already.
pub(crate) fn taken(tenant: &str, name: &str, number: u64) -> Error {
    Error::NumberTaken { tenant: tenant.to_owned(), name: name.to_owned(), number }
}
