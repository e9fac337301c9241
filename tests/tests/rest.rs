//! The generic REST connector against a real json-server: two-way sync with a
//! SQLite database, deletes, and the id-reuse hazard.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn json_server_and_sqlite_stay_in_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("db.json"),
        r#"{"contacts": [
            {"id": 1, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "updatedAt": "2026-01-01T00:00:00.000Z"},
            {"id": 2, "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com", "updatedAt": "2026-01-01T00:00:00.000Z"},
            {"id": 3, "first_name": "Alan", "last_name": "Turing", "email": "alan@example.com", "updatedAt": "2026-01-01T00:00:00.000Z"}
        ]}"#,
    )
    .unwrap();
    let api = JsonServer::start(d, &d.join("db.json"));
    let db = d.join("people.db");
    create_table(
        &db,
        "people",
        "id",
        Key::Reused,
        "first_name TEXT, last_name TEXT, email TEXT",
    );
    // The recipe of connectors/rest/RECIPES.md, as a user would copy it.
    let rest = rest_recipe("json-server-0.17", &api.url);
    let sql = System::sqlite("db", "db", "people.db").tracked("contacts", "people", "both", &[]);
    let m = write_manifest(d, &format!("{}{rest}{sql}", entity("contacts", "id", &[])));
    let check = weir(WEIR, &m, &["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains("system api: ok (rest 0.1.0"),
        "{check:?}"
    );

    // Pass 1: json-server's contacts reach SQLite.
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM people"), 3);
    let api_contacts = || -> Vec<(String, String)> {
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
    };
    let db_contacts = || -> Vec<(String, String)> {
        rows(&db, "SELECT email, last_name FROM people")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect()
    };
    assert_eq!(api_contacts(), db_contacts());

    // Pass 2: nothing changed, nothing written; weir's writes to SQLite come back as echoes.
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(second.stdout.contains(" 0 written, "), "{second:?}");

    // Both sides change: a row inserted in SQLite, a contact patched in json-server.
    exec(
        &db,
        "INSERT INTO people (first_name, last_name, email) VALUES ('Barbara', 'Liskov', 'barbara@example.com')",
    );
    assert_eq!(
        api.request(
            "PATCH",
            "/contacts/2",
            Some(r#"{"last_name": "Hopper-Murray"}"#)
        )
        .unwrap()
        .0,
        200
    );
    let third = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(third.stdout.contains(" 2 written, "), "{third:?}");
    assert_eq!(api_contacts(), db_contacts());
    assert_eq!(api_contacts().len(), 4);
    let fourth = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        fourth.stdout.contains(" 0 written, "),
        "no echo writes: {fourth:?}"
    );

    // A delete in json-server is found by a full read and reaches SQLite.
    assert_eq!(api.request("DELETE", "/contacts/3", None).unwrap().0, 200);
    let full = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert!(full.stdout.contains(" 1 deleted, "), "{full:?}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE email = 'alan@example.com'"
        ),
        0
    );

    // The id-reuse hazard: a new contact created under the deleted id is a new
    // record, not the old one coming back.
    let (status, _) = api.request("POST", "/contacts", Some(r#"{"id": 3, "first_name": "Edsger", "last_name": "Dijkstra", "email": "edsger@example.com", "updatedAt": "2026-02-01T00:00:00.000Z"}"#)).unwrap();
    assert_eq!(status, 201);
    let reused = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert_eq!(reused.code, 0, "{reused:?}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE email = 'edsger@example.com'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE email = 'alan@example.com'"
        ),
        0
    );
    assert_eq!(api_contacts(), db_contacts());
}

/// A change committed late: json-server gets a contact stamped before a
/// change weir has already read. Returns whether its new email reached
/// SQLite, with change reads looking back `lookback_secs`, and the run line
/// of one more pass.
fn late_change_reaches_sqlite(lookback_secs: u32) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("db.json"),
        r#"{"contacts": [
            {"id": 1, "first_name": "Ada", "email": "ada@example.com", "updatedAt": "2026-01-01T00:00:00.000Z"},
            {"id": 2, "first_name": "Grace", "email": "grace@example.com", "updatedAt": "2026-01-01T00:00:00.000Z"}
        ]}"#,
    )
    .unwrap();
    let api = JsonServer::start(d, &d.join("db.json"));
    let db = d.join("people.db");
    exec(
        &db,
        "CREATE TABLE people (id INTEGER PRIMARY KEY, first_name TEXT, email TEXT);",
    );
    let rest = System::rest("api", &api.url).entity(
        "contacts",
        &[
            r#"direction = "read""#,
            r#"ignore = ["updatedAt"]"#,
            &format!(r#"settings = {{ path = "/contacts", updated_at = "updatedAt", since_param = "updatedAt_gte", lookback_secs = {lookback_secs} }}"#),
        ],
    );
    let sql = System::sqlite("db", "db", "people.db").entity(
        "contacts",
        &[
            r#"direction = "write""#,
            r#"settings = { table = "people" }"#,
        ],
    );
    let m = write_manifest(
        d,
        &format!(
            "{}{rest}{sql}",
            entity("contacts", "id", &["shared_key = true"])
        ),
    );
    let sync = || {
        let run = weir(WEIR, &m, &["sync", "--quiet"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
    };
    let patch = |id: u32, body: &str| {
        let (status, _) = api
            .request("PATCH", &format!("/contacts/{id}?keep_stamp"), Some(body))
            .unwrap();
        assert_eq!(status, 200);
    };
    sync();
    assert_eq!(count(&db, "SELECT count(*) FROM people"), 2);
    // Read by the next change read: weir's change cursor moves to its time
    // (both writes carry their own stamps, far ahead of the clock).
    patch(
        2,
        r#"{"email": "grace@new.example", "updatedAt": "2099-01-01T00:00:05.000Z"}"#,
    );
    sync();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM people WHERE email = 'grace@new.example'"
        ),
        1
    );
    // Committed after it, stamped two seconds before it.
    patch(
        1,
        r#"{"email": "ada@late.example", "updatedAt": "2099-01-01T00:00:03.000Z"}"#,
    );
    sync();
    let found = count(
        &db,
        "SELECT count(*) FROM people WHERE email = 'ada@late.example'",
    ) == 1;
    (found, sync())
}

#[test]
fn change_reads_that_look_back_find_a_change_committed_late() {
    // Without a look-back the late change is skipped until a full read.
    assert!(!late_change_reaches_sqlite(0).0);
    let (found, next) = late_change_reaches_sqlite(60);
    assert!(found);
    // What the look-back reads again is unchanged: nothing is written.
    assert!(next.contains(" 0 written, "), "{next}");
    assert!(next.contains(" 2 unchanged"), "{next}");
}
