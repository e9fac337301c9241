//! A record never vanishes: every record a source offers is either taken or
//! becomes a dead letter with its reason, once per record and content, per
//! connector (csv, sql, rest on json-server).

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The dead letters as `weir dead-letters` prints them, one per line.
fn letters(m: &Path) -> Vec<String> {
    let run = weir(WEIR, m, &["dead-letters"]);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout.lines().map(str::to_string).collect()
}

fn sqlite_target(d: &Path) -> System {
    exec(
        &d.join("target.db"),
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT)",
    );
    System::sqlite("target", "target", "target.db").entity(
        "contacts",
        &[
            r#"direction = "write""#,
            r#"settings = { table = "people" }"#,
        ],
    )
}

fn names(d: &Path) -> Vec<String> {
    rows(&d.join("target.db"), "SELECT name FROM people")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

#[test]
fn csv_rows_that_cannot_be_read_become_dead_letters_once_and_clear_when_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("in")).unwrap();
    let file = d.join("in").join("contacts.csv");
    let good = "id,name,email\n1,Ada,ada@x.test\n";
    let mut text = good.as_bytes().to_vec();
    text.extend_from_slice(b"2,Bj\xf6rn,bjorn@x.test\n");
    text.extend_from_slice(b",Nobody,nobody@x.test\n");
    text.extend_from_slice(b"4,\"Open quote,open@x.test\n");
    text.extend_from_slice(b"5,Eve,eve@x.test\n6,Fay,fay@x.test\n");
    std::fs::write(&file, &text).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            System::csv("source", "in", "in").entity(
                "contacts",
                &[
                    r#"direction = "read""#,
                    r#"settings = { file = "contacts.csv" }"#
                ]
            ),
            sqlite_target(d),
        ),
    );

    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(
        first.code, 1,
        "refusals make the first pass partial: {first:?}"
    );
    assert!(
        first.stdout.contains("6 read"),
        "every row is offered: {first:?}"
    );
    // The rows after the unclosed quote are read as rows.
    assert_eq!(names(d), ["Ada", "Eve", "Fay"]);
    let l = letters(&m);
    assert_eq!(l.len(), 3, "{l:?}");
    let all = l.join("\n");
    assert!(
        all.contains(
            "source/contacts record 2: file 'contacts.csv' line 3: cell 'name' is not valid UTF-8"
        ),
        "{all}"
    );
    assert!(
        all.contains("line 4: no value for the primary key 'id'"),
        "{all}"
    );
    assert!(all.contains("source/contacts record 4: file 'contacts.csv' line 5: a quote opened in this row is never closed"), "{all}");

    // Read again as they were: counted, not added, and the pass is clean.
    let second = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second
            .stderr
            .contains("3 record(s) read again as they were"),
        "{second:?}"
    );
    let l = letters(&m);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l.iter().all(|l| l.contains("met 2 times")), "{l:?}");

    // Fixed at the source: taken, and its letter cleared. A record that goes
    // bad after it was synced is refused, not taken for deleted.
    let mut fixed = good.as_bytes().to_vec();
    fixed.extend_from_slice("2,Björn,bjorn@x.test\n".as_bytes());
    fixed.extend_from_slice(b",Nobody,nobody@x.test\n4,\"Open quote,open@x.test\n");
    fixed.extend_from_slice(b"5,Eve\xff,eve@x.test\n6,Fay,fay@x.test\n");
    std::fs::write(&file, &fixed).unwrap();
    let third = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
    assert_eq!(third.code, 1, "a new refusal: {third:?}");
    assert!(third.stdout.contains("0 deleted"), "{third:?}");
    let mut n = names(d);
    n.sort();
    assert_eq!(n, ["Ada", "Björn", "Eve", "Fay"]);
    let l = letters(&m);
    assert_eq!(l.len(), 3, "{l:?}");
    let all = l.join("\n");
    assert!(!all.contains("record 2:"), "fixed, cleared: {all}");
    assert!(
        all.contains("record 5: file 'contacts.csv' line 6: cell 'name' is not valid UTF-8"),
        "{all}"
    );
}

#[test]
fn sql_rows_without_a_key_and_records_the_mapping_refuses_are_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A table without a primary-key constraint: rows with a null id exist.
    exec(
        &d.join("crm.db"),
        "CREATE TABLE people (id INTEGER, name TEXT, email TEXT);
         INSERT INTO people VALUES (1, 'Ada', 'ada@x.test'), (NULL, 'Nobody', 'n@x.test'),
             (NULL, 'Nemo', 'nemo@x.test'), (3, 'Cy', 'not-an-address');",
    );
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity(
                "contacts",
                "id",
                &[
                    "[entities.contacts.fields]",
                    r#"email = { format = "email" }"#
                ]
            ),
            System::sqlite("crm", "crm", "crm.db").entity(
                "contacts",
                &[
                    r#"direction = "read""#,
                    r#"settings = { table = "people" }"#
                ]
            ),
            sqlite_target(d),
        ),
    );
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(names(d), ["Ada"]);
    let l = letters(&m);
    assert_eq!(
        l.len(),
        3,
        "two keyless rows, one refused by validation: {l:?}"
    );
    assert_eq!(
        l.iter()
            .filter(|l| l.contains("a row has no value in 'id'"))
            .count(),
        2,
        "{l:?}"
    );
    for _ in 0..2 {
        let again = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
        assert_eq!(again.code, 0, "{again:?}");
    }
    let l = letters(&m);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l.iter().all(|l| l.contains("met 3 times")), "{l:?}");
    let metrics_like = weir(WEIR, &m, &["status"]);
    assert!(
        metrics_like.stdout.contains("latest dead letters"),
        "{metrics_like:?}"
    );
}

#[test]
fn rest_items_without_an_id_become_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("db.json");
    std::fs::write(
        &db,
        r#"{"contacts": [
            {"id": 1, "name": "Ada", "email": "ada@x.test"},
            {"name": "Nobody", "email": "n@x.test"},
            {"id": 2, "name": "Bo", "email": "bo@x.test"}
        ]}"#,
    )
    .unwrap();
    let server = JsonServer::start(d, &db);
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            System::rest("api", &server.url).entity(
                "contacts",
                &[
                    r#"direction = "read""#,
                    r#"settings = { path = "/contacts" }"#
                ]
            ),
            sqlite_target(d),
        ),
    );
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 1, "{first:?}");
    let mut n = names(d);
    n.sort();
    assert_eq!(n, ["Ada", "Bo"]);
    let l = letters(&m);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].contains("a record has no value in 'id'"), "{l:?}");
    let again = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(letters(&m).len(), 1);
}
