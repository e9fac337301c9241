//! Who may push changes: the bearer token of a system's `publish_token`.

use super::{reply, App, Reply};
use axum::http::{HeaderMap, StatusCode};

/// Checks the system exists and the bearer token is its `publish_token`.
pub(super) fn authorise(app: &App, system: &str, headers: &HeaderMap) -> Result<(), Reply> {
    let Some(s) = app.manifest.system(system) else {
        return Err(reply(
            StatusCode::NOT_FOUND,
            format!("no system '{system}' in the manifest"),
        ));
    };
    let Some(token) = &s.publish_token else {
        return Err(reply(
            StatusCode::FORBIDDEN,
            format!("system '{system}' has no publish_token in the manifest"),
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.0.as_bytes()) => Ok(()),
        _ => {
            tracing::warn!(system, "publish request with a missing or wrong token");
            Err(reply(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
