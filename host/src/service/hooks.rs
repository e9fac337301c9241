//! `POST /hooks/{system}[/...]`: webhooks, through the system's connector.

use super::{intake, reply, App, Reply, BODY_LIMIT};
use crate::engine;
use crate::manifest::System;
use crate::runtime::types::{Change, EntityBinding, Incoming, Operation};
use crate::runtime::Instance;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `POST /hooks/{system}[/...]`: the system's connector checks the request
/// (signature or secret) and turns it into changes through its `webhook`
/// export; they are committed to the inbox before its reply is sent. Changes
/// without a record body (the system sent only ids, or only the fields that
/// changed) are completed by the pass, which reads the records.
pub(super) async fn hook(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let (system, path) = target(&uri);
    let Some(s) = app.manifest.system(&system) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("no system '{system}' in the manifest"),
        )
        .into_response();
    };
    if let Some(announced) = intake::announced_too_large(&headers) {
        return intake::too_large(body, announced).await;
    }
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return intake::too_large_reply().into_response(),
    };
    let mut instance = match instance(&app, s, &system).await {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let bindings: Vec<_> = s
        .entities
        .iter()
        .filter(|b| b.direction.reads())
        .map(engine::binding)
        .collect();
    let request = incoming(path, &headers, body.to_vec());
    let outcome = match instance.handle(&bindings, request).await {
        Ok(o) => o,
        Err(e) => {
            let answer = intake::connector_failed(&e);
            refused(&app, &system, answer.status(), &e.to_string()).await;
            return answer;
        }
    };
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    if !status.is_success() {
        refused(&app, &system, status, &refusal(&outcome.body)).await;
        return (status, outcome.body).into_response();
    }
    handled(&app, &system);
    let changes = inbox_changes(&bindings, outcome.changes);
    if !changes.is_empty() {
        if let Err(r) = store(&app, s, &headers, changes).await {
            return r.into_response();
        }
    }
    app.wake.notify_one();
    (status, outcome.body).into_response()
}

/// The system a webhook is for, and the rest of its path with the query
/// (the connector sees them).
fn target(uri: &Uri) -> (String, String) {
    let rest = uri.path().strip_prefix("/hooks/").unwrap_or_default();
    let (system, path) = rest
        .split_once('/')
        .map(|(s, p)| (s.to_string(), format!("/{p}")))
        .unwrap_or((rest.to_string(), String::new()));
    let path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    (system, path)
}

/// An instance of the system's connector, which must take webhooks.
async fn instance(app: &App, s: &System, system: &str) -> Result<Instance, Reply> {
    let connector = match app.runtime.load(&s.connector) {
        Ok(c) if c.exports().webhook => c,
        Ok(_) => {
            return Err(reply(
                StatusCode::NOT_FOUND,
                format!("the connector of system '{system}' takes no webhooks"),
            ))
        }
        Err(e) => return Err(reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    };
    app.runtime
        .instantiate(
            &connector,
            s,
            crate::engine::connector_state(&app.manifest.store, &s.name),
        )
        .await
        .map_err(|e| reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// The request as the connector's `webhook` export takes it.
fn incoming(path: String, headers: &HeaderMap, body: Vec<u8>) -> Incoming {
    Incoming {
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
        body,
    }
}

/// Why the connector refused a request: the `error` of its JSON reply, or
/// else the reply's text.
fn refusal(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) if o.get("error").is_some_and(Value::is_string) => {
            o["error"].as_str().unwrap_or_default().to_string()
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Counts a webhook the connector accepted, and notes it in the system's
/// webhook health.
fn handled(app: &App, system: &str) {
    crate::telemetry::events::WebhookHandled {
        system,
        refused: None,
    }
    .emit();
    app.health
        .lock()
        .expect("health lock")
        .entry(system.to_string())
        .or_default()
        .webhook(jiff::Timestamp::now());
}

/// The changes of entities weir reads from the system, as inbox entries:
/// (entity, local id, change JSON).
fn inbox_changes(
    bindings: &[EntityBinding],
    changes: Vec<Change>,
) -> Vec<(String, String, String)> {
    let readable: Vec<&str> = bindings.iter().map(|b| b.name.as_str()).collect();
    changes
        .into_iter()
        .filter(|c| readable.contains(&c.entity.as_str()))
        .map(|c| {
            let op = if c.op == Operation::Delete {
                "delete"
            } else {
                "upsert"
            };
            let change = json!({ "op": op, "data": c.data, "actor": c.actor }).to_string();
            (c.entity, c.id, change)
        })
        .collect()
}

/// Commits the changes to the inbox, once per delivery id where the system
/// names a delivery header; a 503 when the store fails.
async fn store(
    app: &Arc<App>,
    s: &System,
    headers: &HeaderMap,
    changes: Vec<(String, String, String)>,
) -> Result<(), Reply> {
    let system = &s.name;
    let name = system.clone();
    let delivery = s
        .delivery_id_header
        .as_ref()
        .and_then(|h| headers.get(h.as_str()))
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let stored = app
        .with_store(move |s| s.inbox_add(&name, delivery.as_deref(), &changes))
        .await;
    match stored {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::debug!(system = %system, "repeated webhook delivery ignored");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(system = %system, "webhook not stored: {e:#}");
            Err(reply(StatusCode::SERVICE_UNAVAILABLE, "not stored, retry"))
        }
    }
}

/// Logs and counts a refused webhook request (also in the store, for `weir
/// status`); `why` is what the connector said, cut to 200 characters.
async fn refused(app: &Arc<App>, system: &str, status: StatusCode, why: &str) {
    crate::telemetry::events::WebhookHandled {
        system,
        refused: Some((status.as_u16(), why)),
    }
    .emit();
    let why: String = format!("{} {why}", status.as_u16())
        .chars()
        .take(200)
        .collect();
    let at = format!("{:.3}", jiff::Timestamp::now());
    // Counted in memory; written to the store at most once a second per
    // system (and after every pass), so that a flood of bad requests does
    // not queue writes in front of the passes.
    let save = {
        let mut refusals = app.refusals.lock().expect("refusals lock");
        let r = refusals.entry(system.to_string()).or_default();
        r.unsaved += 1;
        r.last = Some((at, why));
        let now = std::time::Instant::now();
        if r.saved_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            r.saved_at = Some(now);
            let n = std::mem::take(&mut r.unsaved);
            r.last.clone().map(|last| (n, last))
        } else {
            None
        }
    };
    if let Some((n, (at, why))) = save {
        let name = system.to_string();
        if let Err(e) = app
            .with_store(move |s| s.webhook_refused(&name, n, &at, &why))
            .await
        {
            tracing::warn!(
                system,
                "cannot count the refused webhook in the store: {e:#}"
            );
        }
    }
}

/// Refused webhook requests of one system not yet saved in the store.
#[derive(Default)]
pub(super) struct Refusals {
    unsaved: u64,
    last: Option<(String, String)>,
    saved_at: Option<std::time::Instant>,
}

/// The refusals not yet saved, per system: (system, how many, when the
/// last was, why), their counts taken.
pub(super) fn unsaved(
    refusals: &mut BTreeMap<String, Refusals>,
) -> Vec<(String, u64, String, String)> {
    refusals
        .iter_mut()
        .filter(|(_, r)| r.unsaved > 0)
        .filter_map(|(system, r)| {
            let (at, why) = r.last.clone()?;
            Some((system.clone(), std::mem::take(&mut r.unsaved), at, why))
        })
        .collect()
}
