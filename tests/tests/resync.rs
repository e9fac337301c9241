//! A full read (RESYNC) after a fault: a source whose polls failed for
//! longer than its system's `resync_after_failure` is read in full once it
//! works again, so that what its change feed cannot tell (a row deleted
//! meanwhile, with no tombstone) is found; likewise after a restore.

use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// A manifest syncing the CRM's contacts (read by their changes) to the shop.
fn crm_to_shop(d: &std::path::Path) -> std::path::PathBuf {
    write_manifest(
        d,
        &format!(
            "{}{}{}",
            entity("contacts", "id", &[]),
            crm_system("read"),
            shop_system()
        ),
    )
}

/// The CRM's database goes away, a file that is not a database in its
/// place (a missing file would stop weir before it starts).
fn take_away(d: &std::path::Path) {
    std::fs::rename(d.join("crm.db"), d.join("crm.away")).unwrap();
    std::fs::write(d.join("crm.db"), "not a database, and longer than a header").unwrap();
}

/// The CRM's database is back.
fn bring_back(d: &std::path::Path) {
    std::fs::rename(d.join("crm.away"), d.join("crm.db")).unwrap();
}

#[test]
fn a_source_back_after_a_long_failure_is_read_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 30).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = crm_to_shop(d);
    let store = d.join("weir.db");
    let shop = d.join("shop.db");
    let first = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 30);

    // The CRM goes away: its polls fail.
    take_away(d);
    let down = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(down.code, 1, "{down:?}");
    let failing = text(
        &store,
        "SELECT count(*) FROM source_health WHERE system = 'crm' AND failing_since IS NOT NULL",
    );
    assert_eq!(failing, "1");
    // Meanwhile a row is deleted there; a change read cannot see it.
    exec(&d.join("crm.away"), "DELETE FROM contacts WHERE id = 7");
    bring_back(d);

    // Back soon: the next pass reads the changes only, and the delete stays unseen.
    let soon = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(soon.code, 0, "{soon:?}");
    assert!(!soon.stderr.contains("RESYNC"), "{soon:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 30);

    // Failing again, for longer than resync_after_failure (1 hour): the
    // first pass that works reads the CRM in full and finds the delete.
    take_away(d);
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 1);
    exec(
        &store,
        "UPDATE source_health SET failing_since = '2000-01-01T00:00:00.000Z' WHERE system = 'crm'",
    );
    bring_back(d);
    let back = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(
        back.stderr.contains(
            "contacts read in full from crm (RESYNC): its polls failed from 2000-01-01T00:00:00.000Z on, for longer than resync_after_failure = 1h"
        ),
        "{back:?}"
    );
    assert!(back.stdout.contains("1 deleted"), "{back:?}");
    assert_eq!(count(&shop, "SELECT count(*) FROM customers"), 29);
    let status = weir(WEIR, &m, &["status"]);
    assert!(
        status
            .stdout
            .contains("crm contacts: last read in full after a fault at"),
        "{status:?}"
    );
    // Done once: the pass after reads the changes only.
    let after = weir(WEIR, &m, &["sync", "--quiet"]);
    assert!(!after.stderr.contains("RESYNC"), "{after:?}");
}

#[test]
fn every_source_is_read_in_full_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crm_db(&d.join("crm.db"), 10).unwrap();
    shop_db(&d.join("shop.db")).unwrap();
    let m = crm_to_shop(d);
    assert_eq!(weir(WEIR, &m, &["sync", "--quiet"]).code, 0);
    let backup = d.join("backup.db");
    assert_eq!(
        weir(WEIR, &m, &["backup", backup.to_str().unwrap()]).code,
        0
    );
    let restored = weir(WEIR, &m, &["restore", backup.to_str().unwrap()]);
    assert_eq!(restored.code, 0, "{restored:?}");
    let next = weir(WEIR, &m, &["sync", "--quiet"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert!(
        next.stderr
            .contains("contacts read in full from crm (RESYNC): the store was restored from"),
        "{next:?}"
    );
    assert!(next.stdout.contains("10 read"), "{next:?}");
}
