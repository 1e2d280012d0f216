//! The loops the provided [`Backend`] methods are built of: reads and conditional writes of the
//! core, retried on a lost race. Written once here so that no engine copies one to change a detail.

use futures_util::StreamExt;

use super::kit::{Backoff, RETRIES};
use super::usage::{Usage, UsageOptions, UsageTally};
use super::{
    Backend, GetOptions, PutMode, PutOptions, RemoveOptions, UpdateFn, UpdateOptions, Version,
    Versioned,
};
use crate::{Error, Result};

/// The provided [`Backend::get`].
pub(super) async fn get<B: Backend + ?Sized>(
    backend: &B, key: &str, options: GetOptions,
) -> Result<Option<Vec<u8>>> {
    let Some(expiry) = options.touch else {
        return Ok(backend.get_versioned(key).await?.map(|v| v.value));
    };
    let mut backoff = Backoff::new(RETRIES);
    loop {
        let Some(Versioned { value, version }) = backend.get_versioned(key).await? else {
            return Ok(None);
        };
        let put = PutOptions::new()
            .mode(PutMode::Update(version))
            .expiry(expiry)
            .durable(options.durable);
        if backend.put(key, value.clone(), put).await? {
            return Ok(Some(value));
        }
        backoff.wait(key).await?;
    }
}

/// The provided [`Backend::update`]: read, change, write conditionally on what was read.
pub(super) async fn update<B: Backend + ?Sized>(
    backend: &B, key: &str, change: &mut UpdateFn<'_>, options: UpdateOptions<'_>,
) -> Result<bool> {
    let mut backoff = Backoff::new(options.attempts);
    loop {
        let current = backend.get_versioned(key).await?;
        let Some(new) = change(current.as_ref().map(|v| v.value.as_slice()))? else {
            return Ok(false);
        };
        let (mode, expiry) = match current {
            Some(v) => (PutMode::Update(v.version), options.replaced),
            None => (PutMode::Create, options.created),
        };
        let put = PutOptions::new()
            .mode(mode)
            .expiry(expiry)
            .notify(options.notify)
            .durable(options.durable)
            .history(options.history);
        let put = match options.fence {
            Some(fence) => put.fence(fence),
            None => put,
        };
        if backend.put(key, new, put).await? {
            return Ok(true);
        }
        backoff.wait(key).await?;
    }
}

/// Removes `key` if `check` accepts the value it holds, atomically: a compare-and-delete of the
/// value `check` saw ([`RemoveOptions::if_version`]), again on the newer value when it changed
/// meanwhile, up to `attempts` times, then [`Error::Conflict`](crate::Error::Conflict). `true` when it removed.
pub(crate) async fn remove_if<B: Backend + ?Sized>(
    backend: &B, key: &str, check: &mut (dyn FnMut(&[u8]) -> Result<bool> + Send), attempts: u32,
    options: RemoveOptions<'_>,
) -> Result<bool> {
    let mut backoff = Backoff::new(attempts);
    loop {
        let Some(current) = backend.get_versioned(key).await? else {
            return Ok(false);
        };
        if !check(&current.value)? {
            return Ok(false);
        }
        let version: Version = current.version;
        if backend
            .remove(key, options.clone().if_version(version))
            .await?
        {
            return Ok(true);
        }
        backoff.wait(key).await?;
    }
}

/// The usage walk of an engine without a [`UsageScan`](super::UsageScan) of its own:
/// [`Backend::list`], then per key its [`ttl`](Backend::ttl) (and a [`get`](Backend::get) when
/// it has none, to tell a key without expiry from one gone meanwhile), and a `get` for the keys
/// of the sample, whose size is taken as key length plus value length.
pub(crate) async fn usage_by_listing<B: Backend + ?Sized>(
    backend: &B, prefix: &str, options: &UsageOptions,
) -> Result<Usage> {
    let mut tally = UsageTally::new(prefix, options);
    let mut keys = backend.list(prefix);
    let batch = u64::from(options.scan_count.max(1));
    let mut examined = 0;
    while let Some(key) = keys.next().await {
        let key = match key {
            Ok(key) => key,
            // A key the engine cannot name as text cannot be looked up either.
            Err(Error::InvalidKey { .. }) => continue,
            Err(e) => return Err(e),
        };
        examined += 1;
        let ttl = backend.ttl(&key).await?;
        // A key without expiry, or one gone since it was listed?
        let exists = ttl.is_some()
            || backend
                .get(&key, GetOptions::new().exists_only())
                .await?
                .is_some();
        if exists
            && let Some(slot) = tally.count(key.as_bytes(), ttl)
            && let Some(value) = backend.get(&key, GetOptions::new()).await?
        {
            tally.measured(slot, (key.len() + value.len()) as u64);
        }
        if examined % batch == 0 {
            tally.progress(examined);
        }
        // Each key costs up to three calls here: the limit is checked after every one.
        if tally.out_of_time() {
            tally.progress(examined);
            return Ok(tally.finish(false));
        }
    }
    tally.progress(examined);
    Ok(tally.finish(true))
}
