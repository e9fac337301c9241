//! `weir merge`: a person made twice (in two CRMs before `match_on`
//! existed) becomes one record in every system, with the values of both,
//! and `weir rollback` of the merge brings the two back.

use std::path::{Path, PathBuf};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// `a` and `b`, two SQLite CRMs synced both ways, `a` first in priority;
/// contacts matched on e-mail when `matched`.
fn two_crms(d: &Path, matched: bool) -> PathBuf {
    let mut lines = vec![r#"conflict = "priority""#, r#"priority = ["a", "b"]"#];
    if matched {
        lines.push(r#"match_on = ["email"]"#);
    }
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

/// Each system's (first name, last name, phone) rows of `email`.
fn copies(d: &Path, email: &str) -> Vec<Vec<Vec<Option<String>>>> {
    ["a.db", "b.db"]
        .iter()
        .map(|db| {
            rows(
                &d.join(db),
                &format!(
                    "SELECT first_name, last_name, phone FROM contacts WHERE email = '{email}' ORDER BY id"
                ),
            )
        })
        .collect()
}

#[test]
fn a_merge_leaves_one_copy_everywhere_and_a_rollback_brings_both_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    crm_db(&a, 3).unwrap();
    crm_db(&b, 0).unwrap();
    exec(
        &a,
        "INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('Grace', 'Hopper', 'grace@example.com', NULL)",
    );
    exec(
        &b,
        "INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('Grace', 'Hopper-Navy', 'grace@example.com', '+1 555 1906')",
    );
    // Without a match key the two Graces are two records, copied both ways.
    let m = two_crms(d, false);
    let run = weir(WEIR, &m, &["sync"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(copies(d, "grace@example.com").iter().all(|c| c.len() == 2));

    // With one, `weir duplicates` finds them after the next pass.
    let m = two_crms(d, true);
    assert_eq!(weir(WEIR, &m, &["sync"]).code, 0);
    let dup = weir(WEIR, &m, &["duplicates", "contacts"]);
    let line = dup
        .stdout
        .lines()
        .find(|l| l.contains("grace@example.com"))
        .unwrap_or_else(|| panic!("{dup:?}"));
    let ids: Vec<i64> = line
        .rsplit("golden records ")
        .next()
        .unwrap()
        .split(", ")
        .map(|i| i.parse().unwrap())
        .collect();
    let [first, second] = ids[..] else {
        panic!("{line}")
    };

    let bad = weir(
        WEIR,
        &m,
        &[
            "merge",
            "contacts",
            &first.to_string(),
            &second.to_string(),
            "--keep",
            "999",
        ],
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("--keep 999 is neither"), "{bad:?}");
    let bad = weir(
        WEIR,
        &m,
        &["merge", "contacts", &first.to_string(), "424242"],
    );
    assert!(
        bad.stderr.contains("there is no golden record 424242"),
        "{bad:?}"
    );

    // The merge: one Grace in each system, a's last name (a outranks b)
    // and b's phone (a had none).
    let merged = weir(
        WEIR,
        &m,
        &["merge", "contacts", &first.to_string(), &second.to_string()],
    );
    assert_eq!(merged.code, 0, "{merged:?}");
    assert!(merged.stdout.contains("2 deleted"), "{merged:?}");
    assert!(merged.stderr.contains("deleted in a, b"), "{merged:?}");
    let one = vec![vec![
        Some("Grace".into()),
        Some("Hopper".into()),
        Some("+1 555 1906".into()),
    ]];
    assert_eq!(copies(d, "grace@example.com"), vec![one.clone(), one]);
    assert_eq!(count(&a, "SELECT count(*) FROM contacts"), 4);
    assert_eq!(count(&b, "SELECT count(*) FROM contacts"), 4);
    let quiet = weir(WEIR, &m, &["sync"]);
    assert_eq!(summary(&quiet).written, 0, "{quiet:?}");
    let dup = weir(WEIR, &m, &["duplicates", "contacts"]);
    assert!(dup.stdout.starts_with("0 group(s)"), "{dup:?}");

    // Undone: the two records again, in both systems.
    let run_id: String = merged.stdout.split_whitespace().nth(1).unwrap().to_string();
    let undone = weir(WEIR, &m, &["rollback", &run_id]);
    assert_eq!(undone.code, 0, "{undone:?}");
    let copies = copies(d, "grace@example.com");
    assert!(copies.iter().all(|c| c.len() == 2), "{copies:?}");
    assert_eq!(count(&a, "SELECT count(*) FROM contacts"), 5);
    let audit = rows(
        &d.join("weir.db"),
        "SELECT operation FROM audit WHERE operation LIKE 'merge:%' ORDER BY id",
    );
    assert_eq!(
        audit,
        vec![
            vec![Some("merge:delete".into())],
            vec![Some("merge:update".into())]
        ]
    );
}

#[test]
fn a_system_holding_only_the_other_copy_keeps_it_as_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    crm_db(&a, 0).unwrap();
    crm_db(&b, 0).unwrap();
    exec(
        &a,
        "INSERT INTO contacts (first_name, last_name, email) VALUES ('Ada', 'Lovelace', 'ada@example.com')",
    );
    exec(
        &b,
        "INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('Ada', 'King', 'ada@example.com', '+44 1815')",
    );
    let m = two_crms(d, false);
    assert_eq!(weir(WEIR, &m, &["sync"]).code, 0);
    // b lost its copy of a's Ada (a person deleted it, and weir has not
    // read b since): b holds b's Ada alone.
    let store = d.join("weir.db");
    let a_ada = count(
        &store,
        "SELECT global_id FROM links WHERE system = 'a' AND local_id = '1'",
    );
    let b_ada = count(
        &store,
        "SELECT global_id FROM links WHERE system = 'b' AND local_id = '1'",
    );
    assert_ne!(a_ada, b_ada);
    let b_copy = count(
        &store,
        &format!("SELECT local_id FROM links WHERE system = 'b' AND global_id = {a_ada}"),
    );
    exec(&b, &format!("DELETE FROM contacts WHERE id = {b_copy}"));
    exec(
        &store,
        &format!("DELETE FROM links WHERE system = 'b' AND global_id = {a_ada}"),
    );

    let merged = weir(
        WEIR,
        &m,
        &["merge", "contacts", &a_ada.to_string(), &b_ada.to_string()],
    );
    assert_eq!(merged.code, 0, "{merged:?}");
    assert!(
        merged.stderr.contains("deleted in a; linked to"),
        "{merged:?}"
    );
    // b's own row is now the survivor's copy (its id kept), with a's last name.
    assert_eq!(
        rows(&b, "SELECT id, last_name, phone FROM contacts"),
        vec![vec![
            Some("1".into()),
            Some("Lovelace".into()),
            Some("+44 1815".into())
        ]]
    );
    assert_eq!(count(&a, "SELECT count(*) FROM contacts"), 1);
    assert_eq!(
        count(
            &store,
            "SELECT global_id FROM links WHERE system = 'b' AND local_id = '1'"
        ),
        a_ada
    );

    // Undone: b's row is b's Ada again, and each system holds both.
    let run_id = merged.stdout.split_whitespace().nth(1).unwrap().to_string();
    let undone = weir(WEIR, &m, &["rollback", &run_id]);
    assert_eq!(undone.code, 0, "{undone:?}");
    assert_eq!(
        count(
            &store,
            "SELECT global_id FROM links WHERE system = 'b' AND local_id = '1'"
        ),
        b_ada
    );
    assert_eq!(count(&a, "SELECT count(*) FROM contacts"), 2);
    assert_eq!(count(&b, "SELECT count(*) FROM contacts"), 2);
}
