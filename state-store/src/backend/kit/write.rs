//! A batch of writes, one key at a time.

use crate::Result;
use crate::backend::{Backend, WriteMany};

/// The provided [`Backend::write_many`]: one [`put`](Backend::put) or
/// [`remove`](Backend::remove) per key, in order, stopping at the first error; how many were
/// written, or how many existed. For an engine that overrides `write_many` for the batches it
/// does better (all or nothing) and hands the others here.
pub async fn write_each<B: Backend + ?Sized>(backend: &B, batch: WriteMany<'_>) -> Result<u64> {
    let mut done = 0;
    match batch {
        WriteMany::Put { items, options } => {
            for (key, value) in items {
                done += u64::from(backend.put(&key, value, options.clone()).await?);
            }
        }
        WriteMany::Remove { keys, options } => {
            for key in keys {
                done += u64::from(backend.remove(key, options.clone()).await?);
            }
        }
    }
    Ok(done)
}
