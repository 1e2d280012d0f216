//! The Redis backend against real `redis-server` processes that the tests start themselves.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use state_store::conformance::{Job, Session, session};
use state_store::{Error, RedisBackend, RedisOptions, Store};
use support::RedisServer;

async fn fresh() -> (RedisServer, RedisBackend) {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    (server, backend)
}

state_store::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    crate::fresh()
);

#[tokio::test]
async fn stores_the_documented_key_and_json_with_expiry_in_one_command() {
    let (server, backend) = fresh().await;
    let store = Store::new(backend).namespace("user-service").enable_set();
    let mut raw = server.raw();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();

    store.set::<Session>(42, &session(3)).await.unwrap();

    let stored: String = raw.get("user-service:session:42").unwrap();
    assert_eq!(stored, serde_json::to_string(&session(3)).unwrap());
    let pttl: i64 = raw.pttl("user-service:session:42").unwrap();
    assert!(pttl > 29 * 60 * 1000 && pttl <= 30 * 60 * 1000, "{pttl}");

    // The expiry travelled with the value: one SET, no EXPIRE/PEXPIRE after it.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut raw)
        .unwrap();
    assert!(stats.contains("cmdstat_set:calls=1,"), "{stats}");
    for second_command in [
        "cmdstat_expire:",
        "cmdstat_pexpire:",
        "cmdstat_setex:",
        "cmdstat_multi:",
    ] {
        assert!(!stats.contains(second_command), "{stats}");
    }

    let job_id = ("a:b".to_string(), 7);
    store
        .set::<Job>(
            &job_id,
            &Job {
                status: "queued".into(),
            },
        )
        .await
        .unwrap();
    let stored: String = raw.get("user-service:job:a%3Ab:7").unwrap();
    assert_eq!(stored, r#"{"status":"queued"}"#);
    assert_eq!(raw.pttl::<_, i64>("user-service:job:a%3Ab:7").unwrap(), -1);
}

/// Each call is one command, or one pipeline, on the wire; scripts' inner calls run inside the
/// server. `update` is the exception by design: it reads, then compares-and-sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_one_round_trip() {
    use state_store::conformance::{HourlyFixed, HourlySmooth, Task, Total};
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set().enable_remove();
    // Load the scripts, so that no SCRIPT LOAD shows up below.
    store.incr::<Total>(0, 1).await.unwrap();
    store.check::<HourlyFixed>("w".to_string()).await.unwrap();
    store.check::<HourlySmooth>("w".to_string()).await.unwrap();
    // Twice: the first creates the key, the second runs the compare-and-set script.
    for _ in 0..2 {
        store
            .update::<Task>(0, |_| {
                Some(Task {
                    status: "w".into(),
                    runs: 0,
                })
            })
            .await
            .unwrap();
    }

    let monitor = support::Monitor::start(server.port());
    let items: Vec<(u64, Session)> = (0..100).map(|n| (n, session(n as i64))).collect();
    let ids: Vec<u64> = (0..100).collect();
    let expect = |what: &str, commands: Vec<&str>| {
        assert_eq!(monitor.take_client_commands(), commands, "{what}");
    };

    store.set::<Session>(1, &session(1)).await.unwrap();
    expect("set", vec!["set"]);
    store.get::<Session>(1).await.unwrap();
    expect("get", vec!["get"]);
    store.set_many::<Session>(&items).await.unwrap();
    let mut pipeline = vec!["multi"];
    pipeline.extend(std::iter::repeat_n("set", 100));
    pipeline.push("exec");
    expect("set_many", pipeline);
    store.get_many::<Session>(&ids).await.unwrap();
    expect("get_many", vec!["mget"]);
    store.remove_many::<Session>(&ids).await.unwrap();
    expect("remove_many", vec!["del"]);
    store.incr::<Total>(1, 1).await.unwrap();
    expect("incr", vec!["evalsha"]);
    store.check::<HourlyFixed>("c".to_string()).await.unwrap();
    expect("fixed-window check", vec!["evalsha"]);
    store.check::<HourlySmooth>("c".to_string()).await.unwrap();
    expect("smooth check", vec!["evalsha"]);
    store
        .set_if_absent::<Session>(5, &session(5))
        .await
        .unwrap();
    expect("set_if_absent", vec!["set"]);
    store.update::<Task>(0, |_| None).await.unwrap();
    expect("update that changes nothing", vec!["get"]);
    store
        .update::<Task>(0, |t| {
            t.map(|t| Task {
                runs: t.runs + 1,
                ..t
            })
        })
        .await
        .unwrap();
    expect("update", vec!["get", "evalsha"]);
    store
        .update::<Task>(1, |_| {
            Some(Task {
                status: "new".into(),
                runs: 0,
            })
        })
        .await
        .unwrap();
    expect("update that creates the key", vec!["get", "set"]);
    store.ttl::<Session>(1).await.unwrap();
    expect("ttl", vec!["pttl"]);
}

/// The compare-and-set names the value it saw by its SHA-1: an update attempt sends the new
/// value and a 40-character digest, never the old value back.
#[tokio::test]
async fn update_sends_a_digest_of_the_old_value_not_the_value() {
    use state_store::conformance::Task;
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set();
    let old = Task {
        status: "old-status-".repeat(50),
        runs: 0,
    };
    store.set::<Task>(1, &old).await.unwrap();
    let old_json = serde_json::to_string(&old).unwrap();
    let mut raw = server.raw();
    let digest: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1])")
        .arg(0)
        .arg(&old_json)
        .query(&mut raw)
        .unwrap();

    let monitor = support::Monitor::start(server.port());
    let written = store
        .update::<Task>(1, |t| {
            t.map(|t| Task {
                status: "new".into(),
                runs: t.runs + 1,
            })
        })
        .await
        .unwrap();
    assert_eq!(written.unwrap().runs, 1);
    let lines = monitor.take_client_lines();
    let cas = lines
        .iter()
        .find(|line| line.to_lowercase().starts_with("evalsha\""))
        .unwrap_or_else(|| panic!("no script call in {lines:?}"));
    assert!(cas.contains(&digest), "{cas}");
    assert!(
        !cas.contains("old-status-"),
        "the old value went back: {cas}"
    );
    assert!(cas.contains(r#"\"status\":\"new\""#), "{cas}");
}

#[test]
fn stores_are_cheap_to_share_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Store<RedisBackend>>();
    shareable::<Store<state_store::MemoryBackend>>();
    shareable::<RedisBackend>();
}

#[tokio::test]
async fn reads_values_written_by_other_clients() {
    let (server, backend) = fresh().await;
    let mut raw = server.raw();
    let _: () = raw
        .set("session:9", r#"{"cart":["x"],"updated_at":5}"#)
        .unwrap();
    let store = Store::new(backend);
    assert_eq!(
        store.get::<Session>(9).await.unwrap(),
        Some(Session {
            cart: vec!["x".into()],
            updated_at: 5
        })
    );
}

#[tokio::test]
async fn a_key_of_another_redis_type_is_an_error_naming_it() {
    let (server, backend) = fresh().await;
    let mut raw = server.raw();
    let _: () = raw.hset("session:1", "field", "value").unwrap();
    let store = Store::new(backend).enable_set();
    let err = store.get::<Session>(1).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidKey { ref key, .. } if key == "session:1"),
        "{err:?}"
    );
    // The store keeps working.
    store.set::<Session>(2, &session(2)).await.unwrap();
    assert_eq!(store.get::<Session>(2).await.unwrap(), Some(session(2)));
}

#[tokio::test]
async fn lists_and_hashes_under_state_keys_are_errors_naming_the_key() {
    let (server, backend) = fresh().await;
    let mut raw = server.raw();
    let _: () = raw.rpush("session:1", "a").unwrap();
    let _: () = raw.hset("total:1", "f", "v").unwrap();
    let store = Store::new(backend).enable_set();
    let err = store.get::<Session>(1).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidKey { ref key, .. } if key == "session:1"),
        "{err:?}"
    );
    let err = store
        .incr::<state_store::conformance::Total>(1, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidKey { ref key, .. } if key == "total:1"),
        "{err:?}"
    );
    let err = store.update::<Session>(1, |s| s).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidKey { ref key, .. } if key == "session:1"),
        "{err:?}"
    );
    // Nothing was changed, and the store keeps working.
    assert_eq!(raw.llen::<_, u64>("session:1").unwrap(), 1);
    store.set::<Session>(2, &session(2)).await.unwrap();
    assert_eq!(store.get::<Session>(2).await.unwrap(), Some(session(2)));
}

#[tokio::test]
async fn connects_with_user_password_and_db_and_never_shows_the_password() {
    let server = RedisServer::start();
    let mut raw = server.raw();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "svc", "on", ">s3cr3t-pw", "~*", "+@all"][..])
        .query(&mut raw)
        .unwrap();
    let url = format!("redis://svc:s3cr3t-pw@127.0.0.1:{}/3", server.port());
    let backend = RedisBackend::connect(&url).await.unwrap();
    assert!(!format!("{backend:?}").contains("s3cr3t-pw"), "{backend:?}");
    let store = Store::new(backend).enable_set();
    assert!(!format!("{store:?}").contains("s3cr3t-pw"));
    store.set::<Session>(1, &session(1)).await.unwrap();

    let _: () = redis::cmd("SELECT").arg(3).query(&mut raw).unwrap();
    assert!(
        raw.exists::<_, bool>("session:1").unwrap(),
        "written to db 3"
    );
    let _: () = redis::cmd("SELECT").arg(0).query(&mut raw).unwrap();
    assert!(!raw.exists::<_, bool>("session:1").unwrap());

    let wrong = format!("redis://svc:wr0ng-pw@127.0.0.1:{}/3", server.port());
    let err = RedisBackend::connect_with(&wrong, RedisOptions::default().reconnect_retries(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wr0ng-pw"), "{shown}");
    assert!(shown.contains(&server.port().to_string()), "{shown}");
}

#[tokio::test]
async fn a_malformed_url_is_a_connect_error_without_the_password() {
    for url in [
        "redis://svc:s3cr3t-pw@127.0.0.1:notaport/0",
        "redis://svc:s3cr3t-pw@127.0.0.1:1/notadb",
        "http://svc:s3cr3t-pw@127.0.0.1:1",
    ] {
        let err = RedisBackend::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{url}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    }
}

#[tokio::test]
async fn builds_from_a_redis_client() {
    let server = RedisServer::start();
    let backend = RedisBackend::from_client(server.client()).await.unwrap();
    let store = Store::new(backend).enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();
    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_clear_error() {
    let port = support::free_port(); // nothing listens there
    let started = Instant::now();
    let err = RedisBackend::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // Accepts connections and reads, but never replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let result = RedisBackend::connect(&format!("redis://127.0.0.1:{port}")).await;
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn a_server_that_stops_answering_mid_session_times_out() {
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();

    server.signal("STOP");
    let started = Instant::now();
    let err = store.get::<Session>(1).await.unwrap_err();
    let elapsed = started.elapsed();
    server.signal("CONT");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "get",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("session:1"), "{err}");

    // Once it answers again, the same store works.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get::<Session>(1).await {
            Ok(value) => {
                assert_eq!(value, Some(session(1)));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("store did not recover: {e}"),
        }
    }
}

/// A server out of memory under `noeviction` refuses writes: counters and rate limits report
/// that refusal as it is (`Error::Backend` with the server's `OOM` answer), not as a value that
/// is not a counter.
#[tokio::test]
async fn a_full_server_refuses_counter_writes_as_backend_errors() {
    use state_store::conformance::{FastFixed, HourlySmooth, Total};
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set();
    store.incr::<Total>(1, 1).await.unwrap();
    store.check::<FastFixed>(1).await.unwrap();
    store.check::<HourlySmooth>("s".to_string()).await.unwrap();
    let mut raw = server.raw();
    for (parameter, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(parameter)
            .arg(value)
            .query(&mut raw)
            .unwrap();
    }
    let refused = [
        ("incr", store.incr::<Total>(1, 1).await.map(drop)),
        ("new incr", store.incr::<Total>(2, 1).await.map(drop)),
        ("check", store.check::<FastFixed>(1).await.map(drop)),
        (
            "smooth check",
            store.check::<HourlySmooth>("s".to_string()).await.map(drop),
        ),
    ];
    for (what, result) in refused {
        match result {
            Err(e @ Error::Backend { .. }) => assert!(e.to_string().contains("OOM"), "{what}: {e}"),
            other => panic!("{what}: expected the server's OOM refusal, got {other:?}"),
        }
    }
}

/// Concurrent single `get`s go out in batches (one `MGET` for many callers), and each caller
/// gets its own answer: its value, `None`, `InvalidKey` for a key holding a hash, a decode error
/// for corrupt JSON, exactly as a lone `GET` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_are_batched_and_each_caller_gets_its_own_answer() {
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set();
    let mut raw = server.raw();
    for id in 0..100u64 {
        store.set::<Session>(id, &session(id as i64)).await.unwrap();
    }
    let _: () = raw.hset("session:100", "f", "v").unwrap();
    let _: () = raw.set("session:101", "{not json").unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();

    const TASKS: u64 = 64;
    const ROUNDS: u64 = 30;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    // Ids 0..=104: values, the hash, the corrupt one, missing ones; the same id is
                    // often asked by several tasks at once.
                    let id = (task * 7 + round * 13) % 105;
                    let got = store.get::<Session>(id).await;
                    match id {
                        0..=99 => assert_eq!(got.unwrap(), Some(session(id as i64)), "id {id}"),
                        100 => assert!(
                            matches!(&got, Err(Error::InvalidKey { key, .. }) if key == "session:100"),
                            "{got:?}"
                        ),
                        101 => assert!(
                            matches!(&got, Err(Error::Decode { key, .. }) if key == "session:101"),
                            "{got:?}"
                        ),
                        _ => assert_eq!(got.unwrap(), None, "id {id}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let gets = support::command_calls(&mut raw, "get");
    let mgets = support::command_calls(&mut raw, "mget");
    assert!(mgets > 0, "no batch formed: {gets} GETs");
    assert!(
        gets + mgets < TASKS * ROUNDS,
        "{gets} GETs and {mgets} MGETs for {} calls",
        TASKS * ROUNDS
    );
}

/// `read_batch(0)` turns batching off: every `get` is its own `GET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_batching_can_be_turned_off() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect_with(&server.url(), RedisOptions::default().read_batch(0))
        .await
        .unwrap();
    let store = Store::new(backend).enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();
    let mut raw = server.raw();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert_eq!(store.get::<Session>(1).await.unwrap(), Some(session(1)));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(support::command_calls(&mut raw, "get"), 320);
    assert_eq!(support::command_calls(&mut raw, "mget"), 0);
}

/// `touch` is one `PEXPIRE`, `get_and_touch` one `GETEX ... PX`: one round trip each.
#[tokio::test]
async fn touch_and_get_and_touch_are_one_command_each() {
    let (server, backend) = fresh().await;
    let store = Store::new(backend).enable_set();
    store.set::<Session>(1, &session(1)).await.unwrap();
    let monitor = support::Monitor::start(server.port());
    assert!(store.touch::<Session>(1).await.unwrap());
    assert_eq!(monitor.take_client_commands(), ["pexpire"]);
    assert_eq!(
        store.get_and_touch::<Session>(1).await.unwrap(),
        Some(session(1))
    );
    let lines = monitor.take_client_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(r#"GETEX" "session:1" "PX" "1800000""#),
        "{lines:?}"
    );
}
