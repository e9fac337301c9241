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
//! the server stops taking requests, the pass under way finishes, the
//! service exits; a restart resumes from the store (inbox, outbox, cursors).
//!
//! This file starts the service; `passes.rs` is the pass loop, `server.rs`
//! the router with the refresh and metrics routes, `publish.rs` the publish
//! API, `hooks.rs` the webhooks and `ui.rs` the dashboard's routes.

mod alerts;
mod auth;
mod hooks;
mod intake;
mod passes;
mod publish;
pub mod schedule;
mod server;
mod ui;

pub use publish::parse_changes;

/// How far ahead a pass of `weir run` takes retries that are about to come
/// due (`SyncOptions::retry_gather`): the rows one failure postponed, spread
/// by jitter over a quarter of their backoff, go in a few passes, not one
/// pass each.
pub const RETRY_GATHER: std::time::Duration = std::time::Duration::from_secs(5);

/// The most outbox rows a pass of `weir run` writes to one target and
/// entity (`SyncOptions::pass_rows`); a larger backlog goes on in the passes
/// that follow at once, with what came in meanwhile.
pub const PASS_ROWS: usize = 20_000;

use crate::engine::SyncOptions;
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use crate::store::Store;
use axum::http::StatusCode;
use axum::Json;
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
    /// When another process holds the store's writer lease: wait for it
    /// (else stop at once, naming it).
    pub wait: bool,
}

/// The largest request body accepted.
const BODY_LIMIT: usize = 4 << 20;

/// What the request handlers and the pass loop share.
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
    refusals: Mutex<BTreeMap<String, hooks::Refusals>>,
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
    // The service is the store's one writer for as long as it runs.
    let (m, wait) = (manifest.clone(), options.wait);
    let _lease = tokio::task::spawn_blocking(move || crate::engine::writer_lease(&m, wait))
        .await
        .map_err(|e| anyhow::anyhow!("taking the store's writer lease: {e}"))??;
    let health = passes::load_health(&manifest)?;
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
    let router = server::router(app.clone());
    println!("listening on {listen}");
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let server = server::spawn(listener, router, stop_rx.clone());
    passes::run(&app, &options, stop_rx).await?;
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
