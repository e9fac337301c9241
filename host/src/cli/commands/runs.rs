//! `weir runs`: the latest runs with their figures.

use crate::cli::RunsArgs;
use crate::manifest::Manifest;
use std::process::ExitCode;

/// `weir runs`: the latest runs, newest first.
pub(in crate::cli) fn run(manifest: &Manifest, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::Store::open(&manifest.store)?;
    for r in store.runs(args.limit)? {
        println!(
            "run {} {} -> {} {}: {}{}",
            r.id,
            r.started_at,
            r.finished_at.as_deref().unwrap_or("-"),
            r.status,
            r.counts,
            r.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
