//! The storage engines: each implements the [`Backend`](crate::Backend) contract, and each is
//! built only with its feature.

pub(crate) mod memory;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "redis")]
pub(crate) mod redis;
