//! The options of a [`NatsBackend`](crate::NatsBackend).

use std::time::Duration;

use crate::setters::setters;

/// How long to wait for a connection, and for an answer (as on Redis): 5 s each by default;
/// how many replicas the buckets of durable types get: automatic by default (see
/// [`durable_replicas`](NatsOptions::durable_replicas)).
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) durable_replicas: Option<usize>,
    pub(super) options: Option<async_nats::ConnectOptions>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            durable_replicas: None,
            options: None,
        }
    }
}

impl NatsOptions {
    /// The default options.
    pub fn new() -> NatsOptions {
        NatsOptions::default()
    }

    /// `async-nats` options to start from: credentials (`credentials_file`, `nkey`, `token`,
    /// `user_and_password`), TLS, a name. The timeouts above are set on them.
    pub fn client_options(mut self, options: async_nats::ConnectOptions) -> NatsOptions {
        self.options = Some(options);
        self
    }

    /// How many servers keep the bucket of a `#[state(durable)]` type: its stream's
    /// `num_replicas`. JetStream acknowledges a write once a majority of the stream's replicas
    /// stored it, so with 3 a write that returned `Ok` survives the loss of any one server.
    ///
    /// By default automatic: 3 when the server the client connected to is part of a cluster
    /// (its `INFO` names one), else 1 (a server alone keeps one copy, on its disk). Buckets of
    /// other types keep 1 replica. The bucket is created with these replicas at the type's
    /// first write, and with several it is read from its stream's leader only (no direct gets,
    /// which any replica answers, perhaps before it has applied the last write). A durable
    /// type's bucket found with fewer (made before the type was `durable`, or by a client with
    /// other options) has them raised at its first durable write or removal here; no bucket
    /// loses replicas. A count the servers cannot give (any above 1 on a server alone, more
    /// than the cluster's JetStream servers, more than 5) makes the write fail with
    /// [`Error::Backend`](crate::Error::Backend) naming the bucket and the count, writing
    /// nothing. Counts below 1 are 1.
    pub fn durable_replicas(mut self, replicas: usize) -> NatsOptions {
        self.durable_replicas = Some(replicas.max(1));
        self
    }
}

setters! {
    impl[] NatsOptions {
        /// How long to wait for the connection to be established.
        connect_timeout(timeout: Duration);
        /// How long to wait for each answer of the server (a request, a JetStream
        /// acknowledgement).
        request_timeout(timeout: Duration);
    }
}
