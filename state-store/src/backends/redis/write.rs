//! The Redis backend's writes: plain `SET`s, the compare-and-set and notifying scripts, and
//! `MULTI` pipelines of many keys (one per hash slot on a Cluster), each made known to the
//! client-side cache before it is sent and after it has run.

use std::sync::Arc;

use redis::{RedisError, ScriptInvocation};

use super::cache::Tracker;
use super::conn::{backend_error, broke_connection, worth_one_retry};
use super::feed::{set_message, wire_channel};
use super::journal;
use super::scripts::{PUT_IF_VERSION, PUT_NOTIFY, REMOVE_NOTIFY};
use super::{RedisBackend, is_digest, millis};
use crate::backend::{Expiry, Notify, PutMode};
use crate::{Error, Result};

/// Items of a multi-key operation, split by hash slot on a Cluster.
enum PerSlot<T> {
    One(Vec<T>),
    Many(Vec<Vec<T>>),
}

/// What a multi-key operation's items are keyed by.
trait SlotKey {
    fn slot_key(&self) -> &str;
}

impl SlotKey for (String, Vec<u8>) {
    fn slot_key(&self) -> &str {
        &self.0
    }
}

impl SlotKey for String {
    fn slot_key(&self) -> &str {
        self
    }
}

/// `e`, with what the rest of a call split per slot did.
fn partly_done(e: Error, rest: String) -> Error {
    match e {
        Error::Backend {
            operation,
            key,
            source,
        } => Error::Backend {
            operation,
            key,
            source: format!("{source} ({rest})").into(),
        },
        other => other,
    }
}

/// The keys of a write, for the client-side cache: dropped when the guard is made, and again
/// when the write has run (see `redis_cache.rs`). [`finish`](Forget::finish) says whether an
/// answer came; a write given up or timed out may still run, so the cache waits for it.
pub(super) struct Forget<'a> {
    cache: Option<&'a Arc<Tracker>>,
    keys: Vec<String>,
}

impl Forget<'_> {
    /// The write ended with `result`: an answer (a value or the server's refusal) means it ran
    /// or never will; a broken connection or a timeout leaves it undecided.
    fn finish<T>(mut self, result: &Result<T>) {
        let Some(cache) = self.cache.take() else {
            return;
        };
        let keys = std::mem::take(&mut self.keys);
        let undecided = match result {
            Err(Error::Backend { source, .. }) => source
                .downcast_ref::<RedisError>()
                .is_some_and(broke_connection),
            _ => false,
        };
        if undecided {
            cache.end_write_later(keys);
        } else {
            cache.end_write(&keys);
        }
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        // Dropped before `finish`: the call was given up while the write was in flight.
        if let Some(cache) = self.cache.take() {
            cache.end_write_later(std::mem::take(&mut self.keys));
        }
    }
}

impl RedisBackend {
    /// [`Forget`] for the keys of a write, when the cache tracks any of them.
    pub(super) fn forget_keys<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Forget<'_> {
        let Some(cache) = self.cache.as_ref().filter(|cache| cache.is_active()) else {
            return Forget {
                cache: None,
                keys: Vec::new(),
            };
        };
        let keys = cache.begin_write(keys);
        Forget {
            cache: (!keys.is_empty()).then_some(cache),
            keys,
        }
    }

    pub(super) fn forget_key(&self, key: &str) -> Forget<'_> {
        self.forget_keys(std::iter::once(key))
    }

    /// Runs the write `work` inside `forget` (made before `work` is first polled, so before
    /// anything is sent), telling it how the write ended.
    pub(super) async fn writing<T>(
        &self, forget: Forget<'_>, work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = work.await;
        forget.finish(&result);
        result
    }
}

/// `SET key value [NX] [PX ms | KEEPTTL]`: `create` only when the key is missing, with `expiry`
/// (`Keep` keeps an existing key's; a created key has none to keep).
pub(super) fn set_cmd(key: &str, value: Vec<u8>, create: bool, expiry: Expiry) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if create {
        cmd.arg("NX");
    }
    match expiry {
        Expiry::After(ttl) | Expiry::AtLeast(ttl) => {
            cmd.arg("PX").arg(millis(ttl));
        }
        Expiry::Keep if !create => {
            cmd.arg("KEEPTTL");
        }
        Expiry::Keep | Expiry::Never => {}
    }
    cmd
}

/// The expiry argument of the write scripts: `keep`, `never`, or milliseconds.
pub(super) fn arg_expiry(invocation: &mut ScriptInvocation<'_>, expiry: Expiry) {
    match expiry {
        Expiry::Keep => invocation.arg("keep"),
        Expiry::Never => invocation.arg("never"),
        Expiry::After(ttl) | Expiry::AtLeast(ttl) => invocation.arg(millis(ttl)),
    };
}

impl RedisBackend {
    /// `put` and `set`: a plain `SET` (with `NX`, `PX` or `KEEPTTL`), else the compare-and-set
    /// or notifying script. The rarer two are boxed, so that the future of the common `SET`
    /// stays small (every call moves it into its box).
    pub(super) async fn put_one(
        &self, key: &str, value: Vec<u8>, mode: PutMode, expiry: Expiry, notify: Notify<'_>,
    ) -> Result<bool> {
        self.writing(self.forget_key(key), async {
            if let Some(channel) = notify {
                return Box::pin(self.put_notify(key, value, mode, expiry, channel)).await;
            }
            let create = mode == PutMode::Create;
            let version = match mode {
                PutMode::Overwrite | PutMode::Create => None,
                PutMode::Update(version) => Some(version),
            };
            if let Some(version) = version {
                let Some(digest) = version.as_text() else {
                    // Not a version this backend handed out: it cannot match any value.
                    return Ok(false);
                };
                let mut invocation = PUT_IF_VERSION.key(key);
                invocation.arg(digest).arg(value);
                arg_expiry(&mut invocation, expiry);
                // Not retried: after a lost reply, a second try would find its own write and
                // report a conflict.
                let written: i64 = Box::pin(self.run("update", key, &invocation)).await?;
                return Ok(written == 1);
            }
            let cmd = set_cmd(key, value, create, expiry);
            if create {
                // Not retried: after a lost reply, a second try would find its own write and say
                // `false`.
                let reply: Option<String> = self.query("set_if_absent", key, &cmd).await?;
                Ok(reply.is_some())
            } else {
                let () = self.query_idempotent("set", key, &cmd).await?;
                Ok(true)
            }
        })
        .await
    }

    /// A write of a notified type: the `PUT_NOTIFY` script, which publishes what it wrote.
    async fn put_notify(
        &self, key: &str, value: Vec<u8>, mode: PutMode, expiry: Expiry, channel: &str,
    ) -> Result<bool> {
        let (operation, condition) = match &mode {
            // Unconditional: `SET` and `PUBLISH` in a `MULTI`, which needs no script, and which
            // Redis refuses as a whole when the user may not publish (on 6.2 too). Measured side
            // by side with the script, it was as fast or faster (BENCHMARKS.md).
            PutMode::Overwrite => {
                let items = vec![(key.to_owned(), value)];
                self.set_in_multi("set", items, expiry, Some(channel))
                    .await?;
                return Ok(true);
            }
            PutMode::Create => ("set_if_absent", "nx"),
            PutMode::Update(version) => match version.as_text().filter(|text| is_digest(text)) {
                Some(digest) => ("update", digest),
                // Not a version this backend handed out: it cannot match any value.
                None => return Ok(false),
            },
        };
        let mut invocation = PUT_NOTIFY.key(key);
        invocation
            .arg(&*wire_channel(channel, self.db))
            .arg(value)
            .arg(condition);
        arg_expiry(&mut invocation, expiry);
        // Not retried: a second run after a lost reply would announce the write twice (and a
        // conditional one would find its own write and report `false`).
        let written: i64 = self.run(operation, key, &invocation).await?;
        Ok(written == 1)
    }
}

impl RedisBackend {
    /// `SET` of every item, each followed by the `PUBLISH` of its change when `notify` is
    /// given, in one `MULTI` pipeline: atomic, one round trip, and safe on the shared connection
    /// because nothing can interleave inside it (no `WATCH` involved). A user who may not
    /// publish on the channel has the whole transaction refused as it is queued (`EXECABORT`),
    /// so nothing is written.
    ///
    /// On a Cluster, the items are grouped by hash slot, one transaction per slot, all sent at
    /// once. When some fail, the first failure is reported with how many of the other keys were
    /// written.
    pub(super) async fn set_in_multi(
        &self, operation: &'static str, items: Vec<(String, Vec<u8>)>, expiry: Expiry,
        notify: Notify<'_>,
    ) -> Result<()> {
        let Some(groups) = self.per_slot(items) else {
            return Ok(());
        };
        let groups = match groups {
            PerSlot::One(items) => return self.set_group(operation, items, expiry, notify).await,
            PerSlot::Many(groups) => groups,
        };
        let total: usize = groups.iter().map(Vec::len).sum();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let results = futures_util::future::join_all(
            groups
                .into_iter()
                .map(|items| self.set_group(operation, items, expiry, notify)),
        )
        .await;
        let written: usize = results
            .iter()
            .zip(&sizes)
            .filter(|(result, _)| result.is_ok())
            .map(|(_, size)| size)
            .sum();
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => Err(partly_done(
                e,
                format!(
                    "{written} of the {total} keys, in the other hash slots, were written; \
                 repeat the call to write them all"
                ),
            )),
        }
    }

    /// `items` grouped by the hash slot of their key on a Cluster (in their order within a
    /// group), or as one group elsewhere; `None` when there are none.
    fn per_slot<T>(&self, items: Vec<T>) -> Option<PerSlot<T>>
    where
        T: SlotKey,
    {
        if items.is_empty() {
            return None;
        }
        match self.conn.per_slot(items, T::slot_key) {
            Err(items) => Some(PerSlot::One(items)),
            Ok(groups) if groups.len() > 1 => Some(PerSlot::Many(groups)),
            Ok(groups) => groups.into_iter().next().map(PerSlot::One),
        }
    }

    /// One `MULTI` of `set_in_multi`, whose keys share a slot on a Cluster.
    async fn set_group(
        &self, operation: &'static str, items: Vec<(String, Vec<u8>)>, expiry: Expiry,
        notify: Notify<'_>,
    ) -> Result<()> {
        let Some(first) = items.first().map(|(key, _)| key.clone()) else {
            return Ok(());
        };
        let wire = notify.map(|channel| wire_channel(channel, self.db));
        let (wire, journal) = match wire.as_deref().map(journal::split_feed) {
            Some((channel, journal)) => (Some(channel), journal),
            None => (None, None),
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in items {
            let message = wire.as_ref().map(|_| set_message(&key, &value));
            if let Some(journal) = &journal {
                journal.append(&mut pipe, "set", &key, Some(&value));
            }
            let set = pipe.cmd("SET").arg(&key).arg(value);
            match expiry {
                Expiry::After(ttl) | Expiry::AtLeast(ttl) => set.arg("PX").arg(millis(ttl)),
                Expiry::Keep => set.arg("KEEPTTL"),
                Expiry::Never => set,
            }
            .ignore();
            if let (Some(wire), Some(message)) = (wire, message) {
                pipe.cmd("PUBLISH").arg(wire).arg(message).ignore();
            }
        }
        let mut conn = self.conn_for(&first);
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match result {
            // Retried only when nothing is announced: a second run would announce every item
            // twice.
            Err(e) if notify.is_none() && worth_one_retry(&e) => pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| backend_error(operation, &first, e)),
            result => result.map_err(|e| backend_error(operation, &first, e)),
        }
    }

    /// `remove_many` of a notified type: the `REMOVE_NOTIFY` script, which announces each key
    /// it removed; on a Cluster one per hash slot, all at once.
    pub(super) async fn remove_notify_many(&self, keys: &[String], channel: &str) -> Result<u64> {
        let wire = wire_channel(channel, self.db);
        let remove = |keys: &[String]| {
            let mut invocation = REMOVE_NOTIFY.key(keys);
            invocation.arg(&*wire);
            let first = keys.first().cloned().unwrap_or_default();
            async move { self.run::<u64>("remove_many", &first, &invocation).await }
        };
        match self.per_slot(keys.to_vec()) {
            None => Ok(0),
            Some(PerSlot::One(keys)) => remove(&keys).await,
            // A script may only touch keys of one slot: one per slot, all at once.
            Some(PerSlot::Many(groups)) => {
                let results =
                    futures_util::future::join_all(groups.iter().map(|keys| remove(keys))).await;
                let removed: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
                match results.into_iter().find_map(Result::err) {
                    None => Ok(removed),
                    Some(e) => Err(partly_done(
                        e,
                        format!("{removed} keys in the other hash slots were removed"),
                    )),
                }
            }
        }
    }
}
