//! The rows of consecutive batches of one PostgreSQL group commit, gathered by table and
//! written with one statement: every table an array per column, `unnest`ed by a
//! data-modifying CTE each. One round trip per run of batches, instead of one per row (a
//! command of an actor tenant writes five to eight rows; with one statement per row the
//! round trips were a quarter of a node's CPU and most of the commit's latency). The statement
//! names only the tables the run writes (its *shape*, [`Shapes`]: one prepared statement per
//! shape a connection meets, a handful): a CTE costs the server its setup, the table and its
//! indexes opened, even when its arrays are empty, and a run of actor steps writes three or
//! four of the nine (the nine every time cost PostgreSQL 7–16% more CPU in a three-node run).
//!
//! The CTEs of one statement all see the snapshot from before it and none sees another's
//! rows, so what one batch's rows would do to another's is settled here first: upserts of
//! the same key (archive, customers, actors, responses) keep the last, as statements in
//! order would; an actor deleted and written again ends as its last operation says. Two inserts that would
//! collide (a log or stream position, a message seq) still collide, and the caller redoes the
//! group a job at a time to find whose it was. A batch that purges a transcript is written on
//! its own (`Rows::takes` says no), after the rows gathered before it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use postgres::Statement;
use postgres::types::ToSql;

use crate::pg_conn::{Params, PgConn};

use crate::schema::{id, ordered};
use crate::{Batch, Response, Result};

/// The statement's nine CTEs, one per table (and one for the actors' deletions), each with
/// its parameters numbered from `#1`; [`statement_for`] joins those a run of batches needs,
/// numbering their parameters on.
const PARTS: [&str; 9] = [
    "l AS (INSERT INTO log (tenant, seq, at_ms, request_id, command, response)
       SELECT * FROM unnest(#1::text[], #2::int8[], #3::int8[], #4::text[], #5::bytea[],
                            #6::bytea[]))",
    "s AS (INSERT INTO streams (tenant, stream, seq, at_ms, payload, conversation)
       SELECT * FROM unnest(#1::text[], #2::text[], #3::int8[], #4::int8[], #5::bytea[],
                            #6::int8[]))",
    "m AS (INSERT INTO messages (tenant, conversation, seq, at_ms, sender, text, kind)
       SELECT * FROM unnest(#1::text[], #2::int8[], #3::int8[], #4::int8[], #5::text[],
                            #6::text[], #7::text[]))",
    "a AS (INSERT INTO archive
          (tenant, conversation, customer, opened_at_ms, ended_at_ms, purge_at_ms, body)
       SELECT * FROM unnest(#1::text[], #2::int8[], #3::text[], #4::int8[], #5::int8[],
                            #6::int8[], #7::bytea[])
       ON CONFLICT (tenant, conversation) DO UPDATE SET
          customer = excluded.customer, opened_at_ms = excluded.opened_at_ms,
          ended_at_ms = excluded.ended_at_ms, purge_at_ms = excluded.purge_at_ms,
          body = excluded.body)",
    "c AS (INSERT INTO customers (tenant, customer, body, remark_name, phone, email)
       SELECT * FROM unnest(#1::text[], #2::text[], #3::bytea[], #4::text[], #5::text[],
                            #6::text[])
       ON CONFLICT (tenant, customer) DO UPDATE SET body = excluded.body,
          remark_name = excluded.remark_name, phone = excluded.phone, email = excluded.email)",
    "w AS (INSERT INTO actors (tenant, kind, actor_key, epoch, body)
       SELECT * FROM unnest(#1::text[], #2::text[], #3::text[], #4::int8[], #5::bytea[])
       ON CONFLICT (tenant, kind, actor_key) DO UPDATE SET
          epoch = excluded.epoch, body = excluded.body)",
    "d AS (DELETE FROM actors USING unnest(#1::text[], #2::text[], #3::text[])
          AS gone (tenant, kind, actor_key)
       WHERE actors.tenant = gone.tenant AND actors.kind = gone.kind
         AND actors.actor_key = gone.actor_key)",
    concat!(
        "r AS (INSERT INTO responses (tenant, request_id, at_ms, body)
       SELECT * FROM unnest(#1::text[], #2::text[], #3::int8[], #4::bytea[])
       ON CONFLICT (tenant, request_id) DO UPDATE SET
          at_ms = excluded.at_ms, body = excluded.body
       WHERE ",
        pg_response_replaces!(),
        ")"
    ),
    "o AS (INSERT INTO conversation_owners (tenant, conversation, customer)
       SELECT * FROM unnest(#1::text[], #2::int8[], #3::int8[])
       ON CONFLICT (tenant, conversation) DO NOTHING)",
];

/// The statement writing the tables in `shape` (bit i: [`PARTS`]`[i]`), their parameters
/// numbered on in that order: a command of an actor tenant writes three or four of the nine
/// tables, and each CTE costs the server its setup (the table and its indexes opened) even
/// with no rows, as each array costs both sides its encoding.
fn statement_for(shape: u16) -> String {
    let mut next = 1;
    let mut ctes = Vec::new();
    let parts = PARTS.iter().enumerate().filter(|&(i, _)| shape & (1 << i) != 0);
    for part in parts.map(|(_, part)| part) {
        let count = part.matches('#').count();
        let mut text = (*part).to_owned();
        // Descending, so that `#1` never eats the start of a longer number (there are at most 7).
        for k in (1..=count).rev() {
            text = text.replace(&format!("#{k}"), &format!("${}", next + k - 1));
        }
        ctes.push(text);
        next += count;
    }
    format!("WITH\n {}\nSELECT 1", ctes.join(",\n "))
}

/// The prepared statement of each shape a connection has written so far (a handful).
#[derive(Default)]
pub(crate) struct Shapes(RefCell<HashMap<u16, Statement>>);

impl Shapes {
    fn get(&self, tx: &mut PgConn, shape: u16) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.0.borrow().get(&shape) {
            return Ok(statement.clone());
        }
        // A protocol-level prepared statement: not undone if this transaction rolls back.
        let statement = tx.prepare(&statement_for(shape))?;
        self.0.borrow_mut().insert(shape, statement.clone());
        Ok(statement)
    }
}

/// Locks the rows of the given shards (ascending, as the rows are inserted in that order) and
/// returns each one's epoch; a missing row is made, at epoch 0, so it can be locked.
pub(crate) const LOCK_FENCES: &str = "
INSERT INTO shard_fences (shard, epoch)
SELECT shard, 0 FROM unnest($1::int8[]) AS wanted (shard) ORDER BY shard
ON CONFLICT (shard) DO UPDATE SET epoch = shard_fences.epoch
RETURNING shard, epoch";

/// Share-locks the rows of the given shards (ascending) and returns each one's epoch. A
/// writer that raises no fence needs only that the row's epoch not change before it commits:
/// a share lock holds a raise (an update) off until then, as the exclusive lock above does,
/// and writes no new row version. Two writers' share locks on one row do not wait for each
/// other (they meet only while ownership moves).
///
/// Four scalar parameters, not an array: with `= ANY($1)` the server planned the statement
/// again on every call (its plan for an array of known length always looked cheaper than the
/// generic plan's guess of ten, about 50 µs of planning a commit); with a fixed arity the
/// generic plan is taken. A group touches 2.5 shards on average; more go in chunks of four,
/// ascending, and a short chunk repeats its last shard (the index scan reads each key once).
pub(crate) const SHARE_FENCES: &str = "
SELECT shard, epoch FROM shard_fences WHERE shard IN ($1, $2, $3, $4) ORDER BY shard FOR SHARE";

/// Shards per [`SHARE_FENCES`] call.
pub(crate) const SHARED_PER_CALL: usize = 4;

/// The name [`SHARE_FENCES`] is prepared under at the SQL level on the writer's connection
/// ([`prepare`]), so that a simple-query message can run it right after `BEGIN`
/// ([`begin_sharing`]).
const SHARE_FENCES_PREPARED: &str = "switchboard_share_fences";

/// `BEGIN` and [`SHARE_FENCES`] for `shards` (ascending; four to a call), as one simple-query
/// message: one round trip where two were. The shards are numbers, inlined.
pub(crate) fn begin_sharing(shards: &[u32]) -> String {
    let mut message = "BEGIN".to_owned();
    for chunk in shards.chunks(SHARED_PER_CALL) {
        let [a, b, c, d] = padded(chunk);
        message += &format!("; EXECUTE {SHARE_FENCES_PREPARED}({a}, {b}, {c}, {d})");
    }
    message
}

/// [`SHARE_FENCES`]' parameters for a chunk of one to four shards: a short chunk repeats its
/// last shard.
fn padded(chunk: &[u32]) -> [i64; SHARED_PER_CALL] {
    debug_assert!((1..=SHARED_PER_CALL).contains(&chunk.len()), "{chunk:?}");
    let last = chunk[chunk.len() - 1];
    std::array::from_fn(|i| i64::from(chunk.get(i).copied().unwrap_or(last)))
}

/// The epochs of `found` ((shard, epoch) rows, as [`SHARE_FENCES`] answers them) for `chunk`,
/// in order; `None` unless the rows match the chunk one for one (both ascending, each shard
/// once: otherwise a shard had no row, and nothing was locked for it).
fn matched<I>(found: I, chunk: &[u32]) -> Option<Vec<i64>>
where
    I: ExactSizeIterator<Item = Option<(i64, i64)>>,
{
    if found.len() != chunk.len() {
        return None;
    }
    found
        .zip(chunk)
        .map(|(row, &shard)| row.filter(|&(at, _)| at == i64::from(shard)).map(|(_, e)| e))
        .collect()
}

/// The epochs [`begin_sharing`]'s message answered for `shards`, in order; `None` if a shard
/// had no row (nothing was locked for it).
pub(crate) fn shared_epochs(
    messages: &[postgres::SimpleQueryMessage],
    shards: &[u32],
) -> Option<Vec<i64>> {
    let number = |row: &postgres::SimpleQueryRow, i: usize| row.get(i)?.parse::<i64>().ok();
    let found: Vec<Option<(i64, i64)>> = messages
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(number(row, 0).zip(number(row, 1))),
            _ => None,
        })
        .collect();
    matched(found.into_iter(), shards)
}

/// One column per parameter, borrowed from the group's batches.
#[derive(Default)]
pub(crate) struct Rows<'a> {
    empty: bool,
    log: LogColumns<'a>,
    streams: StreamColumns<'a>,
    messages: Messages<'a>,
    /// By (tenant, conversation): the last write wins. (Ordered, so two writers upsert
    /// shared rows in one order.)
    archive: BTreeMap<(&'a str, i64), ArchiveRow<'a>>,
    /// By (tenant, customer).
    customers: BTreeMap<(&'a str, &'a str), CustomerRow<'a>>,
    /// By (tenant, kind, key): the last write, or `None` for a delete.
    actors: BTreeMap<ActorKey<'a>, Option<(i64, &'a [u8])>>,
    /// By (tenant, request id): the last write wins.
    responses: BTreeMap<(&'a str, &'a str), (i64, &'a [u8])>,
    owners: (Vec<&'a str>, Vec<i64>, Vec<i64>),
}

// The columns of each table, in the statement's order.
type Text<'a> = Vec<&'a str>;
type Bytes<'a> = Vec<&'a [u8]>;
type LogColumns<'a> = (Text<'a>, Vec<i64>, Vec<i64>, Vec<Option<&'a str>>, Bytes<'a>, Bytes<'a>);
type StreamColumns<'a> = (Text<'a>, Text<'a>, Vec<i64>, Vec<i64>, Bytes<'a>, Vec<Option<i64>>);
type Messages<'a> = (Text<'a>, Vec<i64>, Vec<i64>, Vec<i64>, Text<'a>, Text<'a>, Text<'a>);
type ArchiveColumns<'a> = (Text<'a>, Vec<i64>, Text<'a>, Vec<i64>, Vec<i64>, Vec<i64>, Bytes<'a>);
type CustomerColumns<'a> = (Text<'a>, Text<'a>, Bytes<'a>, Text<'a>, Text<'a>, Text<'a>);
type ActorColumns<'a> = (Text<'a>, Text<'a>, Text<'a>, Vec<i64>, Bytes<'a>);
type ResponseColumns<'a> = (Text<'a>, Text<'a>, Vec<i64>, Bytes<'a>);
/// customer, opened, ended, purge, body
type ArchiveRow<'a> = (&'a str, i64, i64, i64, &'a [u8]);
/// body, remark name, phone, email
type CustomerRow<'a> = (&'a [u8], &'a str, &'a str, &'a str);
/// tenant, kind, key
type ActorKey<'a> = (&'a str, &'a str, &'a str);

impl<'a> Rows<'a> {
    pub(crate) fn new() -> Rows<'a> {
        Rows { empty: true, ..Rows::default() }
    }

    /// Whether `batch` can join the rows gathered so far (a purge is written on its own).
    pub(crate) fn takes(batch: &Batch) -> bool {
        batch.purge_conversations.is_empty()
    }

    /// Gathers `batch`'s rows, `positions` those of its appends. On an error (a value out of
    /// range) nothing is gathered for sure, and the caller redoes the group a job at a time.
    pub(crate) fn add(&mut self, batch: &'a Batch, positions: &[u64]) -> Result<()> {
        let tenant = batch.tenant.as_str();
        for record in &batch.log {
            let (t, seq, at, request, command, response) = &mut self.log;
            seq.push(ordered("log seq", record.seq)?);
            at.push(ordered("log at_ms", record.at_ms)?);
            t.push(tenant);
            request.push(record.request_id.as_deref());
            command.push(&record.command);
            response.push(&record.response);
        }
        let appends = batch.appends.iter().zip(positions).map(|(a, &position)| {
            (a.stream.as_str(), position, a.at_ms, a.payload.as_slice(), a.conversation)
        });
        let entries = batch
            .streams
            .iter()
            .map(|e| (e.stream.as_str(), e.seq, e.at_ms, e.payload.as_slice(), e.conversation))
            .chain(appends);
        for (stream, seq, at_ms, payload, conversation) in entries {
            let (t, name, seqs, at, payloads, conversations) = &mut self.streams;
            seqs.push(ordered("stream seq", seq)?);
            at.push(ordered("stream at_ms", at_ms)?);
            t.push(tenant);
            name.push(stream);
            payloads.push(payload);
            conversations.push(conversation.map(id));
        }
        for message in &batch.messages {
            let (t, conversation, seq, at, sender, text, kind) = &mut self.messages;
            seq.push(ordered("message seq", message.seq)?);
            at.push(ordered("message at_ms", message.at_ms)?);
            t.push(tenant);
            conversation.push(id(message.conversation));
            sender.push(&message.sender);
            text.push(&message.text);
            kind.push(&message.kind);
        }
        for archived in &batch.archive {
            let row = (
                archived.customer.as_str(),
                ordered("archived opened_at_ms", archived.opened_at_ms)?,
                ordered("archived ended_at_ms", archived.ended_at_ms)?,
                ordered("archived purge_at_ms", archived.purge_at_ms)?,
                archived.body.as_slice(),
            );
            let conversation = ordered("archived conversation", archived.conversation)?;
            self.archive.insert((tenant, conversation), row);
        }
        for customer in &batch.customers {
            let c = &customer.contact;
            let row = (customer.body.as_slice(), &*c.remark_name, &*c.phone, &*c.email);
            self.customers.insert((tenant, &customer.customer), row);
        }
        for actor in &batch.actors {
            let state = match &actor.body {
                Some(body) => Some((ordered("actor epoch", actor.epoch)?, body.as_slice())),
                None => None,
            };
            self.actors.insert((tenant, &actor.kind, &actor.key), state);
        }
        for response in &batch.responses {
            let at = ordered("response at_ms", response.at_ms)?;
            // As the upsert would between batches written in turn (`Response::replaces`).
            let key = (tenant, response.request_id.as_str());
            if self
                .responses
                .get(&key)
                .is_none_or(|(_, kept)| Response::replaces(kept, &response.body))
            {
                self.responses.insert(key, (at, &response.body));
            }
        }
        for owner in &batch.owners {
            let (t, conversation, customer) = &mut self.owners;
            conversation.push(ordered("owned conversation", owner.conversation)?);
            customer.push(ordered("owning customer", owner.customer)?);
            t.push(tenant);
        }
        self.empty = false;
        Ok(())
    }

    /// Writes what was gathered, in one statement, and starts over empty.
    pub(crate) fn flush(
        &mut self,
        tx: &mut PgConn,
        shapes: &Shapes,
    ) -> Result<(), postgres::Error> {
        self.flush_then(tx, shapes, |tx, rows| match rows {
            Some((statement, params)) => tx.execute(statement, params).map(drop),
            None => Ok(()),
        })?
    }

    /// Starts over empty and gives `run` the statement that writes what was gathered, with
    /// its parameters (`None` if nothing was), prepared if its shape is new: for the caller
    /// to send it with what follows it (the commit, in one round trip).
    pub(crate) fn flush_then<T>(
        &mut self,
        tx: &mut PgConn,
        shapes: &Shapes,
        run: impl FnOnce(&mut PgConn, Option<(&Statement, Params<'_>)>) -> T,
    ) -> Result<T, postgres::Error> {
        if self.empty {
            return Ok(run(tx, None));
        }
        let rows = std::mem::replace(self, Rows::new());
        let (l0, l1, l2, l3, l4, l5) = &rows.log;
        let (s0, s1, s2, s3, s4, s5) = &rows.streams;
        let (m0, m1, m2, m3, m4, m5, m6) = &rows.messages;
        let mut archive: ArchiveColumns<'_> = Default::default();
        for ((tenant, conversation), (customer, opened, ended, purge, body)) in &rows.archive {
            archive.0.push(tenant);
            archive.1.push(*conversation);
            archive.2.push(customer);
            archive.3.push(*opened);
            archive.4.push(*ended);
            archive.5.push(*purge);
            archive.6.push(body);
        }
        let mut customers: CustomerColumns<'_> = Default::default();
        for ((tenant, customer), (body, remark_name, phone, email)) in &rows.customers {
            customers.0.push(tenant);
            customers.1.push(customer);
            customers.2.push(body);
            customers.3.push(remark_name);
            customers.4.push(phone);
            customers.5.push(email);
        }
        let mut written: ActorColumns<'_> = Default::default();
        let mut gone: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
        for ((tenant, kind, key), state) in &rows.actors {
            match state {
                Some((epoch, body)) => {
                    written.0.push(tenant);
                    written.1.push(kind);
                    written.2.push(key);
                    written.3.push(*epoch);
                    written.4.push(body);
                }
                None => {
                    gone.0.push(tenant);
                    gone.1.push(kind);
                    gone.2.push(key);
                }
            }
        }
        let mut responses: ResponseColumns<'_> = Default::default();
        for ((tenant, request), (at, body)) in &rows.responses {
            responses.0.push(tenant);
            responses.1.push(request);
            responses.2.push(*at);
            responses.3.push(body);
        }
        let (r0, r1, r2, r3) = &responses;
        let (o0, o1, o2) = &rows.owners;
        // Each table: whether it has rows, and its columns, in `PARTS`' order.
        let tables: [(bool, &[&(dyn ToSql + Sync)]); 9] = [
            (!l0.is_empty(), &[l0, l1, l2, l3, l4, l5]),
            (!s0.is_empty(), &[s0, s1, s2, s3, s4, s5]),
            (!m0.is_empty(), &[m0, m1, m2, m3, m4, m5, m6]),
            (
                !archive.0.is_empty(),
                &[
                    &archive.0, &archive.1, &archive.2, &archive.3, &archive.4, &archive.5,
                    &archive.6,
                ],
            ),
            (
                !customers.0.is_empty(),
                &[
                    &customers.0,
                    &customers.1,
                    &customers.2,
                    &customers.3,
                    &customers.4,
                    &customers.5,
                ],
            ),
            (!written.0.is_empty(), &[&written.0, &written.1, &written.2, &written.3, &written.4]),
            (!gone.0.is_empty(), &[&gone.0, &gone.1, &gone.2]),
            (!r0.is_empty(), &[r0, r1, r2, r3]),
            (!o0.is_empty(), &[o0, o1, o2]),
        ];
        // Only the tables with rows are written: the shape names them.
        let (mut shape, mut params) = (0u16, Vec::new());
        for (i, &(filled, columns)) in tables.iter().enumerate() {
            if filled {
                shape |= 1 << i;
                params.extend_from_slice(columns);
            }
        }
        if shape == 0 {
            return Ok(run(tx, None));
        }
        let statement = shapes.get(tx, shape)?;
        Ok(run(tx, Some((&statement, &params))))
    }
}

/// Locks the rows of `shards` (ascending) and returns their epochs in that order.
pub(crate) fn lock_fences(
    tx: &mut PgConn,
    statement: &Statement,
    shards: &[u32],
) -> Result<Vec<i64>, postgres::Error> {
    if shards.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<i64> = shards.iter().map(|&s| i64::from(s)).collect();
    let epochs: HashMap<i64, i64> =
        tx.query(statement, &[&wanted])?.iter().map(|row| (row.get(0), row.get(1))).collect();
    Ok(wanted.iter().map(|shard| epochs.get(shard).copied().unwrap_or(0)).collect())
}

/// Prepares the fences' statements on a fresh connection: the exclusive lock's, and the
/// shared lock's at the SQL level for [`begin_sharing`] (the rows' are prepared by shape, as
/// they come: [`Shapes`]).
pub(crate) fn prepare(client: &mut PgConn) -> Result<Statement, postgres::Error> {
    client.batch_execute(&format!(
        "PREPARE {SHARE_FENCES_PREPARED} (int8, int8, int8, int8) AS {SHARE_FENCES}"
    ))?;
    client.prepare(LOCK_FENCES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fences' share lock goes four shards to a call, a short chunk padded with its last
    /// shard; no shard, `BEGIN` alone.
    #[test]
    fn begin_sharing_chunks_the_shards_by_four() {
        assert_eq!(begin_sharing(&[]), "BEGIN");
        assert_eq!(
            begin_sharing(&[3, 5, 8, 9, 12]),
            "BEGIN; EXECUTE switchboard_share_fences(3, 5, 8, 9); \
             EXECUTE switchboard_share_fences(12, 12, 12, 12)"
        );
        let found = |rows: &[(i64, i64)]| matched(rows.iter().map(|&r| Some(r)), &[3, 5, 12]);
        assert_eq!(found(&[(3, 1), (5, 0), (12, 7)]), Some(vec![1, 0, 7]));
        assert_eq!(found(&[(3, 1), (12, 7)]), None, "shard 5 has no row");
        assert_eq!(matched(std::iter::empty(), &[]), Some(vec![]));
    }

    /// A shape's statement holds its tables' CTEs in order, their parameters numbered on from
    /// `$1` without a gap; the full shape has all 47.
    #[test]
    fn a_shapes_statement_numbers_its_tables_parameters_on() {
        let streams_and_actors = statement_for(0b10_0010);
        assert!(streams_and_actors.starts_with("WITH\n s AS (INSERT INTO streams"));
        assert!(streams_and_actors.contains("w AS (INSERT INTO actors"));
        assert!(!streams_and_actors.contains("l AS"));
        for n in 1..=11 {
            assert!(streams_and_actors.contains(&format!("${n}::")), "${n}");
        }
        assert!(!streams_and_actors.contains("$12"));
        assert!(!streams_and_actors.contains('#'));
        let all = statement_for(0b1_1111_1111);
        assert!(all.contains("$47::") && !all.contains("$48"));
        assert_eq!(all.matches(" AS (").count(), 9);
    }
}
