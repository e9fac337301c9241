//! A full sync of real SQLite databases and a CSV folder through the wasm connectors.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn manifest(dir: &Path) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system(),
            csv_target(dir, "contacts", "export", "csv"),
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
    let csv = d.join("csv").join("contacts.csv");
    let exported = csv_columns(&csv, &["first_name", "last_name", "email", "phone"]);
    assert_eq!(source, exported);
    let mut ids = csv_columns(&csv, &["id"]);
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

    // Read in full again, every contact is unchanged: nothing is written.
    let full = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert!(
        full.stdout.contains(
            "run 3: 10000 read, 0 written, 0 deleted, 10000 unchanged, 0 echoes, 0 conflicts, 0 failed"
        ),
        "{full:?}"
    );

    // A changed contact is the only change the next run reads, and its only
    // write, to both targets.
    exec(
        &d.join("crm.db"),
        "UPDATE contacts SET email = 'changed@example.com' WHERE id = 5000",
    );
    let third = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        third.stdout.contains(
            "run 4: 1 read, 2 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 0 failed"
        ),
        "{third:?}"
    );
    assert_eq!(
        count(
            &d.join("shop.db"),
            "SELECT count(*) FROM customers WHERE mail = 'changed@example.com'"
        ),
        1
    );
    assert_eq!(
        count(&d.join("shop.db"), "SELECT count(*) FROM customers"),
        10_000
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
    let taken = text(
        &d.join("crm.db"),
        "SELECT email FROM contacts WHERE id = 10",
    );
    exec(
        &d.join("shop.db"),
        &format!("INSERT INTO customers (customer_id, fname, lname, mail) VALUES (9999, 'X', 'Y', '{taken}')"),
    );
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
        count(&d.join("shop.db"), "SELECT count(*) FROM customers"),
        50
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
    exec(
        &d.join("shop.db"),
        "DELETE FROM customers WHERE customer_id = 9999",
    );
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
    assert_eq!(count(&d.join("shop.db"), &landed), 1);
    assert!(weir(WEIR, &m, &["dead-letters"]).stdout.is_empty());
    let missing = weir(WEIR, &m, &["dead-letters", "retry", "1"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("there is no dead letter #1"),
        "{missing:?}"
    );
}

#[test]
fn a_csv_file_with_an_updated_at_column_is_read_by_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = csv_into_sqlite(
        d,
        "id,name,updated_at\n\
         1,Ada,2024-03-01T00:00:00Z\n\
         2,Bo,2024-01-01T00:00:00Z\n\
         3,Cy,2024-02-01T00:00:00Z\n",
        "id TEXT PRIMARY KEY, name TEXT, updated_at TEXT",
        r#"{ updated_at = "updated_at" }"#,
    );
    let file = d.join("csv").join("people.csv");
    let names = || {
        rows(
            &d.join("people.db"),
            "SELECT id, name FROM people ORDER BY id",
        )
    };
    let pair = |id: &str, name: &str| vec![Some(id.to_string()), Some(name.to_string())];

    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        first.stdout.contains("run 1: 3 read, 3 written, 0 deleted"),
        "{first:?}"
    );

    // Bo changes with a later time, Di is new; Cy changes without a new time
    // and Ada (the latest time so far) is removed from the file.
    std::fs::write(
        &file,
        "id,name,updated_at\n\
         2,Bob,2024-06-01T00:00:00Z\n\
         3,Cyd,2024-02-01T00:00:00Z\n\
         4,Di,2024-06-02T00:00:00Z\n",
    )
    .unwrap();
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        second
            .stdout
            .contains("run 2: 2 read, 2 written, 0 deleted, 0 unchanged"),
        "only the rows updated since the first read are read: {second:?}"
    );
    assert_eq!(
        names(),
        [
            pair("1", "Ada"),
            pair("2", "Bob"),
            pair("3", "Cy"),
            pair("4", "Di")
        ]
    );

    // The next incremental read finds nothing new: the rows at the last time
    // seen are read again and are unchanged.
    let third = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        third.stdout.contains("run 3: 1 read, 0 written, 0 deleted"),
        "{third:?}"
    );

    // A full read finds what the change feed cannot: a change without a new
    // time, and a removed row.
    let full = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert!(
        full.stdout.contains("run 4: 3 read, 1 written, 1 deleted"),
        "{full:?}"
    );
    assert_eq!(
        names(),
        [pair("2", "Bob"), pair("3", "Cyd"), pair("4", "Di")]
    );

    // A setting that names no column is refused by `weir check`, naming it.
    let broken = std::fs::read_to_string(&m)
        .unwrap()
        .replace(r#"updated_at = "updated_at""#, r#"updated_at = "changed""#);
    std::fs::write(&m, broken).unwrap();
    let check = weir(WEIR, &m, &["check"]);
    assert_ne!(check.code, 0, "{check:?}");
    assert!(
        check.stderr.contains("no column 'changed'")
            || check.stdout.contains("no column 'changed'"),
        "{check:?}"
    );
}

#[test]
fn targets_are_written_at_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    let table = "CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT)";
    for db in ["a.db", "b.db"] {
        exec(&d.join(db), table);
    }
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &["shared_key = true"]),
            crm_system("read"),
            contacts_target("a"),
            contacts_target("b"),
        ),
    );

    // The test holds the write lock of target a: a's write waits for it (the
    // host's SQLite busy timeout is 5 s). Delivered one target after the
    // other, b would be written only after a's write gave up; delivered at
    // the same time, b is written while a waits, and a's write then goes
    // through once the lock is let go.
    let a = rusqlite::Connection::open(d.join("a.db")).unwrap();
    a.execute_batch("BEGIN IMMEDIATE").unwrap();
    let child = weir_command(WEIR, &m, &["sync", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running weir");
    let b = rusqlite::Connection::open(d.join("b.db")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let b_written = loop {
        let n: i64 = b
            .query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))
            .unwrap_or(0);
        if n == 20 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    a.execute_batch("COMMIT").unwrap();
    let run = Run::of(child.wait_with_output().unwrap());
    assert_eq!(b_written, 20, "b is written while a waits: {run:?}");
    assert_eq!(run.code, 0, "a's write waited for the lock: {run:?}");
    assert!(
        run.stdout.contains("20 read, 40 written, 0 deleted"),
        "{run:?}"
    );
    assert_eq!(count(&d.join("a.db"), "SELECT count(*) FROM contacts"), 20);
}

/// A CSV source (`csv/people.csv`, holding `csv`) read into the SQLite
/// table `people` (`columns`) of `people.db`, which takes writes only, under
/// shared keys; `settings` are the file's entity settings. Returns the manifest.
fn csv_into_sqlite(d: &Path, csv: &str, columns: &str, settings: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(d.join("csv")).unwrap();
    std::fs::write(d.join("csv").join("people.csv"), csv).unwrap();
    exec(
        &d.join("people.db"),
        &format!("CREATE TABLE people ({columns})"),
    );
    let files = System::csv("files", "import", "csv").entity(
        "people",
        &[r#"direction = "read""#, &format!("settings = {settings}")],
    );
    let db = System::sqlite("db", "db", "people.db").entity(
        "people",
        &[
            r#"direction = "write""#,
            r#"settings = { table = "people" }"#,
        ],
    );
    write_manifest(
        d,
        &format!(
            "{}{files}{db}",
            entity("people", "id", &["shared_key = true"])
        ),
    )
}

/// [`csv_into_sqlite`] with `csv`, a `people (id, name)` table and no settings.
fn paged_csv(d: &Path, csv: &str) -> std::path::PathBuf {
    csv_into_sqlite(d, csv, "id TEXT PRIMARY KEY, name TEXT", "{}")
}

#[test]
fn pages_are_delivered_while_the_next_pages_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = paged_csv(d, "id,name\n1,Ada\n2,Bo\n3,Cy\n4,Di\n");
    let run = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "1"]);
    assert!(
        run.stdout.contains("run 1: 4 read, 4 written, 0 deleted"),
        "{run:?}"
    );
    // The audit log's order is the order of events: the first record was
    // written before the last one was read.
    let first_write = count(
        &d.join("weir.db"),
        "SELECT min(id) FROM audit WHERE operation LIKE 'write:%'",
    );
    let last_read = count(
        &d.join("weir.db"),
        "SELECT max(id) FROM audit WHERE operation LIKE 'read:%'",
    );
    assert!(first_write < last_read, "{first_write} < {last_read}");
    assert_eq!(
        count(&d.join("people.db"), "SELECT count(*) FROM people"),
        4
    );
}

#[test]
fn a_record_changed_while_its_write_is_on_the_way_is_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The source reports record 1 twice in one pass, changed in between (as
    // a change feed does when the record changes while it is read): the
    // first version is being written when the second is accepted.
    let m = paged_csv(d, "id,name\n1,Ada\n1,Ada Lovelace\n");
    let run = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "1"]);
    assert!(run.stdout.contains("run 1: 2 read, 2 written"), "{run:?}");
    assert_eq!(
        rows(&d.join("people.db"), "SELECT id, name FROM people"),
        [[Some("1".to_string()), Some("Ada Lovelace".to_string())]]
    );
    assert_eq!(count(&d.join("weir.db"), "SELECT count(*) FROM outbox"), 0);
}
