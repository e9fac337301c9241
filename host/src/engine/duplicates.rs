//! `weir merge`: two golden records that are one real-world record
//! (duplicates made before `match_on` existed, or by people) become one.
//! The survivor takes the values of both, the entity's policy deciding a
//! field both hold with different values; a system holding both copies
//! loses the other's (deleted, or soft-deleted, per its `on_delete`); a
//! system holding only the other's has that copy linked to the survivor.
//! The merge is a run of its own, which `weir rollback` undoes.

use super::error::SyncError;
use super::golden::{self, Audit, Put, State};
use super::pass::Pass;
use super::plan;
use crate::manifest::{ConflictPolicy, Manifest};
use crate::mapping::{self, Record};
use crate::store::{AuditOp, Golden, NewAudit, Outcome, Store, Tx};
use serde_json::Value;

/// Checks that record `other` of `entity` can be merged into `keep`.
pub(super) fn check_merge(
    manifest: &Manifest,
    entity: &str,
    keep: i64,
    other: i64,
) -> Result<(), SyncError> {
    let cannot = |why: String| Err(SyncError::CannotMerge(why));
    if manifest.entity(entity).is_none() {
        return cannot(format!("the manifest has no entity '{entity}'"));
    }
    if keep == other {
        return cannot(format!("{keep} and {other} are the same record"));
    }
    let store = Store::open(&manifest.store).map_err(SyncError::Open)?;
    for gid in [keep, other] {
        match store.golden(gid)? {
            None => return cannot(format!("there is no golden record {gid}")),
            Some(g) if g.entity != entity => {
                return cannot(format!(
                    "record {gid} is one of {}, not of {entity}",
                    g.entity
                ))
            }
            Some(g) if g.deleted => return cannot(format!("record {gid} of {entity} is deleted")),
            Some(_) => {}
        }
    }
    Ok(())
}

impl<'m> Pass<'_, 'm> {
    /// Merges golden record `other` of `entity` into `keep`, in one
    /// transaction; the writes go out with the pass's delivery.
    pub(super) fn merge_records(
        &mut self,
        manifest: &'m Manifest,
        entity: &str,
        keep: i64,
        other: i64,
    ) -> Result<(), SyncError> {
        let Some(e) = manifest.entity(entity) else {
            return Err(SyncError::CannotMerge(format!("no entity '{entity}'")));
        };
        let run_id = self.run_id;
        let writers = golden::writers(manifest, entity);
        let (both, moved, left) = self.store.transaction(|tx| {
            let (Some(k), Some(o)) = (tx.golden(keep)?, tx.golden(other)?) else {
                return Ok((Vec::new(), Vec::new(), Vec::new()));
            };
            let origin = k.origin.clone().unwrap_or_else(|| "golden".to_string());
            let merged = merged(e, tx, &k, &o)?;
            let (mut both, mut moved, mut left) = (Vec::new(), Vec::new(), Vec::new());
            for (system, local) in tx.holders(other)? {
                if tx.link_by_global(&system, keep)?.is_some() {
                    // A system weir only reads keeps both: it cannot be told.
                    match writers.contains(&system) {
                        true => both.push(system),
                        false => left.push(system),
                    }
                    continue;
                }
                tx.relink(entity, &system, &local, keep)?;
                tx.audit(NewAudit {
                    run_id: Some(run_id),
                    system: &system,
                    entity,
                    global_id: Some(other),
                    local_id: Some(&local),
                    actor: Some("weir merge"),
                    operation: AuditOp::MergeRelink,
                    before: None,
                    after: None,
                    outcome: Outcome::Ok,
                })?;
                moved.push(system);
            }
            let audit = |operation, before, after| Audit {
                run_id: Some(run_id),
                system: &origin,
                local_id: None,
                actor: Some("weir merge"),
                operation,
                before,
                after,
                outcome: Outcome::Ok,
            };
            let put = Put {
                entity,
                state: State::Deleted { global_id: other },
                origin: &origin,
                audit: audit(AuditOp::MergeDelete, Some(o.data.as_str()), None),
            };
            golden::put(tx, put, both.iter().map(String::as_str))?;
            let text = Value::Object(merged.clone()).to_string();
            let hash = mapping::hash(&merged);
            let key = mapping::match_key(&e.match_on, &merged);
            let put = Put {
                entity,
                state: State::Changed {
                    global_id: keep,
                    text: &text,
                    hash: &hash,
                    key: key.as_deref(),
                },
                origin: &origin,
                audit: audit(AuditOp::MergeUpdate, Some(k.data.as_str()), Some(&text)),
            };
            golden::put(tx, put, writers.iter().map(String::as_str))?;
            Ok((both, moved, left))
        })?;
        self.report.counts.read += 2;
        self.report.notes.push(format!(
            "{entity} record {other} merged into {keep}: deleted in {}; linked to {keep} in {}",
            list(&both),
            list(&moved)
        ));
        if !left.is_empty() {
            self.report.notes.push(format!(
                "{} weir does not write {entity} to: it keeps both copies",
                list(&left)
            ));
        }
        Ok(())
    }
}

/// The values of both records: where only one holds a field (or the other
/// holds it empty) its value, where both hold it with different values
/// the entity's policy decides by their origins (priority, field owners),
/// and under last-writer-wins the record kept, the one a person chose.
fn merged(
    entity: &crate::manifest::Entity,
    tx: &Tx<'_>,
    keep: &Golden,
    other: &Golden,
) -> crate::store::Result<Record> {
    let (k, o) = (keep.record(tx.path())?, other.record(tx.path())?);
    let empty: Record = k
        .keys()
        .chain(o.keys())
        .map(|f| (f.clone(), Value::Null))
        .collect();
    let origin = |g: &Golden| g.origin.clone().unwrap_or_else(|| "golden".to_string());
    // `merge` lets the change (`theirs`) win under last-writer-wins.
    let m = if entity.conflict == ConflictPolicy::LastWriterWins {
        plan::merge(
            entity,
            &empty,
            &o,
            other.origin.as_deref(),
            &k,
            &origin(keep),
        )
    } else {
        plan::merge(
            entity,
            &empty,
            &k,
            keep.origin.as_deref(),
            &o,
            &origin(other),
        )
    };
    Ok(m.resolution.record)
}

/// Systems for a message: `a, b`, or `none`.
fn list(systems: &[String]) -> String {
    if systems.is_empty() {
        "none".to_string()
    } else {
        systems.join(", ")
    }
}
