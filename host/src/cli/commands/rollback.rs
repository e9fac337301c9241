//! `weir rollback RUN`: undoes a run.

use crate::cli::RollbackArgs;
use crate::engine::{self, SyncOptions};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
    args: &RollbackArgs,
) -> anyhow::Result<ExitCode> {
    let run = args.run;
    let _lease = engine::writer_lease(manifest, args.wait)?;
    let report = engine::rollback(manifest, runtime, run, &SyncOptions::default()).await?;
    let c = report.counts;
    println!(
        "run {} (rollback of run {run}): {} record(s) put back, {} written, {} deleted, {} unchanged, {} failed",
        report.run_id, c.read, c.written, c.deleted, c.skipped, c.failed
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    if c.failed > 0 {
        eprintln!(
            "{} write(s) failed: see `weir dead-letters`; the rest of the rollback is done",
            c.failed
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
