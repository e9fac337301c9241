//! What the service answers a sender it cannot serve: a connector that times
//! out or crashes on a webhook is a passing failure (`503` with
//! `Retry-After`, so the sender tries again), not a refusal; and a connector
//! that floods the host with rejects is stopped at its limit.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// The status, the `retry-after` header and the body of a raw HTTP answer.
fn answer(daemon: &Daemon, path: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let port = daemon.port;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = "{}";
    write!(s, "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let retry = out.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, retry, body)
}

#[test]
fn a_webhook_the_connector_fails_on_is_answered_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_db(&d.join("shop.db")).unwrap();
    let mut text = format!("{}{}", entity("contacts", "id", &[]), shop_system());
    for behaviour in ["loop", "trap", "ok"] {
        let hostile = System::new(
            &format!("h-{behaviour}"),
            "hostile",
            &format!("behaviour = \"{behaviour}\""),
        )
        .line("limits = { call_timeout_secs = 1 }")
        .entity("contacts", &[r#"direction = "read""#]);
        text.push_str(&hostile.to_string());
    }
    let m = write_manifest(d, &text);
    let daemon = Daemon::start(WEIR, &m, &[]);
    daemon.expect_line("run 1:");

    let (status, retry, body) = answer(&daemon, "/hooks/h-loop");
    assert_eq!((status, retry.as_deref()), (503, Some("30")), "{body}");
    assert!(body.contains("exceeded its time limit of 1s"), "{body}");
    let (status, retry, body) = answer(&daemon, "/hooks/h-trap");
    assert_eq!((status, retry.as_deref()), (503, Some("30")), "{body}");
    assert!(body.contains("connector crashed"), "{body}");
    // The service goes on serving, and a connector that works is taken.
    let (status, _, body) = answer(&daemon, "/hooks/h-ok");
    assert_eq!(status, 200, "{body}");
    daemon.expect_line("1 read,");
}

#[test]
fn a_connector_that_floods_the_host_with_rejects_is_stopped_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let crm = crm_read_in_full();
    let flood = System::new("flood", "hostile", r#"behaviour = "rejects""#)
        .entity("contacts", &[r#"direction = "read""#]);
    let m = write_manifest(
        d,
        &format!(
            "{}{crm}{flood}{}",
            entity("contacts", "id", &[]),
            shop_system()
        ),
    );
    let run = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "50"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "system 'flood': connector stopped: rejected more than 50 records in one call (the call's limit)"
        ),
        "{run:?}"
    );
    // The others synced; no reject of the stopped call was kept.
    assert!(run.stdout.contains("20 read, 20 written"), "{run:?}");
    assert!(weir(WEIR, &m, &["dead-letters"]).stdout.is_empty());
}

#[test]
fn connectors_whose_output_breaks_a_limit_are_stopped_and_the_rest_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let crm = crm_read_in_full();
    let mut text = format!("{}{crm}{}", entity("contacts", "id", &[]), shop_system());
    for (behaviour, limits) in [
        ("huge", "memory_mib = 512, page_max_mib = 16"),
        ("many", "memory_mib = 64"),
        ("stuck", "memory_mib = 64"),
        ("chatty", "log_lines_per_call = 500"),
        ("hoard", "state_max_kib = 1024"),
    ] {
        let evil = System::new(
            &format!("evil-{behaviour}"),
            "hostile",
            &format!("behaviour = \"{behaviour}\", size_mib = 40"),
        )
        .line(&format!("limits = {{ {limits} }}"))
        .entity("contacts", &[r#"direction = "read""#]);
        text.push_str(&evil.to_string());
    }
    let m = write_manifest(d, &text);
    let run = weir(WEIR, &m, &["sync", "--quiet", "--batch-size", "50"]);
    assert_eq!(run.code, 1, "{run:?}");
    for expected in [
        "system 'evil-huge': connector stopped: returned 41 MiB of records in one call, more than limits.page_max_mib = 16",
        "system 'evil-many': connector stopped: returned 150 records, more than twice the 50 the call asked for",
        "system 'evil-stuck': connector stopped: returned the cursor it was asked at as the one to go on from",
        "system 'evil-chatty': connector stopped: wrote more than 500 log lines in one call (limits.log_lines_per_call)",
        "system 'evil-hoard': connector stopped: set a state value of 2049 KiB, more than limits.state_max_kib = 1024",
    ] {
        assert!(run.stderr.contains(expected), "missing {expected:?} in {run:?}");
    }
    // The CRM synced completely (the stuck connector's first page came in
    // before it stuck).
    assert!(run.stdout.contains("21 read, 20 written"), "{run:?}");
}
