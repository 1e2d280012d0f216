//! The typed journal: [`Store::journal`](crate::Store::journal) and its [`Journal`] of
//! [`Entry`]s, and worker groups: [`Store::consume`](crate::Store::consume), its [`Consumer`]
//! of [`Delivery`]s.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::FutureExt as _;

use super::Store;
use super::trace::{call_span, traced};
use super::watch::{Change, to_change};
use crate::backend::BoxFuture;
use crate::backend::{
    Ack, Backend, BoxStream, ConsumeOptions, Cursor, JournalRecord, Journals, Position,
};
use crate::key::Journaled;
use crate::{Error, Result};

/// One change of a journal, as [`Store::journal`](crate::Store::journal) delivers it: where it
/// is ([`cursor`](Self::cursor), to resume after it) and what it was.
pub struct Entry<S: Journaled> {
    cursor: Cursor,
    change: Change<S>,
}

impl<S: Journaled> Entry<S> {
    /// Its place in the journal: [`Position::After`] this cursor resumes right after it.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The change.
    pub fn change(&self) -> &Change<S> {
        &self.change
    }

    /// The change, owned.
    pub fn into_change(self) -> Change<S> {
        self.change
    }
}

impl<S> fmt::Debug for Entry<S>
where
    S: Journaled + fmt::Debug,
    S::Id: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("cursor", &self.cursor)
            .field("change", &self.change)
            .finish()
    }
}

/// The stream of [`Store::journal`](crate::Store::journal): `Send + 'static`, items
/// `Result<Entry<S>>`. First what the journal holds from the position asked, then each change
/// as it is journaled, with nothing missed or repeated in between.
///
/// Items that are errors do not end the stream: [`Error::Trimmed`] once when the reader fell
/// behind the trimming (it then goes on with the oldest entry kept); the engine's error (such
/// as [`Error::Backend`]) while it cannot be reached for more than a moment (a broken
/// connection is retried quietly three times first), after which it resumes right after the
/// last entry delivered, losing and repeating nothing; [`Error::Decode`] for a value that does
/// not decode as `S` (the entry's cursor is passed). It ends only when the engine is gone.
#[must_use = "streams do nothing unless polled"]
pub struct Journal<S> {
    records: BoxStream<'static, Result<JournalRecord>>,
    /// `{channel}:`, what every key of the journal starts with.
    prefix: String,
    state: PhantomData<fn() -> S>,
}

impl<S: Journaled> Stream for Journal<S> {
    type Item = Result<Entry<S>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.records.as_mut().poll_next(cx));
        Poll::Ready(item.map(|item| {
            let record = item?;
            let change = to_change(&self.prefix, record.event)?;
            Ok(Entry {
                cursor: record.cursor,
                change,
            })
        }))
    }
}

impl<S> fmt::Debug for Journal<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("channel", &self.prefix.trim_end_matches(':'))
            .finish_non_exhaustive()
    }
}

/// One change delivered to a worker group's consumer ([`Store::consume`](crate::Store::consume)):
/// acknowledge it with [`ack`](Self::ack) once handled. Until then it stays pending for the
/// group, and is delivered again (to whichever live consumer claims it first) when not
/// acknowledged within [`ConsumeOptions::claim_after`]. Dropping a delivery does not
/// acknowledge it.
pub struct Delivery<S: Journaled> {
    cursor: Cursor,
    change: Change<S>,
    deliveries: u64,
    ack: Ack,
}

impl<S: Journaled> Delivery<S> {
    /// Its place in the journal.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The change.
    pub fn change(&self) -> &Change<S> {
        &self.change
    }

    /// How many times the group delivered it, this delivery included: 1 the first time, more
    /// when a consumer before this one did not acknowledge it in time (or came back under the
    /// same name after a restart).
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Marks it done for the group: never delivered again. Succeeds too when it was meanwhile
    /// delivered to another consumer, whose later `ack` of it is then a no-op.
    pub async fn ack(self) -> Result<()> {
        (self.ack)().await
    }
}

impl<S> fmt::Debug for Delivery<S>
where
    S: Journaled + fmt::Debug,
    S::Id: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("cursor", &self.cursor)
            .field("change", &self.change)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// The stream of [`Store::consume`](crate::Store::consume): `Send + 'static`, items
/// `Result<Delivery<S>>`. Errors do not end it: the engine's error (such as
/// [`Error::Backend`]) while it cannot be reached for more than a moment, [`Error::Decode`] for
/// a value that does not decode as `S` (that entry stays pending, and comes back after
/// `claim_after`: fix or remove the value, it is not dropped).
#[must_use = "streams do nothing unless polled"]
pub struct Consumer<S> {
    records: BoxStream<'static, Result<JournalRecord>>,
    prefix: String,
    state: PhantomData<fn() -> S>,
}

impl<S: Journaled> Stream for Consumer<S> {
    type Item = Result<Delivery<S>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.records.as_mut().poll_next(cx));
        Poll::Ready(item.map(|item| delivery(&self.prefix, item?)))
    }
}

fn delivery<S: Journaled>(prefix: &str, record: JournalRecord) -> Result<Delivery<S>> {
    let JournalRecord {
        cursor,
        event,
        deliveries,
        ack,
        ..
    } = record;
    let ack = ack.ok_or_else(|| Error::Backend {
        operation: "consume",
        key: event.key().to_owned(),
        source: "the engine delivered a journal entry to a worker group without a way to \
                 acknowledge it"
            .into(),
    })?;
    Ok(Delivery {
        cursor,
        change: to_change(prefix, event)?,
        deliveries,
        ack,
    })
}

impl<S> fmt::Debug for Consumer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("channel", &self.prefix.trim_end_matches(':'))
            .finish_non_exhaustive()
    }
}

/// A worker group's or consumer's name: not empty, at most 200 bytes, no control characters.
fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > 200 {
        "is longer than 200 bytes"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: name.chars().take(64).collect(),
        reason: format!("a {what} name that {reason}"),
    })
}

impl<B: Backend> Store<B> {
    /// The journal of `S` from `from`: first the changes it holds, then each change as it is
    /// made, with nothing missed or repeated at the seam. `S` must be declared with
    /// `#[state(notify, history = N)]`; the journal keeps about the last `N` changes.
    ///
    /// - [`Position::Start`]: from the oldest change kept;
    /// - [`Position::Now`]: only the changes made after this call returned;
    /// - [`Position::After`]`(cursor)`: exactly the changes after that one, which is how a
    ///   reader resumes after a restart (store the last [`Entry::cursor`] you handled). A
    ///   cursor older than the oldest kept change fails the call with [`Error::Trimmed`],
    ///   whose `resume` replays everything still kept.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// use state_store::{Change, MemoryBackend, Position, StateKey, Store};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = u64, notify, history = 10_000)]
    /// struct Job { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// store.set::<Job>(1, &Job { status: "queued".into() }).await?;
    /// store.set::<Job>(1, &Job { status: "done".into() }).await?;
    ///
    /// let mut journal = store.journal::<Job>(Position::Start).await?;
    /// let first = journal.next().await.unwrap()?;
    /// assert_eq!(first.change().value().unwrap().status, "queued");
    /// // Later, maybe in another process: exactly what came after it.
    /// let mut rest = store.journal::<Job>(Position::After(first.cursor())).await?;
    /// let second = rest.next().await.unwrap()?;
    /// assert!(matches!(second.change(), Change::Set { id: 1, value } if value.status == "done"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn journal<S: Journaled>(&self, from: Position) -> BoxFuture<'_, Result<Journal<S>>> {
        let span = call_span!(self, S, "journal");
        traced(span, async move {
            let channel = self.channel::<S>()?;
            let records = self.journals("journal")?.read(&channel, from).await?;
            Ok(Journal {
                records,
                prefix: format!("{channel}:"),
                state: PhantomData,
            })
        })
        .boxed()
    }

    /// The changes of `S` shared among the consumers of worker group `group`, as consumer
    /// `consumer` gets them: each change goes to one consumer of the group (at least once), and
    /// is delivered again to a live consumer when not acknowledged
    /// ([`Delivery::ack`]) within 30 seconds ([`consume_with`](Self::consume_with) sets the
    /// time). The group is created by the first call that names it, and starts with the
    /// changes made after that call returned. A consumer that comes back under the same name
    /// first gets what it was given and did not acknowledge.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// use state_store::{MemoryBackend, StateKey, Store};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
    /// #[state(prefix = "job", id = u64, notify, history = 10_000)]
    /// struct Job { status: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> state_store::Result<()> {
    /// let store = Store::new(MemoryBackend::new()).enable_set();
    /// let mut worker = store.consume::<Job>("mailer", "worker-1").await?;
    /// store.set::<Job>(7, &Job { status: "queued".into() }).await?;
    ///
    /// let delivery = worker.next().await.unwrap()?;
    /// assert_eq!(delivery.change().id(), &7);
    /// assert_eq!(delivery.deliveries(), 1);
    /// delivery.ack().await?; // done: no consumer of "mailer" gets it again
    /// # Ok(())
    /// # }
    /// ```
    pub fn consume<S: Journaled>(
        &self, group: &str, consumer: &str,
    ) -> BoxFuture<'_, Result<Consumer<S>>> {
        self.consume_with::<S>(group, consumer, ConsumeOptions::new())
    }

    /// [`consume`](Self::consume), with [`ConsumeOptions`]: how long an unacknowledged
    /// change waits before it is delivered again
    /// ([`claim_after`](ConsumeOptions::claim_after)), and how many changes a consumer takes
    /// at a time.
    pub fn consume_with<S: Journaled>(
        &self, group: &str, consumer: &str, options: ConsumeOptions,
    ) -> BoxFuture<'_, Result<Consumer<S>>> {
        let span = call_span!(self, S, "consume");
        let names = check_name("worker group", group)
            .and_then(|()| check_name("consumer", consumer))
            .map(|()| (group.to_owned(), consumer.to_owned()));
        traced(span, async move {
            let (group, consumer) = names?;
            let channel = self.channel::<S>()?;
            let records = self
                .journals("consume")?
                .consume(&channel, &group, &consumer, options)
                .await?;
            Ok(Consumer {
                records,
                prefix: format!("{channel}:"),
                state: PhantomData,
            })
        })
        .boxed()
    }

    /// The engine's journals, or [`Error::Unsupported`] naming `operation`.
    fn journals(&self, operation: &'static str) -> Result<&dyn Journals> {
        self.backend
            .extensions()
            .journals
            .ok_or_else(|| Error::Unsupported {
                operation,
                backend: self.backend.name(),
            })
    }
}
