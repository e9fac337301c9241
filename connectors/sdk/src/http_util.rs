//! HTTP helpers on top of the host's `http` import: JSON requests and the
//! mapping of HTTP statuses to connector errors.

use crate::http::{self, Request};
use crate::{ConnectorError, ErrorKind, Result};
use serde_json::Value;

/// A JSON response.
pub struct JsonResponse {
    /// The status code.
    pub status: u16,
    /// The parsed body (`null` when empty, and for an accepted error status
    /// whose body is not JSON, such as an HTML 404 page).
    pub body: Value,
    /// The response headers; names are lower case.
    pub headers: Vec<(String, String)>,
}

impl JsonResponse {
    /// The values of every header named `name` (lower case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a request with an optional JSON body; the host adds `credential`.
/// Statuses of 400 and above come back as errors (see [`status_error`]), except
/// those listed in `accept`.
pub fn send_json(
    method: &str,
    url: &str,
    body: Option<&Value>,
    credential: Option<&str>,
    accept: &[u16],
) -> Result<JsonResponse> {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    let request = Request {
        method: method.to_string(),
        url: url.to_string(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()),
        credential: credential.map(String::from),
    };
    let response = http::send(&request)?;
    if response.status >= 400 && !accept.contains(&response.status) {
        return Err(status_error(method, url, &response));
    }
    let body = if response.status == 204 || response.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&response.body) {
            Ok(body) => body,
            // An accepted error status (a 404 the caller expects) may come with an HTML page.
            Err(_) if response.status >= 400 => Value::Null,
            Err(e) => {
                return Err(ConnectorError::schema(format!(
                    "{method} {url}: the response is not JSON: {e}"
                )))
            }
        }
    };
    Ok(JsonResponse {
        status: response.status,
        body,
        headers: response.headers,
    })
}

/// The connector error for an HTTP error status: 401 auth, 403 permission,
/// 404 not-found, 429 rate-limited (with `retry-after`), other 4xx rejected
/// (this item), 5xx transient.
pub fn status_error(method: &str, url: &str, response: &http::Response) -> ConnectorError {
    let text = String::from_utf8_lossy(&response.body);
    let snippet: String = text.chars().take(200).collect();
    let message = format!("{method} {url}: HTTP {}: {snippet}", response.status);
    let kind = match response.status {
        401 => ErrorKind::Auth,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        400..=499 => ErrorKind::Rejected,
        _ => ErrorKind::Transient,
    };
    let retry_after_ms = response
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(|s| s * 1000);
    ConnectorError {
        kind,
        message,
        retry_after_ms,
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
