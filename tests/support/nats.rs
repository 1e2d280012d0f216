//! `nats-server -js` child processes on free loopback ports, each with its own JetStream store
//! directory, stopped when dropped. Never the machine's own NATS on 4222.

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
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("INFO ") {
        return Err(format!("unexpected greeting {line:?}"));
    }
    writer
        .write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.ready 1\r\n\
              PUB $JS.API.INFO _INBOX.ready 0\r\n\r\nPING\r\n",
        )
        .map_err(|e| e.to_string())?;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("MSG _INBOX.ready") {
            let mut payload = String::new();
            reader.read_line(&mut payload).map_err(|e| e.to_string())?;
            return if payload.contains("account_info_response") && !payload.contains("\"error\"") {
                Ok(())
            } else {
                Err(format!("JetStream is not ready: {payload}"))
            };
        }
        if line.starts_with("-ERR") {
            return Err(line.trim().to_owned());
        }
    }
}
