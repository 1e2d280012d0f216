//! Coming from raw `redis` calls or `redis-macros`: the same task three ways.
//!
//! The task: read a session, add an item to its cart without losing a concurrent add, and keep its
//! 30-minute expiry.
//!
//! # With raw `redis` calls
//!
//! The key, the JSON and the expiry are the caller's, and the read-modify-write is a race (two
//! concurrent adds: one is lost) unless you write `WATCH`/`MULTI` on a dedicated connection or a
//! Lua script:
//!
//! ```
//! # #[cfg(feature = "redis")]
//! # mod raw {
//! # use serde::{Deserialize, Serialize};
//! # use state_store::redis::{AsyncCommands, aio::ConnectionManager};
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Session { cart: Vec<String> }
//! # async fn add_to_cart(conn: &mut ConnectionManager, user_id: u64, item: String)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let key = format!("session:{user_id}");                  // a typo here is a runtime bug
//! let json: Option<String> = conn.get(&key).await?;
//! let mut session: Session = match json {
//!     Some(json) => serde_json::from_str(&json)?,          // corrupt JSON: your error type
//!     None => Session::default(),
//! };
//! session.cart.push(item);
//! // Forget `_ex`: no expiry. And a concurrent add between the `get` and here is lost.
//! let _: () = conn.set_ex(&key, serde_json::to_string(&session)?, 1800).await?;
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! # With `redis-macros`
//!
//! `#[derive(FromRedisValue, ToRedisArgs)]` removes the JSON glue: the read becomes `conn.get::<_,
//! Option<Session>>(&key).await?.unwrap_or_default()` and the write `conn.set_ex(&key, &session,
//! 1800)`. But the key string, the expiry and the race stay (it is still a `get` then a `set`: a
//! lost update under concurrency), and its `ToRedisArgs` panics if serialization fails.
//!
//! # With `state-store`
//!
//! The type declares its key and expiry once, the compiler checks the id type, and
//! [`update`](crate::Store::update) is a compare-and-set that runs the closure again when another
//! writer got there first:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use state_store::{MemoryBackend, StateKey, Store};
//! #[derive(Debug, Clone, Default, Serialize, Deserialize, StateKey)]
//! #[state(prefix = "session", id = u64, ttl = "30m")]
//! struct Session { cart: Vec<String> }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> state_store::Result<()> {
//! # let store = Store::new(MemoryBackend::new()).enable_set();
//! # let (user_id, item) = (42, "book".to_string());
//! store.update::<Session>(user_id, |session| {
//!     let mut session = session.unwrap_or_default();
//!     session.cart.push(item.clone());
//!     Some(session)
//! }).await?;
//! # assert_eq!(store.get::<Session>(42).await?.unwrap().cart, ["book"]);
//! # Ok(())
//! # }
//! ```
//!
//! The stored value is the same plain JSON under the same key (`session:42`), so the three can
//! share data during a migration, and so can a service in another language.
