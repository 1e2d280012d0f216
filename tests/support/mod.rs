//! Test support: real `redis-server` processes on free loopback ports, each with its own
//! temporary directory, stopped when dropped. Never the machine's own Redis on 6379.
#![allow(dead_code)] // each test binary uses its own part of the support code

// The topologies and the NATS servers are compiled only into the builds that test them, as
// the test files that use them are (`#![cfg(feature = ...)]`).
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod leases;
#[cfg(feature = "nats")]
pub mod nats;
pub mod proxy;
#[cfg(feature = "sentinel")]
pub mod sentinel;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `redis-server` binary: `$REDIS_SERVER`, else the one on `PATH`.
fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server was not found on PATH. The Redis tests start their own servers and are \
             never skipped: install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: \
             `brew install redis`) or set REDIS_SERVER=/path/to/redis-server. `.ci/run` installs \
             it when it is missing."
        )
    })
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// A fresh server with nothing persisted.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A fresh server with extra `redis-server` arguments such as `["--requirepass", "x"]`.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("cannot create a temp dir"),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// One attempt at [`start_with`](Self::start_with), for a caller whose extra arguments name
    /// a port of their own (such as `--tls-port`) that may have been taken too: it retries with
    /// a fresh one.
    pub fn try_start_with(extra_args: &[&str]) -> Result<Self, String> {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("cannot create a temp dir"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn().map(|()| server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new(redis_server_binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited with {status}; log:\n{log}"));
            }
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err("redis-server did not answer PING within 10 s".into())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain `redis` client for looking at what the library stored.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid url")
    }

    /// A plain synchronous connection.
    pub fn raw(&self) -> redis::Connection {
        self.client().get_connection().expect("raw connection")
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Kills the server with SIGKILL (no shutdown save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("redis-server restart");
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the process: a server that holds its connections
    /// open and never answers.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

/// Whether `error` is the server's ACL refusal: a `NOPERM` error code anywhere in its chain of
/// causes (for a transaction, the error of every refused command is `NOPERM`), or, where the
/// library kept only the driver's message (a change feed's refused subscription), that code as
/// the `redis` crate shows it (`NoPerm: ...`). Only the code is the same everywhere: Redis and
/// Valkey word the message differently ("this user has no permissions to access one of the keys
/// used as arguments", "No permissions to access a key"), as they do for channels and commands.
pub fn is_noperm(error: &state_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(redis_error) = e.downcast_ref::<redis::RedisError>() {
            // A transaction's `EXECABORT` carries the errors of the commands it refused.
            let refusals = redis_error.clone().into_server_errors();
            let noperm = match refusals.as_deref() {
                Some([]) | None => redis_error.code() == Some("NOPERM"),
                Some(errors) => errors.iter().all(|(_, e)| e.code() == "NOPERM"),
            };
            if noperm {
                return true;
            }
        }
        cause = e.source();
    }
    let shown = error.to_string();
    shown.contains("NoPerm: ") || shown.contains("NOPERM ")
}

/// How often the server ran `command` (lowercase, as `INFO commandstats` names it) since its
/// stats were last reset (`CONFIG RESETSTAT`).
pub fn command_calls(raw: &mut redis::Connection, command: &str) -> u64 {
    let stats: String = redis::cmd("INFO").arg("commandstats").query(raw).unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Records the commands clients send to a server (its `MONITOR` feed), leaving out those that
/// scripts run inside the server.
pub struct Monitor {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Monitor {
    pub fn start(port: u16) -> Monitor {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("monitor connection");
        stream.write_all(b"MONITOR\r\n").expect("send MONITOR");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let monitor = Monitor { lines };
        // The first reply is +OK; wait for it so no command is missed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor.lines.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "MONITOR did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        monitor.lines.lock().unwrap().clear();
        monitor
    }

    /// The command names (lowercase) that clients sent since the last call, in order.
    pub fn take_client_commands(&self) -> Vec<String> {
        self.take_client_lines()
            .iter()
            .map(|line| line.split('"').next().unwrap_or_default().to_lowercase())
            .collect()
    }

    /// The commands that clients sent since the last call, each as MONITOR shows it
    /// (`"evalsha" "..." "1" ...`), in order.
    pub fn take_client_lines(&self) -> Vec<String> {
        // MONITOR lines arrive asynchronously: give them a moment.
        std::thread::sleep(Duration::from_millis(100));
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        lines
            .iter()
            .filter(|line| !line.contains(" lua]"))
            .filter_map(|line| line.split_once("] \"").map(|(_, rest)| rest.to_owned()))
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // A stopped process does not die from SIGKILL until it is continued on some
            // systems' views of it; resume first so the wait cannot hang.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The ids of the connections whose `CLIENT LIST` line satisfies `select`.
pub fn client_ids(
    raw: &mut redis::Connection, select: impl Fn(&str) -> bool,
) -> std::collections::BTreeSet<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(raw).unwrap();
    list.lines()
        .filter(|line| select(line))
        .map(|line| {
            let id = line.split_whitespace().next().unwrap();
            id.strip_prefix("id=").unwrap().parse().unwrap()
        })
        .collect()
}

/// Whether the primary behind `conn` has a replica and counts each of its replicas `online`;
/// if not, what it reports. A replica says its link is `up` as soon as it has loaded the
/// primary's snapshot, but the primary moves it from `wait_bgsave` or `send_bulk` to `online`
/// only when the replica's first `REPLCONF ACK` arrives; until then a `WAIT` on the primary
/// cannot count it.
pub fn replica_online(conn: &mut redis::Connection) -> Result<(), String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(conn)
        .map_err(|e| format!("INFO replication: {e}"))?;
    // `slave0:ip=...,port=...,state=online,offset=...,lag=0`, one line per replica.
    let replicas: Vec<&str> = info
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.strip_prefix("slave")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    let online = |line: &&str| line.split([':', ',']).any(|field| field == "state=online");
    if replicas.is_empty() || !replicas.iter().all(online) {
        return Err(format!("the primary reports replicas {replicas:?}"));
    }
    Ok(())
}

/// Waits until the replica of the primary behind `conn` has everything the primary has now.
/// (`WAIT` would not do: it waits for the writes of its own connection, and this one wrote
/// nothing, so it answers at once.)
pub fn replicated(conn: &mut redis::Connection, port: u16) {
    let offsets = |conn: &mut redis::Connection| -> (i64, Vec<i64>) {
        let info: String = redis::cmd("INFO").arg("replication").query(conn).unwrap();
        let field = |line: &str, name: &str| {
            line.split(',')
                .find_map(|part| part.strip_prefix(name))
                .and_then(|value| value.trim().parse::<i64>().ok())
        };
        let primary = info
            .lines()
            .find_map(|line| field(line, "master_repl_offset:"))
            .unwrap_or(0);
        let replicas = info
            .lines()
            .filter(|line| line.starts_with("slave"))
            .filter_map(|line| field(line.split_once(':')?.1, "offset="))
            .collect();
        (primary, replicas)
    };
    let (target, _) = offsets(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, replicas) = offsets(conn);
        if !replicas.is_empty() && replicas.iter().all(|&offset| offset >= target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica of {port} did not catch up with offset {target}: {replicas:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
