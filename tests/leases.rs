//! Leases against a real `redis-server` that each test starts: a holder paused past its ttl is
//! fenced out, a lost holder cannot write, tokens survive a restart with AOF persistence, and
//! what a lease leaves in Redis is plain.

mod support;

use futures_util::StreamExt;
use state_store::{RedisBackend, Store};
use support::RedisServer;
use support::leases::{
    LongLease, ReportLease, a_lost_holder_cannot_write, a_paused_holder_is_fenced_out,
    acquire_when_back, churn, worker,
};

async fn store(server: &RedisServer) -> Store<RedisBackend> {
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    Store::new(backend).enable_set().enable_remove()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_ttl_cannot_overwrite_the_next_holder() {
    let server = RedisServer::start();
    let store = store(&server).await;
    a_paused_holder_is_fenced_out(&store, 1).await;
    // In a namespace too.
    let store = store.namespace("svc");
    a_paused_holder_is_fenced_out(&store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_holder_cannot_write_before_anyone_else_took_over() {
    let server = RedisServer::start();
    a_lost_holder_cannot_write(&store(&server).await, 1).await;
}

/// Tokens come from a counter that AOF persists: after a restart (a crash: SIGKILL, with
/// `appendfsync always`), the lease held before is still held with its token, and the next
/// token is greater than every one before. A removal of the lease key through the store does not
/// reset them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_growing_across_a_restart_with_aof() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = store(&server).await;
    let last = churn(&store, 7, 25, 0).await;
    let held = store
        .acquire::<LongLease>(
            7,
            &LongLease {
                worker: "held".into(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(held.token() > last);

    server.restart();
    let holder = loop {
        match store.holder::<LongLease>(7).await {
            Ok(holder) => break holder,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };
    let holder = holder.expect("the lease held before the restart");
    assert_eq!(holder.token, held.token());
    held.extend().await.unwrap();
    assert!(store.remove::<LongLease>(7).await.unwrap());

    server.restart();
    let next = acquire_when_back(&store, 7).await;
    assert!(
        next.token() > held.token(),
        "{} after {}",
        next.token(),
        held.token()
    );
    assert!(churn(&store, 8, 1, 0).await > 0);
}

/// The value under a lease key is the plain JSON of the lease type, as any other type's, so a
/// service in another language reads who holds it; the token records are outside the type's
/// keys, so listing its ids finds only leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_plain_json_under_its_key_and_lists_as_an_id() {
    let server = RedisServer::start();
    let store = store(&server).await.namespace("svc");
    let lease = store
        .acquire::<ReportLease>(42, &worker("a"))
        .await
        .unwrap()
        .unwrap();
    let mut raw = server.raw();
    let value: String = redis::cmd("GET")
        .arg("svc:report-lease:42")
        .query(&mut raw)
        .unwrap();
    assert_eq!(value, r#"{"worker":"a"}"#);
    let ids: Vec<u64> = store
        .ids::<ReportLease>()
        .map(|id| id.unwrap())
        .collect()
        .await;
    assert_eq!(ids, vec![42]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("svc:report-lease")),
        "{keys:?}"
    );
    assert_eq!(
        keys.len(),
        3,
        "the lease, its token, the slot's counter: {keys:?}"
    );
    assert!(lease.release().await.unwrap());
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(keys.len(), 1, "only the counter stays: {keys:?}");
}
