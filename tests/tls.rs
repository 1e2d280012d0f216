#![cfg(feature = "tls")]
//! TLS (`rediss://`) against a real `redis-server` the tests start with a TLS port that requires
//! client certificates, and certificates the tests make with the `openssl` tool: a private CA,
//! a second CA nobody should trust, a server certificate for `127.0.0.1` and `localhost` (and
//! one for `localhost` only), and client certificates from each CA.
//!
//! With the private CA as root and a client certificate everything works, the change feed's
//! pub/sub connection included, with the key as PKCS#8, PKCS#1 or SEC1; every way the handshake
//! can be refused (no client certificate, a client certificate or a server certificate from the
//! wrong CA, only the public roots, a server certificate for another name) and every unusable
//! certificate or key (a root PEM that holds no certificate, a key that does not parse or does
//! not match) is an `Error::Connect` that says why, within seconds; and neither the client key
//! nor the password ever shows in `Debug` or in an error.

mod support;

use std::fmt::Debug;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state_store::{
    AnyBackend, Change, Changes, Error, RedisBackend, RedisOptions, StateKey, Store,
};
use support::{RedisServer, free_port};

/// The ACL user the library connects as, so that its URLs carry a password.
const USER: &str = "tls-user";
const PASSWORD: &str = "Tls-S3cret-Passw0rd";
/// A password the server does not accept, which must not show either.
const WRONG_PASSWORD: &str = "Wr0ng-Tls-Passw0rd";
/// How long any one call or item may take.
const ITEM: Duration = Duration::from_secs(5);
/// How long a connection attempt may take before the test gives up on it; failing ones are
/// asserted to take less than [`FAIL_WITHIN`].
const CONNECT: Duration = Duration::from_secs(15);
/// How fast a refused handshake must be reported.
const FAIL_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u32, notify)]
struct Job {
    status: String,
}

fn job(status: &str) -> Job {
    Job {
        status: status.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// The PEM files the tests use, made once per test process.
struct Certs {
    ca: Vec<u8>,
    other_ca: Vec<u8>,
    /// For `127.0.0.1` and `localhost`.
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
    /// From the private CA, but only for `localhost`.
    localhost_cert: Vec<u8>,
    localhost_key: Vec<u8>,
    client_cert: Vec<u8>,
    /// PKCS#8.
    client_key: Vec<u8>,
    /// The same key as PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    client_key_pkcs1: Vec<u8>,
    /// The same key as encrypted PKCS#8, which the library cannot use.
    client_key_encrypted: Vec<u8>,
    /// A client certificate with a P-256 key, the key as SEC1 (`BEGIN EC PRIVATE KEY`).
    ec_client_cert: Vec<u8>,
    ec_client_key_sec1: Vec<u8>,
    /// A client certificate signed by the other CA, which the server does not trust.
    other_client_cert: Vec<u8>,
    other_client_key: Vec<u8>,
}

const SERVER_EXT: &str = "basicConstraints=CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=serverAuth\n\
                          subjectAltName=IP:127.0.0.1,DNS:localhost\n";
const LOCALHOST_EXT: &str = "basicConstraints=CA:FALSE\n\
                             keyUsage=critical,digitalSignature,keyEncipherment\n\
                             extendedKeyUsage=serverAuth\n\
                             subjectAltName=DNS:localhost\n";
const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=clientAuth\n";
const EC_CLIENT_EXT: &str = "basicConstraints=CA:FALSE\n\
                             keyUsage=critical,digitalSignature\n\
                             extendedKeyUsage=clientAuth\n";
const RSA: &[&str] = &["-newkey", "rsa:2048"];
const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(make_certs)
}

/// Makes the certificates in a temporary directory and reads them in; each server gets its
/// own copy of the files it needs, so nothing is left behind when the process ends.
fn make_certs() -> Certs {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("cannot create a temp dir");
    let dir = dir.path();
    std::thread::scope(|s| {
        s.spawn(|| make_ca(dir, "ca"));
        s.spawn(|| make_ca(dir, "otherca"));
    });
    std::thread::scope(|s| {
        s.spawn(|| make_leaf(dir, "server", "ca", SERVER_EXT, RSA));
        s.spawn(|| make_leaf(dir, "localhost", "ca", LOCALHOST_EXT, EC));
        s.spawn(|| {
            make_leaf(dir, "client", "ca", CLIENT_EXT, RSA);
            let client_key = ["-in", "client.key"];
            openssl(
                dir,
                &["pkey", "-traditional", "-out", "client_pkcs1.key"],
                &client_key,
            );
            openssl(
                dir,
                &[
                    "pkcs8",
                    "-topk8",
                    "-passout",
                    "pass:hunter2",
                    "-out",
                    "client_enc.key",
                ],
                &client_key,
            );
        });
        s.spawn(|| {
            make_leaf(dir, "client_ec", "ca", EC_CLIENT_EXT, EC);
            openssl(
                dir,
                &["ec", "-in", "client_ec.key", "-out", "client_sec1.key"],
                &[],
            );
        });
        s.spawn(|| make_leaf(dir, "client_other", "otherca", CLIENT_EXT, RSA));
    });
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    };
    let certs = Certs {
        ca: read("ca.crt"),
        other_ca: read("otherca.crt"),
        server_cert: read("server.crt"),
        server_key: read("server.key"),
        localhost_cert: read("localhost.crt"),
        localhost_key: read("localhost.key"),
        client_cert: read("client.crt"),
        client_key: read("client.key"),
        client_key_pkcs1: read("client_pkcs1.key"),
        client_key_encrypted: read("client_enc.key"),
        ec_client_cert: read("client_ec.crt"),
        ec_client_key_sec1: read("client_sec1.key"),
        other_client_cert: read("client_other.crt"),
        other_client_key: read("client_other.key"),
    };
    // What each file must be, so that a change in openssl's defaults cannot quietly turn a
    // test of one key format into a test of another.
    let begins = |pem: &[u8], label: &str| {
        assert!(
            pem.starts_with(format!("-----BEGIN {label}-----").as_bytes()),
            "expected a {label}, got {:?}",
            String::from_utf8_lossy(&pem[..pem.len().min(40)])
        );
    };
    begins(&certs.client_key, "PRIVATE KEY");
    begins(&certs.client_key_pkcs1, "RSA PRIVATE KEY");
    begins(&certs.client_key_encrypted, "ENCRYPTED PRIVATE KEY");
    begins(&certs.ec_client_key_sec1, "EC PRIVATE KEY");
    eprintln!("certificates made in {:?}", started.elapsed());
    certs
}

/// A self-signed CA: `{name}.crt`, `{name}.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "30",
            "-subj",
            &format!("/CN={name} Test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        RSA,
    );
}

/// A certificate signed by `ca`, with the extensions `ext` and a new key made by `key_args`:
/// `{name}.crt`, `{name}.key`.
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str, key_args: &[&str]) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("write the extension file");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
        key_args,
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            // A serial file per certificate: leaves of one CA are made at the same time.
            "-CAserial",
            &format!("{name}.srl"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "30",
            "-extfile",
            &ext_file,
        ],
        &[],
    );
}

/// Runs `openssl {args} {more_args}` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str], more_args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .args(more_args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "the `openssl` command-line tool was not found on PATH. The TLS tests make \
                     their certificates with it and are never skipped: install it (Debian/Ubuntu: \
                     `apt-get install openssl`; macOS: `brew install openssl`). `.ci/run` installs \
                     it when it is missing."
                )
            }
            panic!("cannot run openssl: {e}")
        });
    assert!(
        output.status.success(),
        "`openssl {} {}` failed ({}):\n{}",
        args.join(" "),
        more_args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Server

/// A `redis-server` with a plain port (readiness, admin) and a TLS port that requires a client
/// certificate from the private CA, with the ACL user [`USER`].
struct TlsServer {
    server: RedisServer,
    tls_port: u16,
    /// `ca.crt`, `server.crt`, `server.key`; declared after `server` so the process stops first.
    _files: tempfile::TempDir,
}

impl TlsServer {
    /// With the certificate for `127.0.0.1` and `localhost`.
    fn start() -> TlsServer {
        let certs = certs();
        TlsServer::start_with_cert(&certs.server_cert, &certs.server_key)
    }

    /// With this server certificate and key.
    fn start_with_cert(server_cert: &[u8], server_key: &[u8]) -> TlsServer {
        let certs = certs();
        let files = tempfile::tempdir().expect("cannot create a temp dir");
        let path = |name: &str, contents: &[u8]| {
            let path = files.path().join(name);
            std::fs::write(&path, contents).expect("write a certificate file");
            path.to_str().expect("a UTF-8 temp path").to_owned()
        };
        let ca = path("ca.crt", &certs.ca);
        let cert = path("server.crt", server_cert);
        let key = path("server.key", server_key);
        let mut last_error = String::new();
        // The TLS port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let tls_port = free_port();
            let port = tls_port.to_string();
            let args = [
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "yes",
            ];
            match RedisServer::try_start_with(&args) {
                Ok(server) => {
                    let () = redis::cmd("ACL")
                        .arg("SETUSER")
                        .arg(USER)
                        .arg("on")
                        .arg(format!(">{PASSWORD}"))
                        .arg(&["~*", "&*", "+@all"][..])
                        .query(&mut server.raw())
                        .expect("ACL SETUSER");
                    return TlsServer {
                        server,
                        tls_port,
                        _files: files,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server with TLS did not start: {last_error}");
    }

    /// `rediss://tls-user:PASSWORD@{host}:{tls port}`.
    fn url(&self, host: &str) -> String {
        self.url_with_password(host, PASSWORD)
    }

    fn url_with_password(&self, host: &str, password: &str) -> String {
        format!("rediss://{USER}:{password}@{host}:{}", self.tls_port)
    }

    /// How errors name the server: `redis at {host}:{tls port}/0`.
    fn target(&self, host: &str) -> String {
        format!("redis at {host}:{}/0", self.tls_port)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The private CA as root and the client certificate the server accepts.
fn mutual_tls() -> RedisOptions {
    let certs = certs();
    RedisOptions::default()
        .tls_root_cert(certs.ca.clone())
        .tls_client_cert(certs.client_cert.clone(), certs.client_key.clone())
}

/// `future`'s output, which must come within `limit`.
async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

/// Connects with `options`, within [`CONNECT`].
async fn connect(
    what: &str, url: &str, options: RedisOptions,
) -> state_store::Result<RedisBackend> {
    within(what, CONNECT, RedisBackend::connect_with(url, options)).await
}

/// The next change, which must come within [`ITEM`].
async fn next_change(changes: &mut Changes<Job>) -> Change<Job> {
    match within("next change", ITEM, changes.next()).await {
        Some(Ok(change)) => change,
        Some(Err(e)) => panic!("expected a change, got the error {e:?}"),
        None => panic!("the change feed ended"),
    }
}

/// What must never show: the passwords, the private keys (a line from the middle of each
/// key's base64 body, and the same bytes as `Debug` of a `Vec<u8>` shows them), and a PEM
/// private key header. Each with a label, so a failure does not print the secret again.
fn secrets() -> Vec<(String, String)> {
    let certs = certs();
    let mut secrets = vec![
        ("the password".to_owned(), PASSWORD.to_owned()),
        ("the wrong password".to_owned(), WRONG_PASSWORD.to_owned()),
        ("a PEM key header".to_owned(), "PRIVATE KEY".to_owned()),
    ];
    for (name, key) in [
        ("the client key", &certs.client_key),
        ("the client key as PKCS#1", &certs.client_key_pkcs1),
        ("the encrypted client key", &certs.client_key_encrypted),
        ("the EC client key", &certs.ec_client_key_sec1),
        ("the other client key", &certs.other_client_key),
    ] {
        let text = std::str::from_utf8(key).expect("a PEM key is ASCII");
        // The first base64 lines are much the same for every key of one kind: take one from
        // the middle.
        let lines: Vec<&str> = text.lines().collect();
        let middle = lines[lines.len() / 2];
        assert!(middle.len() >= 40, "unexpected key layout: {middle:?}");
        secrets.push((format!("{name} (base64)"), middle.to_owned()));
        let bytes = &key[key.len() / 2..key.len() / 2 + 24];
        let as_debug = format!("{bytes:?}");
        let as_debug = as_debug.trim_start_matches('[').trim_end_matches(']');
        secrets.push((format!("{name} (as bytes)"), as_debug.to_owned()));
    }
    secrets
}

/// Asserts that `shown` holds none of the [`secrets`].
fn assert_no_secrets(what: &str, shown: &str) {
    for (name, secret) in secrets() {
        assert!(
            !shown.contains(&secret),
            "{what} shows {name}:\n{}",
            shown.replace(&secret, "<SECRET>")
        );
    }
}

/// The `Error::Connect` of a failed connection, which names `target` (if given) and shows no
/// secret; returns its `Display`.
fn connect_error<T: Debug>(
    what: &str, target: Option<&str>, result: state_store::Result<T>,
) -> String {
    let e = match result {
        Ok(value) => panic!("{what}: expected Error::Connect, but connected: {value:?}"),
        Err(e) => e,
    };
    assert_no_secrets(what, &format!("{e}\n{e:?}\n{e:#?}"));
    assert!(
        matches!(e, Error::Connect { .. }),
        "{what}: expected Error::Connect, got {e:?}"
    );
    let shown = e.to_string();
    if let Some(target) = target {
        let expected = format!("cannot connect to {target}: ");
        assert!(shown.starts_with(&expected), "{what}: {shown}");
    }
    eprintln!("{what}: {shown}");
    shown
}

/// The `user=`, `laddr=` and `sub=` fields of each client `CLIENT LIST` shows.
fn clients(server: &TlsServer) -> Vec<(String, String, String)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.server.raw())
        .expect("CLIENT LIST");
    list.lines()
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("user"), field("laddr"), field("sub"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_private_ca_and_a_client_certificate_everything_works_over_tls() {
    let server = TlsServer::start();
    let backend = connect("connect", &server.url("127.0.0.1"), mutual_tls())
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    let store = Store::new(backend)
        .namespace("tls")
        .enable_set()
        .enable_remove();

    let mut changes = within("watch", ITEM, store.watch::<Job>()).await.unwrap();
    within("set", ITEM, store.set::<Job>(1, &job("queued")))
        .await
        .unwrap();
    let got = within("get", ITEM, store.get::<Job>(1)).await.unwrap();
    assert_eq!(got, Some(job("queued")));
    assert_eq!(
        next_change(&mut changes).await,
        Change::Set {
            id: 1,
            value: job("queued")
        }
    );
    // Stored on this server, as the admin sees it through the plain port.
    let stored: Option<String> = redis::cmd("GET")
        .arg("tls:job:1")
        .query(&mut server.server.raw())
        .unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"status":"queued"}"#));

    // Every connection of the library, the pub/sub one included, came in on the TLS port.
    let tls_laddr = format!("127.0.0.1:{}", server.tls_port);
    let ours: Vec<_> = clients(&server)
        .into_iter()
        .filter(|(user, _, _)| user == USER)
        .collect();
    assert!(
        ours.iter().all(|(_, laddr, _)| *laddr == tls_laddr),
        "{ours:?}"
    );
    // The pub/sub connection, subscribed to the type's channel (and the expiry events), and
    // the command connection.
    assert!(ours.iter().any(|(_, _, sub)| sub != "0"), "{ours:?}");
    assert!(ours.iter().any(|(_, _, sub)| sub == "0"), "{ours:?}");

    // The same by name: the certificate names `localhost` too.
    let backend = connect(
        "connect to localhost",
        &server.url("localhost"),
        mutual_tls(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to localhost over TLS: {e}"));
    assert_no_secrets("the backend's Debug", &format!("{backend:?} {backend:#?}"));
    let store = Store::new(backend).namespace("tls").enable_set();
    within("set", ITEM, store.set::<Job>(2, &job("running")))
        .await
        .unwrap();
    let got = within("get", ITEM, store.get::<Job>(1)).await.unwrap();
    assert_eq!(got, Some(job("queued")));
    assert_eq!(
        next_change(&mut changes).await,
        Change::Set {
            id: 2,
            value: job("running")
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_server_refuses_the_handshake() {
    let server = TlsServer::start();
    let options = RedisOptions::default().tls_root_cert(certs().ca.clone());
    let started = Instant::now();
    let result = connect("connect", &server.url("127.0.0.1"), options).await;
    let took = started.elapsed();
    let shown = connect_error(
        "no client certificate",
        Some(&server.target("127.0.0.1")),
        result,
    );
    assert!(took < FAIL_WITHIN, "the refusal took {took:?}: {shown}");
    eprintln!("refused in {took:?}");
    assert!(shown.contains("CertificateRequired"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    let server = TlsServer::start();
    let certs = certs();
    let options = RedisOptions::default()
        .tls_root_cert(certs.ca.clone())
        .tls_client_cert(
            certs.other_client_cert.clone(),
            certs.other_client_key.clone(),
        );
    let started = Instant::now();
    let result = connect("connect", &server.url("127.0.0.1"), options).await;
    let took = started.elapsed();
    let shown = connect_error(
        "client certificate from another CA",
        Some(&server.target("127.0.0.1")),
        result,
    );
    assert!(took < FAIL_WITHIN, "the refusal took {took:?}: {shown}");
    assert!(shown.contains("UnknownCA"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let server = TlsServer::start();
    let certs = certs();
    let url = server.url("127.0.0.1");
    let target = server.target("127.0.0.1");
    let untrusted = |shown: &str| shown.contains("UnknownIssuer");

    // The other CA as root.
    let options = RedisOptions::default()
        .tls_root_cert(certs.other_ca.clone())
        .tls_client_cert(certs.client_cert.clone(), certs.client_key.clone());
    let started = Instant::now();
    let result = connect("connect", &url, options).await;
    let took = started.elapsed();
    let shown = connect_error("the other CA as root", Some(&target), result);
    assert!(took < FAIL_WITHIN, "the refusal took {took:?}: {shown}");
    assert!(untrusted(&shown), "{shown}");

    // No root: the bundled public roots, which do not hold the private CA.
    let started = Instant::now();
    let result = within("connect", CONNECT, RedisBackend::connect(&url)).await;
    let took = started.elapsed();
    let shown = connect_error("public roots", Some(&target), result);
    assert!(took < FAIL_WITHIN, "the refusal took {took:?}: {shown}");
    assert!(untrusted(&shown), "{shown}");

    // A client certificate but no root: the public roots as well.
    let options = RedisOptions::default()
        .tls_client_cert(certs.client_cert.clone(), certs.client_key.clone());
    let result = connect("connect", &url, options).await;
    let shown = connect_error(
        "public roots and a client certificate",
        Some(&target),
        result,
    );
    assert!(untrusted(&shown), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_pem_without_a_certificate_is_refused_at_connect() {
    let server = TlsServer::start();
    let certs = certs();
    let url = server.url("127.0.0.1");
    let cases: [(&str, Vec<u8>); 3] = [
        ("the client key as root", certs.client_key.clone()),
        ("an empty root", Vec::new()),
        ("text as root", b"not a certificate\n".to_vec()),
    ];
    for (what, root) in cases {
        let options = RedisOptions::default()
            .tls_root_cert(root)
            .tls_client_cert(certs.client_cert.clone(), certs.client_key.clone());
        let started = Instant::now();
        let result = connect(what, &url, options).await;
        let took = started.elapsed();
        let shown = connect_error(what, None, result);
        assert!(took < FAIL_WITHIN, "{what}: took {took:?}: {shown}");
        // Names the option and what it lacks.
        assert!(shown.contains("tls_root_cert"), "{what}: {shown}");
        assert!(shown.contains("no PEM certificate"), "{what}: {shown}");
    }

    // A certificate block that does not decode to a certificate: refused too (in the redis
    // crate's words, which name neither the option nor the block).
    let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let options = RedisOptions::default()
        .tls_root_cert(&broken[..])
        .tls_client_cert(certs.client_cert.clone(), certs.client_key.clone());
    let result = connect("connect", &url, options).await;
    connect_error("a broken certificate block as root", None, result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_or_key_that_cannot_be_used_is_refused_at_connect() {
    let server = TlsServer::start();
    let certs = certs();
    let url = server.url("127.0.0.1");
    let cases: [(&str, &[u8], &[u8], &str); 5] = [
        (
            "a key that is not PEM",
            &certs.client_cert,
            b"not a key\n",
            "private key",
        ),
        ("an empty key", &certs.client_cert, b"", "private key"),
        (
            "an encrypted key",
            &certs.client_cert,
            &certs.client_key_encrypted,
            "encrypted",
        ),
        // Parsed, and refused when the TLS configuration is built at connect.
        (
            "the key of another certificate",
            &certs.client_cert,
            &certs.other_client_key,
            "KeyMismatch",
        ),
        (
            "a key as the certificate",
            &certs.client_key,
            &certs.client_key,
            "tls_client_cert",
        ),
    ];
    for (what, cert, key, expected) in cases {
        let options = RedisOptions::default()
            .tls_root_cert(certs.ca.clone())
            .tls_client_cert(cert, key);
        let started = Instant::now();
        let result = connect(what, &url, options).await;
        let took = started.elapsed();
        let shown = connect_error(what, None, result);
        assert!(took < FAIL_WITHIN, "{what}: took {took:?}: {shown}");
        assert!(shown.contains(expected), "{what}: {shown}");
        // The URL is fine: the error names the server, and the option when it is the cause.
        assert!(shown.contains("redis at 127.0.0.1:"), "{what}: {shown}");
        if expected != "KeyMismatch" {
            assert!(shown.contains("tls_client_cert"), "{what}: {shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_in_pkcs1_and_sec1_work() {
    let server = TlsServer::start();
    let certs = certs();
    let cases = [
        (
            "an RSA key as PKCS#1",
            &certs.client_cert,
            &certs.client_key_pkcs1,
        ),
        (
            "an EC key as SEC1",
            &certs.ec_client_cert,
            &certs.ec_client_key_sec1,
        ),
    ];
    for (what, cert, key) in cases {
        let options = RedisOptions::default()
            .tls_root_cert(certs.ca.clone())
            .tls_client_cert(cert.clone(), key.clone());
        let backend = connect(what, &server.url("127.0.0.1"), options)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let store = Store::new(backend).namespace("tls").enable_set();
        within(what, ITEM, store.set::<Job>(7, &job(what)))
            .await
            .unwrap();
        let got = within(what, ITEM, store.get::<Job>(7)).await.unwrap();
        assert_eq!(got, Some(job(what)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_name_is_refused() {
    // From the trusted CA, but for `localhost` only.
    let certs = certs();
    let server = TlsServer::start_with_cert(&certs.localhost_cert, &certs.localhost_key);
    let result = connect("connect", &server.url("127.0.0.1"), mutual_tls()).await;
    let shown = connect_error(
        "a certificate for another name",
        Some(&server.target("127.0.0.1")),
        result,
    );
    assert!(
        shown.contains("certificate not valid for name \"127.0.0.1\""),
        "{shown}"
    );

    // By the name it has, the same certificate is accepted.
    let backend = connect(
        "connect to localhost",
        &server.url("localhost"),
        mutual_tls(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to localhost: {e}"));
    let store = Store::new(backend).namespace("tls");
    let got = within("get", ITEM, store.get::<Job>(1)).await.unwrap();
    assert_eq!(got, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_show_neither_the_key_nor_the_password() {
    let certs = certs();
    let plain = format!("{:?}", RedisOptions::default());
    let root_only = RedisOptions::default().tls_root_cert(certs.ca.clone());
    let both = mutual_tls();
    for (what, options) in [("root only", &root_only), ("root and client", &both)] {
        let shown = format!("{options:?}\n{options:#?}");
        assert_no_secrets(what, &shown);
        // No rendering of a certificate or a key fits in this (a PEM file is over 1 KB).
        assert!(
            format!("{options:?}").len() < 600,
            "{what}: the options' Debug is {} bytes long",
            format!("{options:?}").len()
        );
        eprintln!("{what}: {options:?}");
    }
    // It tells whether certificates are set.
    assert_ne!(format!("{root_only:?}"), plain);
    assert_ne!(format!("{both:?}"), format!("{root_only:?}"));

    let server = TlsServer::start();
    let backend = connect("connect", &server.url("127.0.0.1"), mutual_tls())
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    assert_no_secrets("the backend's Debug", &format!("{backend:?}\n{backend:#?}"));
    let store = Store::new(backend);
    assert_no_secrets("the store's Debug", &format!("{store:?}"));

    // A wrong password: refused after the handshake, and not shown.
    let url = server.url_with_password("127.0.0.1", WRONG_PASSWORD);
    let result = connect("connect", &url, mutual_tls()).await;
    connect_error(
        "a wrong password",
        Some(&server.target("127.0.0.1")),
        result,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_backend_takes_rediss_urls() {
    let server = TlsServer::start();
    // The public roots do not hold the private CA: the handshake is attempted and refused.
    let result = within(
        "AnyBackend::connect",
        CONNECT,
        AnyBackend::connect(&server.url("127.0.0.1")),
    )
    .await;
    let shown = connect_error(
        "AnyBackend over TLS",
        Some(&server.target("127.0.0.1")),
        result,
    );
    assert!(shown.contains("UnknownIssuer"), "{shown}");
}

/// The variable of the child's URL: a name of its own, so no other test reads it.
const CHILD_URL: &str = "STATE_STORE_TLS_TEST_URL";

/// `AnyBackend::from_env` configured from the environment alone: the URL and the three
/// `REDIS_TLS_*` files, with no TLS code. The environment is a child process's (this test
/// binary again, running only [`from_env_child`]), so no test of this process sees it change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_takes_the_certificates_from_the_environment() {
    let server = TlsServer::start();
    let certs = certs();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, pem: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ca = file("ca.pem", &certs.ca);
    let cert = file("client.crt", &certs.client_cert);
    let key = file("client.key", &certs.client_key);
    let child = |vars: &[(&str, &str)]| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args([
            "from_env_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        command.env(CHILD_URL, server.url("127.0.0.1"));
        for name in [
            "REDIS_TLS_CA_FILE",
            "REDIS_TLS_CERT_FILE",
            "REDIS_TLS_KEY_FILE",
        ] {
            command.env_remove(name);
        }
        command.envs(vars.iter().copied());
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "the child failed: {stdout}");
        let outcome = stdout
            .lines()
            .find_map(|line| Some(line.split_once("outcome: ")?.1))
            .unwrap_or_else(|| panic!("the child said nothing: {stdout}"))
            .to_owned();
        assert_no_secrets("the child's outcome", &outcome);
        outcome
    };

    let all = [
        ("REDIS_TLS_CA_FILE", ca.as_str()),
        ("REDIS_TLS_CERT_FILE", cert.as_str()),
        ("REDIS_TLS_KEY_FILE", key.as_str()),
    ];
    assert_eq!(child(&all), "stored and read over TLS");

    // Without the client certificate the server refuses the handshake; without the CA the
    // public roots do not hold the server's issuer.
    let outcome = child(&all[..1]);
    assert!(outcome.contains("CertificateRequired"), "{outcome}");
    let outcome = child(&all[1..]);
    assert!(outcome.contains("UnknownIssuer"), "{outcome}");

    // A file that cannot be read: named, with its path.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let outcome = child(&[("REDIS_TLS_CA_FILE", missing), all[1], all[2]]);
    let expected = format!(
        "cannot connect to the Redis of `{CHILD_URL}`: `REDIS_TLS_CA_FILE` ({missing}) cannot be read"
    );
    assert!(outcome.starts_with(&expected), "{outcome}");
}

/// The child of [`from_env_takes_the_certificates_from_the_environment`]: connects with
/// `from_env` and prints what came of it. Ignored, so that it runs only as that child (with
/// `--ignored`); run by hand, it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of from_env_takes_the_certificates_from_the_environment"]
async fn from_env_child() {
    if std::env::var_os(CHILD_URL).is_none() {
        return;
    }
    let outcome = match within("from_env", CONNECT, AnyBackend::from_env(CHILD_URL)).await {
        Ok(backend) => {
            let store = Store::new(backend).namespace("tls-env").enable_set();
            within("set", ITEM, store.set::<Job>(1, &job("from env")))
                .await
                .unwrap();
            let got = within("get", ITEM, store.get::<Job>(1)).await.unwrap();
            assert_eq!(got, Some(job("from env")));
            "stored and read over TLS".to_owned()
        }
        Err(e) => e.to_string(),
    };
    println!("outcome: {outcome}");
}
