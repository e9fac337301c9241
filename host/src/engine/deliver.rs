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
use crate::runtime::types::{Change, ErrorKind, KeyedOutcome, Operation, WriteItem};
use crate::store::{self, NewAudit, NewDeadLetter, OutboxOp, OutboxRow, Outcome, Side, Tx};
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
        let mut plan = Plan {
            run_id: self.run_id,
            target,
            entity,
            tb,
            skipped: 0,
            failed: 0,
            held: Default::default(),
        };
        let give_up = self
            .participants
            .iter()
            .find(|p| p.system.name == target)
            .map(|p| p.system.give_up_after);
        let cutoff = give_up.and_then(failing_cutoff);
        let planned = self.store.transaction(|tx| {
            plan.held = tx.held_candidates(target, &entity.name)?;
            let mut planned = Vec::new();
            for row in rows {
                if let (Some((since, error)), Some(cutoff)) = (&row.failing, &cutoff) {
                    if since.as_str() < cutoff.as_str() {
                        // Failing for longer than the target's give_up_after.
                        let after = give_up.map(|d| jiff::SignedDuration::try_from(d).ok());
                        let after = after.flatten().map(|d| format!("{d:#}")).unwrap_or_default();
                        let why = format!(
                            "given up after failing for {after} (since {since}; give_up_after of system '{target}'); last error: {error}"
                        );
                        plan.reject(tx, &row, &why)?;
                        continue;
                    }
                }
                let Some(golden) = tx.golden(row.global_id)? else {
                    tx.outbox_done(row.id)?;
                    continue;
                };
                // The record as it is now decides, not as it was queued: a
                // delete queued before the record came back (an edit
                // elsewhere revived it) is an upsert now.
                let op = if golden.deleted {
                    OutboxOp::Delete
                } else {
                    OutboxOp::Upsert
                };
                let write = match op {
                    OutboxOp::Upsert => plan.upsert(tx, &row, golden)?,
                    OutboxOp::Delete if hold_deletes => continue,
                    OutboxOp::Delete => plan.delete(tx, &row, golden.hash)?,
                };
                planned.extend(write);
            }
            Ok(planned)
        })?;
        self.report.counts.skipped += plan.skipped;
        self.report.counts.failed += plan.failed;
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
                rows.push(p.retry(tx, target, entity, &at, error, true)?);
            }
            Ok(rows)
        })?;
        self.failed_rows.extend(rows);
        Ok(())
    }

    /// Records the outcome of each write: links and outbox for successes,
    /// retries for passing failures, dead letters for refusals. The outbox
    /// rows completed count towards the test-only fault injection. Returns
    /// the records found changed in the target since weir last saw them
    /// (their writes wait in the outbox): the caller merges them.
    pub(super) fn record_deliveries(
        &mut self,
        target: &str,
        entity: &str,
        planned: Vec<Planned>,
        outcomes: Vec<KeyedOutcome>,
    ) -> Result<Vec<Change>, SyncError> {
        let run_id = self.run_id;
        let (mut written, mut deleted, mut failed, mut done) = (0, 0, 0, 0);
        let (mut retries, mut refused) = (0, 0);
        let mut failed_rows = Vec::new();
        let mut changed = Vec::new();
        if !self.write_lettered.contains_key(target) {
            let letters = self.store.write_letters(target)?;
            self.write_lettered.insert(target.to_string(), letters);
        }
        let lettered = self.write_lettered.get_mut(target).expect("loaded above");
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
                let outcome = match outcome {
                    KeyedOutcome::Written(w) => Ok(w),
                    KeyedOutcome::Failed(e) => Err(e),
                    KeyedOutcome::Changed(change) => {
                        // Not written: merged first, written at a later pass.
                        let why = format!("changed in {target} since weir last saw it");
                        let now = store::now();
                        failed_rows.push(p.retry(tx, target, entity, &now, &why, false)?);
                        changed.push(change);
                        continue;
                    }
                };
                match outcome {
                    Ok(w) => {
                        landed(tx, target, entity, &p, &w.id, lettered)?;
                        match p.kind {
                            Kind::Create | Kind::Update => written += 1,
                            Kind::Delete | Kind::SoftDelete => deleted += 1,
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
                        failed_rows.push(p.retry(tx, target, entity, &at, &reason, true)?);
                        audit(tx, p.item.id.as_deref(), Outcome::Failed)?;
                    }
                    Err(e) => {
                        failed += 1;
                        refused += 1;
                        let reason = format!("{}: {}", kind_name(e.kind), e.message);
                        lettered.insert(gid);
                        tx.dead_letter(NewDeadLetter {
                            run_id,
                            system: target,
                            entity,
                            side: Side::Write,
                            global_id: Some(gid),
                            local_id: p.item.id.as_deref(),
                            data,
                            reason: &reason,
                        })?;
                        p.settle(tx)?;
                        if p.kind == Kind::Create && !p.in_span() {
                            // Refused: it did not land.
                            tx.create_settled(target, gid)?;
                        }
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
        Ok(changed)
    }
}

/// Records in the links what a write that landed did: the record written
/// under the id the target gave, or its link gone with it.
fn landed(
    tx: &mut Tx<'_>,
    target: &str,
    entity: &str,
    p: &Planned,
    id: &str,
    lettered: &mut std::collections::HashSet<i64>,
) -> store::Result<()> {
    if lettered.remove(&p.gid) {
        // Refused before, written now: its dead letter goes.
        tx.clear_write_letter(target, p.gid)?;
    }
    match p.kind {
        Kind::Create | Kind::Update => {
            let linked = p.kind == Kind::Update;
            let canonical = p.canonical.as_deref();
            tx.record_written(entity, target, id, p.gid, &p.hash, canonical, linked)?;
            if p.kind == Kind::Create && !p.in_span() {
                tx.create_settled(target, p.gid)?;
            }
        }
        Kind::Delete => tx.unlink(target, p.gid)?,
        Kind::SoftDelete => {}
    }
    Ok(())
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

/// The time before which a delivery failing since then has failed for
/// longer than `after` (RFC 3339, as the store writes times).
fn failing_cutoff(after: std::time::Duration) -> Option<String> {
    let after = jiff::SignedDuration::try_from(after).ok()?;
    let at = jiff::Timestamp::now().checked_sub(after).ok()?;
    Some(format!("{at:.3}"))
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
        side: Side::Write,
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

/// Outbox rows of one target and entity being planned into writes, and
/// what became of those that are not written.
struct Plan<'a> {
    run_id: i64,
    target: &'a str,
    entity: &'a Entity,
    tb: &'a SystemEntity,
    /// Rows with nothing to write: the target holds the record, or its
    /// filter leaves it out.
    skipped: u64,
    /// Rows given up: dead letters.
    failed: u64,
    /// Golden records not to create in the target: candidates of matches
    /// held there.
    held: std::collections::HashSet<i64>,
}

impl Plan<'_> {
    /// The write of a golden record's content, unless the target holds it
    /// or leaves it out (the row is completed), refuses it (a dead letter)
    /// or waits for a record it refers to (the row stays).
    fn upsert(
        &mut self,
        tx: &mut Tx<'_>,
        row: &OutboxRow,
        golden: store::Golden,
    ) -> store::Result<Option<Planned>> {
        let link = tx.link_by_global(self.target, row.global_id)?;
        let Some(w) = plan::write(&golden.hash, link.as_ref()) else {
            self.skipped += 1;
            tx.outbox_done(row.id)?;
            return Ok(None);
        };
        if w == Write::Create && self.held.contains(&row.global_id) {
            let waiting = format!(
                "waiting: a record of {} held as an ambiguous match may be this one (see `weir matches`)",
                self.target
            );
            tx.outbox_retry(row.id, &store::now(), &waiting, false)?;
            return Ok(None);
        }
        // A corrupt golden row is refused with the reason that names it:
        // never delivered as an empty record, and the pass goes on.
        let canonical = match golden.record(tx.path()) {
            Ok(r) => r,
            Err(e) => return self.reject(tx, row, &e.to_string()),
        };
        match self.tb.mapping.accepts(&canonical) {
            Ok(true) => {}
            Ok(false) => {
                // Filtered out: this system does not take this record.
                self.skipped += 1;
                tx.outbox_done(row.id)?;
                return Ok(None);
            }
            Err(e) => return self.reject(tx, row, &format!("filter: {e}")),
        }
        if let Err(v) = mapping::validate(&self.entity.rules, &canonical) {
            return self.reject(tx, row, &format!("invalid record: {v}"));
        }
        let record = match references_to_local(tx, self.entity, self.target, canonical)? {
            Ok(r) => r,
            Err(waiting) => {
                tx.outbox_retry(row.id, &store::now(), &waiting, false)?;
                return Ok(None);
            }
        };
        let mapped = match self.tb.mapping.from_canonical(&record) {
            Ok(r) => r,
            Err(e) => return self.reject(tx, row, &format!("cannot map the record: {e}")),
        };
        // An update of a system weir also reads is made only if the fields
        // it changes still hold what weir last saw there.
        let seen = match w {
            Write::Update { .. } if self.tb.direction.reads() => self.seen(tx, row, &mapped)?,
            _ => None,
        };
        let data = Value::Object(mapped).to_string();
        let (id, kind) = match w {
            Write::Create => (self.tb.mapping.shared_key(&record), Kind::Create),
            Write::Update { local_id } => {
                // Committed with the plan, before the write is sent: read
                // back after a crash, it is known for weir's own.
                if row.sent != Some(golden.hash) {
                    tx.mark_sent(row.id, &golden.hash)?;
                }
                (Some(local_id), Kind::Update)
            }
        };
        Ok(Some(Planned {
            gid: row.global_id,
            kept: Kept::of(row),
            hash: golden.hash,
            kind,
            item: WriteItem {
                id,
                op: Operation::Upsert,
                data: Some(data),
            },
            tried: row.tried,
            canonical: Some(golden.data),
            seen,
        }))
    }

    /// The fields of `data` (a write of `row`'s record, in the target's
    /// field names) that differ from what the target last held, with what
    /// it held in them (`null` where it held nothing): as the target spells
    /// them where it answered with them before (`seen_raw`), else as the
    /// mapping writes them. None where weir does not know what it held, or
    /// no field it maps differs.
    fn seen(&self, tx: &Tx<'_>, row: &OutboxRow, data: &Record) -> store::Result<Option<String>> {
        let gid = row.global_id;
        let Some(base) = tx.link_base(self.target, gid)? else {
            return Ok(None);
        };
        let Ok(base) = serde_json::from_str::<Record>(&base) else {
            return Ok(None);
        };
        let Ok(base) = references_to_local(tx, self.entity, self.target, base)? else {
            return Ok(None);
        };
        let Ok(before) = self.tb.mapping.from_canonical(&base) else {
            return Ok(None);
        };
        let raw = row
            .seen_raw
            .as_deref()
            .and_then(|r| serde_json::from_str::<Record>(r).ok());
        let seen: Record = data
            .iter()
            .filter_map(|(field, value)| {
                let was = before.get(field).unwrap_or(&Value::Null);
                let held = raw.as_ref().map(|r| r.get(field).unwrap_or(&Value::Null));
                (was != value).then(|| (field.clone(), held.unwrap_or(was).clone()))
            })
            .collect();
        Ok((!seen.is_empty()).then(|| Value::Object(seen).to_string()))
    }

    /// The write of a golden record's deletion, per the target's
    /// `on_delete`; none (the row completed) where the target never held
    /// the record or keeps what is deleted elsewhere.
    fn delete(
        &mut self,
        tx: &mut Tx<'_>,
        row: &OutboxRow,
        hash: store::Hash,
    ) -> store::Result<Option<Planned>> {
        let Some(link) = tx.link_by_global(self.target, row.global_id)? else {
            tx.outbox_done(row.id)?;
            return Ok(None);
        };
        let (kind, item) = match (self.tb.on_delete, &self.tb.soft_delete_field) {
            (OnDelete::Delete, _) => (
                Kind::Delete,
                WriteItem {
                    id: Some(link.local_id),
                    op: Operation::Delete,
                    data: None,
                },
            ),
            (OnDelete::Soft, Some(field)) => (
                Kind::SoftDelete,
                WriteItem {
                    id: Some(link.local_id),
                    op: Operation::Upsert,
                    data: Some(serde_json::json!({ field.as_str(): true }).to_string()),
                },
            ),
            _ => {
                tx.outbox_done(row.id)?;
                return Ok(None);
            }
        };
        Ok(Some(Planned {
            gid: row.global_id,
            kept: Kept::of(row),
            hash,
            kind,
            item,
            tried: None,
            canonical: None,
            seen: None,
        }))
    }

    /// Gives up a row: a dead letter with the reason.
    fn reject(
        &mut self,
        tx: &mut Tx<'_>,
        row: &OutboxRow,
        reason: &str,
    ) -> store::Result<Option<Planned>> {
        self.failed += 1;
        reject(tx, self.run_id, self.target, &self.entity.name, row, reason)?;
        Ok(None)
    }
}
