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
config = {{ database = "shop", token = "plain" }}
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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 20).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
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
        |m| m.replace("token = \"plain\"", "token = \"${WEIR_TEST_NEVER_SET_TOKEN}\""),
        &["weir.toml:15: systems.shop.config.token: environment variable 'WEIR_TEST_NEVER_SET_TOKEN' is not set", "export WEIR_TEST_NEVER_SET_TOKEN="],
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
    // The example's data folder exists only after the example ran; everything
    // else must be valid.
    match m {
        Ok(m) => assert_eq!(m.systems.len(), 3),
        Err(errs) => {
            for e in &errs.0 {
                assert!(
                    e.key.starts_with("systems.files.directories"),
                    "unexpected error in the example manifest: {e}"
                );
            }
        }
    }
}
