//! The Cluster side of the change feed: the feed's connection to any node, a listener of
//! expired-key events on every node, and the barrier that catches a new watcher up with what the
//! other nodes published.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{Client, ConnectionAddr};

use crate::backend::BoxFuture;
use crate::backend::kit::feed::Hub;
use crate::backends::redis::feed::{
    Broken, Connection, Listeners, RETRY_MAX, RETRY_MIN, Source, parse_nodes, pubsub,
};

/// The feed's source on a Cluster: any node for the feeds' channels (the cluster bus carries a
/// `PUBLISH` to every node), and every node for the expired-key events, which each primary
/// announces only on itself. Replicas announce none, so listening on all nodes hears each expiry
/// once, and hears a promoted replica's without a topology change to follow.
pub(crate) struct ClusterSource {
    conn: redis::cluster_async::ClusterConnection,
    /// The client of the first node given: its settings (credentials, TLS) for every node.
    template: Client,
    /// What makes this feed's barrier channels its own: the process and a number no other
    /// feed of the process has.
    barrier: Arc<str>,
}

impl Source for ClusterSource {
    /// The first node that answers, of those the cluster knows now.
    fn connect(
        &self, connect_timeout: Duration, timeout: Duration,
    ) -> BoxFuture<'_, Result<redis::aio::PubSub, String>> {
        Box::pin(async move {
            let nodes = cluster_nodes(&self.conn, &self.template, timeout).await?;
            let mut last = String::from("the cluster named no node");
            for node in nodes {
                match pubsub(&node, connect_timeout).await {
                    Ok(connected) => return Ok(connected),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    fn listens_for_expiries(&self) -> bool {
        true
    }

    fn keep_expiry_listeners<'a>(
        &'a self, feed: &'a Connection, listeners: &'a mut Option<Listeners>, wanted: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.keep_listeners(feed, listeners, wanted))
    }

    fn catch_up<'a>(
        &'a self, feed: &'a Connection, sink: &'a mut redis::aio::PubSubSink,
        messages: &'a mut redis::aio::PubSubStream, around: &'a str,
    ) -> Option<BoxFuture<'a, Result<(), Broken>>> {
        Some(Box::pin(
            self.catch_up_with_barrier(feed, sink, messages, around),
        ))
    }
}

impl ClusterSource {
    /// The source of a feed over `conn`, whose nodes get the settings of `template`.
    pub(crate) fn new(conn: redis::cluster_async::ClusterConnection, template: Client) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static FEEDS: AtomicU64 = AtomicU64::new(0);
        let feed = FEEDS.fetch_add(1, Ordering::Relaxed);
        let barrier = Arc::from(format!("{}:{feed}", std::process::id()));
        ClusterSource {
            conn,
            template,
            barrier,
        }
    }

    /// `catch_up` on a Cluster, where a change written on another node may still be on its way
    /// over the cluster bus when the connected node answers a `PING`: every primary publishes
    /// a token on the feed's barrier channel, and once the connection has heard all of them,
    /// it has heard everything those primaries published before (the bus carries one node's
    /// messages to another in order).
    async fn catch_up_with_barrier(
        &self, feed: &Connection, sink: &mut redis::aio::PubSubSink,
        messages: &mut redis::aio::PubSubStream, around: &str,
    ) -> Result<(), Broken> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
        use std::sync::atomic::{AtomicU64, Ordering};
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let broken = |e: String| Broken(e);
        // `@` appears in no feed's channel: the barrier is a channel of its own.
        let barrier = &*format!("{around}@barrier:{}", self.barrier);
        if let Err(e) = feed.timed(sink.subscribe(barrier)).await? {
            return Err(broken(format!(
                "cannot subscribe to the feed's barrier: {e}"
            )));
        }
        let token = TOKENS.fetch_add(1, Ordering::Relaxed).to_string();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(barrier).arg(&token);
        let mut conn = self.conn.clone();
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let published = tokio::time::timeout(feed.timeout, conn.route_command(publish, routing));
        let primaries = match published.await {
            Ok(Ok(redis::Value::Map(replies))) => replies.len(),
            Ok(Ok(other)) => return Err(broken(format!("unexpected barrier reply {other:?}"))),
            Ok(Err(e)) => {
                return Err(broken(format!("cannot publish the feed's barrier: {e}")));
            }
            Err(_) => return Err(broken("the barrier was not published in time".into())),
        };
        let mut heard = 0;
        let deadline = tokio::time::Instant::now() + feed.timeout;
        while heard < primaries {
            let message = tokio::time::timeout_at(deadline, messages.next()).await;
            match message {
                Ok(Some(message)) => {
                    if message.get_channel_name() == barrier {
                        heard += usize::from(message.get_payload_bytes() == token.as_bytes());
                    } else {
                        feed.dispatch(&message);
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
        let _ = feed.timed(sink.unsubscribe(barrier)).await?;
        Ok(())
    }

    /// Starts a listener on every node of the cluster while `wanted`, and stops them when
    /// not. A cluster that cannot be asked for its nodes is asked again at the next wake.
    async fn keep_listeners(
        &self, feed: &Connection, listeners: &mut Option<Listeners>, wanted: bool,
    ) {
        if !wanted {
            *listeners = None;
            return;
        }
        if listeners.is_some() {
            return;
        }
        let Ok(nodes) = cluster_nodes(&self.conn, &self.template, feed.timeout).await else {
            return;
        };
        let tasks = nodes
            .into_iter()
            .map(|node| {
                tokio::spawn(listen(
                    node,
                    feed.hub.clone(),
                    feed.expired_channel.clone(),
                    feed.connect_timeout,
                    feed.timeout,
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
    node: Client, hub: Arc<Hub>, channel: Arc<str>, connect_timeout: Duration, timeout: Duration,
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
    let reply: String = match tokio::time::timeout(timeout, command.query_async(&mut conn)).await {
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
        let nodes: Vec<_> = crate::backends::redis::feed::parse_nodes(reply)
            .map(|node| (node.host, node.port, node.primary))
            .collect();
        assert_eq!(
            nodes,
            [("127.0.0.1", 30004, false), ("127.0.0.1", 30002, true)]
        );
    }
}
