//! Changing a state type: the release before this one stored sessions as a list of SKUs; this
//! one stores cart items with a quantity. Values written by the old release are read converted,
//! and `migrate` rewrites them in the new shape, keeping their expiry.
//!
//!     cargo run --example migrate
//!     REDIS_URL=redis://127.0.0.1:6379 cargo run --example migrate

use serde::{Deserialize, Serialize};
use state_store::{AnyBackend, Backend, MigrateOptions, Result, StateKey, Store};

/// The previous release's code, as it was: same prefix, so the same keys.
mod v1 {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, StateKey)]
    #[state(prefix = "session", id = u64, ttl = "30m")]
    pub struct Session {
        pub cart: Vec<String>,
    }
}

/// This release's shape. Values that do not decode as it are read as `v1::Session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m", previous = v1::Session)]
pub struct Session {
    pub cart: Vec<CartItem>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    pub sku: String,
    pub quantity: u32,
}

impl From<v1::Session> for Session {
    fn from(old: v1::Session) -> Self {
        // The old cart listed a SKU once per unit.
        let mut cart: Vec<CartItem> = Vec::new();
        for sku in old.cart {
            match cart.iter_mut().find(|item| item.sku == sku) {
                Some(item) => item.quantity += 1,
                None => cart.push(CartItem { sku, quantity: 1 }),
            }
        }
        Session {
            cart,
            updated_at: 0,
        }
    }
}

async fn demo(store: &Store<AnyBackend>) -> Result<()> {
    // Before: the old release wrote sessions 1-3; the new one has already written session 4.
    for (id, cart) in [
        (1, vec!["book", "book", "pen"]),
        (2, vec!["lamp"]),
        (3, vec!["pen"]),
    ] {
        let cart = cart.into_iter().map(String::from).collect();
        store.set::<v1::Session>(id, &v1::Session { cart }).await?;
    }
    let new = Session {
        cart: vec![CartItem {
            sku: "mug".into(),
            quantity: 2,
        }],
        updated_at: 1_700_000_000,
    };
    store.set::<Session>(4, &new).await?;

    // The new release reads old values converted (and writes nothing while reading).
    let one = store.get::<Session>(1).await?.expect("session 1");
    println!("session 1 read as {one:?}");
    assert_eq!(one.cart[0].quantity, 2);

    // The next `update` of a session stores it in the new shape.
    store
        .update::<Session>(2, |s| {
            s.map(|mut s| {
                s.updated_at = 1_700_000_100;
                s
            })
        })
        .await?;

    // Then the rest, in one pass: sessions 1 and 3 are rewritten, 2 and 4 are current.
    let options = MigrateOptions::new().on_progress(|so_far| println!("  ... {so_far}"));
    let report = store.migrate_with::<Session>(options).await?;
    println!("migrate: {report}");
    assert_eq!((report.rewritten, report.current), (2, 2));

    let stored =
        state_store::BackendExt::value(store.backend(), &store.full_key::<Session>(3)?).await?;
    println!(
        "session 3 is now stored as {}",
        String::from_utf8_lossy(&stored.unwrap_or_default())
    );
    let left = store.ttl::<Session>(3).await?.unwrap_or_default();
    println!("and still expires in {}s", left.as_secs());

    // Run again, nothing is left to do.
    let again = store.migrate::<Session>().await?;
    println!("again:   {again}");
    assert_eq!(again.rewritten, 0);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    println!("backend: {}", backend.name());
    let store = Store::new(backend)
        .namespace("migrate-example")
        .enable_set()
        .enable_remove();
    let result = demo(&store).await;
    // Leave nothing behind on a shared Redis, whatever happened.
    store.remove_many::<Session>([1, 2, 3, 4]).await?;
    result
}
