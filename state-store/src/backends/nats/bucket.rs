//! A type's bucket: opened, or created at its first write; a durable type's with
//! [`NatsOptions::durable_replicas`] replicas and reads from its stream's leader, and raised to
//! them when found with fewer; its `max_age` changed to a declared ttl.
//!
//! [`NatsOptions::durable_replicas`]: super::NatsOptions::durable_replicas

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::names::{bucket_name, valid_bucket};
use super::{Access, Bucket, NatsBackend, backend_error, fits, max_age, read, write};
use crate::backend::{Backend, Expiry};
use crate::{Error, Result};

impl Access {
    fn creates(self) -> bool {
        matches!(self, Access::Write { .. })
    }

    fn durable(self) -> bool {
        matches!(
            self,
            Access::Remove { durable: true } | Access::Write { durable: true }
        )
    }
}

impl Bucket {
    /// Whether the bucket is as a durable type's must be: at least `wanted` replicas, and
    /// reads from the leader only when there are several (see [`durable_config`]).
    fn durable_as(&self, wanted: usize) -> bool {
        self.replicas >= wanted && (self.replicas == 1 || !self.direct)
    }
}

/// Makes `config` that of a durable type's bucket with `wanted` replicas: at least that many,
/// and without direct gets when there are several, since with them every replica answers reads
/// and one that has not applied an acknowledged write yet answers without it (measured on
/// NATS 2.9.10: 10 of 3,000 reads right after the write were stale or missing). Reads then go
/// to the stream's leader, which acknowledged the write. Whether it changed anything.
fn durable_config(config: &mut jetstream::stream::Config, wanted: usize) -> bool {
    let replicas = config.num_replicas.max(wanted).max(1);
    let direct = config.allow_direct && replicas == 1;
    let changed = replicas != config.num_replicas || direct != config.allow_direct;
    config.num_replicas = replicas;
    config.allow_direct = direct;
    changed
}

impl NatsBackend {
    /// The bucket of the type `prefix`: opened (and cached), or created when `access` writes;
    /// for a write of a durable type, with at least the durable replicas.
    pub(super) async fn bucket(
        &self, prefix: &str, access: Access, key: &str,
    ) -> Result<Option<Arc<Bucket>>> {
        let cached = read(&self.inner.buckets).get(prefix).cloned();
        let bucket = match cached {
            Some(bucket) => bucket,
            None => match self.open(prefix, access, key).await? {
                Some(bucket) => bucket,
                None => return Ok(None),
            },
        };
        let wanted = self.inner.durable_replicas;
        if !access.durable() || bucket.durable_as(wanted) {
            return Ok(Some(bucket));
        }
        // Made before the type was durable, or by a client with other options: its stream
        // gets the replicas (the servers copy what it holds to the new ones).
        let refused = |why: &dyn fmt::Display| {
            let what = format!(
                "bucket `{}` of a durable type has {} replica(s) and cannot have {wanted}",
                bucket_name(prefix),
                bucket.replicas
            );
            replicas_refused("raise bucket replicas", key, what, why)
        };
        // A server alone would take the count into the stream's config, and keep one copy.
        if wanted > 1 && !self.clustered() {
            return Err(refused(&"the server is not part of a cluster"));
        }
        let raised = self
            .reconfigure(prefix, access, key, |config| durable_config(config, wanted))
            .await
            .map_err(|e| match e {
                Error::Backend {
                    operation: "update bucket",
                    source,
                    ..
                } => refused(&source),
                other => other,
            })?;
        self.settle(prefix, wanted).await;
        Ok(Some(raised))
    }

    /// Whether the server connected to is part of a cluster (its `INFO` names one).
    fn clustered(&self) -> bool {
        self.inner.client.server_info().cluster.is_some()
    }

    /// Waits, at most a request's timeout, until the stream of the bucket of `prefix` has a
    /// leader and `replicas` peers after a change of its replicas: meanwhile the servers move
    /// it to a new group, and a write finds no stream ("no stream found for given subject").
    async fn settle(&self, prefix: &str, replicas: usize) {
        let name = format!("KV_{}", bucket_name(prefix));
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        loop {
            if let Ok(stream) = self.inner.js.get_stream(&name).await
                && let Some(cluster) = &stream.cached_info().cluster
            {
                // (Measured on NATS 2.9.10, from 1 replica to 3: a leader after about 140 ms.)
                if cluster.leader.is_some() && cluster.replicas.len() + 1 >= replicas {
                    return;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens the bucket of the type `prefix`, or creates it when `access` writes: with the
    /// durable replicas for a durable type, else one replica.
    async fn open(&self, prefix: &str, access: Access, key: &str) -> Result<Option<Arc<Bucket>>> {
        let create = access.creates();
        let name = bucket_name(prefix);
        if !valid_bucket(&name) {
            return if create {
                Err(Error::InvalidKey {
                    key: key.to_owned(),
                    reason: format!("`{prefix}` cannot name a NATS bucket"),
                })
            } else {
                Ok(None)
            };
        }
        let js = &self.inner.js;
        let found = match js.get_stream(format!("KV_{name}")).await {
            Ok(_) => true,
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    false
                }
                _ => return Err(backend_error("open bucket", key, e)),
            },
        };
        let kv = if found {
            js.get_key_value(name.as_str())
                .await
                .map_err(|e| backend_error("open bucket", key, e))?
        } else if create {
            // The stream `create_key_value` would make, created directly: that call first
            // reads the account info in a form newer than NATS 2.9 sends.
            let mut config = jetstream::stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age: self.declared_ttl(prefix).map_or(Duration::ZERO, max_age),
                storage: jetstream::stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            };
            if access.durable() {
                durable_config(&mut config, self.inner.durable_replicas);
            }
            let replicas = config.num_replicas;
            let refused = |why: &dyn fmt::Display| {
                let what = format!(
                    "bucket `{name}` of a durable type cannot be created with {replicas} replicas"
                );
                replicas_refused("create bucket", key, what, why)
            };
            if replicas > 1 && !self.clustered() {
                return Err(refused(&"the server is not part of a cluster"));
            }
            if let Err(created) = js.create_stream(config).await {
                // Created by another client meanwhile, perhaps with another `max_age` (or
                // fewer replicas, which the caller raises).
                if js.get_stream(format!("KV_{name}")).await.is_err() {
                    return Err(if replicas == 1 {
                        backend_error("create bucket", key, created)
                    } else {
                        refused(&created)
                    });
                }
            }
            js.get_key_value(name.as_str())
                .await
                .map_err(|e| backend_error("open bucket", key, e))?
        } else {
            return Ok(None);
        };
        let config = &kv.stream.cached_info().config;
        let bucket = Arc::new(Bucket {
            max_age: config.max_age,
            replicas: config.num_replicas.max(1),
            direct: config.allow_direct,
            kv,
        });
        write(&self.inner.buckets).insert(prefix.into(), bucket.clone());
        Ok(Some(bucket))
    }

    /// Changes the stream config of the bucket of `prefix` as `change` says (`false`: no change
    /// needed) and opens the bucket again. The change is made to the config the server
    /// holds now, not to the one cached when the bucket was opened, so that it undoes no
    /// other client's change (a raise of its replicas, a new `max_age`).
    async fn reconfigure(
        &self, prefix: &str, access: Access, key: &str,
        change: impl FnOnce(&mut jetstream::stream::Config) -> bool,
    ) -> Result<Arc<Bucket>> {
        let name = bucket_name(prefix);
        let js = &self.inner.js;
        let stream = js
            .get_stream(format!("KV_{name}"))
            .await
            .map_err(|e| backend_error("open bucket", key, e))?;
        let mut config = stream.cached_info().config.clone();
        if change(&mut config) {
            js.update_stream(config)
                .await
                .map_err(|e| backend_error("update bucket", key, e))?;
        }
        write(&self.inner.buckets).remove(prefix);
        self.open(prefix, access, key)
            .await?
            .ok_or_else(|| Error::Backend {
                operation: "open bucket",
                key: key.to_owned(),
                source: format!("bucket `{name}` was removed meanwhile").into(),
            })
    }

    /// The bucket a write with `expiry` goes to, its `max_age` changed to the declared ttl when
    /// that is what the write asks for; [`Error::Unsupported`] when the bucket cannot give it.
    pub(super) async fn bucket_for_write(
        &self, prefix: &str, expiry: Expiry, durable: bool, key: &str, operation: &'static str,
    ) -> Result<Arc<Bucket>> {
        let access = Access::Write { durable };
        let bucket = self
            .bucket(prefix, access, key)
            .await?
            .expect("created when missing");
        if fits(bucket.max_age, expiry) {
            return Ok(bucket);
        }
        let declared = self.declared_ttl(prefix).map(max_age);
        let unsupported = Error::Unsupported {
            operation,
            backend: self.name(),
        };
        let Some(declared) = declared.filter(|d| fits(*d, expiry) && *d != bucket.max_age) else {
            return Err(unsupported);
        };
        let bucket = self
            .reconfigure(prefix, access, key, |config| {
                config.max_age = declared;
                // JetStream refuses a duplicate window longer than `max_age`.
                if !declared.is_zero()
                    && (config.duplicate_window.is_zero() || config.duplicate_window > declared)
                {
                    config.duplicate_window = declared;
                }
                true
            })
            .await
            .map_err(|e| match e {
                Error::Backend {
                    operation: "update bucket",
                    key,
                    source,
                } => Error::Backend {
                    operation: "update bucket max_age",
                    key,
                    source,
                },
                other => other,
            })?;
        if fits(bucket.max_age, expiry) {
            Ok(bucket)
        } else {
            Err(unsupported)
        }
    }
}

/// The error of a durable type's bucket that cannot have its replicas: `what` could not be done,
/// `why` (the server's answer, or this backend's reason).
fn replicas_refused(
    operation: &'static str, key: &str, what: String, why: &dyn fmt::Display,
) -> Error {
    Error::Backend {
        operation,
        key: key.to_owned(),
        source: format!(
            "{what}: {why} (NatsOptions::durable_replicas sets the count: a cluster gives at \
             most as many as it has JetStream servers, and at most 5; a server alone 1)"
        )
        .into(),
    }
}
