//! The options of a [`NatsBackend`](crate::NatsBackend).

use std::time::Duration;

use crate::setters::setters;

/// How long to wait for a connection, and for an answer (as on Redis): 5 s each by default.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) options: Option<async_nats::ConnectOptions>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
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
