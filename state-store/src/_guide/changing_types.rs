//! Changing a state type: adding and renaming fields, `previous` types and `migrate`.
//!
//! State outlives the code that wrote it: a session written by yesterday's release is read by
//! today's, and during a rolling deploy both releases run at once. How to change a state type
//! without turning every older value into `Error::Decode`:
//!
//! **Adding a field.** `#[serde(default)]` on it: older values read with the default, and the old
//! release, reading values the new one wrote, ignores the field it does not know (serde's default;
//! not with `#[serde(deny_unknown_fields)]`). Nothing to migrate.
//!
//! **Renaming a field.** `#[serde(alias = "old_name")]`: both names read. Values are written under
//! the new name from then on; the old release cannot read those, so rename in two releases (first
//! read both, then write the new name) when both run at once.
//!
//! **A real reshape.** Declare the older shape as `previous` and say how to convert it:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # pub struct CartItem { pub sku: String, pub quantity: u32 }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m", previous = SessionV1)]
//! pub struct Session { pub cart: Vec<CartItem>, pub updated_at: i64 }
//!
//! #[derive(Deserialize)]
//! pub struct SessionV1 { pub cart: Vec<String> }   // what the release before stored
//!
//! impl From<SessionV1> for Session {
//!     fn from(old: SessionV1) -> Self {
//!         let cart = old.cart.into_iter().map(|sku| CartItem { sku, quantity: 1 }).collect();
//!         Session { cart, updated_at: 0 }
//!     }
//! }
//!
//! # // The release before, writing the older shape under the same keys.
//! # #[derive(Serialize, Deserialize, StateKey)]
//! # #[state(prefix = "session", id = u64, ttl = "30m")]
//! # struct OldSession { cart: Vec<String> }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # store.set::<OldSession>(42, &OldSession { cart: vec!["book".into()] }).await?;
//! let session = store.get::<Session>(42).await?;      // an older value comes back converted
//! # assert_eq!(session.unwrap().cart, [CartItem { sku: "book".into(), quantity: 1 }]);
//! let report = store.migrate::<Session>().await?;     // rewrites older values in the current shape
//! println!("{report}");   // 2003 scanned: 1000 rewritten, 1000 current, 3 undecodable (...), 0 vanished
//! # assert_eq!((report.scanned, report.rewritten), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! - Every read (`get`, `get_many`, `get_and_touch`, cached reads, the closures of `update` and
//!   `remove_if`, `watch` values) decodes the current shape first and tries `previous` only when
//!   that fails: a current value costs nothing more (benchmark section 9, in `BENCHMARKS.md`). A
//!   value in neither shape is `Error::Decode` naming the key, with both of serde's messages.
//! - Reads never write. `update` writes what its closure returns, in the current shape, so an
//!   active session is upgraded by its next update.
//! - A value that decodes as the current type is current, even if it was written by an older
//!   release: with `#[serde(default)]` on the new fields an older value may decode as both, and is
//!   then read as the current type and never converted.
//! - A longer history is one `previous` type of your choice: a `#[serde(untagged)]` enum of the
//!   older shapes with one `From` (the [`StateKey`](crate::StateKey) docs show one).
//!
//! `migrate::<S>()` (needs `enable_set`) walks the type's keys with `SCAN` (never `KEYS`), reads
//! them 128 at a time (`MGET`), and rewrites each value in the older shape with a compare-and-set
//! that keeps the key's remaining ttl: a value another writer stored between the read and the
//! rewrite is never overwritten (the key is read again and decided again), so it runs safely while
//! both releases serve traffic. Values in the current shape are only read; values in neither shape,
//! and keys under the prefix that are not ids of the type, are counted, the first five named, and
//! left as they are. `MigrateReport` gives `scanned`, `rewritten`, `current`, `undecodable` (with
//! `undecodable_keys`) and `vanished` (removed or expired meanwhile); `migrate_with` takes
//! `MigrateOptions::new().on_progress(|so_far| ...)` for a progress bar or log line, and
//! `.batch(n)`. Running it again is safe and finds nothing to do. On a `notify` type each rewrite
//! announces a `Change::Set`, since the stored bytes changed. `cargo run --example migrate` runs a
//! before and after on either backend; `tests/migrate.rs` runs 1,000 older and 1,000 current values
//! on a real server with 8 tasks updating the same keys meanwhile, and the conformance suite holds
//! every backend to the same rules.
