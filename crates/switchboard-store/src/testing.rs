//! A throwaway PostgreSQL server for tests (feature `testing`): this crate's store tests and
//! the node's cluster tests start a real server with it.
//!
//! [`PgServer::start`] runs Debian's `initdb` and `postgres` (the highest version under
//! `/usr/lib/postgresql/*/bin/`, or `$SWITCHBOARD_PG_BIN`) in a temporary directory, on a free
//! loopback port, and [`PgServer::database`] hands each test a fresh database. Dropping the
//! server stops exactly that process, by its PID.
//!
//! `initdb` and `postgres` refuse to run as root. As root, both run as the `postgres` system
//! user that Debian's package creates (or `$SWITCHBOARD_PG_USER`, or `nobody` if there is no
//! `postgres` user), through `setpriv`, which execs in place so the PID we hold is the
//! server's; the temporary directory is handed to that user. As anyone else they run as is.
//!
//! The server runs under a small `sh` guard whose stdin is a pipe from the test process:
//! when that process exits in any way (even SIGKILL, or a `static` server whose `Drop` never
//! runs), the pipe closes and the guard stops the server by its PID. So no test run leaves
//! a server behind.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postgres::{Client, NoTls};

/// How often and how long to poll for the server to start or stop. Bounded: a server that
/// does not come up in time fails the test with its log.
const POLL: Duration = Duration::from_millis(50);
const START_POLLS: u32 = 1_200; // 60 s: initdb is done, this is recovery plus start-up
const STOP_POLLS: u32 = 400; // 20 s for a fast shutdown before SIGKILL

/// The guard script: `$@` is the server's command line, `$PG_LOG` its log file. It prints the
/// server's PID, waits for a line or the end of its stdin, then stops the server (fast
/// shutdown) and, unless the line was `keep` (a stop or kill to restart), removes `$PG_DIR`:
/// the temporary directory of a `static` server is never dropped.
const GUARD: &str = r#""$@" >>"$PG_LOG" 2>&1 </dev/null &
pg=$!
echo "$pg"
read -r keep || true
kill -INT "$pg" 2>/dev/null
wait "$pg"
[ "$keep" = keep ] || rm -rf "$PG_DIR"
"#;

/// A PostgreSQL server of the test's own: its data directory, port and process.
#[derive(Debug)]
pub struct PgServer {
    /// Holds `data/` (the cluster), the socket and `postgres.log`; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// `None` while stopped.
    running: Option<Running>,
    /// Names fresh databases.
    next_db: AtomicU64,
}

#[derive(Debug)]
struct Running {
    guard: Child,
    /// Closing it tells the guard to stop the server.
    guard_stdin: ChildStdin,
    /// The `postgres` process itself.
    pid: u32,
}

impl PgServer {
    /// One server for the whole test binary, started on first use; the guard stops it when
    /// the binary exits.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            off_runtime(PgServer::start).expect("start a PostgreSQL server for the tests")
        })
    }

    /// Initialises a cluster in a new temporary directory and starts a server on it.
    pub fn start() -> std::io::Result<PgServer> {
        let bin = bin_dir()?;
        let user = run_as()?;
        let dir = tempfile::Builder::new().prefix("switchboard-pg-").tempdir()?;
        if let Some(user) = &user {
            run(Command::new("chown").arg(format!("{user}:")).arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        run(as_user(&user, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
            .args(["--no-sync"]) // a throwaway cluster: its creation need not survive a crash
            .stdout(Stdio::null()))?;
        let mut server = PgServer { dir, port: 0, running: None, next_db: AtomicU64::new(0) };
        server.restart()?;
        Ok(server)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL. Each test takes its own.
    pub fn database(&self) -> String {
        let name = format!("test_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let admin = self.url("postgres");
        off_runtime(|| {
            // A busy machine can refuse a connection for a moment: retry a few times.
            let mut last = None;
            for _ in 0..5 {
                let created = Client::connect(&admin, NoTls)
                    .and_then(|mut c| c.batch_execute(&format!("CREATE DATABASE {name}")));
                match created {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            panic!("cannot create a test database on {admin}: {last:?}\n{}", self.log());
        });
        self.url(&name)
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Kills the server with SIGKILL (a crash: no shutdown checkpoint) and waits until it is
    /// gone. [`PgServer::restart`] brings it back on the same data directory and port.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            signal("KILL", running.pid);
            finish(running);
        }
    }

    /// Starts the server on its data directory (again), on the same port if it had one, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        off_runtime(|| self.start_again())
    }

    fn start_again(&mut self) -> std::io::Result<()> {
        let bin = bin_dir()?;
        let user = run_as()?;
        // A fresh port is free now but not reserved: retry on another if we lose the race.
        // After a SIGKILL the old server's backends may take a moment to notice and exit;
        // until then a new server refuses the data directory.
        let mut last_error = None;
        for attempt in 0..10 {
            if attempt > 0 {
                std::thread::sleep(POLL * 10);
            }
            let port = if self.port == 0 { free_port()? } else { self.port };
            match self.spawn(&bin, &user, port) {
                Ok(running) => {
                    self.port = port;
                    self.running = Some(running);
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    fn spawn(&self, bin: &Path, user: &Option<String>, port: u16) -> std::io::Result<Running> {
        let server = as_user(user, &bin.join("postgres"));
        let mut guard = Command::new("sh");
        guard
            .arg("-c")
            .arg(GUARD)
            .arg("pg-guard")
            .arg(server.get_program())
            .args(server.get_args())
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .env("PG_LOG", self.log_path())
            .env("PG_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = guard.spawn()?;
        let guard_stdin = child.stdin.take().expect("piped");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let pid = line.trim().parse::<u32>().map_err(std::io::Error::other)?;
        let mut running = Running { guard: child, guard_stdin, pid };
        for _ in 0..START_POLLS {
            if running.guard.try_wait()?.is_some() {
                return Err(std::io::Error::other(format!(
                    "postgres exited at start-up; log:\n{}",
                    self.log()
                )));
            }
            let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
            if Client::connect(&url, NoTls).is_ok() {
                return Ok(running);
            }
            std::thread::sleep(POLL);
        }
        signal("KILL", running.pid);
        finish(running);
        Err(std::io::Error::other(format!("postgres did not start in time; log:\n{}", self.log())))
    }

    /// Stops the server (fast shutdown: SIGINT, then SIGKILL if it takes too long).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            signal("INT", running.pid);
            finish(running);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Closes the guard's stdin (which also stops the server) and waits, bounded, for the guard
/// to see the server exit; SIGKILLs the server and the guard if it does not.
fn finish(running: Running) {
    let Running { mut guard, mut guard_stdin, pid } = running;
    // The directory stays: the server restarts on it, or its `TempDir` removes it.
    let _ = guard_stdin.write_all(b"keep\n");
    drop(guard_stdin);
    for _ in 0..STOP_POLLS {
        if guard.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(POLL);
    }
    signal("KILL", pid);
    let _ = guard.kill();
    let _ = guard.wait();
}

/// Runs `f` on a thread of its own. The synchronous `postgres::Client` runs an async runtime
/// inside, which panics on a thread that is already driving one (an async test's).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Sends a signal to one process, by PID.
fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Debian's binaries of the highest installed major version, or `$SWITCHBOARD_PG_BIN`.
fn bin_dir() -> std::io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHBOARD_PG_BIN") {
        return Ok(dir.into());
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no PostgreSQL under /usr/lib/postgresql ({e}); run scripts/setup"),
        )
    })?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| std::io::Error::other("no /usr/lib/postgresql/*/bin/postgres"))
}

/// The user to run the server as: `None` when we are not root.
fn run_as() -> std::io::Result<Option<String>> {
    let uid = output(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Ok(None);
    }
    if let Ok(user) = std::env::var("SWITCHBOARD_PG_USER") {
        return Ok(Some(user));
    }
    let exists = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    Ok(Some(if exists("postgres") { "postgres" } else { "nobody" }.to_owned()))
}

/// `program` as `user` (via `setpriv`, which execs: same PID), or as is.
fn as_user(user: &Option<String>, program: &Path) -> Command {
    match user {
        None => Command::new(program),
        Some(user) => {
            let id = |flag: &str| {
                output(Command::new("id").arg(flag).arg(user))
                    .map_or_else(|_| user.clone(), |id| id.trim().to_owned())
            };
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", id("-u")))
                .arg(format!("--regid={}", id("-g")))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn run(command: &mut Command) -> std::io::Result<()> {
    let out = command.stderr(Stdio::piped()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{:?} failed ({}): {}",
            command,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn output(command: &mut Command) -> std::io::Result<String> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{command:?} failed ({})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A session set up as the store sets up its own (the same settings), for tests that hold
/// locks the way a stalled node's writer would.
pub fn store_session(url: &str) -> Result<Client, postgres::Error> {
    crate::postgres::connect(url, "switchboard-test")
}
