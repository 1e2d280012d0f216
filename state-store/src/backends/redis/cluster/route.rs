//! The Cluster's connection: the `redis` crate's cluster connection, which routes each command
//! to the primary of its key's slot, with pipelines that announce a change routed by their keys.

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::super::link::Link;

/// The cluster connection of a [`RedisConnection`](crate::RedisConnection).
#[derive(Clone)]
pub(crate) struct Routed(pub(crate) ClusterConnection);

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match publishing_pipeline_route(pipeline) {
            // The `redis` crate takes a `PUBLISH` channel for a key when it routes a pipeline,
            // and refuses a `SET` and its announcement as crossing slots: route by the keys
            // instead (the server itself takes `PUBLISH` for keyless).
            Some(route) => Box::pin(
                self.0
                    .route_pipeline(pipeline.clone(), offset, count, route),
            ),
            None => self.0.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl Link for Routed {
    const KIND: &'static str = "cluster";
    const CLUSTER: bool = true;

    fn per_slot<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Result<Vec<Vec<T>>, Vec<T>> {
        let mut order = Vec::new();
        let mut groups: std::collections::HashMap<_, Vec<T>> = std::collections::HashMap::new();
        for item in items {
            let slot = Slot::for_key(key(&item));
            groups
                .entry(slot)
                .or_insert_with(|| {
                    order.push(slot);
                    Vec::new()
                })
                .push(item);
        }
        Ok(order
            .iter()
            .filter_map(|slot| groups.remove(slot))
            .collect())
    }

    fn on_node<'a>(&'a mut self, node: &'a (String, u16), cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.0.clone(),
            port: node.1,
        });
        Box::pin(self.0.route_command(cmd.clone(), route))
    }

    fn on_key_primary<'a>(&'a mut self, key: &'a str, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
        Box::pin(
            self.0
                .route_command(cmd.clone(), RoutingInfo::SingleNode(route)),
        )
    }

    fn pipeline_on_node<'a>(
        &'a mut self, node: &'a (String, u16), pipeline: &'a Pipeline,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = SingleNodeRoutingInfo::ByAddress {
            host: node.0.clone(),
            port: node.1,
        };
        let len = pipeline.len();
        Box::pin(self.0.route_pipeline(pipeline.clone(), 0, len, route))
    }
}

/// The route of a pipeline that holds `PUBLISH` commands: the primary of the slot of its first
/// other command's key. `None` for any other pipeline, which the `redis` crate routes.
fn publishing_pipeline_route(pipeline: &Pipeline) -> Option<SingleNodeRoutingInfo> {
    let is_publish = |cmd: &redis::Cmd| {
        matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name))
            if name.eq_ignore_ascii_case(b"PUBLISH"))
    };
    if !pipeline.cmd_iter().any(is_publish) {
        return None;
    }
    let key = pipeline
        .cmd_iter()
        .filter(|cmd| !is_publish(cmd))
        .find_map(|cmd| match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(key)) => Some(key.to_vec()),
            _ => None,
        })?;
    Some(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )))
}
