//! The Redis backend's journals: one stream per journaled type, `{namespace}:{prefix}#journal`,
//! appended (`XADD ... MAXLEN`) in the same `MULTI` or script as the write it records, so an
//! entry exists if and only if the write happened. An entry's fields are `op` (`set`,
//! `removed`, `expired`), `key` (the full key) and, for a `set`, `value` (the bytes stored):
//! plain fields another client can read with `XRANGE`. Its cursor is the stream entry id.
//!
//! The stream sits beside the type's keys, not under `{prefix}:`, so listing ids skips it, and
//! an ACL key pattern for the namespace covers it.
//!
//! **Numbering.** Entries are appended as `XADD ... 0-*` (Redis 7.0+): ids `0-1`, `0-2`, ...,
//! numbered without gaps, so that what lies before the first entry kept is exactly what the
//! trimming took (`MAXLEN` trimming records nothing a reader could ask).
//!
//! **Reading.** A reader has a connection of its own: one `MULTI` reads the next entries after
//! its cursor together with the first entry kept (two `XRANGE`s), so it knows exactly when it
//! fell behind the trimming; when there is nothing new it waits in `XREAD BLOCK`, and keeps
//! what that brings when its first entry follows the cursor (nothing was trimmed in between).
//! There is no seam between history and live: both are reads after the last cursor
//! delivered.
//!
//! **Worker groups** are stream consumer groups: `XGROUP CREATE ... $` by the first consumer,
//! `XREADGROUP` for new entries, `XREADGROUP ... 0` for what a returning consumer was given,
//! `XAUTOCLAIM` for entries left unacknowledged past `claim_after`, `XACK`.
//!
//! **Expiries** come from the server's keyspace events (when on: see `enable_expiry_events`):
//! each process that writes or reads a journaled type runs a listener, and the
//! `journal_expired.lua` script appends an `expired` entry once however many listeners heard
//! it. An expiry is missing from the journal when no listener was connected at the moment of
//! expiry (no process of the type running, or every listener reconnecting); each reconnection
//! is a `WARN` event with the `tracing` feature, and counted in
//! [`RedisBackend::journal_expiry_gaps`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{Pipeline, Value};
use tokio::task::JoinHandle;

use super::conn::{RedisConnection, backend_error};
use super::feed::{RETRY_MAX, RETRY_MIN, RedisFeed};
use super::scripts::JOURNAL_EXPIRED;
use super::{RedisBackend, millis};
use crate::backend::{
    Ack, BoxFuture, BoxStream, ConsumeOptions, Cursor, Event, JournalRecord, Journals, Position,
};
use crate::{Error, Result};

/// How many entries a reader takes at a time.
const READ_BATCH: usize = 512;

/// How long a reader's `XREAD BLOCK` waits before it asks again (well within the connection's
/// response timeout).
const BLOCK: Duration = Duration::from_millis(1_000);

/// How many failures in a row a reader rides out silently (the connection reconnects) before it
/// reports one as an item.
const QUIET_FAILURES: u32 = 3;

/// The stream of `channel`'s journal.
pub(super) fn stream_key(channel: &str) -> String {
    format!("{channel}#journal")
}

/// The feed argument of a journaled write: the channel, the stream, how many entries it keeps,
/// one per line (what `feed_of` in `may_publish.lua` reads, and `split_feed` below).
pub(super) fn feed_spec(channel: &str, keep: u64) -> String {
    format!("{channel}\n{}\n{keep}", stream_key(channel))
}

/// The journal part of a feed argument.
pub(super) struct JournalLine<'a> {
    stream: &'a str,
    keep: u64,
}

/// A feed argument's wire channel, and its journal if it has one.
pub(super) fn split_feed(wire: &str) -> (&str, Option<JournalLine<'_>>) {
    let mut lines = wire.split('\n');
    let channel = lines.next().unwrap_or(wire);
    match (
        lines.next(),
        lines.next().and_then(|keep| keep.parse().ok()),
    ) {
        (Some(stream), Some(keep)) => (channel, Some(JournalLine { stream, keep })),
        _ => (channel, None),
    }
}

impl JournalLine<'_> {
    /// Adds to `pipe` the append of a change of `key`, as `announce` in the scripts does it.
    pub(super) fn append(&self, pipe: &mut Pipeline, op: &str, key: &str, value: Option<&[u8]>) {
        let xadd = pipe.cmd("XADD").arg(self.stream).arg("MAXLEN");
        let xadd = if self.keep >= 100 {
            xadd.arg("~")
        } else {
            xadd.arg("=")
        };
        let xadd = xadd
            .arg(self.keep)
            .arg("0-*")
            .arg("op")
            .arg(op)
            .arg("key")
            .arg(key);
        if let Some(value) = value {
            xadd.arg("value").arg(value);
        }
        xadd.ignore();
        pipe.cmd("DEL").arg(marker_key(self.stream, key)).ignore();
    }
}

/// The marker of `key`'s last journaled expiry, which its next write deletes.
fn marker_key(stream: &str, key: &str) -> String {
    format!("{stream}:gone:{key}")
}

/// The journaled channels this backend (and its clones) wrote or read, and the listener that
/// journals their expiries.
#[derive(Default)]
pub(super) struct Journaling {
    channels: Mutex<HashMap<String, u64>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// How many times the listener was not connected for a while (its first connection, and
    /// each reconnection): expiries then may be missing from the journals.
    gaps: AtomicU64,
}

impl RedisBackend {
    /// The feed argument of a write to `notify`'s channel with `history`: the journal's lines
    /// added when journaled, after noting the channel for the expiry listener.
    pub(super) fn journaled(&self, notify: Option<&str>, history: Option<u64>) -> Option<String> {
        let (channel, keep) = (notify?, history?);
        self.note_journal(channel, Some(keep));
        Some(feed_spec(channel, keep))
    }

    /// Notes that `channel` keeps a journal (of `keep` entries, when a write says), and makes
    /// sure the expiry listener runs.
    fn note_journal(&self, channel: &str, keep: Option<u64>) {
        let journaling = &self.journaling;
        {
            let mut channels = journaling
                .channels
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match (channels.get_mut(channel), keep) {
                (Some(known), Some(keep)) => *known = keep,
                (Some(_), None) => {}
                (None, keep) => {
                    channels.insert(channel.to_owned(), keep.unwrap_or(0));
                }
            }
        }
        let mut listener = journaling
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let task = listen_for_expiries(
                Arc::downgrade(journaling),
                self.feed.clone(),
                self.conn.clone(),
            );
            *listener = Some(runtime.spawn(task));
        }
    }

    /// How many times this backend's journal expiry listener was not connected (its start, and
    /// each reconnection): the expiries of journaled types during such a gap, if any, are not
    /// in their journals. 0 before any journaled type is written or read.
    pub fn journal_expiry_gaps(&self) -> u64 {
        self.journaling.gaps.load(Ordering::Relaxed)
    }
}

impl Drop for Journaling {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Listens to the server's expired-key events while the backend lives (its `journaling`
/// alive: the task holds it weakly, and its `Drop` stops the task), and journals those of keys
/// under a journaled channel, with `conn`.
async fn listen_for_expiries(
    journaling: Weak<Journaling>, feed: Arc<RedisFeed>, conn: RedisConnection,
) {
    let mut retry = RETRY_MIN;
    loop {
        match journaling.upgrade() {
            Some(journaling) => journaling.gaps.fetch_add(1, Ordering::Relaxed),
            None => return,
        };
        let mut pubsub = match feed.pubsub().await {
            Ok(pubsub) => pubsub,
            Err(_reason) => {
                crate::backend::kit::warn_event!(
                    reason = %_reason,
                    "the journal's expiry listener cannot connect; expiries meanwhile are not journaled"
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        let channel = feed.expired_channel();
        if pubsub.subscribe(&*channel).await.is_err() {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        }
        retry = RETRY_MIN;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) else {
                continue;
            };
            let Some(journaling) = journaling.upgrade() else {
                return;
            };
            let journal = {
                let channels = journaling
                    .channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                channels.iter().find_map(|(channel, keep)| {
                    let under = key.strip_prefix(channel.as_str())?.starts_with(':');
                    under.then(|| (stream_key(channel), *keep))
                })
            };
            if let Some((stream, keep)) = journal {
                let mut conn = conn.clone();
                let key = key.to_owned();
                // Not awaited here: the listener keeps reading while the script runs.
                tokio::spawn(async move {
                    let mut invocation = JOURNAL_EXPIRED.key(&key);
                    invocation
                        .key(&stream)
                        .key(marker_key(&stream, &key))
                        .arg(keep);
                    let result: redis::RedisResult<i64> = invocation.invoke_async(&mut conn).await;
                    if let Err(_e) = result {
                        crate::backend::kit::warn_event!(
                            key = %key, error = %_e,
                            "an expiry could not be journaled"
                        );
                    }
                });
            }
        }
        crate::backend::kit::warn_event!(
            "the journal's expiry listener lost its connection; expiries until it is back are \
             not journaled"
        );
    }
}

/// A stream entry id as a cursor.
fn cursor_of(id: &str) -> Option<Cursor> {
    id.parse().ok()
}

/// A reply's bulk string as text.
fn text(value: &Value) -> Option<String> {
    str_of(value).map(str::to_owned)
}

/// A reply's bulk string as text, borrowed.
fn str_of(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// One stream entry, `[id, [field, value, ...]]`: its cursor and change, or `None` for an
/// entry deleted meanwhile (a pending entry whose fields are nil). An entry that is not a
/// change this backend wrote is an error naming the stream.
fn entry(stream: &str, value: &Value) -> Result<(Cursor, Option<Event>)> {
    let malformed = |why: &str| Error::Backend {
        operation: "journal",
        key: stream.to_owned(),
        source: format!("a journal entry {why}").into(),
    };
    let Value::Array(parts) = value else {
        return Err(malformed("is not an array"));
    };
    let (Some(id), fields) = (parts.first().and_then(str_of), parts.get(1)) else {
        return Err(malformed("has no id"));
    };
    let cursor = cursor_of(id).ok_or_else(|| malformed("has an id that is not a cursor"))?;
    let fields = match fields {
        Some(Value::Array(fields)) => fields,
        Some(Value::Nil) | None => return Ok((cursor, None)),
        Some(_) => return Err(malformed("has fields that are not an array")),
    };
    let (mut op, mut key, mut data) = (None, None, None);
    for pair in fields.chunks(2) {
        let [Value::BulkString(name), value] = pair else {
            continue;
        };
        match name.as_slice() {
            b"op" => op = str_of(value),
            b"key" => key = str_of(value),
            b"value" => {
                if let Value::BulkString(bytes) = value {
                    data = Some(bytes.as_slice());
                }
            }
            _ => {}
        }
    }
    let key: Arc<str> = Arc::from(key.ok_or_else(|| malformed(&format!("{cursor} has no key")))?);
    let event = match (op, data) {
        (Some("set"), Some(value)) => Event::Set {
            key,
            value: Arc::from(value),
        },
        (Some("removed"), _) => Event::Removed { key },
        (Some("expired"), _) => Event::Expired { key },
        _ => return Err(malformed(&format!("{cursor} is not a change"))),
    };
    Ok((cursor, Some(event)))
}

/// What one read says: the last entry trimmed, and the entries read.
struct Read {
    deleted: Cursor,
    entries: Vec<Value>,
}

/// Up to [`READ_BATCH`] entries after `after`, and what was trimmed.
async fn read_after(conn: &mut RedisConnection, stream: &str, after: Cursor) -> Result<Read> {
    // One `MULTI`, so the two answers describe one moment: the first entry kept, and what
    // follows `after`. Plain commands, not a script: the server sends the entries as they are,
    // where a script converts each to Lua and back (measured: 0.5 against 2.9 µs of server CPU
    // per entry).
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1);
    pipe.cmd("XRANGE")
        .arg(stream)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(READ_BATCH);
    let mut replies: Vec<Value> = pipe
        .query_async(conn)
        .await
        .map_err(|e| backend_error("journal", stream, e))?;
    let entries = match replies.pop() {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    // Entries are numbered `0-1`, `0-2`, ... without gaps: everything before the first kept
    // was trimmed.
    let deleted = match only_id(replies.first()) {
        Some(first) => before(first),
        // No entry kept: (nearly always) no stream yet, else one emptied by another client.
        None => empty_stream(conn, stream).await?.0,
    };
    Ok(Read { deleted, entries })
}

/// The cursor of the last entry appended to `stream` (`Cursor::ZERO` before the first).
async fn last_appended(conn: &mut RedisConnection, stream: &str) -> Result<Cursor> {
    let mut last = redis::cmd("XREVRANGE");
    last.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
    let reply: Value = last
        .query_async(conn)
        .await
        .map_err(|e| backend_error("journal", stream, e))?;
    match only_id(Some(&reply)) {
        Some(last) => Ok(last),
        None => Ok(empty_stream(conn, stream).await?.1),
    }
}

/// The id of the one entry an `XRANGE ... COUNT 1` (or `XREVRANGE`) answered, if any.
fn only_id(reply: Option<&Value>) -> Option<Cursor> {
    match reply {
        Some(Value::Array(entries)) => first_id(entries),
        _ => None,
    }
}

/// The id of the first of `entries`, if it has one.
fn first_id(entries: &[Value]) -> Option<Cursor> {
    match entries.first() {
        Some(Value::Array(parts)) => parts.first().and_then(str_of).and_then(cursor_of),
        _ => None,
    }
}

/// The cursor just before `first`.
fn before(first: Cursor) -> Cursor {
    match first.low() {
        0 => first,
        low => Cursor::new(first.high(), low - 1),
    }
}

/// A read of a stream found without entries: none appended yet (no stream), or emptied by
/// another client (`XTRIM ... MAXLEN 0`, `XDEL` of every entry; the library's own trimming
/// keeps at least one), whose numbering goes on from its last id, which only `XINFO STREAM`
/// tells. Its answer, one moment later than the read's, may already show new entries: they
/// are read next, after what it says was trimmed. The last entry trimmed, and the last
/// appended.
async fn empty_stream(conn: &mut RedisConnection, stream: &str) -> Result<(Cursor, Cursor)> {
    let mut info = redis::cmd("XINFO");
    info.arg("STREAM").arg(stream);
    let fields = match info.query_async::<Value>(conn).await {
        Ok(Value::Array(flat)) => flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        Ok(Value::Map(pairs)) => pairs,
        Ok(_) => Vec::new(),
        Err(e) if e.to_string().to_lowercase().contains("no such key") => Vec::new(),
        Err(e) => return Err(backend_error("journal", stream, e)),
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| text(key).as_deref() == Some(name))
            .map(|(_, value)| value)
    };
    let last = field("last-generated-id")
        .and_then(text)
        .and_then(|t| cursor_of(&t))
        .unwrap_or(Cursor::ZERO);
    let first = match field("first-entry") {
        Some(Value::Array(parts)) => parts.first().and_then(str_of).and_then(cursor_of),
        _ => None,
    };
    Ok((first.map_or(last, before), last))
}

/// Counts a failed step of a reader or a worker and waits before the next (100 ms, doubling up
/// to the feed's ceiling): the error, to yield as an item, once `QUIET_FAILURES` in a row were
/// ridden out in silence.
async fn ride_out(failures: &mut u32, e: Error) -> Option<Error> {
    *failures += 1;
    let pause = RETRY_MIN * 2u32.saturating_pow((*failures).min(4));
    tokio::time::sleep(pause.min(RETRY_MAX)).await;
    (*failures > QUIET_FAILURES).then_some(e)
}

/// A reader of one journal, on a connection of its own.
struct Reader {
    conn: RedisConnection,
    stream: String,
    /// The last cursor delivered (or asked to read after).
    after: Cursor,
    ready: VecDeque<Result<JournalRecord>>,
    failures: u32,
    /// Whether there may be entries to read now (else wait for one first).
    fresh: bool,
}

impl Reader {
    /// Queues what `read` brought: the trimming it reveals, then its entries.
    fn take(&mut self, read: Read) -> Result<()> {
        if read.deleted > self.after {
            self.ready.push_back(Err(Error::Trimmed {
                cursor: self.after,
                resume: read.deleted,
            }));
            self.after = read.deleted;
        }
        self.fresh = read.entries.len() >= READ_BATCH;
        for value in &read.entries {
            let (cursor, event) = entry(&self.stream, value)?;
            if let Some(event) = event {
                self.ready.push_back(Ok(JournalRecord::new(cursor, event)));
            }
            self.after = cursor;
        }
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<JournalRecord>, Reader)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some((item, self));
            }
            match self.step().await {
                Ok(()) => self.failures = 0,
                Err(e) => {
                    if let Some(e) = ride_out(&mut self.failures, e).await {
                        return Some((Err(e), self));
                    }
                }
            }
        }
    }

    /// Reads what follows the cursor, waiting in `XREAD BLOCK` for it when there was nothing.
    async fn step(&mut self) -> Result<()> {
        if !self.fresh {
            let mut wait = redis::cmd("XREAD");
            wait.arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(millis(BLOCK))
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(self.after.to_string());
            let woken: Value = wait
                .query_async(&mut self.conn)
                .await
                .map_err(|e| backend_error("journal", &self.stream, e))?;
            let entries = stream_entries(woken);
            if entries.is_empty() {
                return Ok(());
            }
            // The entry right after the cursor: nothing was trimmed in between (the numbering
            // has no gaps), so what woke the reader is what it reads. Else the read below says
            // what was trimmed.
            if first_id(&entries).map(before) == Some(self.after) {
                return self.take(Read {
                    deleted: self.after,
                    entries,
                });
            }
        }
        let read = read_after(&mut self.conn, &self.stream, self.after).await?;
        self.take(read)
    }
}

/// The entries of the one stream an `XREAD` or `XREADGROUP` answered: `[[stream, [entry,
/// ...]]]` (RESP2), `{stream: [entry, ...]}` (RESP3), or none (nil, after a block that timed
/// out).
fn stream_entries(reply: Value) -> Vec<Value> {
    let per_stream: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut parts) if parts.len() == 2 => parts.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    per_stream
        .into_iter()
        .find_map(|entries| match entries {
            Value::Array(entries) => Some(entries),
            _ => None,
        })
        .unwrap_or_default()
}

impl Journals for RedisBackend {
    fn read<'a>(
        &'a self, channel: &'a str, from: Position,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>> {
        Box::pin(async move {
            self.note_journal(channel, None);
            let stream = stream_key(channel);
            let mut conn = self.durable.connect().await?;
            let (after, first) = match from {
                Position::Now => (last_appended(&mut conn, &stream).await?, None),
                Position::Start => {
                    let first = read_after(&mut conn, &stream, Cursor::ZERO).await?;
                    (first.deleted, Some(first))
                }
                Position::After(cursor) => {
                    let first = read_after(&mut conn, &stream, cursor).await?;
                    if first.deleted > cursor {
                        return Err(Error::Trimmed {
                            cursor,
                            resume: first.deleted,
                        });
                    }
                    (cursor, Some(first))
                }
            };
            let mut reader = Reader {
                conn,
                stream,
                after,
                ready: VecDeque::new(),
                failures: 0,
                fresh: false,
            };
            if let Some(first) = first {
                reader.take(first)?;
            }
            let stream: BoxStream<'static, Result<JournalRecord>> =
                Box::pin(futures_util::stream::unfold(reader, Reader::next));
            Ok(stream)
        })
    }

    fn consume<'a>(
        &'a self, channel: &'a str, group: &'a str, consumer: &'a str, options: ConsumeOptions,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>> {
        Box::pin(async move {
            self.note_journal(channel, None);
            let stream = stream_key(channel);
            let mut conn = self.durable.connect().await?;
            create_group(&mut conn, &stream, group, "$").await?;
            let worker = Worker {
                conn,
                acks: self.conn.clone(),
                stream,
                group: group.to_owned(),
                consumer: consumer.to_owned(),
                options,
                own: Some("0".to_owned()),
                claim_from: "0-0".to_owned(),
                claimed_at: None,
                ready: VecDeque::new(),
                failures: 0,
            };
            let stream: BoxStream<'static, Result<JournalRecord>> =
                Box::pin(futures_util::stream::unfold(worker, Worker::next));
            Ok(stream)
        })
    }
}

/// `XGROUP CREATE stream group from MKSTREAM`; a group that exists already is left as it is.
async fn create_group(
    conn: &mut RedisConnection, stream: &str, group: &str, from: &str,
) -> Result<()> {
    let mut create = redis::cmd("XGROUP");
    create
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(from)
        .arg("MKSTREAM");
    match create.query_async::<()>(conn).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(backend_error("consume", stream, e)),
    }
}

/// A worker group's consumer, on a connection of its own.
struct Worker {
    conn: RedisConnection,
    /// The backend's connection, for the acknowledgements.
    acks: RedisConnection,
    stream: String,
    group: String,
    consumer: String,
    options: ConsumeOptions,
    /// Where the entries this consumer was given before (under its name) continue, until they
    /// are all delivered again.
    own: Option<String>,
    /// Where the next `XAUTOCLAIM` starts.
    claim_from: String,
    claimed_at: Option<tokio::time::Instant>,
    ready: VecDeque<JournalRecord>,
    failures: u32,
}

impl Worker {
    async fn next(mut self) -> Option<(Result<JournalRecord>, Worker)> {
        loop {
            if let Some(record) = self.ready.pop_front() {
                return Some((Ok(record), self));
            }
            match self.step().await {
                Ok(()) => self.failures = 0,
                Err(e) => {
                    if let Some(e) = ride_out(&mut self.failures, e).await {
                        return Some((Err(e), self));
                    }
                }
            }
        }
    }

    fn claim_every(&self) -> Duration {
        (self.options.claim_after / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    async fn step(&mut self) -> Result<()> {
        let batch = self.options.batch;
        // What this consumer was given before and did not acknowledge.
        if let Some(from) = self.own.take() {
            let entries = self.read_group(&from, None).await?;
            if entries.len() >= batch
                && let Some(Ok((last, _))) = entries.last().map(|v| entry(&self.stream, v))
            {
                self.own = Some(last.to_string());
            }
            return self.deliver(entries, None).await;
        }
        // What others left unacknowledged for too long.
        let due = self
            .claimed_at
            .is_none_or(|at| at.elapsed() >= self.claim_every());
        if due {
            self.claimed_at = Some(tokio::time::Instant::now());
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(millis(self.options.claim_after))
                .arg(&self.claim_from)
                .arg("COUNT")
                .arg(batch);
            let reply: Value = claim
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.error(e))?;
            if let Value::Array(parts) = reply {
                let mut parts = parts.into_iter();
                if let Some(next) = parts.next().as_ref().and_then(text) {
                    self.claim_from = next;
                }
                if let Some(Value::Array(entries)) = parts.next()
                    && !entries.is_empty()
                {
                    return self.deliver(entries, None).await;
                }
            }
        }
        // New entries, waiting a while for them.
        let block = self.claim_every();
        let entries = self.read_group(">", Some(block)).await?;
        self.deliver(entries, Some(1)).await
    }

    fn error(&self, e: redis::RedisError) -> Error {
        backend_error("consume", &self.stream, e)
    }

    /// `XREADGROUP` from `from` (`>`: new entries), blocking up to `block`.
    async fn read_group(&mut self, from: &str, block: Option<Duration>) -> Result<Vec<Value>> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.options.batch);
        if let Some(block) = block {
            read.arg("BLOCK").arg(millis(block));
        }
        read.arg("STREAMS").arg(&self.stream).arg(from);
        let reply: Value = match read.query_async(&mut self.conn).await {
            Ok(reply) => reply,
            // The group is gone (the stream was deleted, or a server came back without it):
            // made again from the start of what is kept, so nothing kept goes unseen.
            Err(e) if e.code() == Some("NOGROUP") => {
                create_group(&mut self.conn, &self.stream, &self.group, "0").await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.error(e)),
        };
        Ok(stream_entries(reply))
    }

    /// Queues `entries` as deliveries: `deliveries` when known (new entries), else as the
    /// group's pending list counts them. Entries deleted meanwhile are acknowledged and
    /// skipped.
    async fn deliver(&mut self, entries: Vec<Value>, deliveries: Option<u64>) -> Result<()> {
        let mut parsed = Vec::with_capacity(entries.len());
        for value in &entries {
            match entry(&self.stream, value)? {
                (cursor, Some(event)) => parsed.push((cursor, event)),
                (cursor, None) => {
                    let mut ack = redis::cmd("XACK");
                    ack.arg(&self.stream)
                        .arg(&self.group)
                        .arg(cursor.to_string());
                    let _: Value = ack
                        .query_async(&mut self.conn)
                        .await
                        .map_err(|e| self.error(e))?;
                }
            }
        }
        let counts = match (deliveries, parsed.first(), parsed.last()) {
            (None, Some((first, _)), Some((last, _))) => {
                self.counts(*first, *last, parsed.len()).await?
            }
            _ => HashMap::new(),
        };
        for (cursor, event) in parsed {
            let count = deliveries
                .or_else(|| counts.get(&cursor).copied())
                .unwrap_or(1);
            let ack = self.acker(cursor);
            self.ready
                .push_back(JournalRecord::new(cursor, event).delivered(count, ack));
        }
        Ok(())
    }

    /// How many times each entry from `first` to `last` was delivered, from `XPENDING`.
    async fn counts(
        &mut self, first: Cursor, last: Cursor, n: usize,
    ) -> Result<HashMap<Cursor, u64>> {
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(&self.stream)
            .arg(&self.group)
            .arg(first.to_string())
            .arg(last.to_string())
            .arg(n)
            .arg(&self.consumer);
        let reply: Vec<(String, String, u64, u64)> = pending
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(reply
            .into_iter()
            .filter_map(|(id, _, _, count)| Some((cursor_of(&id)?, count)))
            .collect())
    }

    fn acker(&self, cursor: Cursor) -> Ack {
        let mut conn = self.acks.clone();
        let (stream, group) = (self.stream.clone(), self.group.clone());
        Box::new(move || -> BoxFuture<'static, Result<()>> {
            Box::pin(async move {
                let mut ack = redis::cmd("XACK");
                ack.arg(&stream).arg(&group).arg(cursor.to_string());
                // Safe to send twice: a second `XACK` of an entry acknowledged is a no-op.
                let _: u64 = match ack.query_async(&mut conn).await {
                    Ok(n) => n,
                    Err(e) if super::conn::worth_one_retry(&e) => ack
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| backend_error("ack", &stream, e))?,
                    Err(e) => return Err(backend_error("ack", &stream, e)),
                };
                Ok(())
            })
        })
    }
}
