//! Benchmark: full syncs of generated contacts from one SQLite database to
//! another (renamed fields) through the wasm `sql` connector.
//!
//! `weir-bench [COUNT...]` (default 100000 1000000) runs each count in a fresh
//! process and prints, per count: the first pass (everything is written), the
//! second pass (everything is read, nothing is written), records/s, the
//! process's peak RSS and the central store's size.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

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
        "{:>9}  {:>10}  {:>12}  {:>10}  {:>12}  {:>9}  {:>12}",
        "records", "1st pass s", "1st rec/s", "2nd pass s", "2nd rec/s", "peak RSS", "store bytes"
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
    weir_tests::crm_db(&d.join("crm.db"), n)?;
    weir_tests::shop_db(&d.join("shop.db"))?;
    let manifest = weir_tests::write_manifest(
        d,
        &format!(
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
            sql = weir_tests::toml_path(&weir_tests::connector("sql"))
        ),
    );
    let manifest = weir::manifest::Manifest::load(&manifest).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runtime = weir::runtime::Runtime::new(Some(d.join("cache")))?;
    let options = weir::engine::SyncOptions {
        batch_size: 1000,
        progress: false,
    };
    // Compile the component outside the measured passes.
    runtime
        .load(&weir_tests::connector("sql"))
        .map_err(|e| e.to_string())?;
    let mut passes = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let report = rt.block_on(weir::engine::sync(&manifest, &runtime, &options))?;
        let secs = start.elapsed().as_secs_f64();
        if !report.is_clean() || report.counts.read != n as u64 {
            return Err(format!("sync was not clean: {report:?}").into());
        }
        passes.push((secs, report.counts));
    }
    assert_eq!(
        passes[0].1.written, n as u64,
        "first pass writes everything"
    );
    assert_eq!(passes[1].1.written, 0, "second pass writes nothing");
    println!(
        "{:>9}  {:>10.2}  {:>12.0}  {:>10.2}  {:>12.0}  {:>6} MiB  {:>12}",
        n,
        passes[0].0,
        n as f64 / passes[0].0,
        passes[1].0,
        n as f64 / passes[1].0,
        peak_rss_kib() / 1024,
        store_size(&manifest.store)
    );
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
