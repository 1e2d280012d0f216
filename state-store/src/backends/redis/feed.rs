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
use crate::backend::{BoxStream, Event, Watch};
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
pub(crate) fn wire_channel(channel: &str, db: i64) -> Cow<'_, str> {
    if db == 0 {
        Cow::Borrowed(channel)
    } else {
        Cow::Owned(format!("{channel}@{db}"))
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
        source: Source, db: i64, target: String, options: &RedisOptions,
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
                barrier: Arc::from(format!("{}:{:p}", std::process::id(), Arc::as_ptr(&hub))),
            },
            task: Mutex::new(None),
        }
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

/// Where the feed's pub/sub connection goes.
#[derive(Clone)]
pub(crate) enum Source {
    /// One server.
    Node(Client),
    /// The primary the sentinels name at each connection: expired-key events are the
    /// primary's (a replica deletes what its primary expires, and announces no expiry).
    #[cfg(feature = "sentinel")]
    Sentinel(Arc<super::sentinel::primary::Primary>),
    /// Any node of a Cluster for the feeds' channels (the cluster bus carries a `PUBLISH` to
    /// every node), and every node for the expired-key events, which each primary announces only
    /// on itself. Replicas announce none, so listening on all nodes hears each expiry once, and
    /// hears a promoted replica's without a topology change to follow.
    #[cfg(feature = "cluster")]
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        /// The client of the first node given: its settings (credentials, TLS) for every node.
        template: Client,
    },
}

impl Source {
    #[cfg(feature = "cluster")]
    fn is_cluster(&self) -> bool {
        matches!(self, Source::Cluster { .. })
    }

    #[cfg(not(feature = "cluster"))]
    fn is_cluster(&self) -> bool {
        false
    }
}

/// The task's side: where the pub/sub connection goes, and the hub it routes messages to.
#[derive(Clone)]
struct Connection {
    hub: Arc<Hub>,
    db: i64,
    source: Source,
    target: String,
    connect_timeout: Duration,
    timeout: Duration,
    /// The channel of the server's expired-key events in the connection's database.
    expired_channel: Arc<str>,
    /// On a Cluster, what makes this feed's catch-up barrier channels its own (see
    /// `catch_up_with_cluster`).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    barrier: Arc<str>,
}

enum Wake {
    Command(Option<Request>),
    Message(Option<Msg>),
    Retry,
}

/// The connection is unusable, and why: reconnect.
struct Broken(String);

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
        // On a Cluster, the expired-key listeners of the nodes, while anyone watches.
        #[cfg(feature = "cluster")]
        let mut listeners: Option<cluster::Listeners> = None;
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
            if !desired.is_empty() && !self.source.is_cluster() {
                desired.insert(self.expired_channel.clone());
            }
            #[cfg(feature = "cluster")]
            self.keep_expiry_listeners(&mut listeners, !desired.is_empty())
                .await;
            let mut error = None;
            if conn.is_none() && !desired.is_empty() {
                match self.connect().await {
                    Ok(connected) => {
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
        match &self.source {
            Source::Node(client) => pubsub(client, self.connect_timeout).await,
            #[cfg(feature = "sentinel")]
            Source::Sentinel(primary) => {
                let client = primary.resolve().await?;
                pubsub(&client, self.connect_timeout).await
            }
            #[cfg(feature = "cluster")]
            Source::Cluster { conn, template } => {
                // The first node that answers, of those the cluster knows now.
                let nodes = cluster_nodes(conn, template, self.timeout).await?;
                let mut last = String::from("the cluster named no node");
                for node in nodes {
                    match pubsub(&node, self.connect_timeout).await {
                        Ok(connected) => return Ok(connected),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
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
    /// On a Cluster, `_around` is a channel a new watcher watches: the barrier's channel is
    /// named after it, so that a user allowed that channel may publish the barrier.
    async fn catch_up(
        &self, sink: &mut PubSubSink, messages: &mut PubSubStream, _around: Option<&str>,
    ) -> std::result::Result<(), Broken> {
        #[cfg(feature = "cluster")]
        if let (Source::Cluster { conn, .. }, Some(channel)) = (&self.source, _around) {
            return self
                .catch_up_with_cluster(conn, sink, messages, channel)
                .await;
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
    async fn timed(
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
    fn dispatch(&self, message: &Msg) {
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
async fn pubsub(
    client: &Client, connect_timeout: Duration,
) -> std::result::Result<redis::aio::PubSub, String> {
    match tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(feature = "cluster")]
use cluster::cluster_nodes;

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

/// The Cluster side of the feed: the nodes, and a listener of expired-key events on each.
#[cfg(feature = "cluster")]
mod cluster {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;
    use redis::{Client, ConnectionAddr};
    use tokio::task::JoinHandle;

    use crate::backend::kit::feed::Hub;
    use crate::backends::redis::feed::{
        Broken, Connection, RETRY_MAX, RETRY_MIN, Source, parse_nodes, pubsub,
    };

    /// The listener tasks, stopped when dropped.
    pub(super) struct Listeners(Vec<JoinHandle<()>>);

    impl Drop for Listeners {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }

    impl Connection {
        /// `catch_up` on a Cluster, where a change written on another node may still be on its way
        /// over the cluster bus when the connected node answers a `PING`: every primary publishes
        /// a token on the feed's barrier channel, and once the connection has heard all of them,
        /// it has heard everything those primaries published before (the bus carries one node's
        /// messages to another in order).
        pub(super) async fn catch_up_with_cluster(
            &self, conn: &redis::cluster_async::ClusterConnection,
            sink: &mut redis::aio::PubSubSink, messages: &mut redis::aio::PubSubStream,
            around: &str,
        ) -> Result<(), Broken> {
            use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
            use std::sync::atomic::{AtomicU64, Ordering};
            static TOKENS: AtomicU64 = AtomicU64::new(0);
            let broken = |e: String| Broken(e);
            // `@` appears in no feed's channel: the barrier is a channel of its own.
            let barrier = &*format!("{around}@barrier:{}", self.barrier);
            if let Err(e) = self.timed(sink.subscribe(barrier)).await? {
                return Err(broken(format!(
                    "cannot subscribe to the feed's barrier: {e}"
                )));
            }
            let token = TOKENS.fetch_add(1, Ordering::Relaxed).to_string();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(barrier).arg(&token);
            let mut conn = conn.clone();
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let published =
                tokio::time::timeout(self.timeout, conn.route_command(publish, routing));
            let primaries = match published.await {
                Ok(Ok(redis::Value::Map(replies))) => replies.len(),
                Ok(Ok(other)) => return Err(broken(format!("unexpected barrier reply {other:?}"))),
                Ok(Err(e)) => {
                    return Err(broken(format!("cannot publish the feed's barrier: {e}")));
                }
                Err(_) => return Err(broken("the barrier was not published in time".into())),
            };
            let mut heard = 0;
            let deadline = tokio::time::Instant::now() + self.timeout;
            while heard < primaries {
                let message = tokio::time::timeout_at(deadline, messages.next()).await;
                match message {
                    Ok(Some(message)) => {
                        if message.get_channel_name() == barrier {
                            heard += usize::from(message.get_payload_bytes() == token.as_bytes());
                        } else {
                            self.dispatch(&message);
                        }
                    }
                    Ok(None) => return Err(broken("the connection closed".into())),
                    Err(_) => {
                        return Err(broken(format!(
                            "{heard} of {primaries} primaries' barrier messages arrived in time"
                        )));
                    }
                }
            }
            // A refusal to unsubscribe leaves nothing to undo.
            let _ = self.timed(sink.unsubscribe(barrier)).await?;
            Ok(())
        }

        /// Starts a listener on every node of the cluster while `wanted`, and stops them when
        /// not. A cluster that cannot be asked for its nodes is asked again at the next wake.
        pub(super) async fn keep_expiry_listeners(
            &self, listeners: &mut Option<Listeners>, wanted: bool,
        ) {
            if !wanted {
                *listeners = None;
                return;
            }
            if listeners.is_some() {
                return;
            }
            let Source::Cluster { conn, template } = &self.source else {
                return;
            };
            let Ok(nodes) = cluster_nodes(conn, template, self.timeout).await else {
                return;
            };
            let tasks = nodes
                .into_iter()
                .map(|node| {
                    tokio::spawn(listen(
                        node,
                        self.hub.clone(),
                        self.expired_channel.clone(),
                        self.connect_timeout,
                        self.timeout,
                    ))
                })
                .collect();
            *listeners = Some(Listeners(tasks));
        }
    }

    /// Hears one node's expired-key events, reconnecting when its connection breaks (a node
    /// killed for good is tried again every two seconds, at no cost to the others). When a
    /// connection that was subscribed breaks, watchers hear of the gap at once. A node that
    /// refuses the subscription (an ACL user without the channel) is left alone.
    async fn listen(
        node: Client, hub: Arc<Hub>, channel: Arc<str>, connect_timeout: Duration,
        timeout: Duration,
    ) {
        let mut retry = RETRY_MIN;
        loop {
            if let Ok(mut connection) = pubsub(&node, connect_timeout).await {
                match tokio::time::timeout(timeout, connection.subscribe(&*channel)).await {
                    Ok(Ok(())) => {
                        retry = RETRY_MIN;
                        let mut messages = connection.into_on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) {
                                hub.publish_expired(key);
                            }
                        }
                        hub.interrupt(&hub.channels());
                    }
                    Ok(Err(e)) if e.code().is_some() => return,
                    _ => {}
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// A client for every node the cluster knows now (`CLUSTER NODES`), with the settings of
    /// `template`.
    pub(crate) async fn cluster_nodes(
        conn: &redis::cluster_async::ClusterConnection, template: &Client, timeout: Duration,
    ) -> Result<Vec<Client>, String> {
        let mut conn = conn.clone();
        let command = redis::cmd("CLUSTER").arg("NODES").to_owned();
        let reply: String =
            match tokio::time::timeout(timeout, command.query_async(&mut conn)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => return Err(format!("cannot list the cluster's nodes: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the cluster did not list its nodes within {timeout:?}"
                    ));
                }
            };
        Ok(parse_nodes(&reply)
            .filter_map(|node| node_client(template, node.host, node.port))
            .collect())
    }

    fn node_client(template: &Client, host: &str, port: u16) -> Option<Client> {
        let info = template.get_connection_info().clone();
        let address = match info.addr() {
            ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host.to_owned(), port),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => return None,
        };
        Client::open(info.set_addr(address)).ok()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn node_lines_give_their_address() {
            let reply = "07c3 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected\n\
                         67ed 127.0.0.1:30002@40002,host.example master - 0 1 2 connected 5461-10922\n\
                         2929 :0@0 master,noaddr - 0 1 3 connected\n";
            let nodes: Vec<_> = super::super::parse_nodes(reply)
                .map(|node| (node.host, node.port, node.primary))
                .collect();
            assert_eq!(
                nodes,
                [("127.0.0.1", 30004, false), ("127.0.0.1", 30002, true)]
            );
        }
    }
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

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
