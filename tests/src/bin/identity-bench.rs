//! Benchmark: the first two-way sync of two SQLite CRMs that already share
//! half of their contacts, matched by e-mail (`match_on = ["email"]`),
//! through the wasm `sql` connector.
//!
//! `identity-bench [COUNT...]` (default 100000 1000000): for each count N,
//! in a fresh process, CRM `a` holds N contacts and CRM `b` N: N/2 of a's
//! people (every third address in upper case, every sixth with another
//! last name) and N/2 of its own. Prints, per pass (`first sync`, then
//! `second sync`, which writes nothing), the records read and written, the
//! matched, created and ambiguous counts, seconds, peak RSS and the central
//! store's size.

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use weir::engine::{SyncOptions, SyncReport};
use weir_tests::System;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice() {
        if flag == "--one" {
            return one(n.parse()?);
        }
    }
    let counts: Vec<String> = if args.is_empty() {
        vec!["100000".into(), "1000000".into()]
    } else {
        args
    };
    println!(
        "{:>9}  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  {:>9}  {:>9}",
        "records",
        "pass",
        "read",
        "written",
        "matched",
        "created",
        "ambiguous",
        "seconds",
        "peak RSS",
        "store MiB"
    );
    for n in counts {
        let status = Command::new(std::env::current_exe()?)
            .args(["--one", &n])
            .status()?;
        if !status.success() {
            return Err(format!("benchmark of {n} records failed").into());
        }
    }
    Ok(())
}

fn one(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    weir_tests::crm_db(&d.join("a.db"), n)?;
    weir_tests::crm_db(&d.join("b.db"), 0)?;
    let half = n / 2;
    let b = rusqlite::Connection::open(d.join("b.db"))?;
    b.execute_batch(&format!(
        "ATTACH '{}' AS a;
         INSERT INTO contacts (first_name, last_name, email, phone)
            SELECT first_name,
                   CASE WHEN id % 6 = 1 THEN last_name || '-Smith' ELSE last_name END,
                   CASE WHEN id % 3 = 0 THEN upper(email) ELSE email END,
                   phone
            FROM a.contacts WHERE id <= {half} ORDER BY id;
         INSERT INTO contacts (first_name, last_name, email, phone)
            SELECT first_name, last_name, 'b-' || email, phone
            FROM a.contacts WHERE id > {half} ORDER BY id;
         DETACH a;",
        d.join("a.db").display()
    ))?;
    drop(b);
    let system = |name: &str| {
        System::sqlite(name, name, &format!("{name}.db")).tracked(
            "contacts",
            "contacts",
            "both",
            &[],
        )
    };
    let text = format!(
        "[store]\npath = \"weir.db\"\n{}{}{}",
        weir_tests::entity("contacts", "id", &[r#"match_on = ["email"]"#]),
        system("a"),
        system("b"),
    );
    let path = d.join("weir.toml");
    std::fs::write(&path, text)?;
    let m = weir::manifest::Manifest::load(&path).map_err(|e| e.to_string())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runtime = weir::runtime::Runtime::new(Some(d.join("cache")))?;
    runtime
        .load(&weir_tests::connector("sql"))
        .map_err(|e| e.to_string())?;
    let pass = |label: &str| -> Result<SyncReport, Box<dyn std::error::Error>> {
        let options = SyncOptions {
            batch_size: 1000,
            progress: false,
            ..SyncOptions::default()
        };
        let start = Instant::now();
        let report = rt.block_on(weir::engine::sync(&m, &runtime, &options))?;
        let secs = start.elapsed().as_secs_f64();
        let c = report.counts;
        let ids = report.identity.values().fold((0, 0, 0), |(m, c, a), i| {
            (m + i.matched, c + i.created, a + i.ambiguous)
        });
        println!(
            "{n:>9}  {label:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {secs:>8.2}  {:>5} MiB  {:>9.1}",
            c.read,
            c.written,
            ids.0,
            ids.1,
            ids.2,
            peak_rss_kib() / 1024,
            store_size(&m.store) as f64 / (1 << 20) as f64,
        );
        Ok(report)
    };
    let first = pass("first sync")?;
    // Each shared person is matched; everyone else is created once and
    // written to the other CRM (and a shared person whose copies differ is
    // a conflict, its result written to the CRM that lost).
    assert!(first.counts.written >= n as u64, "{first:?}");
    let second = pass("second sync")?;
    assert_eq!(second.counts.written, 0, "{second:?}");
    Ok(())
}

/// The process's peak resident set size (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the central store, WAL included.
fn store_size(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}
