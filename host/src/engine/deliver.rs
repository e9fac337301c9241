//! The store's side of delivery: outbox rows planned into writes (filters,
//! validation, references translated to the target's ids, `on_delete`),
//! and the outcome of each write recorded (links, retries, dead letters).

use super::error::SyncError;
use super::faults::Faults;
use super::pass::Pass;
use super::plan::{self, Write};
use super::retry::backoff;
use super::work::{Kept, Kind, Planned};
use crate::manifest::{Entity, OnDelete, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::kind_name;
use crate::runtime::types::{ErrorKind, Operation, WriteItem};
use crate::store::{self, NewAudit, NewDeadLetter, OutboxOp, OutboxRow, Outcome, Tx};
use serde_json::Value;

impl<'m> Pass<'_, 'm> {
    /// Whether the deletes pending for a target exceed the entity's
    /// `max_delete_percent` of what the target holds; if so they are held
    /// back (they stay in the outbox) and the run reports it.
    pub(super) fn deletes_beyond_limit(
        &mut self,
        target: &str,
        entity: &Entity,
    ) -> Result<bool, SyncError> {
        let Some(limit) = entity.max_delete_percent else {
            return Ok(false);
        };
        if self.options.allow_deletes {
            return Ok(false);
        }
        let deletes = self.store.outbox_deletes(target, &entity.name)?;
        let held = self.store.count_links(&entity.name, target)?;
        if deletes == 0 || held == 0 {
            return Ok(false);
        }
        let percent = deletes as f64 * 100.0 / held as f64;
        if percent <= limit {
            return Ok(false);
        }
        self.report.failures.push(format!(
            "system '{target}': {deletes} deletes of {held} {} ({percent:.1}%) held back: over max_delete_percent = {limit}; \
             check them with `weir sync --dry-run`, then run `weir sync --allow-deletes` to deliver them",
            entity.name
        ));
        Ok(true)
    }

    /// Turns outbox rows into writes. Rows with nothing to write are completed,
    /// rows whose references have not reached the target wait, in the same transaction.
    pub(super) fn plan_deliveries(
        &mut self,
        target: &str,
        entity: &Entity,
        tb: &SystemEntity,
        rows: Vec<OutboxRow>,
        hold_deletes: bool,
    ) -> Result<Vec<Planned>, SyncError> {
        let mut skipped = 0;
        let mut failed = 0;
        let run_id = self.run_id;
        let planned = self.store.transaction(|tx| {
            let mut planned = Vec::new();
            for row in rows {
                let Some(golden) = tx.golden(row.global_id)? else {
                    tx.outbox_done(row.id)?;
                    continue;
                };
                let link = tx.link_by_global(target, row.global_id)?;
                let op = if golden.deleted {
                    OutboxOp::Delete
                } else {
                    row.op
                };
                match op {
                    OutboxOp::Upsert => {
                        let Some(w) = plan::write(&golden.hash, link.as_ref()) else {
                            skipped += 1;
                            tx.outbox_done(row.id)?;
                            continue;
                        };
                        let canonical: Record =
                            serde_json::from_str(&golden.data).unwrap_or_default();
                        match tb.mapping.accepts(&canonical) {
                            Ok(true) => {}
                            Ok(false) => {
                                // Filtered out: this system does not take this record.
                                skipped += 1;
                                tx.outbox_done(row.id)?;
                                continue;
                            }
                            Err(e) => {
                                failed += 1;
                                reject(
                                    tx,
                                    run_id,
                                    target,
                                    &entity.name,
                                    &row,
                                    &format!("filter: {e}"),
                                )?;
                                continue;
                            }
                        }
                        if let Err(v) = mapping::validate(&entity.rules, &canonical) {
                            failed += 1;
                            reject(
                                tx,
                                run_id,
                                target,
                                &entity.name,
                                &row,
                                &format!("invalid record: {v}"),
                            )?;
                            continue;
                        }
                        let record = match references_to_local(tx, entity, target, canonical)? {
                            Ok(r) => r,
                            Err(waiting) => {
                                tx.outbox_retry(row.id, &store::now(), &waiting, false)?;
                                continue;
                            }
                        };
                        let data = match tb.mapping.from_canonical(&record) {
                            Ok(r) => Value::Object(r).to_string(),
                            Err(e) => {
                                failed += 1;
                                reject(
                                    tx,
                                    run_id,
                                    target,
                                    &entity.name,
                                    &row,
                                    &format!("cannot map the record: {e}"),
                                )?;
                                continue;
                            }
                        };
                        let (id, kind) = match w {
                            Write::Create => (tb.mapping.shared_key(&record), Kind::Create),
                            Write::Update { local_id } => (Some(local_id), Kind::Update),
                        };
                        planned.push(Planned {
                            gid: row.global_id,
                            kept: Kept::of(&row),
                            hash: golden.hash,
                            kind,
                            item: WriteItem {
                                id,
                                op: Operation::Upsert,
                                data: Some(data),
                            },
                        });
                    }
                    OutboxOp::Delete if hold_deletes => continue,
                    OutboxOp::Delete => {
                        let Some(link) = link else {
                            tx.outbox_done(row.id)?;
                            continue;
                        };
                        let item = match (tb.on_delete, &tb.soft_delete_field) {
                            (OnDelete::Delete, _) => WriteItem {
                                id: Some(link.local_id),
                                op: Operation::Delete,
                                data: None,
                            },
                            (OnDelete::Soft, Some(field)) => {
                                let data = serde_json::json!({ field.as_str(): true }).to_string();
                                WriteItem {
                                    id: Some(link.local_id),
                                    op: Operation::Upsert,
                                    data: Some(data),
                                }
                            }
                            _ => {
                                tx.outbox_done(row.id)?;
                                continue;
                            }
                        };
                        let kind = if item.op == Operation::Delete {
                            Kind::Delete
                        } else {
                            Kind::SoftDelete
                        };
                        planned.push(Planned {
                            gid: row.global_id,
                            kept: Kept::of(&row),
                            hash: golden.hash,
                            kind,
                            item,
                        });
                    }
                }
            }
            Ok(planned)
        })?;
        self.report.counts.skipped += skipped;
        self.report.counts.failed += failed;
        Ok(planned)
    }

    /// Puts planned writes back for a later attempt, with backoff.
    pub(super) fn postpone(
        &mut self,
        target: &str,
        entity: &str,
        planned: &[Planned],
        error: &str,
    ) -> Result<(), SyncError> {
        let rows = self.store.transaction(|tx| {
            let mut rows = Vec::new();
            for p in planned {
                let at = backoff(p.attempts(), None);
                rows.push(p.retry(tx, target, entity, &at, error)?);
            }
            Ok(rows)
        })?;
        self.failed_rows.extend(rows);
        Ok(())
    }

    /// Records the outcome of each write: links and outbox for successes,
    /// retries for passing failures, dead letters for refusals. The outbox
    /// rows completed count towards the test-only fault injection.
    pub(super) fn record_deliveries(
        &mut self,
        target: &str,
        entity: &str,
        planned: Vec<Planned>,
        outcomes: Vec<
            Result<crate::runtime::types::Written, crate::runtime::types::ConnectorError>,
        >,
    ) -> Result<(), SyncError> {
        let run_id = self.run_id;
        let (mut written, mut deleted, mut failed, mut done) = (0, 0, 0, 0);
        let (mut retries, mut refused) = (0, 0);
        let mut failed_rows = Vec::new();
        self.store.transaction(|tx| {
            for (p, outcome) in planned.into_iter().zip(outcomes) {
                let gid = p.gid;
                let data = p.item.data.as_deref();
                let audit = |tx: &mut Tx<'_>, local_id: Option<&str>, outcome: Outcome| {
                    tx.audit(NewAudit {
                        run_id: Some(run_id),
                        system: target,
                        entity,
                        global_id: Some(gid),
                        local_id,
                        actor: None,
                        operation: p.kind.operation(),
                        before: None,
                        after: data,
                        outcome,
                    })
                };
                match outcome {
                    Ok(w) => {
                        match p.kind {
                            Kind::Create | Kind::Update => {
                                let linked = p.kind == Kind::Update;
                                tx.record_written(entity, target, &w.id, gid, &p.hash, linked)?;
                                written += 1;
                            }
                            Kind::Delete => {
                                tx.unlink(target, gid)?;
                                deleted += 1;
                            }
                            Kind::SoftDelete => deleted += 1,
                        }
                        p.settle(tx)?;
                        done += 1;
                        audit(tx, Some(&w.id), Outcome::Ok)?;
                    }
                    Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::RateLimited) => {
                        failed += 1;
                        retries += 1;
                        let reason = format!("{}: {}", kind_name(e.kind), e.message);
                        let at = backoff(p.attempts(), e.retry_after_ms);
                        failed_rows.push(p.retry(tx, target, entity, &at, &reason)?);
                        audit(tx, p.item.id.as_deref(), Outcome::Failed)?;
                    }
                    Err(e) => {
                        failed += 1;
                        refused += 1;
                        let reason = format!("{}: {}", kind_name(e.kind), e.message);
                        tx.dead_letter(NewDeadLetter {
                            run_id,
                            system: target,
                            entity,
                            global_id: Some(gid),
                            local_id: p.item.id.as_deref(),
                            data,
                            reason: &reason,
                        })?;
                        p.settle(tx)?;
                        done += 1;
                        audit(tx, p.item.id.as_deref(), Outcome::Rejected)?;
                    }
                }
            }
            Ok(())
        })?;
        self.failed_rows.extend(failed_rows);
        self.report.counts.written += written;
        self.report.counts.deleted += deleted;
        self.report.counts.failed += failed;
        crate::telemetry::events::RecordsDelivered {
            system: target,
            entity,
            written,
            deleted,
            retries,
            dead_letters: refused,
        }
        .emit();
        Faults::count(&mut self.faults.deliveries_left, done);
        Ok(())
    }
}

/// Translates reference fields of a canonical record (global ids) into the
/// target's local ids. `Err` names the referenced record that has not reached
/// the target yet.
pub(super) fn references_to_local(
    tx: &Tx<'_>,
    entity: &Entity,
    target: &str,
    mut record: Record,
) -> store::Result<Result<Record, String>> {
    for (field, ref_entity) in &entity.references {
        let Some(value) = record.get(field) else {
            continue;
        };
        let Some(gid) = value.as_i64() else { continue };
        match tx.link_by_global(target, gid)? {
            Some(link) => {
                record.insert(field.clone(), id_value(&link.local_id));
            }
            None => {
                return Ok(Err(format!(
                    "waiting for {ref_entity} record {gid} to reach {target}"
                )))
            }
        }
    }
    Ok(Ok(record))
}

/// Gives up an outbox row: a dead letter with the reason, and the row is removed.
pub(super) fn reject(
    tx: &mut Tx<'_>,
    run_id: i64,
    target: &str,
    entity: &str,
    row: &OutboxRow,
    reason: &str,
) -> store::Result<()> {
    tx.dead_letter(NewDeadLetter {
        run_id,
        system: target,
        entity,
        global_id: Some(row.global_id),
        local_id: None,
        data: None,
        reason,
    })?;
    tx.outbox_done(row.id)
}

/// A local id as a JSON value: a number when it is one.
pub(super) fn id_value(id: &str) -> Value {
    id.parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(id.to_string()))
}
