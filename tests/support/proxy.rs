//! A loopback TCP proxy in front of a server, which can lose the next reply (the server has
//! carried out the command, the client never hears back and sees its connection drop), or fall
//! silent on a connection: nothing more passes either way, and the connection stays open, as
//! when a NAT or a load balancer forgets an idle flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    addr: SocketAddr,
    cut_next_reply: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    /// How many connections were accepted, and the number (from 1) of the silenced one, if any.
    accepted: Arc<AtomicUsize>,
    silenced: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream_port`.
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut_next_reply = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let silenced = Arc::new(AtomicUsize::new(0));
        let (cut, count) = (cut_next_reply.clone(), cuts.clone());
        let (number, silent) = (accepted.clone(), silenced.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    continue;
                };
                let faults = Faults {
                    cut: cut.clone(),
                    cuts: count.clone(),
                    silenced: silent.clone(),
                    number: number.fetch_add(1, Ordering::SeqCst) + 1,
                };
                tokio::spawn(pipe(client, server, faults));
            }
        });
        Proxy {
            addr,
            cut_next_reply,
            cuts,
            accepted,
            silenced,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The next reply from the server is dropped together with the client's connection.
    pub fn lose_next_reply(&self) {
        self.cut_next_reply.store(true, Ordering::SeqCst);
    }

    /// From now on nothing passes, either way, on the connection accepted last; it stays open.
    pub fn silence_latest(&self) {
        let latest = self.accepted.load(Ordering::SeqCst);
        assert!(latest > 0, "no connection to silence");
        self.silenced.store(latest, Ordering::SeqCst);
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many replies were lost so far.
    pub fn replies_lost(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What may go wrong on one connection, number `number` (from 1).
struct Faults {
    cut: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    silenced: Arc<AtomicUsize>,
    number: usize,
}

impl Faults {
    fn silent(&self) -> bool {
        self.silenced.load(Ordering::SeqCst) == self.number
    }
}

async fn pipe(client: TcpStream, server: TcpStream, faults: Faults) {
    let faults = Arc::new(faults);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = faults.clone();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if up.silent() {
                // Swallow this and everything after, and keep the connection open.
                std::future::pending::<()>().await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if faults.silent() {
            std::future::pending::<()>().await;
        }
        if faults.cut.swap(false, Ordering::SeqCst) {
            faults.cuts.fetch_add(1, Ordering::SeqCst);
            break; // drop the reply and both halves of the client's connection
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}
