//! No lost update: a record edited in two systems between two passes keeps
//! both edits where they touch different fields, and where both touch the
//! same field the entity's policy settles it and the conflict is recorded
//! once. Two SQLite CRMs synced both ways, `a` before `b` in priority.

use std::path::{Path, PathBuf};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn two_crms(d: &Path) -> PathBuf {
    crm_db(&d.join("a.db"), 20).unwrap();
    crm_db(&d.join("b.db"), 0).unwrap();
    write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity(
                "contacts",
                "id",
                &[r#"conflict = "priority""#, r#"priority = ["a", "b"]"#]
            ),
            System::sqlite("a", "a", "a.db").tracked("contacts", "contacts", "both", &[]),
            System::sqlite("b", "b", "b.db").tracked("contacts", "contacts", "both", &[]),
        ),
    )
}

/// The summary of a sync that must succeed.
fn sync(m: &Path) -> Summary {
    let run = weir(WEIR, m, &["sync"]);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .find_map(parse_summary)
        .unwrap_or_else(|| panic!("no summary: {run:?}"))
}

/// Contact `email`'s (first name, last name, phone) in `db`.
fn person(db: &Path, email: &str) -> Vec<Option<String>> {
    rows(
        db,
        &format!("SELECT first_name, last_name, phone FROM contacts WHERE email = '{email}'"),
    )
    .pop()
    .unwrap_or_else(|| panic!("{email} is not in {}", db.display()))
}

fn email(db: &Path, id: i64) -> String {
    rows(db, &format!("SELECT email FROM contacts WHERE id = {id}"))[0][0]
        .clone()
        .unwrap()
}

#[test]
fn edits_of_different_fields_in_two_systems_both_survive() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = two_crms(d);
    sync(&m);
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let who = email(&a, 3);
    // b's phone edit is older, a's last-name edit newer; a outranks b.
    exec(
        &b,
        &format!("UPDATE contacts SET phone = '+9 111' WHERE email = '{who}'"),
    );
    exec(&a, "UPDATE contacts SET last_name = 'Newname' WHERE id = 3");
    let s = sync(&m);
    assert_eq!(s.conflicts, 0, "{s:?}");
    for db in [&a, &b] {
        let p = person(db, &who);
        assert_eq!(
            (p[1].as_deref(), p[2].as_deref()),
            (Some("Newname"), Some("+9 111")),
            "{}",
            db.display()
        );
    }
    let quiet = sync(&m);
    assert_eq!((quiet.written, quiet.conflicts), (0, 0), "{quiet:?}");
}

#[test]
fn edits_of_one_field_in_two_systems_are_one_conflict_settled_by_priority() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = two_crms(d);
    sync(&m);
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let who = email(&a, 5);
    // Both change the phone, b also the first name: a's phone wins by
    // priority, b's first name (an edit a did not touch) survives.
    exec(
        &b,
        &format!("UPDATE contacts SET phone = '+9 222', first_name = 'Bee' WHERE email = '{who}'"),
    );
    exec(&a, "UPDATE contacts SET phone = '+1 333' WHERE id = 5");
    let s = sync(&m);
    assert_eq!(s.conflicts, 1, "{s:?}");
    for db in [&a, &b] {
        let p = person(db, &who);
        assert_eq!(
            (p[0].as_deref(), p[2].as_deref()),
            (Some("Bee"), Some("+1 333")),
            "{}",
            db.display()
        );
    }
    let conflicts = rows(
        &d.join("weir.db"),
        "SELECT system, other_system, winner FROM conflicts",
    );
    assert_eq!(
        conflicts,
        vec![vec![Some("b".into()), Some("a".into()), Some("a".into())]]
    );
    let quiet = sync(&m);
    assert_eq!((quiet.written, quiet.conflicts), (0, 0), "{quiet:?}");
}

/// `a` and `b` for `weir run`, each polled hourly (so only `weir refresh`
/// reads them), with a publish token (which `weir refresh` needs).
fn two_crms_served(d: &Path) -> PathBuf {
    crm_db(&d.join("a.db"), 20).unwrap();
    crm_db(&d.join("b.db"), 0).unwrap();
    let system = |name: &str| {
        System::sqlite(name, name, &format!("{name}.db"))
            .line(r#"publish_token = "${WEIR_TEST_PUBLISH_TOKEN}""#)
            .line(r#"poll_every = "1h""#)
            .tracked("contacts", "contacts", "both", &[])
    };
    write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity(
                "contacts",
                "id",
                &[r#"conflict = "priority""#, r#"priority = ["a", "b"]"#]
            ),
            system("a"),
            system("b"),
        ),
    )
}

const WITH_TOKEN: &[(&str, &str)] = &[("WEIR_TEST_PUBLISH_TOKEN", "lost-update-token")];

/// Polls `system` at once through the service, and waits for its pass.
fn refresh(m: &Path, daemon: &Daemon, system: &str) -> String {
    let url = format!("http://127.0.0.1:{}", daemon.port);
    let out = weir_env(
        WEIR,
        m,
        &["refresh", system, "contacts", "--daemon", &url],
        WITH_TOKEN,
    );
    assert_eq!(out.code, 0, "{out:?}");
    daemon.expect_line(&format!("{system}/contacts"))
}

#[test]
fn a_write_to_a_record_edited_there_since_it_was_read_keeps_that_edit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = two_crms_served(d);
    let daemon = Daemon::start(WEIR, &m, WITH_TOKEN);
    daemon.expect_line("run 1: 20 read, 20 written");
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let who = email(&a, 7);

    // b's phone is edited, and weir does not read b; then a's last name.
    // The write to b sets the last name alone: b's phone stays.
    exec(
        &b,
        &format!("UPDATE contacts SET phone = '+9 444' WHERE email = '{who}'"),
    );
    exec(&a, "UPDATE contacts SET last_name = 'Later' WHERE id = 7");
    let line = refresh(&m, &daemon, "a");
    assert!(line.contains("1 read, 1 written"), "{line}");
    let p = person(&b, &who);
    assert_eq!(
        (p[1].as_deref(), p[2].as_deref()),
        (Some("Later"), Some("+9 444"))
    );
    // Read at last, b's phone reaches a.
    refresh(&m, &daemon, "b");
    let p = person(&a, &who);
    assert_eq!(
        (p[1].as_deref(), p[2].as_deref()),
        (Some("Later"), Some("+9 444"))
    );

    // Both edit the last name, b first: the write to b finds b's edit, the
    // two are one conflict that a wins by priority, and b gets a's value
    // at the next pass, keeping its other fields.
    exec(
        &b,
        &format!("UPDATE contacts SET last_name = 'Bee', first_name = 'B' WHERE email = '{who}'"),
    );
    exec(&a, "UPDATE contacts SET last_name = 'Ay' WHERE id = 7");
    refresh(&m, &daemon, "a");
    assert_eq!(
        person(&b, &who)[1].as_deref(),
        Some("Bee"),
        "not overwritten unseen"
    );
    refresh(&m, &daemon, "b");
    for db in [&a, &b] {
        let p = person(db, &who);
        assert_eq!(
            (p[0].as_deref(), p[1].as_deref()),
            (Some("B"), Some("Ay")),
            "{}",
            db.display()
        );
    }
    let conflicts = rows(&d.join("weir.db"), "SELECT system, winner FROM conflicts");
    assert_eq!(conflicts, vec![vec![Some("b".into()), Some("a".into())]]);
    daemon.terminate();
}

#[test]
fn a_rest_write_keeps_an_edit_made_in_the_api_since_it_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("db.json"),
        r#"{"contacts": [
            {"id": 1, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "phone": "+44 1"}
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
        "first_name TEXT, last_name TEXT, email TEXT, phone TEXT",
    );
    let hourly = |s: System| {
        s.line(r#"publish_token = "${WEIR_TEST_PUBLISH_TOKEN}""#)
            .line(r#"poll_every = "1h""#)
    };
    let rest = hourly(System::rest("api", &api.url)).entity(
        "contacts",
        &[
            r#"ignore = ["updatedAt"]"#,
            r#"settings = { path = "/contacts", update_method = "PATCH" }"#,
        ],
    );
    let sql =
        hourly(System::sqlite("db", "db", "people.db")).tracked("contacts", "people", "both", &[]);
    let m = write_manifest(d, &format!("{}{rest}{sql}", entity("contacts", "id", &[])));
    let daemon = Daemon::start(WEIR, &m, WITH_TOKEN);
    daemon.expect_line("run 1: 1 read, 1 written");
    let ada = || -> serde_json::Value {
        let (_, body) = api.request("GET", "/contacts/1", None).unwrap();
        serde_json::from_str(&body).unwrap()
    };

    // The API's phone is edited, weir does not read it; then the last
    // name in SQLite: the write to the API sends the last name alone.
    let (status, _) = api
        .request("PATCH", "/contacts/1", Some(r#"{"phone": "+44 2"}"#))
        .unwrap();
    assert_eq!(status, 200);
    exec(&db, "UPDATE people SET last_name = 'King' WHERE id = 1");
    let line = refresh(&m, &daemon, "db");
    assert!(line.contains("1 read, 1 written"), "{line}");
    let now = ada();
    assert_eq!(
        (now["last_name"].as_str(), now["phone"].as_str()),
        (Some("King"), Some("+44 2"))
    );

    // Both edit the last name: the API's edit is not overwritten unseen;
    // read, it is a conflict (last writer wins: the API's), and both agree.
    api.request("PATCH", "/contacts/1", Some(r#"{"last_name": "Byron"}"#))
        .unwrap();
    exec(&db, "UPDATE people SET last_name = 'Countess' WHERE id = 1");
    refresh(&m, &daemon, "db");
    assert_eq!(ada()["last_name"].as_str(), Some("Byron"));
    refresh(&m, &daemon, "api");
    assert_eq!(
        rows(&db, "SELECT last_name, phone FROM people WHERE id = 1"),
        vec![vec![Some("Byron".into()), Some("+44 2".into())]]
    );
    assert_eq!(ada()["last_name"].as_str(), Some("Byron"));
    daemon.terminate();
}
