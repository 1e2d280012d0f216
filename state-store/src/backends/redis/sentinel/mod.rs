//! Redis Sentinel: its constructors. The connection that follows the primary the sentinels name
//! across failovers is `primary.rs`.

use std::sync::Arc;

use redis::RedisError;

use self::primary::{Followed, Primary};
use super::RedisBackend;
use super::conn::{Inner, RedisConnection};
use super::feed::{RedisFeed, Source, pubsub};
use super::options::{RedisOptions, manager_config};
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
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
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
        let addresses = clients
            .iter()
            .map(|c| c.get_connection_info().addr().clone());
        let mut builder =
            SentinelClientBuilder::new(addresses, master_name, SentinelServerType::Master)
                .map_err(connect_error)?;
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
        let db = settings.db();
        builder = builder.set_client_to_redis_db(db);
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
        let client = builder.build().map_err(connect_error)?;
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
        Ok(RedisBackend {
            conn: RedisConnection::new(Inner::Sentinel(Followed(primary))),
            target,
            db,
            feed: Arc::new(feed),
            batch: options.batcher(),
            cache: None,
        })
    }
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
