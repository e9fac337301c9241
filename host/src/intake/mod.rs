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
//! - `POST /refresh/{system}[/{entity}]`: manual refresh (same token): the
//!   next pass polls that system (or that entity of it); `weir refresh`.
//! - `GET /healthz`.
//!
//! Passes: one at start-up that polls every source (changes made while the
//! service was down), then one whenever a source is due to be polled (see
//! [`schedule`]: `poll_every`, cron `schedule`, slow reconcile polling while
//! a system's webhooks are healthy) or something was pushed or asked for. A
//! pass always takes what was pushed and delivers the whole outbox; it polls
//! only the sources that are due.
//!
//! Defaults: listen on 127.0.0.1:8377, sources polled every 60 s (`--interval`),
//! request bodies up to 4 MiB. Unknown system or entity → 404, bad token → 401, malformed body →
//! 400 with the reason; none of them stops the service. SIGTERM or Ctrl-C:
//! intake stops, the pass under way finishes, the service exits; a restart
//! resumes from the store (inbox, outbox, cursors).

mod alerts;
pub mod schedule;
mod ui;

use crate::engine::{self, SyncOptions};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use crate::store::{LastPoll, Store, WebhookHealth};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use schedule::{Health, Schedule};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The polling interval of sources with no `poll_every` or `schedule`.
    pub interval: Duration,
    /// How each pass runs.
    pub sync: SyncOptions,
    /// Print nothing but errors (no line per pass).
    pub quiet: bool,
}

/// The largest request body accepted.
const BODY_LIMIT: usize = 4 << 20;

struct App {
    /// The address the service listens on.
    listen: std::net::SocketAddr,
    manifest: Manifest,
    runtime: Arc<Runtime>,
    wake: Notify,
    /// Sources asked for by `weir refresh`, polled by the next pass.
    refresh: Mutex<BTreeSet<(String, String)>>,
    /// Webhook health of the systems that send webhooks.
    health: Mutex<BTreeMap<String, Health>>,
    schedule: Mutex<Schedule>,
    /// The request handlers' connection to the store, opened on first use
    /// (and again after an error).
    store: Mutex<Option<Store>>,
    /// Refused webhook requests per system, not yet saved.
    refusals: Mutex<BTreeMap<String, Refusals>>,
}

impl App {
    /// Runs `f` on the request handlers' store connection, on a blocking
    /// thread.
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> crate::store::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = app.store.lock().unwrap_or_else(|p| p.into_inner());
            let store = match slot.as_mut() {
                Some(s) => s,
                None => slot.insert(Store::open(&app.manifest.store)?),
            };
            let out = f(store);
            if out.is_err() {
                *slot = None;
            }
            Ok(out?)
        })
        .await?
    }
}

type Reply = (StatusCode, Json<Value>);

fn reply(status: StatusCode, message: impl Into<String>) -> Reply {
    (status, Json(json!({ "error": message.into() })))
}

/// A 503 for a store failure: the details (with the store's path) go to
/// the log, not to the client.
fn store_unavailable(e: &anyhow::Error) -> Reply {
    tracing::error!("the central store failed: {e:#}");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "the central store is unavailable; retry (the service log has the details)",
    )
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(
    manifest: Manifest,
    runtime: Runtime,
    options: DaemonOptions,
) -> anyhow::Result<()> {
    crate::telemetry::install();
    let health = load_health(&manifest)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let listen = listener.local_addr()?;
    let app = Arc::new(App {
        listen,
        schedule: Mutex::new(Schedule::new(&manifest, options.interval)),
        manifest,
        runtime: Arc::new(runtime),
        wake: Notify::new(),
        refresh: Mutex::new(BTreeSet::new()),
        health: Mutex::new(health),
        store: Mutex::new(None),
        refusals: Mutex::new(BTreeMap::new()),
    });
    let router = Router::new()
        .route("/publish/{system}/{entity}", post(publish))
        .route("/refresh/{system}", post(refresh))
        .route("/refresh/{system}/{entity}", post(refresh))
        .route("/hooks/{system}", post(hook))
        .route("/hooks/{system}/{*rest}", post(hook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/ui", get(ui::overview))
        .route("/ui/conflicts", get(ui::conflicts))
        .route("/ui/conflicts/{id}", post(ui::decide))
        .route("/ui/audit", get(ui::audit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app.clone());
    println!("listening on {listen}");
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
    // The loop's own connection: due retries, new problems for alerts.
    let loop_store = Store::open(&app.manifest.store)?;
    let mut alerter = alerts::Alerter::new(&app.manifest, &loop_store)?;
    let started = jiff::Timestamp::now();
    let mut first = true;
    // Whether something asked for a pass (a change arrived, a refresh), as
    // opposed to the timer.
    let mut asked = true;
    let mut last_pass = jiff::Timestamp::now();
    loop {
        let now = jiff::Timestamp::now();
        let mut silent = false;
        let poll = if first {
            // Start-up: every source, for what changed while weir was down.
            None
        } else {
            let mut due = {
                let mut health = app.health.lock().expect("health lock");
                for s in &app.manifest.systems {
                    if let Some(w) = &s.webhooks {
                        let h = health.entry(s.name.clone()).or_default();
                        if h.check_silence(w, started, now) {
                            silent = true;
                            tracing::warn!(system = %s.name, "webhooks degraded: {}", h.reason.as_deref().unwrap_or_default());
                        }
                    }
                }
                app.schedule
                    .lock()
                    .expect("schedule lock")
                    .due(&health, now)
            };
            due.append(&mut app.refresh.lock().expect("refresh lock"));
            Some(due)
        };
        // A retry that came due since the last pass (one still due from
        // before waits for the next pass: its target may be down).
        let delivery_due = loop_store
            .next_delivery_at()
            .ok()
            .flatten()
            .is_some_and(|at| at <= format!("{now:.3}") && at > format!("{last_pass:.3}"));
        if !asked && !delivery_due && poll.as_ref().is_some_and(BTreeSet::is_empty) {
            // The timer woke the loop only to check webhook silence: no pass.
            if silent {
                after_pass(&app, &[], false, now);
            }
        } else {
            last_pass = now;
            let report = pass(&app, &options, poll, first, now).await;
            if let (Some(report), Some(alerter)) = (report, alerter.as_mut()) {
                let found = problems(&app, &report);
                let alerts = alerter.collect(
                    &loop_store,
                    &found.failed,
                    &found.ok,
                    &found.degraded,
                    jiff::Timestamp::now(),
                );
                alerter.send(alerts).await;
            }
        }
        first = false;
        let wait = {
            let health = app.health.lock().expect("health lock");
            let next = app
                .schedule
                .lock()
                .expect("schedule lock")
                .next(&health, jiff::Timestamp::now());
            next.map(|at| {
                let left = at.duration_since(jiff::Timestamp::now());
                Duration::try_from(left).unwrap_or(Duration::ZERO)
            })
        };
        // Silence is checked at least every second while a limit is set.
        let silence = app
            .manifest
            .systems
            .iter()
            .any(|s| s.webhooks.as_ref().is_some_and(|w| w.max_silence.is_some()));
        let mut wait = wait.unwrap_or(Duration::from_secs(3600));
        if silence {
            wait = wait.min(Duration::from_secs(1));
        }
        // Writes waiting for a retry are delivered when they come due.
        if let Ok(Some(at)) = loop_store.next_delivery_at() {
            if let Ok(at) = at.parse::<jiff::Timestamp>() {
                if at > last_pass {
                    let left = Duration::try_from(at.duration_since(jiff::Timestamp::now()))
                        .unwrap_or(Duration::ZERO);
                    wait = wait.min(left);
                }
            }
        }
        asked = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            _ = app.wake.notified() => true,
            _ = tokio::time::sleep(wait) => false,
        };
        if *stop.borrow() {
            break;
        }
    }
    server.await??;
    println!("stopped");
    Ok(())
}

/// What a pass tells the alerter.
struct Found {
    /// Systems that failed in the pass.
    failed: BTreeSet<String>,
    /// Systems polled without failure.
    ok: BTreeSet<String>,
    /// Systems whose webhooks are degraded, with the reason.
    degraded: BTreeMap<String, String>,
}

fn problems(app: &App, report: &engine::SyncReport) -> Found {
    let mut failed: BTreeSet<String> = report
        .failures
        .iter()
        .filter_map(|f| f.strip_prefix("system '")?.split('\'').next())
        .map(String::from)
        .collect();
    failed.extend(
        report
            .polled
            .iter()
            .filter(|p| p.failed)
            .map(|p| p.system.clone()),
    );
    // Sources count as working when polled without failure; systems that
    // are only written to, when the pass reported nothing against them.
    let mut ok: BTreeSet<String> = report
        .polled
        .iter()
        .filter(|p| !p.failed)
        .map(|p| p.system.clone())
        .collect();
    ok.extend(
        app.manifest
            .systems
            .iter()
            .filter(|s| !s.entities.iter().any(|e| e.direction.reads()))
            .filter(|s| !failed.contains(&s.name))
            .map(|s| s.name.clone()),
    );
    let degraded = app
        .health
        .lock()
        .expect("health lock")
        .iter()
        .filter(|(_, h)| !h.healthy())
        .map(|(s, h)| (s.clone(), h.reason.clone().unwrap_or_default()))
        .collect();
    Found {
        failed,
        ok,
        degraded,
    }
}

/// One pass of the service: polls `poll` (every source when none), takes
/// the inboxes, delivers; prints its line and records its polls.
async fn pass(
    app: &App,
    options: &DaemonOptions,
    poll: Option<BTreeSet<(String, String)>>,
    first: bool,
    now: jiff::Timestamp,
) -> Option<engine::SyncReport> {
    let sync = SyncOptions {
        poll,
        ..options.sync.clone()
    };
    match engine::sync(&app.manifest, &app.runtime, &sync).await {
        Ok(r) => {
            // Health and polls are saved before the line is printed: whoever
            // waits for the line can read them.
            after_pass(app, &r.polled, first, now);
            let polled: Vec<String> = r
                .polled
                .iter()
                .map(|p| format!("{}/{}", p.system, p.entity))
                .collect();
            if !options.quiet {
                println!(
                    "run {}: {}; polled: {}",
                    r.run_id,
                    r.counts,
                    if polled.is_empty() {
                        "none".to_string()
                    } else {
                        polled.join(", ")
                    }
                );
            }
            for f in &r.failures {
                eprintln!("error: {f}");
            }
            Some(r)
        }
        Err(e) => {
            eprintln!("error: pass failed: {e:#}");
            None
        }
    }
}

/// The webhook health saved by the last run of the service.
fn load_health(manifest: &Manifest) -> anyhow::Result<BTreeMap<String, Health>> {
    let parse = |t: Option<String>| t.and_then(|t| t.parse().ok());
    let store = Store::open(&manifest.store)?;
    Ok(store
        .webhook_health()?
        .into_iter()
        .filter(|h| {
            manifest
                .system(&h.system)
                .is_some_and(|s| s.webhooks.is_some())
        })
        .map(|h| {
            let health = Health {
                last_webhook: parse(h.last_webhook_at),
                degraded_since: parse(h.degraded_since),
                reason: h.reason,
            };
            (h.system, health)
        })
        .collect())
}

/// Records the pass's polls in the schedule, judges webhook health by them
/// (not the start-up pass: what changed while weir was down was announced
/// to nobody), and saves both for `weir status`.
fn after_pass(app: &App, polled: &[engine::Polled], first: bool, at: jiff::Timestamp) {
    let mut schedule = app.schedule.lock().expect("schedule lock");
    let mut health = app.health.lock().expect("health lock");
    for p in polled {
        schedule.polled(&p.system, &p.entity, at);
        let Some(system) = app.manifest.system(&p.system) else {
            continue;
        };
        if system.webhooks.is_none() || first {
            continue;
        }
        let h = health.entry(p.system.clone()).or_default();
        let was = h.healthy();
        if h.after_poll(p.fresh, p.failed, jiff::Timestamp::now()) {
            if was {
                tracing::warn!(system = %p.system, "webhooks degraded: {}", h.reason.as_deref().unwrap_or_default());
            } else {
                tracing::info!(system = %p.system, "webhooks healthy again");
            }
        }
    }
    let text = |t: Option<jiff::Timestamp>| t.map(|t| format!("{t:.3}"));
    let rows: Vec<WebhookHealth> = app
        .manifest
        .systems
        .iter()
        .filter(|s| s.webhooks.is_some())
        .map(|s| {
            let h = health.get(&s.name).cloned().unwrap_or_default();
            WebhookHealth {
                system: s.name.clone(),
                last_webhook_at: text(h.last_webhook),
                degraded_since: text(h.degraded_since),
                reason: h.reason,
                refused: 0,
                last_refusal: None,
            }
        })
        .collect();
    let polls: Vec<LastPoll> = polled
        .iter()
        .map(|p| LastPoll {
            system: p.system.clone(),
            entity: p.entity.clone(),
            at: format!("{at:.3}"),
            fresh: p.fresh,
            failed: p.failed,
        })
        .collect();
    drop((schedule, health));
    let refused: Vec<(String, u64, String, String)> = app
        .refusals
        .lock()
        .expect("refusals lock")
        .iter_mut()
        .filter(|(_, r)| r.unsaved > 0)
        .filter_map(|(system, r)| {
            let (at, why) = r.last.clone()?;
            Some((system.clone(), std::mem::take(&mut r.unsaved), at, why))
        })
        .collect();
    let saved = Store::open(&app.manifest.store).and_then(|mut s| {
        s.save_polling(&rows, &polls)?;
        for (system, n, at, why) in &refused {
            s.webhook_refused(system, *n, at, why)?;
        }
        Ok(())
    });
    if let Err(e) = saved {
        tracing::warn!("cannot save polling state: {e}");
    }
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
    let n = changes.len();
    let changes: Vec<(String, String, String)> = changes
        .into_iter()
        .map(|(id, c)| (entity.clone(), id, c))
        .collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let stored = app
        .with_store(move |s| s.inbox_add(&system, key.as_deref(), &changes))
        .await;
    match stored {
        Ok(true) => {
            app.wake.notify_one();
            (StatusCode::ACCEPTED, Json(json!({ "accepted": n })))
        }
        Ok(false) => (
            StatusCode::OK,
            Json(json!({ "accepted": 0, "duplicate": true })),
        ),
        Err(e) => store_unavailable(&e),
    }
}

/// `POST /hooks/{system}[/...]`: the system's connector checks the request
/// (signature or secret) and turns it into changes through its `webhook`
/// export; they are committed to the inbox before its reply is sent. Changes
/// without a record body (the system sent only ids, or only the fields that
/// changed) are completed by the pass, which reads the records.
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
        .instantiate(
            &connector,
            s,
            engine::connector_state(&app.manifest.store, &s.name),
        )
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
            let why = e.to_string();
            refused(&app, &system, StatusCode::BAD_REQUEST, &why).await;
            return reply(StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    if !status.is_success() {
        let why = match serde_json::from_slice::<Value>(&outcome.body) {
            Ok(Value::Object(o)) if o.get("error").is_some_and(Value::is_string) => {
                o["error"].as_str().unwrap_or_default().to_string()
            }
            _ => String::from_utf8_lossy(&outcome.body).into_owned(),
        };
        refused(&app, &system, status, &why).await;
        return (status, outcome.body).into_response();
    }
    crate::telemetry::events::WebhookHandled {
        system: &system,
        refused: None,
    }
    .emit();
    app.health
        .lock()
        .expect("health lock")
        .entry(system.clone())
        .or_default()
        .webhook(jiff::Timestamp::now());
    let readable: Vec<&str> = bindings.iter().map(|b| b.name.as_str()).collect();
    let changes: Vec<(String, String, String)> = outcome
        .changes
        .into_iter()
        .filter(|c| readable.contains(&c.entity.as_str()))
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
            Ok(true) => {}
            Ok(false) => tracing::debug!(system = %system, "repeated webhook delivery ignored"),
            Err(e) => {
                tracing::warn!(system = %system, "webhook not stored: {e:#}");
                return reply(StatusCode::SERVICE_UNAVAILABLE, "not stored, retry").into_response();
            }
        }
    }
    app.wake.notify_one();
    (status, outcome.body).into_response()
}

/// `GET /metrics`: Prometheus text (the series are listed in
/// `telemetry::SERIES`).
async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match app.with_store(|s| Ok(crate::telemetry::render(s))).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => store_unavailable(&e).into_response(),
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
struct Refusals {
    unsaved: u64,
    last: Option<(String, String)>,
    saved_at: Option<std::time::Instant>,
}

/// `POST /refresh/{system}[/{entity}]`: the next pass polls the system's
/// sources (or that one entity), whatever their schedule says.
async fn refresh(
    State(app): State<Arc<App>>,
    Path(path): Path<Vec<String>>,
    headers: HeaderMap,
) -> Reply {
    let system = path.first().cloned().unwrap_or_default();
    let entity = path.get(1).cloned();
    if let Err(r) = authorise(&app, &system, &headers) {
        return r;
    }
    let pairs = app
        .schedule
        .lock()
        .expect("schedule lock")
        .pairs_of(&system, entity.as_deref());
    if pairs.is_empty() {
        let what = match &entity {
            Some(e) => format!("system '{system}' does not read entity '{e}'"),
            None => format!("system '{system}' has no entity to read"),
        };
        return reply(StatusCode::NOT_FOUND, what);
    }
    app.refresh.lock().expect("refresh lock").extend(pairs);
    app.wake.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "refresh": system, "entity": entity })),
    )
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
