//! A dry run: the pass runs on a copy of the central store and records
//! what it would write, with the fields that differ from what weir last
//! delivered.

use super::error::SyncError;
use super::report::PlanLine;
use super::work::{Kind, Planned};
use crate::manifest::{Manifest, SystemEntity};
use crate::mapping::Record;
use crate::store::Store;
use serde_json::Value;
use std::path::PathBuf;

/// A temporary folder for a dry run's copy of the central store, removed
/// with everything in it when dropped.
pub(super) struct Scratch {
    pub(super) dir: PathBuf,
}

impl Scratch {
    /// Makes the folder.
    pub(super) fn new() -> Result<Scratch, SyncError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("weir-dry-run-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| SyncError::Scratch {
            path: dir.clone(),
            source,
        })?;
        Ok(Scratch { dir })
    }

    /// The manifest with its store moved to a copy of the central store in
    /// this folder, and the dry run that compares against the original.
    pub(super) fn copy(&self, manifest: &Manifest) -> Result<(Manifest, DryRun), SyncError> {
        let copy = self.dir.join("weir.db");
        let before = if manifest.store.exists() {
            let original = Store::open_read_only(&manifest.store)?;
            original.copy_to(&copy)?;
            Some(original)
        } else {
            None
        };
        let mut planned = manifest.clone();
        planned.store = copy;
        let dry = DryRun {
            before,
            lines: Vec::new(),
        };
        Ok((planned, dry))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The state of a dry run.
pub(super) struct DryRun {
    /// The real store, to compare against.
    pub(super) before: Option<Store>,
    /// What would be written.
    pub(super) lines: Vec<PlanLine>,
}

/// Describes a planned write for a dry run, with the fields that differ from
/// what weir last delivered of this record (the golden record before this pass).
pub(super) fn plan_line(
    before: Option<&Store>,
    target: &str,
    tb: &SystemEntity,
    p: &Planned,
) -> Result<PlanLine, SyncError> {
    let after: Record = p
        .item
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let previous: Option<Record> = match (before, p.kind) {
        (Some(store), Kind::Update) => store
            .golden(p.gid)?
            .and_then(|g| serde_json::from_str::<Record>(&g.data).ok())
            .and_then(|c| tb.mapping.from_canonical(&c).ok()),
        _ => None,
    };
    let mut changes: Vec<(String, Option<Value>, Value)> = after
        .into_iter()
        .filter(|(k, v)| previous.as_ref().and_then(|prev| prev.get(k)) != Some(v))
        .map(|(k, v)| {
            let old = previous.as_ref().and_then(|prev| prev.get(&k).cloned());
            (k, old, v)
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let kind = match p.kind {
        Kind::Create => "create",
        Kind::Update => "update",
        Kind::Delete => "delete",
        Kind::SoftDelete => "soft-delete",
    };
    Ok(PlanLine {
        target: target.to_string(),
        entity: tb.name.clone(),
        kind,
        local_id: p.item.id.clone(),
        changes,
    })
}
