//! A real Redis Sentinel topology for tests: one primary, one replica and three sentinels, every
//! one a `redis-server` child process on a free loopback port with its own temporary directory,
//! all stopped when the [`RedisSentinel`] is dropped. Never the machine's own Redis (6379) or
//! Sentinel (26379).
//!
//! A sentinel is `redis-server <dir>/sentinel.conf --sentinel` with a config file written here
//! (Sentinel rewrites it, so it lives in the sentinel's own writable directory). The sentinels
//! monitor the primary as `mymaster` with a quorum of 2, call it down after 1 s without a reply
//! and fail over quickly, so that a test can kill the primary and wait a few seconds for the
//! replica to take over.
//!
//! The sentinels are spoken to as plain Redis connections (`SENTINEL ...` commands), so the
//! `redis` dev-dependency needs no `sentinel` feature.
//!
//! [`RedisSentinel::start`] returns only once the topology is settled: the replica is in sync and
//! every sentinel knows the primary, the replica and the two other sentinels. Readiness and
//! failover are polled against a deadline, never assumed after a fixed sleep.

use std::collections::HashMap;
use std::fmt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RedisServer, free_port, ping, redis_server_binary};

/// The name the sentinels monitor the primary under.
const MASTER_NAME: &str = "mymaster";
/// How many sentinels must agree that the primary is down (of three).
const QUORUM: u32 = 2;
/// How long the primary may stay silent before a sentinel calls it down.
const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel's failover timeout. A failover attempt whose election fails is retried after twice
/// this, so it is kept short: 5 s leaves room for a retry well inside [`FAILOVER_DEADLINE`].
const FAILOVER_TIMEOUT_MS: u64 = 5000;
/// How long [`RedisSentinel::start`] waits for the topology to settle.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long [`RedisSentinel::wait_for_failover`] waits for a new primary.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
/// The interval between two looks at the topology while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Ports that belong to the machine's own Redis and Sentinel.
const RESERVED_PORTS: [u16; 2] = [6379, 26379];

/// One primary, one replica and three sentinels monitoring them as `mymaster`, each a
/// `redis-server` child process on a free loopback port; dropping it stops them all.
pub struct RedisSentinel {
    // Declared first so that they are dropped (stopped) before the data nodes: no sentinel is
    // left reacting to the nodes going away.
    sentinels: Vec<SentinelProcess>,
    /// The data nodes: `nodes[0]` started as the primary, `nodes[1]` as its replica.
    nodes: Vec<RedisServer>,
    /// The port of the data node [`kill_primary`](Self::kill_primary) last killed, and when.
    last_kill: Option<(u16, Instant)>,
}

impl RedisSentinel {
    /// Starts the primary, a replica of it and three sentinels monitoring it, then waits (up to
    /// 30 s) until the replica's link to the primary is up, the primary counts the replica
    /// `online`, and every sentinel reports the primary at its address with one replica (known,
    /// not down, its link up) and two other sentinels.
    ///
    /// # Panics
    ///
    /// If a process does not start, or the topology is not settled within the deadline: the
    /// message names what was not ready and carries the tail of each sentinel's log.
    pub fn start() -> Self {
        let started = Instant::now();
        // The default 5 s delay before a diskless full sync would only slow the first sync down.
        let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let primary_port = primary.port().to_string();
        let replica = RedisServer::start_with(&[
            "--repl-diskless-sync-delay",
            "0",
            "--replicaof",
            "127.0.0.1",
            &primary_port,
        ]);
        let mut topology = RedisSentinel {
            sentinels: Vec::new(),
            nodes: vec![primary, replica],
            last_kill: None,
        };
        // The sentinels learn of the replica from the primary's INFO, which they ask for as soon
        // as they connect and then only every 10 s: start them once the replica is attached.
        topology.wait_until("the replica to sync with the primary", started, |t| {
            let port = t.nodes[1].port();
            match info_field(port, "replication", "master_link_status") {
                Ok(status) if status == "up" => {}
                Ok(status) => return Err(format!("replica {port}: master_link_status:{status}")),
                Err(e) => return Err(format!("replica {port}: {e}")),
            }
            let primary = t.nodes[0].port();
            super::replica_online(&mut connect(primary)?)
                .map_err(|e| format!("primary {primary}: {e}"))
        });
        for _ in 0..3 {
            let sentinel = SentinelProcess::start(topology.nodes[0].port());
            topology.sentinels.push(sentinel);
        }
        topology.wait_until("the sentinels to know the topology", started, |t| {
            t.check_sentinels_settled()
        });
        topology
    }

    /// `redis://127.0.0.1:{port}` of each of the three sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The ports of the three sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The name the sentinels monitor the primary under: `"mymaster"`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The port of the primary as the sentinels currently report it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME mymaster`, from the first sentinel that answers).
    ///
    /// # Panics
    ///
    /// If no sentinel answers with an address.
    pub fn primary_port(&self) -> u16 {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            match sentinel_master_addr(sentinel.port) {
                Ok((_, port)) => return port,
                Err(e) => errors.push(format!("sentinel {}: {e}", sentinel.port)),
            }
        }
        panic!(
            "no sentinel reports the address of {MASTER_NAME}: {}",
            errors.join("; ")
        );
    }

    /// `redis://127.0.0.1:{port}` of the primary as the sentinels currently report it.
    pub fn primary_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.primary_port())
    }

    /// The port of the data node that is not the primary the sentinels currently report: the
    /// replica until a failover, and the old (killed) primary after one.
    pub fn replica_port(&self) -> u16 {
        let primary = self.primary_port();
        self.nodes
            .iter()
            .map(RedisServer::port)
            .find(|&port| port != primary)
            .expect("two data nodes on different ports")
    }

    /// Starts the data node on `port` again (after [`kill_primary`](Self::kill_primary)), on
    /// its port and directory: the sentinels make it a replica of the current primary.
    pub fn restart_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"));
        node.restart();
    }

    /// The data node listening on `port` (the primary or the replica), for a plain connection
    /// or its directory; `None` if no data node has that port.
    pub fn node(&self, port: u16) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.port() == port)
    }

    /// Kills the current primary (as the sentinels report it) with SIGKILL and keeps it dead;
    /// returns its port, to pass to [`wait_for_failover`](Self::wait_for_failover).
    ///
    /// # Panics
    ///
    /// If the reported primary is not one of the data nodes, or was killed already.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        if self.last_kill.is_some_and(|(killed, _)| killed == port) {
            panic!("the primary on port {port} was killed already and no failover happened");
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("the sentinels report a primary on port {port}, not ours"));
        node.kill();
        self.last_kill = Some((port, Instant::now()));
        port
    }

    /// Waits (up to 30 s) until every live sentinel reports the same primary address, on
    /// another port than `old_port`, and that new primary reports `role:master` in
    /// `INFO replication`. Returns how long the failover took: from the moment
    /// [`kill_primary`](Self::kill_primary) killed `old_port`, or from this call if it did not.
    ///
    /// # Panics
    ///
    /// If no failover completes within the deadline: the message says what each sentinel
    /// reports (address, flags, failover state, TILT) and carries the tail of each one's log.
    pub fn wait_for_failover(&mut self, old_port: u16) -> Duration {
        let called = Instant::now();
        let since = match self.last_kill {
            Some((port, at)) if port == old_port => at,
            _ => called,
        };
        self.wait_until_deadline(
            &format!("a failover away from port {old_port}"),
            called + FAILOVER_DEADLINE,
            |t| t.check_failed_over(old_port),
        );
        since.elapsed()
    }

    /// `Ok` once every live sentinel reports one primary, not on `old_port`, that says it is a
    /// master; otherwise what is still missing.
    fn check_failed_over(&mut self, old_port: u16) -> Result<(), String> {
        let mut reported = None;
        let mut live = 0;
        for sentinel in &mut self.sentinels {
            if !sentinel.is_running() {
                continue;
            }
            live += 1;
            let port = sentinel.port;
            let (_, primary) =
                sentinel_master_addr(port).map_err(|e| format!("sentinel {port}: {e}"))?;
            if primary == old_port {
                return Err(format!(
                    "sentinel {port} still reports the primary on {old_port}"
                ));
            }
            match reported {
                None => reported = Some(primary),
                Some(other) if other != primary => {
                    return Err(format!(
                        "sentinels disagree: one reports the primary on {other}, sentinel {port} \
                         on {primary}"
                    ));
                }
                Some(_) => {}
            }
        }
        let Some(primary) = reported else {
            return Err(format!("no live sentinel (of {live})"));
        };
        match info_field(primary, "replication", "role") {
            Ok(role) if role == "master" => Ok(()),
            Ok(role) => Err(format!("the new primary {primary} reports role:{role}")),
            Err(e) => Err(format!("the new primary {primary}: {e}")),
        }
    }

    /// `Ok` once every sentinel reports the primary at its address, one replica (ours, neither
    /// down nor disconnected, its link up) and two other sentinels; otherwise what is missing.
    fn check_sentinels_settled(&mut self) -> Result<(), String> {
        let primary_port = self.nodes[0].port();
        let replica_port = self.nodes[1].port();
        for sentinel in &mut self.sentinels {
            let port = sentinel.port;
            if !sentinel.is_running() {
                return Err(format!("sentinel {port} exited"));
            }
            let master = sentinel_master(port).map_err(|e| format!("sentinel {port}: {e}"))?;
            let field = |name: &str| master.get(name).map(String::as_str).unwrap_or("?");
            if field("port") != primary_port.to_string() {
                return Err(format!(
                    "sentinel {port} reports the primary on port {}, not {primary_port}",
                    field("port")
                ));
            }
            if field("flags") != "master" {
                return Err(format!(
                    "sentinel {port} reports the primary with flags {}",
                    field("flags")
                ));
            }
            if field("num-slaves") != "1" || field("num-other-sentinels") != "2" {
                return Err(format!(
                    "sentinel {port} knows {} replica(s) and {} other sentinel(s), not 1 and 2",
                    field("num-slaves"),
                    field("num-other-sentinels")
                ));
            }
            let replicas = sentinel_replicas(port).map_err(|e| format!("sentinel {port}: {e}"))?;
            let replica = replicas
                .iter()
                .find(|r| r.get("port").map(String::as_str) == Some(&*replica_port.to_string()));
            let Some(replica) = replica else {
                return Err(format!(
                    "sentinel {port} does not list the replica on {replica_port}"
                ));
            };
            let flags = replica.get("flags").map(String::as_str).unwrap_or("?");
            let link = replica
                .get("master-link-status")
                .map(String::as_str)
                .unwrap_or("?");
            let bad_flag = ["s_down", "o_down", "disconnected"]
                .iter()
                .any(|f| flags.split(',').any(|g| g == *f));
            if bad_flag || link != "ok" {
                return Err(format!(
                    "sentinel {port} sees the replica {replica_port} with flags {flags} and \
                     master-link-status {link}"
                ));
            }
        }
        Ok(())
    }

    /// Polls `check` until it is `Ok`, for at most [`READY_DEADLINE`] from `started`.
    fn wait_until(
        &mut self, what: &str, started: Instant, check: impl FnMut(&mut Self) -> Result<(), String>,
    ) {
        self.wait_until_deadline(what, started + READY_DEADLINE, check);
    }

    /// Polls `check` every [`POLL_INTERVAL`] until it is `Ok`; past `deadline`, panics with
    /// its last complaint and the state of the sentinels.
    fn wait_until_deadline(
        &mut self, what: &str, deadline: Instant,
        mut check: impl FnMut(&mut Self) -> Result<(), String>,
    ) {
        let waited_from = Instant::now();
        loop {
            let last = match check(self) {
                Ok(()) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {:.1?} waiting for {what}; not ready: {last}\n{}",
                    waited_from.elapsed(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// What each sentinel reports, and the tail of its log, for a panic message.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for sentinel in &self.sentinels {
            let port = sentinel.port;
            let addr = sentinel_master_addr(port)
                .map(|(host, p)| format!("{host}:{p}"))
                .unwrap_or_else(|e| e);
            let master = sentinel_master(port)
                .map(|m| {
                    let get = |k: &str| m.get(k).cloned().unwrap_or_default();
                    format!(
                        "flags={} failover-state={} num-slaves={} num-other-sentinels={}",
                        get("flags"),
                        get("failover-state"),
                        get("num-slaves"),
                        get("num-other-sentinels")
                    )
                })
                .unwrap_or_else(|e| e);
            let tilt = info_field(port, "sentinel", "sentinel_tilt").unwrap_or_else(|e| e);
            out.push_str(&format!(
                "--- sentinel {port}: primary {addr}; {master}; tilt={tilt}; log tail:\n{}\n",
                sentinel.log_tail(25)
            ));
        }
        out
    }
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field(
                "nodes",
                &self.nodes.iter().map(RedisServer::port).collect::<Vec<_>>(),
            )
            .field("sentinels", &self.sentinel_ports())
            .field("last_kill", &self.last_kill.map(|(port, _)| port))
            .finish()
    }
}

/// A `redis-server --sentinel` child process with its config file, log and working directory in
/// its own temporary directory; killed (SIGKILL) when dropped.
#[derive(Debug)]
struct SentinelProcess {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl SentinelProcess {
    /// A sentinel monitoring the primary on `primary_port`, answering PING. A free port can be
    /// taken between the probe and the bind, so a few ports are tried.
    fn start(primary_port: u16) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            if RESERVED_PORTS.contains(&port) {
                continue;
            }
            let mut sentinel = SentinelProcess {
                child: None,
                port,
                dir: tempfile::tempdir().expect("cannot create a temp dir"),
            };
            match sentinel.spawn(primary_port) {
                Ok(()) => return sentinel,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server --sentinel did not start: {last_error}");
    }

    fn spawn(&mut self, primary_port: u16) -> Result<(), String> {
        let dir = self.dir.path();
        let conf = dir.join("sentinel.conf");
        let log = dir.join("sentinel.log");
        let config = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             protected-mode no\n\
             daemonize no\n\
             dir \"{dir}\"\n\
             logfile \"{log}\"\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = self.port,
            dir = dir.display(),
            log = log.display(),
        );
        std::fs::write(&conf, config).map_err(|e| format!("cannot write {conf:?}: {e}"))?;
        let child = Command::new(redis_server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server --sentinel: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.is_running() {
                return Err(format!(
                    "redis-server --sentinel on port {} exited; log:\n{}",
                    self.port,
                    self.log_tail(50)
                ));
            }
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(format!(
            "redis-server --sentinel on port {} did not answer PING within 10 s",
            self.port
        ))
    }

    /// Whether the process is still running.
    fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The last `lines` lines of its log.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills it with SIGKILL and waits for it to exit.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain connection to a loopback server (data node or sentinel) that cannot hang a wait:
/// connecting, reading and writing each time out.
fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| format!("bad url: {e}"))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| format!("cannot connect: {e}"))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|()| con.set_write_timeout(Some(Duration::from_secs(2))))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    Ok(con)
}

/// One `field:value` of `INFO <section>`.
fn info_field(port: u16, section: &str, field: &str) -> Result<String, String> {
    let mut con = connect(port)?;
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut con)
        .map_err(|e| format!("INFO {section}: {e}"))?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .ok_or_else(|| format!("INFO {section} has no {field}"))
}

/// `SENTINEL MASTER mymaster` as field → value.
fn sentinel_master(port: u16) -> Result<HashMap<String, String>, String> {
    let mut con = connect(port)?;
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER_NAME)
        .query(&mut con)
        .map_err(|e| format!("SENTINEL MASTER {MASTER_NAME}: {e}"))?;
    Ok(pairs(flat))
}

/// `SENTINEL REPLICAS mymaster`, each replica as field → value.
fn sentinel_replicas(port: u16) -> Result<Vec<HashMap<String, String>>, String> {
    let mut con = connect(port)?;
    let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(MASTER_NAME)
        .query(&mut con)
        .map_err(|e| format!("SENTINEL REPLICAS {MASTER_NAME}: {e}"))?;
    Ok(replicas.into_iter().map(pairs).collect())
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` as host and port.
fn sentinel_master_addr(port: u16) -> Result<(String, u16), String> {
    let mut con = connect(port)?;
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER_NAME)
        .query(&mut con)
        .map_err(|e| format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME}: {e}"))?;
    let (host, primary) = addr.ok_or_else(|| format!("{MASTER_NAME} is unknown"))?;
    let primary = primary
        .parse()
        .map_err(|e| format!("bad port {primary:?}: {e}"))?;
    Ok((host, primary))
}

/// A flat `[field, value, field, value, ...]` reply as a map.
fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut items = flat.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        map.insert(key, value);
    }
    map
}
