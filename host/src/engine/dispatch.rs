//! Delivery: the due outbox rows of an entity (and, along an intake, the
//! new records kept in memory) written to each target in batches, one
//! write in flight per target while the next batch is planned and the
//! previous one recorded, the targets served in turn.

use super::accept::Offered;
use super::dry_run::plan_line;
use super::error::SyncError;
use super::faults::Faults;
use super::pass::Pass;
use super::work::{binding, idempotent, CursorUpdate, Delivery, InFlight, Kind, Landed, Planned};
use crate::manifest::{Entity, System, SystemEntity};
use crate::runtime::types::KeyedOutcome;
use crate::runtime::CallError;
use crate::store;

/// A link's golden record, hashes seen and written, and base.
type LinkState = (
    i64,
    Option<store::Hash>,
    Option<store::Hash>,
    Option<String>,
);

impl<'m> Pass<'_, 'm> {
    /// Delivers the due outbox rows of one entity to its targets, in batches.
    /// Each target has one write in flight while the next batch is planned
    /// and the previous one recorded, and the targets are served in turn, so
    /// their connectors and systems work at the same time on other threads
    /// while the store is busy on this one.
    pub(super) async fn dispatch(
        &mut self,
        entity: &Entity,
        targets: Vec<(usize, &SystemEntity)>,
        due: &str,
    ) -> Result<(), SyncError> {
        let mut deliveries = Vec::new();
        for (t, tb) in targets {
            if self.dry.is_none() {
                let target = self.participants[t].system.name.clone();
                self.carry_out_target_matches(&target, entity)?;
            }
            if let Some(mut d) = self.delivery(t, tb, entity) {
                d.hold_deletes = self.deletes_beyond_limit(&d.target, entity)?;
                deliveries.push(d);
            }
        }
        self.drain(entity, deliveries, due).await
    }

    /// The delivery of `entity` to target `t`, unless outside its window.
    pub(super) fn delivery<'e>(
        &self,
        t: usize,
        tb: &'e SystemEntity,
        entity: &Entity,
    ) -> Option<Delivery<'e>> {
        let target = self.participants[t].system.name.clone();
        if let Some(window) = tb.deliver_between {
            let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
            let minute = now.hour() as u16 * 60 + now.minute() as u16;
            if !window.contains(minute) && !self.options.deliver_now {
                tracing::debug!(target = %target, entity = %entity.name, "outside the delivery window");
                return None;
            }
        }
        Some(Delivery {
            t,
            tb,
            bind: binding(tb),
            target,
            after: 0,
            hold_deletes: false,
            only_tried: false,
            linger: false,
            in_flight: None,
            fresh: Default::default(),
            taken: 0,
        })
    }

    /// Steps the deliveries in turn until each is done, its last write recorded.
    pub(super) async fn drain(
        &mut self,
        entity: &Entity,
        mut deliveries: Vec<Delivery<'_>>,
        due: &str,
    ) -> Result<(), SyncError> {
        for d in &mut deliveries {
            d.linger = false;
        }
        while !deliveries.is_empty() {
            let mut going = Vec::with_capacity(deliveries.len());
            for mut d in deliveries {
                if self.deliver_step(entity, &mut d, due).await? {
                    going.push(d);
                }
            }
            deliveries = going;
        }
        Ok(())
    }

    /// Starts the deliveries that go along with an intake of `entity`: what
    /// its pages change is delivered while the next page is
    /// read, instead of after every intake of the pass. Only to systems that
    /// read nothing (no entity of theirs is a source): a write never lands on
    /// a change weir has not seen yet, a write that fails (even for good)
    /// stops no read of the pass, and entities still reach each target in
    /// manifest order. Deletes wait for the dispatcher and its
    /// `max_delete_percent` check; a dry run plans everything there.
    pub(super) fn start_along(&mut self, entity: &Entity) {
        self.along.clear();
        if self.dry.is_some() {
            return;
        }
        for t in 0..self.participants.len() {
            let system: &'m System = self.participants[t].system;
            let Some(tb) = system.entity(&entity.name) else {
                continue;
            };
            if self.participants[t].instance.is_none()
                || !tb.direction.writes()
                || system.entities.iter().any(|e| e.direction.reads())
            {
                continue;
            }
            if let Some(mut d) = self.delivery(t, tb, entity) {
                d.hold_deletes = true;
                d.linger = true;
                self.along.push(d);
            }
        }
    }

    /// Delivers what is due to the targets along the intake under way (what
    /// it has accepted so far, and any backlog); each target's last write
    /// stays in flight while the next page is read.
    pub(super) async fn deliver_along(&mut self, entity: &Entity) -> Result<(), SyncError> {
        let mut along = std::mem::take(&mut self.along);
        let due = store::now();
        for d in &mut along {
            while self.deliver_step(entity, d, &due).await? {}
        }
        self.along = along;
        Ok(())
    }

    /// Ends the deliveries along the intake: every write in flight is
    /// waited for and recorded, and every target's instance is back.
    pub(super) async fn finish_along(&mut self, entity: &Entity) -> Result<(), SyncError> {
        let along = std::mem::take(&mut self.along);
        if along.is_empty() {
            return Ok(());
        }
        self.drain(entity, along, &store::now()).await
    }

    /// One step of a target's delivery: plans its next batch, waits for the
    /// write in flight, records it, and starts the next. Returns whether the
    /// delivery goes on; along an intake (`linger`), false once nothing is
    /// due, its last write possibly still in flight.
    pub(super) async fn deliver_step(
        &mut self,
        entity: &Entity,
        d: &mut Delivery<'_>,
        due: &str,
    ) -> Result<bool, SyncError> {
        if d.in_flight.is_none() && self.participants[d.t].instance.is_none() {
            // The target stopped taking writes: its new records wait in
            // their spans for the dispatcher, not in memory.
            d.fresh.clear();
        }
        let batch = self.options.batch_size.max(1) as usize;
        let next = loop {
            // New records first, in the order they were accepted.
            if !d.fresh.is_empty() {
                let n = batch.min(d.fresh.len());
                break Some(d.fresh.drain(..n).collect());
            }
            let rows = self.due_rows(entity, d, due)?;
            let Some(last) = rows.last() else {
                break None;
            };
            // A row may change a new record whose write is on its way: it
            // is planned once that write is recorded (as an update, then).
            if !self
                .land_now(entity, d, |p| p.iter().any(Planned::in_span))
                .await?
            {
                return Ok(false);
            }
            d.after = last.id;
            let rows = rows
                .into_iter()
                .filter(|r| !self.failed_rows.contains(&r.id))
                .collect();
            let planned = self.plan_deliveries(&d.target, entity, d.tb, rows, d.hold_deletes)?;
            d.taken += planned.len();
            if planned.is_empty() {
                continue;
            }
            if let Some(dry) = self.dry.as_mut() {
                for p in &planned {
                    dry.lines
                        .push(plan_line(dry.before.as_ref(), &d.target, d.tb, p)?);
                }
                continue;
            }
            break Some(planned);
        };
        if next.is_none() && d.linger {
            // Along an intake: the write in flight lands at the next step.
            return Ok(false);
        }
        // The write before this one: its outcome decides whether to go on.
        let previous = match d.in_flight.take() {
            Some(f) => match self.land(d.t, &d.target, &entity.name, f).await? {
                Landed::Done(planned, outcomes) => Some((planned, outcomes)),
                // The next batch stays in the outbox as it is.
                Landed::Stop => return Ok(false),
                Landed::Skip => None,
            },
            None => None,
        };
        let mut more = next.is_some();
        // A batch that creates records under keys the target assigns is
        // written only once everything before it is recorded, and is
        // recorded before anything else happens (below): written twice
        // after a crash, it would create them twice. Writes by key are
        // idempotent and may overlap the recording of the batch before.
        let mut previous = previous;
        if next.as_ref().is_some_and(|p| !idempotent(p)) {
            if let Some((planned, outcomes)) = previous.take() {
                self.record(entity, d, planned, outcomes)?;
            }
        }
        let next = match next {
            // Creates under keys the target assigns: looked up first where
            // needed, and marked as tried before they are sent.
            Some(planned) if !idempotent(&planned) => {
                match self.look_before_create(entity, d, planned).await? {
                    Some(planned) if planned.is_empty() => None,
                    Some(planned) => Some(planned),
                    None => return Ok(false),
                }
            }
            next => next,
        };
        if let Some(planned) = next {
            match self.participants[d.t].instance.take() {
                Some(instance) => {
                    d.in_flight = Some(InFlight::start(instance, &d.bind, d.tb, planned))
                }
                // Stopped: the batch stays in the outbox as it is.
                None => more = false,
            }
        }
        if let Some((planned, outcomes)) = previous {
            self.record(entity, d, planned, outcomes)?;
        }
        if !self.land_now(entity, d, |p| !idempotent(p)).await? {
            return Ok(false);
        }
        Ok(more || d.in_flight.is_some())
    }

    /// Waits for the write in flight and records it, if `now` says so of
    /// its batch. False when the target takes no more writes in this pass.
    pub(super) async fn land_now(
        &mut self,
        entity: &Entity,
        d: &mut Delivery<'_>,
        now: fn(&[Planned]) -> bool,
    ) -> Result<bool, SyncError> {
        let Some(f) = d.in_flight.take_if(|f| now(&f.planned)) else {
            return Ok(true);
        };
        match self.land(d.t, &d.target, &entity.name, f).await? {
            Landed::Done(planned, outcomes) => self.record(entity, d, planned, outcomes)?,
            Landed::Stop => return Ok(false),
            Landed::Skip => {}
        }
        Ok(true)
    }

    /// The next batch of `d`'s due outbox rows; none once the pass has
    /// taken `pass_rows` of them (the rest waits for the next pass, which
    /// follows at once).
    fn due_rows(
        &mut self,
        entity: &Entity,
        d: &mut Delivery<'_>,
        due: &str,
    ) -> Result<Vec<store::OutboxRow>, SyncError> {
        if self.options.pass_rows.is_some_and(|cap| d.taken >= cap) {
            self.report.more_due = true;
            return Ok(Vec::new());
        }
        // Retries about to come due go too, but for those the system asked
        // to wait for (a rate limit's Retry-After).
        let gather = store::now_plus(self.options.retry_gather);
        let rows = self.store.outbox_due(
            &d.target,
            &entity.name,
            (due, &gather, d.after),
            self.options.batch_size,
            d.only_tried,
        )?;
        Ok(rows)
    }

    /// After a write call to `target` that reached nothing there (it failed
    /// before any request connected), its creates are known not to have
    /// landed: they are sent again as creates, without first asking the
    /// target whether they are there (which, for a large backlog after an
    /// outage, is a search per record).
    fn settle_unsent(&mut self, target: &str, creates: &[i64]) -> Result<(), SyncError> {
        if !self.unreached.contains(target) {
            return Ok(());
        }
        self.store.transaction(|tx| {
            for gid in creates {
                tx.create_settled(target, *gid)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Records a landed write, and merges the records its target answered
    /// were changed there since weir last saw them, as changes read from
    /// it: their writes, merged, go at a later pass.
    fn record(
        &mut self,
        entity: &Entity,
        d: &Delivery<'_>,
        planned: Vec<Planned>,
        outcomes: Vec<KeyedOutcome>,
    ) -> Result<(), SyncError> {
        let creates = creates_of(&planned);
        let changed = self.record_deliveries(&d.target, &entity.name, planned, outcomes)?;
        self.settle_unsent(&d.target, &creates)?;
        if changed.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = changed.iter().map(|c| c.id.clone()).collect();
        let raws: Vec<Option<String>> = changed.iter().map(|c| c.data.clone()).collect();
        let before = self.link_states(&entity.name, &d.target, &ids)?;
        // The records parked for the source read last are not these.
        let parked = std::mem::take(&mut self.parked);
        let accepted = self.accept(
            d.t,
            entity,
            d.tb,
            Offered::changes(changed),
            CursorUpdate::None,
        );
        self.parked = parked;
        accepted?;
        // A record answered `changed` that, mapped, holds just what weir saw
        // there (its link unmoved by the merge) spells those values its own
        // way: the next write's condition takes them as it holds them.
        let after = self.link_states(&entity.name, &d.target, &ids)?;
        let target = d.target.clone();
        self.store.transaction(|tx| {
            for ((was, now), raw) in before.into_iter().zip(after).zip(raws) {
                let (Some(was), Some(now)) = (was, now) else {
                    continue;
                };
                let raw = raw.filter(|_| was == now);
                tx.set_seen_raw(&target, now.0, raw.as_deref())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// What weir knows of each record `ids` of `target`: its golden
    /// record, the hashes last seen and written, and the base.
    fn link_states(
        &mut self,
        entity: &str,
        target: &str,
        ids: &[String],
    ) -> Result<Vec<Option<LinkState>>, SyncError> {
        Ok(self.store.transaction(|tx| {
            let mut states = Vec::with_capacity(ids.len());
            for id in ids {
                let state = match tx.link_by_local(entity, target, id)? {
                    Some(l) => {
                        let base = tx.link_base(target, l.global_id)?;
                        Some((l.global_id, l.hash_seen, l.hash_written, base))
                    }
                    None => None,
                };
                states.push(state);
            }
            Ok(states)
        })?)
    }

    /// Waits for a write in flight, gives the instance back, and sorts out
    /// its outcome: recorded by the caller, or failed (postponed here).
    pub(super) async fn land(
        &mut self,
        t: usize,
        target: &str,
        entity: &str,
        f: InFlight,
    ) -> Result<Landed, SyncError> {
        let (instance, planned, result) = f.finish().await?;
        Faults::count(&mut self.faults.writes_left, 1);
        let reached = instance.reached_system();
        self.participants[t].instance = Some(instance);
        if reached {
            self.unreached.remove(target);
        } else {
            self.unreached.insert(target.to_string());
        }
        Ok(match result {
            Ok(o) if o.len() == planned.len() => Landed::Done(planned, o),
            Ok(o) => {
                let message = format!(
                    "connector returned {} outcomes for {} writes",
                    o.len(),
                    planned.len()
                );
                self.postpone(target, entity, &planned, &message)?;
                self.fail(
                    t,
                    CallError::Trap {
                        system: target.to_string(),
                        message,
                    },
                );
                Landed::Stop
            }
            Err(e) => {
                self.postpone(target, entity, &planned, &e.to_string())?;
                self.settle_unsent(target, &creates_of(&planned))?;
                self.report.counts.failed += planned.len() as u64;
                let fatal = e.is_fatal();
                self.fail(t, e);
                if fatal {
                    Landed::Stop
                } else {
                    Landed::Skip
                }
            }
        })
    }
}

/// The golden records of the creates among `planned` whose only doubt is
/// this send: one sent before with an outcome still unknown (`tried`)
/// keeps that doubt whatever this send did.
fn creates_of(planned: &[Planned]) -> Vec<i64> {
    planned
        .iter()
        .filter(|p| p.kind == Kind::Create && p.tried.is_none())
        .map(|p| p.gid)
        .collect()
}
