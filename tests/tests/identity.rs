//! One record, one copy: systems that hold the same people before weir
//! arrives are matched by the entity's match key instead of copied into
//! each other; a record matching several is held for a person; a target
//! weir only writes is asked before a record is created in it.

use std::path::{Path, PathBuf};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The summary line of a sync's output.
fn run_line(run: &Run) -> Summary {
    run.stdout
        .lines()
        .find_map(parse_summary)
        .unwrap_or_else(|| panic!("no summary line: {run:?}"))
}

/// Systems `a` and `b`, two SQLite CRMs (`a.db`, `b.db`, tables that assign
/// their own ids) synced both ways, contacts matched on e-mail.
fn two_crms(d: &Path, entity_lines: &[&str]) -> PathBuf {
    let mut lines = vec![r#"match_on = ["email"]"#];
    lines.extend_from_slice(entity_lines);
    write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &lines),
            System::sqlite("a", "a", "a.db").tracked("contacts", "contacts", "both", &[]),
            System::sqlite("b", "b", "b.db").tracked("contacts", "contacts", "both", &[]),
        ),
    )
}

/// `a.db`: 10,000 generated contacts and three pairs of twins (two
/// records each with one address). `b.db`: 6,000 of `a`'s people (every
/// third address in upper case, every sixth with another last name), 4,000
/// of its own, and one record for each pair of twins.
fn overlapping(d: &Path) {
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    crm_db(&a, 10_000).unwrap();
    crm_db(&b, 0).unwrap();
    exec(
        &a,
        "INSERT INTO contacts (first_name, last_name, email) VALUES
            ('Tom', 'Twin', 'twin0@example.com'), ('Tim', 'Twin', 'twin0@example.com'),
            ('Tom', 'Twin', 'twin1@example.com'), ('Tim', 'Twin', 'twin1@example.com'),
            ('Tom', 'Twin', 'twin2@example.com'), ('Tim', 'Twin', 'twin2@example.com');",
    );
    exec(
        &b,
        &format!(
            "ATTACH '{}' AS a;
             INSERT INTO contacts (first_name, last_name, email, phone)
                SELECT first_name,
                       CASE WHEN id % 6 = 1 THEN last_name || '-Smith' ELSE last_name END,
                       CASE WHEN id % 3 = 0 THEN upper(email) ELSE email END,
                       phone
                FROM a.contacts WHERE id <= 6000 ORDER BY id;
             INSERT INTO contacts (first_name, last_name, email)
                SELECT first_name, last_name, 'own' || id || '@example.org'
                FROM a.contacts WHERE id <= 4000 ORDER BY id;
             INSERT INTO contacts (first_name, last_name, email) VALUES
                ('T', 'Twin', 'TWIN0@example.com'), ('T', 'Twin', 'Twin1@Example.com '),
                ('T', 'Twin', 'twin2@example.com');
             DETACH a;",
            a.display()
        ),
    );
}

/// Rows and distinct addresses (without case or surrounding space).
fn people(db: &Path) -> (i64, i64) {
    (
        count(db, "SELECT count(*) FROM contacts"),
        count(
            db,
            "SELECT count(DISTINCT lower(trim(email))) FROM contacts",
        ),
    )
}

#[test]
fn systems_that_share_people_are_matched_by_email_not_copied_into_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    overlapping(d);
    let m = two_crms(d, &[]);

    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    // a is read first: every one of its records is new. Of b's, 6,000 are
    // a's people (3,000 of them differ, in the case of the address or the
    // last name: a conflict each), 4,000 are new, and the 3 that match a
    // pair of twins are held.
    assert!(
        first
            .stdout
            .contains("contacts in b: 6000 matched, 4000 created, 3 ambiguous"),
        "{first:?}"
    );
    assert!(
        first
            .stderr
            .contains("3 record(s) held as ambiguous matches"),
        "{first:?}"
    );
    assert_eq!(run_line(&first).conflicts, 3000, "{first:?}");

    // 14,003 people: a's 10,003 addresses and b's 4,000 own ones, each once
    // in each system. b's records held as ambiguous reach nobody, and a's
    // twins do not reach b while one of b's records may be one of them.
    assert_eq!(people(&d.join("a.db")), (14_006, 14_003));
    assert_eq!(people(&d.join("b.db")), (14_003, 14_003));
    // The conflicts were settled by the policy (the last writer, b, wins)
    // and reached a.
    assert_eq!(
        count(
            &d.join("a.db"),
            "SELECT count(*) FROM contacts WHERE last_name LIKE '%-Smith'"
        ),
        1000
    );

    let held = weir(WEIR, &m, &["matches"]);
    assert_eq!(held.code, 0, "{held:?}");
    let lines: Vec<&str> = held.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{held:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("read from b matches golden records")),
        "{held:?}"
    );

    // Converged: a second pass writes nothing.
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    let s = run_line(&second);
    assert_eq!((s.written, s.conflicts, s.failed), (0, 0, 0), "{second:?}");
}

#[test]
fn a_held_match_is_taken_as_the_person_decides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    overlapping(d);
    let m = two_crms(d, &[]);
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    let held = weir(WEIR, &m, &["matches"]);
    let ids: Vec<(i64, String)> = held
        .stdout
        .lines()
        .map(|l| {
            let id = l[1..l.find(' ').unwrap()].parse().unwrap();
            let candidates = l.split("golden records ").nth(1).unwrap();
            let first = candidates.split([',', ' ']).next().unwrap().to_string();
            (id, first)
        })
        .collect();
    assert_eq!(ids.len(), 3, "{held:?}");

    // The first is one of its candidates; the second a person of its own.
    let wrong = weir(
        WEIR,
        &m,
        &["matches", "link", &ids[0].0.to_string(), "999999"],
    );
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("is not a candidate"), "{wrong:?}");
    let link = weir(
        WEIR,
        &m,
        &["matches", "link", &ids[0].0.to_string(), &ids[0].1],
    );
    assert_eq!(link.code, 0, "{link:?}");
    let new = weir(WEIR, &m, &["matches", "new", &ids[1].0.to_string()]);
    assert_eq!(new.code, 0, "{new:?}");

    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 0, "{second:?}");
    // Linked: b's record is that golden record's copy, and the other twin
    // reaches b; new: a record of its own, created in a, and both twins
    // reach b. The third match still holds its twins back.
    assert_eq!(
        count(&d.join("a.db"), "SELECT count(*) FROM contacts"),
        14_007
    );
    assert_eq!(
        count(&d.join("b.db"), "SELECT count(*) FROM contacts"),
        14_006
    );
    let left = weir(WEIR, &m, &["matches"]);
    assert_eq!(left.stdout.lines().count(), 1, "{left:?}");
}

#[test]
fn duplicates_lists_golden_records_that_share_a_match_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("a.db"), 20).unwrap();
    crm_db(&d.join("b.db"), 0).unwrap();
    exec(
        &d.join("a.db"),
        "INSERT INTO contacts (first_name, last_name, email) VALUES
            ('Ann', 'Lee', 'ann@example.com'), ('Anne', 'Lee', ' ANN@example.com');",
    );
    let m = two_crms(d, &[]);
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    let dups = weir(WEIR, &m, &["duplicates", "contacts"]);
    assert_eq!(dups.code, 0, "{dups:?}");
    assert!(
        dups.stdout
            .contains("[\"ann@example.com\"]: golden records 21, 22"),
        "{dups:?}"
    );
    assert!(dups.stdout.contains("1 group(s)"), "{dups:?}");

    // Keys of records made before `match_on` existed are made by the
    // first pass under it.
    let plain = write_manifest(
        d,
        &format!(
            "{}{}",
            entity("contacts", "id", &[]),
            System::sqlite("a", "a", "a.db").tracked("contacts", "contacts", "read", &[]),
        ),
    );
    std::fs::remove_file(d.join("weir.db")).unwrap();
    let again = weir(WEIR, &plain, &["sync", "--quiet"]);
    assert_eq!(again.code, 0, "{again:?}");
    let m = two_crms(d, &[]);
    let stale = weir(WEIR, &m, &["duplicates", "contacts"]);
    assert!(stale.stderr.contains("next `weir sync`"), "{stale:?}");
    let keyed = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(keyed.code, 0, "{keyed:?}");
    let found = weir(WEIR, &m, &["duplicates", "contacts"]);
    assert!(found.stdout.contains("1 group(s)"), "{found:?}");
}

#[test]
fn a_dry_run_shows_the_matches_it_would_make() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    overlapping(d);
    let m = two_crms(d, &[]);
    let dry = weir(WEIR, &m, &["sync", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout
            .contains("contacts in b: 6000 matched, 4000 created, 3 ambiguous"),
        "{dry:?}"
    );
    assert_eq!(
        count(&d.join("a.db"), "SELECT count(*) FROM contacts"),
        10_006
    );
}

/// The CRM (`n` contacts) read into the shop (written only) and into `b`,
/// an SQLite CRM synced both ways; both assign their own ids.
fn crm_to_targets(d: &Path, n: usize, entity_lines: &[&str]) -> PathBuf {
    crm_db(&d.join("crm.db"), n).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    crm_db(&d.join("b.db"), 0).unwrap();
    write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", entity_lines),
            crm_system("read"),
            shop_system(),
            System::sqlite("b", "b", "b.db").tracked("contacts", "contacts", "both", &[]),
        ),
    )
}

#[test]
fn a_write_only_target_that_holds_some_records_has_them_linked_not_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = crm_to_targets(d, 500, &[r#"match_on = ["email"]"#]);
    // The shop knows 100 of the CRM's people already, under ids of its own
    // and with the address in capitals (its column is unique).
    exec(
        &d.join("shop.db"),
        &format!(
            "ATTACH '{}' AS crm;
             INSERT INTO customers (customer_id, fname, lname, mail)
                SELECT id + 9000, first_name, last_name, upper(email) FROM crm.contacts WHERE id % 5 = 0;
             DETACH crm;",
            d.join("crm.db").display()
        ),
    );
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stdout
            .contains("contacts in shop: 100 found there and linked, 0 ambiguous"),
        "{first:?}"
    );
    let shop = d.join("shop.db");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 500);
    // The records found were updated in place to the golden values.
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE customer_id <= 9500 AND mail = lower(mail)"
        ),
        100
    );
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run_line(&second).written, 0, "{second:?}");
}

#[test]
fn creates_cut_off_by_a_crash_before_they_are_recorded_are_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No match key: the targets are asked by every field written (the
    // shop), or recognise their own creates when they are read back (b).
    let m = crm_to_targets(d, 500, &[]);
    for kill in ["1", "7"] {
        let killed = weir_env(
            WEIR,
            &m,
            &["sync", "--quiet", "--batch-size", "100"],
            &[("WEIR_FAULT_KILL_BEFORE_RECORDING", kill)],
        );
        assert_eq!(
            killed.code, -1,
            "killed before recording write {kill}: {killed:?}"
        );
    }
    let last = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "100"]);
    assert_eq!(last.code, 0, "{last:?}");
    for (db, table, mail) in [
        ("shop.db", "customers", "mail"),
        ("b.db", "contacts", "email"),
    ] {
        let db = d.join(db);
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {table}")),
            500,
            "{}",
            db.display()
        );
        assert_eq!(
            count(&db, &format!("SELECT count(DISTINCT {mail}) FROM {table}")),
            500,
            "{}",
            db.display()
        );
    }
    let again = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(run_line(&again).written, 0, "{again:?}");
}

#[test]
fn creates_left_unsettled_by_a_crash_are_settled_before_anything_new_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_to_targets(d, 500, &[]);
    // b, which weir reads too and which assigns its own ids, keeps weir's
    // key of each record weir creates there.
    exec(
        &d.join("b.db"),
        "ALTER TABLE contacts ADD COLUMN weir_key TEXT",
    );
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system(),
            System::sqlite("b", "b", "b.db").tracked(
                "contacts",
                "contacts",
                "both",
                &[r#"key_field = "weir_key""#]
            ),
        ),
    );
    // Killed after the first write to b lands, before it is recorded.
    let killed = weir_env(
        WEIR,
        &m,
        &["sync", "--quiet", "--batch-size", "100"],
        &[("WEIR_FAULT_KILL_BEFORE_RECORDING", "6")],
    );
    assert_eq!(killed.code, -1, "{killed:?}");
    let store = d.join("weir.db");
    // What the crash left: creates sent (in a span, or an outbox row) and
    // not recorded.
    let unsettled = count(&store, "SELECT count(*) FROM outbox_spans")
        + count(
            &store,
            "SELECT count(*) FROM outbox WHERE tried_hash IS NOT NULL",
        );
    assert!(unsettled > 0, "the crash left no create unsettled");
    // Someone edits the records the crash left unrecorded in b (which weir
    // also reads): settling their creates must not write over the edits.
    let b = d.join("b.db");
    exec(&b, "UPDATE contacts SET phone = 'edited-in-b'");
    let edited = count(
        &b,
        "SELECT count(*) FROM contacts WHERE phone = 'edited-in-b'",
    );
    assert_eq!(edited, 100, "the first write to b landed");
    // The CRM is read further after the crash, yet the pass settles the
    // creates first: its first audit rows are their writes.
    let last = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "100"]);
    assert_eq!(last.code, 0, "{last:?}");
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM contacts WHERE phone = 'edited-in-b'"
        ),
        edited,
        "an edit made in b after the crash was written over"
    );
    assert_eq!(
        count(
            &d.join("shop.db"),
            "SELECT count(*) FROM customers WHERE phone = 'edited-in-b'"
        ),
        edited,
        "the edits made in b reach the shop"
    );
    assert_eq!(
        count(&b, "SELECT count(*) FROM contacts"),
        500,
        "one copy in b"
    );
    assert_eq!(
        count(
            &b,
            "SELECT count(*) FROM contacts WHERE weir_key IS NOT NULL"
        ),
        500,
        "every record weir created in b keeps weir's key"
    );
    let run = count(&store, "SELECT max(id) FROM runs");
    let first: Vec<Vec<Option<String>>> = rows(
        &store,
        &format!("SELECT operation FROM audit WHERE run_id = {run} ORDER BY id LIMIT 1"),
    );
    assert!(
        first
            .iter()
            .all(|r| r[0].as_deref().is_some_and(|o| o.starts_with("write:"))),
        "{first:?}"
    );
    assert!(
        count(
            &store,
            &format!("SELECT count(*) FROM audit WHERE run_id = {run} AND operation LIKE 'read:%'")
        ) > 0,
        "the pass read nothing new"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM outbox WHERE tried_hash IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        count(
            &d.join("shop.db"),
            "SELECT count(DISTINCT mail) FROM customers"
        ),
        500
    );
    assert_eq!(
        count(&d.join("shop.db"), "SELECT count(*) FROM customers"),
        500
    );
}
