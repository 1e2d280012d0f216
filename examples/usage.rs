//! What is in Redis: keys, estimated bytes and expiries per prefix of a namespace, walked with
//! `SCAN` (never `KEYS`), with a progress bar while it runs.
//!
//!     cargo run --example usage -- redis://127.0.0.1:6379 user-service
//!
//! reports on a namespace as it is, reading only. With no arguments it writes a small demo
//! namespace first (on Redis when `REDIS_URL` is set, else on the in-memory backend), reports
//! on it, and removes it again:
//!
//!     cargo run --example usage

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use state_store::{AnyBackend, Backend, Result, SetOptions, StateKey, Store, Usage, UsageOptions};

/// The demo namespace, removed again after the report.
const DEMO: &str = "usage-demo";

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "session", id = u64, ttl = "30m")]
struct Session {
    cart: Vec<String>,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "job", id = u64)]
struct Job {
    status: String,
}

#[derive(Serialize, Deserialize, StateKey)]
#[state(prefix = "ratelimit", id = String, ttl = "1m", counter)]
struct ApiCalls(i64);

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [url, namespace] => {
            let store = Store::new(AnyBackend::connect(url).await?).try_namespace(namespace)?;
            println!("{} namespace `{namespace}`", store.backend().name());
            report(&store).await
        }
        [] => demo().await,
        _ => {
            eprintln!("usage: cargo run --example usage -- <redis-url> <namespace>");
            std::process::exit(2);
        }
    }
}

/// Seeds [`DEMO`], reports on it, and removes it.
async fn demo() -> Result<()> {
    let backend = AnyBackend::from_env("REDIS_URL").await?;
    println!("{} namespace `{DEMO}` (demo data)", backend.name());
    let store = Store::new(backend)
        .namespace(DEMO)
        .enable_set()
        .enable_remove();
    let sessions: Vec<(u64, Session)> = (0..600)
        .map(|id| {
            let cart = (0..id % 7).map(|n| format!("item-{n}")).collect();
            (id, Session { cart })
        })
        .collect();
    store.set_many::<Session>(sessions).await?;
    let jobs = (0..250).map(|id| {
        let status = if id % 3 == 0 { "done" } else { "queued" };
        (
            id,
            Job {
                status: status.into(),
            },
        )
    });
    store.set_many::<Job>(jobs).await?;
    for client in 0..40 {
        store
            .incr::<ApiCalls>(format!("client-{client}"), 1)
            .await?;
    }
    // A short-lived session, so that the spread of ttls shows.
    store
        .set_with::<Session>(
            9_999,
            &Session { cart: vec![] },
            SetOptions::new().ttl(Duration::from_secs(20)),
        )
        .await?;

    let reported = report(&store).await;

    let session_ids: Vec<u64> = (0..600).chain([9_999]).collect();
    store.remove_many::<Session>(&session_ids).await?;
    store.remove_many::<Job>(0..250u64).await?;
    let clients: Vec<String> = (0..40).map(|client| format!("client-{client}")).collect();
    store.remove_many::<ApiCalls>(&clients).await?;
    reported
}

/// Walks the store's namespace with a progress bar, then prints the table.
async fn report<B: Backend>(store: &Store<B>) -> Result<()> {
    // Drawn on stderr only when it is a terminal.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} keys looked at {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let options = UsageOptions::new().on_progress({
        let bar = bar.clone();
        move |progress| {
            // SCAN cannot know how many keys match before the end; the size of the database
            // bounds how many it looks at.
            if let Some(total) = progress.database_keys {
                bar.set_length(total);
            }
            bar.set_position(progress.examined);
            bar.set_message(format!("({} in the namespace)", progress.keys));
        }
    });
    let usage = store.usage_with(options).await;
    bar.finish_and_clear();
    print_table(&usage?);
    Ok(())
}

fn print_table(usage: &Usage) {
    if usage.prefixes.is_empty() {
        println!("no keys in this namespace");
    } else {
        println!(
            "{:<18} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "prefix", "keys", "est. bytes", "no expiry", "ttl min", "median", "max"
        );
        for row in &usage.prefixes {
            let (min, median, max) = match &row.ttl {
                Some(ttl) => (human(ttl.min), human(ttl.median), human(ttl.max)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            println!(
                "{:<18} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
                row.prefix,
                row.keys,
                bytes(row.estimated_bytes),
                row.without_expiry,
                min,
                median,
                max
            );
        }
        println!(
            "{:<18} {:>9} {:>11} {:>9}",
            "total",
            usage.keys,
            bytes(usage.estimated_bytes),
            usage.without_expiry
        );
    }
    let database = usage
        .database_keys
        .map(|keys| format!(" of {keys} in the database"))
        .unwrap_or_default();
    let status = if usage.complete {
        "complete"
    } else {
        "stopped at the time limit: figures cover the keys walked"
    };
    println!(
        "{} keys{database}, walked in {:.2?} ({status})",
        usage.keys, usage.elapsed
    );
}

/// `1.5 KiB`, `12 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `29m59s`, `2h05m`, `3d04h`, `850ms`.
fn human(d: Duration) -> String {
    // To the nearest second: a key written with 30m has 29m59.9s left when it is walked.
    let s = (d.as_millis() as u64 + 500) / 1000;
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}
