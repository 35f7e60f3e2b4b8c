//! The SQLite schema, connection settings, and how Rust values map onto columns.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::{Error, Result};

/// The schema this build writes. Bump it and add a step to `migrate` (here and in
/// `postgres.rs`) when the layout changes.
pub const SCHEMA_VERSION: i64 = 9;

/// How long a connection waits for a lock held by another connection before giving up. Only
/// a checkpoint or a second process opening the same directory holds one for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tables of version 1. Plain rowid tables rather than WITHOUT ROWID: rows carry blobs of
/// arbitrary size, which SQLite keeps better out of the primary-key b-tree.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
-- The command log: replayed after the snapshot on start-up.
CREATE TABLE IF NOT EXISTS log (
    tenant     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    request_id TEXT,
    command    BLOB    NOT NULL,
    response   BLOB    NOT NULL,
    PRIMARY KEY (tenant, seq)
);
-- The latest snapshot of each tenant; older ones are useless once the log before them is gone.
CREATE TABLE IF NOT EXISTS snapshots (
    tenant TEXT    NOT NULL PRIMARY KEY,
    seq    INTEGER NOT NULL,
    bytes  BLOB    NOT NULL
);
-- Idempotency: outlives the log records that snapshots delete. (Gone in version 3.)
CREATE TABLE IF NOT EXISTS requests (
    tenant     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    response   BLOB    NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_age ON requests (tenant, at_ms);
CREATE TABLE IF NOT EXISTS streams (
    tenant  TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    PRIMARY KEY (tenant, stream, seq)
);
-- Fencing: the newest epoch that owns each shard (see `Fence`).
CREATE TABLE IF NOT EXISTS fences (
    shard INTEGER NOT NULL PRIMARY KEY,
    epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    tenant       TEXT    NOT NULL,
    conversation INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    sender       TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    PRIMARY KEY (tenant, conversation, seq)
);
";

/// Version 2: the archive of ended conversations, and which conversation a stream entry is
/// about (NULL for entries written before, or about none), so retention can delete both.
const MIGRATE_V2: &str = "
CREATE TABLE archive (
    tenant       TEXT    NOT NULL,
    conversation INTEGER NOT NULL,
    customer     TEXT    NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    ended_at_ms  INTEGER NOT NULL,
    purge_at_ms  INTEGER NOT NULL,
    body         BLOB    NOT NULL,
    PRIMARY KEY (tenant, conversation)
);
-- History by customer, in conversation order.
CREATE INDEX archive_by_customer ON archive (tenant, customer, conversation);
-- Listings by end time.
CREATE INDEX archive_by_end ON archive (tenant, ended_at_ms);
-- Retention finds what is due without reading the rest.
CREATE INDEX archive_by_purge ON archive (tenant, purge_at_ms);
ALTER TABLE streams ADD COLUMN conversation INTEGER;
-- Retention deletes a purged conversation's stream entries. Partial: entries about no
-- conversation cost no index entry.
CREATE INDEX streams_by_conversation ON streams (tenant, conversation)
    WHERE conversation IS NOT NULL;
-- Customers out of the node's memory (see `CustomerRecord`).
CREATE TABLE customers (
    tenant   TEXT NOT NULL,
    customer TEXT NOT NULL,
    body     BLOB NOT NULL,
    PRIMARY KEY (tenant, customer)
);
";

/// Version 3: one row per command. The log record carries the idempotency answer (its
/// request id and response), found by index; the `requests` table, which held a second copy,
/// goes. Its entries whose log records a snapshot had already dropped come over as log
/// records with an empty command, below the snapshot: never replayed, found by
/// `find_response` until the window passes them. The index is partial: commands without a
/// request id cost no entry.
const MIGRATE_V3: &str = "
CREATE INDEX log_by_request ON log (tenant, request_id, seq) WHERE request_id IS NOT NULL;
INSERT INTO log (tenant, seq, at_ms, request_id, command, response)
    SELECT r.tenant, r.seq, r.at_ms, r.request_id, X'', r.response FROM requests r
    WHERE NOT EXISTS (SELECT 1 FROM log l WHERE l.tenant = r.tenant AND l.seq = r.seq);
DROP TABLE requests;
";

/// Version 4: stored customers' contact data (remark name, phone, e-mail) in columns, each
/// with a partial index `(tenant, field, customer)` for the customer search. Partial: a
/// customer without that field (most anonymous visitors) costs no entry. Rows stored before
/// keep empty columns until the customer is stored again. Plain SQL that PostgreSQL runs too.
pub(crate) const MIGRATE_V4: &str = "
ALTER TABLE customers ADD COLUMN remark_name TEXT NOT NULL DEFAULT '';
ALTER TABLE customers ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE customers ADD COLUMN email TEXT NOT NULL DEFAULT '';
CREATE INDEX customers_by_remark_name ON customers (tenant, remark_name, customer)
    WHERE remark_name <> '';
CREATE INDEX customers_by_phone ON customers (tenant, phone, customer) WHERE phone <> '';
CREATE INDEX customers_by_email ON customers (tenant, email, customer) WHERE email <> '';
";

/// Version 5: stream entries are retained by age alone (the node keeps them no longer than
/// the shortest transcript retention, so no message text outlives its transcript), so the
/// index that found a purged conversation's entries goes: it cost a write of a random leaf
/// for every stream entry, about one page per command. Plain SQL that PostgreSQL runs too.
pub(crate) const MIGRATE_V5: &str = "DROP INDEX IF EXISTS streams_by_conversation;";

/// Version 6: the durable state of actors (issue 12): one row per (tenant, kind, key),
/// upserted in the batch that changed it, deleted when the actor's work is over.
const MIGRATE_V6: &str = "
CREATE TABLE actors (
    tenant    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    actor_key TEXT    NOT NULL,
    epoch     INTEGER NOT NULL,
    body      BLOB    NOT NULL,
    PRIMARY KEY (tenant, kind, actor_key)
);
";

/// Version 7: shared streams (see "Streams with many writers" in the crate docs): the last
/// position the store assigned in each, kept apart from the entries so that trimming or
/// retention never lets a position be given twice. On PostgreSQL a row exists for every
/// stream that took a store-assigned append; on SQLite only for streams whose last entry a
/// trim or retention deleted (written before, each commit stored its streams' heads).
/// Plain SQL that PostgreSQL runs too.
pub(crate) const MIGRATE_V7: &str = "
CREATE TABLE stream_heads (
    tenant TEXT   NOT NULL,
    stream TEXT   NOT NULL,
    head   BIGINT NOT NULL,
    PRIMARY KEY (tenant, stream)
);
";

/// Version 9 (8 is the number allocator's): per-actor idempotency, the responses actors gave
/// by request id (kept for `request_retention`, deleted by retention by age, hence the
/// index), and which customer each conversation an actor opened belongs to (deleted with
/// its archive row).
const MIGRATE_V9: &str = "
CREATE TABLE responses (
    tenant     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    body       BLOB    NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX responses_by_age ON responses (tenant, at_ms);
CREATE TABLE conversation_owners (
    tenant       TEXT    NOT NULL,
    conversation INTEGER NOT NULL,
    customer     INTEGER NOT NULL,
    PRIMARY KEY (tenant, conversation)
);
";

/// Opens the connection the writer owns: creates the file if missing, switches to WAL, and
/// brings the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    // The writer's WAL frames go to the file in one write per commit (`crate::wal_vfs`).
    crate::wal_vfs::register().map_err(Error::Vfs)?;
    let mut conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), crate::wal_vfs::NAME)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer nor see a half-written commit.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NotWal(mode));
    }
    durable(&conn)?;
    // The VFS shim is safe only if every commit syncs the WAL before publishing its frames.
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
    if synchronous < 2 {
        return Err(Error::NotSynchronousFull(synchronous));
    }
    // No automatic checkpoint on the writer's connection: see `crate::checkpoint`.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection to a database the writer has already set up.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    // No CREATE: the writer made the file; a reader finding none is a bug worth an error.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read-write flags because WAL readers need to write the shared-memory index; query_only
    // keeps this connection from ever writing rows behind the writer's back.
    conn.pragma_update(None, "query_only", true)?;
    // Readers probe indexes (idempotency, customers, archive pages): a small page cache each
    // keeps the node's memory flat as the database grows; the OS page cache serves the rest.
    conn.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    durable(&conn)?;
    Ok(conn)
}

/// The checkpointer's connection (see `crate::checkpoint`): it only runs checkpoints, which
/// sync the database file as `synchronous=FULL` says.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    durable(&conn)?;
    Ok(conn)
}

/// The checkpointer copies the WAL back into the database once it holds this many pages (SQLite's
/// default is 1,000, 4 MiB). The WAL file is reused; it grows past this size while the
/// checkpointer's passes run beside the commits (17 MB at 750 arrivals/s; 43-55 MB with 10,000
/// pages), and recovery after a crash reads at most that much. Not longer: the writer finishes each
/// checkpoint itself (`crate::checkpoint`), and what it copies and syncs then is what was committed
/// during the checkpointer's last pass, which grows with the pass. At 750 arrivals/s, 10,000 pages
/// held commits for up to 29 ms several times a second (the p99 of arrival → assignment 60 ms);
/// 2,500 for up to 14 ms (46 ms), at the same CPU per command. A page rewritten by many commits in
/// between is still copied once per checkpoint.
pub(crate) const WAL_CHECKPOINT_PAGES: u32 = 2_500;

/// Prepared statements kept per connection: the writer's retention and snapshot jobs use
/// about twenty, and rusqlite's default of 16 made them push the per-command inserts out, to be
/// prepared again on the next commit.
const STATEMENT_CACHE: usize = 64;

/// Page cache of one read connection, in KiB as SQLite takes it (negative: a size, not pages).
const READER_CACHE_KIB: i64 = -512;

/// `synchronous` is per connection. FULL syncs the WAL on every commit, so an acknowledged
/// commit survives power loss, not only a killed process (NORMAL would survive only the latter).
fn durable(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Creates the tables if missing, or brings an older database up to [`SCHEMA_VERSION`] one
/// step at a time, all in one transaction with the version bump.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM schema_version", [], |row| row.get(0))?;
    let mut version = match found {
        // A new database: version 1's tables, then every step.
        None => {
            tx.execute_batch(SCHEMA_V1)?;
            1
        }
        Some(found) if found > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        Some(found) => found,
    };
    let found = found.unwrap_or(0);
    if version < 2 {
        tx.execute_batch(MIGRATE_V2)?;
        version = 2;
    }
    if version < 3 {
        tx.execute_batch(MIGRATE_V3)?;
        version = 3;
    }
    if version < 4 {
        tx.execute_batch(MIGRATE_V4)?;
        version = 4;
    }
    if version < 5 {
        tx.execute_batch(MIGRATE_V5)?;
        version = 5;
    }
    if version < 6 {
        tx.execute_batch(MIGRATE_V6)?;
        version = 6;
    }
    if version < 7 {
        tx.execute_batch(MIGRATE_V7)?;
        version = 7;
    }
    if version < 8 {
        tx.execute_batch(crate::numbers::MIGRATE_V8)?;
        version = 8;
    }
    if version < 9 {
        tx.execute_batch(MIGRATE_V9)?;
        version = 9;
    }
    if version != found {
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
    }
    tx.commit()?;
    Ok(())
}

/// A sequence number or time for an ordered column. Refused above `i64::MAX` rather than
/// wrapped, which would sort it before zero.
pub(crate) fn ordered(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::OutOfRange { what, value })
}

/// A bound in a query: anything above `i64::MAX` is past every stored value.
pub(crate) fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// [`Store::actor_tenants`](crate::Store::actor_tenants): the next tenant with an actor
/// row after the previous one, one primary-key probe each (a skip scan written out, as
/// neither backend plans one for `DISTINCT`), at most the limit. `{p}`: the backend's
/// placeholder prefix.
pub(crate) fn actor_tenants_sql(p: char) -> String {
    format!(
        "WITH RECURSIVE next(tenant, n) AS (
             SELECT (SELECT MIN(tenant) FROM actors WHERE tenant > {p}1), CAST(1 AS BIGINT)
             UNION ALL
             SELECT (SELECT MIN(a.tenant) FROM actors a WHERE a.tenant > next.tenant), next.n + 1
             FROM next WHERE next.tenant IS NOT NULL AND next.n < {p}2
         )
         SELECT tenant FROM next WHERE tenant IS NOT NULL"
    )
}

/// [`Store::actor_keys`](crate::Store::actor_keys) without and with an upper bound.
pub(crate) fn actor_keys_sql(p: char, until: bool) -> String {
    let (upper, limit) =
        if until { (format!(" AND actor_key <= {p}4"), 5) } else { (String::new(), 4) };
    format!(
        "SELECT actor_key FROM actors
         WHERE tenant = {p}1 AND kind = {p}2 AND actor_key > {p}3{upper}
         ORDER BY actor_key LIMIT {p}{limit}"
    )
}

/// A count in a query (`LIMIT`, `OFFSET`).
pub(crate) fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An identifier only ever compared for equality (a conversation id): every `u64` maps to
/// one `i64` and back.
pub(crate) fn id(value: u64) -> i64 {
    value.cast_signed()
}

/// Reads back what [`ordered`] or [`id`] stored.
pub(crate) fn unsigned(value: i64) -> u64 {
    value.cast_unsigned()
}

/// A parameter of an archive listing, for either backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// Columns of `archive` in the order [`crate::Archived`] is read back from them.
pub(crate) const ARCHIVE_COLUMNS: &str =
    "conversation, customer, opened_at_ms, ended_at_ms, purge_at_ms, body";

/// The SQL of one archive listing and its parameters; `$n` (PostgreSQL) or `?n` (SQLite)
/// placeholders after `sigil`. Only the bounds the query sets appear, so each shape gets a
/// plan of its own. On SQLite the index is named (`INDEXED BY`): without statistics it would
/// prefer walking the primary key in conversation order, which for a time bound can read the
/// whole tenant; PostgreSQL's planner has statistics and chooses for itself.
pub(crate) fn archive_listing(
    sigil: char,
    tenant: &str,
    query: &crate::ArchiveQuery,
) -> (String, Vec<Param>) {
    let mut params = vec![Param::Text(tenant.to_owned())];
    let mut conditions = vec![format!("tenant = {sigil}1")];
    let mut add = |column: &str, op: &str, param: Param| {
        params.push(param);
        conditions.push(format!("{column} {op} {sigil}{}", params.len()));
    };
    // Archived conversation ids are stored by `ordered` (at most `i64::MAX`), so SQL order is
    // numeric order, and there the stored value is the one `id` gives transcripts and streams.
    if let Some(customer) = &query.customer {
        add("customer", "=", Param::Text(customer.clone()));
    }
    add("conversation", ">", Param::Int(bound(query.after_conversation)));
    if let Some(from) = query.ended_from_ms {
        add("ended_at_ms", ">=", Param::Int(bound(from)));
    }
    if let Some(before) = query.ended_before_ms {
        add("ended_at_ms", "<", Param::Int(bound(before)));
    }
    if let Some(before) = query.opened_before_ms {
        add("opened_at_ms", "<=", Param::Int(bound(before)));
    }
    params.push(Param::Int(count(query.limit)));
    let limit = params.len();
    let hint = match sigil {
        '?' if query.customer.is_some() => " INDEXED BY archive_by_customer",
        '?' if query.ended_from_ms.is_some() || query.ended_before_ms.is_some() => {
            " INDEXED BY archive_by_end"
        }
        _ => "",
    };
    let sql = format!(
        "SELECT {ARCHIVE_COLUMNS} FROM archive{hint} WHERE {} ORDER BY conversation LIMIT {sigil}{limit}",
        conditions.join(" AND ")
    );
    (sql, params)
}

/// A statement and its parameters.
pub(crate) type Sql = (String, Vec<Param>);

/// The SQL of an [`crate::ArchiveScan`]: the query for the last index entry of its window
/// (`conversation, opened_at_ms`, with `OFFSET window - 1`) and the query for its matches,
/// each with its parameters, `$n` or `?n` placeholders after `sigil`.
pub(crate) fn archive_scan(
    sigil: char,
    tenant: &str,
    scan: &crate::ArchiveScan,
) -> (Sql, impl Fn(Option<u64>) -> Sql + Send + use<>) {
    let mut params = vec![Param::Text(tenant.to_owned())];
    let mut walk = vec![format!("tenant = {sigil}1")];
    if let Some(customer) = &scan.customer {
        params.push(Param::Text(customer.clone()));
        walk.push(format!("customer = {sigil}{}", params.len()));
    }
    params.push(Param::Int(bound(scan.before_conversation)));
    walk.push(format!("conversation < {sigil}{}", params.len()));
    let hint = match (sigil, &scan.customer) {
        ('?', Some(_)) => " INDEXED BY archive_by_customer",
        _ => "",
    };
    let mut floor_params = params.clone();
    floor_params.push(Param::Int(count(scan.window.saturating_sub(1))));
    let floor = (
        format!(
            "SELECT conversation, opened_at_ms FROM archive{hint} WHERE {} \
             ORDER BY conversation DESC LIMIT 1 OFFSET {sigil}{}",
            walk.join(" AND "),
            floor_params.len()
        ),
        floor_params,
    );
    let bounds = [
        ("opened_at_ms", ">=", scan.opened_from_ms),
        ("opened_at_ms", "<", scan.opened_before_ms),
        ("ended_at_ms", ">=", scan.ended_from_ms),
        ("ended_at_ms", "<", scan.ended_before_ms),
    ];
    let limit = scan.limit;
    let matches = move |floor: Option<u64>| {
        let (mut params, mut conditions) = (params.clone(), walk.clone());
        let mut add = |column: &str, op: &str, value: u64| {
            params.push(Param::Int(bound(value)));
            conditions.push(format!("{column} {op} {sigil}{}", params.len()));
        };
        if let Some(floor) = floor {
            add("conversation", ">=", floor);
        }
        for (column, op, value) in bounds {
            if let Some(value) = value {
                add(column, op, value);
            }
        }
        params.push(Param::Int(count(limit)));
        let sql = format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archive{hint} WHERE {} \
             ORDER BY conversation DESC LIMIT {sigil}{}",
            conditions.join(" AND "),
            params.len()
        );
        (sql, params)
    };
    (floor, matches)
}

/// Where an [`crate::ArchiveScan`] continues, from its matches and the last entry of its
/// window (`None`: the window reached the tenant's or customer's oldest conversation).
pub(crate) fn archive_resume(
    scan: &crate::ArchiveScan,
    rows: &[crate::Archived],
    floor: Option<(u64, u64)>,
) -> Option<u64> {
    if rows.len() >= scan.limit
        && let Some(last) = rows.last()
    {
        return Some(last.conversation);
    }
    let (conversation, opened_at_ms) = floor?;
    // Ids grow with the tenant's clock: below a conversation opened too early, all were.
    if scan.opened_from_ms.is_some_and(|from| opened_at_ms < from) {
        return None;
    }
    Some(conversation)
}

/// Columns of `customers` in the order [`crate::CustomerRecord`] is read back from them.
pub(crate) const CUSTOMER_COLUMNS: &str = "customer, body, remark_name, phone, email";

/// The SQL of a [`crate::Store::find_customers`] with `sigil` placeholders: tenant, value,
/// after, limit. The partial index's condition is repeated so that the planner may use it.
pub(crate) fn find_customers_sql(sigil: char, field: crate::ContactField) -> String {
    let column = field.column();
    let hint =
        if sigil == '?' { format!(" INDEXED BY customers_by_{column}") } else { String::new() };
    format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers{hint} \
         WHERE tenant = {sigil}1 AND {column} = {sigil}2 AND {column} <> '' \
         AND customer > {sigil}3 ORDER BY customer LIMIT {sigil}4"
    )
}
