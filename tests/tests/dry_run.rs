//! `weir sync --dry-run` prints the plan and writes nothing. The expected
//! output is a golden file; `WEIR_BLESS=1 cargo test` rewrites it.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn dry_run_prints_the_plan_with_field_differences_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 5).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system(),
            csv_target(d, "contacts", "out", "csv"),
        ),
    );
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    exec(
        &d.join("crm.db"),
        "UPDATE contacts SET email = 'changed@example.com', phone = NULL WHERE id = 2;
         DELETE FROM contacts WHERE id = 3;
         INSERT INTO contacts (id, first_name, last_name, email, phone) VALUES (6, 'Radia', 'Perlman', 'radia@example.com', '+1 555 0100');",
    );

    let files = ["weir.db", "shop.db", "csv/contacts.csv"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    let plan = weir(WEIR, &m, &["sync", "--dry-run", "--full"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    for ((f, b), a) in files.iter().zip(&before).zip(&after) {
        assert!(b == a, "{f} changed during a dry run");
    }

    let golden = repo_root().join("tests/golden/dry-run.txt");
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&golden, &plan.stdout).unwrap();
    }
    let expected = std::fs::read_to_string(&golden)
        .expect("tests/golden/dry-run.txt (WEIR_BLESS=1 writes it)");
    assert_eq!(plan.stdout, expected, "the plan differs from tests/golden/dry-run.txt; if the change is intended, rerun with WEIR_BLESS=1");

    // The real pass makes exactly the planned writes.
    let real = weir(WEIR, &m, &["sync", "--quiet", "--full"]);
    assert!(real.stdout.contains(" 4 written, 2 deleted, "), "{real:?}");
    let again = weir(WEIR, &m, &["sync", "--dry-run"]);
    assert_eq!(
        again.stdout, "dry run: nothing was written; `weir sync` would now make 0 write(s)\n",
        "{again:?}"
    );
}
