//! Benchmark: syncs of generated contacts between two SQLite databases (with
//! different column names) through the wasm `sql` connector.
//!
//! `weir-bench [COUNT...]` (default 100000 1000000) runs each count in a fresh
//! process and prints one line per pass:
//! - `one-way 1st`: full read of the CRM, everything written to the shop;
//! - `one-way 2nd`: full read again, nothing written;
//! - `two-way resync`: both systems `both`, first pass (CRM → shop);
//! - `two-way echo`: incremental; the shop reports weir's own writes, all echoes;
//! - `two-way 1%`: 1% of the CRM's contacts changed, incremental;
//! - `two-way 1% echo`: the shop reports those writes back, all echoes;
//! - `two-way 10%`, `two-way 10% echo`: the same with a tenth of them;
//! - `two-way full`: `--full` over both systems, nothing written.
//!
//! with records read, written and echoed, seconds, records read per second, the
//! process's peak RSS and the central store's size (and per million records).

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
        "{:>9}  {:<16} {:>9} {:>9} {:>9} {:>8} {:>10}  {:>9}  {:>11}  {:>13}",
        "records",
        "pass",
        "read",
        "written",
        "echoes",
        "seconds",
        "read/s",
        "peak RSS",
        "store MiB",
        "store MiB/1M"
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

fn shop_with_updated_at(path: &Path) -> rusqlite::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE customers (
             customer_id INTEGER PRIMARY KEY,
             fname TEXT NOT NULL,
             lname TEXT NOT NULL,
             mail TEXT NOT NULL,
             phone TEXT,
             modified TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         );
         CREATE INDEX customers_modified ON customers (modified, customer_id);
         CREATE TRIGGER customers_touch AFTER UPDATE ON customers FOR EACH ROW WHEN NEW.modified = OLD.modified
         BEGIN
             UPDATE customers SET modified = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE customer_id = NEW.customer_id;
         END;",
    )
}

fn manifest(
    d: &Path,
    name: &str,
    two_way: bool,
) -> Result<weir::manifest::Manifest, Box<dyn std::error::Error>> {
    let (crm_dir, shop_dir, crm_at, shop_at) = if two_way {
        (
            "both",
            "both",
            ", updated_at = \"updated_at\"",
            ", updated_at = \"modified\"",
        )
    } else {
        ("read", "write", "", "")
    };
    let crm = System::sqlite("crm", "crm", &format!("{name}-crm.db")).entity(
        "contacts",
        &[
            &format!("direction = \"{crm_dir}\""),
            r#"ignore = ["updated_at"]"#,
            &format!("settings = {{ table = \"contacts\"{crm_at} }}"),
        ],
    );
    let shop = System::sqlite("shop", "shop", &format!("{name}-shop.db")).entity(
        "contacts",
        &[
            &format!("direction = \"{shop_dir}\""),
            r#"primary_key = "customer_id""#,
            r#"rename = { fname = "first_name", lname = "last_name", mail = "email" }"#,
            r#"ignore = ["modified"]"#,
            &format!("settings = {{ table = \"customers\"{shop_at} }}"),
        ],
    );
    let text = format!(
        "[store]\npath = \"{name}.db\"\n{}{crm}{shop}",
        weir_tests::entity("contacts", "id", &[])
    );
    let path = d.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(weir::manifest::Manifest::load(&path).map_err(|e| e.to_string())?)
}

fn one(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runtime = weir::runtime::Runtime::new(Some(d.join("cache")))?;
    // Compile the component outside the measured passes.
    runtime
        .load(&weir_tests::connector("sql"))
        .map_err(|e| e.to_string())?;
    let pass = |m: &weir::manifest::Manifest,
                label: &str,
                full: bool|
     -> Result<SyncReport, Box<dyn std::error::Error>> {
        let options = SyncOptions {
            batch_size: 1000,
            progress: false,
            full,
            ..SyncOptions::default()
        };
        let start = Instant::now();
        let report = rt.block_on(weir::engine::sync(m, &runtime, &options))?;
        let secs = start.elapsed().as_secs_f64();
        if !report.is_clean() {
            return Err(format!("{label}: sync was not clean: {report:?}").into());
        }
        let c = report.counts;
        let store = store_size(&m.store) as f64 / (1 << 20) as f64;
        println!(
            "{n:>9}  {label:<16} {:>9} {:>9} {:>9} {secs:>8.2} {:>10.0}  {:>5} MiB  {store:>11.1}  {:>13.1}",
            c.read,
            c.written,
            c.echoes,
            c.read as f64 / secs,
            peak_rss_kib() / 1024,
            store * 1_000_000.0 / n as f64
        );
        Ok(report)
    };

    weir_tests::crm_db(&d.join("one-crm.db"), n)?;
    weir_tests::shop_db(&d.join("one-shop.db"))?;
    let m = manifest(d, "one", false)?;
    let r = pass(&m, "one-way 1st", false)?;
    assert_eq!(
        r.counts.written, n as u64,
        "the first pass writes everything"
    );
    let r = pass(&m, "one-way 2nd", false)?;
    assert_eq!(r.counts.written, 0, "the second pass writes nothing");

    weir_tests::crm_db(&d.join("two-crm.db"), n)?;
    shop_with_updated_at(&d.join("two-shop.db"))?;
    let m = manifest(d, "two", true)?;
    let r = pass(&m, "two-way resync", false)?;
    assert_eq!(r.counts.written, n as u64);
    let r = pass(&m, "two-way echo", false)?;
    assert_eq!(
        (r.counts.written, r.counts.echoes),
        (0, n as u64),
        "weir's own writes come back as echoes"
    );
    let conn = rusqlite::Connection::open(d.join("two-crm.db"))?;
    let changed = conn.execute(
        "UPDATE contacts SET phone = 'changed ' || id WHERE id % 100 = 0",
        [],
    )?;
    let r = pass(&m, "two-way 1%", false)?;
    assert_eq!(r.counts.written, changed as u64);
    let r = pass(&m, "two-way 1% echo", false)?;
    assert_eq!((r.counts.written, r.counts.echoes), (0, changed as u64));
    let changed = conn.execute(
        "UPDATE contacts SET phone = 'again ' || id WHERE id % 10 = 0",
        [],
    )?;
    let r = pass(&m, "two-way 10%", false)?;
    assert_eq!(r.counts.written, changed as u64);
    let r = pass(&m, "two-way 10% echo", false)?;
    assert_eq!((r.counts.written, r.counts.echoes), (0, changed as u64));
    let r = pass(&m, "two-way full", true)?;
    assert_eq!(r.counts.written, 0);
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
