//! Protections end to end: per-user change limits with changes held for
//! review, and the delete blast-radius guard.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn setup(d: &Path, entity_extra: &str) -> std::path::PathBuf {
    let crm = d.join("crm.db");
    exec(
        &crm,
        &format!(
            "CREATE TABLE contacts (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, updated_by TEXT,
                 updated_at TEXT NOT NULL DEFAULT ({STAMP})
             );
             {}",
            touch_trigger("contacts", "id")
        ),
    );
    for i in 1..=20 {
        exec(
            &crm,
            &format!(
                "INSERT INTO contacts (name, email) VALUES ('person {i}', 'p{i}@example.com')"
            ),
        );
    }
    exec(
        &d.join("shop.db"),
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT, email TEXT);",
    );
    let crm = System::sqlite("crm", "crm", "crm.db").entity(
        "contacts",
        &[
            r#"direction = "read""#,
            r#"ignore = ["updated_at", "updated_by"]"#,
            r#"settings = { updated_at = "updated_at", actor = "updated_by" }"#,
        ],
    );
    let shop =
        System::sqlite("shop", "shop", "shop.db").entity("contacts", &[r#"direction = "write""#]);
    write_manifest(
        d,
        &format!("{}{crm}{shop}", entity("contacts", "id", &[entity_extra])),
    )
}

#[test]
fn changes_beyond_a_users_limit_are_held_until_approved_or_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(
        d,
        "max_changes_per_user = { count = 3, window_secs = 3600 }",
    );
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        first.stdout.contains("run 1: 20 read, 20 written"),
        "rows without a user are not limited: {first:?}"
    );

    exec(
        &d.join("crm.db"),
        "UPDATE contacts SET email = 'mallory' || id || '@example.com', updated_by = 'mallory' WHERE id <= 5;
         UPDATE contacts SET name = 'renamed by alice', updated_by = 'alice' WHERE id = 10;",
    );
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.contains("run 2: 6 read, 4 written"),
        "3 of mallory's changes and alice's: {second:?}"
    );
    assert!(
        second
            .stderr
            .contains("2 change(s) held for review: see `weir held`"),
        "{second:?}"
    );
    assert_eq!(
        count(
            &d.join("shop.db"),
            "SELECT count(*) FROM contacts WHERE email LIKE 'mallory%'"
        ),
        3
    );

    let held = weir(WEIR, &m, &["held"]);
    let lines: Vec<&str> = held.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{held:?}");
    for line in &lines {
        assert!(line.contains("crm/contacts record ") && line.contains(" by mallory [held]: user 'mallory' already made 3 changes to contacts in the last 3600 s (max_changes_per_user = 3)"), "{line}");
    }
    let id_of = |line: &str| {
        line.split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches('#')
            .to_string()
    };
    let record_of = |line: &str| {
        line.split("record ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let (approve, reject) = (id_of(lines[0]), id_of(lines[1]));
    let (approved_record, rejected_record) = (record_of(lines[0]), record_of(lines[1]));
    assert!(weir(WEIR, &m, &["held", "approve", &approve])
        .stdout
        .contains("approved"));
    assert!(weir(WEIR, &m, &["held", "reject", &reject])
        .stdout
        .contains("rejected"));
    let missing = weir(WEIR, &m, &["held", "approve", "999"]);
    assert_eq!(missing.code, 1, "{missing:?}");

    let third = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        third.stdout.contains("run 3: 0 read, 1 written"),
        "only the approved change is applied: {third:?}"
    );
    let shop = d.join("shop.db");
    assert_eq!(
        text(
            &shop,
            &format!("SELECT email FROM contacts WHERE id = {approved_record}")
        ),
        format!("mallory{approved_record}@example.com")
    );
    assert_eq!(
        text(
            &shop,
            &format!("SELECT email FROM contacts WHERE id = {rejected_record}")
        ),
        format!("p{rejected_record}@example.com")
    );
    assert!(weir(WEIR, &m, &["held"]).stdout.is_empty());
    let audit = weir(WEIR, &m, &["audit", "--system", "crm"]);
    assert_eq!(audit.stdout.matches(" held\n").count(), 2, "{audit:?}");
    assert_eq!(audit.stdout.matches(" rejected\n").count(), 1, "{audit:?}");

    // A full read does not bring the rejected change back for review.
    let full = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert!(
        full.stdout.contains("run 4: 20 read, 0 written"),
        "{full:?}"
    );
    assert!(!full.stderr.contains("held for review"), "{full:?}");
}

#[test]
fn a_pass_deleting_too_much_of_an_entity_holds_its_deletes_and_asks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d, "max_delete_percent = 10");
    let crm = d.join("crm.db");
    let shop = d.join("shop.db");
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    assert_eq!(count(&shop, "SELECT count(*) FROM contacts"), 20);

    // 1 of 20 (5%) is within the limit.
    exec(&crm, "DELETE FROM contacts WHERE id = 1");
    let small = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert_eq!(small.code, 0, "{small:?}");
    assert!(small.stdout.contains(" 1 deleted, "), "{small:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM contacts"), 19);

    // 5 of 19 (26%) is not: nothing is deleted, the run says why and how to go on.
    exec(&crm, "DELETE FROM contacts WHERE id BETWEEN 2 AND 6");
    let big = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert_eq!(big.code, 1, "{big:?}");
    assert!(big.stdout.contains(" 0 deleted, "), "{big:?}");
    assert!(big.stderr.contains("system 'shop': 5 deletes of 19 contacts (26.3%) held back: over max_delete_percent = 10"), "{big:?}");
    assert!(big.stderr.contains("weir sync --allow-deletes"), "{big:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM contacts"), 19);
    assert!(weir(WEIR, &m, &["status"])
        .stdout
        .contains("outbox: 5 pending"));

    let allowed = weir(WEIR, &m, &["sync", "--quiet", "--allow-deletes"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert!(allowed.stdout.contains(" 5 deleted, "), "{allowed:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM contacts"), 14);
}

#[test]
fn a_batch_system_receives_compressed_changes_in_its_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A two-hour window that starts in two hours: never now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minute = |offset: u64| {
        let m = ((now / 60) + offset) % (24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let window = format!("{}-{}", minute(120), minute(240));
    let m = setup(d, "");
    let mut manifest = std::fs::read_to_string(&m).unwrap();
    let files = System::csv("files", "out", "csv").entity(
        "contacts",
        &[
            r#"direction = "write""#,
            &format!("deliver_between = \"{window}\""),
        ],
    );
    std::fs::create_dir_all(d.join("csv")).unwrap();
    manifest.push_str(&files.to_string());
    std::fs::write(&m, manifest).unwrap();

    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(
        first.stdout.contains("run 1: 20 read, 20 written"),
        "the shop is real time: {first:?}"
    );
    assert!(
        !d.join("csv/contacts.csv").exists(),
        "the batch system waits for its window"
    );
    assert!(weir(WEIR, &m, &["status"])
        .stdout
        .contains("outbox: 20 pending"));

    // Two more changes of one record while waiting: still one pending write for it.
    let crm = d.join("crm.db");
    exec(
        &crm,
        "UPDATE contacts SET email = 'first@example.com' WHERE id = 1",
    );
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    exec(
        &crm,
        "UPDATE contacts SET email = 'second@example.com' WHERE id = 1",
    );
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    assert!(weir(WEIR, &m, &["status"])
        .stdout
        .contains("outbox: 20 pending"));

    // The window (forced here with --now): each record written once, with its latest content.
    let batch = weir(WEIR, &m, &["sync", "--quiet", "--now"]);
    assert!(batch.stdout.contains(" 20 written, "), "{batch:?}");
    let csv = csv_rows(&d.join("csv/contacts.csv"));
    assert_eq!(csv.len(), 21);
    assert!(csv
        .iter()
        .any(|r| r.contains(&"second@example.com".to_string())));
    assert!(!csv
        .iter()
        .any(|r| r.contains(&"first@example.com".to_string())));
    let audit = weir(WEIR, &m, &["audit", "--system", "files"]);
    assert_eq!(
        audit
            .stdout
            .lines()
            .filter(|l| l.ends_with("write:create ok"))
            .count(),
        20,
        "{audit:?}"
    );
}
