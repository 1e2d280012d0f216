//! Leases on NATS JetStream KV, by revision. The lease's value is the plain JSON under its key,
//! as any value's; its token is the revision (stream sequence) of the write that acquired it,
//! which grows across expiry, release and removal (a delete marker takes a sequence too) and
//! survives a restart of a server with file storage.
//!
//! A bucket's `max_age` counts from each write, so an extension writes the value again (a
//! compare-and-set on the revision it read) and carries the acquisition's token in a header of
//! its own, `State-Store-Lease-Token`: every process reads the same token from the last
//! message of the key. Fenced writes are not offered: the lease and the written key are in two
//! buckets (two streams), which no write checks atomically.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;

use super::names::encode_key;
use super::{Access, Bucket, NatsBackend, RACE_ATTEMPTS, backend_error, left_since};
use crate::backend::{BoxFuture, Expiry, FencedWrites, HeldLease, LeaseKey, Leases, Notify};
use crate::{Error, Result};

/// The header of an extension's message: the token of the lease it extends.
const TOKEN: &str = "State-Store-Lease-Token";

/// The last message of a key whose lease is live.
struct Live {
    message: StreamMessage,
    token: u64,
    left: Duration,
}

impl NatsBackend {
    /// The last message under the lease's key: `Ok(Err(revision))` when it is not a live lease
    /// (`revision` is what a create must expect: 0 for none, else that of the delete marker or
    /// of the value past its `max_age`).
    async fn last(
        &self, bucket: &Bucket, nkey: &str, key: &str, operation: &'static str,
    ) -> Result<Result<Live, u64>> {
        let subject = format!("{}{nkey}", bucket.kv.prefix);
        let message = match bucket
            .kv
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Err(0)),
            Err(e) => return Err(backend_error(operation, key, e)),
        };
        let put = message
            .headers
            .get("KV-Operation")
            .is_none_or(|op| op.as_str() == "PUT");
        let left = left_since(message.time.unix_timestamp_nanos(), bucket.max_age);
        match (put, left) {
            (true, Some(left)) => {
                let token = message
                    .headers
                    .get(TOKEN)
                    .and_then(|token| token.as_str().parse().ok())
                    .unwrap_or(message.sequence);
                Ok(Ok(Live {
                    left: left.unwrap_or(Duration::MAX),
                    token,
                    message,
                }))
            }
            _ => Ok(Err(message.sequence)),
        }
    }

    /// Writes `value` under `nkey` if its last revision is `expected`, with the header of an
    /// extension of `token` when given: the revision written, or `None` when another write came
    /// first.
    async fn publish_expecting(
        &self, (bucket, nkey, key): (&Bucket, &str, &str), value: Vec<u8>, expected: u64,
        token: Option<u64>, operation: &'static str,
    ) -> Result<Option<u64>> {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert(TOKEN, token.to_string().as_str());
        }
        // The subject a KV put goes to. (Buckets opened by this backend use the default
        // JetStream API prefix, so no domain prefix goes before it.)
        let kv = &bucket.kv;
        let subject = format!("{}{nkey}", kv.put_prefix.as_ref().unwrap_or(&kv.prefix));
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let published = self
            .inner
            .js
            .publish_with_headers(subject, headers, value.into())
            .await
            .map_err(|e| backend_error(operation, key, e))?;
        match published.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(backend_error(operation, key, e)),
        }
    }

    /// The bucket and key of a lease: for a write (`ttl` given), created when missing and made
    /// to keep values `ttl`; else opened for a read or, with `release`, a removal. Either way
    /// the bucket of a durable lease type gets its replicas when it is written.
    async fn lease_bucket(
        &self, lease: LeaseKey<'_>, ttl: Option<Duration>, release: bool, operation: &'static str,
    ) -> Result<Option<(std::sync::Arc<Bucket>, String)>> {
        let (prefix, rest) = self.split(lease.key)?;
        let access = if release {
            Access::Remove {
                durable: lease.durable,
            }
        } else {
            Access::Read
        };
        let bucket = match ttl {
            Some(ttl) => {
                let expiry = Expiry::After(ttl);
                Some(
                    self.bucket_for_write(prefix, expiry, lease.durable, lease.key, operation)
                        .await?,
                )
            }
            None => self.bucket(prefix, access, lease.key).await?,
        };
        Ok(bucket.map(|bucket| (bucket, encode_key(rest))))
    }
}

impl Leases for NatsBackend {
    fn acquire<'a>(
        &'a self, lease: LeaseKey<'a>, value: Vec<u8>, ttl: Duration, _notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            let key = lease.key;
            let Some((bucket, nkey)) = self
                .lease_bucket(lease, Some(ttl), false, "acquire")
                .await?
            else {
                unreachable!("created when missing");
            };
            for _ in 0..RACE_ATTEMPTS {
                let expected = match self.last(&bucket, &nkey, key, "acquire").await? {
                    Ok(_) => return Ok(None),
                    Err(expected) => expected,
                };
                let place = (&*bucket, nkey.as_str(), key);
                let written = self
                    .publish_expecting(place, value.clone(), expected, None, "acquire")
                    .await?;
                if let Some(token) = written {
                    return Ok(Some(token));
                }
            }
            Err(Error::Conflict {
                key: key.to_owned(),
                attempts: RACE_ATTEMPTS,
            })
        })
    }

    fn holder<'a>(&'a self, lease: LeaseKey<'a>) -> BoxFuture<'a, Result<Option<HeldLease>>> {
        Box::pin(async move {
            let Some((bucket, nkey)) = self.lease_bucket(lease, None, false, "holder").await?
            else {
                return Ok(None);
            };
            Ok(self
                .last(&bucket, &nkey, lease.key, "holder")
                .await?
                .ok()
                .map(|live| HeldLease::new(live.message.payload.to_vec(), live.token, live.left)))
        })
    }

    fn extend<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((bucket, nkey)) = self.lease_bucket(lease, Some(ttl), false, "extend").await?
            else {
                return Ok(false);
            };
            let Ok(live) = self.last(&bucket, &nkey, lease.key, "extend").await? else {
                return Ok(false);
            };
            if live.token != token {
                return Ok(false);
            }
            let value = live.message.payload.to_vec();
            let expected = live.message.sequence;
            let place = (&*bucket, nkey.as_str(), lease.key);
            let written = self
                .publish_expecting(place, value, expected, Some(token), "extend")
                .await?;
            Ok(written.is_some())
        })
    }

    fn release<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, _notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((bucket, nkey)) = self.lease_bucket(lease, None, true, "release").await?
            else {
                return Ok(false);
            };
            let Ok(live) = self.last(&bucket, &nkey, lease.key, "release").await? else {
                return Ok(false);
            };
            if live.token != token {
                return Ok(false);
            }
            let revision = Some(live.message.sequence);
            match bucket.kv.delete_expect_revision(&nkey, revision).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(backend_error("release", lease.key, e)),
            }
        })
    }

    fn fenced_writes(&self) -> FencedWrites {
        FencedWrites::Unsupported
    }
}
