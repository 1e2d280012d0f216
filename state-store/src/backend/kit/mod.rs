//! Building blocks for engines, public so that an engine in another crate behaves exactly like
//! the built-in ones: counters kept as decimal text ([`parse_counter`], [`incr_step`]), the
//! provided counter loop on a clock of your choice ([`count`]), the backoff between retries of a
//! lost conditional write ([`Backoff`]), a batch written key by key ([`write_each`]), and the
//! watcher queues of a change feed ([`feed`]), and a journal kept in process ([`journal`]).

mod backoff;
mod count;
mod counters;
pub mod feed;
pub mod journal;
mod write;

pub use backoff::{Backoff, RETRIES};
pub use count::{count, unix_time};
pub use counters::{incr_step, not_a_counter, parse_counter};
pub use write::write_each;

/// A warning event at target `state_store`, with the feature; nothing without it.
macro_rules! warn_event {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::warn!(target: "state_store", $($arg)*);
    };
}
pub(crate) use warn_event;
