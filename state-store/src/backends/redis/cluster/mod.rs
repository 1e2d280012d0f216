//! A Redis Cluster: its constructors. The connection that routes commands to the slots'
//! primaries is `route.rs`; the change feed's listeners on every node are in `feed.rs`.

use std::sync::Arc;

use redis::RedisError;

use self::feed::ClusterSource;
use self::route::Routed;
use super::RedisBackend;
use super::conn::{Inner, RedisConnection};
use super::durable;
use super::feed::RedisFeed;
use super::options::{RedisOptions, durable_lane};
use crate::{Error, Result};

mod feed;
pub(super) mod route;

#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
impl RedisBackend {
    /// Connects to a Redis Cluster through any of its nodes (`redis://` or, with the `tls`
    /// feature, `rediss://` URLs; one is enough, more survive one being down), with default
    /// [`RedisOptions`].
    ///
    /// Every operation keeps its guarantees: single-key operations, counters, rate limits and
    /// `update` touch one key each; `get_many` and `remove_many` are split per hash slot and
    /// their results put back in the caller's order; `set_many` is one atomic `MULTI` per slot,
    /// the slots' transactions sent concurrently (atomic per slot, not across slots: when one
    /// fails, the error says how many of the other keys were written, and the call can be
    /// repeated as a whole); `ids` scans every primary. Change feeds hear `Set` and `Removed`
    /// from every node, and `Expired` from every node's own expired-key events. After a primary
    /// fails, operations on its slots fail with errors until a replica is promoted, then succeed
    /// again through the same backend.
    pub async fn cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::cluster_with(nodes, RedisOptions::default()).await
    }

    /// [`cluster`](Self::cluster) with the given options (timeouts, TLS certificates; retries
    /// bound the cluster connection's own retries of a command after a connection error or a
    /// slot move).
    pub async fn cluster_with<I, S>(nodes: I, options: RedisOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let clients = options.clients(nodes)?;
        let Some(template) = clients.first().cloned() else {
            return Err(Error::Connect {
                target: "a Redis Cluster".into(),
                source: "no node URL was given".into(),
            });
        };
        let target = format!(
            "redis cluster at {}",
            clients
                .iter()
                .map(|c| c.get_connection_info().addr().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let connect_error = |source: RedisError| Error::Connect {
            target: target.clone(),
            source: Box::new(source),
        };
        let build = |options: &RedisOptions| {
            let infos = clients.iter().map(|c| c.get_connection_info().clone());
            let builder = redis::cluster::ClusterClientBuilder::new(infos)
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .retries(u32::try_from(options.reconnect_retries).unwrap_or(u32::MAX))
                .min_retry_wait(100)
                .max_retry_wait(1000);
            #[cfg(feature = "tls")]
            let builder = match options.certificates() {
                Some(certificates) => builder.certs(certificates),
                None => builder,
            };
            builder.build().map_err(connect_error)
        };
        let client = build(&options)?;
        let lane_client = build(&durable_lane(&options))?;
        let bound = options.connect_bound();
        let connect = move |client: redis::cluster::ClusterClient, target: String| async move {
            tokio::time::timeout(bound, client.get_async_connection())
                .await
                .map_err(|_| Error::Connect {
                    target: target.clone(),
                    source: format!("no node answered within {bound:?}").into(),
                })?
                .map_err(|source| Error::Connect {
                    target,
                    source: Box::new(source),
                })
        };
        let conn = connect(client, target.clone()).await?;
        let mut main = RedisConnection::new(Inner::Cluster(Routed(conn.clone())));
        durable::check_durability(&mut main, options.durability, &target).await?;
        let lane_target = target.clone();
        let lane: durable::Connect = Arc::new(move || {
            let conn = connect(lane_client.clone(), lane_target.clone());
            Box::pin(async move { Ok(RedisConnection::new(Inner::Cluster(Routed(conn.await?)))) })
        });
        let source = ClusterSource::new(conn.clone(), template);
        let feed = RedisFeed::new(Arc::new(source), 0, target.clone(), &options);
        Ok(RedisBackend {
            journaling: Arc::default(),
            durable: Arc::new(durable::Durable::new(options.durability, lane)),
            conn: main,
            target,
            db: 0,
            feed: Arc::new(feed),
            // A batch's MGET spans nodes: one failing primary would fail the reads of the
            // healthy ones with it. Each get goes to its own slot's primary instead.
            batch: None,
            cache: None,
        })
    }
}
