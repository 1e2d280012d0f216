//! Building blocks for engines, public so that an engine in another crate behaves exactly like
//! the built-in ones: counters kept as decimal text, the backoff between retries of a lost
//! conditional write, and (inside this crate for now) the watcher queues of a change feed.

mod backoff;
mod count;
mod counters;
pub(crate) mod feed;

pub use crate::backend::provided::write_many as write_each;
pub use backoff::Backoff;
pub use count::{count, unix_time};
pub use counters::{incr_step, not_a_counter, parse_counter};

/// A warning event at target `state_store`, with the feature; nothing without it.
macro_rules! warn_event {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::warn!(target: "state_store", $($arg)*);
    };
}
pub(crate) use warn_event;
