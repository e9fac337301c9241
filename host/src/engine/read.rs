//! Reading a source: a full snapshot (RESYNC) page by page, resumable and
//! finding deletes by what it lacks, or the changes since the stored
//! cursor (CHANGE). The connector reads on tasks of their own while the
//! pass accepts the page before.

use super::accept::Offered;
use super::error::SyncError;
use super::faults::Faults;
use super::inbox::stored_change;
use super::pass::Pass;
use super::prepare::{Prepared, Shape};
use super::report::Polled;
use super::work::{binding, CursorUpdate};
use crate::manifest::{Entity, SystemEntity};
use crate::runtime::types::{Change, EntityBinding, ErrorKind, Operation};
use crate::runtime::{CallError, Instance, Reject};
use crate::store::{self, CursorKind, HeldStatus, Store};

/// Where a full read starts.
struct Start {
    /// The cursor of its first page (none: the beginning).
    cursor: Option<String>,
    /// The change cursor taken before the snapshot started.
    checkpoint: Option<String>,
    /// The records weir links to that the read has not returned yet;
    /// none for a resumed read, which finds no deletes.
    known: Option<Unseen>,
}

/// A delete of record `id`, found by what a complete snapshot lacks.
fn deleted(entity: &str, id: String) -> Change {
    Change {
        entity: entity.to_string(),
        id,
        op: Operation::Delete,
        data: None,
        previous: None,
        version: None,
        actor: None,
    }
}

/// The state of an interrupted full read, kept as the `read` cursor.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadState {
    /// The cursor of the next page.
    next: String,
    /// The change cursor taken before the snapshot started.
    checkpoint: Option<String>,
}

impl<'m> Pass<'_, 'm> {
    /// Reads one entity from one source: a full snapshot (RESYNC) the first
    /// time, after an interrupted snapshot, or with `--full`; otherwise the
    /// changes since the stored cursor.
    pub(super) async fn intake(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
    ) -> Result<(), SyncError> {
        let system = self.participants[s].system.name.clone();
        let bind = binding(b);
        let changes = self
            .store
            .cursor(&system, &entity.name, CursorKind::Changes)?;
        let reading: Option<ReadState> = self
            .store
            .cursor(&system, &entity.name, CursorKind::Read)?
            .and_then(|c| serde_json::from_str(&c).ok());
        let progress = self.progress_bar(&format!("{} from {system}", entity.name));
        let decided: Vec<store::Held> = self
            .store
            .held(Some((&system, &entity.name)))?
            .into_iter()
            .filter(|h| h.status != HeldStatus::Held)
            .collect();
        if !decided.is_empty() {
            self.carry_out_decisions(s, entity, b, decided)?;
        }
        self.carry_out_matches(s, entity, b)?;
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
            self.accept(s, entity, b, Offered::changes(items), CursorUpdate::None)?;
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
        if !poll {
            return Ok(());
        }
        if self.participants[s].instance.is_none() {
            // It did not start: a failed poll.
            self.store
                .source_polled(&system, &entity.name, true, None)?;
            return Ok(());
        }
        let resync = self.resync_reason(s, &entity.name)?;
        // The source's own failures: writes along the intake fail as their targets'.
        let failures = self.participants[s].failures;
        self.start_along(entity);
        let fresh = match (changes, reading) {
            (Some(cursor), None) if !self.options.full && resync.is_none() => {
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
        let failed = self.participants[s].failures > failures;
        self.store
            .source_polled(&system, &entity.name, failed, resync.as_deref())?;
        if let (Some(why), false) = (&resync, failed) {
            self.report.notes.push(format!(
                "{} read in full from {system} (RESYNC): {why}",
                entity.name
            ));
        }
        self.report.polled.push(Polled {
            system,
            entity: entity.name.clone(),
            fresh,
            failed,
        });
        Ok(())
    }

    /// Why source `s`'s `entity` is to be read in full at this poll, if it
    /// is: a full read asked for (after a restore), or a failure of its
    /// polls that has lasted longer than its system's
    /// `resync_after_failure` (what changed meanwhile may have left no
    /// trace in its change feed).
    fn resync_reason(&self, s: usize, entity: &str) -> Result<Option<String>, SyncError> {
        let system = &self.participants[s].system;
        let Some(h) = self.store.source_health(&system.name, entity)? else {
            return Ok(None);
        };
        if let Some(why) = h.resync_reason {
            return Ok(Some(why));
        }
        let Some(since) = h.failing_since else {
            return Ok(None);
        };
        let after = jiff::SignedDuration::try_from(system.resync_after_failure).unwrap_or_default();
        let long = since
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| t.checked_add(after).ok())
            .is_some_and(|until| until < jiff::Timestamp::now());
        Ok(long.then(|| {
            format!("its polls failed from {since} on, for longer than resync_after_failure = {after:#}")
        }))
    }

    async fn read_full(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        resume: Option<ReadState>,
        progress: &indicatif::ProgressBar,
    ) -> Result<u64, SyncError> {
        let system = self.participants[s].system.name.clone();
        let mut fresh = 0;
        let Some(Start {
            cursor,
            checkpoint,
            mut known,
        }) = self.start_snapshot(s, &entity.name, bind, resume).await?
        else {
            return Ok(0);
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
        // A resumed snapshot did not see its first pages, so it cannot tell
        // what was deleted: it leaves no change cursor, and the next pass
        // reads in full again to find the deletes.
        let checkpoint = checkpoint.filter(|_| known.is_some());
        let shape = Shape::of(entity, b, self.along_bindings(), new);
        let mut first = cursor.is_none();
        let (mut pages, reader) =
            read_pages(instance, bind, &shape, cursor, self.options.batch_size);
        while let Some(prepping) = pages.recv().await {
            let (result, prepared, rejects) = prepping
                .await
                .map_err(|e| SyncError::task("page preparation", e))?;
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
            let offered = (page.items.len() + rejects.len()) as u64;
            self.report.counts.read += offered;
            progress.inc(offered);
            if let Some(known) = known.as_mut() {
                for item in &page.items {
                    known.seen(&item.id);
                }
                // A record the connector could not read is there still.
                for id in rejects.iter().filter_map(|r| r.id.as_deref()) {
                    known.seen(id);
                }
            }
            let update = match &page.next {
                Some(next) => CursorUpdate::Reading(
                    serde_json::to_string(&ReadState {
                        next: next.clone(),
                        checkpoint: checkpoint.clone(),
                    })
                    .expect("a read state is two strings"),
                ),
                None => CursorUpdate::ReadDone(checkpoint.clone()),
            };
            let mut items = page.items;
            if page.next.is_none() {
                // The snapshot is complete: what it lacks was deleted at the source.
                if let Some(k) = known.take() {
                    let missing = k.missing(self.store, &entity.name, &system)?;
                    items.extend(missing.into_iter().map(|id| deleted(&entity.name, id)));
                }
            }
            let read = items.len() as u64;
            let offered = Offered {
                items,
                prepared,
                rejects,
            };
            let page = self.accept(s, entity, b, offered, update)?;
            shape.learn(page.created, read);
            fresh += page.fresh;
            Faults::count(&mut self.faults.pages_left, 1);
            self.deliver_along(entity).await?;
        }
        self.participants[s].instance = Some(join_reader(reader).await?);
        Ok(fresh)
    }

    /// Where a full read starts: a resumed snapshot goes on at its cursor
    /// and finds no deletes (it did not see its first pages); a new one
    /// takes the change cursor first (where the connector has one) and
    /// the records weir links to, to find deletes by what it lacks. None
    /// when the checkpoint failed or the source is no longer running.
    async fn start_snapshot(
        &mut self,
        s: usize,
        entity: &str,
        bind: &EntityBinding,
        resume: Option<ReadState>,
    ) -> Result<Option<Start>, SyncError> {
        if let Some(r) = resume {
            return Ok(Some(Start {
                cursor: Some(r.next),
                checkpoint: r.checkpoint,
                known: None,
            }));
        }
        let Some(instance) = self.participants[s].instance.as_mut() else {
            return Ok(None);
        };
        let checkpoint = match instance.checkpoint(bind).await {
            Ok(c) => Some(c),
            Err(CallError::Connector { error, .. }) if error.kind == ErrorKind::Unsupported => None,
            Err(CallError::Unsupported { .. }) => None,
            Err(e) => {
                self.fail(s, e);
                return Ok(None);
            }
        };
        let system = &self.participants[s].system.name;
        Ok(Some(Start {
            cursor: None,
            checkpoint,
            known: Some(Unseen::load(self.store, entity, system)?),
        }))
    }

    async fn read_changes(
        &mut self,
        s: usize,
        entity: &Entity,
        b: &SystemEntity,
        bind: &EntityBinding,
        cursor: String,
        progress: &indicatif::ProgressBar,
    ) -> Result<u64, SyncError> {
        let mut fresh = 0;
        // The next batch is asked for on a task of its own while this one is
        // accepted (one batch ahead at most, as the WIT `changes` allows).
        let shape = Shape::of(entity, b, self.along_bindings(), false);
        let mut pending = self.participants[s]
            .instance
            .take()
            .map(|i| changes_ahead(i, bind, &shape, cursor, self.options.batch_size));
        while let Some(task) = pending.take() {
            let (instance, result, prepared, rejects) = task
                .await
                .map_err(|e| SyncError::task("connector read", e))?;
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
            let offered = (batch.items.len() + rejects.len()) as u64;
            self.report.counts.read += offered;
            progress.inc(offered);
            let read = batch.items.len() as u64;
            let page = self.accept(
                s,
                entity,
                b,
                Offered {
                    items: batch.items,
                    prepared,
                    rejects,
                },
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
}

/// The records a system held when a full read started that the read has not
/// returned yet: what is left at the end was deleted there. Kept as 128-bit
/// hashes of the local ids (16 bytes a record, whatever the id's length), so
/// that memory stays small for millions of records; the ids are found again
/// from the links at the end.
pub(super) struct Unseen {
    pub(super) hashers: (std::hash::RandomState, std::hash::RandomState),
    pub(super) left: std::collections::HashSet<u128>,
}

impl Unseen {
    /// The linked records of a system's entity.
    pub(super) fn load(store: &Store, entity: &str, system: &str) -> store::Result<Unseen> {
        let hashers = Default::default();
        let mut left = std::collections::HashSet::new();
        store.each_local_id(entity, system, |id| {
            left.insert(id_hash(&hashers, id));
        })?;
        Ok(Unseen { hashers, left })
    }

    /// The read returned the record `id`.
    pub(super) fn seen(&mut self, id: &str) {
        self.left.remove(&id_hash(&self.hashers, id));
    }

    /// The local ids of the records the read never returned.
    pub(super) fn missing(
        self,
        store: &Store,
        entity: &str,
        system: &str,
    ) -> store::Result<Vec<String>> {
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
pub(super) fn id_hash(
    hashers: &(std::hash::RandomState, std::hash::RandomState),
    id: &str,
) -> u128 {
    use std::hash::BuildHasher;
    (u128::from(hashers.0.hash_one(id)) << 64) | u128::from(hashers.1.hash_one(id))
}

/// A connector call on a task of its own: the instance comes back with the
/// call's outcome and its items prepared.
pub(super) type Ahead<T> = tokio::task::JoinHandle<(
    Instance,
    Result<T, CallError>,
    Vec<Option<Prepared>>,
    Vec<Reject>,
)>;

/// A page of a snapshot, or why it could not be read, with its items
/// prepared and the records the connector rejected.
pub(super) type PreparedPage = (
    Result<crate::runtime::types::Page, CallError>,
    Vec<Option<Prepared>>,
    Vec<Reject>,
);

/// Reads a snapshot's pages through `instance`, from `cursor` on, on a task
/// of its own; each page is prepared on a blocking thread while the
/// connector reads the next. Pages come in order through the channel, at
/// most two ahead of the pass (one waiting in it, one being read): a
/// snapshot's pages have no side effect at the source, so reading ahead
/// risks nothing. The task ends after the last page or a failed one, or
/// once the receiver is dropped, and gives the instance back.
pub(super) fn read_pages(
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
            let rejects = instance.take_rejects();
            let next = page.as_ref().ok().and_then(|p| p.next.clone());
            let shape = shape.clone();
            let prepping = tokio::task::spawn_blocking(move || {
                let prepared = page
                    .as_ref()
                    .map(|p| shape.prepare(&p.items))
                    .unwrap_or_default();
                (page, prepared, rejects)
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
pub(super) async fn join_reader(
    reader: tokio::task::JoinHandle<Instance>,
) -> Result<Instance, SyncError> {
    reader
        .await
        .map_err(|e| SyncError::task("connector read", e))
}

/// Asks a connector for the changes since `cursor` on a task of its own,
/// and prepares them there.
pub(super) fn changes_ahead(
    mut instance: Instance,
    bind: &EntityBinding,
    shape: &std::sync::Arc<Shape>,
    cursor: String,
    limit: u32,
) -> Ahead<crate::runtime::types::ChangeBatch> {
    let (bind, shape) = (bind.clone(), shape.clone());
    tokio::spawn(async move {
        let batch = instance.changes(&bind, cursor, limit).await;
        let rejects = instance.take_rejects();
        let prepared = batch
            .as_ref()
            .map(|b| shape.prepare(&b.items))
            .unwrap_or_default();
        (instance, batch, prepared, rejects)
    })
}
