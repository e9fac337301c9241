//! Accepting a page of changes from a source, in one store transaction:
//! golden records, links, conflicts, outbox rows (or the new records a
//! target along the intake takes from memory), audit rows and the cursor.

use super::error::SyncError;
use super::golden::{self, Audit, Put, State};
use super::pass::Pass;
use super::plan::{self, Accept, GoldenState};
use super::prepare::{Content, Prepared, Ready};
use super::report::PageCounts;
use super::work::{CursorUpdate, Decision, Identified, Kept, Kind, Planned};
use crate::manifest::{Entity, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::types::{Change, Operation, WriteItem};
use crate::runtime::Reject;
use crate::store::{
    self, AuditOp, CursorKind, Golden, Lettered, Link, NewAudit, NewDeadLetter, Outcome, Side, Tx,
};
use serde_json::Value;
use std::collections::hash_map::Entry;

/// What a source offered in one call: its changes, those prepared on the
/// way (the first of them, in order), and the records it rejected.
pub(super) struct Offered {
    pub(super) items: Vec<Change>,
    pub(super) prepared: Vec<Option<Prepared>>,
    pub(super) rejects: Vec<Reject>,
}

impl Offered {
    /// Changes alone, none prepared, nothing rejected.
    pub(super) fn changes(items: Vec<Change>) -> Offered {
        Offered {
            items,
            prepared: Vec::new(),
            rejects: Vec::new(),
        }
    }
}

impl<'m> Pass<'_, 'm> {
    /// Accepts a page of changes from a source, in one transaction: golden
    /// records, links, conflicts, outbox rows, audit rows and the cursor.
    pub(super) fn accept(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        offered: Offered,
        cursor: CursorUpdate,
    ) -> Result<PageCounts, SyncError> {
        let Offered {
            items,
            prepared,
            rejects,
        } = offered;
        let system = self.participants[s].system.name.clone();
        let targets = self.targets(&entity.name);
        let run_id = self.run_id;
        let lettered = match self.lettered.entry((system.clone(), entity.name.clone())) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.store.read_letters(&system, &entity.name)?),
        };
        let parked = &mut self.parked;
        let read = items.len() as u64;
        let along: Vec<String> = self.along.iter().map(|d| d.target.clone()).collect();
        let (counts, spans) = self.store.transaction(|tx| {
            let mut counts = PageCounts::default();
            let mut fresh: Vec<Vec<(i64, store::Hash, Ready)>> =
                along.iter().map(|_| Vec::new()).collect();
            // Items past the prepared ones (deletes found by a full read, or
            // stored changes, never prepared) are taken as they are.
            let mut prepared = prepared.into_iter();
            for r in &rejects {
                counts.read_letter(tx.dead_letter(NewDeadLetter {
                    run_id,
                    system: &system,
                    entity: &entity.name,
                    side: Side::Read,
                    global_id: None,
                    local_id: r.id.as_deref(),
                    data: b.mapping.redact_text(&r.raw).as_deref(),
                    reason: &r.reason,
                })?);
                lettered.extend(r.id.clone());
            }
            for item in items {
                let prepared = prepared.next().flatten();
                if parked.remove(&item.id).is_some() {
                    tx.unpark(&system, &entity.name, &item.id)?;
                }
                let refused = counts.refused();
                let id = (!lettered.is_empty()).then(|| item.id.clone());
                let ctx = AcceptCtx {
                    tx: &mut *tx,
                    run_id,
                    system: &system,
                    entity,
                    binding: b,
                    targets: &targets,
                    approved: false,
                    along: &along,
                    fresh: &mut fresh,
                    decided: None,
                };
                ctx.accept_one(item, prepared, &mut counts)?;
                if let Some(id) = id {
                    // Refused again, its letter stays; taken, it goes.
                    if counts.refused() == refused && lettered.remove(&id) {
                        tx.clear_read_letter(&system, &entity.name, &id)?;
                    }
                }
            }
            let spans = spans(tx, &entity.name, &along, fresh)?;
            move_cursor(tx, &system, &entity.name, &cursor)?;
            Ok((counts, spans))
        })?;
        for (d, planned) in self.along.iter_mut().zip(spans) {
            d.fresh.extend(planned);
        }
        counts.add_to(&mut self.report, &system, &entity.name);
        crate::telemetry::events::RecordsRead {
            system: &system,
            entity: &entity.name,
            read,
            echoes: counts.echoes,
            conflicts: counts.conflicts,
            dead_letters: counts.failed,
        }
        .emit();
        Ok(counts)
    }
}

/// The new records each target `along` the intake takes from memory, as
/// its planned writes: a span keeps them in the store until the last is
/// recorded.
fn spans(
    tx: &mut Tx<'_>,
    entity: &str,
    along: &[String],
    fresh: Vec<Vec<(i64, store::Hash, Ready)>>,
) -> store::Result<Vec<Vec<Planned>>> {
    let mut spans = Vec::new();
    for (target, fresh) in along.iter().zip(fresh) {
        let (Some(first), Some(last)) = (fresh.first(), fresh.last()) else {
            spans.push(Vec::new());
            continue;
        };
        let span = tx.add_span(target, entity, first.0, last.0)?;
        let n = fresh.len();
        spans.push(
            fresh
                .into_iter()
                .enumerate()
                .map(|(k, (gid, hash, ready))| Planned {
                    gid,
                    kept: Kept::Span {
                        id: span,
                        last: k + 1 == n,
                    },
                    hash,
                    kind: Kind::Create,
                    item: WriteItem {
                        id: ready.id,
                        op: Operation::Upsert,
                        data: Some(ready.data),
                    },
                    tried: None,
                    canonical: None,
                    seen: None,
                })
                .collect(),
        );
    }
    Ok(spans)
}

/// Moves the source's cursor (or takes its inbox entries) as the page says.
fn move_cursor(
    tx: &mut Tx<'_>,
    system: &str,
    entity: &str,
    cursor: &CursorUpdate,
) -> store::Result<()> {
    match cursor {
        CursorUpdate::None => {}
        CursorUpdate::Inbox(ids) => {
            for id in ids {
                tx.inbox_done(*id)?;
            }
        }
        CursorUpdate::Reading(state) => tx.set_cursor(system, entity, CursorKind::Read, state)?,
        CursorUpdate::ReadDone(checkpoint) => {
            tx.clear_cursor(system, entity, CursorKind::Read)?;
            match checkpoint {
                Some(c) => tx.set_cursor(system, entity, CursorKind::Changes, c)?,
                // No change cursor to go on from: the next pass reads in full.
                None => tx.clear_cursor(system, entity, CursorKind::Changes)?,
            }
        }
        CursorUpdate::Changes(c) => tx.set_cursor(system, entity, CursorKind::Changes, c)?,
    }
    Ok(())
}

/// Everything `accept_one` needs, inside the page's transaction.
pub(super) struct AcceptCtx<'t, 'c, 'x> {
    pub(super) tx: &'t mut Tx<'x>,
    pub(super) run_id: i64,
    pub(super) system: &'c str,
    pub(super) entity: &'c Entity,
    pub(super) binding: &'c SystemEntity,
    pub(super) targets: &'c [String],
    /// The change was approved after being held: no per-user limit applies.
    pub(super) approved: bool,
    /// The targets written along the intake, in turn, and the new records
    /// each takes from memory.
    pub(super) along: &'c [String],
    pub(super) fresh: &'c mut [Vec<(i64, store::Hash, Ready)>],
    /// A person's decision on the record's match, held before.
    pub(super) decided: Option<Decision>,
}

/// An upsert's content once its references are global ids: its canonical
/// text or record, its hash, its match key, and its writes ready for the
/// targets along.
type Upsert = (Content, store::Hash, Option<String>, Vec<Option<Ready>>);

impl<'c> AcceptCtx<'_, 'c, '_> {
    /// The audit row of a change of `item`'s golden record.
    pub(super) fn audit<'a>(
        &self,
        item: &'a Change,
        operation: AuditOp,
        before: Option<&'a str>,
        after: Option<&'a str>,
        outcome: Outcome,
    ) -> Audit<'a>
    where
        'c: 'a,
    {
        Audit {
            run_id: Some(self.run_id),
            system: self.system,
            local_id: Some(&item.id),
            actor: item.actor.as_deref(),
            operation,
            before,
            after,
            outcome,
        }
    }

    /// An audit row of `item` that changes no golden record (an echo, a
    /// held change).
    fn note(
        &mut self,
        gid: Option<i64>,
        item: &Change,
        operation: AuditOp,
        outcome: Outcome,
    ) -> store::Result<()> {
        self.tx.audit(NewAudit {
            run_id: Some(self.run_id),
            system: self.system,
            entity: &self.entity.name,
            global_id: gid,
            local_id: Some(&item.id),
            actor: item.actor.as_deref(),
            operation,
            before: None,
            after: None,
            outcome,
        })
    }

    fn dead_letter(&mut self, item: &Change, reason: &str) -> store::Result<Lettered> {
        self.tx.dead_letter(NewDeadLetter {
            run_id: self.run_id,
            system: self.system,
            entity: &self.entity.name,
            side: Side::Read,
            global_id: None,
            local_id: Some(&item.id),
            data: item
                .data
                .as_deref()
                .and_then(|d| self.binding.mapping.redact(d))
                .as_deref(),
            reason,
        })
    }

    /// The targets of the entity but `except`.
    pub(super) fn writers_but<'a>(
        &self,
        except: Option<&'a str>,
    ) -> impl Iterator<Item = &'c str> + 'a
    where
        'c: 'a,
    {
        self.targets
            .iter()
            .map(String::as_str)
            .filter(move |t| Some(*t) != except)
    }

    /// Accepts one change of the page.
    pub(super) fn accept_one(
        mut self,
        item: Change,
        prepared: Option<Prepared>,
        counts: &mut PageCounts,
    ) -> store::Result<()> {
        if item.op == Operation::Delete {
            return self.accept_delete(item, counts);
        }
        let Some((content, hash, key, ready)) = self.upsert(&item, prepared, counts)? else {
            return Ok(());
        };
        let mut link = self
            .tx
            .link_by_local(&self.entity.name, self.system, &item.id)?;
        if link.is_none() && self.entity.shared_key {
            // Under shared keys, a record new to weir from this system may be
            // one another system already holds under the same key: the same
            // record, whose content is then compared (same, or a conflict).
            link = self.same_key_elsewhere(&item.id)?;
        }
        if link.is_none() {
            match self.identify(&item, &hash, key.as_deref())? {
                Identified::New => {}
                Identified::Answered(l) => link = Some(l),
                Identified::Matched(l) => {
                    counts.matched += 1;
                    link = Some(l);
                }
                Identified::Held => {
                    counts.ambiguous += 1;
                    return Ok(());
                }
            }
        }
        let (decision, golden) = self.decide(&hash, link.as_ref())?;
        let changes = matches!(
            decision,
            Accept::New | Accept::FastForward | Accept::Conflict
        );
        if changes && self.hold_if_over_limit(&item)? {
            counts.held += 1;
            return Ok(());
        }
        let system = self.system;
        match (decision, link, golden) {
            (Accept::New, _, _) => {
                counts.fresh += 1;
                counts.created += 1;
                self.create(&item, content, &hash, key.as_deref(), ready)
            }
            (Accept::Unchanged, _, _) => {
                counts.unchanged += 1;
                Ok(())
            }
            (Accept::Echo, Some(l), _) => {
                counts.echoes += 1;
                // What it holds is what weir wrote: the base of what comes next.
                let (text, _) = content.into_parts();
                let gid = l.global_id;
                self.tx.record_seen(
                    &self.entity.name,
                    system,
                    &item.id,
                    gid,
                    &hash,
                    Some(&text),
                )?;
                self.note(Some(l.global_id), &item, AuditOp::ReadUpdate, Outcome::Echo)
            }
            (Accept::Same, Some(l), _) => {
                counts.unchanged += 1;
                self.tx.record_seen(
                    &self.entity.name,
                    system,
                    &item.id,
                    l.global_id,
                    &hash,
                    None,
                )
            }
            (Accept::FastForward, Some(l), golden) => {
                counts.fresh += 1;
                self.fast_forward(&item, content, &hash, key.as_deref(), l.global_id, golden)
            }
            (Accept::Conflict, Some(_), Some(golden)) => {
                counts.fresh += 1;
                if self.conflict(&item, content, &hash, golden)? {
                    counts.conflicts += 1;
                }
                Ok(())
            }
            // `plan::accept` decides Echo, Same and FastForward only with
            // a link, and Conflict only with the golden record too.
            (accept, link, golden) => unreachable!(
                "accept {accept:?} with link {link:?} and golden {:?}",
                golden.map(|g| g.global_id)
            ),
        }
    }

    /// How a record read with content `hash` is taken, and the golden
    /// record where that needs it: only when the source's copy changed since
    /// weir last read or wrote it (most reads of a full pass have not).
    fn decide(
        &mut self,
        hash: &store::Hash,
        link: Option<&Link>,
    ) -> store::Result<(Accept, Option<Golden>)> {
        let golden = match link {
            Some(l)
                if l.hash_seen.as_ref() != Some(hash) && l.hash_written.as_ref() != Some(hash) =>
            {
                self.tx.golden(l.global_id)?
            }
            _ => None,
        };
        let state = golden.as_ref().map(|g| GoldenState {
            hash: g.hash,
            deleted: g.deleted,
        });
        let mut decision = plan::accept(hash, link, state);
        if let (Accept::Conflict | Accept::FastForward, Some(l)) = (decision, link) {
            // An update weir sent and did not record (a crash between the
            // two), read back: its own write, not an edit made there.
            if self
                .tx
                .sent_hashes(self.system, l.global_id)?
                .contains(hash)
            {
                decision = Accept::Echo;
            }
        }
        Ok((decision, golden))
    }

    /// An upsert's content, hash and ready writes; none when it went
    /// elsewhere: a dead letter (a body the mapping or the rules refuse),
    /// or parked until the record it refers to is read. Unprepared (a
    /// stored change), it is prepared here.
    fn upsert(
        &mut self,
        item: &Change,
        prepared: Option<Prepared>,
        counts: &mut PageCounts,
    ) -> store::Result<Option<Upsert>> {
        let prepared =
            prepared.unwrap_or_else(|| Prepared::of(self.entity, self.binding, item, None));
        match prepared {
            Prepared::Refused(reason) => {
                let lettered = self.dead_letter(item, &reason)?;
                counts.read_letter(lettered);
                Ok(None)
            }
            Prepared::Sealed {
                hash,
                text,
                key,
                ready,
            } => Ok(Some((Content::Text(text), hash, key, ready))),
            Prepared::Record(record) => match self.references_to_global(record)? {
                Ok(r) => {
                    let hash = mapping::hash(&r);
                    let key = mapping::match_key(&self.entity.match_on, &r);
                    Ok(Some((Content::Record(r), hash, key, Vec::new())))
                }
                Err(reason) => {
                    // Waits until the record it refers to has been read.
                    let change =
                        serde_json::json!({ "data": item.data, "actor": item.actor }).to_string();
                    self.tx
                        .park(self.system, &self.entity.name, &item.id, &change, &reason)?;
                    Ok(None)
                }
            },
        }
    }

    /// A record new to weir: a golden record, the source's link, and its
    /// write for every other target: those along the intake that took its
    /// write ready get it in memory, the others an outbox row.
    fn create(
        &mut self,
        item: &Change,
        content: Content,
        hash: &store::Hash,
        key: Option<&str>,
        mut ready: Vec<Option<Ready>>,
    ) -> store::Result<()> {
        let (text, _) = content.into_parts();
        let (system, along) = (self.system, self.along);
        let in_memory = |t: &str| {
            let i = along.iter().position(|a| a == t);
            i.is_some_and(|i| ready.get(i).is_some_and(Option::is_some))
        };
        let writers = self.writers_but(Some(system)).filter(|t| !in_memory(t));
        let audit = self.audit(item, AuditOp::ReadCreate, None, Some(&text), Outcome::Ok);
        let put = Put {
            entity: &self.entity.name,
            state: State::New {
                text: &text,
                hash,
                key,
            },
            origin: system,
            audit,
        };
        let gid = golden::put(self.tx, put, writers)?;
        self.tx
            .record_seen(&self.entity.name, system, &item.id, gid, hash, None)?;
        for (i, fresh) in self.fresh.iter_mut().enumerate() {
            if let Some(r) = ready.get_mut(i).and_then(Option::take) {
                fresh.push((gid, *hash, r));
            }
        }
        Ok(())
    }

    /// A change of a record whose golden value the source had seen: taken
    /// as it is, and queued for every other target.
    fn fast_forward(
        &mut self,
        item: &Change,
        content: Content,
        hash: &store::Hash,
        key: Option<&str>,
        gid: i64,
        golden: Option<Golden>,
    ) -> store::Result<()> {
        let (text, _) = content.into_parts();
        let system = self.system;
        let before = golden.map(|g| g.data);
        let audit = self.audit(
            item,
            AuditOp::ReadUpdate,
            before.as_deref(),
            Some(&text),
            Outcome::Ok,
        );
        let put = Put {
            entity: &self.entity.name,
            state: State::Changed {
                global_id: gid,
                text: &text,
                hash,
                key,
            },
            origin: system,
            audit,
        };
        let writers = self.writers_but(Some(system));
        golden::put(self.tx, put, writers)?;
        self.tx
            .record_seen(&self.entity.name, system, &item.id, gid, hash, None)
    }

    /// The golden record that a system taking writes of the entity links to
    /// the local id `id`, as a link of this system that has seen nothing yet.
    pub(super) fn same_key_elsewhere(&mut self, id: &str) -> store::Result<Option<Link>> {
        for other in self.targets {
            if other.as_str() == self.system {
                continue;
            }
            if let Some(l) = self.tx.link_by_local(&self.entity.name, other, id)? {
                return Ok(Some(Link {
                    global_id: l.global_id,
                    local_id: id.to_string(),
                    hash_seen: None,
                    hash_written: None,
                }));
            }
        }
        Ok(None)
    }

    /// Holds the change for review when its user is over the entity's
    /// `max_changes_per_user`; returns whether it was held.
    pub(super) fn hold_if_over_limit(&mut self, item: &Change) -> store::Result<bool> {
        if self.approved {
            return Ok(false);
        }
        let (Some(limit), Some(actor)) = (self.entity.max_changes_per_user, item.actor.as_deref())
        else {
            return Ok(false);
        };
        let window = limit.window.as_secs();
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(window as i64);
        let made = self
            .tx
            .changes_by(&self.entity.name, actor, &format!("{since:.3}"))?;
        if made < u64::from(limit.count) {
            return Ok(false);
        }
        let reason = format!(
            "user '{actor}' already made {made} changes to {} in the last {window} s (max_changes_per_user = {})",
            self.entity.name, limit.count
        );
        let delete = item.op == Operation::Delete;
        let data = item
            .data
            .as_deref()
            .and_then(|d| self.binding.mapping.redact(d));
        let change =
            serde_json::json!({ "op": if delete { "delete" } else { "upsert" }, "data": data })
                .to_string();
        self.tx.hold(
            self.system,
            &self.entity.name,
            &item.id,
            Some(actor),
            &change,
            &reason,
        )?;
        let operation = if delete {
            AuditOp::ReadDelete
        } else {
            AuditOp::ReadUpdate
        };
        self.note(None, item, operation, Outcome::Held)?;
        Ok(true)
    }

    /// A delete from the source: a record weir knows is deleted (unless
    /// its user is over the limit: held), and the delete queued for every
    /// other target; one it does not know changes nothing.
    fn accept_delete(&mut self, item: Change, counts: &mut PageCounts) -> store::Result<()> {
        let Some(link) = self
            .tx
            .link_by_local(&self.entity.name, self.system, &item.id)?
        else {
            return Ok(());
        };
        if self.hold_if_over_limit(&item)? {
            counts.held += 1;
            return Ok(());
        }
        counts.fresh += 1;
        let gid = link.global_id;
        let system = self.system;
        let before = self.tx.golden(gid)?.map(|g| g.data);
        self.tx.unlink(system, gid)?;
        let audit = self.audit(
            &item,
            AuditOp::ReadDelete,
            before.as_deref(),
            None,
            Outcome::Ok,
        );
        let put = Put {
            entity: &self.entity.name,
            state: State::Deleted { global_id: gid },
            origin: system,
            audit,
        };
        let writers = self.writers_but(Some(system));
        golden::put(self.tx, put, writers)?;
        Ok(())
    }

    /// Translates reference fields from the source's local ids to global ids.
    pub(super) fn references_to_global(
        &mut self,
        mut record: Record,
    ) -> store::Result<Result<Record, String>> {
        for (field, ref_entity) in &self.entity.references {
            let Some(value) = record.get(field) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let local = mapping::id_text(value);
            match self.tx.link_by_local(ref_entity, self.system, &local)? {
                Some(link) => {
                    record.insert(field.clone(), Value::from(link.global_id));
                }
                None => {
                    return Ok(Err(format!(
                        "field '{field}' refers to {ref_entity} record '{local}', which weir has not read from system '{}'",
                        self.system
                    )))
                }
            }
        }
        Ok(Ok(record))
    }
}
