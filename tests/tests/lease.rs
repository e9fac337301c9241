//! One writer per store: a second `weir sync` or `weir run` on a store that
//! a live process syncs stops at once naming the holder (or waits with
//! `--wait`); a killed holder's lease is taken over once it runs out; two
//! syncs started together on a new store migrate it once and create every
//! record once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::daemon::Daemon;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The generated CRM (`n` contacts) read into the shop and a CSV folder,
/// which both assign their own ids, with `store` lines under `[store]`.
fn crm_to_shop(d: &Path, n: usize, store: &str) -> std::path::PathBuf {
    crm_db(&d.join("crm.db"), n).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    write_manifest(
        d,
        &format!(
            "[store]\n{store}\n{}{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system(),
            csv_target(d, "contacts", "export", "csv"),
        ),
    )
}

/// The shop's customers and how many distinct e-mail addresses they have,
/// and the CSV file's records and distinct addresses.
fn shop(d: &Path) -> (i64, i64, usize, usize) {
    let db = d.join("shop.db");
    let csv = csv_rows(&d.join("csv").join("contacts.csv"));
    let mail = csv[0]
        .iter()
        .position(|h| h == "email")
        .expect("an email column");
    let distinct: std::collections::BTreeSet<&str> =
        csv[1..].iter().map(|r| r[mail].as_str()).collect();
    (
        count(&db, "SELECT count(*) FROM customers"),
        count(&db, "SELECT count(DISTINCT mail) FROM customers"),
        csv.len() - 1,
        distinct.len(),
    )
}

#[test]
fn a_second_writer_stops_naming_the_first_and_readers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = crm_to_shop(d, 50, "");
    let service = Daemon::start(WEIR, &m, &[]);
    service.expect_line("run 1");
    let pid = service.child.id();

    let second = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(second.code, 2, "{second:?}");
    assert!(
        second
            .stderr
            .contains(&format!("is in use by weir process {pid} on "))
            && second.stderr.contains("--wait"),
        "the refusal names the holder and the fix: {second:?}"
    );
    let rollback = weir(WEIR, &m, &["rollback", "1"]);
    assert_eq!(rollback.code, 2, "{rollback:?}");
    assert!(
        rollback.stderr.contains(&format!("weir process {pid}")),
        "{rollback:?}"
    );
    let status = weir(WEIR, &m, &["status"]);
    assert_eq!(
        status.code, 0,
        "reading the store needs no lease: {status:?}"
    );
    let another = Command::new(WEIR)
        .args([
            "--manifest",
            m.to_str().unwrap(),
            "run",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&another.stderr);
    assert_eq!(another.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("weir process {pid}")), "{err}");

    assert!(service.terminate().success());
    let after = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(
        after.code, 0,
        "a stopped service gives the store up: {after:?}"
    );
    assert_eq!(shop(d), (50, 50, 50, 50));
}

/// A holder killed with SIGKILL leaves its lease behind; on the same host
/// the next sync sees that its process is gone and takes the store at once.
#[test]
fn a_dead_holder_on_this_host_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = crm_to_shop(d, 30, "");
    let mut service = Daemon::start(WEIR, &m, &[]);
    service.expect_line("run 1");
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    let holder = count(&d.join("weir.db"), "SELECT count(*) FROM leases");
    assert_eq!(holder, 1, "the killed service left its lease");
    let began = Instant::now();
    let at_once = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(at_once.code, 0, "{at_once:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(shop(d), (30, 30, 30, 30));
}

/// A paused holder is alive: a second sync is refused, `--wait` waits until
/// the paused one's lease runs out and takes the store over; the holder,
/// resumed, finds its lease gone and stops at its next pass, having
/// written nothing more.
#[test]
fn a_paused_holder_is_fenced_out_once_its_lease_runs_out() {
    const TOKEN: &str = "lease-test-token";
    let env = [("WEIR_TEST_PUBLISH_TOKEN", TOKEN)];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 30).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "[store]\nlease_secs = 3\n{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read").line(r#"publish_token = "${WEIR_TEST_PUBLISH_TOKEN}""#),
            shop_system(),
        ),
    );
    let mut paused = Daemon::start(WEIR, &m, &env);
    paused.expect_line("run 1");
    let pid = paused.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let refused = weir_env(WEIR, &m, &["sync", "--quiet"], &env);
    assert_eq!(refused.code, 2, "a paused holder is alive: {refused:?}");
    assert!(
        refused.stderr.contains(&format!("weir process {pid}")),
        "{refused:?}"
    );
    let began = Instant::now();
    let waited = weir_env(WEIR, &m, &["sync", "--quiet", "--wait"], &env);
    assert_eq!(waited.code, 0, "{waited:?}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "taken over about lease_secs after the last renewal: {:?}",
        began.elapsed()
    );
    let store = d.join("weir.db");
    let runs = count(&store, "SELECT count(*) FROM runs");

    signal("-CONT");
    let (code, _) = paused.http("POST", "/refresh/crm/contacts", Some(TOKEN), "");
    assert_eq!(code, 202, "the refresh is taken");
    let status = paused.child.wait().unwrap();
    assert!(!status.success(), "the fenced service stops with an error");
    assert_eq!(
        count(&store, "SELECT count(*) FROM runs"),
        runs,
        "the fenced service began no run"
    );
    let after = weir_env(WEIR, &m, &["sync", "--quiet"], &env);
    assert_eq!(after.code, 0, "{after:?}");
    let db = d.join("shop.db");
    assert_eq!(count(&db, "SELECT count(DISTINCT mail) FROM customers"), 30);
    assert_eq!(count(&db, "SELECT count(*) FROM customers"), 30);
}

/// Before the lease, two syncs on one existing store wrote a page to the
/// CSV twice or lost it; on a new store one of them failed to migrate it.
#[test]
fn syncs_started_together_create_each_record_once() {
    for (existing, wait) in [(false, false), (true, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = crm_to_shop(d, 3000, "");
        if existing {
            assert_eq!(weir(WEIR, &m, &["status"]).code, 0);
        }
        let mut args = vec!["--manifest", m.to_str().unwrap(), "sync", "--quiet"];
        if wait {
            args.push("--wait");
        }
        let start = || {
            Command::new(WEIR)
                .args(&args)
                .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start(), start());
        let runs: Vec<Run> = [a, b]
            .into_iter()
            .map(|c| Run::of(c.wait_with_output().unwrap()))
            .collect();
        for r in &runs {
            assert!(
                !r.stderr.contains("already exists"),
                "the store is migrated once: {r:?}"
            );
            if wait || r.code != 2 {
                assert_eq!(r.code, 0, "wait = {wait}: {r:?}");
            } else {
                assert!(r.stderr.contains("is in use by weir process"), "{r:?}");
            }
        }
        assert!(runs.iter().any(|r| r.code == 0), "{runs:?}");
        assert_eq!(
            shop(d),
            (3000, 3000, 3000, 3000),
            "existing store {existing}, wait {wait}: every contact once in each target"
        );
        let again = weir(WEIR, &m, &["sync", "--quiet"]);
        assert_eq!(again.code, 0, "{again:?}");
        assert_eq!(summary(&again).written, 0, "{again:?}");
    }
}
