//! Changing a state type: what `previous` costs a read of a value in the current shape.

use serde::{Deserialize, Serialize};
use state_store::{Backend, StateKey, Store};

use crate::stats::Workload;
use crate::typed_vs_raw::typed_gets;

/// `Session` with the same fields and prefix (so it reads the same seeded values), declared
/// with an older shape: every value read is in the current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m", previous = SessionV0)]
pub(crate) struct EvolvedSession {
    user: String,
    cart: Vec<String>,
    locale: String,
    updated_at: i64,
    flags: u32,
}

/// The older shape: one cart item, no locale.
#[derive(Deserialize)]
pub(crate) struct SessionV0 {
    user: String,
    item: String,
}

impl From<SessionV0> for EvolvedSession {
    fn from(old: SessionV0) -> Self {
        EvolvedSession {
            user: old.user,
            cart: vec![old.item],
            locale: "en-GB".into(),
            updated_at: 0,
            flags: 0,
        }
    }
}

/// Typed gets of the seeded sessions as `EvolvedSession`, through `store`.
pub(crate) fn previous_get<B: Backend>(store: &Store<B>, side: &str, tasks: usize) -> Workload {
    typed_gets::<B, EvolvedSession>(store, side, tasks)
}
