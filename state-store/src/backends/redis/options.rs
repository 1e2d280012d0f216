//! The options of a [`RedisBackend`](crate::RedisBackend): timeouts, reconnect attempts, read
//! batching, the client-side cache and TLS.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{Client, RedisError};

use super::batch::Batcher;
use crate::setters::setters;
use crate::{Durability, Error, Result};

/// Timeouts, reconnect attempts and TLS certificates of a [`RedisBackend`](crate::RedisBackend).
///
/// The defaults bound every failure to well under ten seconds: an unreachable server fails
/// `connect` after three attempts of at most two seconds each, and a server that stops answering
/// fails a call after the response timeout.
///
/// With the `tls` feature, a `rediss://` URL connects over TLS (rustls, no OpenSSL), trusting
/// the public roots bundled with the crate (Mozilla's) unless `tls_root_cert` names a private
/// CA, and presenting a client certificate given with `tls_client_cert`. `Debug` shows whether
/// certificates are set, never their bytes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// How long one connection attempt (TCP connect and handshake) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long a command may wait for its answer. Default 2 s.
    pub response_timeout: Duration,
    /// How many more connection attempts follow a failed one, with exponential backoff from
    /// 100 ms. Default 2.
    pub reconnect_retries: usize,
    /// Automatic read batching: the most single `get`s sent together in one round trip. A `get`
    /// that finds no read in flight goes out at once as a plain `GET`; those that arrive while
    /// one is in flight wait for it and go out together, as one `MGET` (then a `TYPE` for each
    /// key it found nil, so that a key of another type is still an error for its caller). 0 or
    /// 1 turns batching off (every `get` is sent on its own, all in flight at once). Off on a
    /// Cluster, where a batch would span nodes. Default 128.
    pub read_batch: usize,
    /// The most values the client-side cache keeps decoded, for types declared with
    /// `#[state(cache)]` (single server only); 0 turns it off. Default 10,000.
    pub client_cache: usize,
    /// How far a write of a `#[state(durable)]` type must get before it is acknowledged:
    /// [`Durability::Replicas`] (`WAIT`) or [`Durability::Persisted`] (`WAITAOF`, Redis 7.2+ or
    /// Valkey 8+; a server without it is refused at connect). Default: one replica within one
    /// second. Durable writes go over a connection of their own, where concurrent ones share
    /// one `WAIT`; writes of other types never wait.
    pub durability: Durability,
    /// A private CA to trust, PEM.
    #[cfg(feature = "tls")]
    tls_root_cert: Option<Vec<u8>>,
    /// A client certificate and its key, PEM.
    #[cfg(feature = "tls")]
    tls_client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
            read_batch: 128,
            client_cache: 10_000,
            durability: Durability::default(),
            #[cfg(feature = "tls")]
            tls_root_cert: None,
            #[cfg(feature = "tls")]
            tls_client_cert: None,
        }
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut options = f.debug_struct("RedisOptions");
        options
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("read_batch", &self.read_batch)
            .field("client_cache", &self.client_cache)
            .field("durability", &self.durability);
        #[cfg(feature = "tls")]
        options
            .field(
                "tls_root_cert",
                &self.tls_root_cert.as_ref().map(|_| "<set>"),
            )
            .field(
                "tls_client_cert",
                &self.tls_client_cert.as_ref().map(|_| "<set>"),
            );
        options.finish()
    }
}

setters! {
    impl[] RedisOptions {
        /// Sets [`connect_timeout`](Self::connect_timeout).
        connect_timeout(timeout: Duration);
        /// Sets [`response_timeout`](Self::response_timeout).
        response_timeout(timeout: Duration);
        /// Sets [`reconnect_retries`](Self::reconnect_retries).
        reconnect_retries(retries: usize);
        /// Sets [`read_batch`](Self::read_batch); 0 turns automatic read batching off.
        read_batch(keys: usize);
        /// Sets [`client_cache`](Self::client_cache); 0 turns the client-side cache off.
        client_cache(entries: usize);
        /// Sets [`durability`](Self::durability), for the writes of durable types.
        durability(durability: Durability);
    }
}

impl RedisOptions {
    /// The read batcher these options ask for.
    pub(super) fn batcher(&self) -> Option<Arc<Batcher>> {
        (self.read_batch > 1).then(|| Batcher::new(self.read_batch))
    }

    /// Trusts the CA in `pem` (PEM bytes, one or more certificates) for `rediss://` servers,
    /// instead of the bundled public roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Presents this client certificate and key (PEM bytes; the key unencrypted, PKCS#8, PKCS#1
    /// or SEC1) to `rediss://` servers that ask for one (`tls-auth-clients yes`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert(
        mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The `redis` client for `url` with these options' certificates.
    pub(super) fn client(&self, url: &str) -> Result<Client> {
        // The URL did not parse, so there is no safe way to show its parts.
        let invalid = |source: RedisError| Error::Connect {
            target: "the given Redis URL".into(),
            source: Box::new(source),
        };
        #[cfg(feature = "tls")]
        if self.tls_root_cert.is_some() || self.tls_client_cert.is_some() {
            // The URL parses (or the error says so): name its host, not the URL, in the
            // certificates' errors.
            let target = Client::open(url).map_err(invalid).map(|c| describe(&c))?;
            let root = self.tls_root_cert.as_deref();
            return tls::client(url, root, self.tls_client_cert.as_ref()).map_err(|reason| {
                Error::Connect {
                    target,
                    source: reason.into(),
                }
            });
        }
        #[cfg(feature = "tls")]
        tls::install_provider();
        Client::open(url).map_err(invalid)
    }
}

/// What the Cluster and Sentinel clients take from the options.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
impl RedisOptions {
    /// A client per URL (the cluster's nodes, the sentinels), with these options.
    pub(super) fn clients<S: AsRef<str>>(
        &self, urls: impl IntoIterator<Item = S>,
    ) -> Result<Vec<Client>> {
        urls.into_iter()
            .map(|url| self.client(url.as_ref()))
            .collect()
    }

    /// How long connecting may take in all: every attempt and the backoff between them.
    pub(super) fn connect_bound(&self) -> Duration {
        let attempts = u32::try_from(self.reconnect_retries.saturating_add(1)).unwrap_or(u32::MAX);
        self.connect_timeout
            .saturating_mul(attempts)
            .saturating_add(self.response_timeout)
            .saturating_add(Duration::from_secs(1))
    }

    /// The certificates of these options, for the cluster and sentinel clients.
    #[cfg(feature = "tls")]
    pub(super) fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls_root_cert.is_none() && self.tls_client_cert.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .tls_client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.tls_root_cert.clone(),
        })
    }
}

/// TLS through the `redis` crate's rustls support, with the `ring` provider.
#[cfg(feature = "tls")]
pub(crate) mod tls {
    use redis::{Client, ClientTlsConfig, TlsCertificates};

    /// What a PEM certificate starts with.
    pub(crate) const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";
    /// What a PEM private key's first line ends with (`RSA`, `EC` or none before it).
    pub(crate) const PRIVATE_KEY: &str = "PRIVATE KEY-----";

    /// Makes `ring` the process's rustls provider unless one is installed: rustls cannot pick
    /// one itself when another crate of the program enables a second provider.
    ///
    /// rustls 0.23.48 deprecated `ring::default_provider` because ring has no post-quantum key
    /// exchange; its replacement, `aws-lc-rs`, needs a C and CMake build that this feature
    /// promises not to need. So `ring` stays the default here, chosen on purpose (hence the
    /// `allow`), and an application that wants post-quantum key exchange installs its own
    /// provider (`rustls::crypto::aws_lc_rs::default_provider().install_default()`) before it
    /// connects: an installed provider is never replaced.
    pub(super) fn install_provider() {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            #[allow(deprecated)]
            let ring = rustls::crypto::ring::default_provider();
            // Losing a race with another installer leaves that one, which serves as well.
            let _ = ring.install_default();
        }
    }

    pub(super) fn client(
        url: &str, root: Option<&[u8]>, client_cert: Option<&(Vec<u8>, Vec<u8>)>,
    ) -> Result<Client, String> {
        install_provider();
        // The redis crate accepts a root PEM without any certificate, and the connection then
        // fails later as an unknown issuer; its key errors do not say which option is wrong.
        // Say what is wrong here.
        if let Some(root) = root
            && !contains(root, CERTIFICATE)
        {
            return Err(
                "`tls_root_cert` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into(),
            );
        }
        if let Some((cert, key)) = client_cert {
            if !contains(cert, CERTIFICATE) {
                return Err("the certificate of `tls_client_cert` holds no PEM certificate".into());
            }
            if contains(key, "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                return Err("the key of `tls_client_cert` is encrypted: give it decrypted".into());
            }
            if !contains(key, PRIVATE_KEY) {
                return Err("the key of `tls_client_cert` holds no PEM private key".into());
            }
        }
        let certificates = TlsCertificates {
            client_tls: client_cert.map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: root.map(<[u8]>::to_vec),
        };
        Client::build_with_tls(url, certificates)
            .map_err(|e| format!("invalid `tls_root_cert` or `tls_client_cert`: {e}"))
    }

    /// Whether `pem` holds `marker`.
    pub(crate) fn contains(pem: &[u8], marker: &str) -> bool {
        pem.windows(marker.len()).any(|w| w == marker.as_bytes())
    }
}

/// The connection manager's settings from `options`.
/// The options of the connection of durable writes: a response may take the durability's
/// timeout longer, since a `WAIT` holds it.
pub(super) fn durable_lane(options: &RedisOptions) -> RedisOptions {
    let mut lane = options.clone();
    lane.response_timeout = options
        .response_timeout
        .saturating_add(options.durability.timeout());
    lane
}

pub(super) fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(options.reconnect_retries)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
}

/// `host:port/db` of the client, which is all an error or `Debug` may show of the URL.
pub(super) fn describe(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("redis at {}/{}", info.addr(), info.redis_settings().db())
}
