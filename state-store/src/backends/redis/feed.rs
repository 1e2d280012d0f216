//! The Redis backend's change feeds: one pub/sub connection per backend (and its clones), owned
//! by a task that keeps its subscriptions in line with the watchers in the [`Hub`], routes what
//! the server sends to them, and reconnects and resubscribes when the connection breaks.
//!
//! A write of a notified type publishes on `{namespace}:{prefix}` (`{namespace}:{prefix}@{db}`
//! outside database 0, since pub/sub channels are server-wide while keys are per database) in
//! the same atomic step as the write (a `MULTI` with the `SET`s of `set` and `set_many`, inside
//! the script of the other writes), so the message is sent only if the write happened, in the
//! order of the writes. A message is a JSON header, `{"op":"set","key":"<full key>"}` followed by a newline
//! and the value exactly as stored (any bytes), or `{"op":"removed","key":"<full key>"}` alone.
//! Expiries come from the server's own keyspace events on `__keyevent@<db>__:expired`, when they
//! are on.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, Msg, RedisError};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::options::RedisOptions;

use crate::backend::kit::feed::{Hub, Queue, Watcher};
use crate::backend::{BoxFuture, BoxStream, Event, Watch};
use crate::{Error, Result};

/// What the feed task is asked to do: bring its subscriptions in line with the hub, and, for a
/// new watcher, activate its queue once the connection has delivered everything published
/// before, and answer whether `channel` is subscribed.
struct Request {
    channel: Arc<str>,
    reply: Option<(Arc<Queue>, oneshot::Sender<Result<()>>)>,
}

/// A new watcher waiting for its channel.
struct Waiting {
    channel: Arc<str>,
    queue: Arc<Queue>,
    reply: oneshot::Sender<Result<()>>,
}

/// The channel the server carries the feed `channel` on for database `db`: the feed's own name in
/// database 0, `{channel}@{db}` in the others, so that watchers of one database do not hear the
/// writes of another (`@` never appears in a namespace or prefix).
///
/// A journaled type's feed argument (`journal::feed_spec`: the channel, then the journal's
/// lines) keeps its lines after the channel's wire name.
pub(crate) fn wire_channel(channel: &str, db: i64) -> Cow<'_, str> {
    if db == 0 {
        Cow::Borrowed(channel)
    } else {
        match channel.split_once('\n') {
            Some((channel, journal)) => Cow::Owned(format!("{channel}@{db}\n{journal}")),
            None => Cow::Owned(format!("{channel}@{db}")),
        }
    }
}

/// The feed of one backend and its clones.
pub(crate) struct RedisFeed {
    /// What the task works with; each task it starts gets a clone.
    connection: Connection,
    /// The task and its command queue, started by the first watcher (and again if the runtime
    /// it ran on has shut down).
    task: Mutex<Option<(mpsc::UnboundedSender<Request>, JoinHandle<()>)>>,
}

impl RedisFeed {
    /// `connect_timeout` bounds a connection attempt, `timeout` each subscription command.
    /// The feed of `source` (`db` its database, `target` its name in errors), with the
    /// timeouts of `options`.
    pub(crate) fn new(
        source: Arc<dyn Source>, db: i64, target: String, options: &RedisOptions,
    ) -> RedisFeed {
        let (connect_timeout, timeout) = (options.connect_timeout, options.response_timeout);
        let hub = Arc::new(Hub::default());
        RedisFeed {
            connection: Connection {
                hub: hub.clone(),
                db,
                source,
                target,
                connect_timeout,
                timeout,
                expired_channel: Arc::from(format!("__keyevent@{db}__:expired")),
            },
            task: Mutex::new(None),
        }
    }

    /// A pub/sub connection of the feed's kind (following a Sentinel failover), for a listener
    /// of its own.
    pub(crate) async fn pubsub(&self) -> std::result::Result<redis::aio::PubSub, String> {
        let connection = &self.connection;
        connection
            .source
            .connect(connection.connect_timeout, connection.timeout)
            .await
    }

    /// The channel of the server's expired-key events in the feed's database.
    pub(crate) fn expired_channel(&self) -> Arc<str> {
        self.connection.expired_channel.clone()
    }

    /// A watcher of `watch`, once its channel is subscribed.
    pub(crate) async fn watch(&self, watch: &Watch) -> Result<BoxStream<'static, Result<Event>>> {
        let commands = self.commands(&watch.channel)?;
        let channel: Arc<str> = Arc::from(watch.channel.as_str());
        // Inactive until the task has caught up with the messages already on their way.
        let hub = &self.connection.hub;
        let queue = hub.subscribe(watch, false);
        let on_drop = {
            let commands = commands.clone();
            let channel = channel.clone();
            move |last: bool| {
                if last {
                    // The task unsubscribes; if it is gone, so is the connection.
                    let _ = commands.send(Request {
                        channel,
                        reply: None,
                    });
                }
            }
        };
        // From here on, dropping the watcher (on an error below too) undoes the subscription.
        let watcher = Watcher::new(queue.clone(), hub, Some(Box::new(on_drop)));
        let (reply, subscribed) = oneshot::channel();
        let sent = commands.send(Request {
            channel,
            reply: Some((queue, reply)),
        });
        if sent.is_err() {
            return Err(self.gone(&watch.channel));
        }
        subscribed.await.map_err(|_| self.gone(&watch.channel))??;
        Ok(Box::pin(watcher))
    }

    fn gone(&self, channel: &str) -> Error {
        Error::Backend {
            operation: "watch",
            key: channel.to_owned(),
            source: "the change feed's task has stopped (its runtime shut down)".into(),
        }
    }

    /// The command queue of the running task, starting it if needed.
    fn commands(&self, channel: &str) -> Result<mpsc::UnboundedSender<Request>> {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((commands, handle)) = task.as_ref()
            && !handle.is_finished()
        {
            return Ok(commands.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::Backend {
            operation: "watch",
            key: channel.to_owned(),
            source: Box::new(e),
        })?;
        let (commands, queue) = mpsc::unbounded_channel();
        let handle = runtime.spawn(self.connection.clone().run(queue));
        *task = Some((commands.clone(), handle));
        Ok(commands)
    }
}

/// Where the feed's pub/sub connection goes, and what a deployment adds to the feed: a Cluster
/// hears expiries through listeners of its own on every node, and catches up with the other
/// nodes through a barrier. One server is [`SingleNode`]; Sentinel and Cluster implement it in
/// their own modules.
pub(crate) trait Source: Send + Sync + 'static {
    /// A pub/sub connection, within `connect_timeout` (and `timeout` for any question asked on
    /// the way, such as which nodes there are).
    fn connect(
        &self, connect_timeout: Duration, timeout: Duration,
    ) -> BoxFuture<'_, std::result::Result<redis::aio::PubSub, String>>;

    /// Whether expired-key events reach the feed through the source's own listeners
    /// ([`keep_expiry_listeners`](Self::keep_expiry_listeners)), not its connection.
    fn listens_for_expiries(&self) -> bool {
        false
    }

    /// Starts the source's expiry listeners into `listeners` while `wanted`, and stops them
    /// (drops it) when not. Nothing by default.
    fn keep_expiry_listeners<'a>(
        &'a self, feed: &'a Connection, listeners: &'a mut Option<Listeners>, wanted: bool,
    ) -> BoxFuture<'a, ()> {
        let _ = (feed, listeners, wanted);
        Box::pin(async {})
    }

    /// A catch-up of the source's own for a new watcher of `around` (see
    /// [`Connection::catch_up`]), or `None` for the plain one.
    fn catch_up<'a>(
        &'a self, feed: &'a Connection, sink: &'a mut PubSubSink, messages: &'a mut PubSubStream,
        around: &'a str,
    ) -> Option<BoxFuture<'a, std::result::Result<(), Broken>>> {
        let _ = (feed, sink, messages, around);
        None
    }
}

/// Tasks a source keeps running for the feed (a Cluster's expiry listeners), stopped when
/// dropped.
pub(crate) struct Listeners(pub(crate) Vec<JoinHandle<()>>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One server.
pub(crate) struct SingleNode(pub(crate) Client);

impl Source for SingleNode {
    fn connect(
        &self, connect_timeout: Duration, _timeout: Duration,
    ) -> BoxFuture<'_, std::result::Result<redis::aio::PubSub, String>> {
        Box::pin(pubsub(&self.0, connect_timeout))
    }
}

/// The task's side: where the pub/sub connection goes, and the hub it routes messages to.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) hub: Arc<Hub>,
    db: i64,
    source: Arc<dyn Source>,
    target: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    /// The channel of the server's expired-key events in the connection's database.
    pub(crate) expired_channel: Arc<str>,
}

enum Wake {
    Command(Option<Request>),
    Message(Option<Msg>),
    Retry,
}

/// The connection is unusable, and why: reconnect.
pub(crate) struct Broken(pub(crate) String);

/// Ends every stream of the hub when the task ends for any reason (its runtime shutting down,
/// say): a watcher whose feed has no task would otherwise wait for ever without a word.
struct CloseOnExit(Arc<Hub>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

impl Connection {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<Request>) {
        let _close = CloseOnExit(self.hub.clone());
        let mut conn: Option<(PubSubSink, PubSubStream)> = None;
        let mut connected_at = tokio::time::Instant::now();
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        // Channels that were subscribed when the connection broke: their watchers hear of the
        // gap once they are subscribed again.
        let mut lost: HashSet<Arc<str>> = HashSet::new();
        // Channels the server refused to subscribe to, with its answer, until the next
        // connection (an ACL user without the keyspace-event channel, say).
        let mut refused: HashMap<Arc<str>, String> = HashMap::new();
        let mut pending: Vec<Waiting> = Vec::new();
        let mut retry = RETRY_MIN;
        // Whether the connection broke since it was last open, for the metrics' reconnections.
        #[cfg(feature = "metrics")]
        let mut broke = false;
        // The source's own expired-key listeners (a Cluster's nodes), while anyone watches.
        let mut listeners: Option<Listeners> = None;
        loop {
            let wake = match conn.as_mut() {
                Some((_, messages)) => tokio::select! {
                    command = commands.recv() => Wake::Command(command),
                    message = messages.next() => Wake::Message(message),
                },
                None if !self.hub.is_empty() => tokio::select! {
                    command = commands.recv() => Wake::Command(command),
                    () = tokio::time::sleep(retry) => Wake::Retry,
                },
                None => Wake::Command(commands.recv().await),
            };
            match wake {
                Wake::Command(None) => return,
                Wake::Command(Some(command)) => {
                    let mut take = |command: Request| {
                        if let Some((queue, reply)) = command.reply {
                            pending.push(Waiting {
                                channel: command.channel,
                                queue,
                                reply,
                            });
                        }
                    };
                    take(command);
                    while let Ok(command) = commands.try_recv() {
                        take(command);
                    }
                }
                Wake::Message(Some(message)) => {
                    self.dispatch(&message);
                    continue;
                }
                Wake::Message(None) => {
                    // The server closed the connection (restart, `CLIENT KILL`, network).
                    crate::backend::kit::warn_event!(
                        server = %self.target,
                        "state_store: the change feed's connection closed; reconnecting"
                    );
                    conn = None;
                    #[cfg(feature = "metrics")]
                    {
                        broke = true;
                    }
                    lost.extend(subscribed.drain());
                    if connected_at.elapsed() < RETRY_MAX {
                        // Closed soon after it opened: wait before the next try rather than
                        // reconnecting in a loop.
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
                Wake::Retry => {}
            }

            let mut desired = self.hub.channels();
            if !desired.is_empty() && !self.source.listens_for_expiries() {
                desired.insert(self.expired_channel.clone());
            }
            let source = self.source.clone();
            source
                .keep_expiry_listeners(&self, &mut listeners, !desired.is_empty())
                .await;
            let mut error = None;
            if conn.is_none() && !desired.is_empty() {
                match self.connect().await {
                    Ok(connected) => {
                        #[cfg(feature = "metrics")]
                        if std::mem::take(&mut broke) {
                            crate::metrics::reconnected("redis", "feed");
                        }
                        conn = Some(connected.split());
                        connected_at = tokio::time::Instant::now();
                        refused.clear();
                        retry = RETRY_MIN;
                    }
                    Err(e) => {
                        retry = (retry * 2).min(RETRY_MAX);
                        crate::backend::kit::warn_event!(
                            server = %self.target,
                            error = %e,
                            "state_store: the change feed cannot reconnect yet"
                        );
                        error = Some(format!("cannot connect to {}: {e}", self.target));
                    }
                }
            }
            lost.retain(|channel| desired.contains(channel));
            if let Some((sink, messages)) = conn.as_mut() {
                let mut result = self
                    .reconcile(sink, &desired, &mut subscribed, &mut refused)
                    .await;
                // Subscribed again after a break: the gap goes before anything received since.
                let resumed: HashSet<Arc<str>> = lost.intersection(&subscribed).cloned().collect();
                if !resumed.is_empty() {
                    self.hub.interrupt(&resumed);
                    lost.retain(|channel| !resumed.contains(channel));
                }
                // Refused this time (the user's rights changed meanwhile): those watchers would
                // wait for ever; their streams end with the server's answer.
                lost.retain(|channel| match refused.get(channel) {
                    Some(answer) => {
                        let reason = format!(
                            "the server refused to subscribe again after a reconnection: {answer}"
                        );
                        self.hub.end(channel, &reason);
                        false
                    }
                    None => true,
                });
                if result.is_ok() && !pending.is_empty() {
                    let around = pending.first().map(|waiting| &*waiting.channel);
                    result = self.catch_up(sink, messages, around).await;
                }
                if let Err(Broken(e)) = result {
                    conn = None;
                    #[cfg(feature = "metrics")]
                    {
                        broke = true;
                    }
                    lost.extend(subscribed.drain());
                    error = Some(e);
                }
            }
            for Waiting {
                channel,
                queue,
                reply,
            } in pending.drain(..)
            {
                let answer = if subscribed.contains(&channel) {
                    self.hub.activate(&queue);
                    Ok(())
                } else {
                    let reason = refused
                        .get(&channel)
                        .cloned()
                        .or_else(|| error.clone())
                        .unwrap_or_else(|| format!("not subscribed on {}", self.target));
                    Err(Error::Backend {
                        operation: "watch",
                        key: channel.to_string(),
                        source: reason.into(),
                    })
                };
                let _ = reply.send(answer);
            }
        }
    }

    async fn connect(&self) -> std::result::Result<redis::aio::PubSub, String> {
        self.source
            .connect(self.connect_timeout, self.timeout)
            .await
    }

    /// Subscribes to what is desired and not subscribed, and unsubscribes from the rest.
    async fn reconcile(
        &self, sink: &mut PubSubSink, desired: &HashSet<Arc<str>>,
        subscribed: &mut HashSet<Arc<str>>, refused: &mut HashMap<Arc<str>, String>,
    ) -> std::result::Result<(), Broken> {
        let missing: Vec<Arc<str>> = desired
            .iter()
            .filter(|channel| !subscribed.contains(*channel) && !refused.contains_key(*channel))
            .cloned()
            .collect();
        for channel in missing {
            let wire = self.wire(&channel);
            match self.timed(sink.subscribe(&*wire)).await? {
                Ok(()) => {
                    subscribed.insert(channel);
                }
                Err(e) => {
                    refused.insert(channel, e.to_string());
                }
            }
        }
        let extra: Vec<Arc<str>> = subscribed.difference(desired).cloned().collect();
        for channel in extra {
            // A refusal to unsubscribe leaves nothing to undo.
            let wire = self.wire(&channel);
            let _ = self.timed(sink.unsubscribe(&*wire)).await?;
            subscribed.remove(&channel);
        }
        refused.retain(|channel, _| desired.contains(channel));
        Ok(())
    }

    /// Delivers every message the server sent before now: a `PING` answered after them (the
    /// connection keeps order), then whatever the connection has received. New watchers are
    /// activated after this, so they hear nothing published before their `watch` call.
    /// A source may catch up its own way around `around`, a channel a new watcher watches (a
    /// Cluster publishes a barrier named after it, so that a user allowed that channel may
    /// publish it).
    async fn catch_up(
        &self, sink: &mut PubSubSink, messages: &mut PubSubStream, around: Option<&str>,
    ) -> std::result::Result<(), Broken> {
        if let Some(around) = around
            && let Some(own) = self.source.catch_up(self, sink, messages, around)
        {
            return own.await;
        }
        let pong = async { sink.ping::<redis::Value>().await.map(drop) };
        if let Err(e) = self.timed(pong).await? {
            return Err(Broken(e.to_string()));
        }
        // Unconstrained: tokio's cooperative budget would otherwise report an empty stream
        // after some hundred messages, and the rest would reach the new watchers.
        while let Some(Some(message)) = tokio::task::unconstrained(messages.next()).now_or_never() {
            self.dispatch(&message);
        }
        Ok(())
    }

    /// The server's name of a channel: the expired-key channel as it is, a feed's with its
    /// database.
    fn wire<'c>(&self, channel: &'c str) -> Cow<'c, str> {
        if channel == &*self.expired_channel {
            Cow::Borrowed(channel)
        } else {
            wire_channel(channel, self.db)
        }
    }

    /// A subscription command's own answer, or the connection's failure.
    pub(crate) async fn timed(
        &self, command: impl Future<Output = redis::RedisResult<()>>,
    ) -> std::result::Result<std::result::Result<(), RedisError>, Broken> {
        match tokio::time::timeout(self.timeout, command).await {
            Err(_) => Err(Broken(format!(
                "{} did not answer within {:?}",
                self.target, self.timeout
            ))),
            Ok(Err(e)) if e.is_connection_dropped() || e.is_unrecoverable_error() => {
                Err(Broken(e.to_string()))
            }
            Ok(result) => Ok(result),
        }
    }

    /// Routes one message from the server to the watchers of its channel.
    pub(crate) fn dispatch(&self, message: &Msg) {
        let channel = message.get_channel_name();
        let payload = message.get_payload_bytes();
        if channel == &*self.expired_channel {
            if let Ok(key) = std::str::from_utf8(payload) {
                self.hub.publish_expired(key);
            }
            return;
        }
        // The feed's own name, without the `@{db}` of `wire_channel` (no allocation per message).
        let channel = match channel.rsplit_once('@') {
            Some((feed, db)) if self.db != 0 && db.parse() == Ok(self.db) => feed,
            _ => channel,
        };
        match parse(payload) {
            Ok(event) => self.hub.publish(channel, || event),
            Err(reason) => self.hub.publish_malformed(channel, &reason),
        }
    }
}

/// A pub/sub connection to `client`, within `connect_timeout`.
pub(crate) async fn pubsub(
    client: &Client, connect_timeout: Duration,
) -> std::result::Result<redis::aio::PubSub, String> {
    match tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// A node of a Cluster, from a line of `CLUSTER NODES`.
pub(crate) struct Node<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) primary: bool,
    /// Marked failing by the cluster (`fail`; not a single node's `fail?`).
    pub(crate) failed: bool,
}

/// The nodes of a `CLUSTER NODES` reply, `<id> <host>:<port>@<bus port>[,<hostname>] <flags>
/// ...` per line, without those that have no address yet.
pub(crate) fn parse_nodes(reply: &str) -> impl Iterator<Item = Node<'_>> {
    reply.lines().filter_map(|line| {
        let mut fields = line.split(' ');
        let address = fields.nth(1)?;
        let flags = fields.next()?;
        if flags.contains("noaddr") || flags.contains("handshake") {
            return None;
        }
        let address = address.split(['@', ',']).next()?;
        let (host, port) = address.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (!host.is_empty() && port != 0).then_some(Node {
            host,
            port,
            primary: flags.split(',').any(|flag| flag == "master"),
            // `fail?` is one node's suspicion; only the cluster's verdict counts.
            failed: flags.split(',').any(|flag| flag == "fail"),
        })
    })
}

/// The first and the longest wait between reconnection attempts.
pub(crate) const RETRY_MIN: Duration = Duration::from_millis(100);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(2);

/// The header of a change message, as the write scripts publish it.
#[derive(Deserialize)]
struct Header<'a> {
    op: Op,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Set,
    Removed,
}

/// The change a message announces. The header ends at the first newline (Lua's cjson escapes
/// every newline inside it); a `set` carries the value after it, byte for byte.
fn parse(payload: &[u8]) -> std::result::Result<Event, String> {
    let (header, value) = match payload.iter().position(|&b| b == b'\n') {
        Some(end) => (&payload[..end], Some(&payload[end + 1..])),
        None => (payload, None),
    };
    let header: Header = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let key: Arc<str> = Arc::from(header.key.as_ref());
    match (header.op, value) {
        (Op::Set, Some(value)) => Ok(Event::Set {
            key,
            value: Arc::from(value),
        }),
        (Op::Set, None) => Err(format!("a `set` of `{key}` without a value")),
        (Op::Removed, _) => Ok(Event::Removed { key }),
    }
}

/// The message announcing that `value` was written under `key`, as the `MULTI` of a plain
/// `set` publishes it (the scripts build the same in Lua).
pub(crate) fn set_message(key: &str, value: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(key.len() + value.len() + 24);
    message.extend_from_slice(br#"{"op":"set","key":"#);
    // Writing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut message, key);
    message.extend_from_slice(b"}\n");
    message.extend_from_slice(value);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_into_events() {
        let event = parse(&set_message("svc:job:a\"b", br#"{"status":"done"}"#)).unwrap();
        assert_eq!(
            event,
            Event::Set {
                key: Arc::from("svc:job:a\"b"),
                value: Arc::from(br#"{"status":"done"}"#.as_slice()),
            }
        );
        // The value is whatever was stored, newlines and invalid JSON included: the typed layer
        // reports what does not decode, naming the key.
        let odd = b"{not json\n1,\"extra\":2\xff";
        let event = parse(&set_message("k", odd)).unwrap();
        assert_eq!(
            event,
            Event::Set {
                key: Arc::from("k"),
                value: Arc::from(odd.as_slice()),
            }
        );
        // Lua's cjson escapes `/`; JSON allows it.
        let event = parse(br#"{"op":"removed","key":"svc:job:a\/b"}"#).unwrap();
        assert_eq!(event.key(), "svc:job:a/b");
        for bad in [
            &b"not json"[..],
            br#"{"op":"set","key":"k"}"#,
            br#"{"op":"renamed","key":"k"}"#,
        ] {
            assert!(parse(bad).is_err());
        }
    }
}
