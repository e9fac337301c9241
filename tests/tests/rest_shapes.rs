//! The shapes of real REST APIs that the `rest` connector takes from the
//! manifest: where the key of a write goes, and what a "not found" answer
//! means. Against a real json-server.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The contacts json-server holds: (id, email, last name), by id.
fn api_contacts(api: &JsonServer) -> Vec<(i64, String, String)> {
    let mut out: Vec<(i64, String, String)> = api
        .records("/contacts")
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["email"].as_str().unwrap_or_default().to_string(),
                c["last_name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A manifest copying SQLite's `people` to json-server's contacts, with the
/// rest entity's `settings`.
fn manifest(d: &Path, api: &JsonServer, settings: &str) -> std::path::PathBuf {
    let rest = System::rest("api", &api.url).entity(
        "contacts",
        &[r#"direction = "write""#, &format!("settings = {settings}")],
    );
    let sql = System::sqlite("db", "db", "people.db").tracked("contacts", "people", "read", &[]);
    write_manifest(d, &format!("{}{sql}{rest}", entity("contacts", "id", &[])))
}

/// A full pass that is to exit with `code` (1: some writes failed); its
/// run line.
fn sync(m: &Path, code: i32) -> String {
    let run = weir(WEIR, m, &["sync", "--quiet", "--full"]);
    assert_eq!(run.code, code, "{run:?}");
    run.stdout
}

#[test]
fn a_not_found_answer_is_taken_for_a_missing_record_only_when_a_read_confirms_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("db.json"), r#"{"contacts": []}"#).unwrap();
    let api = JsonServer::start(d, &d.join("db.json"));
    let db = d.join("people.db");
    create_table(
        &db,
        "people",
        "id",
        Key::Reused,
        "first_name TEXT, last_name TEXT, email TEXT",
    );
    exec(
        &db,
        "INSERT INTO people (first_name, last_name, email) VALUES
            ('Ada', 'Lovelace', 'ada@example.com'),
            ('Grace', 'Hopper', 'grace@example.com'),
            ('Alan', 'Turing', 'alan@example.com'),
            ('Edsger', 'Dijkstra', 'edsger@example.com')",
    );

    // Updates and deletes sent to the collection URL with the key in the
    // body: json-server has no such route and answers 404 there.
    let misrouted = manifest(
        d,
        &api,
        r#"{ path = "/contacts", update = { path = "/contacts", key_field = "id" }, delete = { path = "/contacts", key_field = "id" } }"#,
    );
    assert!(sync(&misrouted, 0).contains(" 4 written, "));
    assert_eq!(api_contacts(&api).len(), 4);
    exec(
        &db,
        "UPDATE people SET last_name = 'Byron' WHERE email = 'ada@example.com'",
    );
    exec(&db, "DELETE FROM people WHERE email = 'alan@example.com'");
    let out = sync(&misrouted, 1);
    assert!(out.contains(" 0 deleted, "), "{out}");
    assert!(out.contains(" 2 failed"), "{out}");
    // No record created again, none reported deleted: both refused with the
    // URL and the setting to fix.
    let held = api_contacts(&api);
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().any(|c| c.2 == "Lovelace"), "{held:?}");
    let letters = weir(WEIR, &misrouted, &["dead-letters"]);
    assert_eq!(letters.code, 0, "{letters:?}");
    for (method, setting) in [("PATCH", "settings.update"), ("DELETE", "settings.delete")] {
        let line = letters
            .stdout
            .lines()
            .find(|l| l.contains(&format!("{method} {}/contacts answered 404", api.url)))
            .unwrap_or_else(|| panic!("a dead letter for the {method}: {letters:?}"));
        assert!(line.contains(setting), "{line}");
        assert!(line.contains("finds record"), "{line}");
    }
    let again = sync(&misrouted, 0);
    assert!(
        again.contains(" 0 failed"),
        "a dead letter is not retried at every pass: {again}"
    );

    // The API's own shape ({path}/{id}): a record deleted there is created
    // again when it changes here, and a delete of a record already gone
    // there counts as done.
    let keyed = manifest(d, &api, r#"{ path = "/contacts" }"#);
    let id_of = |email: &str| held.iter().find(|c| c.1 == email).unwrap().0;
    let grace = id_of("grace@example.com");
    for id in [
        grace,
        id_of("alan@example.com"),
        id_of("edsger@example.com"),
    ] {
        assert_eq!(
            api.request("DELETE", &format!("/contacts/{id}"), None)
                .unwrap()
                .0,
            200
        );
    }
    exec(
        &db,
        "UPDATE people SET last_name = 'Hopper-Murray' WHERE email = 'grace@example.com'",
    );
    exec(
        &db,
        "UPDATE people SET last_name = 'King' WHERE email = 'ada@example.com'",
    );
    exec(&db, "DELETE FROM people WHERE email = 'edsger@example.com'");
    let out = sync(&keyed, 0);
    assert!(out.contains(" 2 written, 1 deleted, "), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    let held = api_contacts(&api);
    let emails: Vec<&str> = held.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(emails, ["ada@example.com", "grace@example.com"], "{held:?}");
    assert!(
        held.iter().any(|c| c.0 == grace && c.2 == "Hopper-Murray"),
        "{held:?}"
    );
    assert!(held.iter().any(|c| c.2 == "King"), "{held:?}");
}

/// Changes json-server 1.0's contacts in its file (one atomic rename)
/// and waits until the server has reloaded them. json-server 1.0 reloads
/// its file whenever the file changes; a reload that starts while it saves
/// a write over HTTP can bring back what that write replaced, so the test
/// edits the file instead, with no write under way.
fn reload(api: &JsonServer, file: &Path, edit: impl Fn(&mut Vec<serde_json::Value>)) {
    let mut db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut contacts = db["contacts"].as_array().unwrap().clone();
    edit(&mut contacts);
    db["contacts"] = serde_json::Value::Array(contacts.clone());
    let next = file.with_extension("next");
    std::fs::write(&next, db.to_string()).unwrap();
    std::fs::rename(&next, file).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if api.records("/contacts") == contacts {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "json-server did not reload its file within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The contacts json-server 1.0 holds (all pages): (email, last name).
fn v1_contacts(api: &JsonServer) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = api
        .records("/contacts")
        .iter()
        .map(|c| {
            (
                c["email"].as_str().unwrap().to_string(),
                c["last_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn json_server_1_listings_end_where_the_body_says_and_string_ids_sync_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Four records: pages of two are full to the end, and json-server 1.0
    // answers a page past the end with the last page again.
    std::fs::write(
        d.join("db.json"),
        r#"{"contacts": [
            {"id": "a1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
            {"id": "b2", "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"},
            {"id": "c3", "first_name": "Alan", "last_name": "Turing", "email": "alan@example.com"},
            {"id": "d4", "first_name": "Edsger", "last_name": "Dijkstra", "email": "edsger@example.com"}
        ]}"#,
    )
    .unwrap();
    let api = JsonServer::start_v1(&d.join("db.json"));
    let (_, page) = api
        .request("GET", "/contacts?_page=3&_per_page=2", None)
        .unwrap();
    assert!(
        page.contains("edsger@example.com"),
        "past the end, the last page: {page}"
    );
    let db = d.join("people.db");
    create_table(
        &db,
        "people",
        "id",
        Key::Reused,
        "first_name TEXT, last_name TEXT, email TEXT",
    );
    let rest = rest_recipe("json-server-1.0", &api.url);
    let sql = System::sqlite("db", "db", "people.db").tracked("contacts", "people", "both", &[]);
    let m = write_manifest(d, &format!("{}{rest}{sql}", entity("contacts", "id", &[])));
    let sync = || {
        let run = weir(
            WEIR,
            &m,
            &["sync", "--quiet", "--full", "--batch-size", "2"],
        );
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
    };
    let db_contacts = || -> Vec<(String, String)> {
        rows(&db, "SELECT email, last_name FROM people ORDER BY email")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect()
    };
    let first = sync();
    assert!(first.contains("4 read, 4 written"), "{first}");
    assert_eq!(v1_contacts(&api), db_contacts());

    // Both sides change: a row inserted here (json-server gives it a string
    // id), a contact edited and one deleted there.
    exec(
        &db,
        "INSERT INTO people (first_name, last_name, email) VALUES ('Barbara', 'Liskov', 'barbara@example.com')",
    );
    // Edited in its file, which json-server 1.0 reloads: a write over HTTP
    // right after another can be lost to that reload (see `reload`).
    reload(&api, &d.join("db.json"), |contacts| {
        contacts.retain(|c| c["id"] != "c3");
        for c in contacts.iter_mut().filter(|c| c["id"] == "b2") {
            c["last_name"] = "Hopper-Murray".into();
        }
    });
    let second = sync();
    assert!(second.contains(" 2 written, 1 deleted, "), "{second}");
    let held = v1_contacts(&api);
    assert_eq!(held, db_contacts());
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.contains(&("grace@example.com".into(), "Hopper-Murray".into())));
    let quiet = sync();
    assert!(
        quiet.contains(" 0 written, 0 deleted, "),
        "no echoes: {quiet}"
    );
}
