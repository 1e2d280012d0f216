//! How far a write of a durable type must get before it is acknowledged ([`Durability`]).

use std::time::Duration;

/// How far a write of a `#[state(durable)]` type must get before the call returns `Ok`: to how
/// many replicas, or onto which disks. A write that does not get there within `timeout` is
/// [`Error::NotDurable`](crate::Error::NotDurable): it was applied on the primary, and a failover
/// may lose it.
///
/// An engine applies its own (the Redis engine's
/// [`RedisOptions::durability`](crate::RedisOptions::durability)); writes of types without
/// `durable` never wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledged once `count` replicas have the write (Redis's `WAIT`), waiting at most
    /// `timeout`. The default: one replica, one second.
    Replicas {
        /// How many replicas must have the write.
        count: u32,
        /// How long to wait for them.
        timeout: Duration,
    },
    /// Acknowledged once the write is in the append-only file of the primary (`local`) and of
    /// `replicas` replicas (Redis 7.2+ and Valkey's `WAITAOF`), waiting at most `timeout`. The
    /// primary's own file counts as one copy in [`Error::NotDurable`](crate::Error::NotDurable)'s
    /// counts.
    Persisted {
        /// Whether the primary's own append-only file must have it (the server needs
        /// `appendonly yes`).
        local: bool,
        /// How many replicas' append-only files must have it.
        replicas: u32,
        /// How long to wait for them.
        timeout: Duration,
    },
}

impl Durability {
    /// The time a write waits at most.
    pub fn timeout(&self) -> Duration {
        match *self {
            Durability::Replicas { timeout, .. } | Durability::Persisted { timeout, .. } => timeout,
        }
    }

    /// How many copies the write needs: replicas, plus the primary's append-only file for
    /// `Persisted { local: true, .. }`.
    pub fn required(&self) -> u32 {
        match *self {
            Durability::Replicas { count, .. } => count,
            Durability::Persisted {
                local, replicas, ..
            } => replicas.saturating_add(u32::from(local)),
        }
    }
}

impl Default for Durability {
    /// One replica, within one second.
    fn default() -> Durability {
        Durability::Replicas {
            count: 1,
            timeout: Duration::from_secs(1),
        }
    }
}
