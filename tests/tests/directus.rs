//! `weir run` between a real Directus, whose Flow posts every change to
//! `/hooks/cms`, and a SQLite database, through the generic REST connector:
//! Directus changes arrive within a second by webhook (no poll), weir's own
//! writes do not echo, changes made while the daemon is down are reconciled
//! at start-up, and unannounced changes mark the webhooks degraded.

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");
const HOOK_SECRET: &str = "hook-s3cret";
const WEIR_TOKEN: &str = "weir-directus-t0ken";

/// Waits at most `limit` for `cond`, checking every 5 ms; the time it took.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let began = Instant::now();
    loop {
        if cond() {
            return began.elapsed();
        }
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn emails(db: &Path) -> Vec<String> {
    rows(db, "SELECT email FROM people ORDER BY email")
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn name_of(db: &Path, email: &str) -> Option<String> {
    rows(
        db,
        &format!("SELECT name FROM people WHERE email = '{email}'"),
    )
    .first()
    .and_then(|r| r[0].clone())
}

/// The counts of one `run N: ...` line, by label ("read", "written", ...).
fn count_in(line: &str, label: &str) -> u64 {
    let words: Vec<&str> = line.split([' ', ',', ':', ';']).collect();
    words
        .windows(2)
        .find(|w| w[1] == label)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' count in {line:?}"))
}

/// Renames contact `id` in Directus's own database, stamping `date_updated`
/// as Directus does (the format of the row's `date_created`).
fn behind_the_api(cms: &Directus, id: i64, name: &str) {
    let db = rusqlite::Connection::open(cms.dir().join("data.db")).unwrap();
    let created: rusqlite::types::Value = db
        .query_row(
            "SELECT date_created FROM contacts WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let stamp = match created {
        rusqlite::types::Value::Integer(_) => {
            rusqlite::types::Value::Integer(now.as_millis() as i64)
        }
        rusqlite::types::Value::Text(t) if t.chars().all(|c| c.is_ascii_digit()) => {
            rusqlite::types::Value::Text(now.as_millis().to_string())
        }
        other => panic!("date_created is stored as {other:?}: teach this test that format"),
    };
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let n = db
        .execute(
            "UPDATE contacts SET name = ?1, date_updated = ?2 WHERE id = ?3",
            rusqlite::params![name, stamp, id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn directus_changes_arrive_by_webhook_and_are_reconciled_after_downtime() {
    let Some(mut cms) = Directus::start() else {
        return;
    };
    cms.create_collection("contacts");
    let ada = cms.create_item(
        "contacts",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    let alan = cms.create_item(
        "contacts",
        &json!({"name": "Alan", "email": "alan@example.com"}),
    );
    // weir signs in as a user of its own, so that its writes can be told
    // apart in Directus's activity log.
    let role = cms.get("/users/me")["role"]
        .as_str()
        .expect("the admin has a role")
        .to_string();
    let weir_user = cms.ok(
        "POST",
        "/users",
        Some(&json!({"email": "weir@example.com", "password": "weir-pass-2026", "role": role, "token": WEIR_TOKEN})),
    )["data"]["id"]
        .as_str()
        .expect("a user id")
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("people.db");
    create_table(&db, "people", "id", Key::Reused, "name TEXT, email TEXT");
    // The recipe of connectors/rest/RECIPES.md, as a user would copy it,
    // with the service's own keys added.
    let cms_system = rest_recipe("directus", cms.url()).replacen(
        "[systems.cms]\n",
        "[systems.cms]\npoll_every = \"1h\"\npublish_token = \"${WEIR_TEST_PUBLISH_TOKEN}\"\n",
        1,
    );
    let m = write_manifest(
        d,
        &format!(
            r#"
[entities.contacts]
primary_key = "id"

{cms}
[systems.cms.webhooks]
reconcile_every = "1h"

[systems.db]
connector = {sql}
config = {{ database = "db" }}
databases = {{ db = "people.db" }}
poll_every = "1h"
publish_token = "${{WEIR_TEST_PUBLISH_TOKEN}}"
[systems.db.entities.contacts]
ignore = ["updated_at"]
settings = {{ table = "people", updated_at = "updated_at" }}
"#,
            sql = toml_path(&connector("sql")),
            cms = cms_system,
        ),
    );
    let envs = [
        ("DIRECTUS_TOKEN", WEIR_TOKEN),
        ("CMS_HOOK_SECRET", HOOK_SECRET),
        ("WEIR_TEST_PUBLISH_TOKEN", "publish-s3cret"),
    ];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_at(WEIR, &m, &listen, &envs);

    // The start-up pass polls both systems: Directus's contacts reach SQLite.
    let line = daemon.expect_line("run 1:");
    assert_eq!(count_in(&line, "written"), 2, "{line}");
    assert!(line.contains("cms/contacts"), "{line}");
    assert_eq!(emails(&db), ["ada@example.com", "alan@example.com"]);

    cms.add_webhook_flow(
        "contacts",
        &format!("http://{listen}/hooks/cms"),
        "x-sync-secret",
        HOOK_SECRET,
    );
    // Directus loads a new flow in the background: touch Ada until her
    // webhook starts a pass.
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0.. {
        cms.update_item("contacts", ada, &json!({ "name": format!("Ada {round}") }));
        let line = daemon.lines.recv_timeout(Duration::from_secs(2));
        if line.is_ok_and(|l| l.starts_with("run ")) {
            break;
        }
        assert!(Instant::now() < deadline, "the flow never posted a webhook");
    }

    // Create, update and delete in Directus: each reaches SQLite within a
    // second, in a pass that polled nothing (the webhook carried it).
    let weir_pass = |what: &str| {
        let line = daemon.expect_line("run ");
        assert!(line.ends_with("polled: none"), "{what}: {line}");
        line
    };
    let began = Instant::now();
    let grace = cms.create_item(
        "contacts",
        &json!({"name": "Grace", "email": "grace@example.com"}),
    );
    let took = within(Duration::from_secs(1), "create by webhook", || {
        emails(&db).contains(&"grace@example.com".to_string())
    });
    eprintln!(
        "create: {took:?} after the request returned ({:?} in all)",
        began.elapsed()
    );
    assert_eq!(count_in(&weir_pass("create"), "written"), 1);

    // The update webhook carries only the changed field: weir reads the
    // whole record back through the connector's lookup.
    cms.update_item("contacts", grace, &json!({"name": "Grace Hopper"}));
    let took = within(Duration::from_secs(1), "update by webhook", || {
        name_of(&db, "grace@example.com").as_deref() == Some("Grace Hopper")
    });
    eprintln!("update: {took:?}");
    assert_eq!(count_in(&weir_pass("update"), "written"), 1);

    cms.delete_item("contacts", alan);
    let took = within(Duration::from_secs(1), "delete by webhook", || {
        !emails(&db).contains(&"alan@example.com".to_string())
    });
    eprintln!("delete: {took:?}");
    assert_eq!(count_in(&weir_pass("delete"), "deleted"), 1);

    // A SQLite change reaches Directus (refresh: the database is polled
    // hourly); Directus's webhook for weir's own write is an echo, and nothing
    // goes back to either system.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO people (name, email) VALUES ('Linus', 'linus@example.com')",
            [],
        )
        .unwrap();
    let refresh = |args: &[&str]| {
        let mut all = vec!["--manifest", m.to_str().unwrap(), "refresh"];
        all.extend_from_slice(args);
        let daemon_url = format!("http://{listen}");
        all.extend_from_slice(&["--daemon", &daemon_url]);
        let out = Command::new(WEIR).args(&all).envs(envs).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    refresh(&["db"]);
    let line = daemon.expect_line("polled: db/contacts");
    assert_eq!(count_in(&line, "written"), 1, "{line}");
    let line = weir_pass("echo of weir's write");
    assert_eq!(count_in(&line, "written"), 0, "{line}");
    assert_eq!(count_in(&line, "echoes"), 1, "{line}");
    let linus: Vec<i64> = cms
        .items("contacts")
        .into_iter()
        .filter(|i| i["email"] == "linus@example.com")
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(linus.len(), 1, "weir created Linus in Directus once");

    // Webhook health: a change made behind the API's back (straight in
    // Directus's database: no flow runs), found by the reconcile poll, marks
    // the webhooks degraded ...
    let status = || weir_env(WEIR, &m, &["status"], &envs).stdout;
    assert!(status().contains("webhooks cms: healthy"), "{}", status());
    behind_the_api(&cms, ada, "Ada King");
    refresh(&["cms", "contacts"]);
    let line = daemon.expect_line("polled: cms/contacts");
    assert_eq!(count_in(&line, "written"), 1, "{line}");
    assert_eq!(name_of(&db, "ada@example.com").as_deref(), Some("Ada King"));
    let now = status();
    assert!(now.contains("webhooks cms: DEGRADED"), "{now}");
    assert!(now.contains("no webhook announced"), "{now}");

    // ... and a webhook followed by a clean poll makes them healthy again.
    cms.update_item("contacts", ada, &json!({"email": "ada@lovelace.org"}));
    weir_pass("update after the flow is back");
    refresh(&["cms", "contacts"]);
    let line = daemon.expect_line("polled: cms/contacts");
    assert_eq!(count_in(&line, "written"), 0, "{line}");
    assert!(status().contains("webhooks cms: healthy"), "{}", status());

    // Changes made while the daemon is down are reconciled by the start-up
    // poll; weir's own writes to SQLite, read back there, do not echo.
    let stopped = daemon.terminate();
    assert!(stopped.success(), "{stopped:?}");
    cms.create_item(
        "contacts",
        &json!({"name": "Margaret", "email": "margaret@example.com"}),
    );
    cms.update_item("contacts", grace, &json!({"name": "Rear Admiral Hopper"}));
    cms.delete_item("contacts", ada);
    let daemon = Daemon::start_at(WEIR, &m, &listen, &envs);
    // Its start-up pass (run ids go on from the last run).
    let line = daemon.expect_line("run ");
    assert!(
        line.contains("cms/contacts") && line.contains("db/contacts"),
        "{line}"
    );
    assert_eq!(count_in(&line, "written"), 2, "{line}");
    assert_eq!(count_in(&line, "deleted"), 1, "{line}");
    assert_eq!(
        emails(&db),
        [
            "grace@example.com",
            "linus@example.com",
            "margaret@example.com"
        ]
    );
    assert_eq!(
        name_of(&db, "grace@example.com").as_deref(),
        Some("Rear Admiral Hopper")
    );

    // weir's only write to Directus was Linus: nothing echoed back.
    let by_weir: Vec<(String, String)> = cms
        .activity("contacts")
        .into_iter()
        .filter(|a| a["user"] == weir_user.as_str())
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default().to_string(),
                a["item"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(by_weir, [("create".to_string(), linus[0].to_string())]);
    let stopped = daemon.terminate();
    assert!(stopped.success(), "{stopped:?}");
    cms.stop();
}
