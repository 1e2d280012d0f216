//! [`Error`] as an axum response (feature `axum`): a handler returns
//! `Result<_, state_store::Error>` and `?` does the rest.

use std::sync::Arc;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::Error;

/// What `Retry-After` says on a 503: the store is worth another try in a second.
const RETRY_AFTER_SECONDS: u32 = 1;

/// The status of each variant, and the short, fixed phrase its body says.
///
/// The phrase is chosen per variant, never taken from the error's message: that names the full
/// key (another tenant's id, in a shared namespace) and the driver's error (which may quote a
/// URL with its password). The whole error is for the service's own log.
fn status_and_phrase(error: &Error) -> (StatusCode, &'static str) {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let internal = StatusCode::INTERNAL_SERVER_ERROR;
    // Exhaustive inside the crate: a new variant must be given its status here.
    match error {
        Error::Conflict { .. } => (
            StatusCode::CONFLICT,
            "the state changed concurrently; try again",
        ),
        Error::LeaseLost { .. } => (StatusCode::CONFLICT, "the lease is held elsewhere"),
        Error::Trimmed { .. } => (StatusCode::GONE, "the changes after this cursor are gone"),
        Error::NotDurable { .. } => (unavailable, "the write was not replicated in time"),
        Error::Lagged { .. } | Error::Interrupted { .. } => {
            (unavailable, "the change feed was interrupted")
        }
        Error::Connect { .. } | Error::Backend { .. } => {
            (unavailable, "the state store is unavailable")
        }
        Error::Disabled { .. } => (internal, "the state operation is disabled"),
        Error::Decode { .. } => (internal, "a stored value cannot be decoded"),
        Error::Encode { .. } => (internal, "the value cannot be encoded"),
        Error::InvalidNamespace { .. } => (internal, "the state namespace is invalid"),
        Error::InvalidKey { .. } => (internal, "a state key is invalid"),
        Error::NotACounter { .. } => (internal, "the stored value is not a counter"),
        Error::InvalidTtl { .. } => (internal, "the expiry is invalid"),
        Error::Unsupported { .. } => (internal, "the state backend does not support this"),
    }
}

/// A handler can return `Result<T, state_store::Error>`: the error becomes a response with a
/// status that says what it means to the client, and a short JSON body, `{"error": "..."}`.
///
/// | Variant | Status | Body's `error` |
/// |---|---|---|
/// | [`Conflict`](Error::Conflict) | 409 Conflict | `the state changed concurrently; try again` |
/// | [`LeaseLost`](Error::LeaseLost) | 409 Conflict | `the lease is held elsewhere` |
/// | [`Trimmed`](Error::Trimmed) | 410 Gone | `the changes after this cursor are gone` |
/// | [`Connect`](Error::Connect), [`Backend`](Error::Backend) | 503 Service Unavailable, `Retry-After: 1` | `the state store is unavailable` |
/// | [`NotDurable`](Error::NotDurable) | 503, `Retry-After: 1` (writing again is safe) | `the write was not replicated in time` |
/// | [`Lagged`](Error::Lagged), [`Interrupted`](Error::Interrupted) | 503, `Retry-After: 1` | `the change feed was interrupted` |
/// | [`Disabled`](Error::Disabled) | 500 Internal Server Error | `the state operation is disabled` |
/// | [`Decode`](Error::Decode) | 500 | `a stored value cannot be decoded` |
/// | [`Encode`](Error::Encode) | 500 | `the value cannot be encoded` |
/// | [`InvalidNamespace`](Error::InvalidNamespace) | 500 | `the state namespace is invalid` |
/// | [`InvalidKey`](Error::InvalidKey) | 500 | `a state key is invalid` |
/// | [`NotACounter`](Error::NotACounter) | 500 | `the stored value is not a counter` |
/// | [`InvalidTtl`](Error::InvalidTtl) | 500 | `the expiry is invalid` |
/// | [`Unsupported`](Error::Unsupported) | 500 | `the state backend does not support this` |
///
/// 503 is what a client may retry as it is (a server that could not be reached, or did not
/// answer in time; a [`Backend`](Error::Backend) error the server answered, such as an ACL
/// refusal, is a 503 too, since the variant does not tell them apart); 409 is a race the client
/// lost; 410 is a journal cursor too old to resume from (read the state, then resume where the
/// error says); 500 is a fault of the service or its data, which trying again does not mend.
///
/// The body is a fixed phrase per variant: never the key (which holds the id, perhaps another
/// tenant's), never the driver's message (which may quote a URL with its password). The error
/// itself rides in the response's extensions, as an `Arc<state_store::Error>`, for a layer
/// that logs it (`axum::middleware::map_response`, as `examples/axum_service.rs` does).
///
/// ```
/// use axum_core::response::IntoResponse;
/// use state_store::Error;
///
/// let error = Error::Conflict { key: "shop:cart:tenant-7:alice".into(), attempts: 5 };
/// let response = error.into_response();
/// assert_eq!(response.status(), 409);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// // The whole error, for the log.
/// let logged = response.extensions().get::<std::sync::Arc<Error>>().unwrap();
/// assert!(matches!(**logged, Error::Conflict { attempts: 5, .. }));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, phrase) = status_and_phrase(&self);
        let body = serde_json::json!({ "error": phrase }).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        // For a layer that logs what the client is not shown.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;

    /// A key of another tenant, and a password, which no body may show.
    const KEY: &str = "shop:cart:tenant-b:alice@example.com";
    const PASSWORD: &str = "S3cret-Passw0rd";

    fn json_error() -> serde_json::Error {
        serde_json::from_slice::<u8>(b"{").unwrap_err()
    }

    /// One error of each variant, each naming the key (and the password where a driver's
    /// message could quote it), with the status it must get.
    fn every_variant() -> Vec<(Error, u16)> {
        let key = || KEY.to_string();
        let driver = || format!("redis://user:{PASSWORD}@10.0.0.7:6379 refused {KEY}").into();
        vec![
            (
                Error::Conflict {
                    key: key(),
                    attempts: 3,
                },
                409,
            ),
            (
                Error::LeaseLost {
                    key: key(),
                    token: 9,
                },
                409,
            ),
            (
                Error::Connect {
                    target: format!("redis://user:{PASSWORD}@host"),
                    source: driver(),
                },
                503,
            ),
            (
                Error::Backend {
                    operation: "get",
                    key: key(),
                    source: driver(),
                },
                503,
            ),
            (
                Error::NotDurable {
                    key: key(),
                    acked: 0,
                    required: 1,
                },
                503,
            ),
            (Error::Lagged { missed: 4 }, 503),
            (
                Error::Trimmed {
                    cursor: crate::Cursor::new(0, 3),
                    resume: crate::Cursor::new(0, 9),
                },
                410,
            ),
            (Error::Interrupted { channel: key() }, 503),
            (
                Error::Disabled {
                    operation: "set",
                    enable: "enable_set",
                },
                500,
            ),
            (
                Error::Decode {
                    key: key(),
                    source: json_error(),
                },
                500,
            ),
            (
                Error::Encode {
                    key: key(),
                    source: json_error(),
                },
                500,
            ),
            (
                Error::InvalidNamespace {
                    namespace: key(),
                    reason: PASSWORD.into(),
                },
                500,
            ),
            (
                Error::InvalidKey {
                    key: key(),
                    reason: PASSWORD.into(),
                },
                500,
            ),
            (
                Error::NotACounter {
                    key: key(),
                    reason: PASSWORD.into(),
                },
                500,
            ),
            (
                Error::InvalidTtl {
                    key: key(),
                    ttl: Duration::ZERO,
                    reason: "zero",
                },
                500,
            ),
            (
                Error::Unsupported {
                    operation: "watch",
                    backend: "MemoryBackend",
                },
                500,
            ),
        ]
    }

    async fn body(response: Response) -> String {
        let mut bytes = Vec::new();
        let mut data = response.into_body().into_data_stream();
        while let Some(chunk) = data.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn each_variant_gets_its_status_and_a_body_without_key_or_password() {
        let cases = every_variant();
        // Every variant is here (the list of names is the one `Debug` uses).
        let mut variants: Vec<_> = cases.iter().map(|(e, _)| e.variant()).collect();
        variants.dedup();
        assert_eq!(variants.len(), 16, "{variants:?}");
        for (error, status) in cases {
            let variant = error.variant();
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{variant}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_TYPE], "application/json", "{variant}");
            let retry_after = headers
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_owned());
            let expected = (status == 503).then(|| "1".to_owned());
            assert_eq!(retry_after, expected, "{variant}");
            let logged = response
                .extensions()
                .get::<Arc<Error>>()
                .map(|e| e.variant());
            assert_eq!(logged, Some(variant), "the error rides in the extensions");
            let body = body(response).await;
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let phrase = json["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{variant}: {body}"));
            assert!(!phrase.is_empty() && phrase.len() < 60, "{variant}: {body}");
            assert_eq!(json.as_object().unwrap().len(), 1, "{variant}: {body}");
            for secret in [PASSWORD, "tenant-b", "alice", "10.0.0.7"] {
                assert!(!body.contains(secret), "{variant}: {body} shows {secret}");
            }
        }
    }
}
