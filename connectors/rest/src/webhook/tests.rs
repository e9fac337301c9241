//! Unit and property tests of webhook payloads turned into changes.
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
        rows: None,
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
    let delete =
        r#"{"event":"contacts.items.delete","payload":["2"],"keys":["2"],"collection":"contacts"}"#;
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
fn a_body_with_rows_announces_a_change_per_row() {
    let mut nocodb = hook(false);
    nocodb.event = "type".into();
    nocodb.collection = Some("data.table_name".into());
    nocodb.rows = Some("data.rows".into());
    nocodb.id = Some("Id".into());
    nocodb.ids = None;
    nocodb.payload = None;
    nocodb.ops = vec![
        ("after.insert".into(), Operation::Upsert),
        ("after.delete".into(), Operation::Delete),
    ];
    let insert = r#"{"type":"records.after.insert","id":"evt-1","data":{"table_name":"contacts","rows":[{"Id":1,"Name":"Ada"},{"Id":2,"Name":"Grace"}]}}"#;
    let reply = call(&nocodb, insert);
    assert_eq!(reply.body, json!({"accepted": 2}));
    assert_eq!(
        summary(&reply),
        [
            ch(
                "contacts",
                "1",
                Operation::Upsert,
                Some(json!({"id": 1, "Id": 1, "Name": "Ada"}))
            ),
            ch(
                "contacts",
                "2",
                Operation::Upsert,
                Some(json!({"id": 2, "Id": 2, "Name": "Grace"}))
            ),
        ]
    );
    // A row without an id is not taken from the event's own id: the
    // body is refused, naming the row.
    let bad = r#"{"type":"records.after.delete","id":"evt-2","data":{"table_name":"contacts","rows":[{"Id":1},{"Name":"no id"}]}}"#;
    let reply = call(&nocodb, bad);
    assert_eq!(reply.status, 400);
    assert!(reply.changes.is_empty());
    assert_eq!(
        reply.body["error"],
        "row 1: no record id at 'Id' (webhook.id)"
    );
    let empty = call(
        &nocodb,
        r#"{"type":"records.after.insert","data":{"table_name":"contacts","rows":[]}}"#,
    );
    assert_eq!(
        (empty.status, empty.body.clone()),
        (200, json!({"accepted": 0}))
    );
    let not_rows = call(
        &nocodb,
        r#"{"type":"records.after.insert","data":{"rows":{"Id":1}}}"#,
    );
    assert_eq!(
        not_rows.body["error"],
        "no array of rows at 'data.rows' (webhook.rows): found an object"
    );

    // Mixed operations in one body, each row with its own event name.
    let mut mixed = hook(false);
    mixed.event = "op".into();
    mixed.collection = None;
    mixed.rows = Some("events".into());
    mixed.id = Some("record.id".into());
    mixed.ids = None;
    mixed.payload = Some("record".into());
    let body = r#"{"events":[{"op":"create","record":{"id":1,"name":"Ada"}},{"op":"delete","record":{"id":2}},{"op":"sort","record":{"id":3}}]}"#;
    let reply = handle(&mixed, &targets()[..1], &secret(), body.as_bytes()).unwrap();
    assert_eq!(
        summary(&reply),
        [
            ch(
                "contacts",
                "1",
                Operation::Upsert,
                Some(json!({"id": 1, "name": "Ada"}))
            ),
            ch("contacts", "2", Operation::Delete, None),
        ]
    );
    assert_eq!(reply.body["accepted"], 2);
    assert_eq!(
        reply.body["ignored"],
        json!(["event 'sort' matches no suffix of webhook.ops"])
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
                Just("rows"),
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
        fn any_payload_is_answered(body in value(), partial in any::<bool>(), rows in any::<bool>()) {
            let text = body.to_string();
            let mut hook = hook(partial);
            if rows {
                hook.rows = Some("rows".into());
            }
            let reply = handle(&hook, &targets(), &secret(), text.as_bytes()).unwrap();
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
