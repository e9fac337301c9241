//! `POST /publish/{system}/{entity}`: changes pushed by an application,
//! committed to the inbox before the reply.

use super::auth::authorise;
use super::{reply, store_unavailable, App, Reply, BODY_LIMIT};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

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
            let op = match item.get("op").and_then(Value::as_str) {
                Some(op @ ("upsert" | "delete")) => op,
                Some(other) => {
                    return Err(format!(
                        "change {i}: \"op\" must be \"upsert\" or \"delete\", not \"{other}\""
                    ))
                }
                None => {
                    return Err(format!(
                    "change {i}: \"op\" is missing: say \"upsert\" (with \"data\") or \"delete\""
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

pub(super) async fn publish(
    State(app): State<Arc<App>>,
    Path((system, entity)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if let Err(r) = authorise(&app, &system, &headers) {
        return r.into_response();
    }
    // Refused from the announced length (the body read and dropped, so
    // that the sender can read the answer); a body that grows past the
    // limit without announcing it is cut off while it is read.
    if let Some(announced) = super::intake::announced_too_large(&headers) {
        return super::intake::too_large(body, announced).await;
    }
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return super::intake::too_large_reply().into_response(),
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
        )
        .into_response();
    }
    let changes = match parse_changes(&body) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e).into_response(),
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
    let answer: Reply = match stored {
        Ok(true) => {
            app.wake.notify_one();
            (StatusCode::ACCEPTED, Json(json!({ "accepted": n })))
        }
        Ok(false) => (
            StatusCode::OK,
            Json(json!({ "accepted": 0, "duplicate": true })),
        ),
        Err(e) => store_unavailable(&e),
    };
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bodies() {
        let one = parse_changes(br#"{"id": 7, "op": "upsert", "data": {"name": "Ada"}}"#).unwrap();
        assert_eq!(
            one,
            vec![(
                "7".to_string(),
                r#"{"actor":null,"data":"{\"name\":\"Ada\"}","op":"upsert"}"#.to_string()
            )]
        );
        let many = parse_changes(
            br#"[{"id": "a", "op": "delete"}, {"id": "b", "op": "upsert", "data": {}, "actor": "bob"}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert!(many[1].1.contains(r#""actor":"bob""#));
        for (body, error) in [
            (&b"nope"[..], "the body is not JSON"),
            (br#"3"#, "must be a change object or an array"),
            (
                br#"{"op": "upsert", "data": {}}"#,
                "change 0: \"id\" must be",
            ),
            (
                br#"[{"id": 1, "op": "upsert", "data": {}}, {"id": 2, "op": "merge"}]"#,
                "change 1: \"op\" must be",
            ),
            (br#"{"id": 1, "data": {}}"#, "change 0: \"op\" is missing"),
            (
                br#"{"id": 1, "op": "upsert", "data": [1]}"#,
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {

            /// Any body is taken or refused with a reason, never a panic.
            #[test]
            fn any_body_is_taken_or_refused(body in prop::collection::vec(any::<u8>(), 0..300)) {
                if let Err(why) = parse_changes(&body) {
                    prop_assert!(!why.is_empty());
                }
            }

            /// A body of well-formed changes is taken whole, in order.
            #[test]
            fn well_formed_changes_are_taken_in_order(
                changes in prop::collection::vec(("[a-z0-9]{1,8}", any::<bool>(), "[ -~]{0,10}"), 1..20)
            ) {
                let items: Vec<Value> = changes
                    .iter()
                    .map(|(id, delete, name)| match delete {
                        true => json!({"id": id, "op": "delete"}),
                        false => json!({"id": id, "op": "upsert", "data": {"name": name}}),
                    })
                    .collect();
                let body = serde_json::to_vec(&items).unwrap();
                let parsed = parse_changes(&body).unwrap();
                prop_assert_eq!(parsed.len(), changes.len());
                for ((id, _, _), (got, _)) in changes.iter().zip(&parsed) {
                    prop_assert_eq!(id, got);
                }
            }
        }
    }
}
