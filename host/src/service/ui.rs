//! The dashboard's routes (`/ui`): pages rendered by `crate::web`, and the
//! decision forms of conflicts and held matches. A decision is accepted only from a page of this
//! service (its `Origin` or `Referer` names this host), so that another site
//! cannot submit the form in a user's browser.

use super::{App, Reply};
use crate::engine::{self, Decided};
use crate::store::Choice;
use crate::web;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;

pub(super) async fn overview(State(app): State<Arc<App>>) -> Response {
    let health = app.health.lock().expect("health lock").clone();
    let inner = app.clone();
    page(
        app.with_store(move |s| {
            let webhooks = webhook_rows(&inner, &health, s)?;
            web::overview(&inner.manifest, s, webhooks)
        })
        .await,
    )
}

pub(super) async fn conflicts(State(app): State<Arc<App>>) -> Response {
    page(app.with_store(|s| web::conflicts(s)).await)
}

#[derive(serde::Deserialize)]
pub(super) struct AuditQuery {
    entity: Option<String>,
    id: Option<String>,
}

pub(super) async fn audit(State(app): State<Arc<App>>, Query(q): Query<AuditQuery>) -> Response {
    let id = q.id.as_deref().and_then(|i| i.trim().parse::<i64>().ok());
    let inner = app.clone();
    page(
        app.with_store(move |s| web::audit(&inner.manifest, s, q.entity.as_deref(), id))
            .await,
    )
}

#[derive(serde::Deserialize)]
pub(super) struct Decision {
    choice: String,
}

/// `POST /ui/conflicts/{id}`: records the decision, queues the chosen value
/// for every system that takes writes of the entity and wakes the pass loop
/// to deliver it; back to the conflicts page.
pub(super) async fn decide(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(d): Form<Decision>,
) -> Response {
    if !same_origin(&headers, app.listen) {
        return super::reply(
            StatusCode::FORBIDDEN,
            "a decision must come from this service's own conflicts page",
        )
        .into_response();
    }
    let Some(choice) = Choice::parse(&d.choice) else {
        return super::reply(
            StatusCode::BAD_REQUEST,
            format!("choice '{}' is not one of result, ours, theirs", d.choice),
        )
        .into_response();
    };
    let inner = app.clone();
    let decided = app
        .with_store(move |s| engine::decide_conflict(s, &inner.manifest, id, choice))
        .await;
    match decided {
        Ok(Decided::Done) => {
            app.wake.notify_one();
            Redirect::to("/ui/conflicts").into_response()
        }
        Ok(Decided::NotOpen) => super::reply(
            StatusCode::NOT_FOUND,
            format!("no open conflict {id} (decided already?)"),
        )
        .into_response(),
        Ok(Decided::Stale) => super::reply(
            StatusCode::CONFLICT,
            format!("the record of conflict {id} changed since: a decision would overwrite the newer value; see its audit"),
        )
        .into_response(),
        Err(e) => super::store_unavailable(&e).into_response(),
    }
}

pub(super) async fn matches(State(app): State<Arc<App>>) -> Response {
    page(app.with_store(|s| web::matches(s)).await)
}

/// `POST /ui/matches/{id}`: records a person's decision on a held match
/// (`link:CANDIDATE` or `new`) and wakes the pass loop, which carries it
/// out; back to the matches page.
pub(super) async fn decide_match(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(d): Form<Decision>,
) -> Response {
    if !same_origin(&headers, app.listen) {
        return super::reply(
            StatusCode::FORBIDDEN,
            "a decision must come from this service's own matches page",
        )
        .into_response();
    }
    let choice = d.choice.clone();
    let decided = app
        .with_store(move |s| {
            let Some(held) = s.matches(None)?.into_iter().find(|m| m.id == id) else {
                return Ok(Err(StatusCode::NOT_FOUND));
            };
            if held.decision.is_some() {
                return Ok(Err(StatusCode::NOT_FOUND));
            }
            let fits = match choice.strip_prefix("link:") {
                Some(c) => held.candidates.iter().any(|k| k == c),
                None => choice == "new",
            };
            if !fits {
                return Ok(Err(StatusCode::BAD_REQUEST));
            }
            s.decide_match(id, &choice)?;
            Ok(Ok(()))
        })
        .await;
    match decided {
        Ok(Ok(())) => {
            app.wake.notify_one();
            Redirect::to("/ui/matches").into_response()
        }
        Ok(Err(StatusCode::NOT_FOUND)) => super::reply(
            StatusCode::NOT_FOUND,
            format!("no undecided match {id} (decided already?)"),
        )
        .into_response(),
        Ok(Err(status)) => super::reply(
            status,
            format!(
                "choice '{}' is not `new` or `link:` one of match {id}'s candidates",
                d.choice
            ),
        )
        .into_response(),
        Err(e) => super::store_unavailable(&e).into_response(),
    }
}

fn page(result: anyhow::Result<String>) -> Response {
    match result {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            let r: Reply = super::store_unavailable(&e);
            r.into_response()
        }
    }
}

/// Whether the request's `Origin` (or else `Referer`) is this service's own
/// page: its host is the one the request was sent to (`Host`), and that is
/// the address the service listens on (or `localhost` with its port, when it
/// listens on a loopback address). A page of another site, or one reached
/// through a rebound DNS name, fails. On an unspecified address (0.0.0.0)
/// only the first condition can be checked.
fn same_origin(headers: &HeaderMap, listen: std::net::SocketAddr) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = get("host") else {
        return false;
    };
    let Some(from) = get("origin").or_else(|| get("referer")) else {
        return false;
    };
    let rest = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"))
        .unwrap_or("");
    if rest.split('/').next() != Some(host) {
        return false;
    }
    let ip = listen.ip();
    ip.is_unspecified()
        || host == listen.to_string()
        || (ip.is_loopback() && host == format!("localhost:{}", listen.port()))
}

fn webhook_rows(
    app: &App,
    health: &std::collections::BTreeMap<String, super::Health>,
    store: &crate::store::Store,
) -> crate::store::Result<Vec<web::WebhookRow>> {
    let saved = store.webhook_health()?;
    let text = |t: Option<jiff::Timestamp>| t.map(|t| format!("{t:.0}"));
    Ok(app
        .manifest
        .systems
        .iter()
        .filter(|s| s.webhooks.is_some())
        .map(|s| {
            let h = health.get(&s.name).cloned().unwrap_or_default();
            web::WebhookRow {
                system: s.name.clone(),
                healthy: h.healthy(),
                since: text(h.degraded_since),
                reason: h.reason.clone(),
                last: text(h.last_webhook),
                refused: saved
                    .iter()
                    .find(|w| w.system == s.name)
                    .map_or(0, |w| w.refused),
            }
        })
        .collect())
}
