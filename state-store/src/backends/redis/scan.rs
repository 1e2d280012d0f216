//! `SCAN` over the keys of a prefix (the `list` of the Redis backend), on a Cluster over every
//! primary in turn.

use std::collections::{HashSet, VecDeque};

use futures_core::Stream;
use redis::{Cmd, FromRedisValue, RedisError};

use super::RedisBackend;
use super::conn::{backend_error, worth_one_retry};
use super::feed::parse_nodes;
use crate::{Error, Result};

/// `SCAN MATCH` pattern for keys starting with `prefix`, glob characters escaped.
pub(super) fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

impl RedisBackend {
    /// `host:port` of every primary of the Cluster, as it knows them now.
    pub(super) async fn primaries(&self, key: &str) -> Result<Vec<(String, u16)>> {
        let nodes: String = self
            .query_idempotent("ids", key, redis::cmd("CLUSTER").arg("NODES"))
            .await?;
        Ok(parse_nodes(&nodes)
            .filter(|node| node.primary && !node.failed)
            .map(|node| (node.host.to_owned(), node.port))
            .collect())
    }

    /// Sends `cmd` to the Cluster node at `node`, once more if the connection broke.
    pub(super) async fn on_node<T: FromRedisValue>(
        &self, node: &(String, u16), operation: &'static str, key: &str, cmd: Cmd,
    ) -> Result<T> {
        if !self.conn.is_cluster() {
            return self.query_idempotent(operation, key, &cmd).await;
        }
        let mut conn = self.conn.clone();
        let reply = match conn.on_node(node, &cmd).await {
            Err(e) if worth_one_retry(&e) => conn.on_node(node, &cmd).await,
            reply => reply,
        };
        reply
            .and_then(|value| redis::from_redis_value(value).map_err(RedisError::from))
            .map_err(|e| backend_error(operation, key, e))
    }

    /// `SCAN MATCH` over the keys starting with `prefix`, each reported once; on a Cluster,
    /// over every primary in turn.
    pub(super) fn scan(&self, prefix: &str) -> impl Stream<Item = Result<String>> + Send + use<> {
        struct Scan {
            backend: RedisBackend,
            pattern: String,
            /// `None` once the server said the walk is complete.
            cursor: Option<u64>,
            batch: VecDeque<Vec<u8>>,
            /// SCAN may return a key more than once (and on a Cluster, a failover during the
            /// walk may show a key on two nodes); each is reported once.
            seen: HashSet<Vec<u8>>,
            /// On a Cluster, the primaries not walked yet (`None` until they are listed), and
            /// the one being walked.
            primaries: Option<VecDeque<(String, u16)>>,
            node: Option<(String, u16)>,
        }
        let state = Scan {
            backend: self.clone(),
            pattern: prefix_pattern(prefix),
            cursor: Some(0),
            batch: VecDeque::new(),
            seen: HashSet::new(),
            primaries: None,
            node: None,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(key) = state.batch.pop_front() {
                    if !state.seen.insert(key.clone()) {
                        continue;
                    }
                    let item = String::from_utf8(key).map_err(|e| Error::InvalidKey {
                        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        reason: "the key is not UTF-8".into(),
                    });
                    return Some((item, state));
                }
                if state.backend.conn.is_cluster() {
                    if state.primaries.is_none() {
                        match state.backend.primaries(&state.pattern).await {
                            Ok(primaries) => state.primaries = Some(primaries.into()),
                            Err(e) => {
                                state.cursor = None;
                                state.primaries = Some(VecDeque::new());
                                return Some((Err(e), state));
                            }
                        }
                        state.cursor = None;
                    }
                    if state.cursor.is_none() {
                        // The next primary, from the start of its keys.
                        state.node = state.primaries.as_mut()?.pop_front();
                        state.node.as_ref()?;
                        state.cursor = Some(0);
                    }
                }
                let cursor = state.cursor?;
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&state.pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply: Result<(u64, Vec<Vec<u8>>)> = match &state.node {
                    None => {
                        state
                            .backend
                            .query_idempotent("ids", &state.pattern, &cmd)
                            .await
                    }
                    Some(node) => {
                        state
                            .backend
                            .on_node(node, "ids", &state.pattern, cmd)
                            .await
                    }
                };
                match reply {
                    Ok((next, keys)) => {
                        state.cursor = (next != 0).then_some(next);
                        state.batch.extend(keys);
                    }
                    Err(e) => {
                        // Without a cursor the walk cannot go on: report and end.
                        state.cursor = None;
                        state.primaries = Some(VecDeque::new());
                        return Some((Err(e), state));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(prefix_pattern("svc:job:"), "svc:job:*");
        assert_eq!(prefix_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
