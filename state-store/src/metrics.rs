//! Metrics of `Store` calls and the engines, through the [`metrics`](https://docs.rs/metrics)
//! crate's facade (0.24), with the `metrics` feature: any exporter that installs a recorder
//! (`metrics-exporter-prometheus`, StatsD, OpenTelemetry) receives them.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `db.client.operation.duration` | histogram, seconds | `db.system.name`, `db.operation.name`, `state.prefix`, `state.outcome` | how long each `Store` call took, as OpenTelemetry's database client metric |
//! | `state_store.cache.hits` | counter | `db.system.name`, `state.prefix` | reads of a `cache` type served by the client-side cache |
//! | `state_store.cache.misses` | counter | `db.system.name`, `state.prefix` | reads of a `cache` type that went to the server |
//! | `state_store.batch.size` | histogram | `db.system.name` | how many `get`s each automatic read batch (one `MGET`) carried |
//! | `state_store.watch.missed` | counter | `db.system.name`, `state.prefix` | changes watchers missed: the sum of their [`Error::Lagged`](crate::Error::Lagged) counts |
//! | `state_store.reconnections` | counter | `db.system.name`, `state.connection` | connections that broke and were open again |
//!
//! The label values:
//! - `db.system.name`: the engine, `redis`, `memory` or `nats` (an engine of your own names
//!   itself with [`Extensions::system_name`](crate::backend::Extensions::system_name)).
//! - `db.operation.name`: the `Store` method, `get`, `set`, `update`, `check`, `get_many`, ...
//!   (the name of the `tracing` feature's span).
//! - `state.prefix`: the state type's key prefix, without the namespace (empty for `usage`,
//!   which covers every type).
//! - `state.outcome`: the same words as the `tracing` feature's spans: `found` / `none`,
//!   `true` / `false`, `written` / `unchanged`, `allowed` / `refused`, `ok`, or `error`.
//! - `state.connection`: `data` (the connection commands go over, a durable write's own one,
//!   or a Sentinel primary followed to a new server), `feed` (the change feeds' pub/sub
//!   connection) or `cache` (the client-side cache's tracking connection).
//!
//! Where each is counted:
//! - A cache hit or miss is counted per `get` of a type declared with `cache`, on an engine
//!   with a client-side cache (Redis): a miss when the value was read from the server, whether
//!   or not it is then kept, so a cache that is turned off shows as all misses.
//! - A read batch is counted when it is sent; a `get` that finds no read in flight goes out
//!   alone at once, as a plain `GET`, and is no batch. Only the Redis backend batches reads
//!   (`RedisOptions::read_batch`).
//! - A reconnection is counted once the new connection works: after the data connection broke
//!   under a command, at the first command answered again (however many commands failed with
//!   it); after the change feed or the cache lost their connection, once they have connected
//!   again. The connections of a Redis Cluster reconnect inside the `redis` crate, and those of
//!   NATS inside `async-nats`: they are not counted.
//!
//! Without a recorder the facade drops every value, but a call still reads the clock twice and
//! finds its labels' key: 485 more instructions per call (`valgrind --tool=callgrind`,
//! `bench --profile memory-get --ops 200000` minus a run with `--ops 0`, with and without the
//! feature), 8 % of a memory-backend `get`; 791 more, 4 % of the client's instructions, for a
//! Redis `get` (`--profile get-typed --ops 10000`), whose time is mostly the round trip. That
//! is why the feature is off by default. The
//! benchmark's section 6 compares `Store::get` with the bare `Backend::get` in either build.
//!
//! ```
//! // After installing a recorder (an exporter's), give the names their units and help texts:
//! state_store::metrics::describe();
//! assert_eq!(state_store::metrics::OPERATION_DURATION, "db.client.operation.duration");
//! ```

/// `db.client.operation.duration`: how long each `Store` call took, in seconds (a histogram).
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `state_store.cache.hits`: reads served by the client-side cache (a counter).
pub const CACHE_HITS: &str = "state_store.cache.hits";
/// `state_store.cache.misses`: reads of a cached type that went to the server (a counter).
pub const CACHE_MISSES: &str = "state_store.cache.misses";
/// `state_store.batch.size`: how many `get`s each automatic read batch carried (a histogram).
pub const BATCH_SIZE: &str = "state_store.batch.size";
/// `state_store.watch.missed`: changes watchers missed (a counter).
pub const WATCH_MISSED: &str = "state_store.watch.missed";
/// `state_store.reconnections`: connections that broke and were open again (a counter).
pub const RECONNECTIONS: &str = "state_store.reconnections";

/// Gives every metric its unit and help text, in the recorder installed now (exporters show
/// them, as Prometheus's `# HELP` lines). Call it once the recorder is installed; the metrics
/// are recorded without it too.
pub fn describe() {
    use ::metrics::Unit;
    ::metrics::describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Duration of state-store calls"
    );
    ::metrics::describe_counter!(
        CACHE_HITS,
        Unit::Count,
        "Reads served by the client-side cache"
    );
    ::metrics::describe_counter!(
        CACHE_MISSES,
        Unit::Count,
        "Reads of a cached type that went to the server"
    );
    ::metrics::describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Reads carried by each automatic read batch"
    );
    ::metrics::describe_counter!(WATCH_MISSED, Unit::Count, "Changes watchers missed");
    ::metrics::describe_counter!(
        RECONNECTIONS,
        Unit::Count,
        "Connections that broke and were open again"
    );
}

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::RwLock;

use ::metrics::{Key, Label};

const SYSTEM: &str = "db.system.name";
const OPERATION: &str = "db.operation.name";
const PREFIX: &str = "state.prefix";
const OUTCOME: &str = "state.outcome";
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
const CONNECTION: &str = "state.connection";

/// What the duration of one `Store` call is labelled with, but its outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    system: &'static str,
    operation: &'static str,
    prefix: &'static str,
}

impl Call {
    pub(crate) fn new(system: &'static str, operation: &'static str, prefix: &'static str) -> Call {
        Call {
            system,
            operation,
            prefix,
        }
    }

    /// Records the call, begun at `started`, as done with `outcome`.
    pub(crate) fn finish(&self, started: std::time::Instant, outcome: &'static str) {
        let key = key(
            OPERATION_DURATION,
            [
                (SYSTEM, self.system),
                (OPERATION, self.operation),
                (PREFIX, self.prefix),
                (OUTCOME, outcome),
            ],
        );
        let seconds = started.elapsed().as_secs_f64();
        ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
            .record(seconds);
    }
}

static METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

/// The key of metric `name` with these (at most four) labels: made (its labels allocated, its
/// hash computed) once per label set, which is most of what recording costs without a
/// recorder. The label sets are few (operations, types, outcome words, connections), so the
/// keys are kept for good.
fn key<const N: usize>(
    name: &'static str, labels: [(&'static str, &'static str); N],
) -> &'static Key {
    static KEYS: RwLock<HashMap<LabelAddresses, &'static Key, BuildAddresses>> =
        RwLock::new(HashMap::with_hasher(BuildAddresses));
    const { assert!(N <= 4, "a metric key of at most four labels") };
    // The strings are `'static`: their addresses and lengths name them (one label set may get
    // two keys, if the same word sits at two addresses; the recorder sees one metric). A label's
    // name is the same for a metric's every key, so the metric's name and the label values
    // tell its keys apart.
    let address = |s: &'static str| (s.as_ptr() as usize, s.len());
    let mut addresses = [(0, 0); 5];
    addresses[0] = address(name);
    for (slot, (_, value)) in addresses[1..].iter_mut().zip(labels) {
        *slot = address(value);
    }
    if let Some(key) = KEYS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&addresses)
    {
        return key;
    }
    let mut keys = KEYS.write().unwrap_or_else(|e| e.into_inner());
    keys.entry(addresses).or_insert_with(|| {
        let labels = labels
            .iter()
            .map(|&(label, value)| Label::from_static_parts(label, value))
            .collect::<Vec<_>>();
        Box::leak(Box::new(Key::from_parts(name, labels)))
    })
}

/// The address and length of a key's metric name and of each of its (at most four) label
/// values.
type LabelAddresses = [(usize, usize); 5];

/// Hashes the addresses and lengths of a key's name and label values: a multiply and a
/// rotation per word (as rustc's FxHasher), where SipHash would cost more than the key it finds.
#[derive(Debug, Clone, Copy, Default)]
struct BuildAddresses;

impl BuildHasher for BuildAddresses {
    type Hasher = AddressHasher;
    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

#[derive(Debug)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
}

/// A read of a cached type of `prefix`, served by the cache (`hit`) or not.
pub(crate) fn cache_read(system: &'static str, prefix: &'static str, hit: bool) {
    let name = if hit { CACHE_HITS } else { CACHE_MISSES };
    let key = key(name, [(SYSTEM, system), (PREFIX, prefix)]);
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

/// A read batch of `size` calls, sent.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn batch_sent(system: &'static str, size: usize) {
    let key = key(BATCH_SIZE, [(SYSTEM, system)]);
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
        .record(size as f64);
}

/// A watcher of `prefix` missed `missed` changes.
pub(crate) fn watch_missed(system: &'static str, prefix: &'static str, missed: u64) {
    let key = key(WATCH_MISSED, [(SYSTEM, system), (PREFIX, prefix)]);
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA))
        .increment(missed);
}

/// Connection `connection` (`data`, `feed`, `cache`) broke and is open again.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn reconnected(system: &'static str, connection: &'static str) {
    let key = key(RECONNECTIONS, [(SYSTEM, system), (CONNECTION, connection)]);
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}
