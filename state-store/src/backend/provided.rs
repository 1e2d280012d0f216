//! The loops the provided [`Backend`] methods are built of: reads and conditional writes of the
//! core, retried on a lost race. Written once here so that no engine copies one to change a detail.

use std::time::Duration;

use super::kit::{Backoff, parse_counter};
use futures_util::StreamExt;

use super::usage::{Usage, UsageOptions, UsageTally};
use super::{Backend, Expiry, Notify, PutMode, UpdateFn};
use crate::{Error, Result};

/// How many times the provided counter and rate-limit methods retry a lost conditional write
/// before [`Error::Conflict`]. Each try is two or three round trips on the contended key, and
/// the backoff between tries grows to 10 ms, so this bounds a call to about three seconds of
/// waiting.
pub(super) const COUNTER_ATTEMPTS: u32 = 256;

/// The provided counter methods' one mechanism: reads the counter under `key` (and, with
/// `read_ttl`, its time left), lets `step` decide the answer and the write (a value and its
/// expiry, or none), and makes the write conditional on what was read, again from the read when
/// another writer got there first.
pub(crate) async fn counter_step<B, T>(
    backend: &B,
    key: &str,
    read_ttl: bool,
    notify: Notify<'_>,
    mut step: impl FnMut(Option<i64>, Option<Duration>) -> Result<(T, Option<(i64, Expiry)>)>,
) -> Result<T>
where
    B: Backend + ?Sized,
{
    let mut backoff = Backoff::new(COUNTER_ATTEMPTS);
    loop {
        let (count, left, mode) = match backend.get_versioned(key).await? {
            Some(v) => {
                let count = parse_counter(key, &v.value)?;
                let left = if read_ttl {
                    backend.ttl(key).await?
                } else {
                    None
                };
                (Some(count), left, PutMode::Update(v.version))
            }
            None => (None, None, PutMode::Create),
        };
        let (answer, write) = step(count, left)?;
        let Some((value, expiry)) = write else {
            return Ok(answer);
        };
        let value = value.to_string().into_bytes();
        if backend.put(key, value, mode, expiry, notify).await? {
            return Ok(answer);
        }
        backoff.wait(key).await?;
    }
}

/// The read-then-conditional-write loop of [`Backend::update`] and
/// [`Backend::update_refreshing`]: a replaced value gets `replaced`, a created one
/// `ttl_if_created`.
pub(super) async fn update_loop<B: Backend + ?Sized>(
    backend: &B,
    key: &str,
    change: &mut UpdateFn<'_>,
    replaced: Expiry,
    ttl_if_created: Option<Duration>,
    attempts: u32,
    notify: Notify<'_>,
) -> Result<bool> {
    let mut backoff = Backoff::new(attempts);
    loop {
        let current = backend.get_versioned(key).await?;
        let Some(new) = change(current.as_ref().map(|v| v.value.as_slice()))? else {
            return Ok(false);
        };
        let (mode, expiry) = match current {
            Some(v) => (PutMode::Update(v.version), replaced),
            None => (PutMode::Create, Expiry::from_ttl(ttl_if_created)),
        };
        if backend.put(key, new, mode, expiry, notify).await? {
            return Ok(true);
        }
        backoff.wait(key).await?;
    }
}

/// The provided [`Backend::usage`]: [`Backend::list`], then per key its
/// [`ttl`](Backend::ttl) (and [`exists`](Backend::exists) when it has none, to tell a key
/// without expiry from one gone meanwhile), and [`get`](Backend::get) for the keys of the
/// sample, whose size is taken as key length plus value length.
pub(crate) async fn by_listing<B: Backend + ?Sized>(
    backend: &B,
    prefix: &str,
    options: &UsageOptions,
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
        let exists = ttl.is_some() || backend.exists(&key).await?;
        if exists
            && let Some(slot) = tally.count(key.as_bytes(), ttl)
            && let Some(value) = backend.get(&key).await?
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
