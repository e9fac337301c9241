//! The service's router, and the routes that are neither the publish API,
//! the webhooks nor the dashboard: manual refresh, metrics and health.

use super::auth::authorise;
use super::{hooks, publish, reply, store_unavailable, ui, App, Reply, BODY_LIMIT};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::watch;

/// Every route of the service.
pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/publish/{system}/{entity}", post(publish::publish))
        .route("/refresh/{system}", post(refresh))
        .route("/refresh/{system}/{entity}", post(refresh))
        .route("/hooks/{system}", post(hooks::hook))
        .route("/hooks/{system}/{*rest}", post(hooks::hook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/ui", get(ui::overview))
        .route("/ui/conflicts", get(ui::conflicts))
        .route("/ui/conflicts/{id}", post(ui::decide))
        .route("/ui/matches", get(ui::matches))
        .route("/ui/matches/{id}", post(ui::decide_match))
        .route("/ui/audit", get(ui::audit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Serves `router` on `listener` until `stop` is set.
pub(super) fn spawn(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
    })
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
