//! Webhook requests turned into changes, as the system's `webhook` table
//! says: the shared secret, where the event name, the collection, the ids and
//! the record fields are in the payload, and which events upsert or delete.
//! Pure: no I/O.

use crate::changes::change_time;
use crate::config::Webhook;
use crate::paths;
use serde_json::{json, Value};
use weir_sdk::json::kind_of;
use weir_sdk::{Change, Operation};

/// An entity bound to this system, as webhooks name it.
pub(crate) struct Target {
    /// The entity's name in the manifest.
    pub name: String,
    pub primary_key: String,
    /// Its `webhook_name` setting.
    pub webhook_name: Option<String>,
    /// Its path without the leading `/` and any `items/` prefix.
    pub path_name: String,
    /// Its `updated_at` fields, for the version of full payloads.
    pub updated_at: Vec<String>,
}

/// The reply to a webhook request and the changes it announced.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub changes: Vec<Change>,
}

impl Reply {
    fn error(status: u16, message: String) -> Reply {
        Reply {
            status,
            body: json!({ "error": message }),
            changes: Vec::new(),
        }
    }

    fn ignored(reason: String) -> Reply {
        Reply {
            status: 200,
            body: json!({ "accepted": 0, "ignored": reason }),
            changes: Vec::new(),
        }
    }
}

/// Checks a request and turns its body into changes. A missing or wrong
/// secret is a 401 reply, a body that lacks what the `webhook` table points at
/// a 400 reply naming it, an event no `ops` suffix matches or a collection
/// not bound here a 200 reply without changes. The error is a configuration
/// problem the request cannot fix.
pub(crate) fn handle(
    hook: &Webhook,
    targets: &[Target],
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    let sent = headers
        .iter()
        .find(|(name, _)| *name == hook.secret_header)
        .map(|(_, value)| value.as_bytes());
    if !sent.is_some_and(|s| same_secret(s, hook.secret.as_bytes())) {
        return Ok(Reply::error(
            401,
            format!("missing or wrong {} header", hook.secret_header),
        ));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => return Ok(Reply::error(400, format!("the body is not JSON: {e}"))),
    };
    let event = match paths::get(&body, &hook.event) {
        Some(Value::String(event)) => event.as_str(),
        other => {
            return Ok(Reply::error(
                400,
                format!(
                    "no event name at '{}' (webhook.event): found {}",
                    hook.event,
                    other.map_or("nothing", kind_of)
                ),
            ))
        }
    };
    let Some(op) = op_for(event, &hook.ops) else {
        return Ok(Reply::ignored(format!(
            "event '{event}' matches no suffix of webhook.ops"
        )));
    };
    let target = match &hook.collection {
        Some(path) => {
            let Some(name) = paths::text(&body, path) else {
                return Ok(Reply::error(
                    400,
                    format!("no collection name at '{path}' (webhook.collection)"),
                ));
            };
            match find_target(targets, &name) {
                Some(t) => t,
                None => {
                    return Ok(Reply::ignored(format!(
                        "collection '{name}' is not an entity of this system"
                    )))
                }
            }
        }
        None => match targets {
            [one] => one,
            [] => return Ok(Reply::ignored("no entity is bound to this system".into())),
            _ => {
                return Err(format!(
                    "webhook.collection is not set and {} entities are bound to this system; set it to the dotted path of the collection name in the payload (for example \"collection\")",
                    targets.len()
                ))
            }
        },
    };
    let ids = match ids(hook, &body) {
        Ok(ids) => ids,
        Err(message) => return Ok(Reply::error(400, message)),
    };
    let data = match (op, hook.partial, &hook.payload) {
        (Operation::Upsert, false, Some(path)) => match paths::get(&body, path) {
            Some(Value::Object(fields)) => Some(fields),
            other => {
                return Ok(Reply::error(
                    400,
                    format!(
                        "no record fields at '{path}' (webhook.payload): found {}",
                        other.map_or("nothing", kind_of)
                    ),
                ))
            }
        },
        _ => None,
    };
    let changes: Vec<Change> = ids
        .into_iter()
        .map(|(id, raw)| {
            let record = data.map(|fields| {
                let mut record = fields.clone();
                record.insert(target.primary_key.clone(), raw);
                Value::Object(record)
            });
            Change {
                entity: target.name.clone(),
                id,
                op,
                version: record
                    .as_ref()
                    .and_then(|r| change_time(r, &target.updated_at)),
                data: record.map(|r| r.to_string()),
                previous: None,
                actor: None,
            }
        })
        .collect();
    Ok(Reply {
        status: 200,
        body: json!({ "accepted": changes.len() }),
        changes,
    })
}

/// Compares secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The operation of the longest suffix of `event` in `ops`; none when no
/// suffix matches.
pub(crate) fn op_for(event: &str, ops: &[(String, Operation)]) -> Option<Operation> {
    ops.iter()
        .filter(|(suffix, _)| event.ends_with(suffix.as_str()))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, op)| *op)
}

/// The entity a payload names: by its name, else its `webhook_name`, else its path.
fn find_target<'a>(targets: &'a [Target], name: &str) -> Option<&'a Target> {
    targets
        .iter()
        .find(|t| t.name == name)
        .or_else(|| {
            targets
                .iter()
                .find(|t| t.webhook_name.as_deref() == Some(name))
        })
        .or_else(|| targets.iter().find(|t| t.path_name == name))
}

/// The ids a payload names at `webhook.id` and `webhook.ids`, as text and as
/// they were written, without repeats.
fn ids(hook: &Webhook, body: &Value) -> Result<Vec<(String, Value)>, String> {
    let mut raw: Vec<(&str, &Value)> = Vec::new();
    if let Some(path) = &hook.id {
        if let Some(id) = paths::get(body, path).filter(|v| !v.is_null()) {
            raw.push(("webhook.id", id));
        }
    }
    if let Some(path) = &hook.ids {
        match paths::get(body, path) {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => raw.extend(ids.iter().map(|id| ("webhook.ids", id))),
            Some(other) => {
                return Err(format!(
                    "'{path}' (webhook.ids) holds {}, not an array of ids",
                    kind_of(other)
                ))
            }
        }
    }
    let mut ids: Vec<(String, Value)> = Vec::new();
    for (key, id) in raw {
        let Some(text) = paths::scalar_text(id) else {
            return Err(format!("the id {id} ({key}) is not a string or a number"));
        };
        if !ids.iter().any(|(seen, _)| *seen == text) {
            ids.push((text, id.clone()));
        }
    }
    if ids.is_empty() {
        let wanted: Vec<String> = [(&hook.id, "webhook.id"), (&hook.ids, "webhook.ids")]
            .into_iter()
            .filter_map(|(path, key)| path.as_ref().map(|p| format!("'{p}' ({key})")))
            .collect();
        return Err(format!("no record id at {}", wanted.join(" or ")));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(partial: bool) -> Webhook {
        Webhook {
            secret: "s3cret".into(),
            secret_header: "x-webhook-secret".into(),
            event: "event".into(),
            collection: Some("collection".into()),
            id: Some("key".into()),
            ids: Some("keys".into()),
            payload: Some("payload".into()),
            partial,
            ops: vec![
                ("create".into(), Operation::Upsert),
                ("update".into(), Operation::Upsert),
                ("delete".into(), Operation::Delete),
            ],
        }
    }

    fn targets() -> Vec<Target> {
        vec![
            Target {
                name: "contacts".into(),
                primary_key: "id".into(),
                webhook_name: None,
                path_name: "contacts".into(),
                updated_at: vec!["date_updated".into(), "date_created".into()],
            },
            Target {
                name: "companies".into(),
                primary_key: "id".into(),
                webhook_name: Some("orgs".into()),
                path_name: "organisations".into(),
                updated_at: Vec::new(),
            },
        ]
    }

    fn secret() -> Vec<(String, String)> {
        vec![("x-webhook-secret".into(), "s3cret".into())]
    }

    fn call(hook: &Webhook, body: &str) -> Reply {
        handle(hook, &targets(), &secret(), body.as_bytes()).unwrap()
    }

    /// (entity, id, op, data) of each change.
    fn summary(reply: &Reply) -> Vec<(String, String, Operation, Option<Value>)> {
        reply
            .changes
            .iter()
            .map(|c| {
                (
                    c.entity.clone(),
                    c.id.clone(),
                    c.op,
                    c.data.as_deref().map(|d| serde_json::from_str(d).unwrap()),
                )
            })
            .collect()
    }

    fn ch(
        entity: &str,
        id: &str,
        op: Operation,
        data: Option<Value>,
    ) -> (String, String, Operation, Option<Value>) {
        (entity.into(), id.into(), op, data)
    }

    #[test]
    fn directus_flow_payloads_become_changes() {
        let create = r#"{"event":"contacts.items.create","payload":{"name":"Ada"},"key":2,"collection":"contacts"}"#;
        let update = r#"{"event":"contacts.items.update","payload":{"email":"x"},"keys":["2","3"],"collection":"contacts"}"#;
        let delete = r#"{"event":"contacts.items.delete","payload":["2"],"keys":["2"],"collection":"contacts"}"#;
        let partial = hook(true);
        let reply = call(&partial, create);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, json!({"accepted": 1}));
        assert_eq!(
            summary(&reply),
            [ch("contacts", "2", Operation::Upsert, None)]
        );
        assert_eq!(
            summary(&call(&partial, update)),
            [
                ch("contacts", "2", Operation::Upsert, None),
                ch("contacts", "3", Operation::Upsert, None)
            ]
        );
        assert_eq!(
            summary(&call(&partial, delete)),
            [ch("contacts", "2", Operation::Delete, None)]
        );

        let full = hook(false);
        assert_eq!(
            summary(&call(&full, create)),
            [ch(
                "contacts",
                "2",
                Operation::Upsert,
                Some(json!({"id": 2, "name": "Ada"}))
            )]
        );
        assert_eq!(
            summary(&call(&full, update))[1],
            ch(
                "contacts",
                "3",
                Operation::Upsert,
                Some(json!({"id": "3", "email": "x"}))
            )
        );
        assert_eq!(
            summary(&call(&full, delete)),
            [ch("contacts", "2", Operation::Delete, None)],
            "a delete carries no data even when payloads are full"
        );
        let versioned = call(
            &full,
            r#"{"event":"contacts.items.update","payload":{"date_updated":"2026-11-22T07:30:00.123Z"},"key":2,"collection":"contacts"}"#,
        );
        assert_eq!(
            versioned.changes[0].version.as_deref(),
            Some("2026-11-22T07:30:00.123Z")
        );
    }

    #[test]
    fn the_secret_is_checked_first() {
        let h = hook(true);
        let body = br#"{"event":"contacts.items.create","key":2,"collection":"contacts"}"#;
        for headers in [
            vec![],
            vec![("x-webhook-secret".to_string(), "wrong".to_string())],
            vec![("x-webhook-secret".to_string(), "s3cret ".to_string())],
            vec![("x-webhook-secret".to_string(), "s3cre".to_string())],
            vec![("x-other".to_string(), "s3cret".to_string())],
        ] {
            let reply = handle(&h, &targets(), &headers, body).unwrap();
            assert_eq!(reply.status, 401, "{headers:?}");
            assert!(reply.changes.is_empty());
            assert_eq!(
                reply.body,
                json!({"error": "missing or wrong x-webhook-secret header"})
            );
        }
        let reply = handle(&h, &targets(), &secret(), b"not json").unwrap();
        assert_eq!(reply.status, 400, "a good secret reaches the body check");
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn bad_bodies_are_400_replies_naming_what_is_missing() {
        let h = hook(false);
        for (body, error) in [
            ("{", "the body is not JSON: "),
            (
                r#"{"key": 2}"#,
                "no event name at 'event' (webhook.event): found nothing",
            ),
            (
                r#"{"event": 7}"#,
                "no event name at 'event' (webhook.event): found a number",
            ),
            (
                r#"{"event":"contacts.items.create","key":2}"#,
                "no collection name at 'collection' (webhook.collection)",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts"}"#,
                "no record id at 'key' (webhook.id) or 'keys' (webhook.ids)",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts","keys":[]}"#,
                "no record id at 'key' (webhook.id) or 'keys' (webhook.ids)",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts","keys":"2"}"#,
                "'keys' (webhook.ids) holds a string, not an array of ids",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts","keys":[{"id":2}]}"#,
                "the id {\"id\":2} (webhook.ids) is not a string or a number",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts","key":2}"#,
                "no record fields at 'payload' (webhook.payload): found nothing",
            ),
            (
                r#"{"event":"contacts.items.create","collection":"contacts","key":2,"payload":[2]}"#,
                "no record fields at 'payload' (webhook.payload): found an array",
            ),
        ] {
            let reply = call(&h, body);
            assert_eq!(reply.status, 400, "{body}");
            assert!(reply.changes.is_empty());
            let message = reply.body["error"].as_str().unwrap();
            assert!(message.starts_with(error), "{body}: {message}");
        }
    }

    #[test]
    fn unknown_events_and_collections_are_acknowledged_without_changes() {
        let h = hook(true);
        for body in [
            r#"{"event":"contacts.items.sort","key":2,"collection":"contacts"}"#,
            r#"{"event":"invoices.items.create","key":2,"collection":"invoices"}"#,
        ] {
            let reply = call(&h, body);
            assert_eq!(reply.status, 200, "{body}");
            assert_eq!(reply.body["accepted"], 0);
            assert!(reply.body["ignored"].is_string());
            assert!(reply.changes.is_empty());
        }
    }

    #[test]
    fn collections_match_names_then_webhook_names_then_paths() {
        let h = hook(true);
        for (collection, entity) in [
            ("contacts", "contacts"),
            ("companies", "companies"),
            ("orgs", "companies"),
            ("organisations", "companies"),
        ] {
            let body = format!(r#"{{"event":"x.create","key":1,"collection":"{collection}"}}"#);
            assert_eq!(call(&h, &body).changes[0].entity, entity, "{collection}");
        }
        let mut ambiguous = targets();
        ambiguous[1].path_name = "contacts".into();
        let body = br#"{"event":"x.create","key":1,"collection":"contacts"}"#;
        let reply = handle(&h, &ambiguous, &secret(), body).unwrap();
        assert_eq!(reply.changes[0].entity, "contacts", "a name beats a path");
    }

    #[test]
    fn without_a_collection_path_the_single_entity_is_used() {
        let mut h = hook(true);
        h.collection = None;
        let body = br#"{"event":"create","key":"a-1","keys":["a-1", 7]}"#;
        let one = &targets()[..1];
        let reply = handle(&h, one, &secret(), body).unwrap();
        assert_eq!(
            summary(&reply),
            [
                ch("contacts", "a-1", Operation::Upsert, None),
                ch("contacts", "7", Operation::Upsert, None)
            ]
        );
        let err = handle(&h, &targets(), &secret(), body).unwrap_err();
        assert!(
            err.starts_with("webhook.collection is not set and 2 entities are bound"),
            "{err}"
        );
    }

    #[test]
    fn the_longest_matching_suffix_decides_the_operation() {
        let ops = vec![
            ("create".to_string(), Operation::Upsert),
            ("delete".to_string(), Operation::Delete),
            ("soft.delete".to_string(), Operation::Upsert),
            ("".to_string(), Operation::Upsert),
        ];
        assert_eq!(
            op_for("contacts.items.create", &ops),
            Some(Operation::Upsert)
        );
        assert_eq!(
            op_for("contacts.items.delete", &ops),
            Some(Operation::Delete)
        );
        assert_eq!(
            op_for("contacts.soft.delete", &ops),
            Some(Operation::Upsert)
        );
        assert_eq!(
            op_for("anything", &ops),
            Some(Operation::Upsert),
            "the empty suffix catches all"
        );
        assert_eq!(op_for("contacts.items.sort", &ops[..3]), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, a few levels deep, with the names a payload uses.
        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[ -~]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("contacts.items.create"),
                    Just("contacts.items.delete"),
                    Just("orgs.update"),
                    Just("contacts"),
                ]
                .prop_map(|s| Value::String(s.to_string())),
            ];
            leaf.prop_recursive(3, 24, 5, |inner| {
                let names = prop_oneof![
                    Just("event"),
                    Just("collection"),
                    Just("key"),
                    Just("keys"),
                    Just("payload"),
                    Just("id"),
                    Just("x")
                ];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(names, inner, 0..5).prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }),
                ]
            })
        }

        proptest! {

            /// Any payload is turned into changes, ignored or refused with a
            /// status, never a panic.
            #[test]
            fn any_payload_is_answered(body in value(), partial in any::<bool>()) {
                let text = body.to_string();
                let reply = handle(&hook(partial), &targets(), &secret(), text.as_bytes()).unwrap();
                prop_assert!(matches!(reply.status, 200 | 400), "status {}", reply.status);
            }

            /// Any bytes, too.
            #[test]
            fn any_bytes_are_answered(body in prop::collection::vec(any::<u8>(), 0..200)) {
                let reply = handle(&hook(false), &targets(), &secret(), &body).unwrap();
                prop_assert!(matches!(reply.status, 200 | 400));
            }
        }
    }
}
