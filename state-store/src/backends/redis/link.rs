//! What the shared connection type ([`RedisConnection`](crate::RedisConnection)) asks of the
//! connection of each deployment beyond sending commands: the few things only a Cluster does
//! differently. One server's connections take the defaults; the Cluster's and Sentinel's
//! connections implement it in their own modules.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub(super) trait Link: ConnectionLike {
    /// `node`, `cluster` or `sentinel`, for `Debug`.
    const KIND: &'static str;

    /// Whether commands go to a Cluster, where multi-key commands must be split per slot.
    const CLUSTER: bool = false;

    /// `items` grouped by the hash slot of their `key`, in their order within a group, on a
    /// Cluster; elsewhere `items` back as they are.
    fn per_slot<T>(&self, items: Vec<T>, _key: impl Fn(&T) -> &str) -> Result<Vec<Vec<T>>, Vec<T>> {
        Err(items)
    }

    /// Sends `cmd` to the Cluster node at `node`; elsewhere, as any command.
    fn on_node<'a>(&'a mut self, _node: &'a (String, u16), cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.req_packed_command(cmd)
    }

    /// Which server the connection goes to, as a number that changes when it follows another
    /// (a Sentinel failover); constant elsewhere. A durable write and its `WAIT` must go to the
    /// same one.
    fn generation(&self) -> u64 {
        0
    }

    /// Sends `cmd`, which names no key, to the primary of `key`'s slot on a Cluster;
    /// elsewhere, as any command.
    fn on_key_primary<'a>(&'a mut self, _key: &'a str, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.req_packed_command(cmd)
    }

    /// Sends `pipeline` to the Cluster node at `node`; elsewhere, as any pipeline.
    fn pipeline_on_node<'a>(
        &'a mut self, _node: &'a (String, u16), pipeline: &'a Pipeline,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.req_packed_commands(pipeline, 0, pipeline.len())
    }
}

impl Link for ConnectionManager {
    const KIND: &'static str = "node";
}

/// The client-side cache's tracking connection.
impl Link for MultiplexedConnection {
    const KIND: &'static str = "node";
}
