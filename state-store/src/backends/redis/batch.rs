//! Automatic read batching: single `get`s of one backend (and its clones) that wait while an
//! earlier read is in flight go out together, as one `MGET`, in one round trip.
//!
//! A `get` that finds no read in flight is sent at once, as a plain `GET`: a lone caller waits for
//! nothing (no timer). Calls that arrive while the allowed reads are in flight queue up; when a
//! read completes, whoever completed it hands the queue (up to the batch size) to a task that
//! sends it, and that task goes on with the next queue until none is left. A batch is one `MGET`;
//! a key it finds nil is asked its `TYPE`, so that a key holding a hash is an error for its
//! caller only, as a `GET` would make it, and not a missing value. A key asked twice in a batch
//! is fetched once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redis::RedisError;
use tokio::sync::oneshot;

use super::conn::{RedisConnection, backend_error, broke_connection, worth_one_retry};
use crate::{Error, Result};

/// The reads one backend has in flight, and the calls waiting for the next batch.
pub(crate) struct Batcher {
    state: Mutex<State>,
    /// `State::busy` as last set, read without the lock: a `get` that will likely queue makes its
    /// waiter (key copy and reply channel) before it takes the lock, so that others wait less
    /// for it.
    busy_hint: AtomicBool,
    /// The most keys in one batch.
    max_batch: usize,
}

#[derive(Default)]
struct State {
    /// Whether a read (a lone `GET` or a batch) is in flight.
    busy: bool,
    queue: Vec<Waiter>,
    /// The emptied vector of the last batch sent, the next queue: under load the queue is not
    /// grown from nothing for every batch.
    spare: Vec<Waiter>,
}

impl State {
    fn set_busy(&mut self, busy: bool, hint: &AtomicBool) {
        self.busy = busy;
        hint.store(busy, Ordering::Relaxed);
    }
}

struct Waiter {
    key: String,
    reply: oneshot::Sender<Result<Option<Vec<u8>>>>,
}

/// What a `get` does: send its `GET` now (holding the turn), or wait for a batch.
pub(crate) enum Turn<'a> {
    Now(Lead<'a>),
    Wait(oneshot::Receiver<Result<Option<Vec<u8>>>>),
}

/// The turn of a lone `GET`: when it ends (the answer came, or the caller gave up), the calls
/// that queued meanwhile are sent, or fail with it if its connection broke.
pub(crate) struct Lead<'a> {
    batcher: &'a Arc<Batcher>,
    conn: &'a RedisConnection,
    broken: Option<RedisError>,
}

impl Lead<'_> {
    /// Ends the turn after the `GET` failed because the connection broke (`broken`), or after
    /// it got its answer (`None`).
    pub(crate) fn end(mut self, broken: Option<RedisError>) {
        self.broken = broken;
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        match self.broken.take() {
            Some(broken) => self.batcher.fail_queue(&broken),
            None => self.batcher.hand_over(self.conn),
        }
    }
}

impl Batcher {
    pub(crate) fn new(max_batch: usize) -> Arc<Batcher> {
        Arc::new(Batcher {
            state: Mutex::new(State::default()),
            busy_hint: AtomicBool::new(false),
            max_batch: max_batch.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The turn of a `get` of `key`.
    pub(crate) fn turn<'a>(self: &'a Arc<Self>, conn: &'a RedisConnection, key: &str) -> Turn<'a> {
        let place = || {
            let (reply, answer) = oneshot::channel();
            let waiter = Waiter {
                key: key.to_owned(),
                reply,
            };
            (waiter, answer)
        };
        // Made outside the lock when a read is likely in flight; a lone caller makes none.
        let early = self.busy_hint.load(Ordering::Relaxed).then(place);
        let mut state = self.lock();
        if !state.busy {
            state.set_busy(true, &self.busy_hint);
            drop(state);
            return Turn::Now(Lead {
                batcher: self,
                conn,
                broken: None,
            });
        }
        let (waiter, answer) = early.unwrap_or_else(place);
        state.queue.push(waiter);
        Turn::Wait(answer)
    }

    /// The end of a read: the queue goes out as the next batch, or the backend is idle again.
    fn hand_over(self: &Arc<Self>, conn: &RedisConnection) {
        let Some(batch) = self.next_batch(None) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drive(self.clone(), conn.clone(), batch));
            }
            // No runtime to send them on (the caller's has shut down): nothing can answer, so
            // this batch and every call still queued fail, and the turn is released.
            Err(e) => {
                let gone = no_runtime(&e.to_string());
                for waiter in batch {
                    let answer = Reply::Failed(gone.clone()).answer(&waiter.key);
                    let _ = waiter.reply.send(answer);
                }
                self.fail_queue(&gone);
            }
        }
    }

    /// Fails every waiting call with `broken`, the failure of the connection they waited on
    /// (as calls in flight fail when it breaks, rather than go out much later on the next one),
    /// and releases the turn.
    fn fail_queue(&self, broken: &RedisError) {
        let waiting = {
            let mut state = self.lock();
            state.set_busy(false, &self.busy_hint);
            std::mem::take(&mut state.queue)
        };
        for waiter in waiting {
            let answer = Reply::Failed(broken.clone()).answer(&waiter.key);
            let _ = waiter.reply.send(answer);
        }
    }

    /// Takes up to `max_batch` waiting calls, keeping the turn; `None` (and the turn released)
    /// when none wait. `spent` is the emptied vector of the batch just sent, kept for reuse.
    fn next_batch(&self, spent: Option<Vec<Waiter>>) -> Option<Vec<Waiter>> {
        let mut state = self.lock();
        if let Some(spent) = spent {
            debug_assert!(spent.is_empty(), "a spent batch still holds waiters");
            state.spare = spent;
        }
        if state.queue.is_empty() {
            state.set_busy(false, &self.busy_hint);
            return None;
        }
        let rest = state.queue.len().saturating_sub(self.max_batch);
        let spare = std::mem::take(&mut state.spare);
        let mut batch = std::mem::replace(&mut state.queue, spare);
        // Those left over go first next time (the oldest stay in `batch`).
        state.queue.extend(batch.drain(batch.len() - rest..));
        Some(batch)
    }
}

/// Sends batches until no call waits, or the connection breaks under one.
async fn drive(batcher: Arc<Batcher>, conn: RedisConnection, mut batch: Vec<Waiter>) {
    // If this task ends early (its runtime shut down, a panic), the calls still queued fail and
    // the turn is released, instead of every later `get` queueing behind a task that is gone.
    let mut stranded = Stranded(Some(&batcher));
    loop {
        if let Some(broken) = send(&conn, &mut batch).await {
            batcher.fail_queue(&broken);
            stranded.0 = None;
            return;
        }
        match batcher.next_batch(Some(batch)) {
            Some(next) => batch = next,
            None => {
                stranded.0 = None;
                return;
            }
        }
    }
}

/// Releases the turn of a `drive` that did not finish (see there).
struct Stranded<'a>(Option<&'a Arc<Batcher>>);

impl Drop for Stranded<'_> {
    fn drop(&mut self) {
        if let Some(batcher) = self.0 {
            batcher.fail_queue(&no_runtime("the task sending the read batch ended early"));
        }
    }
}

fn no_runtime(why: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "the read batch could not be sent",
        why.to_owned(),
    ))
}

/// Sends one batch and answers each caller: one `MGET` of the distinct keys (see
/// [`get_each`]), leaving `batch` empty. Returns the connection's failure, if it
/// broke.
async fn send(conn: &RedisConnection, batch: &mut Vec<Waiter>) -> Option<RedisError> {
    #[cfg(feature = "metrics")]
    crate::metrics::batch_sent("redis", batch.len());
    // Each waiter's place among the distinct keys: the waiters sorted by key, so that equal keys
    // sit side by side (cheaper than hashing every key of a batch of at most a few hundred).
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_unstable_by(|&a, &b| batch[a].key.cmp(&batch[b].key));
    let mut keys: Vec<&str> = Vec::with_capacity(batch.len());
    let mut places = vec![0usize; batch.len()];
    for &at in &order {
        let key = batch[at].key.as_str();
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        places[at] = keys.len() - 1;
    }
    let replies = get_each(conn, &keys).await;
    let broken = replies.iter().find_map(|reply| match reply {
        Reply::Failed(e) if broke_connection(e) => Some(e.clone()),
        _ => None,
    });
    let mut replies: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
    // Each reply goes to the callers of its key; the last of them takes it, the others clone.
    let mut callers = vec![0usize; keys.len()];
    for &at in &places {
        callers[at] += 1;
    }
    for (waiter, at) in batch.drain(..).zip(places) {
        callers[at] -= 1;
        let reply = if callers[at] == 0 {
            replies[at].take()
        } else {
            replies[at].clone()
        };
        let answer = match reply {
            Some(reply) => reply.answer(&waiter.key),
            None => Err(Error::Backend {
                operation: "get",
                key: waiter.key.clone(),
                source: "the batch lost this key's reply".into(),
            }),
        };
        // A caller that gave up has dropped its receiver.
        let _ = waiter.reply.send(answer);
    }
    broken
}

/// What a `GET` of one key of a batch would have answered.
#[derive(Clone)]
pub(crate) enum Reply {
    Value(Option<Vec<u8>>),
    /// The key holds a Redis value of this other type.
    OtherType(String),
    /// The batch failed.
    Failed(RedisError),
}

impl Reply {
    /// The caller's answer for `key`.
    pub(crate) fn answer(self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Reply::Value(value) => Ok(value),
            Reply::OtherType(kind) => Err(Error::InvalidKey {
                key: key.to_owned(),
                reason: format!("it holds a Redis value of another type than a string (a {kind})"),
            }),
            Reply::Failed(e) => Err(backend_error("get", key, e)),
        }
    }
}

/// The value of each key, as a `GET` of it would answer: one `MGET` (split per hash slot by
/// the `redis` crate on a Cluster), then, only for the keys it found nil, a `TYPE` each (sent
/// together), since `MGET` says nil for a key of another type where `GET` says `WRONGTYPE`.
/// When the `MGET` itself fails, every key gets its failure. Sent once more if the
/// connection broke (reads may be).
pub(super) async fn get_each(conn: &RedisConnection, keys: &[&str]) -> Vec<Reply> {
    let mut conn = conn.clone();
    let mut mget = redis::cmd("MGET");
    mget.arg(keys);
    let sent = match mget.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await {
        Err(e) if worth_one_retry(&e) => mget.query_async(&mut conn).await,
        sent => sent,
    };
    let values = match sent {
        Ok(values) if values.len() == keys.len() => values,
        Ok(values) => {
            let e = RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "MGET answered another number of values",
                format!("{} values for {} keys", values.len(), keys.len()),
            ));
            return vec![Reply::Failed(e); keys.len()];
        }
        Err(e) => return vec![Reply::Failed(e); keys.len()],
    };
    // Nil: no such key, or a key of another type.
    let nil: Vec<usize> = (0..keys.len()).filter(|&at| values[at].is_none()).collect();
    let types = futures_util::future::join_all(nil.iter().map(|&at| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("TYPE")
                .arg(keys[at])
                .query_async::<String>(&mut conn)
                .await
        }
    }))
    .await;
    let mut replies: Vec<Reply> = values.into_iter().map(Reply::Value).collect();
    for (at, kind) in nil.into_iter().zip(types) {
        replies[at] = match kind {
            // Written since the MGET: nil is what a GET at that moment said.
            Ok(kind) if kind == "none" || kind == "string" => Reply::Value(None),
            Ok(kind) => Reply::OtherType(kind),
            Err(e) => Reply::Failed(e),
        };
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_keep_the_oldest_first() {
        let batcher = Batcher::new(3);
        let mut receivers = Vec::new();
        let mut queue = |keys: std::ops::Range<usize>| {
            let mut state = batcher.lock();
            for n in keys {
                let (reply, answer) = oneshot::channel();
                state.queue.push(Waiter {
                    key: format!("k{n}"),
                    reply,
                });
                receivers.push(answer);
            }
        };
        batcher.lock().set_busy(true, &batcher.busy_hint);
        queue(0..7);
        let hint = || batcher.busy_hint.load(Ordering::Relaxed);
        // What `send` does to a batch: answers (here: drops) every waiter, keeping the vector.
        let spend = |mut batch: Vec<Waiter>| {
            let keys: Vec<String> = batch.drain(..).map(|w| w.key).collect();
            (keys, batch)
        };
        let (keys, spent) = spend(batcher.next_batch(None).unwrap());
        assert_eq!(keys, ["k0", "k1", "k2"]);
        // A call that queues now goes after the four left over.
        queue(7..8);
        let reused = spent.as_ptr();
        let (keys, spent) = spend(batcher.next_batch(Some(spent)).unwrap());
        assert_eq!(keys, ["k3", "k4", "k5"]);
        assert_eq!(
            batcher.lock().queue.as_ptr(),
            reused,
            "the spent batch's vector holds the next queue"
        );
        let (keys, spent) = spend(batcher.next_batch(Some(spent)).unwrap());
        assert_eq!(keys, ["k6", "k7"]);
        assert!(
            batcher.lock().busy && hint(),
            "the turn is kept while batches go out"
        );
        assert!(batcher.next_batch(Some(spent)).is_none());
        assert!(
            !batcher.lock().busy && !hint(),
            "and released when none wait"
        );
    }
}
