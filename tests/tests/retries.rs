//! Deliveries that fail for a while: rate limits with retry-after, passing
//! failures with exponential backoff, a target that crashes during a load,
//! and success later, through the outbox.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// Runs `weir` with `args`, which must exit with `code` and print `line`.
fn sync(m: &std::path::Path, args: &[&str], code: i32, line: &str) {
    let run = weir(WEIR, m, args);
    assert_eq!(run.code, code, "{run:?}");
    assert!(run.stdout.contains(line), "{run:?}");
}

/// Moves every backoff into the past, as if its time had come.
fn make_due(store: &std::path::Path) {
    exec(
        store,
        "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z'",
    );
}

/// How many records the flaky connector holds.
fn held(store: &std::path::Path) -> String {
    text(
        store,
        "SELECT count(*) FROM connector_state WHERE system = 'flaky' AND key LIKE 'contacts/%'",
    )
}

/// A CRM of `contacts` read into the store and written to the flaky test
/// connector, configured with `config` (TOML inline table body); returns
/// the manifest.
fn setup(d: &std::path::Path, contacts: usize, config: &str) -> std::path::PathBuf {
    crm_db(&d.join("crm.db"), contacts).unwrap();
    let flaky =
        System::new("flaky", "flaky", config).entity("contacts", &[r#"direction = "write""#]);
    write_manifest(
        d,
        &format!(
            "{}{}{flaky}",
            entity("contacts", "id", &[]),
            crm_system("read")
        ),
    )
}

#[test]
fn rate_limits_and_passing_failures_are_retried_with_backoff_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(
        d,
        20,
        "rate_limited_calls = 1, retry_after_ms = 0, transient_calls = 1",
    );
    let store = d.join("weir.db");

    // Rate limited, with retry-after 0: due again at once, so the next pass tries.
    sync(
        &m,
        &["sync", "--quiet"],
        1,
        "run 1: 20 read, 0 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 20 failed",
    );
    assert_eq!(text(&store, "SELECT count(*) FROM outbox WHERE attempts = 1 AND last_error LIKE 'rate-limited: call 1: slow down'"), "20");
    assert_eq!(
        text(&store, "SELECT count(*) FROM dead_letters"),
        "0",
        "passing failures are not dead letters"
    );

    // A passing failure: backed off exponentially (2 s after the second attempt).
    sync(
        &m,
        &["sync", "--quiet"],
        1,
        "run 2: 0 read, 0 written, 0 deleted, 0 unchanged, 0 echoes, 0 conflicts, 20 failed",
    );
    assert_eq!(text(&store, "SELECT count(*) FROM outbox WHERE attempts = 2 AND last_error LIKE 'transient: call 2: try again'"), "20");
    let delay: f64 = text(
        &store,
        "SELECT min(julianday(o.next_attempt_at) - julianday(a.at)) * 86400 FROM outbox o
         JOIN audit a ON a.global_id = o.global_id AND a.system = 'flaky' AND a.run_id = 2",
    )
    .parse()
    .unwrap();
    assert!(
        (1.9..3.0).contains(&delay),
        "second attempt backs off about 2 s, got {delay}"
    );

    // Not due yet: nothing is attempted, nothing fails.
    sync(&m, &["sync", "--quiet"], 0, "run 3: 0 read, 0 written");
    let status = weir(WEIR, &m, &["status"]);
    assert!(status.stdout.contains("outbox: 20 pending"), "{status:?}");

    // Once the backoff has passed (moved into the past here), every record is delivered once.
    make_due(&store);
    sync(&m, &["sync", "--quiet"], 0, "run 4: 0 read, 20 written");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "0");
    assert_eq!(held(&store), "20");
    assert_eq!(
        text(&store, "SELECT group_concat(outcome, ',') FROM (SELECT outcome FROM audit WHERE system = 'flaky' AND global_id = 1 ORDER BY id)"),
        "failed,failed,ok"
    );
    let audit = weir(WEIR, &m, &["audit", "--system", "flaky", "--id", "1"]);
    assert_eq!(audit.stdout.lines().count(), 3, "{audit:?}");
    assert!(
        audit
            .stdout
            .lines()
            .last()
            .unwrap()
            .ends_with("write:create ok"),
        "{audit:?}"
    );
}

/// A target written along a full load that crashes mid-way: what it wrote
/// stays written, the batch it crashed on waits with backoff, and the
/// records read after the crash (kept in memory for it, and in the store as
/// spans) become outbox rows; later passes deliver each record once.
#[test]
fn a_target_that_crashes_during_a_load_gets_the_rest_later_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d, 50, "crash_on_call = 3");
    let store = d.join("weir.db");

    // Pages of 7: two written, the third crashes the connector.
    sync(
        &m,
        &["sync", "--quiet", "--batch-size", "7"],
        1,
        "run 1: 50 read, 14 written",
    );
    assert_eq!(held(&store), "14");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox_spans"), "0");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "36");
    assert_eq!(
        text(&store, "SELECT count(*) FROM outbox WHERE attempts = 1"),
        "7",
        "the batch the connector crashed on backs off"
    );

    // The rest read after the crash is due at once.
    sync(
        &m,
        &["sync", "--quiet", "--batch-size", "7"],
        0,
        "run 2: 0 read, 29 written",
    );
    assert_eq!(held(&store), "43");

    make_due(&store);
    sync(
        &m,
        &["sync", "--quiet", "--batch-size", "7"],
        0,
        "run 3: 0 read, 7 written",
    );
    assert_eq!(held(&store), "50");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "0");
    assert_eq!(
        text(
            &store,
            "SELECT count(DISTINCT global_id) || '/' || count(*) FROM audit
             WHERE system = 'flaky' AND operation = 'write:create' AND outcome = 'ok'"
        ),
        "50/50",
        "each record created once"
    );
}

#[test]
fn weir_run_delivers_what_crashes_left_due_without_anything_new_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d, 50, "crash_on_calls = [3, 4]");
    let store = d.join("weir.db");
    // The start-up pass: batches of 7, two written, the third crashes the
    // connector and backs off; the rest is due at once.
    let daemon = Daemon::start_with(WEIR, &m, "127.0.0.1:0", &["--batch-size", "7"], &[]);
    let first = daemon.expect_line("run 1:");
    assert!(first.contains("50 read, 14 written"), "{first}");
    // The pass for the rest crashes at its first batch, which backs off:
    // 22 records stay due from before, 14 wait for their backoff.
    let second = daemon.expect_line("run 2:");
    assert!(second.contains(" 0 written"), "{second}");
    // Nothing arrives, nothing asks (the interval is an hour): the first
    // backoff coming due starts the pass that delivers all of them, the
    // records left due from before and the backoffs about to come due
    // (spread by their jitter) included.
    let third = daemon.expect_line("run 3:");
    assert!(third.contains(" 36 written"), "{third}");
    assert_eq!(held(&store), "50");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "0");
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn weir_run_sends_a_backlog_in_short_passes_that_follow_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Every write of the start-up pass fails (8 calls of 7): all 50 wait
    // in the outbox for their backoff.
    let m = setup(d, 50, "transient_calls = 8");
    let store = d.join("weir.db");
    let args = ["--batch-size", "7", "--pass-rows", "14"];
    let daemon = Daemon::start_with(WEIR, &m, "127.0.0.1:0", &args, &[]);
    let first = daemon.expect_line("run 1:");
    assert!(first.contains(" 0 written"), "{first}");
    // At most 14 pending writes a pass: the passes follow one another
    // without anything asking until the backlog is sent.
    let mut written = Vec::new();
    while held(&store) != "50" {
        let line = daemon.expect_line("run ");
        let n: u64 = line
            .split(", ")
            .find_map(|part| part.strip_suffix(" written"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        written.push(n);
        assert!(written.len() <= 10, "{written:?}");
    }
    assert!(written.iter().all(|w| *w <= 14), "{written:?}");
    assert!(written.len() >= 4, "{written:?}");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "0");
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_write_that_keeps_failing_goes_to_the_dead_letters_after_give_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d, 5, "transient_calls = 1000");
    let store = d.join("weir.db");
    sync(&m, &["sync", "--quiet"], 1, "run 1: 5 read, 0 written");
    // Until it gives up, the last error is shown.
    let status = weir(WEIR, &m, &["status"]);
    assert!(
        status
            .stdout
            .contains("flaky contacts: 5 write(s) waiting for a retry, failing since")
            && status
                .stdout
                .contains("(dead letters after give_up_after = 24h)")
            && status.stdout.contains("transient: call 1"),
        "{status:?}"
    );
    make_due(&store);
    sync(&m, &["sync", "--quiet"], 1, "run 2: 0 read, 0 written");
    assert_eq!(text(&store, "SELECT count(*) FROM dead_letters"), "0");

    // A day later, still failing: each write is a dead letter with its last
    // error, and the outbox is empty.
    exec(
        &store,
        "UPDATE outbox SET failing_since = '2000-01-01T00:00:00.000Z', next_attempt_at = '2000-01-01T00:00:00.000Z'",
    );
    sync(&m, &["sync", "--quiet"], 1, "5 failed");
    assert_eq!(text(&store, "SELECT count(*) FROM outbox"), "0");
    let letters = weir(WEIR, &m, &["dead-letters"]).stdout;
    assert_eq!(letters.lines().count(), 5, "{letters}");
    assert!(
        letters.lines().all(|l| l.contains(
            "given up after failing for 24h (since 2000-01-01T00:00:00.000Z; give_up_after of system 'flaky'); last error: transient: call 2"
        )),
        "{letters}"
    );
}
