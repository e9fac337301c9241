//! A full sync of real SQLite databases and a CSV folder through the wasm connectors.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn manifest(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("csv")).unwrap();
    write_manifest(
        dir,
        &format!(
            r#"
[entities.contacts]
primary_key = "id"

[systems.crm]
connector = {sql}
config = {{ database = "crm" }}
databases = {{ crm = "crm.db" }}
[systems.crm.entities.contacts]
direction = "read"
ignore = ["updated_at"]
settings = {{ table = "contacts", updated_at = "updated_at" }}

{shop}

[systems.files]
connector = {csv}
config = {{ directory = "export" }}
directories = {{ export = "csv" }}
[systems.files.entities.contacts]
direction = "write"
"#,
            shop = shop_system(),
            sql = toml_path(&connector("sql")),
            csv = toml_path(&connector("csv")),
        ),
    )
}

#[test]
fn ten_thousand_contacts_arrive_everywhere_and_a_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 10_000).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = manifest(d);

    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains(
            "10000 read, 20000 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 0 failed"
        ),
        "{first:?}"
    );

    // Every contact is in the shop, field by field, under the shop's names.
    let source = rows(
        &d.join("crm.db"),
        "SELECT first_name, last_name, email, phone FROM contacts",
    );
    let shop = rows(
        &d.join("shop.db"),
        "SELECT fname, lname, mail, phone FROM customers",
    );
    assert_eq!(source.len(), 10_000);
    assert_eq!(source, shop);

    // And in the CSV file, with the canonical names and the ids the CSV connector assigned.
    let csv = csv_rows(&d.join("csv").join("contacts.csv"));
    let header = &csv[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (f, l, e, p, id) = (
        col("first_name"),
        col("last_name"),
        col("email"),
        col("phone"),
        col("id"),
    );
    let mut exported: Vec<Vec<Option<String>>> = csv[1..]
        .iter()
        .map(|r| {
            [f, l, e, p]
                .iter()
                .map(|&i| Some(r[i].clone()).filter(|s| !s.is_empty()))
                .collect()
        })
        .collect();
    exported.sort();
    assert_eq!(source, exported);
    let mut ids: Vec<&str> = csv[1..].iter().map(|r| r[id].as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_000, "csv ids are unique");

    // Nothing changed: the second run asks the CRM for its changes since the
    // first run (there are none) and writes nothing.
    let shop_before = std::fs::read(d.join("shop.db")).unwrap();
    let csv_before = std::fs::read(d.join("csv").join("contacts.csv")).unwrap();
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.contains(
            "run 2: 0 read, 0 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 0 failed"
        ),
        "{second:?}"
    );
    assert_eq!(
        std::fs::read(d.join("csv").join("contacts.csv")).unwrap(),
        csv_before
    );
    assert_eq!(
        rows(&d.join("shop.db"), "SELECT * FROM customers").len(),
        10_000
    );
    assert_eq!(
        std::fs::read(d.join("shop.db")).unwrap().len(),
        shop_before.len()
    );

    // A changed contact is the only change the third run reads, and its only
    // write, to both targets.
    let conn = rusqlite::Connection::open(d.join("crm.db")).unwrap();
    conn.execute(
        "UPDATE contacts SET email = 'changed@example.com' WHERE id = 5000",
        [],
    )
    .unwrap();
    let third = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        third.stdout.contains(
            "run 3: 1 read, 2 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 0 failed"
        ),
        "{third:?}"
    );
    assert_eq!(
        rows(
            &d.join("shop.db"),
            "SELECT count(*) FROM customers WHERE mail = 'changed@example.com'"
        ),
        vec![vec![Some("1".to_string())]]
    );
    assert_eq!(
        rows(&d.join("shop.db"), "SELECT count(*) FROM customers"),
        vec![vec![Some("10000".to_string())]]
    );

    let status = weir(WEIR, &m, &["status"]);
    assert!(
        status
            .stdout
            .contains("shop contacts: 10000 linked records"),
        "{status:?}"
    );
    assert!(status.stdout.contains("run 3"), "{status:?}");
}

#[test]
fn a_record_the_target_refuses_goes_to_dead_letters_and_the_rest_sync() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 50).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    // The shop already holds one of the e-mail addresses (mail is UNIQUE there).
    let taken = rows(
        &d.join("crm.db"),
        "SELECT email FROM contacts WHERE id = 10",
    )[0][0]
        .clone()
        .unwrap();
    rusqlite::Connection::open(d.join("shop.db"))
        .unwrap()
        .execute(
            "INSERT INTO customers (customer_id, fname, lname, mail) VALUES (9999, 'X', 'Y', ?1)",
            [&taken],
        )
        .unwrap();
    let m = manifest(d);
    let run = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run.code, 1, "a dead letter makes the run partial: {run:?}");
    assert!(
        run.stdout.contains(
            "50 read, 99 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 1 failed"
        ),
        "{run:?}"
    );
    assert_eq!(
        rows(&d.join("shop.db"), "SELECT count(*) FROM customers"),
        vec![vec![Some("50".to_string())]]
    );
    let status = weir(WEIR, &m, &["status"]);
    assert!(
        status.stdout.contains(" shop/contacts: rejected: "),
        "{status:?}"
    );
    assert!(
        status
            .stdout
            .contains("UNIQUE constraint failed: customers.mail"),
        "{status:?}"
    );

    // Once the shop's conflicting row is gone, the dead letter is retried and delivered.
    let letters = weir(WEIR, &m, &["dead-letters"]);
    assert!(letters.stdout.starts_with("#1 "), "{letters:?}");
    rusqlite::Connection::open(d.join("shop.db"))
        .unwrap()
        .execute("DELETE FROM customers WHERE customer_id = 9999", [])
        .unwrap();
    let retry = weir(WEIR, &m, &["dead-letters", "retry", "1"]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert!(
        retry
            .stdout
            .contains("dead letter #1 queued for shop/contacts"),
        "{retry:?}"
    );
    let again = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains(" 1 written, "), "{again:?}");
    let landed = format!("SELECT count(*) FROM customers WHERE mail = '{taken}'");
    assert_eq!(
        rows(&d.join("shop.db"), &landed),
        vec![vec![Some("1".to_string())]]
    );
    assert!(weir(WEIR, &m, &["dead-letters"]).stdout.is_empty());
    let missing = weir(WEIR, &m, &["dead-letters", "retry", "1"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("there is no dead letter #1"),
        "{missing:?}"
    );
}
