//! Changing a state type on a real server: values written in the older JSON shape by a raw
//! client are read converted, and `migrate` rewrites exactly those, keeping their expiry, while
//! other writers carry on.
#![cfg(feature = "redis")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::Commands;
use serde::{Deserialize, Serialize};
use state_store::{Error, MigrateOptions, RedisBackend, StateKey, Store};
use support::{RedisServer, command_calls};

/// Today's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m", previous = SessionV1)]
struct Session {
    cart: Vec<CartItem>,
    updated_at: i64,
    hits: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CartItem {
    sku: String,
    quantity: u32,
}

/// What the release before stored: a cart of SKUs.
#[derive(Serialize, Deserialize)]
struct SessionV1 {
    cart: Vec<String>,
}

impl From<SessionV1> for Session {
    fn from(old: SessionV1) -> Self {
        let cart = old
            .cart
            .into_iter()
            .map(|sku| CartItem { sku, quantity: 1 })
            .collect();
        Session {
            cart,
            updated_at: 0,
            hits: 0,
        }
    }
}

const OLD: std::ops::Range<u64> = 0..1000;
const CURRENT: std::ops::Range<u64> = 1000..2000;
const UNDECODABLE: std::ops::Range<u64> = 5000..5003;

fn key(id: u64) -> String {
    format!("svc:session:{id}")
}

fn old_json(id: u64) -> Vec<u8> {
    let old = SessionV1 {
        cart: vec![format!("sku-{id}"), "book".into()],
    };
    serde_json::to_vec(&old).unwrap()
}

fn converted(id: u64) -> Session {
    Session::from(SessionV1 {
        cart: vec![format!("sku-{id}"), "book".into()],
    })
}

fn current(id: u64) -> Session {
    Session {
        cart: vec![CartItem {
            sku: format!("sku-{id}"),
            quantity: 2,
        }],
        updated_at: id as i64,
        hits: 0,
    }
}

/// 1,000 values in the old shape and 1,000 in the current one, written by a raw client with
/// `SET ... PX` (each its own ttl), and three that decode as neither.
fn seed(raw: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    for id in OLD {
        pipe.cmd("SET")
            .arg(key(id))
            .arg(old_json(id))
            .arg("PX")
            .arg(600_000 + id)
            .ignore();
    }
    for id in CURRENT {
        let json = serde_json::to_vec(&current(id)).unwrap();
        pipe.cmd("SET")
            .arg(key(id))
            .arg(json)
            .arg("PX")
            .arg(600_000 + id)
            .ignore();
    }
    for (id, bytes) in UNDECODABLE.zip([&b"{not json"[..], br#"{"cart": 5}"#, b""]) {
        pipe.cmd("SET")
            .arg(key(id))
            .arg(bytes)
            .arg("PX")
            .arg(600_000)
            .ignore();
    }
    let () = pipe.query(raw).unwrap();
}

/// Every seeded key's bytes and `PTTL`.
fn snapshot(raw: &mut redis::Connection) -> HashMap<u64, (Vec<u8>, i64)> {
    OLD.chain(CURRENT)
        .chain(UNDECODABLE)
        .map(|id| {
            let bytes: Vec<u8> = raw.get(key(id)).unwrap();
            let pttl: i64 = redis::cmd("PTTL").arg(key(id)).query(raw).unwrap();
            (id, (bytes, pttl))
        })
        .collect()
}

async fn store(server: &RedisServer) -> Store<RedisBackend> {
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    Store::new(backend).namespace("svc").enable_set()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_rewrites_exactly_the_old_values_and_keeps_their_ttl() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    seed(&mut raw);
    let store = store(&server).await;

    // Reads convert, and write nothing.
    assert_eq!(store.get::<Session>(7).await.unwrap(), Some(converted(7)));
    assert_eq!(
        store.get_many::<Session>([7, 1007, 3000]).await.unwrap(),
        vec![Some(converted(7)), Some(current(1007)), None]
    );
    let err = store.get::<Session>(5001).await.unwrap_err();
    assert!(matches!(&err, Error::Decode { key, .. } if key == "svc:session:5001"));
    assert!(err.to_string().contains("`SessionV1`"), "{err}");

    let before = snapshot(&mut raw);
    assert_eq!(before[&7].0, old_json(7), "the read left the old bytes");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();

    let mut progress = Vec::new();
    let options = MigrateOptions::new().on_progress(|so_far| progress.push(so_far.scanned));
    let report = store.migrate_with::<Session>(options).await.unwrap();
    assert_eq!(report.scanned, 2003, "{report:?}");
    assert_eq!(report.rewritten, 1000, "{report:?}");
    assert_eq!(report.current, 1000, "{report:?}");
    assert_eq!(report.undecodable, 3, "{report:?}");
    assert_eq!(report.vanished, 0, "{report:?}");
    let mut named = report.undecodable_keys.clone();
    named.sort();
    assert_eq!(named, UNDECODABLE.map(key).collect::<Vec<_>>());
    assert!(progress.len() >= 2, "progress per batch: {progress:?}");
    assert_eq!(progress.last(), Some(&2003));

    assert!(command_calls(&mut raw, "scan") > 0);
    assert_eq!(command_calls(&mut raw, "keys"), 0, "never KEYS");

    let after = snapshot(&mut raw);
    for (id, (bytes, pttl)) in &before {
        let (now, pttl_now) = &after[id];
        if OLD.contains(id) {
            assert_eq!(
                now,
                &serde_json::to_vec(&converted(*id)).unwrap(),
                "{id} in the current shape"
            );
            assert!(
                *pttl_now > 0 && pttl_now <= pttl && *pttl_now > pttl - 60_000,
                "{id} kept its ttl: {pttl_now} after {pttl}"
            );
        } else {
            assert_eq!(now, bytes, "{id} left byte for byte");
            assert!(
                *pttl_now > 0 && pttl_now <= pttl,
                "{id}: {pttl_now} after {pttl}"
            );
        }
    }

    // Nothing left to do; the undecodable values are still reported.
    let again = store.migrate::<Session>().await.unwrap();
    assert_eq!(
        (again.rewritten, again.current, again.undecodable),
        (0, 2000, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_during_migrate_are_never_lost() {
    const TASKS: usize = 8;
    // The keys the updaters keep changing while the migration runs: every fourth old one
    // (which the migration and the first update race to convert) and 50 current ones.
    let hot: Vec<u64> = OLD.step_by(4).chain(1000..1050).collect();
    let server = RedisServer::start();
    let mut raw = server.raw();
    seed(&mut raw);
    let store = store(&server).await;
    let before = snapshot(&mut raw);

    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, done, hot) = (store.clone(), done.clone(), hot.clone());
        tasks.push(tokio::spawn(async move {
            // Whole rounds over every hot key until the migration is over (at least 3), so
            // that each key's final count is the sum of every task's rounds.
            let mut rounds = 0u64;
            while rounds < 3 || !done.load(Ordering::Acquire) {
                for &id in &hot {
                    store
                        .update::<Session>(id, |s| {
                            s.map(|s| Session {
                                hits: s.hits + 1,
                                ..s
                            })
                        })
                        .await
                        .unwrap();
                }
                rounds += 1;
            }
            rounds
        }));
    }
    // Small batches, so the migration and the updaters interleave for longer.
    let report = store
        .migrate_with::<Session>(MigrateOptions::new().batch(8))
        .await
        .unwrap();
    done.store(true, Ordering::Release);
    let mut rounds = 0;
    for task in tasks {
        rounds += task.await.unwrap();
    }

    eprintln!("{report}; {rounds} rounds of updates by {TASKS} tasks");
    assert_eq!(report.scanned, 2003, "{report:?}");
    assert_eq!(report.rewritten + report.current, 2000, "{report:?}");
    assert_eq!(report.undecodable, 3, "{report:?}");
    // Every old key the updaters did not touch was the migration's to rewrite.
    assert!(report.rewritten >= 750, "{report:?}");

    let after = snapshot(&mut raw);
    for id in OLD.chain(CURRENT) {
        let (bytes, pttl) = &after[&id];
        let session: Session = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{id} is not in the current shape: {e}"));
        let base = if OLD.contains(&id) {
            converted(id)
        } else {
            current(id)
        };
        if hot.contains(&id) {
            assert_eq!(session.hits, rounds, "{id}: an update was lost");
            assert_eq!(session.cart, base.cart, "{id}");
        } else if OLD.contains(&id) {
            assert_eq!(session, base, "{id}");
        } else {
            assert_eq!(bytes, &before[&id].0, "{id} left byte for byte");
        }
        assert!(*pttl > 0 && *pttl <= before[&id].1, "{id} kept its ttl");
    }
    for id in UNDECODABLE {
        assert_eq!(after[&id].0, before[&id].0, "{id} left as it was");
    }
}
