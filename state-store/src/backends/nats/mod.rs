//! [`NatsBackend`]: state in NATS JetStream key-value buckets (feature `nats`).
//!
//! # Layout
//! One bucket per state type and namespace: the type's key prefix `{namespace}:{prefix}` (or
//! `{prefix}`) names the bucket, and the rest of the key, the escaped id, is the key in it. NATS
//! allows only `[a-zA-Z0-9_-]` in bucket names and `[-/_=.a-zA-Z0-9]` in keys, so both are
//! escaped reversibly:
//! - bucket: `_` is written `_u`, `.` is `_d` and the `:` between namespace and prefix is `__`
//!   (`user-service:session` is bucket `user-service__session`);
//! - key: every byte outside `[-/_a-zA-Z0-9]` (so `.`, `=`, `:`, `%`, space, non-ASCII) is
//!   `=XX` in upper-case hex, and the empty id is `=` alone (`a%3Ab:7` is `a=253Ab=3A7`).
//!
//! Two different keys never share a bucket and key, and [`Backend::list`] turns every bucket key
//! back into the full key.
//!
//! # Expiry
//! JetStream KV before NATS 2.11 has one `max_age` per bucket and no per-key expiry, and
//! `max_age` counts from each write. So a type's `ttl` is its bucket's `max_age`, told to the
//! backend by [`KeyLayout::declare`] (the [`Store`](crate::Store) declares every type it touches);
//! a write with any other expiry (`set_with` with another duration) is
//! [`Error::Unsupported`] and writes nothing. A write that keeps the expiry
//! ([`Expiry::Keep`]: `update`, `incr` on an existing counter) gets a whole new `max_age`
//! instead. When a declared `ttl` differs from an existing bucket's `max_age`, the bucket's
//! `max_age` is changed to it (which applies to every value in the bucket).
//!
//! # Durability
//! JetStream acknowledges a write once a majority of its stream's replicas stored it (on a
//! single server, once that server did; file storage, so a restart keeps it). What
//! `#[state(durable)]` changes here is the type's bucket:
//! - it is created with [`NatsOptions::durable_replicas`] replicas: by default 3 when the server
//!   connected to is part of a cluster (its `INFO` names one), else 1. With 3, an acknowledged
//!   write of a durable type survives the loss of any one server. Buckets of other types keep 1
//!   replica, on one server: their writes fail while it is down, and are lost with its disk.
//! - with several replicas it answers no direct gets (`allow_direct` off), so reads go to the
//!   stream's leader, which has every acknowledged write. With direct gets any replica answers,
//!   and one that has not applied a write yet answers without it: on NATS 2.9.10, 10 of 3,000
//!   reads right after their write were stale or missing.
//!
//! Each write carries `durable` in its options ([`PutOptions::durable`],
//! [`RemoveOptions::durable`], `LeaseKey::durable`; updates, counts and touches are puts). The
//! bucket is created at the type's first write; a durable type's bucket found otherwise (made
//! before the type was durable, or by a client with other options) has its stream's
//! `num_replicas` raised and direct gets turned off at the first durable write or removal, as a
//! changed `ttl` changes `max_age` (the stream then moves to a new group of servers, for about
//! 150 ms, which the write waits out). Reads never create or change a bucket, and no bucket
//! loses replicas. A count the servers cannot give (above 1 on a server alone, more than the
//! cluster's JetStream servers, more than 5) is [`Error::Backend`] (`create bucket` or `raise
//! bucket replicas`, naming the bucket and the count) and writes nothing.
//!
//! There is no [`Error::NotDurable`] here: a write that a majority did not store is not
//! acknowledged (a timeout, or "no stream found" while the stream has no leader), and may or
//! may not stand. A leader lost takes seconds to replace (measured: 4 to 8 s with NATS 2.9.10),
//! during which writes of the bucket fail; `tests/nats_cluster.rs` kills it under load and loses
//! no acknowledged write.
//!
//! # Leases
//! A lease's token is the revision of the write that acquired it; an extension writes the value
//! again (a bucket's `max_age` counts from each write) with the token in a header, and a watcher
//! of the lease type hears each extension as a write. Whether a lease is live is judged, as for
//! every value here, from the server's write time and this machine's clock. Fenced writes are
//! [`Error::Unsupported`]: the lease and the written key are in two buckets (see `lease.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use crate::backend::kit::feed::{Hub, Watcher};
use crate::backend::{
    Backend, BoxFuture, BoxStream, ChangeFeed, Event, Expiry, Extensions, KeyLayout, PutMode,
    PutOptions, RemoveOptions, Version, Versioned, Watch, ceil_millis,
};
use crate::{Error, Result};

use self::names::{bucket_name, decode_bucket, decode_key, encode_key};
pub use self::options::NatsOptions;

mod bucket;
mod lease;
mod names;
mod options;

/// State in NATS JetStream key-value buckets, one bucket per state type and namespace
/// (`user-service:session` is bucket `user-service__session`), the escaped id as the key in it
/// (bytes outside `[-/_a-zA-Z0-9]` as `=XX`, the empty id as `=`).
///
/// Expiry is the bucket's `max_age` (NATS before 2.11 has no per-key expiry), so a type's `ttl`
/// is its bucket's `max_age`: `set_with_ttl` with another duration is [`Error::Unsupported`]
/// and writes nothing, and a write that keeps the expiry (`update`, `incr`) restarts the whole
/// `ttl`, since `max_age` counts from each write. The guide's [nats](crate::_guide::nats) chapter
/// has the full table of differences from Redis.
///
/// The bucket of a `#[state(durable)]` type has [`NatsOptions::durable_replicas`] replicas (3 on
/// a cluster by default) and is read from its stream's leader; see the module docs.
///
/// ```no_run
/// # use state_store::{NatsBackend, Store};
/// # async fn run() -> state_store::Result<()> {
/// let store = Store::new(NatsBackend::connect("nats://127.0.0.1:4222").await?)
///     .namespace("user-service")
///     .enable_set();
/// # Ok(())
/// # }
/// ```
///
/// Cloning is cheap; clones share the connection and the buckets opened.
#[derive(Clone)]
pub struct NatsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Declared type prefixes (`{namespace}:{prefix}`) and their ttl.
    types: RwLock<HashMap<Box<str>, Option<Duration>>>,
    /// Open buckets, by type prefix.
    /// Shared (`Arc`): a `kv::Store` holds its stream's whole cached info, too much to clone
    /// on every call.
    buckets: RwLock<HashMap<Box<str>, Arc<Bucket>>>,
    per_key_ttl: bool,
    /// How long a request may take; also how long a listing waits for its next key.
    timeout: Duration,
    /// The replicas of a durable type's bucket ([`NatsOptions::durable_replicas`]).
    durable_replicas: usize,
}

#[derive(Clone)]
struct Bucket {
    kv: kv::Store,
    max_age: Duration,
    /// Its stream's `num_replicas` when it was opened.
    replicas: usize,
    /// Whether its stream answers direct gets (`allow_direct`): from any replica.
    direct: bool,
}

/// What a call does with its type's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reads: never creates a bucket, nor changes one.
    Read,
    /// A removal: needs no bucket where there is none, but a durable type's gets its replicas.
    Remove { durable: bool },
    /// A write: creates the bucket when missing, a durable type's with its replicas.
    Write { durable: bool },
}

impl fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackend")
            .field("server", &self.inner.client.server_info().version)
            .finish_non_exhaustive()
    }
}

/// The longest `max_age` a bucket takes: JetStream keeps it in nanoseconds as an `i64`. A longer
/// `ttl` (the derive accepts up to 73 million years) is kept this long, about 292 years.
const MAX_AGE_CEILING: Duration = Duration::from_secs(i64::MAX as u64 / 1_000_000_000);

/// How many times a create or removal retries when the key changes between its read and its
/// conditional write.
const RACE_ATTEMPTS: u32 = 64;

impl NatsBackend {
    /// Connects to the NATS server at `url` (`nats://host:4222`, with `user:password@` or a
    /// token in it if the server wants them) with the default timeouts. Several servers of a
    /// cluster are given separated by commas (`nats://a:4222,nats://b:4222`): the client
    /// connects to one of them and moves to another when it is lost.
    pub async fn connect(url: &str) -> Result<NatsBackend> {
        NatsBackend::connect_with(url, NatsOptions::default()).await
    }

    /// Connects with other timeouts or client options.
    pub async fn connect_with(url: &str, options: NatsOptions) -> Result<NatsBackend> {
        let target = || redact(url);
        let client_options = options
            .options
            .unwrap_or_default()
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.request_timeout));
        let servers: Vec<&str> = url.split(',').map(str::trim).collect();
        let client = client_options
            .connect(servers)
            .await
            .map_err(|e| Error::Connect {
                target: target(),
                source: Box::new(e),
            })?;
        let backend = NatsBackend::from_client_with(
            client,
            options.request_timeout,
            options.durable_replicas,
        );
        // Fail now, not at the first call, when JetStream is off.
        // (The account info, read raw: its typed form follows the newest server's fields.)
        let answer = backend
            .inner
            .client
            .request("$JS.API.INFO", Vec::new().into())
            .await
            .map_err(|e| e.to_string())
            .and_then(|reply| {
                let text = String::from_utf8_lossy(&reply.payload);
                if text.contains("\"error\"") {
                    Err(text.into_owned())
                } else {
                    Ok(())
                }
            });
        answer.map_err(|e| Error::Connect {
            target: target(),
            source: format!("JetStream does not answer (is the server run with -js?): {e}").into(),
        })?;
        Ok(backend)
    }

    /// A backend on a connected `async-nats` client, with JetStream answers awaited for 5 s and
    /// the buckets of durable types given replicas automatically
    /// ([`NatsOptions::durable_replicas`]).
    pub fn from_client(client: async_nats::Client) -> NatsBackend {
        NatsBackend::from_client_with(client, Duration::from_secs(5), None)
    }

    fn from_client_with(
        client: async_nats::Client, timeout: Duration, durable_replicas: Option<usize>,
    ) -> NatsBackend {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        let info = client.server_info();
        let per_key_ttl = version_at_least(&info.version, 2, 11);
        // A server in a cluster names it in its INFO; its JetStream peers are then the
        // cluster's servers, and 3 replicas is the smallest count that survives losing one.
        let durable_replicas =
            durable_replicas.unwrap_or(if info.cluster.is_some() { 3 } else { 1 });
        NatsBackend {
            inner: Arc::new(Inner {
                client,
                js,
                types: RwLock::default(),
                buckets: RwLock::default(),
                per_key_ttl,
                timeout,
                durable_replicas,
            }),
        }
    }

    /// The client, for other NATS work on the same connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// How many replicas the bucket of a durable type gets: the count given to
    /// [`NatsOptions::durable_replicas`], else 3 when the server connected to at first was part
    /// of a cluster and 1 when it was not.
    pub fn durable_replicas(&self) -> usize {
        self.inner.durable_replicas
    }

    /// Whether the server (NATS 2.11 or later) has per-message TTL, with which a later version
    /// of this backend can give each key its own expiry. This version uses bucket `max_age`
    /// whatever the server.
    pub fn server_has_per_key_ttl(&self) -> bool {
        self.inner.per_key_ttl
    }

    /// The bucket and the key in it where `key` is stored.
    pub fn location(&self, key: &str) -> Result<(String, String)> {
        let (prefix, rest) = self.split(key)?;
        Ok((bucket_name(prefix), encode_key(rest)))
    }

    /// Where the type prefix of `key` ends: the longest declared prefix, else its first segment.
    fn split<'k>(&self, key: &'k str) -> Result<(&'k str, &'k str)> {
        let mut colons = key.match_indices(':').map(|(i, _)| i);
        let Some(first) = colons.next() else {
            return Err(Error::InvalidKey {
                key: key.to_owned(),
                reason: "not a state key: it has no `:` after a type prefix".into(),
            });
        };
        if let Some(second) = colons.next() {
            let types = read(&self.inner.types);
            if types.contains_key(&key[..second]) {
                return Ok((&key[..second], &key[second + 1..]));
            }
        }
        Ok((&key[..first], &key[first + 1..]))
    }

    fn declared_ttl(&self, prefix: &str) -> Option<Duration> {
        read(&self.inner.types).get(prefix).copied().flatten()
    }

    /// The live entry of `key` in `bucket`: a put that has not outlived `max_age`.
    async fn entry(&self, bucket: &Bucket, nkey: &str, key: &str) -> Result<Option<kv::Entry>> {
        let entry = bucket
            .kv
            .entry(nkey)
            .await
            .map_err(|e| backend_error("get", key, e))?;
        Ok(
            entry
                .filter(|e| e.operation == kv::Operation::Put && left(e, bucket.max_age).is_some()),
        )
    }

    /// Writes `value` if `key` holds nothing live: a missing key, a delete marker, or a value
    /// past its `max_age` that the server has not removed yet.
    async fn create(&self, bucket: &Bucket, nkey: &str, key: &str, value: Vec<u8>) -> Result<bool> {
        let mut expected = 0;
        for _ in 0..RACE_ATTEMPTS {
            match bucket.kv.update(nkey, value.clone().into(), expected).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(backend_error("set_if_absent", key, e)),
            }
            let last = bucket
                .kv
                .entry(nkey)
                .await
                .map_err(|e| backend_error("set_if_absent", key, e))?;
            match last {
                Some(e)
                    if e.operation == kv::Operation::Put && left(&e, bucket.max_age).is_some() =>
                {
                    return Ok(false);
                }
                Some(e) => expected = e.revision,
                None => expected = 0,
            }
        }
        Ok(false)
    }
}

impl Backend for NatsBackend {
    fn get_versioned<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let entry = self.live_entry(key).await?;
            Ok(entry
                .map(|(_, e)| Versioned::new(e.value.to_vec(), Version::from_number(e.revision))))
        })
    }

    fn put<'a>(
        &'a self, key: &'a str, value: Vec<u8>, options: PutOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        // The bucket's stream is the change feed: every write is on it, announced or not.
        let PutOptions {
            mode,
            expiry,
            fence,
            durable,
            ..
        } = options;
        Box::pin(async move {
            // A lease and the written key are in two buckets: no atomic check of both.
            if fence.is_some() {
                return Err(Error::Unsupported {
                    operation: "fenced write",
                    backend: self.name(),
                });
            }
            let (prefix, rest) = self.split(key)?;
            // Another expiry than the type's, on a plain write, comes from `set_with`.
            let operation = match mode {
                PutMode::Overwrite => "set_with_ttl",
                _ => "a per-key expiry",
            };
            let bucket = self
                .bucket_for_write(prefix, expiry, durable, key, operation)
                .await?;
            let nkey = encode_key(rest);
            match mode {
                PutMode::Overwrite => {
                    bucket
                        .kv
                        .put(&nkey, value.into())
                        .await
                        .map_err(|e| backend_error("set", key, e))?;
                    Ok(true)
                }
                PutMode::Create => self.create(&bucket, &nkey, key, value).await,
                PutMode::Update(version) => {
                    let Some(revision) = version.as_number() else {
                        return Ok(false);
                    };
                    match bucket.kv.update(&nkey, value.into(), revision).await {
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                        Err(e) => Err(backend_error("update", key, e)),
                    }
                }
                #[allow(unreachable_patterns)]
                _ => Err(Error::Unsupported {
                    operation: "put with this mode",
                    backend: self.name(),
                }),
            }
        })
    }

    fn remove<'a>(
        &'a self, key: &'a str, options: RemoveOptions<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if options.fence.is_some() {
                return Err(Error::Unsupported {
                    operation: "fenced remove",
                    backend: self.name(),
                });
            }
            let access = Access::Remove {
                durable: options.durable,
            };
            if let Some(version) = &options.if_version {
                return self.remove_version(key, version, access).await;
            }
            let (prefix, rest) = self.split(key)?;
            let Some(bucket) = self.bucket(prefix, access, key).await? else {
                return Ok(false);
            };
            let nkey = encode_key(rest);
            // A delete conditional on the revision read, so that `true` means this call removed
            // a live value.
            for _ in 0..RACE_ATTEMPTS {
                let Some(entry) = self.entry(&bucket, &nkey, key).await? else {
                    return Ok(false);
                };
                match bucket
                    .kv
                    .delete_expect_revision(&nkey, Some(entry.revision))
                    .await
                {
                    Ok(()) => return Ok(true),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                    Err(e) => return Err(backend_error("remove", key, e)),
                }
            }
            Err(Error::Conflict {
                key: key.to_owned(),
                attempts: RACE_ATTEMPTS,
            })
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>>> {
        Box::pin(async move {
            let entry = self.live_entry(key).await?;
            Ok(entry
                .and_then(|(bucket, e)| left(&e, bucket.max_age))
                .flatten())
        })
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<String>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        let keys = async move { this.list_all(&prefix).await };
        Box::pin(futures_util::stream::once(keys).flat_map(|keys| {
            let items: Vec<Result<String>> = match keys {
                Ok(keys) => keys,
                Err(e) => vec![Err(e)],
            };
            futures_util::stream::iter(items)
        }))
    }

    fn extensions(&self) -> Extensions<'_> {
        Extensions::new()
            .system_name("nats")
            .feed(self)
            .layout(self)
            .leases(self)
    }
}

/// A type's keys are in a bucket of its own, whose `max_age` is the type's ttl.
impl KeyLayout for NatsBackend {
    fn declare(&self, prefix: &str, ttl: Option<Duration>) {
        if let Some(known) = read(&self.inner.types).get(prefix)
            && (ttl.is_none() || *known == ttl)
        {
            return;
        }
        let mut types = write(&self.inner.types);
        let entry = types.entry(prefix.into()).or_insert(None);
        if ttl.is_some() {
            *entry = ttl;
        }
    }
}

crate::backend::inherent_enable_expiry_events!(NatsBackend);

/// The bucket's own watch, per watcher.
impl ChangeFeed for NatsBackend {
    fn watch<'a>(
        &'a self, watch: &'a Watch,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
        Box::pin(async move {
            let channel = watch.channel.as_str();
            // The channel is the type prefix: its keys are in its bucket.
            KeyLayout::declare(self, channel, None);
            let bucket = self
                .bucket(channel, Access::Write { durable: false }, channel)
                .await?
                .expect("created when missing");
            let changes = match &watch.key {
                Some(key) => {
                    let rest = key
                        .strip_prefix(channel)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .ok_or_else(|| Error::InvalidKey {
                            key: key.clone(),
                            reason: format!("not a key of `{channel}`"),
                        })?;
                    bucket.kv.watch(encode_key(rest)).await
                }
                None => bucket.kv.watch_all().await,
            }
            .map_err(|e| backend_error("watch", channel, e))?;
            let hub = Arc::new(Hub::default());
            let queue = hub.subscribe(watch, true);
            let task = tokio::spawn(pump(changes, hub.clone(), channel.to_owned()));
            let abort = task.abort_handle();
            let on_drop: Box<dyn FnOnce(bool) + Send + Sync> = Box::new(move |_| abort.abort());
            let watcher = Watcher::new(queue, &hub, Some(on_drop));
            // The pump holds the hub; the watcher only a weak reference, which ends the stream
            // once the pump stops (its subscription lost).
            drop(hub);
            Ok(Box::pin(watcher) as BoxStream<'static, Result<Event>>)
        })
    }

    /// Expiries are not announced: a bucket's `max_age` removes values silently.
    fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            Err(Error::Unsupported {
                operation: "enable_expiry_events",
                backend: self.name(),
            })
        })
    }
}

impl NatsBackend {
    /// The live entry under `key` with its bucket, `None` when the type's bucket or the key is
    /// missing.
    async fn live_entry(&self, key: &str) -> Result<Option<(Arc<Bucket>, kv::Entry)>> {
        let (prefix, rest) = self.split(key)?;
        let Some(bucket) = self.bucket(prefix, Access::Read, key).await? else {
            return Ok(None);
        };
        let entry = self.entry(&bucket, &encode_key(rest), key).await?;
        Ok(entry.map(|entry| (bucket, entry)))
    }

    /// A delete with the expected revision.
    async fn remove_version(&self, key: &str, version: &Version, access: Access) -> Result<bool> {
        {
            let (prefix, rest) = self.split(key)?;
            let Some(bucket) = self.bucket(prefix, access, key).await? else {
                return Ok(false);
            };
            let Some(revision) = version.as_number() else {
                return Ok(false);
            };
            match bucket
                .kv
                .delete_expect_revision(encode_key(rest), Some(revision))
                .await
            {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(backend_error("remove_if", key, e)),
            }
        }
    }
}

/// Hands the changes of a bucket's watch to the watcher's queue, as events on `channel`.
async fn pump(mut changes: kv::Watch, hub: Arc<Hub>, channel: String) {
    while let Some(change) = changes.next().await {
        let Ok(entry) = change else {
            hub.interrupt(&[Arc::from(channel.as_str())].into_iter().collect());
            continue;
        };
        let key: Arc<str> = match decode_key(&entry.key) {
            Some(rest) => Arc::from(format!("{channel}:{rest}")),
            None => {
                hub.publish_malformed(
                    &channel,
                    &format!("key `{}` is not one this crate writes", entry.key),
                );
                continue;
            }
        };
        hub.publish(&channel, || match entry.operation {
            kv::Operation::Put => Event::Set {
                key,
                value: Arc::from(&entry.value[..]),
            },
            kv::Operation::Delete | kv::Operation::Purge => Event::Removed { key },
        });
    }
    hub.end(&channel, "the NATS watch ended");
}

impl NatsBackend {
    /// Every full key that starts with `prefix`, over the buckets whose keys can.
    async fn list_all(&self, prefix: &str) -> Result<Vec<Result<String>>> {
        let mut names = self.inner.js.stream_names();
        let mut types = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| backend_error("list", prefix, e))?;
            let Some(bucket) = name.strip_prefix("KV_") else {
                continue;
            };
            let Some(type_prefix) = decode_bucket(bucket) else {
                continue;
            };
            let start = format!("{type_prefix}:");
            if start.starts_with(prefix) || prefix.starts_with(&start) {
                types.push(type_prefix);
            }
        }
        let mut found = Vec::new();
        for type_prefix in types {
            let Some(bucket) = self.bucket(&type_prefix, Access::Read, prefix).await? else {
                continue;
            };
            let mut keys = match bucket.kv.keys().await {
                Ok(keys) => keys,
                Err(e) => {
                    found.push(Err(backend_error("list", prefix, e)));
                    continue;
                }
            };
            // The listing reads the bucket's stream: a key written while it runs comes again,
            // later in the stream, and is listed once all the same.
            let mut seen = std::collections::HashSet::new();
            // The listing ends when the server marks a key the last pending one. A bucket keeps
            // one revision per key, so a concurrent rewrite can remove the message that would
            // have carried that mark, and the consumer then waits for ever: a listing that
            // hears nothing for a request's timeout ends there, as the contract allows a key
            // rewritten meanwhile to be missed (the engine declares no stable listing).
            loop {
                let Ok(next) = tokio::time::timeout(self.inner.timeout, keys.next()).await else {
                    crate::backend::kit::warn_event!(
                        bucket = %type_prefix,
                        "state_store: a NATS key listing heard nothing for {:?} and ended there",
                        self.inner.timeout
                    );
                    break;
                };
                let Some(key) = next else {
                    break;
                };
                let key = match key {
                    Ok(key) => key,
                    Err(e) => {
                        found.push(Err(backend_error("list", prefix, e)));
                        break;
                    }
                };
                if !seen.insert(key.clone()) {
                    continue;
                }
                match decode_key(&key) {
                    Some(rest) => {
                        let full = format!("{type_prefix}:{rest}");
                        if full.starts_with(prefix) {
                            found.push(Ok(full));
                        }
                    }
                    None => found.push(Err(Error::InvalidKey {
                        key: format!("{type_prefix}:{key}"),
                        reason: format!(
                            "key `{key}` of NATS bucket `{}` is not one this crate writes",
                            bucket.kv.name
                        ),
                    })),
                }
            }
        }
        Ok(found)
    }
}

/// Whether a bucket with `max_age` (zero: none) gives a write `expiry`.
fn fits(max_age: Duration, expiry: Expiry) -> bool {
    match expiry {
        Expiry::Never => max_age.is_zero(),
        Expiry::After(d) => {
            !max_age.is_zero() && ceil_millis(self::max_age(d)) == ceil_millis(max_age)
        }
        Expiry::Keep => true,
        // Kept at least `d`: a bucket without expiry, or one that keeps values as long.
        Expiry::AtLeast(d) => {
            max_age.is_zero() || ceil_millis(self::max_age(d)) <= ceil_millis(max_age)
        }
    }
}

/// The bucket `max_age` that keeps values `ttl`.
fn max_age(ttl: Duration) -> Duration {
    ttl.min(MAX_AGE_CEILING)
}

/// Time left to `entry` in a bucket with `max_age`: `None` when it has expired (the server
/// removes it soon after), `Some(None)` when it does not expire.
fn left(entry: &kv::Entry, max_age: Duration) -> Option<Option<Duration>> {
    left_since(entry.created.unix_timestamp_nanos(), max_age)
}

/// Time left to a value written `created` nanoseconds after the Unix epoch in a bucket with
/// `max_age`, as [`left`] says.
fn left_since(created: i128, max_age: Duration) -> Option<Option<Duration>> {
    if max_age.is_zero() {
        return Some(None);
    }
    let created = u128::try_from(created).unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let ends = created.saturating_add(max_age.as_nanos());
    let left = ends.checked_sub(now).filter(|left| *left > 0)?;
    let millis = u64::try_from(left / 1_000_000).unwrap_or(u64::MAX);
    Some(Some(Duration::from_millis(millis)))
}

fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// `url` (or each of the comma-separated URLs in it) without credentials, for errors.
fn redact(url: &str) -> String {
    let one = |url: &str| match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => "the given NATS URL".to_owned(),
    };
    url.split(',')
        .map(|url| one(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

fn backend_error(
    operation: &'static str, key: &str, source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend {
        operation,
        key: key.to_owned(),
        source: Box::new(source),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_fits_the_bucket() {
        let hour = Duration::from_secs(3600);
        assert!(fits(Duration::ZERO, Expiry::Never));
        assert!(!fits(Duration::ZERO, Expiry::After(hour)));
        assert!(fits(hour, Expiry::After(hour)));
        assert!(!fits(hour, Expiry::After(hour / 2)));
        assert!(!fits(hour, Expiry::Never));
        assert!(fits(hour, Expiry::Keep));
        assert!(fits(MAX_AGE_CEILING, Expiry::After(Duration::MAX)));
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("2.11.0", 2, 11));
        assert!(!version_at_least("2.9.10", 2, 11));
        assert!(version_at_least("3.0.0-beta", 2, 11));
        assert_eq!(redact("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact("nats://u:p@a:4222, nats://b:4222"),
            "nats://***@a:4222,nats://b:4222"
        );
    }
}
