//! A golden record's change, in one place: the record set (created,
//! changed or deleted), queued for the systems that take writes of it, and
//! the change audited, in the caller's transaction. Accepting a change from
//! a source, rolling a run back and a person's decision on a conflict all
//! go through `put`.

use crate::manifest::Manifest;
use crate::store::{self, AuditOp, Hash, NewAudit, OutboxOp, Outcome, Tx};

/// What becomes of the golden record.
pub(super) enum State<'a> {
    /// A new golden record of the entity, with this canonical text, hash
    /// and match key.
    New {
        text: &'a str,
        hash: &'a Hash,
        key: Option<&'a str>,
    },
    /// Record `global_id` takes this canonical text, hash and match key.
    Changed {
        global_id: i64,
        text: &'a str,
        hash: &'a Hash,
        key: Option<&'a str>,
    },
    /// Record `global_id` is deleted.
    Deleted { global_id: i64 },
    /// Record `global_id` stays as it is, and is queued and audited again
    /// (a conflict that the golden value won).
    Kept { global_id: i64 },
}

/// One change of a golden record.
pub(super) struct Put<'a> {
    /// The entity.
    pub(super) entity: &'a str,
    /// What becomes of the record.
    pub(super) state: State<'a>,
    /// The system the change is taken from: the record's origin after it.
    pub(super) origin: &'a str,
    /// The audit row, but for what `put` knows: its entity and global id.
    pub(super) audit: Audit<'a>,
}

/// The audit row of a golden record's change.
pub(super) struct Audit<'a> {
    /// The run, none for a person's decision outside any run.
    pub(super) run_id: Option<i64>,
    /// The system the row is about.
    pub(super) system: &'a str,
    /// The record's id there, if known.
    pub(super) local_id: Option<&'a str>,
    /// Who made the change, where known.
    pub(super) actor: Option<&'a str>,
    /// What was done.
    pub(super) operation: AuditOp,
    /// The record before (canonical text), if known.
    pub(super) before: Option<&'a str>,
    /// The record after, if any.
    pub(super) after: Option<&'a str>,
    /// How it ended.
    pub(super) outcome: Outcome,
}

/// Sets the golden record as `put` says, queues it (its content, or its
/// deletion) for every system in `writers`, and appends the audit row.
/// Returns the record's global id (a new one for `State::New`).
pub(super) fn put<'w>(
    tx: &mut Tx<'_>,
    put: Put<'_>,
    writers: impl IntoIterator<Item = &'w str>,
) -> store::Result<i64> {
    let (global_id, op) = match put.state {
        State::New { text, hash, key } => (
            tx.create_golden(put.entity, text, hash, put.origin, key)?,
            OutboxOp::Upsert,
        ),
        State::Changed {
            global_id,
            text,
            hash,
            key,
        } => {
            tx.update_golden(global_id, text, hash, put.origin, key)?;
            (global_id, OutboxOp::Upsert)
        }
        State::Deleted { global_id } => {
            tx.delete_golden(global_id, put.origin)?;
            (global_id, OutboxOp::Delete)
        }
        State::Kept { global_id } => (global_id, OutboxOp::Upsert),
    };
    // The content queued may be sent from now on: marked with its row,
    // so that reading it back after a crash is known for weir's own.
    let content = match put.state {
        State::New { hash, .. } | State::Changed { hash, .. } => Some(*hash),
        _ => None,
    };
    for writer in writers {
        match &content {
            Some(hash) => tx.enqueue_content(writer, put.entity, global_id, hash)?,
            None => tx.enqueue(writer, put.entity, global_id, op)?,
        }
    }
    let a = put.audit;
    tx.audit(NewAudit {
        run_id: a.run_id,
        system: a.system,
        entity: put.entity,
        global_id: Some(global_id),
        local_id: a.local_id,
        actor: a.actor,
        operation: a.operation,
        before: a.before,
        after: a.after,
        outcome: a.outcome,
    })?;
    Ok(global_id)
}

/// The match key of `record`, a canonical record of the entity named
/// `entity` in `manifest`.
pub(super) fn key_of(
    manifest: &Manifest,
    entity: &str,
    record: &crate::mapping::Record,
) -> Option<String> {
    let e = manifest.entities.iter().find(|e| e.name == entity)?;
    crate::mapping::match_key(&e.match_on, record)
}

/// The systems of the manifest that take writes of `entity`.
pub(super) fn writers(manifest: &Manifest, entity: &str) -> Vec<String> {
    manifest
        .systems
        .iter()
        .filter(|s| s.entity(entity).is_some_and(|b| b.direction.writes()))
        .map(|s| s.name.clone())
        .collect()
}
