//! Operating weir: audit retention and export, `weir runs`, the master-data
//! view of one record, and online backup and restore of the central store.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn manifest(dir: &Path, store: &str) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            "{store}\n{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system(),
        ),
    )
}

fn rename(db: &Path, id: i64, name: &str) {
    exec(
        db,
        &format!("UPDATE contacts SET first_name = '{name}', updated_at = {STAMP} WHERE id = {id}"),
    );
}

#[test]
fn retention_removes_only_audit_rows_older_than_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 4).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = manifest(d, "[store]\naudit_retention_days = 30");
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    let store = d.join("weir.db");
    let rows_before = count(&store, "SELECT count(*) FROM audit");
    assert_eq!(rows_before, 8, "4 reads and 4 writes");

    // Age the first rows: two beyond the window, one just inside it.
    let day = |n: i64| format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{n} days')");
    exec(
        &store,
        &format!(
            "UPDATE audit SET at = {} WHERE id IN (1, 2);
             UPDATE audit SET at = {} WHERE id = 3;",
            day(40),
            day(29)
        ),
    );

    // The next pass applies retention: rows 1 and 2 go, row 3 and the recent ones stay.
    rename(&d.join("crm.db"), 4, "Quentin");
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    let mut ids: Vec<i64> = rows(&store, "SELECT id FROM audit")
        .into_iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [3, 4, 5, 6, 7, 8, 9, 10]);

    // Retention 0 keeps everything.
    let keep = manifest(d, "[store]\naudit_retention_days = 0");
    exec(
        &store,
        &format!("UPDATE audit SET at = {} WHERE id = 3", day(400)),
    );
    assert_eq!(weir(WEIR, &keep, &["sync", "--quiet"]).code, 0);
    assert_eq!(count(&store, "SELECT count(*) FROM audit WHERE id = 3"), 1);
}

#[test]
fn audit_export_runs_records_backup_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 3).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = manifest(d, "");
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);

    // The audit log as JSON lines: every row, the record images as JSON.
    let export = d.join("audit.jsonl");
    let out = weir(
        WEIR,
        &m,
        &["audit", "export", "--output", export.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("6 audit row(s) exported"), "{out:?}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["system"], "crm");
    assert_eq!(lines[0]["operation"], "read:create");
    assert!(lines[0]["after"]["email"].is_string(), "{}", lines[0]);
    let shop_only = weir(WEIR, &m, &["audit", "export", "--system", "shop"]);
    assert_eq!(shop_only.stdout.lines().count(), 3, "{shop_only:?}");
    assert!(shop_only
        .stdout
        .lines()
        .all(|l| l.contains(r#""system":"shop""#)));

    // The master-data view of contact 1: golden record, ids everywhere, history.
    let record = weir(WEIR, &m, &["records", "contacts", "1"]);
    assert_eq!(record.code, 0, "{record:?}");
    let crm_email = text(&d.join("crm.db"), "SELECT email FROM contacts WHERE id = 1");
    assert!(record.stdout.contains(&crm_email), "{record:?}");
    assert!(record.stdout.contains("  crm: 1 (since "), "{record:?}");
    assert!(record.stdout.contains("  shop: "), "{record:?}");
    assert!(record.stdout.contains(" crm read:create ok"), "{record:?}");
    assert!(
        record.stdout.contains(" shop write:create ok"),
        "{record:?}"
    );
    let by_local = weir(WEIR, &m, &["records", "contacts", "1", "--system", "crm"]);
    assert_eq!(by_local.stdout, record.stdout);
    let missing = weir(WEIR, &m, &["records", "contacts", "99", "--system", "crm"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no contacts '99' in system 'crm'"),
        "{missing:?}"
    );

    // Backup, more work, restore: the store is back as it was.
    let backup = d.join("backup.db");
    let b = weir(WEIR, &m, &["backup", backup.to_str().unwrap()]);
    assert_eq!(b.code, 0, "{b:?}");
    let again = weir(WEIR, &m, &["backup", backup.to_str().unwrap()]);
    assert_eq!(again.code, 2, "a backup never overwrites: {again:?}");
    assert!(again.stderr.contains("exists already"), "{again:?}");
    rename(&d.join("crm.db"), 2, "Zelda");
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    let runs = weir(WEIR, &m, &["runs"]);
    assert_eq!(runs.stdout.lines().count(), 2, "{runs:?}");
    assert!(runs.stdout.starts_with("run 2 "), "{runs:?}");
    assert!(runs.stdout.contains("1 read, 1 written"), "{runs:?}");
    let store = d.join("weir.db");
    assert_eq!(count(&store, "SELECT count(*) FROM audit"), 8);
    assert!(text(&store, "SELECT data FROM golden WHERE global_id = 2").contains("Zelda"));

    let bad = d.join("not-a-backup.db");
    std::fs::write(&bad, "hello").unwrap();
    let refused = weir(WEIR, &m, &["restore", bad.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("not-a-backup.db"), "{refused:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM audit"), 8, "untouched");

    let r = weir(WEIR, &m, &["restore", backup.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM audit"), 6);
    assert_eq!(count(&store, "SELECT count(*) FROM runs"), 1);
    assert!(!text(&store, "SELECT data FROM golden WHERE global_id = 2").contains("Zelda"));
    // The restored store works: the next pass takes Zelda again.
    let next = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert!(text(&store, "SELECT data FROM golden WHERE global_id = 2").contains("Zelda"));
}

fn people(db: &Path, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = rows(db, sql)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn rollback_restores_every_system_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let crm = d.join("crm.db");
    let shop = d.join("shop.db");
    crm_db(&crm, 3).unwrap();
    shop_db(&shop).unwrap();
    // The CRM takes writes too: a rollback can put its records back.
    let m = manifest(d, "").to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("direction = \"read\"\n", "direction = \"both\"\n");
    std::fs::write(&m, text).unwrap();
    let m = std::path::PathBuf::from(m);
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    let crm_people = || people(&crm, "SELECT first_name, last_name, email FROM contacts");
    let shop_people = || people(&shop, "SELECT fname, lname, mail FROM customers");
    let (crm_before, shop_before) = (crm_people(), shop_people());
    assert_eq!(crm_before, shop_before);
    assert_eq!(crm_before.len(), 3);

    // Run 2 updates contact 1, deletes contact 2 and creates a fourth.
    exec(
        &crm,
        "UPDATE contacts SET first_name = 'Changed' WHERE id = 1;
         DELETE FROM contacts WHERE id = 2;
         INSERT INTO contacts (first_name, last_name, email) VALUES ('New', 'Person', 'new@example.com');",
    );
    let second = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stdout.starts_with("run 2:"), "{second:?}");
    assert_ne!(shop_people(), shop_before);
    assert_eq!(shop_people(), crm_people());

    // Rolling back run 1 is refused: run 2 changed its records since.
    let refused = weir(WEIR, &m, &["rollback", "1"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("records of run 1 changed again since (run 2)"),
        "{refused:?}"
    );
    let none = weir(WEIR, &m, &["rollback", "99"]);
    assert!(none.stderr.contains("there is no run 99"), "{none:?}");

    // Rolling back run 2 puts both systems back as they were after run 1.
    let undo = weir(WEIR, &m, &["rollback", "2"]);
    assert_eq!(undo.code, 0, "{undo:?}");
    assert!(
        undo.stdout
            .starts_with("run 3 (rollback of run 2): 3 record(s) put back"),
        "{undo:?}"
    );
    assert_eq!(crm_people(), crm_before);
    assert_eq!(shop_people(), shop_before);

    // The rollback is audited as run 3, and the next pass finds nothing to do.
    let audit = weir(WEIR, &m, &["audit"]);
    for op in ["rollback:update", "rollback:restore", "rollback:delete"] {
        assert!(
            audit
                .stdout
                .lines()
                .any(|l| l.contains(" run 3 ") && l.contains(op)),
            "{op}: {audit:?}"
        );
    }
    let after = weir(WEIR, &m, &["sync", "--full", "--quiet"]);
    assert_eq!(after.code, 0, "{after:?}");
    assert!(after.stdout.contains(" 0 written, 0 deleted"), "{after:?}");
    assert_eq!(crm_people(), crm_before);
    assert_eq!(shop_people(), shop_before);
}
