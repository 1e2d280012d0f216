//! Faults against real servers the tests start and stop: a server that dies mid-stream and comes
//! back, replies lost after the server acted, and persistence across SIGKILL.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Commands;
use state_store::conformance::{HourlyFixed, Session, Task, Total, session};
use state_store::{Error, RedisBackend, Store};
use support::RedisServer;
use support::proxy::Proxy;

/// Response timeout plus reconnect attempts, with room for a loaded machine.
const LONGEST_CALL: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_stream_gives_errors_then_the_same_store_recovers() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let store = Store::new(backend).enable_set().enable_remove();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8u64)
        .map(|worker| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut slowest) = (0u64, Vec::new(), Duration::ZERO);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = worker * 1_000_000 + n;
                    let started = Instant::now();
                    let result = async {
                        store.set::<Session>(id, &session(n as i64)).await?;
                        let back = store.get::<Session>(id).await?;
                        assert_eq!(back, Some(session(n as i64)), "never a wrong answer");
                        store.remove::<Session>(id).await
                    }
                    .await;
                    slowest = slowest.max(started.elapsed());
                    match result {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            errors.push(e);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (ok, errors, slowest)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart();
    let restarted = Instant::now();
    let recovered = loop {
        if store.get::<Session>(u64::MAX).await.is_ok() {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "store did not recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    for worker in workers {
        let (o, errors, s) = worker.await.expect("a worker panicked");
        ok += o;
        failed += errors.len();
        slowest = slowest.max(s);
        for e in errors {
            assert!(
                matches!(e, Error::Backend { .. }),
                "a dead server is a backend error: {e:?}"
            );
            assert!(
                e.to_string().contains("session:"),
                "the error names the key: {e}"
            );
        }
    }
    eprintln!(
        "server down ~1.5 s: {ok} rounds ok, {failed} failed, slowest call round {slowest:?}, \
         recovered {recovered:?} after restart"
    );
    assert!(failed > 0, "calls while the server was down must fail");
    assert!(ok > 0);
    assert!(slowest < LONGEST_CALL * 3, "{slowest:?}");
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");

    // Rounds after recovery work end to end.
    store.set::<Session>(1, &session(1)).await.unwrap();
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_retry_once_after_a_lost_reply_and_others_never_run_twice() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let store = Store::new(RedisBackend::connect(&proxy.url()).await.unwrap())
        .enable_set()
        .enable_remove();
    let mut raw = server.raw();

    // Load every script first, so the replies lost below are the scripts' own.
    store.incr::<Total>(200, 1).await.unwrap();
    store
        .check::<HourlyFixed>("warmup".to_string())
        .await
        .unwrap();
    // Twice: the first creates the key (`SET NX`), the second runs the compare-and-set script.
    for _ in 0..2 {
        store
            .update::<Task>(200, |_| {
                Some(Task {
                    status: "x".into(),
                    runs: 0,
                })
            })
            .await
            .unwrap();
    }
    store.set::<Session>(1, &session(1)).await.unwrap();

    // Reads, set and remove may run again: the retry answers.
    proxy.lose_next_reply();
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
    assert_eq!(proxy.replies_lost(), 1);
    proxy.lose_next_reply();
    store.set::<Session>(2, &session(2)).await.unwrap();
    assert_eq!(proxy.replies_lost(), 2);
    assert_eq!(store.get::<Session>(2).await.unwrap(), Some(session(2)));
    proxy.lose_next_reply();
    let got = store.get_many::<Session>([1u64, 2]).await.unwrap();
    assert_eq!(got, vec![Some(session(1)), Some(session(2))]);
    assert_eq!(proxy.replies_lost(), 3);

    // A remove whose answer was lost removed the key; a retry would answer "did not exist", so
    // it is not retried and says it failed instead.
    proxy.lose_next_reply();
    let err = store.remove::<Session>(2).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "remove",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(proxy.replies_lost(), 4);
    assert!(
        !store.exists::<Session>(2).await.unwrap(),
        "removed once, by the lost call"
    );
    assert!(
        store.remove::<Session>(1).await.unwrap(),
        "an answered remove is exact"
    );

    // Increments, rate-limit checks, updates and set_if_absent ran once; the caller gets an
    // error instead of a second run.
    proxy.lose_next_reply();
    let err = store.incr::<Total>(1, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "incr",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        raw.get::<_, String>("total:1").unwrap(),
        "1",
        "incr ran exactly once"
    );

    // A call that is not retried leaves the reconnect to the next call; let it finish first so
    // that the next lost reply is the command's, not the new connection's handshake.
    store.exists::<Session>(0).await.unwrap();
    proxy.lose_next_reply();
    let err = store
        .check::<HourlyFixed>("c".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "check",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        raw.get::<_, String>("hourly-fixed:c").unwrap(),
        "1",
        "counted once"
    );
    store.exists::<Session>(0).await.unwrap();

    store
        .set::<Task>(
            1,
            &Task {
                status: "queued".into(),
                runs: 0,
            },
        )
        .await
        .unwrap();
    let mut calls = 0;
    proxy.lose_next_reply();
    // The lost reply is the GET's (an idempotent read, retried); lose the compare-and-set's too.
    let result = store
        .update::<Task>(1, |t| {
            calls += 1;
            proxy.lose_next_reply();
            t.map(|t| Task {
                runs: t.runs + 1,
                ..t
            })
        })
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Backend {
                operation: "update",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(
        calls, 1,
        "the closure ran once and no second attempt followed"
    );
    let task = store.get::<Task>(1).await.unwrap().unwrap();
    assert_eq!(task.runs, 1, "the update was applied exactly once");
    store.exists::<Session>(0).await.unwrap();

    proxy.lose_next_reply();
    let err = store
        .set_if_absent::<Session>(9, &session(9))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(raw.exists::<_, bool>("session:9").unwrap());
    assert!(proxy.replies_lost() >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_with_appendfsync_always() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = Store::new(RedisBackend::connect(&server.url()).await.unwrap()).enable_set();
    const N: u64 = 300;
    for n in 0..N {
        store.set::<Session>(n, &session(n as i64)).await.unwrap();
    }
    let items: Vec<(u64, Session)> = (N..2 * N).map(|n| (n, session(n as i64))).collect();
    store.set_many::<Session>(&items).await.unwrap();
    store.incr::<Total>(1, 41).await.unwrap();

    server.kill(); // SIGKILL: no shutdown, no save
    server.restart(); // same port, same directory, replays the append-only file

    // The same store reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids: Vec<u64> = (0..2 * N).collect();
    let values = loop {
        match store.get_many::<Session>(&ids).await {
            Ok(values) => break values,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    for (n, value) in values.into_iter().enumerate() {
        assert_eq!(value, Some(session(n as i64)), "write {n} was lost");
    }
    assert_eq!(store.get::<Total>(1).await.unwrap(), Some(Total(41)));
}
