//! Mapping end to end: conversions, value maps, computed fields, defaults,
//! filters, validation before writing, and sensitive fields that never leave
//! their system — checked by scanning every file weir wrote.

use std::path::Path;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

const SECRET: &str = "SSN-SECRET-";

fn setup(d: &Path) -> std::path::PathBuf {
    exec(
        &d.join("crm.db"),
        "CREATE TABLE people (
             id INTEGER PRIMARY KEY, firstName TEXT, lastName TEXT, dob TEXT, balance_cents INTEGER,
             status INTEGER, email TEXT, ssn TEXT
         );
         INSERT INTO people VALUES (1, 'Ada', 'Lovelace', '12/10/1815', 1250, 1, 'Ada@Example.com', 'SSN-SECRET-0001');
         INSERT INTO people VALUES (2, 'Grace', 'Hopper', '12/09/1906', 0, 1, 'grace@example.com', 'SSN-SECRET-0002');
         INSERT INTO people VALUES (3, 'Alan', 'Turing', '06/23/1912', 99, 0, 'alan@example.com', 'SSN-SECRET-0003');
         INSERT INTO people VALUES (4, 'Edsger', 'Dijkstra', '05/11/1930', 5, 1, 'not-an-address', 'SSN-SECRET-0004');
         INSERT INTO people VALUES (5, 'Barbara', 'Liskov', '11/07/1939', 7, 9, 'barbara@example.com', 'SSN-SECRET-0005');",
    );
    exec(
        &d.join("shop.db"),
        "CREATE TABLE customers (
             customer_id INTEGER PRIMARY KEY, fname TEXT, lname TEXT, birthday TEXT, balance TEXT,
             status TEXT, mail TEXT, label TEXT, country TEXT
         );",
    );
    let crm = System::sqlite("crm", "crm", "crm.db")
        .entity(
            "contacts",
            &[r#"direction = "read""#, r#"settings = { table = "people" }"#],
        )
        .fields(
            "contacts",
            &[
                r#"first_name = { from = "firstName" }"#,
                r#"last_name = { from = "lastName" }"#,
                r#"birthday = { from = "dob", type = "date", format = "%m/%d/%Y" }"#,
                r#"balance = { from = "balance_cents", type = "decimal", decimal = "minor", scale = 2 }"#,
                r#"status = { values = { Active = 1, Inactive = 0 } }"#,
                r#"email = { case = "lower" }"#,
            ],
        );
    let shop = System::sqlite("shop", "shop", "shop.db")
        .entity(
            "contacts",
            &[
                r#"direction = "write""#,
                r#"primary_key = "customer_id""#,
                r#"rename = { fname = "first_name", lname = "last_name", mail = "email" }"#,
                r#"filter = "status == 'Active'""#,
                r#"settings = { table = "customers" }"#,
            ],
        )
        .fields(
            "contacts",
            &[
                r#"balance = { type = "decimal", decimal = "text", scale = 2 }"#,
                r#"label = { compute = "{{ first_name }} {{ last_name }} ({{ birthday[:4] }})" }"#,
                r#"country = { default = "US" }"#,
            ],
        );
    let rules = r#"
[entities.contacts.fields]
email = { required = true, format = "email" }
status = { enum = ["Active", "Inactive"] }
balance = { type = "decimal", min = 0 }
ssn = { sensitive = true }
"#;
    write_manifest(
        d,
        &format!("{}{rules}{crm}{shop}", entity("contacts", "id", &[])),
    )
}

#[test]
fn conversions_filters_validation_and_sensitive_fields_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d);
    let log = weir_env(
        WEIR,
        &m,
        &["sync", "--quiet"],
        &[("WEIR_LOG", "weir=trace")],
    );
    let (stdout, stderr) = (&log.stdout, &log.stderr);
    std::fs::write(d.join("sync.log"), format!("{stdout}{stderr}")).unwrap();
    // A log written to a pipe or a file has no colour codes.
    assert!(
        stderr.contains("TRACE") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    assert_eq!(log.code, 1, "two records are invalid: {stdout}{stderr}");
    assert!(
        stdout.contains("run 1: 5 read, 2 written"),
        "{stdout}{stderr}"
    );

    // Converted, mapped, computed and defaulted; the inactive contact is filtered out.
    assert_eq!(
        rows(
            &d.join("shop.db"),
            "SELECT fname, lname, birthday, balance, status, mail, label, country FROM customers"
        ),
        vec![
            [
                "Ada",
                "Lovelace",
                "1815-12-10",
                "12.50",
                "Active",
                "ada@example.com",
                "Ada Lovelace (1815)",
                "US"
            ]
            .map(|s| Some(s.to_string()))
            .to_vec(),
            [
                "Grace",
                "Hopper",
                "1906-12-09",
                "0.00",
                "Active",
                "grace@example.com",
                "Grace Hopper (1906)",
                "US"
            ]
            .map(|s| Some(s.to_string()))
            .to_vec(),
        ]
    );

    // Invalid records are dead letters naming the field and the rule, and never reach the shop.
    let letters = weir(WEIR, &m, &["dead-letters"]);
    std::fs::write(d.join("dead-letters.txt"), &letters.stdout).unwrap();
    assert!(letters.stdout.contains("crm/contacts record 4: invalid record: field 'email' breaks rule 'format': 'not-an-address' is not an e-mail address"), "{letters:?}");
    assert!(letters.stdout.contains("crm/contacts record 5: cannot map the record: field 'status': value 9 of system field 'status' has no entry in `values`"), "{letters:?}");

    // The sensitive field appears nowhere weir wrote: store, logs, audit, dead letters.
    let audit = weir(WEIR, &m, &["audit", "--verbose"]);
    assert!(audit.stdout.contains("read:create ok"), "{audit:?}");
    std::fs::write(d.join("audit.txt"), &audit.stdout).unwrap();
    let status = weir(WEIR, &m, &["status"]);
    std::fs::write(d.join("status.txt"), &status.stdout).unwrap();
    let mut scanned = 0;
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !path.is_file() || name.starts_with("crm.db") || name == "weir.toml" {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "sensitive value found in {name}"
        );
        scanned += 1;
    }
    assert!(
        scanned >= 6,
        "store, its WAL, the shop, the log, the audit and dead-letter exports were scanned"
    );
    let golden = text(
        &d.join("weir.db"),
        "SELECT data FROM golden WHERE global_id = 1",
    );
    assert!(!golden.contains("ssn"), "{golden}");
}

#[test]
fn bad_mappings_are_caught_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d);
    let text = std::fs::read_to_string(&m).unwrap();
    let cases = [
        (
            "format = \"%m/%d/%Y\"",
            "format = \"%Q\"",
            "fields.birthday.format: bad format '%Q'",
        ),
        (
            "type = \"date\", ",
            "",
            "fields.birthday.format: 'format' applies only to type = \"date\" or \"timestamp\"",
        ),
        (
            "filter = \"status == 'Active'\"",
            "filter = \"status ==\"",
            "systems.shop.entities.contacts.filter: bad filter expression",
        ),
        (
            "min = 0",
            "min = \"zero\"",
            "entities.contacts.fields.balance.min: 'zero' is not a number",
        ),
        (
            "format = \"email\"",
            "format = \"mail\"",
            "unknown variant `mail`",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(text.contains(from), "{from}");
        std::fs::write(&m, text.replacen(from, to, 1)).unwrap();
        let run = weir(WEIR, &m, &["check"]);
        assert_eq!(run.code, 2, "{to}: {run:?}");
        assert!(
            run.stderr.contains(expect),
            "{to}: expected {expect:?} in {run:?}"
        );
        assert!(run.stderr.contains("weir.toml:"), "{run:?}");
    }
    assert!(!d.join("weir.db").exists(), "nothing ran");
}

#[test]
fn check_reports_mappings_that_do_not_fit_the_connector_schema() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = setup(d);
    let ok = weir(WEIR, &m, &["check"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let text = std::fs::read_to_string(&m).unwrap();
    let broken = text
        .replacen(
            "first_name = { from = \"firstName\" }",
            "first_name = { from = \"givenName\" }",
            1,
        )
        .replacen(
            "from = \"dob\", type = \"date\"",
            "from = \"balance_cents\", type = \"date\"",
            1,
        )
        .replacen("fname = \"first_name\"", "forename = \"first_name\"", 1);
    std::fs::write(&m, broken).unwrap();
    let run = weir(WEIR, &m, &["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    for expect in [
        "systems.crm.entities.contacts.fields.first_name: field 'givenName' is not in the system's schema (it has: id, firstName,",
        "systems.crm.entities.contacts.fields.birthday: the conversion of 'birthday' cannot apply to field 'balance_cents' of type integer",
        "systems.shop.entities.contacts.rename.forename: field 'forename' is not in the system's schema",
        "3 problem(s) found",
    ] {
        assert!(run.stdout.contains(expect), "missing {expect:?} in {run:?}");
    }
    assert!(
        run.stdout.contains("weir.toml:"),
        "problems carry the manifest line: {run:?}"
    );
    assert!(
        !d.join("weir.db").exists() || weir(WEIR, &m, &["status"]).stdout.contains("no runs yet")
    );
}
