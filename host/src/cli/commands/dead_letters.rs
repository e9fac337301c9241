//! `weir dead-letters`: records systems refused, and `retry ID`.

use crate::cli::{DeadLetterAction, DeadLettersArgs};
use crate::manifest::Manifest;
use crate::store::{Retry, Store};
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest, args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => list(manifest),
        Some(DeadLetterAction::Retry { id }) => retry(manifest, id),
    }
}

/// `weir dead-letters`: the latest thousand.
fn list(manifest: &Manifest) -> anyhow::Result<ExitCode> {
    let store = Store::open(&manifest.store)?;
    for d in store.dead_letters(1000)? {
        println!("{d}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir dead-letters retry ID`: queued again for the next sync.
fn retry(manifest: &Manifest, id: i64) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&manifest.store)?;
    match store.retry_dead_letter(id)? {
        Retry::Queued { system, entity } => {
            println!("dead letter #{id} queued for {system}/{entity}: it is delivered at the next `weir sync`");
            Ok(ExitCode::SUCCESS)
        }
        Retry::FromSource { system } => {
            eprintln!("error: dead letter #{id} is a bad record read from system '{system}'; correct it there and it is read again at the next sync");
            Ok(ExitCode::from(1))
        }
        Retry::Missing => {
            eprintln!("error: there is no dead letter #{id}; list them with `weir dead-letters`");
            Ok(ExitCode::from(1))
        }
    }
}
