//! The real Directus the end-to-end tests sync with: REST writes, the
//! webhook flow's bodies, the changed-since query, deletes in the activity
//! log, and a restart that keeps the data and the flow.

use serde_json::{json, Value};
use std::sync::mpsc;
use std::time::Duration;
use weir_tests::directus::query;
use weir_tests::{http_receiver, Directus, Received};

fn next_hook(rx: &mpsc::Receiver<Received>, what: &str, d: &Directus) -> Received {
    let hook = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no webhook for {what} within 30 s\n{}", d.log_tail()));
    eprintln!("webhook for {what}: {}", hook.body);
    hook
}

#[test]
fn directus_rest_webhooks_changes_and_deletes() {
    let Some(mut d) = Directus::start() else {
        return;
    };
    d.create_collection("contacts");
    let (port, hooks) = http_receiver();
    d.add_webhook_flow(
        "contacts",
        &format!("http://127.0.0.1:{port}/hook"),
        "X-Sync-Secret",
        "s3cret",
    );

    // Create: the hook has the event, the created fields and `key` as a number.
    let (status, created) = d.request(
        "POST",
        "/items/contacts",
        Some(&json!({"name": "Ada", "email": "ada@example.com"})),
    );
    eprintln!("POST /items/contacts -> {status} {created}");
    assert_eq!(status, 200);
    let ada = created["data"]["id"].as_i64().unwrap();
    assert!(created["data"]["date_created"].is_string(), "{created}");
    assert!(created["data"]["date_updated"].is_null(), "{created}");
    let hook = next_hook(&hooks, "create", &d);
    assert_eq!(hook.path, "/hook");
    assert_eq!(
        hook.headers.get("x-sync-secret").map(String::as_str),
        Some("s3cret")
    );
    assert!(
        hook.headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        hook.headers
    );
    eprintln!("webhook headers: {:?}", hook.headers);
    assert_eq!(hook.body["event"], "contacts.items.create");
    assert_eq!(hook.body["collection"], "contacts");
    assert_eq!(hook.body["key"], json!(ada));
    assert_eq!(hook.body["payload"]["email"], "ada@example.com");

    let grace = d.create_item(
        "contacts",
        &json!({"name": "Grace", "email": "grace@example.com"}),
    );
    next_hook(&hooks, "second create", &d);
    let items = d.items("contacts");
    eprintln!("items: {}", Value::Array(items.clone()));
    assert_eq!(items.len(), 2);
    let since = items[1]["date_created"].as_str().unwrap().to_string();

    // Update: only the changed fields, `keys` as strings; date_updated is set.
    std::thread::sleep(Duration::from_millis(20));
    let updated = d.update_item("contacts", ada, &json!({"email": "ada@lovelace.org"}));
    eprintln!("PATCH /items/contacts/{ada} -> {updated}");
    assert!(updated["date_updated"].is_string(), "{updated}");
    let hook = next_hook(&hooks, "update", &d);
    assert_eq!(hook.body["event"], "contacts.items.update");
    assert_eq!(hook.body["keys"], json!([ada.to_string()]));
    assert_eq!(hook.body["payload"], json!({"email": "ada@lovelace.org"}));

    // Changed since the second create: only Ada.
    let filter = json!({"_or": [
        {"date_updated": {"_gt": since}},
        {"date_created": {"_gt": since}}
    ]})
    .to_string();
    let changed = d.get(&format!(
        "/items/contacts?{}",
        query(&[
            ("filter", &filter),
            ("sort", "date_updated,id"),
            ("limit", "100"),
            ("page", "1")
        ])
    ));
    eprintln!("changed since {since}: {changed}");
    let changed_ids: Vec<i64> = changed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(changed_ids, vec![ada]);

    // Delete: the hook and the activity log name the key.
    let (status, body) = d.request("DELETE", &format!("/items/contacts/{grace}"), None);
    eprintln!("DELETE /items/contacts/{grace} -> {status} {body}");
    assert_eq!(status, 204);
    let hook = next_hook(&hooks, "delete", &d);
    assert_eq!(hook.body["event"], "contacts.items.delete");
    assert_eq!(hook.body["keys"], json!([grace.to_string()]));
    assert_eq!(hook.body["payload"], json!([grace.to_string()]));
    let deletes = d.get(&format!(
        "/activity?{}",
        query(&[
            ("filter[collection][_eq]", "contacts"),
            ("filter[action][_eq]", "delete")
        ])
    ));
    eprintln!("delete activity: {deletes}");
    let deletes = deletes.as_array().unwrap();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["item"], json!(grace.to_string()));
    assert!(deletes[0]["timestamp"].is_string());

    // Every write by the admin token is in the activity log.
    let activity = d.activity("contacts");
    let actions: Vec<&str> = activity
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "create", "update", "delete"]);
    let users: Vec<&Value> = activity.iter().map(|a| &a["user"]).collect();
    assert!(users.iter().all(|u| u.is_string() && *u == users[0]));

    // A restart keeps the items and the flow.
    d.restart();
    assert_eq!(d.items("contacts").len(), 1);
    d.update_item("contacts", ada, &json!({"name": "Augusta Ada"}));
    let hook = next_hook(&hooks, "update after restart", &d);
    assert_eq!(hook.body["payload"], json!({"name": "Augusta Ada"}));
    assert!(
        hooks.recv_timeout(Duration::from_millis(500)).is_err(),
        "one hook per write"
    );
}
