//! The baseline: the same scenario routed the way teams commonly build it on PostgreSQL.
//!
//! Agents, conversations and messages are tables. Router workers (`--pg-routers`, each on its
//! own connection) run one transaction per assignment: claim the oldest waiting conversation
//! (priority, then entry time) with `SELECT … FOR UPDATE SKIP LOCKED`, the least-loaded
//! eligible online agent (load ÷ capacity, then longest since its last assignment) with
//! `FOR UPDATE SKIP LOCKED`, mark the conversation offered (or assigned, with auto-accept),
//! bump the agent's load and `pg_notify` the agent; then commit. An agent accepts with an
//! `UPDATE … WHERE state = 'offered'`.
//!
//! Delivery to agents is push, as Switchboard's streams are: every write that an agent must
//! see (an offer, an assignment, a customer message on an assigned conversation) calls
//! `pg_notify` inside its transaction, so it is heard only once committed, and one listening
//! connection (the "desktop gateway") fans the notifications out to the agents. Routers wake
//! on a notification when a conversation opens or capacity frees, with a 100 ms poll as a
//! safety net. Commits are durable (`synchronous_commit=on` on the server we start).
//! Customer and agent calls share a pool of `--pg-connections` connections (64 by default)
//! with prepared statements, as an application server would.
//!
//! Tables live in the schema `loadtest_baseline`, dropped and recreated at setup.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::{Backend, Event, Scenario};

const SCHEMA: &str = "loadtest_baseline";

const CREATE: &str = "
CREATE TABLE agents (
    id int PRIMARY KEY,
    capacity int NOT NULL,
    load int NOT NULL DEFAULT 0,
    online bool NOT NULL DEFAULT false,
    last_assigned timestamptz NOT NULL DEFAULT 'epoch'
);
CREATE TABLE agent_groups (grp int NOT NULL, agent int NOT NULL REFERENCES agents, PRIMARY KEY (grp, agent));
CREATE TABLE conversations (
    id bigserial PRIMARY KEY,
    customer bigint NOT NULL,
    grp int NOT NULL,
    priority int NOT NULL,
    state text NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    agent int REFERENCES agents,
    assigned_at timestamptz
);
CREATE INDEX conversations_waiting ON conversations (priority DESC, entered_at, id) WHERE state = 'queued';
CREATE INDEX conversations_open ON conversations (customer) WHERE state IN ('queued', 'offered', 'assigned');
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    conversation bigint NOT NULL REFERENCES conversations,
    sender text NOT NULL,
    body text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation ON messages (conversation, id);
";

/// Prepared statements of one connection.
struct Statements {
    open_conversation: Statement,
    insert_conversation: Statement,
    insert_message: Statement,
    notify: Statement,
    accept: Statement,
    end: Statement,
    unload: Statement,
    claim_conversation: Statement,
    claim_agent: Statement,
    assign: Statement,
    load: Statement,
    online: Statement,
}

struct Conn {
    client: Client,
    st: Statements,
}

async fn connect(
    url: &str,
) -> anyhow::Result<(
    Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    let mut config: tokio_postgres::Config = url.parse().context("--pg-url")?;
    config.options(format!("-c search_path={SCHEMA}"));
    config.connect(NoTls).await.with_context(|| format!("connect to {url}"))
}

/// A connection whose notifications are dropped, driven on a task of its own.
async fn conn(url: &str) -> anyhow::Result<Conn> {
    let (client, connection) = connect(url).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let st = Statements {
        open_conversation: client
            .prepare("SELECT id, state, agent FROM conversations WHERE customer = $1 AND state IN ('queued', 'offered', 'assigned') FOR UPDATE")
            .await?,
        insert_conversation: client
            .prepare("INSERT INTO conversations (customer, grp, priority, state) VALUES ($1, $2, $3, 'queued') RETURNING id")
            .await?,
        insert_message: client
            .prepare("INSERT INTO messages (conversation, sender, body) VALUES ($1, $2, $3)")
            .await?,
        notify: client.prepare("SELECT pg_notify($1, $2)").await?,
        accept: client
            .prepare("UPDATE conversations SET state = 'assigned' WHERE id = $1 AND agent = $2 AND state = 'offered'")
            .await?,
        end: client
            .prepare("UPDATE conversations SET state = $2 WHERE id = $1 AND state IN ('queued', 'offered', 'assigned') RETURNING agent")
            .await?,
        unload: client.prepare("UPDATE agents SET load = load - 1 WHERE id = $1").await?,
        claim_conversation: client
            .prepare("SELECT id, grp FROM conversations WHERE state = 'queued' ORDER BY priority DESC, entered_at, id LIMIT 1 FOR UPDATE SKIP LOCKED")
            .await?,
        claim_agent: client
            .prepare(
                "SELECT a.id FROM agents a JOIN agent_groups g ON g.agent = a.id AND g.grp = $1 \
                 WHERE a.online AND a.load < a.capacity \
                 ORDER BY a.load::float8 / a.capacity, a.last_assigned, a.id LIMIT 1 FOR UPDATE OF a SKIP LOCKED",
            )
            .await?,
        assign: client
            .prepare("UPDATE conversations SET state = $2, agent = $3, assigned_at = clock_timestamp() WHERE id = $1")
            .await?,
        load: client
            .prepare("UPDATE agents SET load = load + 1, last_assigned = clock_timestamp() WHERE id = $1")
            .await?,
        online: client.prepare("UPDATE agents SET online = true WHERE id = $1").await?,
    };
    Ok(Conn { client, st })
}

/// A fixed pool of connections.
struct Pool {
    free: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Pool {
    async fn get(&self) -> anyhow::Result<Pooled<'_>> {
        let permit = self.permits.acquire().await?;
        let conn = self.free.lock().expect("pool lock").pop().context("pool empty")?;
        Ok(Pooled { pool: self, conn: Some(conn), _permit: permit })
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.free.lock().expect("pool lock").push(c);
        }
    }
}

impl Pooled<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("held")
    }
}

const ROUTE: &str = "loadtest_route";
const AGENT: &str = "loadtest_agent";

/// The baseline as a [`Backend`].
pub struct Postgres {
    url: String,
    pool: Pool,
    routers: usize,
    agents: Arc<Mutex<Vec<Option<mpsc::UnboundedSender<Event>>>>>,
    wake: Arc<Vec<Notify>>,
    gateway: Mutex<Option<Gateway>>,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("url", &self.url).field("routers", &self.routers).finish()
    }
}

impl Postgres {
    /// Creates the schema (dropping an old one) and opens `connections` pooled connections.
    pub async fn connect(
        url: &str,
        connections: usize,
        routers: usize,
    ) -> anyhow::Result<Postgres> {
        let admin = conn_plain(url).await?;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; SET search_path = {SCHEMA}; {CREATE}"
            ))
            .await
            .context("create the baseline schema")?;
        let mut free = Vec::new();
        for _ in 0..connections.max(1) {
            free.push(conn(url).await?);
        }
        let routers = routers.max(1);
        Ok(Postgres {
            url: url.to_owned(),
            pool: Pool { permits: Semaphore::new(free.len()), free: Mutex::new(free) },
            routers,
            agents: Arc::new(Mutex::new(Vec::new())),
            wake: Arc::new((0..routers).map(|_| Notify::new()).collect()),
            gateway: Mutex::new(None),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    async fn notify(c: &Conn, channel: &str, payload: String) -> anyhow::Result<()> {
        c.client.execute(&c.st.notify, &[&channel, &payload]).await?;
        Ok(())
    }
}

async fn conn_plain(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = connect(url).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The desktop gateway: one connection listening on both channels, fanning out.
struct Gateway {
    _client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gateway(
    url: &str,
    agents: Arc<Mutex<Vec<Option<mpsc::UnboundedSender<Event>>>>>,
    wake: Arc<Vec<Notify>>,
) -> anyhow::Result<Gateway> {
    let (client, mut connection) = connect(url).await?;
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            let AsyncMessage::Notification(n) = message else { continue };
            if n.channel() == ROUTE {
                wake.iter().for_each(Notify::notify_one);
                continue;
            }
            // "{agent} {o|a|m} {conversation} [text]"
            let mut parts = n.payload().splitn(4, ' ');
            let (Some(agent), Some(kind), Some(conv)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(agent) = agent.parse::<usize>() else { continue };
            let conv = conv.to_owned();
            let event = match kind {
                "o" => Event::Offered(conv),
                "a" => Event::Assigned(conv),
                _ => Event::Message(conv, parts.next().unwrap_or("").to_owned()),
            };
            if let Some(Some(tx)) = agents.lock().expect("agents lock").get(agent) {
                let _ = tx.send(event);
            }
        }
    });
    client.batch_execute(&format!("LISTEN {ROUTE}; LISTEN {AGENT}")).await.context("listen")?;
    Ok(Gateway { _client: client, task })
}

/// One router worker: assigns while it can, then waits to be woken.
async fn router(url: String, wake: Arc<Vec<Notify>>, me: usize, offer: bool) -> anyhow::Result<()> {
    let mut c = conn(&url).await?;
    loop {
        match claim(&mut c, offer).await {
            Ok(true) => continue,
            Ok(false) => {
                let _ = tokio::time::timeout(Duration::from_millis(100), wake[me].notified()).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The routing transaction. Returns whether it assigned one.
async fn claim(c: &mut Conn, offer: bool) -> anyhow::Result<bool> {
    let st = &c.st;
    let tx = c.client.transaction().await?;
    let Some(conv) = tx.query_opt(&st.claim_conversation, &[]).await? else {
        return Ok(false);
    };
    let (id, grp): (i64, i32) = (conv.get(0), conv.get(1));
    let Some(agent) = tx.query_opt(&st.claim_agent, &[&grp]).await? else {
        return Ok(false); // rolled back on drop
    };
    let agent: i32 = agent.get(0);
    let state = if offer { "offered" } else { "assigned" };
    tx.execute(&st.assign, &[&id, &state, &agent]).await?;
    tx.execute(&st.load, &[&agent]).await?;
    let kind = if offer { "o" } else { "a" };
    tx.execute(&st.notify, &[&AGENT, &format!("{agent} {kind} {id}")]).await?;
    tx.commit().await?;
    Ok(true)
}

fn conv_id(name: &str) -> anyhow::Result<i64> {
    name.parse().with_context(|| format!("conversation {name:?}"))
}

impl Backend for Postgres {
    fn name(&self) -> String {
        "postgres".into()
    }

    async fn setup(&self, scenario: &Scenario) -> anyhow::Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.conn().client.transaction().await?;
        for a in 0..scenario.agents as i32 {
            tx.execute(
                "INSERT INTO agents (id, capacity) VALUES ($1, $2)",
                &[&a, &(scenario.capacity as i32)],
            )
            .await?;
            for g in 0..scenario.groups.len() as i32 {
                tx.execute("INSERT INTO agent_groups (grp, agent) VALUES ($1, $2)", &[&g, &a])
                    .await?;
            }
        }
        tx.commit().await?;
        *self.agents.lock().expect("agents lock") = vec![None; scenario.agents as usize];
        let gateway = gateway(&self.url, self.agents.clone(), self.wake.clone()).await?;
        *self.gateway.lock().expect("gateway lock") = Some(gateway);
        let mut tasks = self.tasks.lock().expect("tasks lock");
        for r in 0..self.routers {
            let (url, wake, offer) = (self.url.clone(), self.wake.clone(), scenario.offer);
            tasks.spawn(async move {
                let _ = router(url, wake, r, offer).await;
            });
        }
        Ok(())
    }

    async fn login(&self, agent: u32) -> anyhow::Result<mpsc::UnboundedReceiver<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(slot) = self.agents.lock().expect("agents lock").get_mut(agent as usize) {
            *slot = Some(tx);
        }
        let mut c = self.pool.get().await?;
        let c = c.conn();
        c.client.execute(&c.st.online, &[&(agent as i32)]).await?;
        Self::notify(c, ROUTE, String::new()).await?;
        Ok(rx)
    }

    async fn post(
        &self,
        customer: u64,
        group: usize,
        priority: u32,
        text: String,
    ) -> anyhow::Result<String> {
        let mut c = self.pool.get().await?;
        let c = c.conn();
        let st = &c.st;
        let tx = c.client.transaction().await?;
        let customer = customer as i64;
        let open = tx.query_opt(&st.open_conversation, &[&customer]).await?;
        let id: i64 = match open {
            None => {
                let row = tx
                    .query_one(
                        &st.insert_conversation,
                        &[&customer, &(group as i32), &(priority as i32)],
                    )
                    .await?;
                let id: i64 = row.get(0);
                tx.execute(&st.insert_message, &[&id, &"customer", &text]).await?;
                tx.execute(&st.notify, &[&ROUTE, &""]).await?;
                id
            }
            Some(row) => {
                let (id, state, agent): (i64, String, Option<i32>) =
                    (row.get(0), row.get(1), row.get(2));
                tx.execute(&st.insert_message, &[&id, &"customer", &text]).await?;
                if let (true, Some(agent)) = (state == "assigned", agent) {
                    tx.execute(&st.notify, &[&AGENT, &format!("{agent} m {id} {text}")]).await?;
                }
                id
            }
        };
        tx.commit().await?;
        Ok(id.to_string())
    }

    async fn abandon(&self, conversation: &str) -> anyhow::Result<()> {
        self.finish(conversation, "abandoned").await
    }

    async fn accept(&self, agent: u32, conversation: &str) -> anyhow::Result<()> {
        let id = conv_id(conversation)?;
        let mut c = self.pool.get().await?;
        let c = c.conn();
        if c.client.execute(&c.st.accept, &[&id, &(agent as i32)]).await? != 1 {
            bail!("conversation {id} is no longer offered to agent {agent}");
        }
        Ok(())
    }

    async fn reply(&self, _agent: u32, conversation: &str, text: String) -> anyhow::Result<()> {
        let id = conv_id(conversation)?;
        let mut c = self.pool.get().await?;
        let c = c.conn();
        c.client.execute(&c.st.insert_message, &[&id, &"agent", &text]).await?;
        Ok(())
    }

    async fn end(&self, _agent: u32, conversation: &str) -> anyhow::Result<()> {
        self.finish(conversation, "ended").await
    }
}

impl Postgres {
    /// Ends a conversation in any open state, freeing its agent's capacity.
    async fn finish(&self, conversation: &str, state: &str) -> anyhow::Result<()> {
        let id = conv_id(conversation)?;
        let mut c = self.pool.get().await?;
        let c = c.conn();
        let st = &c.st;
        let tx = c.client.transaction().await?;
        if let Some(row) = tx.query_opt(&st.end, &[&id, &state]).await?
            && let Some(agent) = row.get::<_, Option<i32>>(0)
        {
            tx.execute(&st.unload, &[&agent]).await?;
            tx.execute(&st.notify, &[&ROUTE, &""]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut t) = self.tasks.lock() {
            t.abort_all();
        }
    }
}
