//! `weir conflicts`: recorded conflicts, newest first.

use crate::cli::ConflictsArgs;
use crate::manifest::Manifest;
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest, args: &ConflictsArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::Store::open(&manifest.store)?;
    for c in store.conflicts(args.limit)? {
        let other = c.other_system.as_deref().unwrap_or("-");
        println!(
            "#{} {} {} {}: {} vs {other}: {} wins ({})",
            c.id, c.at, c.entity, c.global_id, c.system, c.winner, c.policy
        );
        if args.verbose {
            println!("    {}: {}", c.system, c.theirs.as_deref().unwrap_or("-"));
            println!("    {other}: {}", c.ours.as_deref().unwrap_or("-"));
            println!("    result: {}", c.result);
        }
    }
    Ok(ExitCode::SUCCESS)
}
