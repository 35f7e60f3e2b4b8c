//! The node's configuration: one serde tree, layered defaults → TOML file → `SWITCHBOARD_`
//! environment → command-line flags, then validated.
//!
//! The environment is passed in as a list of pairs (the binary passes `std::env::vars()`), so
//! tests inject it instead of mutating the process environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

/// Prefix of every configuration variable.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Separates nesting levels in a variable name: `SWITCHBOARD_GRPC__ADDR` is `grpc.addr`.
pub const ENV_SEPARATOR: &str = "__";
/// Names a TOML file to load when `--config` is not given.
pub const ENV_CONFIG_FILE: &str = "SWITCHBOARD_CONFIG";
/// The conventional Rust log filter variable; read as `log.filter` when
/// `SWITCHBOARD_LOG__FILTER` is not set.
pub const ENV_RUST_LOG: &str = "RUST_LOG";

/// Everything `switchboard serve` reads. Every field has a default; see [`Config::default`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub grpc: Grpc,
    pub metrics: Metrics,
    pub store: Store,
    pub cluster: Cluster,
    pub log: Log,
    pub shutdown: Shutdown,
    pub auth: Auth,
    pub tls: Tls,
    pub limits: Limits,
    pub webhooks: Webhooks,
}

/// HTTP webhook delivery (the webhooks themselves are configured per tenant over the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// Wait after an event's first failed attempt, in milliseconds; doubled after each
    /// further failure up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Attempts per event before it is recorded as a dead letter and delivery moves on.
    pub max_attempts: u32,
    /// Time allowed for one attempt (connect, send, status line), in milliseconds.
    pub timeout_ms: u64,
    /// PEM bundle of the certificate authorities https endpoints are verified against.
    pub ca_file: PathBuf,
}

impl Default for Webhooks {
    fn default() -> Self {
        let d = switchboard_node::webhooks::Options::default();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Webhooks {
            initial_backoff_ms: ms(d.initial_backoff),
            max_backoff_ms: ms(d.max_backoff),
            max_attempts: d.max_attempts,
            timeout_ms: ms(d.timeout),
            ca_file: d.ca_file,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Files of the keys that verify bearer tokens (JWT): a PEM Ed25519 public key verifies
    /// EdDSA tokens, any other file is an HS256 secret of at least 32 bytes. Several files
    /// allow rotation. Empty: the node runs unauthenticated, which it allows only when
    /// `grpc.addr` is a loopback address.
    pub token_keys: Vec<PathBuf>,
    /// Clock skew tolerated when checking a token's expiry, in seconds.
    pub leeway_seconds: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { token_keys: Vec::new(), leeway_seconds: 30 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain the gRPC port presents; empty: plain HTTP/2 (no TLS).
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM cluster CA: client certificates must chain to it, and internal (node-to-node)
    /// calls need one. Empty: no client certificates, no internal calls.
    pub client_ca_file: PathBuf,
    /// How often the files are checked for changes (a rotated Kubernetes Secret), in seconds.
    pub reload_seconds: u64,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: PathBuf::new(),
            reload_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Sustained requests per second per tenant (0: unlimited); over it, calls get
    /// `RESOURCE_EXHAUSTED` with a `RetryInfo` delay.
    pub tenant_requests_per_second: u32,
    /// Requests a tenant may make at once above the sustained rate.
    pub tenant_burst: u32,
    /// Live streams one agent may hold open at once.
    pub streams_per_agent: usize,
    /// Calls per tenant waiting for or handled by its actor on one node; more get
    /// `RESOURCE_EXHAUSTED`.
    pub tenant_in_flight: usize,
    /// How long a call waits for its tenant (to load, and to answer) unless the client's
    /// gRPC deadline is shorter.
    pub call_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let d = switchboard_node::auth::limits::LimitsConfig::default();
        Limits {
            tenant_requests_per_second: d.tenant_requests_per_second as u32,
            tenant_burst: d.tenant_burst as u32,
            streams_per_agent: d.streams_per_agent,
            tenant_in_flight: switchboard_node::registry::TENANT_IN_FLIGHT,
            call_timeout_ms: switchboard_node::registry::CALL_TIMEOUT.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grpc {
    /// Where the gRPC API listens; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Requests in flight per connection.
    pub concurrency_per_connection: usize,
}

impl Default for Grpc {
    fn default() -> Self {
        Grpc {
            addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_request_bytes: 64 * 1024,
            concurrency_per_connection: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Where Prometheus scrapes `/metrics`, or `off`.
    pub addr: Listen,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { addr: Listen::On(SocketAddr::from(([127, 0, 0, 1], 9400))) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// Where the node keeps its durable state; relative paths are relative to the working
    /// directory.
    pub data_dir: PathBuf,
    /// Commands between snapshots of a tenant.
    pub snapshot_every: u64,
    /// A PostgreSQL URL (`postgres://user:pass@host/db`) for a store shared by the cluster;
    /// unset keeps the embedded SQLite in `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// With `url`: how long the writer waits, in µs, for more writes after a commit's first,
    /// so that each commit to the shared database carries more of them (0: never).
    pub postgres_commit_linger_us: u64,
}

/// The longest `store.postgres_commit_linger_us` accepted: every write may wait this long.
const MAX_COMMIT_LINGER_US: u64 = 100_000;

impl Default for Store {
    fn default() -> Self {
        Store {
            data_dir: PathBuf::from("./switchboard-data"),
            snapshot_every: 10_000,
            url: None,
            postgres_commit_linger_us: duration_us(switchboard_node::PG_COMMIT_LINGER),
        }
    }
}

fn duration_us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Cluster mode: set `etcd` (and `store.url`) to join; empty runs a single node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// etcd endpoints (`host:port`); empty = single node.
    pub etcd: Vec<String>,
    /// Key prefix in etcd (`/switchboard/<name>/`), so clusters can share an etcd.
    pub name: String,
    /// This node's id, unique and stable across restarts; empty = the host name.
    pub node_id: String,
    /// Where other nodes reach this node's gRPC port; empty = `grpc.addr` as bound (which
    /// must then not be a wildcard address).
    pub advertise_addr: String,
    /// Time to live of the membership lease: a dead node's shards move after about this long.
    pub lease_ttl_seconds: u64,
    /// Shards of the cluster, fixed when it is created.
    pub shards: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            etcd: Vec::new(),
            name: "switchboard".to_owned(),
            node_id: String::new(),
            advertise_addr: String::new(),
            lease_ttl_seconds: 10,
            shards: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shutdown {
    /// After SIGTERM or Ctrl-C, how long open connections (agents' live streams included) may
    /// take to finish before the process exits anyway, with status 1 and without the final
    /// snapshot (the command log replays on the next start). Keep it below the orchestrator's
    /// grace period (Kubernetes: 30 s).
    pub drain_seconds: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { drain_seconds: 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A `RUST_LOG`-style filter, e.g. `info` or `info,switchboard_node=debug`.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log { filter: "info".to_owned(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A listening address that can be switched off (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::On)
            .map_err(|_| format!("{s:?} is neither `off` nor an address like 127.0.0.1:9400"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(addr) => addr.fmt(f),
        }
    }
}

impl Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The command-line layer: each flag given overrides every other source.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// TOML file to load [env: SWITCHBOARD_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// gRPC listening address (grpc.addr; port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Prometheus listening address, or `off` (metrics.addr)
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_addr: Option<Listen>,
    /// Directory of the durable state (store.data_dir)
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax, e.g. `info,switchboard_node=debug` (log.filter)
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log line format (log.format)
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Join a cluster through these etcd endpoints, comma-separated (cluster.etcd)
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// Shared PostgreSQL store, postgres://user:pass@host/db (store.url)
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// This node's id in the cluster (cluster.node_id)
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Address other nodes dial for this node (cluster.advertise_addr)
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_addr: Option<String>,
}

impl Config {
    /// Layers the sources and validates the result. `env` is the process environment (or a
    /// test's map); only `SWITCHBOARD_<SECTION>__<KEY>` variables, `SWITCHBOARD_CONFIG` and
    /// `RUST_LOG` (as `log.filter`, below `SWITCHBOARD_LOG__FILTER`) are read from it.
    pub fn load<I, K, V>(flags: &Flags, env: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let file = flags.config.clone().or_else(|| {
            env.iter()
                .find(|(k, v)| k == ENV_CONFIG_FILE && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });

        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &file {
            check_file(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(EnvVars::new(env));
        figment = merge_flags(figment, flags);

        let config: Config =
            figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values the node cannot run with, naming the key to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.grpc.max_request_bytes == 0 {
            bail!("grpc.max_request_bytes must be at least 1");
        }
        if self.grpc.concurrency_per_connection == 0 {
            bail!("grpc.concurrency_per_connection must be at least 1");
        }
        if self.store.snapshot_every == 0 {
            bail!("store.snapshot_every must be at least 1");
        }
        if self.shutdown.drain_seconds == 0 {
            bail!("shutdown.drain_seconds must be at least 1");
        }
        if self.store.postgres_commit_linger_us > MAX_COMMIT_LINGER_US {
            bail!(
                "store.postgres_commit_linger_us is {}; at most {MAX_COMMIT_LINGER_US} (every write may wait that long)",
                self.store.postgres_commit_linger_us
            );
        }
        if self.store.data_dir.as_os_str().is_empty() {
            bail!("store.data_dir must not be empty");
        }
        if let Listen::On(metrics) = self.metrics.addr
            && metrics.port() != 0
            && metrics == self.grpc.addr
        {
            bail!("metrics.addr and grpc.addr are both {metrics}; give them different ports");
        }
        if !self.cluster.etcd.is_empty() {
            if self.store.url.is_none() {
                bail!(
                    "cluster.etcd is set but store.url is not: cluster nodes share one PostgreSQL store; set store.url (--store postgres://…)"
                );
            }
            if !(2..=60).contains(&self.cluster.lease_ttl_seconds) {
                bail!("cluster.lease_ttl_seconds must be between 2 and 60");
            }
            if self.cluster.shards == 0 || self.cluster.shards > 65_536 {
                bail!("cluster.shards must be between 1 and 65536");
            }
            if !self.auth.token_keys.is_empty() && self.tls.client_ca_file.as_os_str().is_empty() {
                bail!(
                    "cluster.etcd with auth.token_keys needs mutual TLS between nodes: set tls.cert_file, tls.key_file and tls.client_ca_file"
                );
            }
            if self.cluster.advertise_addr.is_empty() && self.grpc.addr.ip().is_unspecified() {
                bail!(
                    "grpc.addr {} is a wildcard address: set cluster.advertise_addr to the address other nodes dial",
                    self.grpc.addr
                );
            }
        }
        if let Some(url) = &self.store.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("store.url must be a postgres:// URL");
        }
        if !self.grpc.addr.ip().is_loopback() && self.auth.token_keys.is_empty() {
            bail!(
                "refusing to start: grpc.addr {} is not a loopback address and auth.token_keys is \
                 empty; configure token keys (see SECURITY.md) or listen on 127.0.0.1",
                self.grpc.addr
            );
        }
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if set(&self.tls.cert_file) != set(&self.tls.key_file) {
            bail!("tls.cert_file and tls.key_file go together: set both or neither");
        }
        if set(&self.tls.client_ca_file) && !set(&self.tls.cert_file) {
            bail!("tls.client_ca_file needs tls.cert_file and tls.key_file");
        }
        if self.tls.reload_seconds == 0 {
            bail!("tls.reload_seconds must be at least 1");
        }
        let w = &self.webhooks;
        if w.initial_backoff_ms == 0 || w.max_backoff_ms < w.initial_backoff_ms {
            bail!(
                "webhooks.initial_backoff_ms must be at least 1 and webhooks.max_backoff_ms at least as large"
            );
        }
        if w.max_attempts == 0 {
            bail!("webhooks.max_attempts must be at least 1");
        }
        if w.timeout_ms == 0 {
            bail!("webhooks.timeout_ms must be at least 1");
        }
        if self.limits.streams_per_agent == 0 {
            bail!("limits.streams_per_agent must be at least 1");
        }
        if self.limits.tenant_in_flight == 0 {
            bail!("limits.tenant_in_flight must be at least 1");
        }
        if self.limits.call_timeout_ms == 0 {
            bail!("limits.call_timeout_ms must be at least 1");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .with_context(|| format!("log.filter {:?} is not a valid filter", self.log.filter))?;
        Ok(())
    }

    /// What is allowed but probably a mistake, to log loudly at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let tls = !self.tls.cert_file.as_os_str().is_empty();
        if !self.grpc.addr.ip().is_loopback() && !tls {
            warnings.push(format!(
                "grpc.addr {} is not a loopback address and tls.cert_file is not set: bearer \
                 tokens and transcripts cross the network in clear text unless something in \
                 front of the node terminates TLS",
                self.grpc.addr
            ));
        }
        warnings
    }

    /// The effective configuration as TOML (what `--dump-config` prints).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("the configuration cannot be written as TOML")
    }

    /// Whether the node runs without authentication (allowed on loopback only).
    pub fn unauthenticated(&self) -> bool {
        self.auth.token_keys.is_empty()
    }

    /// What the node library needs; reads the key files. `grpc` is the address actually bound.
    pub fn node(&self, grpc: SocketAddr) -> anyhow::Result<switchboard_node::NodeConfig> {
        use switchboard_node::auth::{Verifier, limits::LimitsConfig, tls::TlsFiles};
        let auth = if self.auth.token_keys.is_empty() {
            None
        } else {
            Some(Verifier::from_files(&self.auth.token_keys, self.auth.leeway_seconds)?)
        };
        let tls = (!self.tls.cert_file.as_os_str().is_empty()).then(|| TlsFiles {
            cert: self.tls.cert_file.clone(),
            key: self.tls.key_file.clone(),
            client_ca: (!self.tls.client_ca_file.as_os_str().is_empty())
                .then(|| self.tls.client_ca_file.clone()),
            reload_every: std::time::Duration::from_secs(self.tls.reload_seconds),
        });
        let c = &self.cluster;
        let cluster = (!c.etcd.is_empty()).then(|| switchboard_node::cluster::ClusterConfig {
            etcd: c.etcd.clone(),
            name: c.name.clone(),
            node_id: if c.node_id.is_empty() { host_name() } else { c.node_id.clone() },
            advertise_addr: if c.advertise_addr.is_empty() {
                grpc.to_string()
            } else {
                c.advertise_addr.clone()
            },
            lease_ttl: std::time::Duration::from_secs(c.lease_ttl_seconds),
            shards: c.shards,
        });
        Ok(switchboard_node::NodeConfig {
            data_dir: self.store.data_dir.clone(),
            snapshot_every: self.store.snapshot_every,
            max_request_bytes: self.grpc.max_request_bytes,
            concurrency_per_connection: self.grpc.concurrency_per_connection,
            tenant_in_flight: self.limits.tenant_in_flight,
            call_timeout: std::time::Duration::from_millis(self.limits.call_timeout_ms),
            store_url: self.store.url.clone(),
            commit_linger: std::time::Duration::from_micros(self.store.postgres_commit_linger_us),
            cluster,
            auth,
            tls,
            limits: LimitsConfig {
                tenant_requests_per_second: f64::from(self.limits.tenant_requests_per_second),
                tenant_burst: f64::from(self.limits.tenant_burst),
                streams_per_agent: self.limits.streams_per_agent,
                tenant_in_flight: self.limits.tenant_in_flight,
            },
            webhooks: switchboard_node::webhooks::Options {
                initial_backoff: std::time::Duration::from_millis(self.webhooks.initial_backoff_ms),
                max_backoff: std::time::Duration::from_millis(self.webhooks.max_backoff_ms),
                max_attempts: self.webhooks.max_attempts,
                timeout: std::time::Duration::from_millis(self.webhooks.timeout_ms),
                ca_file: self.webhooks.ca_file.clone(),
            },
        })
    }
}

/// The host name (a StatefulSet pod's name), for a node id nobody set.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".to_owned())
}

/// A named file that is missing is an error, not an empty layer.
fn check_file(path: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("config file {}", path.display()))?;
    if !meta.is_file() {
        bail!("config file {}: not a file", path.display());
    }
    Ok(())
}

fn merge_flags(mut figment: Figment, flags: &Flags) -> Figment {
    if let Some(addr) = flags.grpc_addr {
        figment = figment.merge(Serialized::default("grpc.addr", addr));
    }
    if let Some(addr) = flags.metrics_addr {
        figment = figment.merge(Serialized::default("metrics.addr", addr));
    }
    if let Some(dir) = &flags.data_dir {
        figment = figment.merge(Serialized::default("store.data_dir", dir));
    }
    if let Some(filter) = &flags.log {
        figment = figment.merge(Serialized::default("log.filter", filter));
    }
    if let Some(format) = flags.log_format {
        figment = figment.merge(Serialized::default("log.format", format));
    }
    if let Some(etcd) = &flags.etcd {
        figment = figment.merge(Serialized::default("cluster.etcd", etcd));
    }
    if let Some(url) = &flags.store {
        figment = figment.merge(Serialized::default("store.url", url));
    }
    if let Some(id) = &flags.node_id {
        figment = figment.merge(Serialized::default("cluster.node_id", id));
    }
    if let Some(addr) = &flags.advertise_addr {
        figment = figment.merge(Serialized::default("cluster.advertise_addr", addr));
    }
    figment
}

/// The environment layer: reads variables the way figment's
/// `Env::prefixed("SWITCHBOARD_").split("__")` does (prefix stripped case-insensitively, `__`
/// nests, keys lowercased, values parsed like figment parses them), but from a given list
/// instead of the process environment.
///
/// Only nested names (`SWITCHBOARD_<SECTION>__<KEY>`) are read: every setting lives in a
/// section, and this keeps out variables that merely share the prefix, such as
/// `SWITCHBOARD_CONFIG`, ctl's `SWITCHBOARD_ADDR`, or the `SWITCHBOARD_SERVICE_HOST` and
/// `SWITCHBOARD_PORT_…` that Kubernetes injects for a Service named `switchboard`. A misspelt
/// nested name is still refused as an unknown field. `RUST_LOG` is read as
/// `SWITCHBOARD_LOG__FILTER` when that is not set, as Rust operators expect.
#[derive(Debug, Clone)]
struct EnvVars {
    vars: Vec<(Vec<String>, String)>,
}

impl EnvVars {
    fn new(env: Vec<(String, String)>) -> Self {
        let rust_log =
            env.iter().find(|(k, v)| k == ENV_RUST_LOG && !v.is_empty()).map(|(_, v)| v.clone());
        let mut vars: Vec<_> =
            env.into_iter().filter_map(|(k, v)| Some((env_key(&k)?, v))).collect();
        let log_filter = ["log".to_owned(), "filter".to_owned()];
        if let Some(filter) = rust_log
            && !vars.iter().any(|(path, _)| path[..] == log_filter[..])
        {
            vars.push((log_filter.to_vec(), filter));
        }
        vars.sort();
        EnvVars { vars }
    }
}

/// `SWITCHBOARD_GRPC__ADDR` → `["grpc", "addr"]`; `None` for variables that are not settings.
fn env_key(name: &str) -> Option<Vec<String>> {
    let prefix = name.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let rest = name[ENV_PREFIX.len()..].trim();
    let path: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
    if path.len() < 2 || path.iter().any(|p| p.is_empty() || p.contains('.')) {
        return None;
    }
    Some(path)
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)")).interpolater(
            |_, path| {
                let path: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR))
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (path, value) in &self.vars {
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            insert(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry(first.clone()).or_insert_with(|| Dict::new().into());
            if !matches!(entry, Value::Dict(..)) {
                *entry = Dict::new().into();
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_nested_keys() {
        assert_eq!(env_key("SWITCHBOARD_GRPC__ADDR"), Some(vec!["grpc".into(), "addr".into()]));
        assert_eq!(
            env_key("switchboard_store__data_dir"),
            Some(vec!["store".into(), "data_dir".into()])
        );
        assert_eq!(env_key("SWITCHBOARD_CONFIG"), None);
        assert_eq!(env_key("SWITCHBOARD_ADDR"), None);
        assert_eq!(env_key("SWITCHBOARD_PORT_7400_TCP_ADDR"), None);
        assert_eq!(env_key("SWITCHBOARD_GRPC__"), None);
        assert_eq!(env_key("OTHER_GRPC__ADDR"), None);
        assert_eq!(env_key("SWITCH"), None);
    }

    #[test]
    fn listen_parses_off_and_addresses_and_prints_back() {
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert_eq!("OFF".parse::<Listen>().unwrap(), Listen::Off);
        let on: Listen = "127.0.0.1:9400".parse().unwrap();
        assert_eq!(on.to_string(), "127.0.0.1:9400");
        assert!("nowhere".parse::<Listen>().unwrap_err().contains("off"));
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = Config::default();
        config.validate().unwrap();
        assert!(config.warnings().is_empty());
    }

    #[test]
    fn a_public_grpc_address_needs_authentication_and_warns_without_tls() {
        let mut config = Config::default();
        config.grpc.addr = "0.0.0.0:7400".parse().unwrap();
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("auth.token_keys"), "{refused}");
        config.auth.token_keys = vec!["/run/secrets/jwt".into()];
        config.validate().unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("clear text"), "{}", warnings[0]);
    }
}
