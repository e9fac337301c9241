//! `weir run`: the long-running service. It runs a sync pass at start-up, then
//! every interval and whenever something asks for one, and serves HTTP:
//!
//! - `POST /publish/{system}/{entity}`: an application pushes changes of a
//!   system (the ligato publish API), authorised by the system's
//!   `publish_token`. The body is one change or an array of them:
//!   `{"id": "42", "op": "upsert" | "delete", "data": {...}, "actor": "..."}`
//!   (`op` defaults to upsert). The reply, `202 {"accepted": N}`, is sent only
//!   after the changes are committed to the central store's inbox, so an
//!   acknowledged change is never lost; the next pass accepts them.
//!   An `Idempotency-Key` header makes a repeated request a no-op (`200
//!   {"accepted": 0, "duplicate": true}`) for 7 days.
//! - `POST /hooks/{system}[/...]`: webhooks, through the system's connector;
//!   the system's `delivery_id_header` (if set) names the header whose value
//!   identifies a delivery, so a repeated delivery is not stored twice.
//! - `POST /refresh/{system}`: manual refresh (same token); `weir refresh`.
//! - `GET /healthz`.
//!
//! Defaults: listen on 127.0.0.1:8377, a pass every 60 s, request bodies up to
//! 4 MiB. Unknown system or entity → 404, bad token → 401, malformed body →
//! 400 with the reason; none of them stops the service. SIGTERM or Ctrl-C:
//! intake stops, the pass under way finishes, the service exits; a restart
//! resumes from the store (inbox, outbox, cursors).

use crate::engine::{self, SyncOptions};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Time between passes when nothing asks for one.
    pub interval: Duration,
    /// How each pass runs.
    pub sync: SyncOptions,
}

/// The largest request body accepted.
const BODY_LIMIT: usize = 4 << 20;

struct App {
    manifest: Manifest,
    runtime: Arc<Runtime>,
    wake: Notify,
}

type Reply = (StatusCode, Json<Value>);

fn reply(status: StatusCode, message: impl Into<String>) -> Reply {
    (status, Json(json!({ "error": message.into() })))
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(
    manifest: Manifest,
    runtime: Runtime,
    options: DaemonOptions,
) -> anyhow::Result<()> {
    let app = Arc::new(App {
        manifest,
        runtime: Arc::new(runtime),
        wake: Notify::new(),
    });
    let router = Router::new()
        .route("/publish/{system}/{entity}", post(publish))
        .route("/refresh/{system}", post(refresh))
        .route("/hooks/{system}", post(hook))
        .route("/hooks/{system}/{*rest}", post(hook))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    let mut stop = stop_rx;
    loop {
        match engine::sync(&app.manifest, &app.runtime, &options.sync).await {
            Ok(r) => {
                let c = r.counts;
                println!(
                    "run {}: {} read, {} written, {} deleted, {} unchanged, {} echoes, {} conflicts, {} failed",
                    r.run_id, c.read, c.written, c.deleted, c.skipped, c.echoes, c.conflicts, c.failed
                );
                for f in &r.failures {
                    eprintln!("error: {f}");
                }
            }
            Err(e) => eprintln!("error: pass failed: {e:#}"),
        }
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            _ = app.wake.notified() => {}
            _ = tokio::time::sleep(options.interval) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    server.await??;
    println!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Checks the system exists and the bearer token is its `publish_token`.
fn authorise(app: &App, system: &str, headers: &HeaderMap) -> Result<(), Reply> {
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

/// Turns a publish body into inbox entries: (local id, change JSON).
pub fn parse_changes(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("the body must be a change object or an array of them".into()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let id = match item.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(format!(
                        "change {i}: \"id\" must be a non-empty string or a number"
                    ))
                }
            };
            let op = match item.get("op").and_then(Value::as_str).unwrap_or("upsert") {
                op @ ("upsert" | "delete") => op,
                other => {
                    return Err(format!(
                        "change {i}: \"op\" must be \"upsert\" or \"delete\", not \"{other}\""
                    ))
                }
            };
            let data = match (op, item.get("data")) {
                ("upsert", Some(Value::Object(d))) => Some(Value::Object(d.clone()).to_string()),
                ("upsert", _) => {
                    return Err(format!("change {i}: an upsert needs \"data\", an object"))
                }
                _ => None,
            };
            let actor = item.get("actor").and_then(Value::as_str);
            Ok((
                id,
                json!({ "op": op, "data": data, "actor": actor }).to_string(),
            ))
        })
        .collect()
}

async fn publish(
    State(app): State<Arc<App>>,
    Path((system, entity)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Reply {
    if let Err(r) = authorise(&app, &system, &headers) {
        return r;
    }
    // Refused from the announced length before reading anything; a body that
    // grows past the limit without announcing it is cut off while it is read.
    let announced = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > BODY_LIMIT) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} MiB", BODY_LIMIT >> 20),
        );
    }
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} MiB", BODY_LIMIT >> 20),
            )
        }
    };
    let readable = app
        .manifest
        .system(&system)
        .and_then(|s| s.entity(&entity))
        .is_some_and(|b| b.direction.reads());
    if !readable {
        return reply(
            StatusCode::NOT_FOUND,
            format!("system '{system}' has no entity '{entity}' that weir reads"),
        );
    }
    let changes = match parse_changes(&body) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e),
    };
    let path = app.manifest.store.clone();
    let n = changes.len();
    let changes: Vec<(String, String, String)> = changes
        .into_iter()
        .map(|(id, c)| (entity.clone(), id, c))
        .collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let stored = tokio::task::spawn_blocking(move || {
        Store::open(&path)?.inbox_add(&system, key.as_deref(), &changes)
    })
    .await;
    match stored {
        Ok(Ok(true)) => {
            app.wake.notify_one();
            (StatusCode::ACCEPTED, Json(json!({ "accepted": n })))
        }
        Ok(Ok(false)) => (
            StatusCode::OK,
            Json(json!({ "accepted": 0, "duplicate": true })),
        ),
        Ok(Err(e)) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not stored, retry: {e}"),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not stored, retry: {e}"),
        ),
    }
}

/// `POST /hooks/{system}[/...]`: the system's connector checks the request
/// (signature or secret) and turns it into changes through its `webhook`
/// export; they are committed to the inbox before its reply is sent. Changes
/// without a record body (the system sent only ids) ask for a pass instead.
async fn hook(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rest = uri.path().strip_prefix("/hooks/").unwrap_or_default();
    let (system, path) = rest
        .split_once('/')
        .map(|(s, p)| (s.to_string(), format!("/{p}")))
        .unwrap_or((rest.to_string(), String::new()));
    let Some(s) = app.manifest.system(&system) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("no system '{system}' in the manifest"),
        )
        .into_response();
    };
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} MiB", BODY_LIMIT >> 20),
            )
            .into_response()
        }
    };
    let connector = match app.runtime.load(&s.connector) {
        Ok(c) if c.exports().webhook => c,
        Ok(_) => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("the connector of system '{system}' takes no webhooks"),
            )
            .into_response()
        }
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut instance = match app
        .runtime
        .instantiate(&connector, s, &app.manifest.store)
        .await
    {
        Ok(i) => i,
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let bindings: Vec<_> = s
        .entities
        .iter()
        .filter(|b| b.direction.reads())
        .map(engine::binding)
        .collect();
    let path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let request = crate::runtime::types::Incoming {
        method: "POST".into(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let outcome = match instance.handle(&bindings, request).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(system = %system, "webhook refused: {e}");
            return reply(StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    if !status.is_success() {
        tracing::warn!(system = %system, status = status.as_u16(), "webhook refused by the connector");
        return (status, outcome.body).into_response();
    }
    let readable: Vec<&str> = bindings.iter().map(|b| b.name.as_str()).collect();
    let changes: Vec<(String, String, String)> = outcome
        .changes
        .into_iter()
        .filter(|c| readable.contains(&c.entity.as_str()))
        .filter(|c| c.op == crate::runtime::types::Operation::Delete || c.data.is_some())
        .map(|c| {
            let op = if c.op == crate::runtime::types::Operation::Delete {
                "delete"
            } else {
                "upsert"
            };
            let change = json!({ "op": op, "data": c.data, "actor": c.actor }).to_string();
            (c.entity, c.id, change)
        })
        .collect();
    if !changes.is_empty() {
        let store_path = app.manifest.store.clone();
        let name = system.clone();
        let delivery = s
            .delivery_id_header
            .as_ref()
            .and_then(|h| headers.get(h.as_str()))
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let stored = tokio::task::spawn_blocking(move || {
            Store::open(&store_path)?.inbox_add(&name, delivery.as_deref(), &changes)
        })
        .await;
        if matches!(stored, Ok(Ok(false))) {
            tracing::debug!(system = %system, "repeated webhook delivery ignored");
        } else if !matches!(stored, Ok(Ok(true))) {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "not stored, retry").into_response();
        }
    }
    app.wake.notify_one();
    (status, outcome.body).into_response()
}

async fn refresh(
    State(app): State<Arc<App>>,
    Path(system): Path<String>,
    headers: HeaderMap,
) -> Reply {
    if let Err(r) = authorise(&app, &system, &headers) {
        return r;
    }
    app.wake.notify_one();
    (StatusCode::ACCEPTED, Json(json!({ "refresh": system })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bodies() {
        let one = parse_changes(br#"{"id": 7, "data": {"name": "Ada"}}"#).unwrap();
        assert_eq!(
            one,
            vec![(
                "7".to_string(),
                r#"{"actor":null,"data":"{\"name\":\"Ada\"}","op":"upsert"}"#.to_string()
            )]
        );
        let many = parse_changes(
            br#"[{"id": "a", "op": "delete"}, {"id": "b", "data": {}, "actor": "bob"}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert!(many[1].1.contains(r#""actor":"bob""#));
        for (body, error) in [
            (&b"nope"[..], "the body is not JSON"),
            (br#"3"#, "must be a change object or an array"),
            (br#"{"data": {}}"#, "change 0: \"id\" must be"),
            (
                br#"[{"id": 1, "data": {}}, {"id": 2, "op": "merge"}]"#,
                "change 1: \"op\" must be",
            ),
            (
                br#"{"id": 1, "data": [1]}"#,
                "change 0: an upsert needs \"data\", an object",
            ),
        ] {
            assert!(
                parse_changes(body).unwrap_err().contains(error),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
