//! `weir backup PATH` and `weir restore PATH`.

use crate::cli::{BackupArgs, RestoreArgs};
use crate::manifest::Manifest;
use crate::store::Store;
use std::process::ExitCode;

/// `weir backup PATH`: SQLite's online backup into a new file.
pub(in crate::cli) fn backup(manifest: &Manifest, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let path = &args.path;
    if path.exists() {
        anyhow::bail!(
            "'{}' exists already: give a new file name (a backup never overwrites)",
            path.display()
        );
    }
    let store = Store::open(&manifest.store)?;
    let bytes = store.backup_to(path)?;
    println!(
        "backup: {} ({bytes} bytes) of {}",
        path.display(),
        manifest.store.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `weir restore PATH`: the store's content replaced by a backup's.
pub(in crate::cli) fn restore(manifest: &Manifest, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let path = &args.path;
    if !path.is_file() {
        anyhow::bail!(
            "no backup at '{}': give a file written by `weir backup`",
            path.display()
        );
    }
    let mut store = Store::open(&manifest.store)?;
    let version = store.restore_from(path)?;
    drop(store);
    // Migrates a backup taken by an older weir; every source is read in
    // full at its next poll: what changed since the backup is found, and
    // what weir created since is recognised by its content or key.
    let mut store = Store::open(&manifest.store)?;
    store.resync_all(&format!(
        "the store was restored from {} at {}",
        path.display(),
        crate::store::now()
    ))?;
    println!(
        "restored {} from {} (schema version {version})",
        manifest.store.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
