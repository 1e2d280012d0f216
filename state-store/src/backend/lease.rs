//! Leases with fencing tokens: a capability of its own ([`Leases`], reached through
//! [`Extensions::leases`](super::Extensions::leases)), and the [`Fence`] a write may carry in its
//! options ([`PutOptions::fence`](super::PutOptions::fence),
//! [`RemoveOptions::fence`](super::RemoveOptions::fence),
//! [`UpdateOptions::fence`](super::UpdateOptions::fence)).
//!
//! A lease is a value under a key of a `#[state(lease)]` type (who holds it, as plain JSON),
//! with an expiry and a **token**: a number strictly greater than every token handed out
//! earlier for the same key, across expiry, release and removal of the key. A write made under
//! a lease carries its [`Fence`]; an engine that offers fenced writes checks it in the same
//! atomic step as the write, by the rules of [`FencedWrites`], and refuses a write it must not
//! make with [`Error::LeaseLost`](crate::Error::LeaseLost), writing nothing.

use std::time::Duration;

use super::{BoxFuture, Notify};
use crate::Result;

/// A lease's key: the full key, and the prefix of its type (`{namespace}:{prefix}`, the
/// channel form of [`Notify`]), which the key starts with, followed by `:` and the id. An engine
/// that keeps a lease's token beside its value names that record from the prefix and the id,
/// so that it stays within the namespace and out of the type's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LeaseKey<'a> {
    /// The full key of the lease.
    pub key: &'a str,
    /// `{namespace}:{prefix}` of the lease type: `key` is `{prefix}:{id}`.
    pub prefix: &'a str,
    /// Whether the lease type is durable: its acquisitions, extensions and releases answer
    /// once they got as far as the engine's [`Durability`](super::Durability) asks.
    pub durable: bool,
    /// Whether the lease type keeps a journal (`#[state(notify, history = N)]`): the writes
    /// of `acquire` and `release` append their change to it, as
    /// [`PutOptions::history`](super::PutOptions::history) says.
    pub history: Option<u64>,
}

impl<'a> LeaseKey<'a> {
    /// The lease under `key`, a key of the type whose prefix (namespace included) is `prefix`.
    pub fn new(key: &'a str, prefix: &'a str) -> LeaseKey<'a> {
        LeaseKey {
            key,
            prefix,
            durable: false,
            history: None,
        }
    }

    /// The lease of a type that keeps a journal of about `history` entries.
    pub fn history(mut self, history: Option<u64>) -> LeaseKey<'a> {
        self.history = history;
        self
    }

    /// The lease of a durable type.
    pub fn durable(mut self, durable: bool) -> LeaseKey<'a> {
        self.durable = durable;
        self
    }

    /// The id part of the key: what follows `{prefix}:`.
    pub fn id(&self) -> &'a str {
        self.key
            .strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or(self.key)
    }
}

/// The lease a write is made under: the write lands only if the engine's rules
/// ([`FencedWrites`]) accept `token`, checked in the same atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Fence<'a> {
    /// The lease's key.
    pub lease: LeaseKey<'a>,
    /// The lease's token.
    pub token: u64,
    /// The lease type's ttl: how long an engine that records the newest token beside the
    /// written key keeps that record after the key is removed.
    pub ttl: Duration,
    /// `{namespace}:{prefix}` of the written key's type (the key is `{prefix}:{id}`), for an
    /// engine that keeps its record of accepted tokens beside the written key.
    pub prefix: &'a str,
}

impl<'a> Fence<'a> {
    /// A write under the lease `lease` with `token`, to a key of the type whose prefix
    /// (namespace included) is `prefix`.
    pub fn new(lease: LeaseKey<'a>, token: u64, ttl: Duration, prefix: &'a str) -> Fence<'a> {
        Fence {
            lease,
            token,
            ttl,
            prefix,
        }
    }

    /// The error of a write this fence refused: [`Error::LeaseLost`](crate::Error::LeaseLost)
    /// naming the lease's key and token.
    pub fn lost(&self) -> crate::Error {
        crate::Error::LeaseLost {
            key: self.lease.key.to_owned(),
            token: self.token,
        }
    }
}

/// Which of the two rules of a fenced write an engine checks, in the same atomic step as the
/// write. A refused write is [`Error::LeaseLost`](crate::Error::LeaseLost) and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FencedWrites {
    /// No fenced writes: a write with a [`Fence`] is
    /// [`Error::Unsupported`](crate::Error::Unsupported) (the engine cannot check a lease and
    /// write atomically, as NATS JetStream KV cannot across two buckets).
    Unsupported,
    /// The fencing rule: a write is refused when the written key has already accepted a fenced
    /// write from a newer token of the same lease key. A holder whose lease expired can still
    /// write while nobody newer has written there (Redis Cluster, where the lease and the
    /// written key live on different nodes).
    FencingRule,
    /// The fencing rule and the currency rule: a write is refused as soon as the lease is no
    /// longer the current one (expired, released, removed or taken), even before a newer
    /// holder wrote (the memory engine; Redis on one server or under Sentinel).
    CurrentLease,
}

/// What [`Leases::holder`] finds: the lease's value, token and time left.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLease {
    /// The bytes stored under the lease key.
    pub value: Vec<u8>,
    /// The holder's token (0 for a value written under the key without a lease).
    pub token: u64,
    /// Time left before the lease expires.
    pub expires_in: Duration,
}

impl HeldLease {
    /// A lease held with `value` and `token`, expiring in `expires_in`.
    pub fn new(value: Vec<u8>, token: u64, expires_in: Duration) -> HeldLease {
        HeldLease {
            value,
            token,
            expires_in,
        }
    }
}

/// Leases with fencing tokens, for `#[state(lease)]` types: a capability of its own, reached
/// through [`Extensions::leases`](super::Extensions::leases).
///
/// A lease is a value under a key of a lease type (who holds it, as plain JSON), with an expiry
/// and a **token**: a number strictly greater than every token handed out earlier for the same
/// key, across expiry, release and removal of the key. A write made under a lease carries its
/// [`Fence`] in its options ([`PutOptions::fence`](super::PutOptions::fence),
/// [`RemoveOptions::fence`](super::RemoveOptions::fence),
/// [`UpdateOptions::fence`](super::UpdateOptions::fence)); an engine that offers fenced writes
/// checks it in the same atomic step as the write, by the rules of [`FencedWrites`], and refuses
/// a write it must not make with [`Error::LeaseLost`](crate::Error::LeaseLost), writing nothing.
///
/// Each method is one atomic step.
pub trait Leases: Send + Sync {
    /// Takes the lease under `lease` when nobody holds it (no value, or it expired): writes
    /// `value` with an expiry of `ttl`, announced as a `Set` on `notify`'s feed, and answers its
    /// token, strictly greater than every token handed out before for this key. `None` when
    /// somebody holds it (nothing changed).
    fn acquire<'a>(
        &'a self, lease: LeaseKey<'a>, value: Vec<u8>, ttl: Duration, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Who holds the lease now, or `None`.
    fn holder<'a>(&'a self, lease: LeaseKey<'a>) -> BoxFuture<'a, Result<Option<HeldLease>>>;

    /// Resets the lease's expiry to `ttl` if it is still the one with `token`; `false` when it
    /// is lost (expired, released, removed or taken), in which case nothing changes.
    fn extend<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Removes the lease if it is still the one with `token`, announced as `Removed` on
    /// `notify`'s feed; `false` when it was already lost (nothing changes: another holder's
    /// lease is never removed).
    fn release<'a>(
        &'a self, lease: LeaseKey<'a>, token: u64, notify: Notify<'a>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Which rules the engine's fenced writes follow. An engine answering anything but
    /// [`FencedWrites::Unsupported`] checks the `fence` of every write it is given.
    fn fenced_writes(&self) -> FencedWrites;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_key_knows_its_id() {
        assert_eq!(LeaseKey::new("svc:job:42", "svc:job").id(), "42");
        assert_eq!(LeaseKey::new("svc:job:a:b", "svc:job").id(), "a:b");
    }
}
