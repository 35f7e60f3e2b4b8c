//! A `switchboard serve` process the load generator starts, measures and stops itself (by its
//! PID, never by name), and what can be read about any node process: resident memory and CPU
//! time from `/proc/<pid>`, figures from its Prometheus `/metrics`, the size of its data
//! directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
// Not `std`'s: the workspace keeps `std::time::Instant::now` out of deterministic code.
use tokio::time::Instant;

/// `switchboard` next to the running binary (`target/release/loadtest` →
/// `target/release/switchboard`).
pub fn default_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("switchboard")))
        .unwrap_or_else(|| PathBuf::from("target/release/switchboard"))
}

/// A running `switchboard serve` on ephemeral loopback ports.
#[derive(Debug)]
pub struct NodeProcess {
    child: Option<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:port` of the gRPC API.
    pub grpc: String,
    /// `127.0.0.1:port` of `/metrics`.
    pub metrics: String,
    /// When the process was spawned.
    pub spawned_at: Instant,
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// The node's log (its stderr) is appended here.
    pub log: PathBuf,
    /// Extra environment (`SWITCHBOARD_<SECTION>__<KEY>`).
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    /// A node on `data_dir` with the tenant rate limit off (a load generator is one tenant
    /// sending as fast as it can), logging warnings to `log`.
    pub fn new(bin: PathBuf, data_dir: PathBuf, log: PathBuf) -> NodeSpec {
        NodeSpec {
            bin,
            data_dir,
            log,
            env: vec![("SWITCHBOARD_LIMITS__TENANT_REQUESTS_PER_SECOND".into(), "0".into())],
        }
    }

    /// Spawns the node and waits (at most `patience`) for its `listening grpc=… metrics=…`
    /// line. Blocking.
    pub fn start(&self, patience: Duration) -> anyhow::Result<NodeProcess> {
        if !self.bin.is_file() {
            bail!(
                "no node binary at {} (build it: cargo build --release -p switchboard; or pass --node-bin)",
                self.bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut command = Command::new(&self.bin);
        command
            .args(["serve", "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let spawned_at = Instant::now();
        let mut child =
            command.spawn().with_context(|| format!("spawn {} serve", self.bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("stdout piped")?;
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let mut node = NodeProcess {
            child: Some(child),
            pid,
            grpc: String::new(),
            metrics: String::new(),
            spawned_at,
        };
        let line = match rx.recv_timeout(patience) {
            Ok(line) => line,
            Err(_) => {
                node.kill();
                bail!(
                    "the node did not report its addresses within {patience:?}; see {}",
                    self.log.display()
                );
            }
        };
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
                .with_context(|| format!("no {k}= in {line:?}"))
        };
        node.grpc = format!("http://{}", field("grpc")?);
        node.metrics = field("metrics")?;
        Ok(node)
    }
}

impl NodeProcess {
    /// A stand-in for a node that is not running (between a stop and the next start).
    pub fn stopped() -> NodeProcess {
        NodeProcess {
            child: None,
            pid: 0,
            grpc: String::new(),
            metrics: String::new(),
            spawned_at: Instant::now(),
        }
    }

    /// SIGTERM (to this PID only) and wait for the process to exit. Blocking.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the node is not running")?;
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        Ok(child.wait()?)
    }

    /// SIGKILL and reap, if still running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A graceful stop first (the node snapshots), then the hard way.
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

/// Resident set size of `pid` (`VmRSS` of `/proc/<pid>/status`), bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024)
}

/// User plus system CPU time of `pid` (`utime + stime` of `/proc/<pid>/stat`), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of `pid`'s threads whose name starts with `prefix` (their
/// `/proc/<pid>/task/<tid>/stat`), seconds: the node names its store threads `store-…` (the
/// writer, the checkpointer, PostgreSQL's connections), so a run can tell what its commits
/// cost from what the rest of the node does. A thread that ended meanwhile is not counted.
pub fn thread_cpu_seconds(pid: u32, prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut seconds = 0.0;
    for task in tasks.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        if thread_name(&stat).is_some_and(|name| name.starts_with(prefix)) {
            seconds += stat_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some(seconds)
}

/// CPU time of `root` and its children, seconds: `root`'s own and its reaped children's
/// (`utime stime cutime cstime`), and each live child's own. A child that exits between two
/// readings moves its time into `root`'s `cutime`, so the sum only grows. PostgreSQL runs a
/// process per connection, all children of the postmaster: this is the server's CPU.
pub fn tree_cpu_seconds(root: u32) -> Option<f64> {
    let mut seconds =
        stat_fields_seconds(&std::fs::read_to_string(format!("/proc/{root}/stat")).ok()?, 4)?;
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if parent(&stat) == Some(root) {
            seconds += stat_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some(seconds)
}

/// The parent's PID of a `stat` line (field 4).
fn parent(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The command name of a `stat` line (between the first '(' and the last ')').
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// `utime + stime` of a `stat` line, seconds.
fn stat_seconds(stat: &str) -> Option<f64> {
    stat_fields_seconds(stat, 2)
}

/// The sum of `n` clock-tick fields of a `stat` line from `utime` on (2: `utime stime`; 4:
/// with `cutime cstime`, the reaped children's), seconds.
fn stat_fields_seconds(stat: &str, n: usize) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime, stime, cutime and cstime are fields 14–17.
    let mut ticks = 0u64;
    for i in 11..11 + n {
        ticks += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / clock_ticks())
}

/// Dirty and under-writeback page cache of this machine (`Dirty` + `Writeback` of
/// `/proc/meminfo`), bytes.
pub fn dirty_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    dirty_of(&meminfo)
}

fn dirty_of(meminfo: &str) -> Option<u64> {
    let kib = |name: &str| {
        let line = meminfo.lines().find(|l| l.split(':').next() == Some(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some((kib("Dirty")? + kib("Writeback")?) * 1024)
}

/// What [`settle_disk`] found and did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Settled {
    /// Dirty page cache before the flush, bytes.
    pub dirty_bytes: u64,
    /// How long `sync` took, seconds.
    pub flush_seconds: f64,
}

/// Writes this machine's dirty page cache back (`sync`) before a measured run, and says how
/// much there was. A build just before a run leaves gigabytes for the kernel to write back
/// during it, and every `fdatasync` of the node waits behind them: with 2.6 GB dirty, one run
/// at 500 arrivals/s stalled 580 ms (p999 customer msg → agent 418 ms against 30 ms) and
/// missed its verdict. Blocking.
#[allow(clippy::disallowed_methods)] // measures the wall time of a blocking call
pub fn settle_disk() -> Option<Settled> {
    let dirty_bytes = dirty_bytes()?;
    let began = std::time::Instant::now();
    let synced = std::process::Command::new("sync").status().ok()?;
    synced.success().then(|| Settled { dirty_bytes, flush_seconds: began.elapsed().as_secs_f64() })
}

/// This machine's steal time over all its CPUs (the `cpu` line of `/proc/stat`, field 8),
/// seconds.
pub fn steal_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    steal_of(&stat)
}

fn steal_of(stat: &str) -> Option<f64> {
    cpu_line_seconds(stat, &[7])
}

/// This machine's busy CPU time so far over all its CPUs (user, nice, system, irq and
/// softirq of `/proc/stat`'s `cpu` line; not idle, iowait or steal), seconds.
pub fn busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_of(&stat)
}

fn busy_of(stat: &str) -> Option<f64> {
    cpu_line_seconds(stat, &[0, 1, 2, 5, 6])
}

/// The sum of the `cpu` line's fields at `fields` (0: user, after the name), seconds.
fn cpu_line_seconds(stat: &str, fields: &[usize]) -> Option<f64> {
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let values: Vec<&str> = line.split_whitespace().skip(1).collect();
    let ticks = fields.iter().map(|&i| values.get(i)?.parse::<u64>().ok()).sum::<Option<u64>>()?;
    Some(ticks as f64 / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)` without unsafe code: `getconf CLK_TCK`, else Linux's usual 100.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// `GET /metrics` from `addr` (`host:port`), the body. Blocking, bounded by a few seconds.
pub fn scrape(addr: &str) -> anyhow::Result<String> {
    let sock = addr
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            addr.to_socket_addrs()?.next().context("no address")
        })
        .with_context(|| format!("metrics address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body.split_once("\r\n\r\n").map_or(body.clone(), |(_, b)| b.to_owned()))
}

/// The value of an unlabelled metric `name` in a Prometheus text exposition.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The series of `name` with exactly the labels `labels` (as the exporter prints them, e.g.
/// `kind="agent"`).
pub fn labelled(body: &str, name: &str, labels: &str) -> Option<f64> {
    metric(body, &format!("{name}{{{labels}}}"))
}

/// Total size of the files under `dir` (recursively), bytes.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Where a node's CPU time is read from: its `/metrics` (`process_cpu_seconds_total`), else
/// `/proc/<pid>/stat` when the PID is known. With `tree`, the PID is a server's that forks
/// a process per connection (PostgreSQL's postmaster): its time and its children's
/// ([`tree_cpu_seconds`]).
#[derive(Debug, Clone, Default)]
pub struct CpuProbe {
    pub metrics: Option<String>,
    pub pid: Option<u32>,
    pub tree: bool,
}

/// The mesh's actor kinds, in the order of [`CpuSample::actor_writes`].
pub const ACTOR_KINDS: [&str; 3] = ["router", "conversation", "agent"];

/// One reading of a node's CPU time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample {
    pub seconds: f64,
    pub source: CpuSource,
    /// `switchboard_store_commits_total` and `switchboard_store_wal_pages_total` of the same
    /// scrape (from `/metrics` only; the pages on SQLite only).
    pub store_commits: Option<f64>,
    pub wal_pages: Option<f64>,
    /// `switchboard_store_batches_total`: the actor steps written (several go in a commit).
    pub store_batches: Option<f64>,
    /// `switchboard_actor_writes_total` by kind: router, conversation, agent (0 for a kind
    /// without a series yet; `None` without `/metrics`).
    pub actor_writes: [Option<f64>; 3],
    /// CPU time of the node's store threads (`store-…`, [`thread_cpu_seconds`]), seconds,
    /// when its PID is known.
    pub store_threads: Option<f64>,
    /// CPU time this machine's hypervisor gave to others (`steal` of `/proc/stat`, all CPUs),
    /// seconds: a run whose steal grew is a run on a slower machine.
    pub host_steal: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    Metrics,
    Proc,
    /// A server's processes: the postmaster and its backends ([`tree_cpu_seconds`]).
    ProcTree,
}

impl CpuSource {
    pub fn label(self) -> &'static str {
        match self {
            CpuSource::Metrics => "process_cpu_seconds_total",
            CpuSource::Proc => "/proc/<pid>/stat",
            CpuSource::ProcTree => "/proc/<pid>/stat of the server and its backends",
        }
    }
}

impl CpuProbe {
    /// [`sample`](Self::sample) off the runtime's threads (a scrape is blocking IO).
    pub async fn read(&self, source: Option<CpuSource>) -> Option<CpuSample> {
        let probe = self.clone();
        tokio::task::spawn_blocking(move || probe.sample(source)).await.ok().flatten()
    }

    /// Reads from `source` if given (so two readings compare), else from the first source
    /// available. Blocking.
    pub fn sample(&self, source: Option<CpuSource>) -> Option<CpuSample> {
        let host_steal = steal_seconds();
        if self.tree {
            return Some(CpuSample {
                seconds: tree_cpu_seconds(self.pid?)?,
                source: CpuSource::ProcTree,
                store_commits: None,
                wal_pages: None,
                store_batches: None,
                actor_writes: [None; 3],
                store_threads: None,
                host_steal,
            });
        }
        let store_threads = self.pid.and_then(|pid| thread_cpu_seconds(pid, "store-"));
        let from_metrics = || {
            let body = scrape(self.metrics.as_deref()?).ok()?;
            let seconds = metric(&body, "process_cpu_seconds_total")?;
            let store_commits = metric(&body, "switchboard_store_commits_total");
            let wal_pages = metric(&body, "switchboard_store_wal_pages_total");
            let store_batches = metric(&body, "switchboard_store_batches_total");
            // A kind that has not written yet has no series: none so far.
            let actor_writes = ACTOR_KINDS.map(|kind| {
                let labels = format!("kind=\"{kind}\"");
                labelled(&body, "switchboard_actor_writes_total", &labels).or(Some(0.0))
            });
            Some(CpuSample {
                seconds,
                source: CpuSource::Metrics,
                store_commits,
                wal_pages,
                store_batches,
                actor_writes,
                store_threads,
                host_steal,
            })
        };
        let from_proc = || {
            let seconds = cpu_seconds(self.pid?)?;
            Some(CpuSample {
                seconds,
                source: CpuSource::Proc,
                store_commits: None,
                wal_pages: None,
                store_batches: None,
                actor_writes: [None; 3],
                store_threads,
                host_steal,
            })
        };
        match source {
            Some(CpuSource::Metrics) => from_metrics(),
            Some(CpuSource::Proc) => from_proc(),
            // Only a `tree` probe reads a tree (above).
            Some(CpuSource::ProcTree) => None,
            None => from_metrics().or_else(from_proc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(cpu_seconds(me).is_some_and(|s| s >= 0.0));
        // The test harness names its threads after the tests; no thread is called this.
        assert_eq!(thread_cpu_seconds(me, "no-such-thread"), Some(0.0));
    }

    #[test]
    fn busy_time_adds_user_nice_system_irq_and_softirq() {
        let stat = "cpu  100 2 30 5000 7 11 13 17 0 0\ncpu0 50 1 15 2500 3 5 6 8 0 0\n";
        // 100 + 2 + 30 + 11 + 13 = 156 ticks; idle, iowait and steal are not busy.
        assert_eq!(busy_of(stat), Some(156.0 / clock_ticks()));
    }

    #[test]
    fn reads_a_threads_name_and_time_from_its_stat_line() {
        let stat = "4242 (store-writer) S 1 2 3 0 -1 4 5 6 7 8 250 50 0 0 20 0 1 0";
        assert_eq!(thread_name(stat), Some("store-writer"));
        assert_eq!(stat_seconds(stat), Some(300.0 / clock_ticks()));
        let odd = "7 (a (b) c) R 1 2 3 0 -1 4 5 6 7 8 1 2 0 0 20 0 1 0";
        assert_eq!(thread_name(odd), Some("a (b) c"));
        assert_eq!(stat_seconds(odd), Some(3.0 / clock_ticks()));
    }

    #[test]
    fn reads_a_parent_and_the_reaped_childrens_time_from_a_stat_line() {
        let stat = "4242 (postgres) S 17 2 3 0 -1 4 5 6 7 8 250 50 30 20 20 0 1 0";
        assert_eq!(parent(stat), Some(17));
        assert_eq!(stat_fields_seconds(stat, 4), Some(350.0 / clock_ticks()));
    }

    #[test]
    fn a_tree_counts_a_live_child_and_a_reaped_one() {
        let me = std::process::id();
        let alone = tree_cpu_seconds(me).expect("this process");
        // A child that burns some CPU and exits (reaped: its time moves into our cutime).
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh");
        assert!(status.success());
        let after = tree_cpu_seconds(me).expect("this process");
        assert!(after > alone, "the reaped child's time counts: {alone} → {after}");
        // A live child is found by its parent field.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .any(|stat| parent(&stat) == Some(me) && stat.contains("(sleep)"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "the live child names this process as its parent");
    }

    #[test]
    fn dirty_pages_are_dirty_plus_writeback() {
        let meminfo = "MemTotal: 24000000 kB\nDirty:   2637840 kB\nWriteback:   57364 kB\n\
                       WritebackTmp: 5 kB\n";
        assert_eq!(dirty_of(meminfo), Some((2_637_840 + 57_364) * 1024));
        assert_eq!(dirty_of("Dirty: 1 kB\n"), None);
    }

    #[test]
    fn reads_steal_from_the_all_cpus_line() {
        let stat = "cpu  3812045 0 597863 6768333 80605 0 80803 102731 0 0\n\
                    cpu0 1 0 1 1 1 0 1 7 0 0\n";
        let ticks = clock_ticks();
        assert_eq!(steal_of(stat), Some(102_731.0 / ticks));
        assert_eq!(steal_of("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn reads_unlabelled_metrics_only() {
        let body = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n\
                    process_cpu_seconds_total_x 3\nfoo{a=\"b\"} 1\nfoo 2\n";
        assert_eq!(metric(body, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(metric(body, "foo"), Some(2.0));
        assert_eq!(metric(body, "process_resident_memory_bytes"), None);
        let body = "w_total{kind=\"agent\"} 7\nw_total{kind=\"router\"} 2\n";
        assert_eq!(labelled(body, "w_total", "kind=\"router\""), Some(2.0));
        assert_eq!(labelled(body, "w_total", "kind=\"conversation\""), None);
    }
}
