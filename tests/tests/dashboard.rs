//! The dashboard in a real browser (headless Chromium driven by
//! playwright-core): it shows a conflict made by real concurrent edits with
//! both values, and deciding it there updates both systems.

use std::path::Path;
use std::process::Command;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn first_name(db: &Path, email: &str) -> String {
    text(
        db,
        &format!("SELECT first_name FROM contacts WHERE email = '{email}'"),
    )
}

#[test]
fn a_conflict_is_shown_and_decided_in_the_browser() {
    let Some(playwright) = std::env::var_os("WEIR_PLAYWRIGHT_CORE") else {
        eprintln!("skipped: WEIR_PLAYWRIGHT_CORE not set (tests/run.sh installs playwright-core)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (crm, branch) = (d.join("crm.db"), d.join("branch.db"));
    crm_db(&crm, 3).unwrap();
    crm_db(&branch, 0).unwrap();
    let system = |name: &str| {
        System::sqlite(name, name, &format!("{name}.db"))
            .line(r#"poll_every = "1h""#)
            .tracked("contacts", "contacts", "both", &[])
    };
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity(
                "contacts",
                "id",
                &[
                    r#"conflict = "priority""#,
                    r#"priority = ["crm", "branch"]"#
                ]
            ),
            system("crm"),
            system("branch")
        ),
    );
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);

    // The same contact edited in both systems: the CRM wins by priority.
    let email = text(&crm, "SELECT email FROM contacts WHERE id = 1");
    let edit = |db: &Path, name: &str| {
        exec(
            db,
            &format!("UPDATE contacts SET first_name = '{name}' WHERE email = '{email}'"),
        );
    };
    edit(&crm, "CrmName");
    edit(&branch, "BranchName");
    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(second.stdout.contains(" 1 conflicts"), "{second:?}");
    assert_eq!(first_name(&branch, &email), "CrmName");

    let daemon = Daemon::start(WEIR, &m, &[]);
    daemon.expect_line("run ");
    let base = format!("http://127.0.0.1:{}", daemon.port);
    let out = Command::new("node")
        .arg(repo_root().join("tests/browser/resolve-conflict.cjs"))
        .args([base.as_str(), "Take branch's value"])
        .env("WEIR_PLAYWRIGHT_CORE", &playwright)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pages: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |k: &str| pages[k].as_str().unwrap().to_string();
    assert!(
        text("overview").contains("Open conflicts: 1"),
        "{}",
        text("overview")
    );
    let before = text("before");
    assert!(before.contains("\"first_name\": \"CrmName\""), "{before}");
    assert!(
        before.contains("\"first_name\": \"BranchName\""),
        "{before}"
    );
    assert!(before.contains("crm wins (priority)"), "{before}");
    assert!(
        text("after").contains("decided: theirs"),
        "{}",
        text("after")
    );
    assert_eq!(pages["url"], format!("{base}/ui/conflicts"));

    // The decision is delivered to both systems by the pass it wakes.
    let line = daemon.expect_line("run ");
    assert!(line.contains(" 2 written"), "{line}");
    assert_eq!(first_name(&crm, &email), "BranchName");
    assert_eq!(first_name(&branch, &email), "BranchName");

    // A decided conflict cannot be decided again, and other sites cannot post.
    let (status, _) = daemon.request(
        "POST",
        "/ui/conflicts/1",
        &format!("origin: {base}\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
        "choice=ours",
    );
    assert_eq!(status, 404);
    let (status, _) = daemon.request(
        "POST",
        "/ui/conflicts/1",
        "origin: http://evil.example\r\ncontent-type: application/x-www-form-urlencoded\r\n",
        "choice=ours",
    );
    assert_eq!(status, 403);
    let audit = weir(WEIR, &m, &["audit"]);
    assert!(audit.stdout.contains("review:theirs ok"), "{audit:?}");
}

#[test]
fn a_held_match_is_shown_and_decided_in_the_browser() {
    let Some(playwright) = std::env::var_os("WEIR_PLAYWRIGHT_CORE") else {
        eprintln!("skipped: WEIR_PLAYWRIGHT_CORE not set (tests/run.sh installs playwright-core)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (crm, branch) = (d.join("crm.db"), d.join("branch.db"));
    crm_db(&crm, 0).unwrap();
    crm_db(&branch, 0).unwrap();
    // Twins in the CRM share an address; the branch knows one person by it.
    exec(
        &crm,
        "INSERT INTO contacts (first_name, last_name, email) VALUES
            ('Tom', 'Twin', 'twin@example.com'), ('Tim', 'Twin', 'twin@example.com')",
    );
    exec(
        &branch,
        "INSERT INTO contacts (first_name, last_name, email) VALUES ('Tim', 'Twin', 'twin@example.com')",
    );
    let system = |name: &str| {
        System::sqlite(name, name, &format!("{name}.db"))
            .line(r#"poll_every = "1h""#)
            .tracked("contacts", "contacts", "both", &[])
    };
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[r#"match_on = ["email"]"#]),
            system("crm"),
            system("branch")
        ),
    );
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(first.stdout.contains("1 ambiguous"), "{first:?}");
    let daemon = Daemon::start(WEIR, &m, &[]);
    daemon.expect_line("run ");
    let base = format!("http://127.0.0.1:{}", daemon.port);
    let out = Command::new("node")
        .arg(repo_root().join("tests/browser/decide-match.cjs"))
        .args([base.as_str(), "The same as 2"])
        .env("WEIR_PLAYWRIGHT_CORE", &playwright)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pages: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = pages["before"].as_str().unwrap();
    assert!(
        before.contains("record 1 read from branch fits golden records 1, 2"),
        "{before}"
    );
    let after = pages["after"].as_str().unwrap();
    assert!(
        after.contains("decided: link:2") || after.contains("No match held"),
        "{after}"
    );
    assert_eq!(pages["url"], format!("{base}/ui/matches"));

    // The pass it wakes links the branch's Tim to the CRM's Tim and creates
    // Tom there; nothing is created in the CRM.
    daemon.expect_line("run ");
    let (_, page) = daemon.http("GET", "/ui/matches", None, "");
    assert!(page.contains("No match held"), "{page}");
    assert_eq!(count(&crm, "SELECT count(*) FROM contacts"), 2);
    assert_eq!(
        count(
            &branch,
            "SELECT count(*) FROM contacts WHERE first_name = 'Tom'"
        ),
        1
    );
    assert_eq!(count(&branch, "SELECT count(*) FROM contacts"), 2);
    let (status, _) = daemon.request(
        "POST",
        "/ui/matches/1",
        "origin: http://evil.example\r\ncontent-type: application/x-www-form-urlencoded\r\n",
        "choice=new",
    );
    assert_eq!(status, 403);
}
