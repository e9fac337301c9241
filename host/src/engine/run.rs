//! One sync pass: intake from every readable system (RESYNC or CHANGE), then
//! delivery of the outbox to every writable system, entity by entity in
//! manifest order. Systems that read nothing are delivered to along the
//! intake, page by page, as well.
//!
//! Intake of a page is one store transaction: golden records, links, outbox
//! rows for each target and audit rows commit together with the source's
//! cursor, so a crash loses nothing and repeats nothing that was committed.
//! Delivery reads the outbox after that; a delivered row is removed in the
//! same transaction that records the target's link, unless the record
//! changed meanwhile.

use super::dry_run::{DryRun, Scratch};
use super::error::SyncError;
use super::faults::Faults;
use super::pass::{Participant, Pass};
use super::report::{SyncOptions, SyncReport};
use super::rollback::changes_to_undo;
use crate::manifest::{Manifest, System, SystemEntity};
use crate::runtime::{Instance, Runtime};
use crate::store::{self, RunStatus, Store, WriterLease};
use std::collections::BTreeSet;

/// Runs one sync pass over every system of the manifest.
pub async fn sync(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    run(manifest, runtime, options, Mode::Sync).await
}

/// Plans one sync pass without writing anything: the pass runs on a copy of
/// the central store, reads the sources, and instead of writing to the
/// targets records what it would write, with field differences against what
/// weir last delivered. The real store and every system are left as they are.
pub async fn dry_run(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let scratch = Scratch::new()?;
    let (planned, dry) = scratch.copy(manifest)?;
    run(&planned, runtime, options, Mode::DryRun(Box::new(dry))).await
}

/// Rolls back run `target`: every golden record the run changed is put back
/// as it was before the run (records the run created are deleted, records it
/// deleted come back), and the result is delivered to every system that
/// takes writes of the entity, the systems the changes came from included.
/// The rollback is a run of its own, audited (`rollback:*` rows) like any.
/// Refused when a later run changed one of those records again: roll that
/// one back first. A system that does not take writes keeps the run's
/// change; the report names it.
pub async fn rollback(
    manifest: &Manifest,
    runtime: &Runtime,
    target: i64,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let _lease = writer_lease(manifest, false)?;
    let changes = changes_to_undo(manifest, target)?;
    let options = SyncOptions {
        deliver_now: true,
        poll: Some(BTreeSet::new()),
        ..options.clone()
    };
    run(manifest, runtime, &options, Mode::Undo { target, changes }).await
}

/// Merges golden record `other` of `entity` into `keep` (`weir merge`):
/// the survivor takes the values of both, each system holding both copies
/// loses the other's (per its `on_delete`), and one holding only the
/// other's has it linked to the survivor; the result is delivered at once.
/// The merge is a run of its own, audited (`merge:*` rows), that
/// `rollback` undoes.
pub async fn merge(
    manifest: &Manifest,
    runtime: &Runtime,
    entity: &str,
    keep: i64,
    other: i64,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let _lease = writer_lease(manifest, false)?;
    super::duplicates::check_merge(manifest, entity, keep, other)?;
    let options = SyncOptions {
        deliver_now: true,
        poll: Some(BTreeSet::new()),
        ..options.clone()
    };
    let mode = Mode::Merge {
        entity: entity.to_string(),
        keep,
        other,
    };
    run(manifest, runtime, &options, mode).await
}

/// Makes this process the writer of the manifest's store (creating and
/// migrating the store if needed) for as long as the lease is kept, unless
/// it is already (then none). Another live holder: with `wait`, waits
/// until its lease is released or runs out; without, fails naming it.
/// `sync` and `rollback` take it for their pass; a long-lived caller such
/// as the service takes it once, for its whole life.
pub fn writer_lease(manifest: &Manifest, wait: bool) -> Result<Option<WriterLease>, SyncError> {
    drop(Store::open(&manifest.store).map_err(SyncError::Open)?);
    take_lease(manifest, wait)
}

/// The lease of an opened store, unless this process holds it already.
fn take_lease(manifest: &Manifest, wait: bool) -> Result<Option<WriterLease>, SyncError> {
    if store::holds_writer_lease(&manifest.store) {
        return Ok(None);
    }
    Ok(Some(WriterLease::take(
        &manifest.store,
        manifest.lease,
        wait,
    )?))
}

/// What a pass does besides delivering the outbox.
enum Mode {
    /// Reads every source.
    Sync,
    /// Reads every source and plans, on a copy of the store.
    DryRun(Box<DryRun>),
    /// Puts back what run `target` changed.
    Undo {
        target: i64,
        changes: Vec<store::RunChange>,
    },
    /// Merges golden record `other` of `entity` into `keep`.
    Merge {
        entity: String,
        keep: i64,
        other: i64,
    },
}

/// What a pass does before it delivers.
enum Work {
    Read,
    Undo(i64, Vec<store::RunChange>),
    Merge(String, i64, i64),
}

async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
    mode: Mode,
) -> Result<SyncReport, SyncError> {
    let began = std::time::Instant::now();
    let mut store = Store::open(&manifest.store).map_err(SyncError::Open)?;
    // A dry run's store is a copy of its own (holding the real one's lease row).
    let _lease = match mode {
        Mode::DryRun(_) => None,
        _ => take_lease(manifest, false)?,
    };
    for entity in super::identity::rekey(&mut store, manifest)? {
        tracing::info!(entity = %entity, "match keys made anew under its match_on");
    }
    let run_id = store.begin_run()?;
    let (dry, work) = match mode {
        Mode::Sync => (None, Work::Read),
        Mode::DryRun(dry) => (Some(*dry), Work::Read),
        Mode::Undo { target, changes } => (None, Work::Undo(target, changes)),
        Mode::Merge {
            entity,
            keep,
            other,
        } => (None, Work::Merge(entity, keep, other)),
    };
    let mut report = SyncReport::new(run_id);
    let participants = start_all(manifest, runtime, &store, dry.is_some(), &mut report).await;
    let mut pass = Pass {
        store: &mut store,
        participants,
        report,
        run_id,
        options,
        faults: Faults::from_env(),
        parked: Default::default(),
        lettered: Default::default(),
        write_lettered: Default::default(),
        dry,
        along: Vec::new(),
        failed_rows: Default::default(),
        unreached: Default::default(),
    };
    // Spans left by a pass that ended before it delivered them: outbox
    // rows, their creates tried (a crash may have come after a write).
    pass.store
        .transaction(|tx| tx.expand_spans(true).map(drop))?;
    match work {
        Work::Undo(target, changes) => pass.undo(manifest, target, &changes)?,
        Work::Merge(entity, keep, other) => pass.merge_records(manifest, &entity, keep, other)?,
        Work::Read => {
            if pass.dry.is_none() {
                pass.settle_tried(manifest).await?;
            }
            pass.intake_all(manifest).await?
        }
    }
    // Spans of targets that failed along an intake: outbox rows, kept for
    // the dispatcher (or a later pass) like every other pending delivery.
    pass.store
        .transaction(|tx| tx.expand_spans(false).map(drop))?;
    pass.dispatch_all(manifest).await?;
    let Pass {
        mut report, dry, ..
    } = pass;
    if let Some(dry) = dry {
        report.plan = dry.lines;
    }
    let status = if report.is_clean() {
        RunStatus::Ok
    } else {
        RunStatus::Partial
    };
    store.finish_run(
        run_id,
        status,
        report.counts,
        report.failures.first().map(String::as_str),
    )?;
    if let Some(days) = manifest.audit_retention_days {
        prune_audit(&store, days);
    }
    crate::telemetry::events::PassFinished {
        run_id,
        took: began.elapsed(),
    }
    .emit();
    Ok(report)
}

/// Starts an instance of every system's connector; a system whose
/// connector does not start takes no part (the report says why).
async fn start_all<'m>(
    manifest: &'m Manifest,
    runtime: &Runtime,
    store: &Store,
    dry: bool,
    report: &mut SyncReport,
) -> Vec<Participant<'m>> {
    let mut participants = Vec::new();
    for system in &manifest.systems {
        let instance = match start(runtime, system, store.path()).await {
            Ok(mut i) => {
                if dry {
                    i.set_dry_run();
                }
                Some(i)
            }
            Err(e) => {
                report.failures.push(e);
                None
            }
        };
        participants.push(Participant {
            system,
            instance,
            failures: 0,
        });
    }
    participants
}

impl Pass<'_, '_> {
    /// Reads every entity from every source that reads it, in manifest order.
    async fn intake_all(&mut self, manifest: &Manifest) -> Result<(), SyncError> {
        for entity in &manifest.entities {
            for s in 0..self.participants.len() {
                let Some(b) = self.participants[s].system.entity(&entity.name) else {
                    continue;
                };
                if b.direction.reads() && self.participants[s].instance.is_some() {
                    self.intake(s, entity, b).await?;
                }
            }
        }
        Ok(())
    }

    /// Delivers the outbox due at its start, entity by entity in manifest
    /// order, to every system that takes writes and is still running.
    /// Settles, before anything new, the creates a pass that ended early
    /// sent without recording their outcome: each target that can be asked
    /// is asked whether it holds them (found: linked), and those it does
    /// not hold are written, whatever their backoff.
    async fn settle_tried(&mut self, manifest: &Manifest) -> Result<(), SyncError> {
        if !self.store.has_tried()? {
            return Ok(());
        }
        for entity in &manifest.entities {
            let mut deliveries = Vec::new();
            for t in 0..self.participants.len() {
                let p = &self.participants[t];
                let Some(b) = p.system.entity(&entity.name) else {
                    continue;
                };
                if !b.direction.writes() || !p.instance.as_ref().is_some_and(|i| i.can_find()) {
                    continue;
                }
                if let Some(mut d) = self.delivery(t, b, entity) {
                    d.only_tried = true;
                    d.hold_deletes = true;
                    deliveries.push(d);
                }
            }
            self.drain(entity, deliveries, "9999").await?;
        }
        Ok(())
    }

    async fn dispatch_all(&mut self, manifest: &Manifest) -> Result<(), SyncError> {
        let due = store::now();
        for entity in &manifest.entities {
            let targets: Vec<(usize, &SystemEntity)> = self
                .participants
                .iter()
                .enumerate()
                .filter(|(_, p)| p.instance.is_some())
                .filter_map(|(t, p)| {
                    let b = p.system.entity(&entity.name)?;
                    b.direction.writes().then_some((t, b))
                })
                .collect();
            self.dispatch(entity, targets, &due).await?;
        }
        Ok(())
    }
}

/// Deletes audit rows older than `days` days, at most once a minute per
/// process (the service runs many passes a second under load); a failure is
/// logged, not fatal.
fn prune_audit(store: &Store, days: u32) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    let window = jiff::SignedDuration::from_hours(24 * i64::from(days));
    let Ok(cutoff) = jiff::Timestamp::now().checked_sub(window) else {
        return;
    };
    match store.prune_audit(&format!("{cutoff:.3}")) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            rows = n,
            days,
            "audit rows past the retention window deleted"
        ),
        Err(e) => tracing::warn!("cannot apply audit retention: {e}"),
    }
}

async fn start(
    runtime: &Runtime,
    system: &System,
    store_path: &std::path::Path,
) -> Result<Instance, String> {
    let connector = runtime
        .load(&system.connector)
        .map_err(|e| format!("system '{}': {e}", system.name))?;
    runtime
        .instantiate(
            &connector,
            system,
            super::connector_state(store_path, &system.name),
        )
        .await
        .map_err(|e| e.to_string())
}
