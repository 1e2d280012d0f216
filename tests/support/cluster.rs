//! A real Redis Cluster for tests: six `redis-server` processes (three primaries, each with one
//! replica) on free loopback ports, joined with `redis-cli --cluster create`, and stopped when
//! the [`RedisCluster`] is dropped. Never the machine's own Redis on 6379.
//!
//! [`RedisCluster::start`] returns only once the cluster is fully formed: every node reports
//! `cluster_state:ok` with all 16384 slots served, every node's `CLUSTER NODES` agrees on the
//! same six nodes and three primaries, every replica has finished its initial sync, and a
//! message published on any node reaches a subscriber on every node (`RedisCluster::check_bus`
//! says why Valkey needs that). A test can then find a key's primary
//! ([`RedisCluster::primary_for_key`]), kill it with SIGKILL ([`RedisCluster::kill_node`]) and
//! wait until its replica has taken over ([`RedisCluster::wait_for_failover`]), which reports how
//! long the cluster needed.
//!
//! The nodes are tuned for fast, dependable failover on loopback: a node timeout of 2 s, a
//! replica validity factor of 0 (a replica always considers itself fresh enough to take over),
//! no replica migration (the topology only changes when a test kills a node) and no
//! diskless-sync delay (replicas sync at once). Reads stay with the primaries, as in a default
//! cluster: replicas answer `MOVED` unless a client sends `READONLY`, and a cluster that has lost
//! a slot serves nothing until it recovers (`cluster-allow-reads-when-down` stays `no`).
//!
//! Everything here talks to single nodes over plain synchronous connections; the `redis`
//! dev-dependency is built without its cluster client.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::FromRedisValue;

use super::{RedisServer, redis_server_binary};

/// Primaries in the cluster; each has one replica.
const PRIMARIES: usize = 3;
/// Nodes in the cluster.
const NODES: usize = PRIMARIES * 2;
/// Hash slots in every Redis Cluster.
const SLOTS: u32 = 16384;
/// The cluster bus listens on the client port plus this.
const BUS_PORT_OFFSET: u16 = 10000;
/// How long [`RedisCluster::start`] and [`RedisCluster::wait_for_failover`] wait.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often they look.
const POLL: Duration = Duration::from_millis(50);
/// Connect and read timeout for the harness's own connections, so that a stalled node cannot
/// hang a poll.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The `redis-cli` binary: `$REDIS_CLI`, else the one on `PATH`.
fn redis_cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_CLI") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-cli"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-cli was not found on PATH. The Redis Cluster tests join their nodes with \
             `redis-cli --cluster create` and are never skipped: install it (Debian/Ubuntu: \
             `apt-get install redis-tools`; macOS: `brew install redis`) or set \
             REDIS_CLI=/path/to/redis-cli. `.ci/run` installs it when it is missing."
        )
    })
}

/// One node as a `CLUSTER NODES` reply describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id (40 hex characters).
    pub id: String,
    /// The client port on 127.0.0.1.
    pub port: u16,
    /// The flags, such as `myself`, `master`, `slave`, `pfail`, `fail`.
    pub flags: Vec<String>,
    /// The id of the primary this node replicates, or `None` for a primary.
    pub primary_id: Option<String>,
    /// The slot ranges it serves, inclusive (empty for a replica).
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// Whether it is a primary (`master` flag).
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// Whether it is a replica (`slave` flag).
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave")
    }

    /// Whether the cluster has flagged it as failing (`fail` or `pfail`).
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?") || self.has_flag("pfail")
    }

    /// Whether it has the flag `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The node as every node's view must show it: its flags without `myself`, sorted.
    fn shared_view(&self) -> ClusterNode {
        let mut flags: Vec<String> = self
            .flags
            .iter()
            .filter(|f| *f != "myself")
            .cloned()
            .collect();
        flags.sort();
        ClusterNode {
            flags,
            ..self.clone()
        }
    }
}

/// Parses a `CLUSTER NODES` reply.
fn parse_cluster_nodes(text: &str) -> Result<Vec<ClusterNode>, String> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("short CLUSTER NODES line: {line:?}"));
        }
        // `127.0.0.1:30001@40001` or, from Redis 7, `127.0.0.1:30001@40001,hostname`.
        let address = fields[1].split([',', '@']).next().unwrap_or_default();
        let port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("no port in CLUSTER NODES line: {line:?}"))?;
        let mut slots = Vec::new();
        // Slot fields come after the link state; `[slot->-id]` and `[slot-<-id]` are slots
        // being migrated, which this harness never does.
        for slot in fields[8..].iter().filter(|s| !s.starts_with('[')) {
            let (a, b) = slot.split_once('-').unwrap_or((slot, slot));
            let parse = |s: &str| {
                s.parse::<u16>()
                    .map_err(|_| format!("bad slot {slot:?} in CLUSTER NODES line: {line:?}"))
            };
            slots.push((parse(a)?, parse(b)?));
        }
        slots.sort();
        nodes.push(ClusterNode {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        });
    }
    nodes.sort_by_key(|n| n.port);
    Ok(nodes)
}

/// Parses `key:value` lines (`CLUSTER INFO`, `INFO replication`).
fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A synchronous connection to one node, with timeouts.
fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    let con = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    Ok(con)
}

/// Runs `cmd` on the node at `port` over a fresh connection.
fn query<T: FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, String> {
    let mut con = connect(port)?;
    cmd.query(&mut con)
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))
}

fn cluster_info(port: u16) -> Result<HashMap<String, String>, String> {
    query::<String>(port, redis::cmd("CLUSTER").arg("INFO")).map(|text| parse_info(&text))
}

fn cluster_nodes(port: u16) -> Result<Vec<ClusterNode>, String> {
    query::<String>(port, redis::cmd("CLUSTER").arg("NODES"))
        .and_then(|text| parse_cluster_nodes(&text))
}

fn info_replication(port: u16) -> Result<HashMap<String, String>, String> {
    query::<String>(port, redis::cmd("INFO").arg("replication")).map(|text| parse_info(&text))
}

/// Checks that `CLUSTER INFO` says the node serves the whole cluster.
fn check_cluster_ok(port: u16) -> Result<(), String> {
    let info = cluster_info(port)?;
    let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("?");
    if field("cluster_state") != "ok" || field("cluster_slots_ok") != SLOTS.to_string() {
        return Err(format!(
            "127.0.0.1:{port} reports cluster_state:{} cluster_slots_ok:{} \
             cluster_slots_pfail:{} cluster_slots_fail:{}",
            field("cluster_state"),
            field("cluster_slots_ok"),
            field("cluster_slots_pfail"),
            field("cluster_slots_fail"),
        ));
    }
    Ok(())
}

/// A random number, for picking ports.
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Whether a loopback port can be bound right now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The kernel's range for outgoing connections' local ports.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// A client port that is free now, whose cluster bus port (`port + 10000`) is free too and at
/// most 65535, and where neither is 6379 or 16379 (the machine's own Redis).
///
/// Where it can, it picks both below the kernel's ephemeral range, so that no outgoing
/// connection (the cluster's own links included) can take one of them between this check and
/// the node's bind; otherwise it takes free ports from the kernel until one fits.
fn cluster_port() -> u16 {
    let reserved = |p: u16| p == 6379 || p == 16379;
    let fits = |p: u16| {
        p.checked_add(BUS_PORT_OFFSET)
            .is_some_and(|bus| !reserved(p) && !reserved(bus) && bindable(p) && bindable(bus))
    };
    const LOWEST: u16 = 10000;
    if let Some((ephemeral_low, _)) = ephemeral_range() {
        // The highest client port whose bus port is still below the ephemeral range.
        let highest = ephemeral_low.saturating_sub(BUS_PORT_OFFSET + 1);
        if highest > LOWEST + 1000 {
            let span = u64::from(highest - LOWEST + 1);
            for _ in 0..1000 {
                let port = LOWEST + (random() % span) as u16;
                if fits(port) {
                    return port;
                }
            }
        }
    }
    for _ in 0..1000 {
        let port = super::free_port();
        if fits(port) {
            return port;
        }
    }
    panic!("found no free loopback port whose cluster bus port (port + 10000) is free too");
}

/// Starts one cluster-enabled node, retrying on fresh ports if a port was taken meanwhile.
fn start_node() -> RedisServer {
    let mut last_error = String::new();
    for _ in 0..10 {
        let dir = tempfile::tempdir().expect("cannot create a temp dir");
        let nodes_conf = dir.path().join("nodes.conf");
        let mut server = RedisServer {
            child: None,
            port: cluster_port(),
            dir,
            // `RedisServer::spawn` adds `--save "" --appendonly no`, the loopback bind and
            // protected mode off, the temp dir as `--dir` and a log file there.
            extra_args: [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &nodes_conf.to_string_lossy(),
                "--cluster-node-timeout",
                "2000",
                // A replica may always take over, however long ago it last heard its primary.
                "--cluster-replica-validity-factor",
                "0",
                // The topology changes only when a test kills a node.
                "--cluster-allow-replica-migration",
                "no",
                // Replicas sync as soon as they attach instead of after 5 s.
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        match server.spawn() {
            Ok(()) => return server,
            Err(e) => last_error = e,
        }
    }
    panic!(
        "a cluster node ({}) did not start: {last_error}",
        redis_server_binary().display()
    );
}

/// What [`RedisCluster::kill_node`] knew about a node when it killed it.
#[derive(Debug, Clone)]
struct Killed {
    port: u16,
    id: String,
    was_primary: bool,
    /// The ids of the replicas that followed it, if it was a primary.
    replica_ids: Vec<String>,
    at: Instant,
}

/// A running six-node Redis Cluster: three primaries, one replica each, on loopback. Every node
/// is stopped when this is dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    killed: Vec<Killed>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .field(
                "killed",
                &self.killed.iter().map(|k| k.port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RedisCluster {
    /// Starts six cluster-enabled nodes, joins them with `redis-cli --cluster create ...
    /// --cluster-replicas 1`, and waits (up to 30 s) until every node reports
    /// `cluster_state:ok` with all 16384 slots, every node's `CLUSTER NODES` shows the same six
    /// nodes and three primaries, every replica's link to its primary is up and synced, and
    /// every primary counts its replica `online` (so that a `WAIT` can count it); then
    /// until a message published on each node reaches a subscriber on every node.
    ///
    /// Panics, saying why, if `redis-server` or `redis-cli` is missing, if the join fails, or
    /// if the cluster is not ready in time.
    pub fn start() -> RedisCluster {
        let cli = redis_cli_binary();
        let nodes: Vec<RedisServer> = (0..NODES).map(|_| start_node()).collect();
        let cluster = RedisCluster {
            nodes,
            killed: Vec::new(),
        };
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        if !output.status.success() {
            panic!(
                "`redis-cli --cluster create` on ports {:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
                cluster.ports(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
        let started = Instant::now();
        cluster.wait_until("the new cluster to be ready", || cluster.check_ready());
        cluster.wait_until("PUBLISH to reach every node from every node", || {
            cluster.check_bus()
        });
        eprintln!(
            "redis cluster on ports {:?} ready ({:?} after the join)",
            cluster.ports(),
            started.elapsed()
        );
        cluster
    }

    /// The client ports of all six nodes, killed ones included, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The client ports of the nodes that have not been killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|p| !self.is_killed(*p))
            .collect()
    }

    /// `redis://127.0.0.1:{port}` for all six nodes, killed ones included: the seed list a
    /// cluster client would be given.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The URLs of the current live primaries (see [`primaries`](Self::primaries)).
    pub fn primary_urls(&self) -> Vec<String> {
        self.primaries().iter().map(ClusterNode::url).collect()
    }

    /// Every node as a live node's `CLUSTER NODES` describes it right now (killed nodes
    /// included, with whatever flags the cluster has given them), sorted by port.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match cluster_nodes(port) {
                Ok(nodes) => return nodes,
                Err(e) => errors.push(e),
            }
        }
        panic!("no live node answered CLUSTER NODES: {errors:?}");
    }

    /// The live primaries: nodes flagged `master` that have not been killed and are not flagged
    /// as failing. Right after [`kill_node`](Self::kill_node) on a primary, and before its
    /// failover, there are only two.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        self.nodes()
            .into_iter()
            .filter(|n| n.is_primary() && !n.is_failing() && !self.is_killed(n.port))
            .collect()
    }

    /// The live replicas: nodes flagged `slave` that have not been killed and are not flagged as
    /// failing. [`ClusterNode::primary_id`] says which primary each follows.
    pub fn replicas(&self) -> Vec<ClusterNode> {
        self.nodes()
            .into_iter()
            .filter(|n| n.is_replica() && !n.is_failing() && !self.is_killed(n.port))
            .collect()
    }

    /// The live replicas of the node at `primary_port`.
    pub fn replicas_of(&self, primary_port: u16) -> Vec<ClusterNode> {
        let id = self.node_id(primary_port);
        self.replicas()
            .into_iter()
            .filter(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .collect()
    }

    /// The cluster node id of the node at `port` (also for a killed node).
    pub fn node_id(&self, port: u16) -> String {
        if let Some(killed) = self.killed.iter().find(|k| k.port == port) {
            return killed.id.clone();
        }
        self.nodes()
            .into_iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .id
    }

    /// The port of the primary that serves `key`'s slot, as a live node sees it now
    /// (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`).
    pub fn primary_for_key(&self, key: &str) -> u16 {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match primary_for_key_on(port, key) {
                Ok(primary) => return primary,
                Err(e) => errors.push(e),
            }
        }
        panic!("no live node could say which primary serves {key:?}: {errors:?}");
    }

    /// A synchronous connection to the node at `port` (no cluster redirection: a command for a
    /// slot the node does not serve gets a `MOVED` error). Connect, read and write time out
    /// after 2 s.
    pub fn connection(&self, port: u16) -> redis::Connection {
        assert!(
            self.nodes.iter().any(|n| n.port() == port),
            "no cluster node on port {port}"
        );
        connect(port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The process id of the node at `port` (panics for a killed node).
    pub fn pid(&self, port: u16) -> u32 {
        self.server(port).pid()
    }

    /// Kills the node at `port` with SIGKILL (by its pid, no shutdown of any kind) and keeps it
    /// dead: it is not restarted. Records its id, its role and its replicas, and the time, for
    /// [`wait_for_failover`](Self::wait_for_failover).
    pub fn kill_node(&mut self, port: u16) {
        assert!(!self.is_killed(port), "node {port} was already killed");
        let nodes = self.nodes();
        let node = nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .clone();
        let replica_ids = nodes
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(node.id.as_str()))
            .map(|n| n.id.clone())
            .collect();
        let server = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("node is known");
        // `Child::kill` is `kill(pid, SIGKILL)`; it then reaps the process.
        server.kill();
        self.killed.push(Killed {
            port,
            id: node.id.clone(),
            was_primary: node.is_primary(),
            replica_ids,
            at: Instant::now(),
        });
    }

    /// Waits (up to 30 s) until, in every live node's `CLUSTER NODES`, the primary killed on
    /// `dead_port` is flagged `fail` and one of its former replicas is a primary serving slots,
    /// and every live node reports `cluster_state:ok` with all 16384 slots again. Returns the
    /// time from [`kill_node`](Self::kill_node) to then: the cluster's recovery time.
    ///
    /// Panics, saying what was still missing, if that takes longer, and if `dead_port` was not
    /// killed or was not a primary.
    pub fn wait_for_failover(&self, dead_port: u16) -> Duration {
        let killed = self
            .killed
            .iter()
            .find(|k| k.port == dead_port)
            .unwrap_or_else(|| panic!("node {dead_port} was not killed with kill_node"))
            .clone();
        assert!(
            killed.was_primary,
            "node {dead_port} was a replica when it was killed: there is no failover to wait for"
        );
        assert!(
            !killed.replica_ids.is_empty(),
            "primary {dead_port} had no replica when it was killed: nothing can take over"
        );
        self.wait_until(
            &format!("the failover of the primary killed on port {dead_port}"),
            || self.check_failover(&killed),
        );
        killed.at.elapsed()
    }

    fn is_killed(&self, port: u16) -> bool {
        self.killed.iter().any(|k| k.port == port)
    }

    fn server(&self, port: u16) -> &RedisServer {
        assert!(!self.is_killed(port), "node {port} was killed");
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// Polls `check` until it passes, or panics after [`DEADLINE`] with what it last said.
    fn wait_until(&self, what: &str, mut check: impl FnMut() -> Result<(), String>) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = match check() {
                Ok(()) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what} (cluster on ports {:?}, \
                     killed {:?}): {last}",
                    self.ports(),
                    self.killed.iter().map(|k| k.port).collect::<Vec<_>>(),
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the fresh cluster is fully formed; if not, what is missing.
    fn check_ready(&self) -> Result<(), String> {
        let mut first_view: Option<(u16, Vec<ClusterNode>)> = None;
        for port in self.ports() {
            check_cluster_ok(port)?;
            let view = cluster_nodes(port)?;
            let primaries = view.iter().filter(|n| n.is_primary()).count();
            let unsettled: Vec<&ClusterNode> = view
                .iter()
                .filter(|n| {
                    n.is_failing()
                        || n.has_flag("handshake")
                        || n.has_flag("noaddr")
                        || !(n.is_primary() || n.is_replica())
                })
                .collect();
            if view.len() != NODES || primaries != PRIMARIES || !unsettled.is_empty() {
                return Err(format!(
                    "127.0.0.1:{port} knows {} nodes ({primaries} primaries), unsettled: \
                     {unsettled:?}",
                    view.len()
                ));
            }
            let served: u32 = view.iter().map(ClusterNode::slot_count).sum();
            if served != SLOTS {
                return Err(format!(
                    "127.0.0.1:{port} sees {served} slots assigned, not {SLOTS}"
                ));
            }
            match &first_view {
                None => first_view = Some((port, view)),
                Some((first_port, first)) => {
                    let shared = |v: &[ClusterNode]| {
                        v.iter().map(ClusterNode::shared_view).collect::<Vec<_>>()
                    };
                    if shared(first) != shared(&view) {
                        return Err(format!(
                            "127.0.0.1:{port} and 127.0.0.1:{first_port} disagree on CLUSTER \
                             NODES:\n{view:?}\nvs\n{first:?}"
                        ));
                    }
                }
            }
        }
        let (_, view) = first_view.expect("six nodes");
        // Each primary has exactly one replica.
        let mut followers: BTreeMap<&str, usize> = view
            .iter()
            .filter(|n| n.is_primary())
            .map(|n| (n.id.as_str(), 0))
            .collect();
        for replica in view.iter().filter(|n| n.is_replica()) {
            let primary = replica.primary_id.as_deref().unwrap_or("-");
            match followers.get_mut(primary) {
                Some(count) => *count += 1,
                None => {
                    return Err(format!(
                        "replica {} follows {primary}, which is not a primary",
                        replica.port
                    ));
                }
            }
        }
        if followers.values().any(|&c| c != 1) {
            return Err(format!("replicas per primary id: {followers:?}"));
        }
        for replica in view.iter().filter(|n| n.is_replica()) {
            check_replica_synced(replica.port)?;
        }
        for primary in view.iter().filter(|n| n.is_primary()) {
            let port = primary.port;
            super::replica_online(&mut connect(port)?)
                .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
        }
        Ok(())
    }

    /// Whether a message published on any live node reaches a subscriber on every live node; if
    /// not, which did not hear which. A cluster reports `ok` before every node has a working
    /// cluster bus link to every other, and Valkey 8.1 drops a pub/sub message that is the first
    /// message on a fresh link (it logs "Closing link for node that sent a lightweight message of
    /// type publish as its first message on the link" and makes the link again: fixed upstream by
    /// valkey-io/valkey#2817): a change published then would reach some watchers and not others.
    /// Once a message from every node has reached every node, every link has carried its `PING`.
    fn check_bus(&self) -> Result<(), String> {
        const CHANNEL: &str = "harness-bus-check";
        let ports = self.live_ports();
        let token = format!("{:x}", random());
        let mut connections = ports
            .iter()
            .map(|&port| connect(port))
            .collect::<Result<Vec<_>, _>>()?;
        let mut subscribers = Vec::new();
        for (connection, port) in connections.iter_mut().zip(&ports) {
            let mut pubsub = connection.as_pubsub();
            pubsub
                .subscribe(CHANNEL)
                .map_err(|e| format!("cannot subscribe on 127.0.0.1:{port}: {e}"))?;
            subscribers.push((*port, pubsub));
        }
        for &port in &ports {
            let _: i64 = query(
                port,
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(format!("{token} {port}")),
            )?;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut missing = Vec::new();
        for (port, pubsub) in &mut subscribers {
            let mut heard = Vec::new();
            while heard.len() < ports.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pubsub
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
                let Ok(message) = pubsub.get_message() else {
                    break;
                };
                let payload: String = message.get_payload().unwrap_or_default();
                if let Some(from) = payload.strip_prefix(&format!("{token} ")) {
                    heard.push(from.to_owned());
                }
            }
            if heard.len() < ports.len() {
                let unheard: Vec<u16> = ports
                    .iter()
                    .copied()
                    .filter(|p| !heard.contains(&p.to_string()))
                    .collect();
                missing.push(format!("127.0.0.1:{port} did not hear {unheard:?}"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }

    /// Whether the failover of `killed` is complete; if not, what is missing.
    fn check_failover(&self, killed: &Killed) -> Result<(), String> {
        for port in self.live_ports() {
            let view = cluster_nodes(port)?;
            let dead = view
                .iter()
                .find(|n| n.id == killed.id)
                .ok_or_else(|| format!("127.0.0.1:{port} no longer lists the dead node"))?;
            if !dead.has_flag("fail") {
                return Err(format!(
                    "127.0.0.1:{port} does not yet flag the dead node {} as fail (flags {:?})",
                    killed.port, dead.flags
                ));
            }
            let promoted = view.iter().find(|n| {
                killed.replica_ids.contains(&n.id)
                    && n.is_primary()
                    && !n.is_failing()
                    && n.slot_count() > 0
            });
            if promoted.is_none() {
                return Err(format!(
                    "127.0.0.1:{port} does not yet see a replica of {} promoted: {view:?}",
                    killed.port
                ));
            }
            check_cluster_ok(port)?;
        }
        Ok(())
    }
}

/// Whether the replica at `port` has its link to its primary up and its sync done.
fn check_replica_synced(port: u16) -> Result<(), String> {
    let info = info_replication(port)?;
    let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("?");
    if field("role") != "slave"
        || field("master_link_status") != "up"
        || field("master_sync_in_progress") != "0"
    {
        return Err(format!(
            "replica 127.0.0.1:{port} reports role:{} master_link_status:{} \
             master_sync_in_progress:{}",
            field("role"),
            field("master_link_status"),
            field("master_sync_in_progress"),
        ));
    }
    Ok(())
}

/// Asks the node at `port` which primary serves `key`.
fn primary_for_key_on(port: u16, key: &str) -> Result<u16, String> {
    let mut con = connect(port)?;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut con)
        .map_err(|e| format!("127.0.0.1:{port}: CLUSTER KEYSLOT: {e}"))?;
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut con)
        .map_err(|e| format!("127.0.0.1:{port}: CLUSTER SLOTS: {e}"))?;
    let int = |v: &redis::Value| {
        i64::from_redis_value_ref(v).map_err(|e| format!("bad CLUSTER SLOTS reply: {e}"))
    };
    for range in &ranges {
        let [start, end, primary, ..] = range.as_slice() else {
            return Err(format!("short CLUSTER SLOTS entry: {range:?}"));
        };
        if (int(start)?..=int(end)?).contains(&slot) {
            // [ip, port, id, ...]
            let primary = Vec::<redis::Value>::from_redis_value_ref(primary)
                .map_err(|e| format!("bad CLUSTER SLOTS node: {e}"))?;
            let primary_port = primary
                .get(1)
                .ok_or_else(|| format!("CLUSTER SLOTS node without a port: {primary:?}"))?;
            return u16::try_from(int(primary_port)?)
                .map_err(|e| format!("bad port in CLUSTER SLOTS: {e}"));
        }
    }
    Err(format!(
        "127.0.0.1:{port}: no primary serves slot {slot} of {key:?} (CLUSTER SLOTS {ranges:?})"
    ))
}
