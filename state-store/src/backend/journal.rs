//! Journals: a capability of its own ([`Journals`], reached through
//! [`Extensions::journals`](super::Extensions::journals)), and the `history` a write carries in
//! its options ([`PutOptions::history`](super::PutOptions::history) and its siblings).
//!
//! A state type declared with `#[state(notify, history = N)]` keeps, besides its live change
//! feed, a **journal**: every change of the type, in the order the engine made them, each under
//! a [`Cursor`] that only grows, kept to about the last `N` (at least `N`, at most `2N`). A
//! write of such a type carries `history: Some(N)` and its [`Notify`](super::Notify) channel; an
//! engine that journals appends the change in the same atomic step as the write, so an entry
//! exists if and only if the write happened. Readers read from a [`Position`] and resume after
//! any cursor still kept; worker groups share the entries, each delivered to one consumer of the
//! group until it is acknowledged.
//!
//! The [`Store`](crate::Store) hands `history` only to an engine whose
//! [`extensions`](super::Backend::extensions) have `journals`, so that an engine without a
//! journal never silently drops it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{BoxFuture, BoxStream, Event};
use crate::Result;

/// A place in a journal: the engine's id of one entry, which grows with every entry appended.
///
/// Two numbers, compared in order; the string form is `{high}-{low}` (a Redis stream entry id
/// is exactly that: the journal's entries are `0-1`, `0-2`, ...), which [`FromStr`] reads back, so a
/// cursor can be stored (in a state type of its own, for example) and resumed from after a
/// restart: [`Position::After`].
///
/// ```
/// use state_store::Cursor;
///
/// let cursor: Cursor = "1733390000000-7".parse().unwrap();
/// assert_eq!(cursor.to_string(), "1733390000000-7");
/// assert!(cursor < "1733390000001-0".parse().unwrap());
/// assert!("17-x".parse::<Cursor>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    high: u64,
    low: u64,
}

impl Cursor {
    /// The cursor before every entry (`0-0`).
    pub const ZERO: Cursor = Cursor { high: 0, low: 0 };

    /// The cursor `{high}-{low}`.
    pub const fn new(high: u64, low: u64) -> Cursor {
        Cursor { high, low }
    }

    /// Its first number (on Redis: 0).
    pub const fn high(self) -> u64 {
        self.high
    }

    /// Its second number (on Redis and in memory: the entry's number, counted from 1).
    pub const fn low(self) -> u64 {
        self.low
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.high, self.low)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

/// Why a string is not a [`Cursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCursorError {
    input: String,
}

impl fmt::Display for ParseCursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a journal cursor: expected two whole numbers as `{{high}}-{{low}}`, \
             such as `1733390000000-0`",
            self.input.escape_debug()
        )
    }
}

impl std::error::Error for ParseCursorError {}

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(s: &str) -> std::result::Result<Cursor, ParseCursorError> {
        let error = || ParseCursorError {
            input: s.chars().take(64).collect(),
        };
        let (high, low) = s.split_once('-').ok_or_else(error)?;
        let number = |part: &str| {
            // `u64::from_str` takes a leading `+`; a cursor never has one.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            part.parse::<u64>().map_err(|_| error())
        };
        Ok(Cursor::new(number(high)?, number(low)?))
    }
}

/// Where a journal reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// At the oldest entry the journal still keeps.
    Start,
    /// With the changes made after the call returned: none of those before.
    Now,
    /// Exactly the changes after this cursor. A cursor older than the oldest kept entry makes
    /// the call fail with [`Error::Trimmed`](crate::Error::Trimmed).
    After(Cursor),
}

/// One entry of a journal as an engine delivers it: its cursor, the change, and, to a worker
/// group's consumer, how often it was delivered and how to acknowledge it.
#[non_exhaustive]
pub struct JournalRecord {
    /// Where it is in the journal.
    pub cursor: Cursor,
    /// The change (as on the live feed: the full key, and the bytes of a `Set`).
    pub event: Event,
    /// How many times it was delivered to the group, this delivery included (1 for a plain
    /// reader).
    pub deliveries: u64,
    /// Acknowledges it for the group: `None` for a plain reader.
    pub ack: Option<Ack>,
}

/// Acknowledges one entry for a worker group: done, never delivered again. Succeeds too when
/// another consumer acknowledged it first.
pub type Ack = Box<dyn FnOnce() -> BoxFuture<'static, Result<()>> + Send + Sync>;

impl JournalRecord {
    /// An entry for a plain reader.
    pub fn new(cursor: Cursor, event: Event) -> JournalRecord {
        JournalRecord {
            cursor,
            event,
            deliveries: 1,
            ack: None,
        }
    }

    /// An entry delivered to a worker group's consumer for the `deliveries`-th time.
    pub fn delivered(mut self, deliveries: u64, ack: Ack) -> JournalRecord {
        self.deliveries = deliveries.max(1);
        self.ack = Some(ack);
        self
    }
}

impl fmt::Debug for JournalRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalRecord")
            .field("cursor", &self.cursor)
            .field("event", &self.event)
            .field("deliveries", &self.deliveries)
            .field("ack", &self.ack.is_some())
            .finish()
    }
}

/// How a worker group's consumer reads: [`Store::consume_with`](crate::Store::consume_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConsumeOptions {
    /// An entry delivered to a consumer and not acknowledged within this time is delivered
    /// again, to a live consumer of the group (the one that claims it first). 30 seconds by
    /// default.
    pub claim_after: Duration,
    /// How many entries a consumer takes from the journal at a time (at least 1; 256 by
    /// default). Entries taken are pending for the group until acknowledged.
    pub batch: usize,
}

impl ConsumeOptions {
    /// The defaults: entries re-delivered after 30 seconds unacknowledged, 256 taken at a time.
    pub fn new() -> ConsumeOptions {
        ConsumeOptions {
            claim_after: Duration::from_secs(30),
            batch: 256,
        }
    }

    /// Re-delivers an entry left unacknowledged for `after` (at least one millisecond).
    pub fn claim_after(mut self, after: Duration) -> ConsumeOptions {
        self.claim_after = after.max(Duration::from_millis(1));
        self
    }

    /// Takes at most `batch` entries at a time (at least 1).
    pub fn batch(mut self, batch: usize) -> ConsumeOptions {
        self.batch = batch.max(1);
        self
    }
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions::new()
    }
}

/// A journal of changes per feed channel, appended by the writes that carry `history`.
///
/// Both methods return a stream that owns what it needs. A reader's stream yields
/// [`Error::Trimmed`](crate::Error::Trimmed) once when the journal was trimmed past the last
/// entry it delivered, then continues with the oldest entry kept; it ends only when the engine
/// is gone, and yields the engine's error while it cannot reach it (then resumes where it
/// was).
pub trait Journals: Send + Sync {
    /// The journal of `channel` from `from`: first what it holds, then each entry as it is
    /// appended, none missed or repeated in between. With [`Position::After`] a cursor older
    /// than the oldest kept entry fails the call with
    /// [`Error::Trimmed`](crate::Error::Trimmed).
    fn read<'a>(
        &'a self, channel: &'a str, from: Position,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>>;

    /// The entries of `channel`'s journal for worker group `group`, as its consumer `consumer`
    /// gets them: each entry goes to one consumer of the group, and again (to whichever live
    /// consumer claims it) when not acknowledged within `options.claim_after`. The group is
    /// created by the first call that names it and starts with the entries appended after that
    /// call returned. A consumer that comes back under the same name first gets what it was
    /// delivered and did not acknowledge.
    fn consume<'a>(
        &'a self, channel: &'a str, group: &'a str, consumer: &'a str, options: ConsumeOptions,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<JournalRecord>>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_print() {
        for cursor in [
            Cursor::ZERO,
            Cursor::new(1, 0),
            Cursor::new(u64::MAX, u64::MAX),
        ] {
            assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        }
        for bad in [
            "", "-", "1", "1-", "-1", "+1-0", "1-+0", "1-2-3", "a-b", " 1-2",
        ] {
            let error = bad.parse::<Cursor>().unwrap_err();
            assert!(error.to_string().contains("not a journal cursor"), "{bad}");
        }
        assert!(Cursor::new(1, u64::MAX) < Cursor::new(2, 0));
        assert_eq!(format!("{:?}", Cursor::new(3, 4)), "Cursor(3-4)");
    }
}
