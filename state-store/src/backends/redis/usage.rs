//! [`Store::usage`](crate::Store::usage) on Redis (its [`UsageScan`](crate::backend::UsageScan)): what a namespace holds, walked with
//! `SCAN` so that a large production server keeps serving.
//!
//! Per `SCAN` batch (about `COUNT` keys of the database looked at, the matching ones returned):
//! - the keys not seen before (`SCAN` may return a key twice) get one pipeline of `PTTL`, which
//!   tells a key without expiry (-1) from one gone since the `SCAN` (-2, not counted), so the
//!   counts are exact;
//! - the keys that the tally picks for its bounded sample per prefix get one pipeline of
//!   `MEMORY USAGE` (the default `SAMPLES 5`: exact for a string, and bounded work for a large
//!   hash or set written by another client, which `SAMPLES 0` would walk in full).
//!
//! So a batch is three round trips, each command O(1) on the server but `MEMORY USAGE`, which
//! is bounded. `DBSIZE` at the start gives the progress callback the size of the whole key
//! space. On a Cluster every primary is walked in turn, each batch's pipelines sent to the
//! node the keys came from.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Value};

use super::RedisBackend;
use super::conn::{backend_error, worth_one_retry};
use super::scan::prefix_pattern;
use crate::{Result, Usage, UsageOptions, UsageTally};

/// The operation errors name.
const OPERATION: &str = "usage";

/// A Cluster primary, `host:port`; `None` for the one server (or Sentinel's primary).
type Node = Option<(String, u16)>;

impl RedisBackend {
    pub(super) async fn scan_usage(&self, prefix: &str, options: &UsageOptions) -> Result<Usage> {
        let pattern = prefix_pattern(prefix);
        let mut tally = UsageTally::new(prefix, options);
        let nodes: Vec<Node> = if self.conn.is_cluster() {
            self.primaries(&pattern)
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        let mut database_keys = 0;
        for node in &nodes {
            let keys: u64 = self
                .on(node.as_ref(), &pattern, redis::cmd("DBSIZE"))
                .await?;
            database_keys += keys;
        }
        tally.set_database_keys(database_keys);
        let count = options.scan_count.max(1);
        let mut examined = 0;
        for node in &nodes {
            let node = node.as_ref();
            let mut cursor = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(count);
                let (next, keys): (u64, Vec<Vec<u8>>) = self.on(node, &pattern, scan).await?;
                examined += u64::from(count);
                self.tally_batch(&mut tally, node, &pattern, keys).await?;
                tally.progress(examined.min(database_keys));
                if next == 0 {
                    break;
                }
                if tally.out_of_time() {
                    return Ok(tally.finish(false));
                }
                cursor = next;
            }
        }
        Ok(tally.finish(true))
    }

    /// Counts the keys of one `SCAN` batch and measures those picked for the sample.
    async fn tally_batch(
        &self, tally: &mut UsageTally, node: Option<&(String, u16)>, pattern: &str,
        keys: Vec<Vec<u8>>,
    ) -> Result<()> {
        let fresh: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|key| tally.first_sight(key))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut pttl = redis::pipe();
        for key in &fresh {
            pttl.cmd("PTTL").arg(key);
        }
        let ttls: Vec<i64> = self.pipeline_on(node, pattern, &pttl).await?;
        let mut picked = Vec::new();
        let mut measure = redis::pipe();
        for (key, ttl) in fresh.iter().zip(ttls) {
            let ttl = match ttl {
                -1 => None,
                // -2: gone since the SCAN.
                ..0 => continue,
                left => Some(Duration::from_millis(left.unsigned_abs())),
            };
            if let Some(slot) = tally.count(key, ttl) {
                picked.push(slot);
                measure.cmd("MEMORY").arg("USAGE").arg(key);
            }
        }
        if picked.is_empty() {
            return Ok(());
        }
        let sizes: Vec<Option<u64>> = self.pipeline_on(node, pattern, &measure).await?;
        for (slot, size) in picked.into_iter().zip(sizes) {
            if let Some(size) = size {
                tally.measured(slot, size);
            }
        }
        Ok(())
    }

    /// Sends `cmd` to `node` (or the one server), once more if the connection broke: only for
    /// reads.
    async fn on<T: FromRedisValue>(
        &self, node: Option<&(String, u16)>, pattern: &str, cmd: Cmd,
    ) -> Result<T> {
        match node {
            None => self.query_idempotent(OPERATION, pattern, &cmd).await,
            Some(node) => self.on_node(node, OPERATION, pattern, cmd).await,
        }
    }

    /// Sends the read-only `pipeline` to `node` (or the one server), once more if the
    /// connection broke, and converts each reply.
    async fn pipeline_on<T: FromRedisValue>(
        &self, node: Option<&(String, u16)>, pattern: &str, pipeline: &Pipeline,
    ) -> Result<Vec<T>> {
        let replies = self.send_pipeline(node, pipeline).await;
        replies
            .and_then(|replies| {
                replies
                    .into_iter()
                    .map(|reply| redis::from_redis_value(reply).map_err(RedisError::from))
                    .collect()
            })
            .map_err(|e| backend_error(OPERATION, pattern, e))
    }

    async fn send_pipeline(
        &self, node: Option<&(String, u16)>, pipeline: &Pipeline,
    ) -> redis::RedisResult<Vec<Value>> {
        if let Some(node) = node.filter(|_| self.conn.is_cluster()) {
            // The keys of a batch all live on the node that returned them (in several slots,
            // which a pipeline may mix: only one command may not).
            let mut conn = self.conn.clone();
            return match conn.pipeline_on_node(node, pipeline).await {
                Err(e) if worth_one_retry(&e) => conn.pipeline_on_node(node, pipeline).await,
                replies => replies,
            };
        }
        let mut conn = self.conn.clone();
        match pipeline.query_async(&mut conn).await {
            Err(e) if worth_one_retry(&e) => pipeline.query_async(&mut conn).await,
            replies => replies,
        }
    }
}
