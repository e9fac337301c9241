//! Decisions people make: on held changes (approved past the per-user
//! limit, or rejected and put back) and on conflicts.

use super::accept::AcceptCtx;
use super::error::SyncError;
use super::golden::{self, Audit, Put, State};
use super::inbox::held_change;
use super::pass::Pass;
use super::report::PageCounts;
use crate::manifest::{Entity, Manifest, SystemEntity};
use crate::mapping;
use crate::runtime::types::Operation;
use crate::store::{
    self, parse_record, AuditOp, Choice, HeldStatus, NewAudit, OutboxOp, Outcome, Store,
};
use serde_json::Value;

impl<'m> Pass<'_, 'm> {
    /// Carries out review decisions on held changes of one system and entity:
    /// an approved change is accepted now, past the per-user limit; a rejected
    /// one is dropped and, where the system can be written to, its record is
    /// put back to the golden value.
    pub(super) fn carry_out_decisions(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        decided: Vec<store::Held>,
    ) -> Result<(), SyncError> {
        let system = self.participants[s].system.name.clone();
        let targets = self.targets(&entity.name);
        let run_id = self.run_id;
        let counts = self.store.transaction(|tx| {
            let mut counts = PageCounts::default();
            for h in decided {
                tx.unhold(h.id)?;
                let item = held_change(&entity.name, &h);
                if h.status == HeldStatus::Approved {
                    let ctx = AcceptCtx {
                        tx: &mut *tx,
                        run_id,
                        system: &system,
                        entity,
                        binding: b,
                        targets: &targets,
                        approved: true,
                        along: &[],
                        fresh: &mut [],
                        decided: None,
                    };
                    ctx.accept_one(item, None, &mut counts)?;
                    continue;
                }
                let Some(link) = tx.link_by_local(&entity.name, &system, &h.local_id)? else {
                    continue;
                };
                if let Some(record) = item
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                {
                    if let Some(Ok(canonical)) = record
                        .as_object()
                        .map(|r| b.mapping.to_canonical(r.clone()))
                    {
                        let hash = mapping::hash(&canonical);
                        let text = Value::Object(canonical).to_string();
                        tx.record_seen(
                            &entity.name,
                            &system,
                            &h.local_id,
                            link.global_id,
                            &hash,
                            Some(&text),
                        )?;
                    }
                }
                if targets.contains(&system) {
                    tx.enqueue(&system, &entity.name, link.global_id, OutboxOp::Upsert)?;
                }
                tx.audit(NewAudit {
                    run_id: Some(run_id),
                    system: &system,
                    entity: &entity.name,
                    global_id: Some(link.global_id),
                    local_id: Some(&h.local_id),
                    actor: h.actor.as_deref(),
                    operation: if item.op == Operation::Delete {
                        AuditOp::ReadDelete
                    } else {
                        AuditOp::ReadUpdate
                    },
                    before: None,
                    after: None,
                    outcome: Outcome::Rejected,
                })?;
            }
            Ok(counts)
        })?;
        counts.add_to(&mut self.report, &system, &entity.name);
        Ok(())
    }
}

/// What became of a decision on a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Recorded (and the chosen value queued).
    Done,
    /// No such open conflict: none, or decided already.
    NotOpen,
    /// The record changed since the conflict; left open.
    Stale,
}

/// Records a person's decision on conflict `id`: `Choice::Result` keeps
/// what the policy chose; `Ours` or `Theirs` makes that value the golden
/// record and queues it for every system of the manifest that takes writes
/// of the entity, audited as
/// `review:ours` or `review:theirs` by the dashboard. Refused (and left
/// open) when the record changed since the conflict: the decision would
/// overwrite a newer value.
pub fn decide_conflict(
    store: &mut Store,
    manifest: &Manifest,
    id: i64,
    choice: Choice,
) -> store::Result<Decided> {
    store.transaction(|tx| {
        let Some(open) = tx.open_conflict(id)? else {
            return Ok(Decided::NotOpen);
        };
        let gid = open.global_id;
        let what = || format!("conflict {id}");
        let result = parse_record(tx.path(), &open.result, what)?;
        let current = tx.golden(gid)?;
        let unchanged = current
            .as_ref()
            .is_some_and(|g| !g.deleted && g.hash == mapping::hash(&result));
        if !unchanged {
            return Ok(Decided::Stale);
        }
        let (chosen, operation) = match choice {
            Choice::Result => (None, None),
            Choice::Ours => (open.ours.as_deref(), Some(AuditOp::ReviewOurs)),
            Choice::Theirs => (open.theirs.as_deref(), Some(AuditOp::ReviewTheirs)),
        };
        if let (Some(data), Some(operation)) = (chosen, operation) {
            let record = parse_record(tx.path(), data, what)?;
            let hash = mapping::hash(&record);
            let key = golden::key_of(manifest, &open.entity, &record);
            let origin = match (choice, current.as_ref().and_then(|g| g.origin.as_deref())) {
                (Choice::Ours, Some(origin)) => origin.to_string(),
                _ => open.system.clone(),
            };
            let before = current.map(|g| g.data);
            golden::put(
                tx,
                Put {
                    entity: &open.entity,
                    state: State::Changed {
                        global_id: gid,
                        text: data,
                        hash: &hash,
                        key: key.as_deref(),
                    },
                    origin: &origin,
                    audit: Audit {
                        run_id: None,
                        system: &open.system,
                        local_id: None,
                        actor: Some("dashboard"),
                        operation,
                        before: before.as_deref(),
                        after: Some(data),
                        outcome: Outcome::Ok,
                    },
                },
                golden::writers(manifest, &open.entity)
                    .iter()
                    .map(String::as_str),
            )?;
        }
        tx.decide_conflict(id, choice)?;
        Ok(Decided::Done)
    })
}
