//! `weir held`: changes held for review, and `approve ID` / `reject ID`.

use crate::cli::{HeldAction, HeldArgs};
use crate::manifest::Manifest;
use crate::store::Store;
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest, args: &HeldArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&manifest.store)?;
    let (id, approve) = match args.action {
        None => return list(&store),
        Some(HeldAction::Approve { id }) => (id, true),
        Some(HeldAction::Reject { id }) => (id, false),
    };
    if store.decide_held(id, approve)? {
        let verb = if approve {
            "approved: it is applied"
        } else {
            "rejected: it is dropped"
        };
        println!("held change #{id} {verb} at the next `weir sync`");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: there is no held change #{id}; list them with `weir held`");
        Ok(ExitCode::from(1))
    }
}

/// `weir held`: every held change.
fn list(store: &Store) -> anyhow::Result<ExitCode> {
    for h in store.held(None)? {
        println!(
            "#{} {} {}/{} record {} by {} [{}]: {}",
            h.id,
            h.held_at,
            h.system,
            h.entity,
            h.local_id,
            h.actor.as_deref().unwrap_or("-"),
            h.status,
            h.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
