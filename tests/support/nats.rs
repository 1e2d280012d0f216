//! `nats-server -js` child processes on free loopback ports, each with its own JetStream store
//! directory, stopped when dropped: one server alone ([`NatsServer`]) or a cluster of three
//! ([`NatsCluster`]). Never the machine's own NATS on 4222.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The `nats-server` binary: `$NATS_SERVER`, else the one on `PATH` (or `/usr/sbin`, where
/// Debian puts it).
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server was not found. The NATS tests start their own servers and are never \
                 skipped: install it (Debian/Ubuntu: `apt-get install nats-server`) or set \
                 NATS_SERVER=/path/to/nats-server. `.ci/run` installs it when it is missing."
            )
        })
}

/// A `nats-server -js` child process with file storage in its own temp dir.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// A fresh server with an empty JetStream store.
    pub fn start() -> Self {
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let mut server = NatsServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("cannot create a temp dir"),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("nats-server did not start: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let store = self.dir.path().join("jetstream");
        let child = Command::new(nats_server_binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run nats-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("nats-server exited: {status}"));
            }
            match jetstream_answers(self.port) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "nats-server on port {} never answered: {last}",
            self.port
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server at once (SIGKILL): what it acknowledged is on disk, nothing else.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger for a moment after the kill.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restarting nats-server: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("nats-server did not restart: {e}"),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server on `port` takes a connection and its JetStream API answers an account
/// info request (not the error of a server still recovering its streams).
fn jetstream_answers(port: u16) -> Result<(), String> {
    // A server still electing its leaders leaves the request unanswered: ask again soon.
    let payload = jetstream_request(port, "$JS.API.INFO", "", Duration::from_secs(1))?;
    if payload.contains("account_info_response") && !payload.contains("\"error\"") {
        Ok(())
    } else {
        Err(format!("JetStream is not ready: {payload}"))
    }
}

/// One JetStream API request to the server on `port`, over a connection of its own spoken in
/// the plain protocol (no client library, no async runtime): the answer's payload, awaited at
/// most `timeout`.
fn jetstream_request(
    port: u16, subject: &str, payload: &str, timeout: Duration,
) -> Result<String, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("INFO ") {
        return Err(format!("unexpected greeting {line:?}"));
    }
    let request = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB _INBOX.ready 1\r\n\
         PUB {subject} _INBOX.ready {}\r\n{payload}\r\nPING\r\n",
        payload.len()
    );
    writer
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("MSG _INBOX.ready") {
            let mut payload = String::new();
            reader.read_line(&mut payload).map_err(|e| e.to_string())?;
            return Ok(payload);
        }
        if line.starts_with("-ERR") {
            return Err(line.trim().to_owned());
        }
    }
}

/// A JetStream cluster of three `nats-server -js` child processes (`n1`, `n2`, `n3`), each on
/// free loopback ports (clients and routes) with its own store directory, routed to the other
/// two; stopped when dropped.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

struct ClusterNode {
    child: Option<Child>,
    port: u16,
    route_port: u16,
}

impl NatsCluster {
    /// Three fresh servers, returned once the JetStream cluster has a meta leader and places
    /// a stream on all three (a 3-replica probe stream is created and deleted).
    pub fn start() -> Self {
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let mut ports = Vec::new();
            while ports.len() < 6 {
                let port = free_port();
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            let mut cluster = NatsCluster {
                nodes: (0..3)
                    .map(|i| ClusterNode {
                        child: None,
                        port: ports[i],
                        route_port: ports[3 + i],
                    })
                    .collect(),
                dir: tempfile::tempdir().expect("cannot create a temp dir"),
            };
            match cluster.spawn_all().and_then(|()| cluster.wait_ready()) {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("the NATS cluster did not start: {last_error}");
    }

    fn spawn_all(&mut self) -> Result<(), String> {
        let binary = nats_server_binary();
        let route_ports: Vec<u16> = self.nodes.iter().map(|n| n.route_port).collect();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                .collect();
            let name = format!("n{}", i + 1);
            let child = Command::new(&binary)
                .args(["-js", "-a", "127.0.0.1", "-p", &node.port.to_string()])
                .args(["--server_name", &name, "--cluster_name", "state-store-test"])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{}", node.route_port))
                .arg("--routes")
                .arg(routes.join(","))
                .arg("-sd")
                .arg(self.dir.path().join(&name))
                .arg("-l")
                .arg(self.dir.path().join(format!("{name}.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run nats-server: {e}"))?;
            node.child = Some(child);
        }
        Ok(())
    }

    /// Waits until every server's JetStream answers and a 3-replica stream can be created.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        let mut ready = [false; 3];
        while Instant::now() < deadline {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(status) = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    node.child = None;
                    let log = self.dir.path().join(format!("n{}.log", i + 1));
                    let log = std::fs::read_to_string(log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(format!("n{} exited: {status}: {tail:?}", i + 1));
                }
                if !ready[i] {
                    match jetstream_answers(node.port) {
                        Ok(()) => ready[i] = true,
                        Err(e) => last = format!("n{}: {e}", i + 1),
                    }
                }
            }
            if ready.iter().all(|r| *r) {
                match self.probe_stream() {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the NATS cluster was not ready in 30 s: {last}"))
    }

    /// Creates and deletes a 3-replica stream: the meta leader is elected and knows all three.
    fn probe_stream(&self) -> Result<(), String> {
        const PROBE: Duration = Duration::from_secs(5);
        let port = self.nodes[0].port;
        let config = r#"{"name":"ready_probe","subjects":["ready_probe.>"],"num_replicas":3,"storage":"memory"}"#;
        let created = jetstream_request(port, "$JS.API.STREAM.CREATE.ready_probe", config, PROBE)?;
        if created.contains("\"error\"") {
            return Err(format!(
                "a 3-replica stream cannot be created yet: {created}"
            ));
        }
        let deleted = jetstream_request(port, "$JS.API.STREAM.DELETE.ready_probe", "", PROBE)?;
        if deleted.contains("\"error\"") {
            return Err(format!("the probe stream cannot be deleted: {deleted}"));
        }
        Ok(())
    }

    /// The client URL of server `i` (0, 1 or 2).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The client URLs of all three, comma-separated: a connect URL for the whole cluster.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `--server_name` of server `i`: `n1`, `n2`, `n3`.
    pub fn server_name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.server_name(*i) == name)
    }

    /// Stops server `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
