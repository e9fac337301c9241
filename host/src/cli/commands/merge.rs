//! `weir merge ENTITY GID GID [--keep GID]`: two golden records become one.

use crate::cli::MergeArgs;
use crate::engine::{self, SyncOptions};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use anyhow::bail;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
    args: &MergeArgs,
) -> anyhow::Result<ExitCode> {
    let (keep, other) = match args.keep {
        None => (args.first, args.second),
        Some(k) if k == args.first => (args.first, args.second),
        Some(k) if k == args.second => (args.second, args.first),
        Some(k) => bail!(
            "--keep {k} is neither of the records to merge ({} and {}): name one of them",
            args.first,
            args.second
        ),
    };
    let _lease = engine::writer_lease(manifest, args.wait)?;
    let options = SyncOptions::default();
    let report = engine::merge(manifest, runtime, &args.entity, keep, other, &options).await?;
    let c = report.counts;
    println!(
        "run {} (merge of {} record {other} into {keep}): {} written, {} deleted, {} failed; `weir rollback {}` undoes it",
        report.run_id, args.entity, c.written, c.deleted, c.failed, report.run_id
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    if c.failed > 0 {
        eprintln!(
            "{} write(s) failed: see `weir dead-letters`; they are tried again at the next pass",
            c.failed
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
