//! `uuid::Uuid` ids (feature `uuid`): hyphenated lowercase in the key, read back by `ids()`, on
//! both backends.
#![cfg(feature = "uuid")]

mod support;

use serde::{Deserialize, Serialize};
use state_store::{Backend, MemoryBackend, StateKey, Store, StreamExt, id_from_key, id_to_key};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "order", id = Uuid, ttl = "1h")]
struct Order {
    total: u32,
}

const ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

#[test]
fn uuids_are_hyphenated_lowercase_and_read_back_only_so() {
    let id = Uuid::parse_str(ID).unwrap();
    assert_eq!(id_to_key(&id), ID);
    assert_eq!(id_from_key::<Uuid>(ID).unwrap(), id);
    for other in [
        ID.to_uppercase(),
        ID.replace('-', ""),
        format!("{{{ID}}}"),
        "not-a-uuid".to_string(),
    ] {
        assert!(id_from_key::<Uuid>(&other).is_err(), "{other} was read");
    }
}

async fn round_trip<B: Backend + Clone>(backend: B) {
    let store = Store::new(backend).namespace("shop").enable_set();
    let id = Uuid::parse_str(ID).unwrap();
    store.set::<Order>(id, &Order { total: 42 }).await.unwrap();
    assert_eq!(
        store.full_key::<Order>(id).unwrap(),
        format!("shop:order:{ID}")
    );
    assert_eq!(
        store.get::<Order>(&id).await.unwrap(),
        Some(Order { total: 42 })
    );
    let ids: Vec<Uuid> = store
        .ids::<Order>()
        .map(|id| id.unwrap())
        .collect::<Vec<_>>()
        .await;
    assert_eq!(ids, [id]);
}

#[tokio::test]
async fn uuid_ids_on_the_memory_backend() {
    round_trip(MemoryBackend::new()).await;
}

#[tokio::test]
async fn uuid_ids_on_redis() {
    let server = support::RedisServer::start();
    let backend = state_store::RedisBackend::connect(&server.url())
        .await
        .unwrap();
    round_trip(backend).await;
    let stored: Option<String> = redis::cmd("GET")
        .arg(format!("shop:order:{ID}"))
        .query(&mut server.raw())
        .unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"total":42}"#));
}
