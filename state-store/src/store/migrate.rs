//! [`Store::migrate`]: rewriting the values of a type that are still in its `previous` shape.

use std::fmt;
use std::future::Future;

use futures_util::StreamExt;
use futures_util::future::join_all;

use super::Store;
use super::codec::encode;
use super::trace::{call_span, traced};
use crate::backend::{Backend, Expiry, PutMode, PutOptions};
use crate::id::id_from_key;
use crate::key::StateKey;
use crate::{Error, Result};

/// How many keys [`MigrateReport::undecodable_keys`] names.
const NAMED_KEYS: usize = 5;

/// How many keys a migration reads at once (one `MGET` on Redis) by default.
const BATCH: usize = 128;

/// What [`Store::migrate`] found and did; also the progress it reports along the way
/// ([`MigrateOptions::on_progress`]), with the counts so far.
///
/// Every key scanned is counted once, in exactly one of `rewritten`, `current`, `undecodable`
/// and `vanished`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateReport {
    /// Keys found under the type's prefix (`SCAN MATCH` on Redis).
    pub scanned: u64,
    /// Values that were in the `previous` shape and are now stored in the current one, each
    /// with the expiry it had left.
    pub rewritten: u64,
    /// Values already in the current shape (some perhaps written so by another writer while the
    /// migration ran), left byte for byte as they were.
    pub current: u64,
    /// Values that decode as neither shape, and keys under the prefix that are not ids of the
    /// type (another service's, say): left as they are.
    pub undecodable: u64,
    /// The first few of the `undecodable` keys (at most 5), to look at.
    pub undecodable_keys: Vec<String>,
    /// Keys that were gone (removed or expired) by the time they were read.
    pub vanished: u64,
}

impl MigrateReport {
    fn undecodable(&mut self, key: String) {
        self.undecodable += 1;
        if self.undecodable_keys.len() < NAMED_KEYS {
            self.undecodable_keys.push(key);
        }
    }
}

impl fmt::Display for MigrateReport {
    /// One line, for logs and command-line tools: `2000 scanned: 1000 rewritten, 998 current,
    /// 2 undecodable (svc:session:7, svc:session:9), 0 vanished`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} scanned: {} rewritten, {} current, {} undecodable",
            self.scanned, self.rewritten, self.current, self.undecodable
        )?;
        if !self.undecodable_keys.is_empty() {
            let more = if self.undecodable > self.undecodable_keys.len() as u64 {
                ", ..."
            } else {
                ""
            };
            write!(f, " ({}{more})", self.undecodable_keys.join(", "))?;
        }
        write!(f, ", {} vanished", self.vanished)
    }
}

/// How [`Store::migrate_with`] runs: a progress callback, and how many keys it reads at once.
///
/// ```
/// # use state_store::MigrateOptions;
/// let options = MigrateOptions::new()
///     .on_progress(|so_far| eprint!("\r{so_far}"))
///     .batch(500);
/// ```
pub struct MigrateOptions<'a> {
    progress: Option<Progress<'a>>,
    batch: usize,
}

/// A progress callback of [`MigrateOptions::on_progress`].
type Progress<'a> = Box<dyn FnMut(&MigrateReport) + Send + 'a>;

impl<'a> MigrateOptions<'a> {
    /// No progress callback; 128 keys at a time.
    pub fn new() -> Self {
        MigrateOptions {
            progress: None,
            batch: BATCH,
        }
    }

    /// Calls `progress` with the counts so far after each batch of keys, for a progress bar or
    /// a log line. `SCAN` does not know the total in advance: `scanned` grows until the end.
    pub fn on_progress(mut self, progress: impl FnMut(&MigrateReport) + Send + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Reads `keys` keys at a time (default 128, at least 1): one `MGET` per batch on Redis,
    /// then the rewrites of the batch's older values, all in flight at once.
    pub fn batch(mut self, keys: usize) -> Self {
        self.batch = keys.max(1);
        self
    }
}

impl Default for MigrateOptions<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MigrateOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("on_progress", &self.progress.is_some())
            .field("batch", &self.batch)
            .finish()
    }
}

/// What became of one key.
enum Outcome {
    Rewritten,
    Current,
    Undecodable,
    Vanished,
}

/// The shape of stored bytes.
enum Shape<S> {
    Current,
    Previous(S),
    Neither,
}

fn shape<S: StateKey>(bytes: &[u8]) -> Shape<S> {
    if serde_json::from_slice::<S>(bytes).is_ok() {
        return Shape::Current;
    }
    match S::__decode_previous(bytes) {
        Some((_, Ok(value))) => Shape::Previous(value),
        _ => Shape::Neither,
    }
}

/// Whether `key` is the key of an `S` under `prefix`.
fn is_id<S: StateKey>(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|id| id_from_key::<S::Id>(id).is_ok())
}

impl<B: Backend> Store<B> {
    /// Rewrites every `S` still stored in the type's `previous` shape in the current one, and
    /// says what it found. Needs [`enable_set`](Self::enable_set).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, StateKey, Store};
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = u64, previous = JobV1)]
    /// struct Job { status: String, attempts: u32 }
    ///
    /// #[derive(Deserialize)]
    /// struct JobV1 { done: bool }
    ///
    /// impl From<JobV1> for Job {
    ///     fn from(old: JobV1) -> Self {
    ///         let status = if old.done { "done" } else { "queued" };
    ///         Job { status: status.into(), attempts: 0 }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// # use state_store::Backend;
    /// # for (id, old) in [(1, r#"{"done":true}"#), (2, r#"{"done":false}"#)] {
    /// #     let key = store.full_key::<Job>(id)?;
    /// #     state_store::BackendExt::set(store.backend(), &key, old.as_bytes().to_vec(), None, None).await?;
    /// # }
    /// store.set::<Job>(3, &Job { status: "running".into(), attempts: 1 }).await?;
    /// let report = store.migrate::<Job>().await?;
    /// assert_eq!((report.scanned, report.rewritten, report.current), (3, 2, 1));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// It walks the type's keys with [`Backend::list`] (`SCAN MATCH` on Redis, never `KEYS`),
    /// reads them a batch at a time ([`Backend::get_many`], one `MGET`), and rewrites each
    /// value that is in the previous shape with a compare-and-set ([`PutMode::Update`]), which
    /// keeps the key's remaining expiry. A value written by someone else between the read and
    /// the rewrite (a newer release's `update`, an older release's `set`) is never overwritten:
    /// the key is read again and decided again. Values in the current shape are only read.
    /// Values that decode as neither shape are counted, named (the first few) and left as they
    /// are, and the migration goes on.
    ///
    /// # Namespaces
    /// Run it on a store with a namespace. Without one, the type's keys (`session:...`) share
    /// their start with every key of a store whose namespace is the type's prefix (a store with
    /// `namespace("session")` writes `session:job:7`). Keys whose rest does not parse as an id
    /// of `S` are left alone and reported as undecodable; but with an id type that parses
    /// almost anything (a `String`, a tuple of `String`s) and a previous shape that accepts
    /// such a value, migrate would rewrite the other store's value. Giving every service a
    /// namespace rules it out.
    ///
    /// Run it once the new release is out, from a deploy step or a command-line tool
    /// ([`migrate_with`](Self::migrate_with) reports progress); running it again is safe and
    /// finds nothing left to rewrite. On a type declared with `notify`, each rewrite announces
    /// a [`Change::Set`](crate::Change::Set), since the stored bytes changed. A type without
    /// `previous` rewrites nothing: the report is an audit of which values still decode.
    ///
    /// Errors: [`Error::Disabled`] without `enable_set`; a backend error ends the migration
    /// (the keys rewritten so far stay rewritten; run it again); [`Error::Conflict`](crate::Error::Conflict) when one
    /// key lost [`update_attempts`](Self::update_attempts) races in a row, each time to a
    /// writer of the previous shape.
    pub fn migrate<S: StateKey>(&self) -> impl Future<Output = Result<MigrateReport>> + Send + '_ {
        self.migrate_with::<S>(MigrateOptions::new())
    }

    /// [`migrate`](Self::migrate) with a progress callback and a batch size:
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use state_store::{MemoryBackend, MigrateOptions, StateKey, Store};
    /// # #[derive(Serialize, Deserialize, StateKey)]
    /// # #[state(prefix = "job", id = u64)]
    /// # struct Job { status: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// # let store = Store::new(MemoryBackend::new()).enable_set();
    /// let options = MigrateOptions::new().on_progress(|so_far| eprintln!("{so_far}"));
    /// let report = store.migrate_with::<Job>(options).await?;
    /// println!("{report}"); // 0 scanned: 0 rewritten, 0 current, 0 undecodable, 0 vanished
    /// # Ok(())
    /// # }
    /// ```
    pub fn migrate_with<'a, S: StateKey>(
        &'a self, options: MigrateOptions<'a>,
    ) -> impl Future<Output = Result<MigrateReport>> + Send + 'a {
        let prefix = self
            .check_enabled(self.set_enabled, "migrate", "enable_set")
            .and_then(|()| Ok(format!("{}{}:", self.namespace_prefix()?, S::PREFIX)));
        let span = call_span!(self, S, "migrate");
        traced(span, async move {
            let prefix = prefix?;
            let MigrateOptions {
                mut progress,
                batch,
            } = options;
            let mut report = MigrateReport::default();
            let mut listed = self.backend.list(&prefix).chunks(batch);
            while let Some(chunk) = listed.next().await {
                let mut keys = Vec::with_capacity(chunk.len());
                for key in chunk {
                    report.scanned += 1;
                    match key {
                        // Only keys that parse as ids of `S`: with no namespace, `session:` also
                        // starts the keys of a store whose namespace is `session`, and this
                        // keeps most of them out. Not all: see "Namespaces" in the docs.
                        Ok(key) if is_id::<S>(&key, &prefix) => keys.push(key),
                        Ok(key) | Err(Error::InvalidKey { key, .. }) => report.undecodable(key),
                        Err(e) => return Err(e),
                    }
                }
                let values = self.backend.get_many(&keys).await?;
                let outcomes = keys
                    .iter()
                    .zip(values)
                    .map(|(key, value)| self.migrate_key::<S>(key, value));
                for (key, outcome) in keys.iter().zip(join_all(outcomes).await) {
                    match outcome? {
                        Outcome::Rewritten => report.rewritten += 1,
                        Outcome::Current => report.current += 1,
                        Outcome::Undecodable => report.undecodable(key.clone()),
                        Outcome::Vanished => report.vanished += 1,
                    }
                }
                if let Some(progress) = &mut progress {
                    progress(&report);
                }
            }
            Ok(report)
        })
    }

    /// Migrates `key`, which the batch read found holding `read`.
    async fn migrate_key<S: StateKey>(&self, key: &str, read: Option<Vec<u8>>) -> Result<Outcome> {
        match read.as_deref().map(shape::<S>) {
            Some(Shape::Current) => return Ok(Outcome::Current),
            Some(Shape::Neither) => return Ok(Outcome::Undecodable),
            // An older value, to read again with its version; or nothing, which on Redis may
            // also be a key of another kind (`MGET` says nil for a hash): read again to tell.
            Some(Shape::Previous(_)) | None => {}
        }
        let notify = self.notify::<S>(key);
        for _ in 0..self.update_attempts {
            let stored = match self.backend.get_versioned(key).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(Outcome::Vanished),
                Err(Error::InvalidKey { .. }) => return Ok(Outcome::Undecodable),
                Err(e) => return Err(e),
            };
            let value = match shape::<S>(&stored.value) {
                Shape::Current => return Ok(Outcome::Current),
                Shape::Neither => return Ok(Outcome::Undecodable),
                Shape::Previous(value) => value,
            };
            let bytes = encode(key, &value)?;
            let mode = PutMode::Update(stored.version);
            // A lost race means another writer stored something since the read: no backoff,
            // read it again and decide again.
            if self
                .backend
                .put(
                    key,
                    bytes,
                    PutOptions::new()
                        .mode(mode)
                        .expiry(Expiry::Keep)
                        .notify(notify)
                        .durable(S::DURABLE)
                        .history(self.history::<S>()),
                )
                .await?
            {
                return Ok(Outcome::Rewritten);
            }
        }
        Err(Error::Conflict {
            key: key.to_owned(),
            attempts: self.update_attempts,
        })
    }
}
