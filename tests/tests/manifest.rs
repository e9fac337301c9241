//! Bad manifests: a clear error each (file, line, key, how to fix), exit code
//! 2, and nothing written.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// A valid manifest; each case breaks one thing in it.
fn good(dir: &Path) -> String {
    format!(
        r#"[entities.contacts]
primary_key = "id"

[systems.crm]
connector = {sql}
config = {{ database = "crm" }}
databases = {{ crm = "crm.db" }}

[systems.crm.entities.contacts]
direction = "read"
ignore = ["updated_at"]

[systems.shop]
connector = {sql}
config = {{ database = "shop" }}
databases = {{ shop = "shop.db" }}

[systems.shop.entities.contacts]
direction = "write"
primary_key = "customer_id"
rename = {{ fname = "first_name", lname = "last_name", mail = "email" }}
settings = {{ table = "customers" }}
"#,
        sql = toml_path(&connector("sql"))
    )
    .replace("{dir}", &dir.display().to_string())
}

/// Runs `weir sync` on a broken manifest and checks the error and that nothing was written.
fn rejected(break_it: impl Fn(String) -> String, expect: &[&str]) {
    rejected_with(|_| {}, break_it, expect)
}

/// As [`rejected`], with `prepare` run in the manifest's folder first.
fn rejected_with(prepare: impl Fn(&Path), break_it: impl Fn(String) -> String, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    prepare(d);
    let files_before = std::fs::read_dir(d).unwrap().count();
    let m = write_manifest(d, &break_it(good(d)));
    let shop_before = std::fs::read(d.join("shop.db")).unwrap();
    for command in [&["sync", "--quiet"][..], &["check"][..]] {
        let run = weir(WEIR, &m, command);
        assert_eq!(run.code, 2, "{command:?}: {run:?}");
        for e in expect {
            assert!(
                run.stderr.contains(e),
                "{command:?}: missing {e:?} in {run:?}"
            );
        }
        assert!(run.stderr.contains("to fix: "), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    assert!(!d.join("weir.db").exists(), "no central store was created");
    assert_eq!(
        std::fs::read_dir(d).unwrap().count(),
        files_before + 1,
        "no file but the manifest was added"
    );
    assert_eq!(
        std::fs::read(d.join("shop.db")).unwrap(),
        shop_before,
        "the target is untouched"
    );
}

#[test]
fn unknown_key() {
    rejected(
        |m| {
            m.replace(
                "direction = \"write\"",
                "direction = \"write\"\nrenames = { a = \"b\" }",
            )
        },
        &[
            "weir.toml:20: systems.shop.entities.contacts.renames: unknown field `renames`",
            "remove the key or correct its spelling",
        ],
    );
}

#[test]
fn missing_connector_file() {
    rejected(
        |m| m.replacen(&toml_path(&connector("sql")), "\"connectors/nope.wasm\"", 1),
        &[
            "weir.toml:5: systems.crm.connector: connector file 'connectors/nope.wasm' not found",
            "build the connector",
        ],
    );
}

#[test]
fn unset_secret_variable() {
    rejected(
        |m| m.replace("shop = \"shop.db\"", "shop = \"${WEIR_TEST_NEVER_SET_TOKEN}\""),
        &["weir.toml:16: systems.shop.databases.shop: environment variable 'WEIR_TEST_NEVER_SET_TOKEN' is not set", "export WEIR_TEST_NEVER_SET_TOKEN="],
    );
}

#[test]
fn entity_without_primary_key() {
    rejected(
        |m| m.replacen("primary_key = \"id\"\n", "", 1),
        &["weir.toml:8: systems.crm.entities.contacts: entity 'contacts' has no primary key for system 'crm'", "set primary_key = \"id\""],
    );
}

#[test]
fn malformed_toml() {
    rejected(
        |m| m.replace("direction = \"read\"", "direction = \"read"),
        &[
            "weir.toml:10: systems.crm.entities.contacts.direction: invalid basic string",
            "correct the TOML at that line",
        ],
    );
}

#[test]
fn bad_direction_value() {
    rejected(
        |m| m.replace("direction = \"read\"", "direction = \"sideways\""),
        &["weir.toml:10: systems.crm.entities.contacts.direction: unknown variant `sideways`"],
    );
}

#[test]
fn the_good_manifest_is_taken_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(d, &good(d));
    let run = weir(WEIR, &m, &["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("warning"), "{run:?}");
}

#[test]
fn a_connector_that_is_not_webassembly() {
    rejected_with(
        |d| std::fs::write(d.join("notes.wasm"), "not a component").unwrap(),
        |m| m.replacen(&toml_path(&connector("sql")), "\"notes.wasm\"", 1),
        &[
            "weir.toml:5: systems.crm.connector: connector '",
            "notes.wasm' is not a usable weir connector",
            "to fix: give a connector built with `cargo build --release --target wasm32-wasip2`",
        ],
    );
}

#[test]
fn a_missing_database_file_is_not_created() {
    rejected(
        |m| m.replace("crm = \"crm.db\"", "crm = \"absent.db\""),
        &[
            "weir.toml:7: systems.crm.databases.crm: database file 'absent.db' does not exist",
            "{ path = \"absent.db\", create = true }",
        ],
    );
}

#[test]
fn a_database_created_when_the_grant_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    let m = write_manifest(
        d,
        &good(d).replace(
            "shop = \"shop.db\"",
            "shop = { path = \"new.db\", create = true }",
        ),
    );
    let run = weir(WEIR, &m, &["check"]);
    assert!(
        d.join("new.db").is_file(),
        "the grant created its file: {run:?}"
    );
    assert!(
        run.stdout.contains("table 'customers' not found"),
        "{run:?}"
    );
    assert_eq!(run.code, 1, "{run:?}");
}

#[test]
fn a_grant_name_that_matches_nothing() {
    rejected(
        |m| m.replace("database = \"crm\"", "database = \"crmx\""),
        &[
            "weir.toml:6: systems.crm.config.database: 'crmx' names no database granted to system 'crm'",
            "to fix: use one of crm or add the grant under `databases`",
        ],
    );
}

#[test]
fn an_unknown_config_key_is_named_at_its_line() {
    rejected(
        |m| {
            m.replace(
                "database = \"shop\"",
                "database = \"shop\", token = \"plain\"",
            )
        },
        &[
            "weir.toml:15: systems.shop.config.token: unknown key 'token'",
            "the connector knows database",
        ],
    );
}

#[test]
fn an_unknown_settings_key_is_named_at_its_line() {
    rejected(
        |m| {
            m.replace(
                "settings = { table = \"customers\" }",
                "settings = { tabel = \"customers\" }",
            )
        },
        &[
            "weir.toml:22: systems.shop.entities.contacts.settings.tabel: unknown key 'tabel'",
            "the connector knows ",
        ],
    );
}

#[test]
fn an_empty_secret() {
    rejected(
        |m| {
            m.replace(
                "databases = { crm = \"crm.db\" }",
                "databases = { crm = \"crm.db\" }\npublish_token = \"\"",
            )
        },
        &[
            "weir.toml:8: systems.crm.publish_token: the secret is empty",
            "${VAR}",
        ],
    );
}

#[test]
fn an_entity_no_system_holds_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &good(d).replace(
            "[systems.crm]",
            "[entities.orders]\nprimary_key = \"id\"\n\n[systems.crm]",
        ),
    );
    let run = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("warning: ")
            && run
                .stderr
                .contains("weir.toml:4: entities.orders: no system holds entity 'orders'"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("to fix: add [systems.NAME.entities.orders]"),
        "{run:?}"
    );
}

#[test]
fn missing_manifest_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = weir(WEIR, &dir.path().join("absent.toml"), &["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("absent.toml: cannot read the manifest"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("to fix: pass the path of an existing weir.toml with --manifest"),
        "{run:?}"
    );
}

#[test]
fn the_bundled_example_manifest_parses() {
    let m = weir::manifest::Manifest::parse(
        &repo_root().join("tests/example/weir.toml"),
        &std::fs::read_to_string(repo_root().join("tests/example/weir.toml")).unwrap(),
    );
    // The example's data folder and databases exist only after the example
    // ran; everything else must be valid.
    match m {
        Ok(m) => assert_eq!(m.systems.len(), 3),
        Err(errs) => {
            for e in &errs.0 {
                assert!(
                    e.key.starts_with("systems.files.directories")
                        || e.key.ends_with(".databases.crm")
                        || e.key.ends_with(".databases.shop"),
                    "unexpected error in the example manifest: {e}"
                );
            }
        }
    }
}
