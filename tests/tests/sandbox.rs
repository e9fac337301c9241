//! Hostile connectors are stopped with a clear error naming the system and the
//! limit, and the other systems of the same manifest still sync.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn hostile_connectors_are_stopped_and_the_rest_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 300).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let sql = toml_path(&connector("sql"));
    let hostile = toml_path(&connector("hostile"));
    let mut text = format!(
        r#"
[entities.contacts]
primary_key = "id"

[systems.crm]
connector = {sql}
config = {{ database = "crm" }}
databases = {{ crm = "crm.db" }}
[systems.crm.entities.contacts]
direction = "read"
ignore = ["updated_at"]
settings = {{ table = "contacts" }}

[systems.shop]
connector = {sql}
config = {{ database = "shop" }}
databases = {{ shop = "shop.db" }}
[systems.shop.entities.contacts]
direction = "write"
primary_key = "customer_id"
rename = {{ fname = "first_name", lname = "last_name", mail = "email" }}
settings = {{ table = "customers" }}
"#
    );
    for behaviour in ["loop", "memory", "http", "sql", "trap"] {
        text.push_str(&format!(
            r#"
[systems.evil-{behaviour}]
connector = {hostile}
config = {{ behaviour = "{behaviour}" }}
allowed_hosts = ["api.example.org"]
databases = {{ granted = "crm.db" }}
limits = {{ call_timeout_secs = 1, memory_mib = 32 }}
[systems.evil-{behaviour}.entities.contacts]
direction = "read"
"#
        ));
    }
    let m = write_manifest(d, &text);
    let run = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = [
        "system 'evil-loop': connector stopped: exceeded its time limit of 1s per call (limits.call_timeout_secs)",
        "system 'evil-memory': connector stopped: exceeded its memory limit of 32 MiB (limits.memory_mib)",
        "system 'evil-http': permission error: http request to 'example.com' denied: the host is not in allowed_hosts of system 'evil-http'",
        "system 'evil-sql': permission error: database 'not-granted' is not granted to system 'evil-sql'",
        "system 'evil-trap': connector crashed: wasm trap: wasm `unreachable` instruction executed; connector said:",
    ];
    for e in expected {
        assert!(run.stderr.contains(e), "missing {e:?} in {run:?}");
    }
    assert!(
        run.stderr.contains("hostile connector panics on purpose"),
        "{run:?}"
    );
    // The good systems synced completely.
    assert!(run.stdout.contains("300 read, 300 written"), "{run:?}");
    assert_eq!(
        rows(
            &d.join("crm.db"),
            "SELECT first_name, last_name, email, phone FROM contacts"
        ),
        rows(
            &d.join("shop.db"),
            "SELECT fname, lname, mail, phone FROM customers"
        )
    );
}

#[test]
fn a_connector_sees_no_environment_and_no_undeclared_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("out")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            r#"
[entities.contacts]
primary_key = "id"
[systems.probe]
connector = {hostile}
config = {{ behaviour = "probe" }}
[systems.probe.entities.contacts]
direction = "read"
[systems.files]
connector = {csv}
config = {{ directory = "out" }}
directories = {{ out = "out" }}
[systems.files.entities.contacts]
direction = "write"
"#,
            hostile = toml_path(&connector("hostile")),
            csv = toml_path(&connector("csv")),
        ),
    );
    let run = std::process::Command::new(WEIR)
        .args(["--manifest", m.to_str().unwrap(), "sync", "--quiet"])
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .env("WEIR_SECRET_THAT_MUST_NOT_LEAK", "s3cret")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = csv_rows(&d.join("out").join("contacts.csv"));
    let header = &csv[0];
    let value = |name: &str| csv[1][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(
        value("env"),
        "0",
        "no environment variables reach the connector"
    );
    assert_eq!(value("args"), "0", "no arguments reach the connector");
    assert_eq!(value("root"), "false", "the connector cannot list /");
    assert_eq!(
        value("etc"),
        "false",
        "the connector cannot read /etc/passwd"
    );

    // What a component exports is read from the component itself.
    let connectors = weir(WEIR, &m, &["connectors"]);
    assert!(
        connectors.stdout.contains("probe: hostile 0.1.0"),
        "{connectors:?}"
    );
    assert!(
        connectors.stdout.contains("exports connector, source ("),
        "{connectors:?}"
    );
    assert!(
        connectors.stdout.contains("files: csv 0.1.0")
            && connectors
                .stdout
                .contains("exports connector, source, destination ("),
        "{connectors:?}"
    );
}
