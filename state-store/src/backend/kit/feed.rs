//! Change feeds inside this process: each watcher's bounded queue with its lag accounting, and
//! the routing of changes from an engine to the queues of the watchers of their channel or key.
//! The built-in engines use it (the memory engine publishes under its lock, the Redis engine's
//! pub/sub task publishes what the server sends, the NATS engine what a bucket watch yields), so
//! that a [`ChangeFeed`](crate::backend::ChangeFeed) of your own behaves exactly like theirs:
//! a watcher that falls `buffer` changes behind loses the oldest and hears
//! [`Error::Lagged`] with their number, an interruption is [`Error::Interrupted`], and dropping
//! the stream unsubscribes.
//!
//! ```
//! use std::sync::Arc;
//!
//! use state_store::backend::kit::feed::{Hub, Watcher};
//! use state_store::backend::{BoxFuture, BoxStream, ChangeFeed, Event, Watch};
//! use state_store::{Error, Result, StreamExt};
//!
//! /// The feed part of an engine: its writes call `hub.publish` in the same step as the write.
//! struct Feed {
//!     hub: Arc<Hub>,
//! }
//!
//! impl ChangeFeed for Feed {
//!     fn watch<'a>(
//!         &'a self,
//!         watch: &'a Watch,
//!     ) -> BoxFuture<'a, Result<BoxStream<'static, Result<Event>>>> {
//!         Box::pin(async move {
//!             let queue = self.hub.subscribe(watch, true);
//!             let watcher = Watcher::new(queue, &self.hub, None);
//!             Ok(Box::pin(watcher) as BoxStream<'static, Result<Event>>)
//!         })
//!     }
//!
//!     fn enable_expiry_events(&self) -> BoxFuture<'_, Result<()>> {
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let feed = Feed { hub: Arc::new(Hub::default()) };
//! let mut changes = feed.watch(&Watch::new("svc:job").buffer(1)).await?;
//! for n in 0..3 {
//!     let key: Arc<str> = Arc::from(format!("svc:job:{n}"));
//!     feed.hub.publish("svc:job", || Event::Removed { key });
//! }
//! // A buffer of one: the two oldest were dropped, and the watcher hears of it first.
//! assert!(matches!(changes.next().await, Some(Err(Error::Lagged { missed: 2, .. }))));
//! assert_eq!(changes.next().await.unwrap()?.key(), "svc:job:2");
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

use crate::backend::{Event, Watch};
use crate::{Error, Result};

/// The watchers of every channel of one engine.
#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<Arc<str>, Channel>>,
}

#[derive(Default)]
struct Channel {
    /// Watchers of every key.
    all: Vec<Arc<Queue>>,
    /// Watchers of one key.
    by_key: HashMap<Arc<str>, Vec<Arc<Queue>>>,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_key.is_empty()
    }

    fn queues(&self) -> impl Iterator<Item = &Arc<Queue>> {
        self.all.iter().chain(self.by_key.values().flatten())
    }

    /// Hands `event` to the watchers of every key and to those of its key.
    fn deliver(&self, event: &Event) {
        let own = self.by_key.get(event.key()).into_iter().flatten();
        for queue in self.all.iter().chain(own) {
            queue.push(Item::Event(event.clone()));
        }
    }
}

/// What a queue holds: a change, a message that was not one, or the mark of an interruption.
/// (The last two, and the routing of expiries by key, come from the Redis backend's feed.)
#[derive(Clone)]
pub(crate) enum Item {
    Event(Event),
    /// A message on the channel that is not a change this crate publishes, with why.
    Malformed {
        channel: Arc<str>,
        reason: Arc<str>,
    },
    Interrupted,
}

/// One watcher's buffer, as [`Hub::subscribe`] hands it out for a [`Watcher`].
pub struct Queue {
    channel: Arc<str>,
    key: Option<Arc<str>>,
    capacity: usize,
    /// Whether it takes items yet: a Redis watcher joins the hub before the pub/sub connection
    /// has caught up with what was published before it (see [`Hub::activate`]).
    active: AtomicBool,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// Changes dropped since the watcher last heard of it.
    missed: u64,
    /// An interruption mark was dropped with them: still to be reported.
    interrupted: bool,
    /// The hub is gone: no more items will come.
    closed: bool,
    /// Why the feed ended for this watcher, reported once after the items it still holds.
    ended: Option<Arc<str>>,
    waker: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Item) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if state.items.len() >= self.capacity {
            // Keep the newest, as a tokio broadcast receiver does. A dropped interruption mark
            // is not a change, but is still reported.
            match state.items.pop_front() {
                Some(Item::Interrupted) => state.interrupted = true,
                Some(_) => state.missed += 1,
                None => {}
            }
        }
        state.items.push_back(item);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.end(None);
    }

    /// No more items will come, for `reason` if given.
    fn end(&self, reason: Option<Arc<str>>) {
        let mut state = self.lock();
        state.closed = true;
        if reason.is_some() {
            state.ended = reason;
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watcher. Changes published from now on reach it, or, unless `active`, from when
    /// it is [activated](Self::activate).
    pub fn subscribe(&self, watch: &Watch, active: bool) -> Arc<Queue> {
        let channel: Arc<str> = Arc::from(watch.channel.as_str());
        let key: Option<Arc<str>> = watch.key.as_deref().map(Arc::from);
        let queue = Arc::new(Queue {
            channel: channel.clone(),
            key: key.clone(),
            capacity: watch.buffer.max(1),
            active: AtomicBool::new(active),
            state: Mutex::default(),
        });
        let mut channels = self.lock();
        let entry = channels.entry(channel).or_default();
        match key {
            Some(key) => entry.by_key.entry(key).or_default().push(queue.clone()),
            None => entry.all.push(queue.clone()),
        }
        queue
    }

    /// Removes a watcher; `true` when its channel has no watcher left.
    pub fn unsubscribe(&self, queue: &Arc<Queue>) -> bool {
        let mut channels = self.lock();
        let Some(channel) = channels.get_mut(&queue.channel) else {
            return true;
        };
        let list = match &queue.key {
            Some(key) => channel.by_key.get_mut(key),
            None => Some(&mut channel.all),
        };
        if let Some(list) = list {
            list.retain(|q| !Arc::ptr_eq(q, queue));
        }
        if let Some(key) = &queue.key
            && channel.by_key.get(key).is_some_and(Vec::is_empty)
        {
            channel.by_key.remove(key);
        }
        if channel.is_empty() {
            channels.remove(&queue.channel);
            true
        } else {
            false
        }
    }

    /// Lets `queue` take the changes published from now on. Under the hub's lock, so that no
    /// publication is half delivered to it.
    pub fn activate(&self, queue: &Queue) {
        let _channels = self.lock();
        queue.active.store(true, Ordering::Release);
    }

    /// The channels that have watchers.
    pub fn channels(&self) -> HashSet<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// Whether no channel has a watcher.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Delivers a change on `channel` to its watchers; `event` is only built when there are any.
    pub fn publish(&self, channel: &str, event: impl FnOnce() -> Event) {
        let channels = self.lock();
        let Some(watchers) = channels.get(channel) else {
            return;
        };
        watchers.deliver(&event());
    }

    /// Delivers the expiry of `key` to the watchers of every channel the key is under.
    pub fn publish_expired(&self, key: &str) {
        let channels = self.lock();
        let mut event = None;
        for (channel, watchers) in channels.iter() {
            let under = key
                .strip_prefix(&**channel)
                .is_some_and(|rest| rest.starts_with(':'));
            if !under {
                continue;
            }
            watchers.deliver(event.get_or_insert_with(|| Event::Expired {
                key: Arc::from(key),
            }));
        }
    }

    /// Tells every watcher of `channel` that a message on it could not be read.
    pub fn publish_malformed(&self, channel: &str, reason: &str) {
        let channels = self.lock();
        if let Some(watchers) = channels.get(channel) {
            let item = Item::Malformed {
                channel: Arc::from(channel),
                reason: Arc::from(reason),
            };
            for queue in watchers.queues() {
                queue.push(item.clone());
            }
        }
    }

    /// Ends the streams of `channel`'s watchers with an error saying `reason`: the feed cannot
    /// go on (the server refused to subscribe again).
    pub fn end(&self, channel: &str, reason: &str) {
        let channels = self.lock();
        if let Some(watchers) = channels.get(channel) {
            let reason: Arc<str> = Arc::from(reason);
            for queue in watchers.queues() {
                queue.end(Some(reason.clone()));
            }
        }
    }

    /// Tells every watcher of `channels` that changes may have gone undelivered.
    pub fn interrupt(&self, channels: &HashSet<Arc<str>>) {
        let watched = self.lock();
        for (channel, watchers) in watched.iter() {
            if channels.contains(channel) {
                for queue in watchers.queues() {
                    queue.push(Item::Interrupted);
                }
            }
        }
    }
}

impl Hub {
    /// Ends every watcher's stream and forgets them: the feed is gone.
    pub fn close_all(&self) {
        for channel in std::mem::take(&mut *self.lock()).values() {
            for queue in channel.queues() {
                queue.close();
            }
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.lock().len())
            .finish()
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("channel", &self.channel)
            .field("key", &self.key)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("queue", &self.queue)
            .finish()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// The stream of one watcher: its queue's items, until the hub is gone. Dropping it removes
/// the queue from the hub and runs `on_drop` (which the Redis backend uses to unsubscribe).
pub struct Watcher {
    queue: Arc<Queue>,
    hub: Weak<Hub>,
    on_drop: Option<Box<dyn FnOnce(bool) + Send + Sync>>,
}

impl Watcher {
    /// `on_drop` runs once the queue has left the hub, with whether its channel has no watcher
    /// left.
    pub fn new(
        queue: Arc<Queue>, hub: &Arc<Hub>, on_drop: Option<Box<dyn FnOnce(bool) + Send + Sync>>,
    ) -> Watcher {
        Watcher {
            queue,
            hub: Arc::downgrade(hub),
            on_drop,
        }
    }
}

impl Watcher {
    /// The item that says changes may have been missed, announced as an event too.
    fn interrupted(&self) -> Error {
        super::warn_event!(
            channel = %self.queue.channel,
            "state_store: a change feed was interrupted; changes may have been missed"
        );
        Error::Interrupted {
            channel: self.queue.channel.to_string(),
        }
    }
}

impl Stream for Watcher {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.queue.lock();
        if state.interrupted {
            // Older than everything still buffered.
            state.interrupted = false;
            return Poll::Ready(Some(Err(self.interrupted())));
        }
        if state.missed > 0 {
            let missed = std::mem::take(&mut state.missed);
            super::warn_event!(
                channel = %self.queue.channel,
                missed,
                "state_store: a watcher fell behind; changes were dropped (Error::Lagged)"
            );
            return Poll::Ready(Some(Err(Error::Lagged { missed })));
        }
        match state.items.pop_front() {
            Some(Item::Event(event)) => Poll::Ready(Some(Ok(event))),
            Some(Item::Malformed { channel, reason }) => {
                Poll::Ready(Some(Err(Error::InvalidKey {
                    key: channel.to_string(),
                    reason: format!("a message on this change feed is not a change: {reason}"),
                })))
            }
            Some(Item::Interrupted) => Poll::Ready(Some(Err(self.interrupted()))),
            None if state.closed => match state.ended.take() {
                Some(reason) => Poll::Ready(Some(Err(Error::Backend {
                    operation: "watch",
                    key: self.queue.channel.to_string(),
                    source: reason.to_string().into(),
                }))),
                None => Poll::Ready(None),
            },
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let last = match self.hub.upgrade() {
            Some(hub) => hub.unsubscribe(&self.queue),
            None => true,
        };
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn set(key: &str, n: u8) -> Event {
        Event::Set {
            key: Arc::from(key),
            value: Arc::from([n].as_slice()),
        }
    }

    fn next(watcher: &mut Watcher) -> Option<Result<Event>> {
        futures_util::FutureExt::now_or_never(watcher.next()).flatten()
    }

    #[test]
    fn routes_by_channel_and_key() {
        let hub = Arc::new(Hub::default());
        let all = hub.subscribe(&Watch::new("svc:job"), true);
        let one = hub.subscribe(&Watch::new("svc:job").key("svc:job:1"), true);
        let other = hub.subscribe(&Watch::new("svc:task"), true);
        let (mut all, mut one, mut other) = (
            Watcher::new(all, &hub, None),
            Watcher::new(one, &hub, None),
            Watcher::new(other, &hub, None),
        );
        hub.publish("svc:job", || set("svc:job:1", 1));
        hub.publish("svc:job", || set("svc:job:2", 2));
        hub.publish_expired("svc:job:1");
        hub.publish_expired("svc:jobs:1");
        assert_eq!(next(&mut all).unwrap().unwrap(), set("svc:job:1", 1));
        assert_eq!(next(&mut all).unwrap().unwrap(), set("svc:job:2", 2));
        assert_eq!(next(&mut all).unwrap().unwrap().key(), "svc:job:1");
        assert!(next(&mut all).is_none());
        assert_eq!(next(&mut one).unwrap().unwrap(), set("svc:job:1", 1));
        assert!(matches!(
            next(&mut one).unwrap().unwrap(),
            Event::Expired { .. }
        ));
        assert!(next(&mut one).is_none());
        assert!(next(&mut other).is_none());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_how_many() {
        let hub = Arc::new(Hub::default());
        let queue = hub.subscribe(&Watch::new("c").buffer(3), true);
        let mut watcher = Watcher::new(queue, &hub, None);
        for n in 0..10 {
            hub.publish("c", || set("c:k", n));
        }
        assert!(matches!(
            next(&mut watcher),
            Some(Err(Error::Lagged { missed: 7 }))
        ));
        for n in 7..10 {
            assert_eq!(next(&mut watcher).unwrap().unwrap(), set("c:k", n));
        }
        assert!(next(&mut watcher).is_none());
    }

    #[test]
    fn a_dropped_interruption_is_still_reported() {
        let hub = Arc::new(Hub::default());
        let mut watcher = Watcher::new(hub.subscribe(&Watch::new("c").buffer(2), true), &hub, None);
        hub.interrupt(&HashSet::from([Arc::from("c")]));
        hub.publish("c", || set("c:k", 1));
        hub.publish("c", || set("c:k", 2));
        assert!(matches!(
            next(&mut watcher),
            Some(Err(Error::Interrupted { .. }))
        ));
        assert_eq!(next(&mut watcher).unwrap().unwrap(), set("c:k", 1));
        assert_eq!(next(&mut watcher).unwrap().unwrap(), set("c:k", 2));
        // And a closed hub ends the stream.
        hub.close_all();
        assert!(matches!(
            futures_util::FutureExt::now_or_never(watcher.next()),
            Some(None)
        ));
    }

    #[test]
    fn dropping_the_last_watcher_empties_the_channel_and_a_dropped_hub_ends_streams() {
        let hub = Arc::new(Hub::default());
        let last = Arc::new(Mutex::new(Vec::new()));
        let watchers: Vec<Watcher> = (0..2)
            .map(|_| {
                let last = last.clone();
                let queue = hub.subscribe(&Watch::new("c"), true);
                Watcher::new(
                    queue,
                    &hub,
                    Some(Box::new(move |was_last| {
                        last.lock().unwrap().push(was_last)
                    })),
                )
            })
            .collect();
        drop(watchers);
        assert_eq!(*last.lock().unwrap(), [false, true]);
        assert!(hub.is_empty());

        let mut watcher = Watcher::new(hub.subscribe(&Watch::new("c"), true), &hub, None);
        drop(hub);
        assert!(matches!(
            futures_util::FutureExt::now_or_never(watcher.next()),
            Some(None)
        ));
    }
}
