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

use super::plan::{self, Accept, GoldenState, Write};
use crate::manifest::{Entity, Manifest, OnDelete, System, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::types::{Change, EntityBinding, ErrorKind, Operation, WriteItem};
use crate::runtime::{kind_name, CallError, Instance, Runtime};
use crate::store::{
    self, Link, NewAudit, NewConflict, NewDeadLetter, OutboxOp, OutboxRow, RunCounts, Store, Tx,
};
use anyhow::Context as _;
use serde_json::Value;
use std::collections::BTreeSet;

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Records per page read and per batch written (default 1000).
    pub batch_size: u32,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Read every source in full (RESYNC), even where a change cursor exists.
    /// Full reads also find records deleted at a source.
    pub full: bool,
    /// Deliver deletes even beyond an entity's `max_delete_percent`.
    pub allow_deletes: bool,
    /// Deliver to batch systems (`deliver_between`) outside their window too.
    pub deliver_now: bool,
    /// The (system, entity) pairs to poll (read or ask for changes); none
    /// means every one. Changes already in the store (pushed, held, parked)
    /// are taken whatever this says, and the whole outbox is delivered.
    pub poll: Option<BTreeSet<(String, String)>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_size: 1000,
            progress: false,
            full: false,
            allow_deletes: false,
            deliver_now: false,
            poll: None,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The run's id in the store.
    pub run_id: i64,
    /// Its figures.
    pub counts: RunCounts,
    /// Failures of whole systems or entities (the rest of the sync went on).
    pub failures: Vec<String>,
    /// Changes held for review (per-user limits).
    pub held: u64,
    /// For a dry run: what would be written, per target and entity in order.
    pub plan: Vec<PlanLine>,
    /// The sources polled in this pass, with the number of changes each poll
    /// brought that weir did not know yet (new content, not echoes or repeats).
    pub polled: Vec<Polled>,
    /// What the user should know that is not a failure.
    pub notes: Vec<String>,
}

/// One source polled in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The system.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// Changes the poll found that weir did not know yet.
    pub fresh: u64,
    /// Whether the poll failed.
    pub failed: bool,
}

impl SyncReport {
    /// Whether everything synced without a failure or a dead letter.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.counts.failed == 0
    }
}

/// The binding of a system's entity as the connector sees it.
pub fn binding(e: &SystemEntity) -> EntityBinding {
    EntityBinding {
        name: e.name.clone(),
        primary_key: e.primary_key.clone(),
        settings: e.settings.to_string(),
    }
}

/// A system taking part in this run.
struct Participant<'m> {
    system: &'m System,
    instance: Option<Instance>,
    /// Calls of this system that failed in the pass.
    failures: u32,
}

/// The state of an interrupted full read, kept as the `read` cursor.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadState {
    /// The cursor of the next page.
    next: String,
    /// The change cursor taken before the snapshot started.
    checkpoint: Option<String>,
}

/// Where a source's cursor goes after a page commits.
enum CursorUpdate {
    /// Nowhere (parked changes retried).
    None,
    /// Nowhere, and these inbox entries are removed.
    Inbox(Vec<i64>),
    /// A full read continues at this state.
    Reading(String),
    /// A full read ended: the change cursor is set (or kept unset).
    ReadDone(Option<String>),
    /// A change batch: the new change cursor.
    Changes(String),
}

/// Runs one sync pass over every system of the manifest.
pub async fn sync(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> anyhow::Result<SyncReport> {
    run(manifest, runtime, options, None, None).await
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
) -> anyhow::Result<SyncReport> {
    let store = Store::open(&manifest.store).context("opening the central store")?;
    if !store.run_exists(target)? {
        anyhow::bail!("there is no run {target}: see `weir runs`");
    }
    let changes = store.run_changes(target)?;
    if changes.is_empty() {
        anyhow::bail!("run {target} changed no record: there is nothing to roll back");
    }
    let later = store.later_changes(target)?;
    if !later.is_empty() {
        anyhow::bail!(
            "records of run {target} changed again since ({}): roll later runs back first, newest first",
            later.join(", ")
        );
    }
    drop(store);
    let options = SyncOptions {
        deliver_now: true,
        poll: Some(BTreeSet::new()),
        ..options.clone()
    };
    run(manifest, runtime, &options, None, Some((target, changes))).await
}

/// Plans one sync pass without writing anything: the pass runs on a copy of
/// the central store, reads the sources, and instead of writing to the
/// targets records what it would write, with field differences against what
/// weir last delivered. The real store and every system are left as they are.
pub async fn dry_run(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> anyhow::Result<SyncReport> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("weir-dry-run-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = async {
        let copy = dir.join("weir.db");
        let before = if manifest.store.exists() {
            let original = Store::open_read_only(&manifest.store)?;
            original.copy_to(&copy)?;
            Some(original)
        } else {
            None
        };
        let mut planned = manifest.clone();
        planned.store = copy;
        run(
            &planned,
            runtime,
            options,
            Some(DryRun {
                before,
                lines: Vec::new(),
            }),
            None,
        )
        .await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// A write a dry run would make.
#[derive(Debug, Clone)]
pub struct PlanLine {
    /// The target system.
    pub target: String,
    /// The entity.
    pub entity: String,
    /// `create`, `update`, `delete` or `soft-delete`.
    pub kind: &'static str,
    /// The record's id in the target (none for a create).
    pub local_id: Option<String>,
    /// Changed fields: name, value weir last delivered (if known), new value.
    pub changes: Vec<(String, Option<Value>, Value)>,
}

/// The state of a dry run.
struct DryRun {
    /// The real store, to compare against.
    before: Option<Store>,
    /// What would be written.
    lines: Vec<PlanLine>,
}

async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
    dry: Option<DryRun>,
    undo: Option<(i64, Vec<store::RunChange>)>,
) -> anyhow::Result<SyncReport> {
    let began = std::time::Instant::now();
    let mut store = Store::open(&manifest.store).context("opening the central store")?;
    let run_id = store.begin_run()?;
    let mut report = SyncReport {
        run_id,
        counts: RunCounts::default(),
        failures: Vec::new(),
        held: 0,
        plan: Vec::new(),
        polled: Vec::new(),
        notes: Vec::new(),
    };
    let mut participants = Vec::new();
    for system in &manifest.systems {
        let instance = match start(runtime, system, store.path()).await {
            Ok(mut i) => {
                if dry.is_some() {
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
    let mut engine = Engine {
        store: &mut store,
        participants,
        report,
        run_id,
        options,
        faults: Faults::from_env(),
        parked: Default::default(),
        dry,
        along: Vec::new(),
        failed_rows: Default::default(),
    };
    // Spans left by a pass that ended before it delivered them: outbox rows.
    engine.store.transaction(|tx| tx.expand_spans().map(drop))?;
    if let Some((target, changes)) = undo {
        engine.undo(manifest, target, &changes)?;
    } else {
        for entity in &manifest.entities {
            for s in 0..engine.participants.len() {
                let Some(b) = engine.participants[s].system.entity(&entity.name) else {
                    continue;
                };
                if b.direction.reads() && engine.participants[s].instance.is_some() {
                    engine.intake(s, entity, b).await?;
                }
            }
        }
    }
    // Spans of targets that failed along an intake: outbox rows, kept for
    // the dispatcher (or a later pass) like every other pending delivery.
    engine.store.transaction(|tx| tx.expand_spans().map(drop))?;
    let due = store::now();
    for entity in &manifest.entities {
        let targets: Vec<(usize, &SystemEntity)> = engine
            .participants
            .iter()
            .enumerate()
            .filter(|(_, p)| p.instance.is_some())
            .filter_map(|(t, p)| {
                let b = p.system.entity(&entity.name)?;
                b.direction.writes().then_some((t, b))
            })
            .collect();
        engine.dispatch(entity, targets, &due).await?;
    }
    let Engine {
        mut report, dry, ..
    } = engine;
    if let Some(dry) = dry {
        report.plan = dry.lines;
    }
    let status = if report.is_clean() { "ok" } else { "partial" };
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
        .instantiate(&connector, system, store_path)
        .await
        .map_err(|e| e.to_string())
}

/// Test hooks that kill the process at chosen points (crash-safety tests).
/// Set by `WEIR_FAULT_KILL_AFTER_PAGES` and `WEIR_FAULT_KILL_AFTER_DELIVERIES`.
struct Faults {
    pages_left: Option<u64>,
    deliveries_left: Option<u64>,
}

impl Faults {
    fn from_env() -> Faults {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Faults {
            pages_left: var("WEIR_FAULT_KILL_AFTER_PAGES"),
            deliveries_left: var("WEIR_FAULT_KILL_AFTER_DELIVERIES"),
        }
    }

    fn count(left: &mut Option<u64>, n: u64) {
        if let Some(l) = left {
            *l = l.saturating_sub(n);
            if *l == 0 {
                kill_self();
            }
        }
    }
}

/// Ends the process the way `kill -9` does: no destructor, no flush.
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

struct Engine<'a, 'm> {
    store: &'a mut Store,
    participants: Vec<Participant<'m>>,
    report: SyncReport,
    run_id: i64,
    options: &'a SyncOptions,
    faults: Faults,
    /// Parked changes of the system and entity being read: local id → change.
    parked: std::collections::HashMap<String, String>,
    /// Set for a dry run.
    dry: Option<DryRun>,
    /// The deliveries going along with the intake under way.
    along: Vec<Delivery<'m>>,
    /// Outbox rows whose write failed in this pass: tried again in a later
    /// pass, with backoff, not at the end of this one.
    failed_rows: std::collections::HashSet<i64>,
}

/// What one accepted page changed in the run's figures.
#[derive(Default)]
struct PageCounts {
    /// Changes with content weir did not know yet.
    fresh: u64,
    /// Records new to weir.
    created: u64,
    /// Records read with content weir already had.
    unchanged: u64,
    echoes: u64,
    conflicts: u64,
    failed: u64,
    held: u64,
}

impl PageCounts {
    fn add_to(&self, report: &mut SyncReport) {
        report.counts.skipped += self.unchanged;
        report.counts.echoes += self.echoes;
        report.counts.conflicts += self.conflicts;
        report.counts.failed += self.failed;
        report.held += self.held;
    }
}

impl<'m> Engine<'_, 'm> {
    /// Puts back every golden record run `target` changed as it was before
    /// it, and queues the result for every system that takes writes of the
    /// entity, in one transaction with `rollback:*` audit rows.
    fn undo(
        &mut self,
        manifest: &Manifest,
        target: i64,
        changes: &[store::RunChange],
    ) -> anyhow::Result<()> {
        let run_id = self.run_id;
        let writers = |entity: &str| -> Vec<String> {
            manifest
                .systems
                .iter()
                .filter(|s| s.entity(entity).is_some_and(|b| b.direction.writes()))
                .map(|s| s.name.clone())
                .collect()
        };
        let actor = format!("rollback of run {target}");
        let mut kept = BTreeSet::new();
        let undone = self.store.transaction(|tx| {
            let mut undone = 0u64;
            for c in changes {
                let gid = c.global_id;
                let targets = writers(&c.entity);
                if !targets.contains(&c.system) {
                    kept.insert((c.system.clone(), c.entity.clone()));
                }
                let now = tx.golden(gid)?;
                let (operation, after) = match &c.before {
                    None => {
                        tx.delete_golden(gid, &c.system)?;
                        for t in &targets {
                            if tx.link_by_global(t, gid)?.is_some() {
                                tx.enqueue(t, &c.entity, gid, OutboxOp::Delete)?;
                            }
                        }
                        ("rollback:delete", None)
                    }
                    Some(before) => {
                        let record: Record = serde_json::from_str(before).unwrap_or_default();
                        let origin = now
                            .as_ref()
                            .and_then(|g| g.origin.clone())
                            .unwrap_or_else(|| c.system.clone());
                        tx.update_golden(gid, before, &mapping::hash(&record), &origin)?;
                        for t in &targets {
                            tx.enqueue(t, &c.entity, gid, OutboxOp::Upsert)?;
                        }
                        let op = if c.operation == "read:delete" {
                            "rollback:restore"
                        } else {
                            "rollback:update"
                        };
                        (op, Some(before.as_str()))
                    }
                };
                let current = now.filter(|g| !g.deleted).map(|g| g.data);
                tx.audit(NewAudit {
                    run_id,
                    system: &c.system,
                    entity: &c.entity,
                    global_id: Some(gid),
                    local_id: c.local_id.as_deref(),
                    actor: Some(&actor),
                    operation,
                    before: current.as_deref(),
                    after,
                    outcome: "ok",
                })?;
                undone += 1;
            }
            Ok(undone)
        })?;
        self.report.counts.read += undone;
        for (system, entity) in kept {
            self.report.notes.push(format!(
                "system '{system}' does not take writes of {entity}: its records keep the changes of run {target}"
            ));
        }
        Ok(())
    }

    fn fail(&mut self, p: usize, error: CallError) {
        tracing::debug!("{error}");
        if error.is_fatal() {
            self.participants[p].instance = None;
        }
        self.participants[p].failures += 1;
        self.report.failures.push(error.to_string());
    }

    /// Systems that receive writes of an entity.
    fn targets(&self, entity: &str) -> Vec<String> {
        self.participants
            .iter()
            .filter(|p| {
                p.system
                    .entity(entity)
                    .is_some_and(|b| b.direction.writes())
            })
            .map(|p| p.system.name.clone())
            .collect()
    }

    /// Reads one entity from one source: a full snapshot (RESYNC) the first
    /// time, after an interrupted snapshot, or with `--full`; otherwise the
    /// changes since the stored cursor.
    async fn intake(&mut self, s: usize, entity: &Entity, b: &SystemEntity) -> anyhow::Result<()> {
        let system = self.participants[s].system.name.clone();
        let bind = binding(b);
        let changes = self.store.cursor(&system, &entity.name, "changes")?;
        let reading: Option<ReadState> = self
            .store
            .cursor(&system, &entity.name, "read")?
            .and_then(|c| serde_json::from_str(&c).ok());
        let progress = self.progress_bar(&format!("{} from {system}", entity.name));
        let decided: Vec<store::Held> = self
            .store
            .held(Some((&system, &entity.name)))?
            .into_iter()
            .filter(|h| h.status != "held")
            .collect();
        if !decided.is_empty() {
            self.carry_out_decisions(s, entity, b, decided)?;
        }
        self.parked = self
            .store
            .parked(&system, &entity.name)?
            .into_iter()
            .collect();
        if !self.parked.is_empty() {
            let items = self
                .parked
                .iter()
                .map(|(id, change)| stored_change(&entity.name, id, change))
                .collect();
            self.accept(s, entity, b, items, Vec::new(), CursorUpdate::None)?;
        }
        let inbox = self.store.inbox(&system, &entity.name)?;
        let mut poll = self
            .options
            .poll
            .as_ref()
            .is_none_or(|p| p.contains(&(system.clone(), entity.name.clone())));
        if !inbox.is_empty() {
            poll |= self.take_inbox(s, entity, b, &bind, inbox).await?;
        }
        if !poll || self.participants[s].instance.is_none() {
            return Ok(());
        }
        // The source's own failures: writes along the intake fail as their targets'.
        let failures = self.participants[s].failures;
        self.start_along(entity);
        let fresh = match (changes, reading) {
            (Some(cursor), None) if !self.options.full => {
                self.read_changes(s, entity, b, &bind, cursor, &progress)
                    .await?
            }
            (_, reading) => {
                self.read_full(s, entity, b, &bind, reading, &progress)
                    .await?
            }
        };
        self.finish_along(entity).await?;
        progress.finish_and_clear();
        self.report.polled.push(Polled {
            system,
            entity: entity.name.clone(),
            fresh,
            failed: self.participants[s].failures > failures,
        });
        Ok(())
    }

    /// Accepts the changes pushed to a system's inbox (webhooks, the publish
    /// API). A burst of changes to one record becomes its last change. An
    /// upsert without a record body is completed by reading the record
    /// (`lookup`); a record gone meanwhile is left to its delete. Returns
    /// whether the source must be polled instead: its connector cannot look
    /// records up, or the lookup failed (the entries then stay in the inbox).
    async fn take_inbox(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        inbox: Vec<(i64, String, String)>,
    ) -> anyhow::Result<bool> {
        let entries: Vec<i64> = inbox.iter().map(|(id, _, _)| *id).collect();
        self.report.counts.read += inbox.len() as u64;
        let mut last: Vec<Change> = Vec::new();
        let mut at = std::collections::HashMap::new();
        for (_, local, change) in &inbox {
            let change = stored_change(&entity.name, local, change);
            match at.get(local) {
                Some(&i) => last[i] = change,
                None => {
                    at.insert(local.clone(), last.len());
                    last.push(change);
                }
            }
        }
        let bare: Vec<String> = last
            .iter()
            .filter(|c| c.op == Operation::Upsert && c.data.is_none())
            .map(|c| c.id.clone())
            .collect();
        let mut poll = false;
        if !bare.is_empty() {
            let instance = self.participants[s]
                .instance
                .as_mut()
                .expect("checked by the caller");
            if !instance.can_look_up() {
                tracing::debug!(system = %instance.system(), entity = %entity.name, "changes without a record body: polling instead");
                last.retain(|c| c.op == Operation::Delete || c.data.is_some());
                poll = true;
            } else {
                let mut found = std::collections::HashMap::new();
                for chunk in bare.chunks(self.options.batch_size.max(1) as usize) {
                    match instance.lookup(bind, chunk.to_vec()).await {
                        Ok(records) => {
                            found.extend(records.into_iter().map(|c| (c.id.clone(), c.data)))
                        }
                        Err(e) => {
                            // The entries stay in the inbox for the next pass.
                            self.fail(s, e);
                            return Ok(true);
                        }
                    }
                }
                last.retain_mut(|c| {
                    if c.op == Operation::Delete || c.data.is_some() {
                        return true;
                    }
                    match found.remove(&c.id).flatten() {
                        Some(data) => {
                            c.data = Some(data);
                            true
                        }
                        None => false,
                    }
                });
            }
        }
        self.accept(s, entity, b, last, Vec::new(), CursorUpdate::Inbox(entries))?;
        Ok(poll)
    }

    async fn read_full(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        resume: Option<ReadState>,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<u64> {
        let system = self.participants[s].system.name.clone();
        let mut fresh = 0;
        // Deletes are found by what a complete snapshot lacks; a resumed
        // snapshot did not see its first pages, so it finds none.
        let (cursor, checkpoint, mut known) = match resume {
            Some(r) => (Some(r.next), r.checkpoint, None),
            None => {
                let instance = self.participants[s]
                    .instance
                    .as_mut()
                    .expect("checked by the caller");
                let checkpoint = match instance.checkpoint(bind).await {
                    Ok(c) => Some(c),
                    Err(CallError::Connector { error, .. })
                        if error.kind == ErrorKind::Unsupported =>
                    {
                        None
                    }
                    Err(CallError::Unsupported { .. }) => None,
                    Err(e) => {
                        self.fail(s, e);
                        return Ok(0);
                    }
                };
                (
                    None,
                    checkpoint,
                    Some(Unseen::load(self.store, &entity.name, &system)?),
                )
            }
        };
        // The connector reads on a task of its own, and each page is
        // prepared on another thread while the connector reads the next and
        // this one accepts the page before.
        let Some(instance) = self.participants[s].instance.take() else {
            return Ok(0);
        };
        // A snapshot of a source weir holds nothing of yet (or a resumed
        // one) starts out taking its records for new.
        let new = known.as_ref().is_none_or(|k| k.left.is_empty());
        let shape = Shape::of(entity, b, &self.along, new);
        let mut first = cursor.is_none();
        let (mut pages, reader) =
            read_pages(instance, bind, &shape, cursor, self.options.batch_size);
        while let Some(prepping) = pages.recv().await {
            let (result, prepared) = prepping
                .await
                .map_err(|e| anyhow::anyhow!("a page preparation task failed: {e}"))?;
            let page = match result {
                Ok(p) => p,
                Err(e) => {
                    drop(pages);
                    self.participants[s].instance = Some(join_reader(reader).await?);
                    match e {
                        // A system that cannot be listed (its changes arrive as
                        // webhooks or through the publish API): nothing to read,
                        // and no snapshot to find deletes in.
                        CallError::Connector { error, .. }
                            if error.kind == ErrorKind::Unsupported && first =>
                        {
                            tracing::debug!(system = %self.participants[s].system.name, "{}", error.message);
                        }
                        e => self.fail(s, e),
                    }
                    return Ok(fresh);
                }
            };
            first = false;
            self.report.counts.read += page.items.len() as u64;
            progress.inc(page.items.len() as u64);
            if let Some(known) = known.as_mut() {
                for item in &page.items {
                    known.seen(&item.id);
                }
            }
            let update = match &page.next {
                Some(next) => CursorUpdate::Reading(serde_json::to_string(&ReadState {
                    next: next.clone(),
                    checkpoint: checkpoint.clone(),
                })?),
                None => CursorUpdate::ReadDone(checkpoint.clone()),
            };
            let mut items = page.items;
            if page.next.is_none() {
                // The snapshot is complete: what it lacks was deleted at the source.
                let missing = match known.take() {
                    Some(k) => k.missing(self.store, &entity.name, &system)?,
                    None => Vec::new(),
                };
                for id in missing {
                    items.push(Change {
                        entity: entity.name.clone(),
                        id,
                        op: Operation::Delete,
                        data: None,
                        previous: None,
                        version: None,
                        actor: None,
                    });
                }
            }
            let read = items.len() as u64;
            let page = self.accept(s, entity, b, items, prepared, update)?;
            shape.learn(page.created, read);
            fresh += page.fresh;
            Faults::count(&mut self.faults.pages_left, 1);
            self.deliver_along(entity).await?;
        }
        self.participants[s].instance = Some(join_reader(reader).await?);
        Ok(fresh)
    }

    async fn read_changes(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        cursor: String,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<u64> {
        let mut fresh = 0;
        // The next batch is asked for on a task of its own while this one is
        // accepted (one batch ahead at most, as the WIT `changes` allows).
        let shape = Shape::of(entity, b, &self.along, false);
        let mut pending = self.participants[s]
            .instance
            .take()
            .map(|i| changes_ahead(i, bind, &shape, cursor, self.options.batch_size));
        while let Some(task) = pending.take() {
            let (instance, result, prepared) = task
                .await
                .map_err(|e| anyhow::anyhow!("a connector read task failed: {e}"))?;
            self.participants[s].instance = Some(instance);
            let batch = match result {
                Ok(b) => b,
                Err(e) => {
                    self.fail(s, e);
                    return Ok(fresh);
                }
            };
            if batch.more {
                pending = self.participants[s].instance.take().map(|i| {
                    changes_ahead(
                        i,
                        bind,
                        &shape,
                        batch.cursor.clone(),
                        self.options.batch_size,
                    )
                });
            }
            self.report.counts.read += batch.items.len() as u64;
            progress.inc(batch.items.len() as u64);
            let read = batch.items.len() as u64;
            let page = self.accept(
                s,
                entity,
                b,
                batch.items,
                prepared,
                CursorUpdate::Changes(batch.cursor),
            )?;
            shape.learn(page.created, read);
            fresh += page.fresh;
            Faults::count(&mut self.faults.pages_left, 1);
            self.deliver_along(entity).await?;
        }
        Ok(fresh)
    }

    fn progress_bar(&self, label: &str) -> indicatif::ProgressBar {
        if !self.options.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {human_pos} records read ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    /// Carries out review decisions on held changes of one system and entity:
    /// an approved change is accepted now, past the per-user limit; a rejected
    /// one is dropped and, where the system can be written to, its record is
    /// put back to the golden value.
    fn carry_out_decisions(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        decided: Vec<store::Held>,
    ) -> anyhow::Result<()> {
        let system = self.participants[s].system.name.clone();
        let targets = self.targets(&entity.name);
        let run_id = self.run_id;
        let counts = self.store.transaction(|tx| {
            let mut counts = PageCounts::default();
            for h in decided {
                tx.unhold(h.id)?;
                let item = held_change(&entity.name, &h);
                if h.status == "approved" {
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
                        tx.record_seen(
                            &entity.name,
                            &system,
                            &h.local_id,
                            link.global_id,
                            &mapping::hash(&canonical),
                        )?;
                    }
                }
                if targets.contains(&system) {
                    tx.enqueue(&system, &entity.name, link.global_id, OutboxOp::Upsert)?;
                }
                tx.audit(NewAudit {
                    run_id,
                    system: &system,
                    entity: &entity.name,
                    global_id: Some(link.global_id),
                    local_id: Some(&h.local_id),
                    actor: h.actor.as_deref(),
                    operation: if item.op == Operation::Delete {
                        "read:delete"
                    } else {
                        "read:update"
                    },
                    before: None,
                    after: None,
                    outcome: "rejected",
                })?;
            }
            Ok(counts)
        })?;
        counts.add_to(&mut self.report);
        Ok(())
    }

    /// Accepts a page of changes from a source, in one transaction: golden
    /// records, links, conflicts, outbox rows, audit rows and the cursor.
    fn accept(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        items: Vec<Change>,
        prepared: Vec<Option<Prepared>>,
        cursor: CursorUpdate,
    ) -> anyhow::Result<PageCounts> {
        let system = self.participants[s].system.name.clone();
        let targets = self.targets(&entity.name);
        let run_id = self.run_id;
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
            for item in items {
                let prepared = prepared.next().flatten();
                if parked.remove(&item.id).is_some() {
                    tx.unpark(&system, &entity.name, &item.id)?;
                }
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
                };
                ctx.accept_one(item, prepared, &mut counts)?;
            }
            // The new records each target along takes from memory: a span
            // keeps them in the store until the last is recorded.
            let mut spans = Vec::new();
            for (target, fresh) in along.iter().zip(fresh) {
                let (Some(first), Some(last)) = (fresh.first(), fresh.last()) else {
                    spans.push(Vec::new());
                    continue;
                };
                let span = tx.add_span(target, &entity.name, first.0, last.0)?;
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
                        })
                        .collect(),
                );
            }
            match &cursor {
                CursorUpdate::None => {}
                CursorUpdate::Inbox(ids) => {
                    for id in ids {
                        tx.inbox_done(*id)?;
                    }
                }
                CursorUpdate::Reading(state) => {
                    tx.set_cursor(&system, &entity.name, "read", state)?
                }
                CursorUpdate::ReadDone(checkpoint) => {
                    tx.clear_cursor(&system, &entity.name, "read")?;
                    if let Some(c) = checkpoint {
                        tx.set_cursor(&system, &entity.name, "changes", c)?;
                    }
                }
                CursorUpdate::Changes(c) => tx.set_cursor(&system, &entity.name, "changes", c)?,
            }
            Ok((counts, spans))
        })?;
        for (d, planned) in self.along.iter_mut().zip(spans) {
            d.fresh.extend(planned);
        }
        counts.add_to(&mut self.report);
        crate::telemetry::events::RecordsRead {
            system: &system,
            entity: &entity.name,
            read,
            echoes: counts.echoes,
            conflicts: counts.conflicts,
        }
        .emit();
        Ok(counts)
    }

    /// Delivers the due outbox rows of one entity to its targets, in batches.
    /// Each target has one write in flight while the next batch is planned
    /// and the previous one recorded, and the targets are served in turn, so
    /// their connectors and systems work at the same time on other threads
    /// while the store is busy on this one.
    async fn dispatch(
        &mut self,
        entity: &Entity,
        targets: Vec<(usize, &SystemEntity)>,
        due: &str,
    ) -> anyhow::Result<()> {
        let mut deliveries = Vec::new();
        for (t, tb) in targets {
            if let Some(mut d) = self.delivery(t, tb, entity) {
                d.hold_deletes = self.deletes_beyond_limit(&d.target, entity)?;
                deliveries.push(d);
            }
        }
        self.drain(entity, deliveries, due).await
    }

    /// The delivery of `entity` to target `t`, unless outside its window.
    fn delivery<'e>(
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
            linger: false,
            in_flight: None,
            fresh: Default::default(),
        })
    }

    /// Steps the deliveries in turn until each is done, its last write recorded.
    async fn drain(
        &mut self,
        entity: &Entity,
        mut deliveries: Vec<Delivery<'_>>,
        due: &str,
    ) -> anyhow::Result<()> {
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
    fn start_along(&mut self, entity: &Entity) {
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
    async fn deliver_along(&mut self, entity: &Entity) -> anyhow::Result<()> {
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
    async fn finish_along(&mut self, entity: &Entity) -> anyhow::Result<()> {
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
    async fn deliver_step(
        &mut self,
        entity: &Entity,
        d: &mut Delivery<'_>,
        due: &str,
    ) -> anyhow::Result<bool> {
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
            let rows = self.store.outbox_due(
                &d.target,
                &entity.name,
                due,
                d.after,
                self.options.batch_size,
            )?;
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
                self.record_deliveries(&d.target, &entity.name, planned, outcomes)?;
            }
        }
        if let Some(planned) = next {
            match self.participants[d.t].instance.take() {
                Some(instance) => d.in_flight = Some(InFlight::start(instance, &d.bind, planned)),
                // Stopped: the batch stays in the outbox as it is.
                None => more = false,
            }
        }
        if let Some((planned, outcomes)) = previous {
            self.record_deliveries(&d.target, &entity.name, planned, outcomes)?;
        }
        if !self.land_now(entity, d, |p| !idempotent(p)).await? {
            return Ok(false);
        }
        Ok(more || d.in_flight.is_some())
    }

    /// Waits for the write in flight and records it, if `now` says so of
    /// its batch. False when the target takes no more writes in this pass.
    async fn land_now(
        &mut self,
        entity: &Entity,
        d: &mut Delivery<'_>,
        now: fn(&[Planned]) -> bool,
    ) -> anyhow::Result<bool> {
        let Some(f) = d.in_flight.take_if(|f| now(&f.planned)) else {
            return Ok(true);
        };
        match self.land(d.t, &d.target, &entity.name, f).await? {
            Landed::Done(planned, outcomes) => {
                self.record_deliveries(&d.target, &entity.name, planned, outcomes)?
            }
            Landed::Stop => return Ok(false),
            Landed::Skip => {}
        }
        Ok(true)
    }

    /// Waits for a write in flight, gives the instance back, and sorts out
    /// its outcome: recorded by the caller, or failed (postponed here).
    async fn land(
        &mut self,
        t: usize,
        target: &str,
        entity: &str,
        f: InFlight,
    ) -> anyhow::Result<Landed> {
        let (instance, planned, result) = f.finish().await?;
        self.participants[t].instance = Some(instance);
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

    /// Whether the deletes pending for a target exceed the entity's
    /// `max_delete_percent` of what the target holds; if so they are held
    /// back (they stay in the outbox) and the run reports it.
    fn deletes_beyond_limit(&mut self, target: &str, entity: &Entity) -> anyhow::Result<bool> {
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
    fn plan_deliveries(
        &mut self,
        target: &str,
        entity: &Entity,
        tb: &SystemEntity,
        rows: Vec<OutboxRow>,
        hold_deletes: bool,
    ) -> anyhow::Result<Vec<Planned>> {
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
    fn postpone(
        &mut self,
        target: &str,
        entity: &str,
        planned: &[Planned],
        error: &str,
    ) -> anyhow::Result<()> {
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
    fn record_deliveries(
        &mut self,
        target: &str,
        entity: &str,
        planned: Vec<Planned>,
        outcomes: Vec<
            Result<crate::runtime::types::Written, crate::runtime::types::ConnectorError>,
        >,
    ) -> anyhow::Result<()> {
        let run_id = self.run_id;
        let (mut written, mut deleted, mut failed, mut done) = (0, 0, 0, 0);
        let (mut retries, mut refused) = (0, 0);
        let mut failed_rows = Vec::new();
        self.store.transaction(|tx| {
            for (p, outcome) in planned.into_iter().zip(outcomes) {
                let gid = p.gid;
                let data = p.item.data.as_deref();
                let audit = |tx: &mut Tx<'_>, local_id: Option<&str>, outcome: &str| {
                    tx.audit(NewAudit {
                        run_id,
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
                        audit(tx, Some(&w.id), "ok")?;
                    }
                    Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::RateLimited) => {
                        failed += 1;
                        retries += 1;
                        let reason = format!("{}: {}", kind_name(e.kind), e.message);
                        let at = backoff(p.attempts(), e.retry_after_ms);
                        failed_rows.push(p.retry(tx, target, entity, &at, &reason)?);
                        audit(tx, p.item.id.as_deref(), "failed")?;
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
                        audit(tx, p.item.id.as_deref(), "rejected")?;
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

/// Describes a planned write for a dry run, with the fields that differ from
/// what weir last delivered of this record (the golden record before this pass).
/// The records a system held when a full read started that the read has not
/// returned yet: what is left at the end was deleted there. Kept as 128-bit
/// hashes of the local ids (16 bytes a record, whatever the id's length), so
/// that memory stays small for millions of records; the ids are found again
/// from the links at the end.
struct Unseen {
    hashers: (std::hash::RandomState, std::hash::RandomState),
    left: std::collections::HashSet<u128>,
}

impl Unseen {
    /// The linked records of a system's entity.
    fn load(store: &Store, entity: &str, system: &str) -> store::Result<Unseen> {
        let hashers = Default::default();
        let mut left = std::collections::HashSet::new();
        store.each_local_id(entity, system, |id| {
            left.insert(id_hash(&hashers, id));
        })?;
        Ok(Unseen { hashers, left })
    }

    /// The read returned the record `id`.
    fn seen(&mut self, id: &str) {
        self.left.remove(&id_hash(&self.hashers, id));
    }

    /// The local ids of the records the read never returned.
    fn missing(self, store: &Store, entity: &str, system: &str) -> store::Result<Vec<String>> {
        let mut ids = Vec::new();
        if !self.left.is_empty() {
            store.each_local_id(entity, system, |id| {
                if self.left.contains(&id_hash(&self.hashers, id)) {
                    ids.push(id.to_string());
                }
            })?;
        }
        Ok(ids)
    }
}

/// The 128-bit hash of a local id: two 64-bit hashes with independent keys.
fn id_hash(hashers: &(std::hash::RandomState, std::hash::RandomState), id: &str) -> u128 {
    use std::hash::BuildHasher;
    (u128::from(hashers.0.hash_one(id)) << 64) | u128::from(hashers.1.hash_one(id))
}

/// A connector call on a task of its own: the instance comes back with the
/// call's outcome and its items prepared.
type Ahead<T> = tokio::task::JoinHandle<(Instance, Result<T, CallError>, Vec<Option<Prepared>>)>;

/// A page of a snapshot, or why it could not be read, with its items
/// prepared.
type PreparedPage = (
    Result<crate::runtime::types::Page, CallError>,
    Vec<Option<Prepared>>,
);

/// Reads a snapshot's pages through `instance`, from `cursor` on, on a task
/// of its own; each page is prepared on a blocking thread while the
/// connector reads the next. Pages come in order through the channel, at
/// most two ahead of the pass (one waiting in it, one being read): a
/// snapshot's pages have no side effect at the source, so reading ahead
/// risks nothing. The task ends after the last page or a failed one, or
/// once the receiver is dropped, and gives the instance back.
fn read_pages(
    mut instance: Instance,
    bind: &EntityBinding,
    shape: &std::sync::Arc<Shape>,
    cursor: Option<String>,
    limit: u32,
) -> (
    tokio::sync::mpsc::Receiver<tokio::task::JoinHandle<PreparedPage>>,
    tokio::task::JoinHandle<Instance>,
) {
    let (bind, shape) = (bind.clone(), shape.clone());
    let (pages, receiver) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let mut cursor = cursor;
        loop {
            let page = instance.read(&bind, cursor.take(), limit).await;
            let next = page.as_ref().ok().and_then(|p| p.next.clone());
            let shape = shape.clone();
            let prepping = tokio::task::spawn_blocking(move || {
                let prepared = page
                    .as_ref()
                    .map(|p| shape.prepare(&p.items))
                    .unwrap_or_default();
                (page, prepared)
            });
            if pages.send(prepping).await.is_err() || next.is_none() {
                return instance;
            }
            cursor = next;
        }
    });
    (receiver, reader)
}

/// The instance back from a snapshot's reading task.
async fn join_reader(reader: tokio::task::JoinHandle<Instance>) -> anyhow::Result<Instance> {
    reader
        .await
        .map_err(|e| anyhow::anyhow!("a connector read task failed: {e}"))
}

/// Asks a connector for the changes since `cursor` on a task of its own,
/// and prepares them there.
fn changes_ahead(
    mut instance: Instance,
    bind: &EntityBinding,
    shape: &std::sync::Arc<Shape>,
    cursor: String,
    limit: u32,
) -> Ahead<crate::runtime::types::ChangeBatch> {
    let (bind, shape) = (bind.clone(), shape.clone());
    tokio::spawn(async move {
        let batch = instance.changes(&bind, cursor, limit).await;
        let prepared = batch
            .as_ref()
            .map(|b| shape.prepare(&b.items))
            .unwrap_or_default();
        (instance, batch, prepared)
    })
}

/// What accepting a source's upserts needs of their entity that is not in
/// the store: the entity (rules, references) and the source's binding (its
/// mapping). Shared with the tasks that read pages.
struct Shape {
    entity: Entity,
    binding: SystemEntity,
    /// The bindings of the targets written along the intake, in turn.
    along: Vec<SystemEntity>,
    /// Whether the records read are mostly new (as in the last page
    /// accepted): only then are their writes along made ready, which an
    /// unchanged record does not need.
    mostly_new: std::sync::atomic::AtomicBool,
}

impl Shape {
    /// The shape of an intake with deliveries `along`, whose records are
    /// taken for mostly `new` until its first page is accepted.
    fn of(
        entity: &Entity,
        binding: &SystemEntity,
        along: &[Delivery<'_>],
        new: bool,
    ) -> std::sync::Arc<Shape> {
        std::sync::Arc::new(Shape {
            entity: entity.clone(),
            binding: binding.clone(),
            along: along.iter().map(|d| d.tb.clone()).collect(),
            mostly_new: new.into(),
        })
    }

    /// Learns from an accepted page: `created` of its `read` records were new.
    fn learn(&self, created: u64, read: u64) {
        self.mostly_new
            .store(created * 2 >= read, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each item prepared, and sealed where it can be; none for deletes.
    fn prepare(&self, items: &[Change]) -> Vec<Option<Prepared>> {
        let along: &[SystemEntity] = if self.mostly_new.load(std::sync::atomic::Ordering::Relaxed) {
            &self.along
        } else {
            &[]
        };
        items
            .iter()
            .map(|item| {
                (item.op != Operation::Delete)
                    .then(|| Prepared::of(&self.entity, &self.binding, item, Some(along)))
            })
            .collect()
    }
}

/// The part of accepting an upsert that needs no store: the body parsed,
/// mapped to the canonical model and validated, and, for an entity without
/// references (nothing left to translate through the links), its hash and
/// canonical text. A page's items are prepared on another thread while this
/// one accepts the page before.
enum Prepared {
    /// Why the body is refused (a dead letter).
    Refused(String),
    /// The canonical record, whose references are still to translate.
    Record(Record),
    /// The final hash and canonical text, and the record's write to each
    /// target along the intake should it be new. The record itself is
    /// dropped on the preparing thread: most reads of a full pass change
    /// nothing and need only the hash (a conflict parses the text back).
    Sealed(store::Hash, String, Vec<Option<Ready>>),
}

/// A new record's write to a target along the intake, made on the
/// preparing thread: the key it is written under (none where the target
/// assigns it) and its body in the target's fields. None for a record the
/// target's filter leaves out or its mapping cannot take: the outbox and its
/// dispatcher deal with those as with any other.
struct Ready {
    id: Option<String>,
    data: String,
}

impl Ready {
    fn of(target: &SystemEntity, record: &Record) -> Option<Ready> {
        if !target.mapping.accepts(record).ok()? {
            return None;
        }
        let data = target.mapping.from_canonical(record).ok()?;
        Some(Ready {
            id: target.mapping.shared_key(record),
            data: Value::Object(data).to_string(),
        })
    }
}

impl Prepared {
    /// An upsert prepared; given the targets `along` the intake, sealed
    /// when its entity has no references.
    fn of(
        entity: &Entity,
        binding: &SystemEntity,
        item: &Change,
        along: Option<&[SystemEntity]>,
    ) -> Prepared {
        match (canonical(entity, binding, item), along) {
            (Err(reason), _) => Prepared::Refused(reason),
            (Ok(r), Some(along)) if entity.references.is_empty() => Prepared::Sealed(
                mapping::hash(&r),
                serde_json::to_string(&r).unwrap_or_default(),
                along.iter().map(|t| Ready::of(t, &r)).collect(),
            ),
            (Ok(r), _) => Prepared::Record(r),
        }
    }
}

/// An accepted upsert's content: its canonical text when it came sealed,
/// else the record (serialized only if it is stored).
enum Content {
    Text(String),
    Record(Record),
}

impl Content {
    /// The canonical text, and the record when it was at hand.
    fn into_parts(self) -> (String, Option<Record>) {
        match self {
            Content::Text(text) => (text, None),
            Content::Record(r) => (serde_json::to_string(&r).unwrap_or_default(), Some(r)),
        }
    }
}

/// An upsert's body as a canonical record, or why it cannot be one.
fn canonical(entity: &Entity, binding: &SystemEntity, item: &Change) -> Result<Record, String> {
    let map = match item.data.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        Some(Ok(_)) => {
            return Err("bad record from the source: record body is not a JSON object".into())
        }
        Some(Err(e)) => {
            return Err(format!(
                "bad record from the source: record body is not valid JSON: {e}"
            ))
        }
        None => return Err("bad record from the source: upsert without a record body".into()),
    };
    let record = binding
        .mapping
        .to_canonical(map)
        .map_err(|e| format!("cannot map the record: {e}"))?;
    mapping::validate(&entity.rules, &record).map_err(|v| format!("invalid record: {v}"))?;
    Ok(record)
}

/// Whether writing a batch twice does no harm: every item names its key.
fn idempotent(planned: &[Planned]) -> bool {
    planned.iter().all(|p| p.item.id.is_some())
}

/// The delivery of one entity to one target, served in turn with the others.
struct Delivery<'e> {
    t: usize,
    tb: &'e SystemEntity,
    bind: EntityBinding,
    target: String,
    /// The last outbox row planned.
    after: i64,
    /// Whether deletes are held back (over `max_delete_percent`, or, along
    /// an intake, until the dispatcher).
    hold_deletes: bool,
    /// Along an intake: once nothing is due, the last write is left in
    /// flight instead of waited for.
    linger: bool,
    /// The write on its way to the target.
    in_flight: Option<InFlight>,
    /// Along an intake: the new records accepted for this target, planned
    /// as they were accepted and written before any outbox row.
    fresh: std::collections::VecDeque<Planned>,
}

/// A batch being written by a target's connector on a task of its own.
struct InFlight {
    task: tokio::task::JoinHandle<(Instance, WriteResult)>,
    planned: Vec<Planned>,
}

/// The outcome of a connector's `write` call.
type WriteResult = Result<
    Vec<Result<crate::runtime::types::Written, crate::runtime::types::ConnectorError>>,
    CallError,
>;

/// What became of a write in flight.
enum Landed {
    /// Written (item by item outcomes): record them.
    Done(
        Vec<Planned>,
        Vec<Result<crate::runtime::types::Written, crate::runtime::types::ConnectorError>>,
    ),
    /// Failed and postponed; the next batch may go.
    Skip,
    /// Failed so that the target takes no more writes in this pass.
    Stop,
}

impl InFlight {
    /// Starts writing `planned` through `instance`.
    fn start(mut instance: Instance, bind: &EntityBinding, planned: Vec<Planned>) -> InFlight {
        let items: Vec<WriteItem> = planned.iter().map(|p| p.item.clone()).collect();
        let bind = bind.clone();
        let task = tokio::spawn(async move {
            let result = instance.write(&bind, items).await;
            (instance, result)
        });
        InFlight { task, planned }
    }

    /// Waits for the write; the instance comes back with the outcome.
    async fn finish(self) -> anyhow::Result<(Instance, Vec<Planned>, WriteResult)> {
        let (instance, result) = self
            .task
            .await
            .map_err(|e| anyhow::anyhow!("a connector write task failed: {e}"))?;
        Ok((instance, self.planned, result))
    }
}

fn plan_line(
    before: Option<&Store>,
    target: &str,
    tb: &SystemEntity,
    p: &Planned,
) -> anyhow::Result<PlanLine> {
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

/// A planned write: of an outbox row, or of a new record from a span.
struct Planned {
    gid: i64,
    kept: Kept,
    hash: store::Hash,
    kind: Kind,
    item: WriteItem,
}

/// Where a planned write is kept in the store until it is recorded.
enum Kept {
    /// An outbox row.
    Row { id: i64, attempts: u32 },
    /// A span of new records; the span goes with the `last` of them.
    Span { id: i64, last: bool },
}

impl Kept {
    fn of(row: &OutboxRow) -> Kept {
        Kept::Row {
            id: row.id,
            attempts: row.attempts,
        }
    }
}

impl Planned {
    /// Failed attempts so far.
    fn attempts(&self) -> u32 {
        match self.kept {
            Kept::Row { attempts, .. } => attempts,
            Kept::Span { .. } => 0,
        }
    }

    /// Whether it is the write of a new record from a span.
    fn in_span(&self) -> bool {
        matches!(self.kept, Kept::Span { .. })
    }

    /// Ends what keeps a recorded write (delivered, or refused for good):
    /// its outbox row, unless the record changed since it was planned; its
    /// span, with the last of the span's records.
    fn settle(&self, tx: &mut Tx<'_>) -> store::Result<()> {
        match self.kept {
            Kept::Row { id, .. } => {
                tx.outbox_delivered(id, self.gid, &self.hash, self.kind.deletes())
            }
            Kept::Span { id, last: true } => tx.span_done(id),
            Kept::Span { last: false, .. } => Ok(()),
        }
    }

    /// Keeps a failed write for another attempt at `at`: its outbox row
    /// postponed, or, from a span, a row of its own. Returns the row.
    fn retry(
        &self,
        tx: &mut Tx<'_>,
        target: &str,
        entity: &str,
        at: &str,
        error: &str,
    ) -> store::Result<i64> {
        match self.kept {
            Kept::Row { id, .. } => {
                tx.outbox_retry(id, at, error, true)?;
                Ok(id)
            }
            Kept::Span { id, last } => {
                let row = tx.enqueue_failed(target, entity, self.gid, at, error)?;
                if last {
                    tx.span_done(id)?;
                }
                Ok(row)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    Delete,
    SoftDelete,
}

impl Kind {
    fn operation(self) -> &'static str {
        match self {
            Kind::Create => "write:create",
            Kind::Update | Kind::SoftDelete => "write:update",
            Kind::Delete => "write:delete",
        }
    }

    /// Whether the write delivers the record's deletion.
    fn deletes(self) -> bool {
        matches!(self, Kind::Delete | Kind::SoftDelete)
    }
}

/// When to try a failed delivery again: what the system asked for, else
/// exponential backoff from 1 s, capped at one hour.
fn backoff(attempts: u32, retry_after_ms: Option<u64>) -> String {
    let ms = retry_after_ms
        .unwrap_or_else(|| 1000u64.saturating_mul(1 << attempts.min(12)).min(3_600_000));
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(ms as i64);
    format!("{at:.3}")
}

/// Translates reference fields of a canonical record (global ids) into the
/// target's local ids. `Err` names the referenced record that has not reached
/// the target yet.
fn references_to_local(
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
fn reject(
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

/// A change kept in the store (parked, held or in the inbox), back as a
/// change: `{"op": "upsert"|"delete", "data": "<record JSON>", "actor": ...}`,
/// where `op` defaults to upsert.
fn stored_change(entity: &str, id: &str, change: &str) -> Change {
    let v: Value = serde_json::from_str(change).unwrap_or_default();
    let delete = v.get("op").and_then(Value::as_str) == Some("delete");
    Change {
        entity: entity.to_string(),
        id: id.to_string(),
        op: if delete {
            Operation::Delete
        } else {
            Operation::Upsert
        },
        data: v.get("data").and_then(Value::as_str).map(String::from),
        previous: None,
        version: None,
        actor: v.get("actor").and_then(Value::as_str).map(String::from),
    }
}

/// A held change, back as a change.
fn held_change(entity: &str, h: &store::Held) -> Change {
    Change {
        actor: h.actor.clone(),
        ..stored_change(entity, &h.local_id, &h.change)
    }
}

/// A local id as a JSON value: a number when it is one.
fn id_value(id: &str) -> Value {
    id.parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(id.to_string()))
}

/// Everything `accept_one` needs, inside the page's transaction.
struct AcceptCtx<'t, 'c, 'x> {
    tx: &'t mut Tx<'x>,
    run_id: i64,
    system: &'c str,
    entity: &'c Entity,
    binding: &'c SystemEntity,
    targets: &'c [String],
    /// The change was approved after being held: no per-user limit applies.
    approved: bool,
    /// The targets written along the intake, in turn, and the new records
    /// each takes from memory.
    along: &'c [String],
    fresh: &'c mut [Vec<(i64, store::Hash, Ready)>],
}

impl AcceptCtx<'_, '_, '_> {
    fn audit(
        &mut self,
        gid: Option<i64>,
        item: &Change,
        operation: &str,
        before: Option<&str>,
        after: Option<&str>,
        outcome: &str,
    ) -> store::Result<()> {
        self.tx.audit(NewAudit {
            run_id: self.run_id,
            system: self.system,
            entity: &self.entity.name,
            global_id: gid,
            local_id: Some(&item.id),
            actor: item.actor.as_deref(),
            operation,
            before,
            after,
            outcome,
        })
    }

    fn dead_letter(&mut self, item: &Change, reason: &str) -> store::Result<()> {
        self.tx.dead_letter(NewDeadLetter {
            run_id: self.run_id,
            system: self.system,
            entity: &self.entity.name,
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

    /// Queues `op` of a golden record for every target but `except`.
    fn fan_out(&mut self, gid: i64, op: OutboxOp, except: Option<&str>) -> store::Result<()> {
        for t in self.targets {
            if Some(t.as_str()) != except {
                self.tx.enqueue(t, &self.entity.name, gid, op)?;
            }
        }
        Ok(())
    }

    /// Queues a new record for every target but its source: those along
    /// the intake that took its write ready get it in memory, the others
    /// an outbox row.
    fn fan_out_new(
        &mut self,
        gid: i64,
        hash: &store::Hash,
        mut ready: Vec<Option<Ready>>,
    ) -> store::Result<()> {
        for t in self.targets {
            if t == self.system {
                continue;
            }
            let along = self.along.iter().position(|a| a == t);
            match along.and_then(|i| Some((i, ready.get_mut(i)?.take()?))) {
                Some((i, r)) => self.fresh[i].push((gid, *hash, r)),
                None => self
                    .tx
                    .enqueue(t, &self.entity.name, gid, OutboxOp::Upsert)?,
            }
        }
        Ok(())
    }

    fn accept_one(
        mut self,
        item: Change,
        prepared: Option<Prepared>,
        counts: &mut PageCounts,
    ) -> store::Result<()> {
        if item.op == Operation::Delete {
            let known = self
                .tx
                .link_by_local(&self.entity.name, self.system, &item.id)?
                .is_some();
            if known && self.hold_if_over_limit(&item)? {
                counts.held += 1;
                return Ok(());
            }
            if known {
                counts.fresh += 1;
            }
            return self.accept_delete(item);
        }
        // Unprepared (a stored change): the hash and text come below, the
        // text only if it is stored.
        let prepared =
            prepared.unwrap_or_else(|| Prepared::of(self.entity, self.binding, &item, None));
        let (content, hash, ready) = match prepared {
            Prepared::Refused(reason) => {
                counts.failed += 1;
                return self.dead_letter(&item, &reason);
            }
            Prepared::Sealed(hash, text, ready) => (Content::Text(text), hash, ready),
            Prepared::Record(record) => match self.references_to_global(record)? {
                Ok(r) => {
                    let hash = mapping::hash(&r);
                    (Content::Record(r), hash, Vec::new())
                }
                Err(reason) => {
                    // Waits until the record it refers to has been read.
                    let change =
                        serde_json::json!({ "data": item.data, "actor": item.actor }).to_string();
                    return self.tx.park(
                        self.system,
                        &self.entity.name,
                        &item.id,
                        &change,
                        &reason,
                    );
                }
            },
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
        // The golden record matters only when the source's copy changed
        // since weir last read or wrote it (most reads of a full pass have not).
        let golden = match &link {
            Some(l) if l.hash_seen != Some(hash) && l.hash_written != Some(hash) => {
                self.tx.golden(l.global_id)?
            }
            _ => None,
        };
        let state = golden.as_ref().map(|g| GoldenState {
            hash: g.hash,
            deleted: g.deleted,
        });
        let system = self.system;
        let decision = plan::accept(&hash, link.as_ref(), state);
        // The record's text is stored only when it changes something.
        let (text, record) = match decision {
            Accept::New | Accept::FastForward | Accept::Conflict => content.into_parts(),
            Accept::Unchanged | Accept::Echo | Accept::Same => (String::new(), None),
        };
        if matches!(
            decision,
            Accept::New | Accept::FastForward | Accept::Conflict
        ) && self.hold_if_over_limit(&item)?
        {
            counts.held += 1;
            return Ok(());
        }
        match (decision, link, golden) {
            (Accept::New, _, _) => {
                let gid = self
                    .tx
                    .create_golden(&self.entity.name, &text, &hash, system)?;
                self.tx
                    .record_seen(&self.entity.name, system, &item.id, gid, &hash)?;
                self.fan_out_new(gid, &hash, ready)?;
                counts.fresh += 1;
                counts.created += 1;
                self.audit(Some(gid), &item, "read:create", None, Some(&text), "ok")
            }
            (Accept::Unchanged, _, _) => {
                counts.unchanged += 1;
                Ok(())
            }
            (Accept::Echo, Some(l), _) => {
                counts.echoes += 1;
                self.tx
                    .record_seen(&self.entity.name, system, &item.id, l.global_id, &hash)?;
                self.audit(Some(l.global_id), &item, "read:update", None, None, "echo")
            }
            (Accept::Same, Some(l), _) => {
                counts.unchanged += 1;
                self.tx
                    .record_seen(&self.entity.name, system, &item.id, l.global_id, &hash)
            }
            (Accept::FastForward, Some(l), golden) => {
                self.tx.update_golden(l.global_id, &text, &hash, system)?;
                self.tx
                    .record_seen(&self.entity.name, system, &item.id, l.global_id, &hash)?;
                self.fan_out(l.global_id, OutboxOp::Upsert, Some(system))?;
                counts.fresh += 1;
                let before = golden.map(|g| g.data);
                self.audit(
                    Some(l.global_id),
                    &item,
                    "read:update",
                    before.as_deref(),
                    Some(&text),
                    "ok",
                )
            }
            (Accept::Conflict, Some(l), Some(golden)) => {
                counts.conflicts += 1;
                counts.fresh += 1;
                let ours: Record = serde_json::from_str(&golden.data).unwrap_or_default();
                let theirs =
                    record.unwrap_or_else(|| serde_json::from_str(&text).unwrap_or_default());
                let resolution = plan::resolve(
                    self.entity,
                    &ours,
                    golden.origin.as_deref(),
                    &theirs,
                    system,
                );
                let result = Value::Object(resolution.record.clone()).to_string();
                self.tx.conflict(NewConflict {
                    run_id: self.run_id,
                    entity: &self.entity.name,
                    global_id: l.global_id,
                    system,
                    other_system: golden.origin.as_deref(),
                    ours: &golden.data,
                    theirs: &text,
                    result: &result,
                    winner: &resolution.winner,
                    policy: self.entity.conflict.name(),
                })?;
                tracing::warn!(entity = %self.entity.name, global_id = l.global_id, "conflict: {system} vs {}: {} wins", golden.origin.as_deref().unwrap_or("?"), resolution.winner);
                if resolution.record != ours {
                    let new_hash = mapping::hash(&resolution.record);
                    let origin = if resolution.winner == system || resolution.winner == "merge" {
                        system
                    } else {
                        golden.origin.as_deref().unwrap_or(system)
                    };
                    self.tx
                        .update_golden(l.global_id, &result, &new_hash, origin)?;
                }
                self.tx
                    .record_seen(&self.entity.name, system, &item.id, l.global_id, &hash)?;
                // Every target, the arriving system included, gets the outcome;
                // delivery skips those that already hold it.
                self.fan_out(l.global_id, OutboxOp::Upsert, None)?;
                self.audit(
                    Some(l.global_id),
                    &item,
                    "read:update",
                    Some(&golden.data),
                    Some(&text),
                    "conflict",
                )
            }
            (accept, link, golden) => unreachable!(
                "accept {accept:?} with link {link:?} and golden {:?}",
                golden.map(|g| g.global_id)
            ),
        }
    }

    /// The golden record that a system taking writes of the entity links to
    /// the local id `id`, as a link of this system that has seen nothing yet.
    fn same_key_elsewhere(&mut self, id: &str) -> store::Result<Option<Link>> {
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
    fn hold_if_over_limit(&mut self, item: &Change) -> store::Result<bool> {
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
        let operation = if delete { "read:delete" } else { "read:update" };
        self.audit(None, item, operation, None, None, "held")?;
        Ok(true)
    }

    fn accept_delete(&mut self, item: Change) -> store::Result<()> {
        let Some(link) = self
            .tx
            .link_by_local(&self.entity.name, self.system, &item.id)?
        else {
            return Ok(());
        };

        let gid = link.global_id;
        let before = self.tx.golden(gid)?.map(|g| g.data);
        self.tx.unlink(self.system, gid)?;
        self.tx.delete_golden(gid, self.system)?;
        self.fan_out(gid, OutboxOp::Delete, Some(self.system))?;
        self.audit(
            Some(gid),
            &item,
            "read:delete",
            before.as_deref(),
            None,
            "ok",
        )
    }

    /// Translates reference fields from the source's local ids to global ids.
    fn references_to_global(
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
