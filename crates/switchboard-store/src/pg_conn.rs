//! The PostgreSQL writer's connection: tokio-postgres, driven on the writer thread by a
//! runtime of its own as `postgres::Client` drives it, plus what that client cannot do:
//! send several requests before reading the first answer ([`PgConn::pipelined`]).
//!
//! A blocking client waits for each statement's answer before it sends the next, and the
//! writer thread sleeps and wakes on every one (about five round trips a commit; that thread
//! was 25% of a cluster node's CPU). tokio-postgres writes every request its futures have
//! queued before it reads, so futures polled together share one round trip.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use postgres::types::ToSql;
use postgres::{Row, SimpleQueryMessage, Statement};
use tokio::runtime::Runtime;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Connection, NoTls, Socket};

use crate::Result;

/// A statement's parameters, as `postgres::Client` takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection, used from one thread (the writer's).
pub(crate) struct PgConn {
    /// A current-thread runtime: the requests and the socket are polled on the calling
    /// thread inside [`drive`], so nothing hops to another thread.
    runtime: Runtime,
    client: Client,
    /// The socket's half: polled beside every request, until the server hangs up.
    connection: Option<Connection<Socket, NoTlsStream>>,
}

impl PgConn {
    /// Connects to `url` and runs `setup` (session settings) on the new connection.
    pub(crate) fn connect(url: &str, setup: &str) -> Result<PgConn> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, connection) = runtime.block_on(tokio_postgres::connect(url, NoTls))?;
        let mut conn = PgConn { runtime, client, connection: Some(connection) };
        conn.batch_execute(setup)?;
        Ok(conn)
    }

    /// Whether the server hung up (or the socket failed): the writer reconnects.
    pub(crate) fn is_closed(&self) -> bool {
        self.connection.is_none() || self.client.is_closed()
    }

    /// Sends every request the future `requests` builds queues before any answer is read,
    /// and waits for its output: the futures it makes must be polled together (e.g. with
    /// `futures_util::future::join`), each sends its request when first polled. The server
    /// runs them in order; one that fails does not stop the next (each is an exchange of its
    /// own), but inside a transaction it aborts it, so the statements after it fail too and
    /// a `COMMIT` after it only rolls back.
    pub(crate) fn pipelined<'c, F: Future + 'c>(
        &'c mut self,
        requests: impl FnOnce(&'c Client) -> F,
    ) -> F::Output {
        let PgConn { runtime, client, connection } = self;
        drive(runtime, connection, requests(client))
    }

    pub(crate) fn execute(
        &mut self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        self.pipelined(|client| client.execute(statement, params))
    }

    pub(crate) fn query(
        &mut self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        self.pipelined(|client| client.query(statement, params))
    }

    pub(crate) fn query_one(
        &mut self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Row, postgres::Error> {
        self.pipelined(|client| client.query_one(statement, params))
    }

    pub(crate) fn query_opt(
        &mut self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        self.pipelined(|client| client.query_opt(statement, params))
    }

    pub(crate) fn prepare(&mut self, query: &str) -> Result<Statement, postgres::Error> {
        self.pipelined(|client| client.prepare(query))
    }

    pub(crate) fn batch_execute(&mut self, query: &str) -> Result<(), postgres::Error> {
        self.pipelined(|client| client.batch_execute(query))
    }

    pub(crate) fn simple_query(
        &mut self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
        self.pipelined(|client| client.simple_query(query))
    }
}

/// Runs `future` to its end on `runtime`, driving the socket beside it (as `postgres::Client`
/// does with its own runtime).
fn drive<F: Future>(
    runtime: &Runtime,
    connection: &mut Option<Connection<Socket, NoTlsStream>>,
    future: F,
) -> F::Output {
    let mut future = pin!(future);
    runtime.block_on(poll_fn(|cx| {
        // The socket first: it sends what is queued and reads what came back, waking the
        // requests it answered. Notices (a `ROLLBACK` outside a transaction warns) are of no
        // use to the writer.
        while let Some(socket) = connection.as_mut() {
            match socket.poll_message(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                // Closed or failed: the requests still waiting fail with "connection closed".
                Poll::Ready(Some(Err(_)) | None) => *connection = None,
                Poll::Pending => break,
            }
        }
        future.as_mut().poll(cx)
    }))
}
