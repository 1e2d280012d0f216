//! Redis Sentinel: its constructors. The connection that follows the primary the sentinels name
//! across failovers is `primary.rs`.

use std::sync::Arc;

use redis::RedisError;

use self::primary::{Followed, Primary};
use super::RedisBackend;
use super::conn::{Inner, RedisConnection};
use super::durable;
use super::feed::{RedisFeed, Source, pubsub};
use super::options::{RedisOptions, durable_lane, manager_config};
use crate::backend::BoxFuture;
use crate::{Error, Result};

pub(super) mod primary;

#[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
impl RedisBackend {
    /// Connects to the primary that Redis Sentinel names `master_name`, asking the sentinels at
    /// `sentinels` (`redis://` URLs of the sentinels; their user, password and database, if
    /// any, are used for the sentinels and the primary alike; with the `tls` feature,
    /// `rediss://` for both), with default [`RedisOptions`].
    ///
    /// After a failover it finds the new primary by itself: when a command fails in a way a
    /// failover explains (the connection broke or was refused, no answer in time, `READONLY`
    /// from a primary turned replica), the sentinels are asked again (at most every 200 ms) and
    /// the next commands go to the primary they name. The failing command is not sent again,
    /// so reads and writes fail with errors during the failover and succeed again after it.
    /// A new primary is used only once it has said it is the primary. A replica refuses writes
    /// (`READONLY`), which makes the backend ask again, so writes never land on a replica; reads
    /// sent just after a primary was demoted in place (not killed) may reach it until an error
    /// or a refused write shows the change.
    pub async fn sentinel<I, S>(sentinels: I, master_name: &str) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::sentinel_with(sentinels, master_name, RedisOptions::default()).await
    }

    /// [`sentinel`](Self::sentinel) with the given options (timeouts, retries, TLS
    /// certificates, used for the sentinels and the primary alike).
    pub async fn sentinel_with<I, S>(
        sentinels: I, master_name: &str, options: RedisOptions,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let clients = options.clients(sentinels)?;
        let target = format!("redis primary `{master_name}` named by sentinel");
        let connect_error = |source: RedisError| Error::Connect {
            target: target.clone(),
            source: Box::new(source),
        };
        let Some(first) = clients.first().map(|c| c.get_connection_info().clone()) else {
            return Err(Error::Connect {
                target,
                source: "no sentinel URL was given".into(),
            });
        };
        let db = first.redis_settings().db();
        let client =
            sentinel_client(&clients, &first, master_name, &options).map_err(connect_error)?;
        let primary = Primary::connect(
            client,
            manager_config(&options),
            options.connect_bound(),
            db,
        )
        .await
        .map_err(|reason| Error::Connect {
            target: target.clone(),
            source: reason.into(),
        })?;
        let primary = Arc::new(primary);
        let feed = RedisFeed::new(primary.clone(), db, target.clone(), &options);
        let mut conn = RedisConnection::new(Inner::Sentinel(Followed(primary)));
        durable::check_durability(&mut conn, options.durability, &target).await?;
        let (lane_config, bound) = (
            manager_config(&durable_lane(&options)),
            options.connect_bound(),
        );
        // The durable writes' own connection follows the primary the same way.
        let lane_target = target.clone();
        let master = master_name.to_owned();
        let lane_options = options.clone();
        let lane: durable::Connect = Arc::new(move || {
            let client = sentinel_client(&clients, &first, &master, &lane_options);
            let (config, target) = (lane_config.clone(), lane_target.clone());
            Box::pin(async move {
                let client = client.map_err(|source| Error::Connect {
                    target: target.clone(),
                    source: Box::new(source),
                })?;
                let primary =
                    Primary::connect(client, config, bound, db)
                        .await
                        .map_err(|reason| Error::Connect {
                            target,
                            source: reason.into(),
                        })?;
                let primary = Followed(Arc::new(primary));
                Ok(RedisConnection::new(Inner::Sentinel(primary)))
            })
        });
        Ok(RedisBackend {
            journaling: Arc::default(),
            durable: Arc::new(durable::Durable::new(options.durability, lane)),
            conn,
            target,
            db,
            feed: Arc::new(feed),
            batch: options.batcher(),
            cache: None,
        })
    }
}

/// A client of the sentinels at `clients` for the primary they name `master_name`, with the
/// user, password, database and TLS settings of the first.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
fn sentinel_client(
    clients: &[redis::Client], first: &redis::ConnectionInfo, master_name: &str,
    options: &RedisOptions,
) -> std::result::Result<redis::sentinel::SentinelClient, RedisError> {
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let addresses = clients
        .iter()
        .map(|c| c.get_connection_info().addr().clone());
    let mut builder =
        SentinelClientBuilder::new(addresses, master_name, SentinelServerType::Master)?;
    let settings = first.redis_settings();
    if let Some(username) = settings.username() {
        builder = builder
            .set_client_to_sentinel_username(username)
            .set_client_to_redis_username(username);
    }
    if let Some(password) = settings.password() {
        builder = builder
            .set_client_to_sentinel_password(password)
            .set_client_to_redis_password(password);
    }
    builder = builder.set_client_to_redis_db(settings.db());
    #[cfg(feature = "tls")]
    if let redis::ConnectionAddr::TcpTls { .. } = first.addr() {
        builder = builder
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = options.certificates() {
            builder = builder
                .set_client_to_sentinel_certificates(certificates.clone())
                .set_client_to_redis_certificates(certificates);
        }
    }
    builder.build()
}

/// The feed's connection goes to the primary the sentinels name at each connection: expired-key
/// events are the primary's (a replica deletes what its primary expires, and announces no
/// expiry).
impl Source for Primary {
    fn connect(
        &self, connect_timeout: std::time::Duration, _timeout: std::time::Duration,
    ) -> BoxFuture<'_, std::result::Result<redis::aio::PubSub, String>> {
        Box::pin(async move {
            let client = self.resolve().await?;
            pubsub(&client, connect_timeout).await
        })
    }
}
