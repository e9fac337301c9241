//! What the service answers a sender whose request it cannot take, so that
//! the sender knows what to do: a body too large is refused from its
//! announced length, readably; a failure on weir's side (a connector that
//! timed out, crashed or met a passing error) is `503` with `Retry-After`,
//! so the sender tries again; only input that is wrong is `400`.

use super::{reply, BODY_LIMIT};
use crate::runtime::types::ErrorKind;
use crate::runtime::CallError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long a sender is asked to wait after a passing failure, where the
/// connector does not say.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The most of a body too large that is read (and dropped) before the
/// `413` is sent, so that a sender that writes its whole body before it
/// reads the answer gets to read it; a larger one is cut off.
const DRAIN_LIMIT: usize = 64 << 20;

/// How long reading such a body may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The body's announced length when it is over the limit.
pub(super) fn announced_too_large(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > BODY_LIMIT)
}

/// The `413` for a body of `announced` bytes, sent once the body is read
/// and dropped (up to [`DRAIN_LIMIT`], within [`DRAIN_TIME`]).
pub(super) async fn too_large(body: axum::body::Body, announced: usize) -> Response {
    if announced <= DRAIN_LIMIT {
        let drain = axum::body::to_bytes(body, DRAIN_LIMIT);
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    too_large_reply().into_response()
}

/// The `413` itself.
pub(super) fn too_large_reply() -> super::Reply {
    reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is larger than {} MiB: send the changes in several requests",
            BODY_LIMIT >> 20
        ),
    )
}

/// The answer to a request a connector failed to handle: a passing failure
/// (time limit, crash, memory, a transient error of its own or of its
/// system) asks the sender to try again; input it refused is the sender's
/// to fix.
pub(super) fn connector_failed(e: &CallError) -> Response {
    let (status, retry) = match e {
        CallError::Timeout { .. }
        | CallError::Memory { .. }
        | CallError::Trap { .. }
        | CallError::Output { .. }
        | CallError::Stopped { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(RETRY_AFTER)),
        CallError::Unsupported { .. } => (StatusCode::NOT_FOUND, None),
        CallError::Connector { error, .. } => match error.kind {
            ErrorKind::Transient | ErrorKind::RateLimited => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(
                    error
                        .retry_after_ms
                        .map(Duration::from_millis)
                        .unwrap_or(RETRY_AFTER),
                ),
            ),
            ErrorKind::Auth => (StatusCode::UNAUTHORIZED, None),
            ErrorKind::Permission => (StatusCode::FORBIDDEN, None),
            // weir's own configuration: not the sender's to fix.
            ErrorKind::InvalidConfig | ErrorKind::Unsupported => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(RETRY_AFTER))
            }
            ErrorKind::Rejected | ErrorKind::Schema | ErrorKind::NotFound => {
                (StatusCode::BAD_REQUEST, None)
            }
        },
    };
    let mut response = reply(status, e.to_string()).into_response();
    if let Some(after) = retry {
        let secs = after.as_millis().div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::types::ConnectorError;

    fn status_of(e: CallError) -> (u16, Option<String>) {
        let r = connector_failed(&e);
        let retry = r
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), retry)
    }

    fn connector(kind: ErrorKind, retry_after_ms: Option<u64>) -> CallError {
        CallError::Connector {
            system: "crm".into(),
            error: ConnectorError {
                kind,
                message: "x".into(),
                retry_after_ms,
            },
        }
    }

    #[test]
    fn passing_failures_ask_the_sender_to_retry_and_bad_input_does_not() {
        let timeout = CallError::Timeout {
            system: "crm".into(),
            limit: Duration::from_secs(5),
        };
        let trap = CallError::Trap {
            system: "crm".into(),
            message: "unreachable".into(),
        };
        assert_eq!(status_of(timeout), (503, Some("30".into())));
        assert_eq!(status_of(trap), (503, Some("30".into())));
        assert_eq!(
            status_of(connector(ErrorKind::Transient, Some(2500))),
            (503, Some("3".into()))
        );
        assert_eq!(status_of(connector(ErrorKind::RateLimited, None)).0, 503);
        assert_eq!(status_of(connector(ErrorKind::InvalidConfig, None)).0, 503);
        assert_eq!(status_of(connector(ErrorKind::Rejected, None)), (400, None));
        assert_eq!(status_of(connector(ErrorKind::Schema, None)), (400, None));
        assert_eq!(status_of(connector(ErrorKind::Auth, None)), (401, None));
    }

    #[test]
    fn an_announced_body_over_the_limit_is_told_from_its_length() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(BODY_LIMIT + 1));
        assert_eq!(announced_too_large(&h), Some(BODY_LIMIT + 1));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(BODY_LIMIT));
        assert_eq!(announced_too_large(&h), None);
        assert_eq!(announced_too_large(&HeaderMap::new()), None);
    }
}
