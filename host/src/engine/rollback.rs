//! Undoing a run: every golden record it changed put back as it was
//! before, and queued for every system that takes writes of the entity.

use super::error::SyncError;
use super::golden::{self, Audit, Put, State};
use super::pass::Pass;
use crate::manifest::Manifest;
use crate::mapping;
use crate::store::{self, parse_record, AuditOp, Outcome, Store, Tx};
use std::collections::BTreeSet;

/// The changes of run `target` to undo, once the store says it may be
/// rolled back: the run exists, changed something, and no later run
/// changed those records again.
pub(super) fn changes_to_undo(
    manifest: &Manifest,
    target: i64,
) -> Result<Vec<store::RunChange>, SyncError> {
    let store = Store::open(&manifest.store).map_err(SyncError::Open)?;
    if !store.run_exists(target)? {
        return Err(SyncError::NoSuchRun(target));
    }
    let changes = store.run_changes(target)?;
    if changes.is_empty() {
        return Err(SyncError::NothingToRollBack(target));
    }
    let later = store.later_changes(target)?;
    if !later.is_empty() {
        return Err(SyncError::ChangedSince {
            run: target,
            records: later.join(", "),
        });
    }
    Ok(changes)
}

impl<'m> Pass<'_, 'm> {
    /// Puts back every golden record run `target` changed as it was before
    /// it, and queues the result for every system that takes writes of the
    /// entity, in one transaction with `rollback:*` audit rows.
    pub(super) fn undo(
        &mut self,
        manifest: &Manifest,
        target: i64,
        changes: &[store::RunChange],
    ) -> Result<(), SyncError> {
        let run_id = self.run_id;
        let actor = format!("rollback of run {target}");
        let mut kept = BTreeSet::new();
        // A merge linked systems' records of the other record to the
        // survivor: they go back to the record they were.
        let relinks = self.store.run_relinks(target)?;
        self.store.transaction(|tx| {
            for (entity, system, local, gid) in &relinks {
                tx.relink(entity, system, local, *gid)?;
            }
            for c in changes {
                let writers = golden::writers(manifest, &c.entity);
                let merge = matches!(c.operation, AuditOp::MergeUpdate | AuditOp::MergeDelete);
                if !writers.contains(&c.system) && !merge {
                    kept.insert((c.system.clone(), c.entity.clone()));
                }
                put_back(tx, manifest, run_id, &actor, c, writers)?;
            }
            Ok(())
        })?;
        self.report.counts.read += changes.len() as u64;
        for (system, entity) in kept {
            self.report.notes.push(format!(
                "system '{system}' does not take writes of {entity}: its records keep the changes of run {target}"
            ));
        }
        Ok(())
    }
}

/// Puts one record back as it was before the run's change `c`: deleted
/// (in the `writers` that hold it) when the run created it, else its
/// content from before, for every writer.
fn put_back(
    tx: &mut Tx<'_>,
    manifest: &Manifest,
    run_id: i64,
    actor: &str,
    c: &store::RunChange,
    writers: Vec<String>,
) -> store::Result<()> {
    let gid = c.global_id;
    let now = tx.golden(gid)?;
    let current = now.as_ref().filter(|g| !g.deleted).map(|g| g.data.as_str());
    let audit = |operation, after| Audit {
        run_id: Some(run_id),
        system: &c.system,
        local_id: c.local_id.as_deref(),
        actor: Some(actor),
        operation,
        before: current,
        after,
        outcome: Outcome::Ok,
    };
    let Some(before) = &c.before else {
        let mut holding = Vec::new();
        for w in writers {
            if tx.link_by_global(&w, gid)?.is_some() {
                holding.push(w);
            }
        }
        let put = Put {
            entity: &c.entity,
            state: State::Deleted { global_id: gid },
            origin: &c.system,
            audit: audit(AuditOp::RollbackDelete, None),
        };
        golden::put(tx, put, holding.iter().map(String::as_str))?;
        return Ok(());
    };
    let what = || {
        format!(
            "the earlier state of {} record {gid} in the audit",
            c.entity
        )
    };
    let record = parse_record(tx.path(), before, what)?;
    let hash = mapping::hash(&record);
    let key = golden::key_of(manifest, &c.entity, &record);
    let origin = now
        .as_ref()
        .and_then(|g| g.origin.as_deref())
        .unwrap_or(&c.system);
    let operation = if matches!(c.operation, AuditOp::ReadDelete | AuditOp::MergeDelete) {
        AuditOp::RollbackRestore
    } else {
        AuditOp::RollbackUpdate
    };
    let put = Put {
        entity: &c.entity,
        state: State::Changed {
            global_id: gid,
            text: before,
            hash: &hash,
            key: key.as_deref(),
        },
        origin,
        audit: audit(operation, Some(before)),
    };
    golden::put(tx, put, writers.iter().map(String::as_str))?;
    Ok(())
}
