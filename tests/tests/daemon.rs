//! `weir run`: the publish API acknowledges only committed changes, manual
//! refresh, endpoint hardening, and graceful shutdown on SIGTERM.

use std::time::Duration;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const TOKEN: &str = "publish-s3cret";
/// The systems' publish token, from the environment the tests give weir.
const PUBLISH_TOKEN: &str = r#"publish_token = "${WEIR_TEST_PUBLISH_TOKEN}""#;

/// System `cms`: the `hooks` test connector, which knows contacts only
/// through webhooks carrying its secret.
fn cms() -> System {
    System::new("cms", "hooks", r#"secret = "hook-s3cret""#)
}

/// The environment of weir for a manifest with publish tokens.
const WITH_TOKEN: &[(&str, &str)] = &[("WEIR_TEST_PUBLISH_TOKEN", TOKEN)];

/// `weir refresh ARGS --daemon URL` for the service `daemon`, with `envs`.
fn refresh(m: &std::path::Path, daemon: &Daemon, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let url = format!("http://127.0.0.1:{}", daemon.port);
    let mut all = vec!["refresh"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--daemon", &url]);
    weir_env(WEIR, m, &all, envs)
}

#[test]
fn publish_refresh_hardening_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 10).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read").line(PUBLISH_TOKEN),
            shop_system(),
        ),
    );
    let daemon = Daemon::start(WEIR, &m, WITH_TOKEN);
    daemon.expect_line("run 1: 10 read, 10 written");
    let shop = d.join("shop.db");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 10);

    // Hardening: each refusal names its reason and the service goes on.
    assert_eq!(daemon.http("GET", "/healthz", None, "").0, 200);
    let (status, body) = daemon.http("POST", "/publish/nowhere/contacts", Some(TOKEN), "{}");
    assert_eq!(
        (status, body.contains("no system 'nowhere'")),
        (404, true),
        "{body}"
    );
    let (status, body) = daemon.http("POST", "/publish/crm/orders", Some(TOKEN), "{}");
    assert_eq!(
        (status, body.contains("no entity 'orders'")),
        (404, true),
        "{body}"
    );
    assert_eq!(
        daemon
            .http("POST", "/publish/crm/contacts", Some("wrong"), "{}")
            .0,
        401
    );
    assert_eq!(
        daemon.http("POST", "/publish/crm/contacts", None, "{}").0,
        401
    );
    let (status, body) = daemon.http(
        "POST",
        "/publish/crm/contacts",
        Some(TOKEN),
        "{\"id\": 1, \"op\": \"merge\"}",
    );
    assert_eq!(
        (status, body.contains("\\\"op\\\" must be")),
        (400, true),
        "{body}"
    );
    let (status, body) = daemon.http(
        "POST",
        "/publish/crm/contacts",
        Some(TOKEN),
        r#"{"id": 1, "data": {"first_name": "Ada"}}"#,
    );
    assert_eq!(
        (status, body.contains("\\\"op\\\" is missing")),
        (400, true),
        "a change must say what it does: {body}"
    );
    assert_eq!(
        daemon.oversized("/publish/crm/contacts", TOKEN, 5 << 20),
        413,
        "bodies over 4 MiB are refused from their announced length"
    );
    // A sender that writes its whole body before it reads the answer reads
    // the 413 (not a broken pipe).
    let big = format!(
        "[{}]",
        vec![r#"{"id": 1, "op": "delete"}"#; 200_000].join(",")
    );
    assert!(big.len() > 4 << 20);
    let (status, body) = daemon.http("POST", "/publish/crm/contacts", Some(TOKEN), &big);
    assert_eq!(
        (status, body.contains("larger than 4 MiB")),
        (413, true),
        "{body}"
    );

    // A published change is acknowledged once stored, then synced by the next pass.
    let change = r#"[{"id": "web-1", "op": "upsert", "data": {"first_name": "Radia", "last_name": "Perlman", "email": "radia@example.com", "phone": null}, "actor": "web"}]"#;
    let (status, body) = daemon.http("POST", "/publish/crm/contacts", Some(TOKEN), change);
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    daemon.expect_line("1 read, 1 written");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE mail = 'radia@example.com'"
        ),
        1
    );
    // An idempotency key makes a retried publish a no-op.
    let keyed = r#"{"id": "web-2", "op": "upsert", "data": {"first_name": "Ken", "last_name": "Thompson", "email": "ken@example.com", "phone": null}}"#;
    let key = format!("authorization: Bearer {TOKEN}\r\nidempotency-key: k-1\r\n");
    assert_eq!(
        daemon.request("POST", "/publish/crm/contacts", &key, keyed),
        (202, r#"{"accepted":1}"#.to_string())
    );
    daemon.expect_line("1 read, 1 written");
    assert_eq!(
        daemon.request("POST", "/publish/crm/contacts", &key, keyed),
        (200, r#"{"accepted":0,"duplicate":true}"#.to_string())
    );

    // Manual refresh: a row added to the CRM reaches the shop without waiting for the interval.
    exec(
        &d.join("crm.db"),
        "INSERT INTO contacts (first_name, last_name, email) VALUES ('Tony', 'Hoare', 'tony@example.com')",
    );
    let refreshed = refresh(&m, &daemon, &["crm"], WITH_TOKEN);
    assert_eq!(refreshed.code, 0, "{refreshed:?}");
    daemon.expect_line("1 read, 1 written");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE mail = 'tony@example.com'"
        ),
        1
    );

    // SIGTERM: the service stops cleanly.
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn webhooks_go_through_the_connector_and_are_acknowledged_once_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            cms()
                .line(r#"delivery_id_header = "X-Delivery""#)
                .entity("contacts", &[r#"direction = "read""#]),
            shop_system(),
        ),
    );
    let daemon = Daemon::start(WEIR, &m, WITH_TOKEN);
    daemon.expect_line("run 1: 0 read, 0 written");
    let shop = d.join("shop.db");
    let secret = "x-sync-secret: hook-s3cret\r\n";
    let create = r#"{"event": "contacts.items.create", "key": 7, "payload": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}}"#;

    // The connector refuses a request without its secret; nothing is stored.
    let (status, body) = daemon.request("POST", "/hooks/cms", "x-sync-secret: wrong\r\n", create);
    assert_eq!(
        (status, body.as_str()),
        (401, "bad or missing x-sync-secret")
    );
    let status = weir_env(WEIR, &m, &["status"], WITH_TOKEN);
    assert!(
        status
            .stdout
            .contains("webhooks cms: 1 request(s) refused, the last at "),
        "{status:?}"
    );
    assert!(
        status.stdout.contains(": 401 bad or missing x-sync-secret"),
        "{status:?}"
    );
    assert!(!status.stdout.contains("hook-s3cret"), "{status:?}");
    assert_eq!(
        daemon.request("POST", "/hooks/nowhere", secret, create).0,
        404
    );
    assert_eq!(
        daemon.request("POST", "/hooks/shop", secret, create).0,
        404,
        "the shop's connector takes no webhooks"
    );

    // Create, a repeated delivery, update and delete, each through a webhook.
    let first = format!("{secret}x-delivery: d-1\r\n");
    let (status, body) = daemon.request("POST", "/hooks/cms/flows/sync?via=test", &first, create);
    assert_eq!((status, body.as_str()), (200, "ok"));
    daemon.expect_line("1 read, 1 written");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE mail = 'ada@example.com'"
        ),
        1
    );
    // The same delivery id again is acknowledged and dropped, whatever it carries.
    let replay = create.replace("Lovelace", "Imposter");
    assert_eq!(daemon.request("POST", "/hooks/cms", &first, &replay).0, 200);
    daemon.expect_line("0 read, 0 written");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE lname = 'Imposter'"
        ),
        0
    );
    assert_eq!(daemon.request("POST", "/hooks/cms", secret, create).0, 200);
    daemon.expect_line("1 read, 0 written");
    let update = r#"{"event": "contacts.items.update", "keys": ["7"], "payload": {"first_name": "Ada", "last_name": "King", "email": "ada@example.com"}}"#;
    assert_eq!(daemon.request("POST", "/hooks/cms", secret, update).0, 200);
    daemon.expect_line("1 read, 1 written");
    assert_eq!(
        count(&shop, "SELECT count(*) FROM customers WHERE lname = 'King'"),
        1
    );
    let delete = r#"{"event": "contacts.items.delete", "keys": ["7"], "payload": ["7"]}"#;
    assert_eq!(daemon.request("POST", "/hooks/cms", secret, delete).0, 200);
    daemon.expect_line("1 read, 0 written, 1 deleted");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 0);
}

#[test]
fn sources_are_polled_on_their_schedule_or_when_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 3).unwrap();
    crm_db(&d.join("branch.db"), 0).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let source = |name: &str, when: &str| {
        System::sqlite(name, name, &format!("{name}.db"))
            .line(PUBLISH_TOKEN)
            .line(when)
            .tracked("contacts", "contacts", "read", &[])
    };
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            source("crm", r#"poll_every = "1h""#),
            source("branch", r#"schedule = "*/2 * * * * *""#),
            shop_system(),
        ),
    );
    let daemon = Daemon::start(WEIR, &m, WITH_TOKEN);
    daemon.expect_line("run 1: 3 read, 3 written");
    let shop = d.join("shop.db");
    let insert = |db: &str, mail: &str| {
        exec(
            &d.join(db),
            &format!("INSERT INTO contacts (first_name, last_name, email) VALUES ('New', 'Person', '{mail}')"),
        );
    };
    insert("crm.db", "crm-new@example.com");
    insert("branch.db", "branch-new@example.com");

    // The branch is polled every two seconds (cron with seconds); the CRM,
    // polled hourly, is left alone by those passes. A pass that began
    // before the inserts reads nothing: the next one reads the branch's.
    let mut line = daemon.expect_line("polled: branch/contacts");
    if line.contains(": 0 read, ") {
        assert!(!line.contains("crm/contacts"), "{line}");
        line = daemon.expect_line("polled: branch/contacts");
    }
    assert!(line.contains("1 read, 1 written"), "{line}");
    assert!(!line.contains("crm/contacts"), "{line}");
    let line = daemon.expect_line("polled: branch/contacts");
    assert!(line.contains("0 read, 0 written"), "{line}");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE mail = 'crm-new@example.com'"
        ),
        0
    );

    // `weir refresh crm contacts` polls that source at once.
    let out = refresh(&m, &daemon, &["crm", "contacts"], WITH_TOKEN);
    assert_eq!(out.code, 0, "{out:?}");
    let line = daemon.expect_line("crm/contacts");
    assert!(line.contains("1 read, 1 written"), "{line}");
    assert_eq!(
        count(
            &shop,
            "SELECT count(*) FROM customers WHERE mail = 'crm-new@example.com'"
        ),
        1
    );
    let out = refresh(&m, &daemon, &["crm", "orders"], WITH_TOKEN);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not read entity 'orders'"),
        "{out:?}"
    );

    // `weir status` shows each source's last poll.
    let status = weir_env(WEIR, &m, &["status"], WITH_TOKEN);
    assert!(
        status.stdout.contains("last poll crm contacts"),
        "{}\n{}",
        status.stdout,
        status.stderr
    );
    assert!(
        status.stdout.contains("last poll branch contacts"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_target_that_fails_does_not_mark_its_sources_poll_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 3).unwrap();
    // The target's database has no `contacts` table: every write call fails.
    exec(
        &d.join("empty.db"),
        "CREATE TABLE other (id INTEGER PRIMARY KEY)",
    );
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &["shared_key = true"]),
            crm_system("read"),
            contacts_target("empty"),
        ),
    );
    let daemon = Daemon::start(WEIR, &m, &[]);
    let line = daemon.expect_line("run 1:");
    assert!(line.contains("3 read, 0 written"), "{line}");
    // The writes went wrong at the target, while the source was read: the
    // source's poll itself succeeded.
    assert_eq!(
        rows(
            &d.join("weir.db"),
            "SELECT system, failed FROM polls ORDER BY system"
        ),
        [vec![Some("crm".to_string()), Some("0".to_string())]]
    );
}

/// The value of the series line `name{labels}` in Prometheus text.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_show_every_documented_series_after_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 3).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read").line(r#"poll_every = "1h""#),
            cms().entity("contacts", &[r#"direction = "read""#]),
            shop_system(),
        ),
    );
    let daemon = Daemon::start(WEIR, &m, &[]);
    daemon.expect_line("run 1: 3 read, 3 written");
    let create = r#"{"event": "contacts.items.create", "key": 70, "payload": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}}"#;
    let good = "x-sync-secret: hook-s3cret\r\n";
    assert_eq!(daemon.request("POST", "/hooks/cms", good, create).0, 200);
    daemon.expect_line("1 read, 1 written");
    let bad = "x-sync-secret: nope\r\n";
    assert_eq!(daemon.request("POST", "/hooks/cms", bad, create).0, 401);

    let (status, text) = daemon.http("GET", "/metrics", None, "");
    assert_eq!(status, 200, "{text}");
    // Every documented series is there ...
    for (name, _) in weir::telemetry::SERIES {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} is missing from /metrics:\n{text}"
        );
    }
    // ... with the values of what happened.
    let expect = |name_and_labels: &str, value: f64| {
        assert_eq!(
            series(&text, name_and_labels),
            Some(value),
            "{name_and_labels}:\n{text}"
        );
    };
    let crm = r#"{system="crm",entity="contacts"}"#;
    let cms = r#"{system="cms",entity="contacts"}"#;
    let shop = r#"{system="shop",entity="contacts"}"#;
    expect(&format!("weir_records_read_total{crm}"), 3.0);
    expect(&format!("weir_records_read_total{cms}"), 1.0);
    expect(&format!("weir_records_written_total{shop}"), 4.0);
    expect(&format!("weir_records_deleted_total{shop}"), 0.0);
    expect(&format!("weir_echoes_suppressed_total{crm}"), 0.0);
    expect(&format!("weir_conflicts_total{crm}"), 0.0);
    expect(&format!("weir_dead_letters_total{shop}"), 0.0);
    expect(&format!("weir_delivery_retries_total{shop}"), 0.0);
    expect(r#"weir_webhooks_received_total{system="cms"}"#, 1.0);
    expect(r#"weir_webhooks_refused_total{system="cms"}"#, 1.0);
    expect("weir_passes_total", 2.0);
    expect("weir_outbox_depth", 0.0);
    expect("weir_dead_letters", 0.0);
    expect("weir_open_conflicts", 0.0);
    let writes = series(
        &text,
        r#"weir_connector_call_duration_seconds_count{system="shop",call="write"}"#,
    );
    assert_eq!(writes, Some(2.0), "two delivery batches:\n{text}");
    let lag = series(&text, &format!("weir_lag_seconds{crm}")).expect("the CRM's lag");
    assert!((0.0..3600.0).contains(&lag), "{lag}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 2).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let crm = System::sqlite("crm", "crm", "crm.db")
        .entity("contacts", &[r#"direction = "read""#, IGNORE_UPDATED_AT]);
    let m = write_manifest(
        d,
        &format!("{}{crm}{}", entity("contacts", "id", &[]), shop_system()),
    );
    let out = weir_env(
        WEIR,
        &m,
        &["--log-format", "json", "sync", "--quiet"],
        &[("WEIR_LOG", "weir=debug")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let events: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let read = events
        .iter()
        .find(|e| e["message"] == "records read")
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert_eq!(read["level"], "DEBUG");
    assert_eq!(read["system"], "crm");
    assert_eq!(read["read"], 2);
    assert!(events
        .iter()
        .any(|e| e["message"] == "records delivered" && e["written"] == 2));
}

#[test]
fn alerts_are_posted_and_rate_limited() {
    let (port, alerts) = http_receiver();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 3).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    // The shop holds contact 2's address already (mail is UNIQUE there).
    let taken = text(&d.join("crm.db"), "SELECT email FROM contacts WHERE id = 2");
    exec(
        &d.join("shop.db"),
        &format!("INSERT INTO customers (customer_id, fname, lname, mail) VALUES (9999, 'X', 'Y', '{taken}')"),
    );
    // A file that is there but is not a database: weir can only find out
    // by opening it.
    std::fs::write(
        d.join("gone.db"),
        "not a database, and longer than a header",
    )
    .unwrap();
    let gone = System::sqlite("gone", "gone", "gone.db")
        .line(r#"schedule = "* * * * * *""#)
        .entity("contacts", &[r#"direction = "read""#]);
    let m = write_manifest(
        d,
        &format!(
            r#"
[alerts]
url = "http://127.0.0.1:{port}/alerts"
headers = {{ Authorization = "Bearer ${{WEIR_TEST_ALERT_TOKEN}}" }}
min_interval = "1h"
failing_for = "1s"
{}{}{gone}{}"#,
            entity("contacts", "id", &[]),
            crm_system("read").line(PUBLISH_TOKEN),
            shop_system(),
        ),
    );
    let envs = [
        ("WEIR_TEST_PUBLISH_TOKEN", TOKEN),
        ("WEIR_TEST_ALERT_TOKEN", "alert-s3cret"),
    ];
    let daemon = Daemon::start(WEIR, &m, &envs);
    let next = |what: &str| {
        alerts
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} alert within 30 s"))
    };

    // The start-up pass: the shop refuses contact 2.
    let first = next("dead letter");
    assert_eq!(first.path, "/alerts");
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some("Bearer alert-s3cret")
    );
    assert_eq!(first.body["kind"], "dead_letter");
    assert_eq!(first.body["system"], "shop");
    assert_eq!(first.body["entity"], "contacts");
    assert_eq!(first.body["count"], 1);
    assert!(
        first.body["message"]
            .as_str()
            .unwrap()
            .contains("UNIQUE constraint failed: customers.mail"),
        "{}",
        first.body
    );

    // A second refusal within min_interval is held back.
    exec(
        &d.join("crm.db"),
        &format!("INSERT INTO contacts (first_name, last_name, email) VALUES ('Dup', 'Licate', '{taken}')"),
    );
    let out = refresh(&m, &daemon, &["crm"], &envs);
    assert_eq!(out.code, 0, "{out:?}");
    let line = daemon.expect_line("polled: crm/contacts");
    assert!(line.contains(" 1 failed"), "{line}");

    // The system that cannot open its database, polled every second, is
    // alerted once it has failed for a second, once per failing episode.
    let failing = next("failing system");
    assert_eq!(failing.body["kind"], "system_failing", "{}", failing.body);
    assert_eq!(failing.body["system"], "gone");
    assert!(
        failing.body["message"]
            .as_str()
            .unwrap()
            .contains("system 'gone' has been failing since"),
        "{}",
        failing.body
    );
    // The dashboard shows the failing source and the refused records.
    let (status, page) = daemon.http("GET", "/ui", None, "");
    assert_eq!(status, 200);
    let gone = page
        .split("<tr>")
        .find(|row| row.contains("<td>gone</td>"))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(gone.contains("the last poll failed"), "{gone}");
    let shop = page
        .split("<tr>")
        .find(|row| row.contains("<td>shop</td>"))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(
        shop.contains(r#"<td class="bad">2</td>"#),
        "two dead letters: {shop}"
    );
    // Every pass's alerts are sent before the service stops: what came after
    // the first is that one alert, and no second dead letter.
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = alerts
        .try_iter()
        .map(|a| a.body["kind"].to_string())
        .collect();
    assert!(rest.is_empty(), "{rest:?}");
}
