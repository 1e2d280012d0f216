//! Observability: the spans and events of the `tracing` feature.
//!
//! # Spans
//!
//! With the `tracing` feature every `Store` call (but `ids`, a stream) runs in one span (level
//! `INFO`, target `state_store`) named after the operation: `get`, `set`, `update`, `check`,
//! `get_many`, ... Its fields are OpenTelemetry's database client fields, so
//! `tracing-opentelemetry` exports them as they are:
//!
//! | field | value |
//! |---|---|
//! | `db.system.name` | `redis`, `memory` or `nats` (`Extensions::system_name` for your own engine) |
//! | `db.operation.name` | the operation |
//! | `db.operation.batch.size` | how many ids a `get_many`, `set_many` or `remove_many` was given |
//! | `state.namespace`, `state.prefix` | the store's namespace and the type's prefix |
//! | `state.id` | the id as written in the key, **only** with `store.trace_ids(true)`: ids are often personal data |
//! | `state.outcome` | `found`/`none`, `true`/`false`, `written`/`unchanged`, `allowed`/`refused`, `ok` or `error` |
//! | `state.attempts` | for `update` and its siblings: how many times the change ran |
//! | `error.type`, `otel.status_code` | the `Error` variant (`Decode`, `Conflict`, ...) and `ERROR`, on failure |
//!
//! # Events
//!
//! Events at `WARN`: a watcher that fell behind (`Error::Lagged`, with how many changes it missed),
//! a change feed interrupted by a lost connection, the Redis feed's connection closing and failing
//! to come back, the client-side cache's tracking connection failing, and a Sentinel failover
//! followed to a new primary. `tests/tracing.rs` captures them with a subscriber.
//!
//! # Cost
//!
//! It is off by default because it is not free even without a subscriber: 237 more instructions per
//! call (`valgrind --tool=callgrind`, `bench --profile memory-get --ops 200000`, minus a run with
//! `--ops 0`, with and without the feature): 3.5 % of a memory-backend `get`, about 1 % of a Redis
//! `get`.
