//! One sync pass: every readable system's full snapshot, entity by entity in
//! manifest order, to every writable system.

use super::plan::{self, Accept, Write};
use crate::manifest::{Manifest, System, SystemEntity};
use crate::mapping::{self, Record};
use crate::runtime::types::{EntityBinding, Operation, WriteItem};
use crate::runtime::{kind_name, CallError, Instance, Runtime};
use crate::store::{NewDeadLetter, RunCounts, Store};
use anyhow::Context as _;

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Records per page read and per batch written (default 1000).
    pub batch_size: u32,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_size: 1000,
            progress: false,
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
}

impl SyncReport {
    /// Whether everything synced without a failure or a dead letter.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.counts.failed == 0
    }
}

/// The binding of a system's entity as the connector sees it.
fn binding(e: &SystemEntity) -> EntityBinding {
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
}

/// Runs one sync pass over every system of the manifest.
pub async fn sync(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> anyhow::Result<SyncReport> {
    let mut store = Store::open(&manifest.store).context("opening the central store")?;
    let run_id = store.begin_run()?;
    let mut report = SyncReport {
        run_id,
        counts: RunCounts::default(),
        failures: Vec::new(),
    };
    let mut participants = Vec::new();
    for system in &manifest.systems {
        let instance = match start(runtime, system, store.path()).await {
            Ok(i) => Some(i),
            Err(e) => {
                report.failures.push(e);
                None
            }
        };
        participants.push(Participant { system, instance });
    }
    let mut engine = Engine {
        store: &mut store,
        participants,
        report,
        run_id,
        options,
    };
    for entity in &manifest.entities {
        for s in 0..engine.participants.len() {
            let Some(b) = engine.participants[s].system.entity(&entity.name) else {
                continue;
            };
            if b.direction.reads() && engine.participants[s].instance.is_some() {
                engine.sync_source(s, b).await?;
            }
        }
    }
    let Engine { report, .. } = engine;
    let status = if report.is_clean() { "ok" } else { "partial" };
    store.finish_run(
        run_id,
        status,
        report.counts,
        report.failures.first().map(String::as_str),
    )?;
    Ok(report)
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

struct Engine<'a, 'm> {
    store: &'a mut Store,
    participants: Vec<Participant<'m>>,
    report: SyncReport,
    run_id: i64,
    options: &'a SyncOptions,
}

/// A source record, accepted into the store.
struct Accepted {
    global_id: i64,
    hash: crate::store::Hash,
    record: Record,
}

impl Engine<'_, '_> {
    fn fail(&mut self, p: usize, error: CallError) {
        tracing::debug!("{error}");
        if error.is_fatal() {
            self.participants[p].instance = None;
        }
        self.report.failures.push(error.to_string());
    }

    /// Reads a full snapshot of one entity from one source, page by page, and
    /// writes each page to the targets before reading the next.
    async fn sync_source(&mut self, s: usize, b: &SystemEntity) -> anyhow::Result<()> {
        let system = self.participants[s].system.name.clone();
        let entity = b.name.clone();
        let bind = binding(b);
        let mut cursor = self.store.cursor(&system, &entity, "read")?;
        let progress = self.progress_bar(&format!("{entity} from {system}"));
        while let Some(instance) = self.participants[s].instance.as_mut() {
            let page = match instance
                .read(&bind, cursor.clone(), self.options.batch_size)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    self.fail(s, e);
                    break;
                }
            };
            self.report.counts.read += page.items.len() as u64;
            progress.inc(page.items.len() as u64);
            let accepted = self.accept_page(&system, b, page.items)?;
            self.deliver(s, &entity, &accepted).await?;
            let next = page.next;
            self.store.transaction(|tx| match &next {
                Some(c) => tx.set_cursor(&system, &entity, "read", c),
                None => tx.clear_cursor(&system, &entity, "read"),
            })?;
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        progress.finish_and_clear();
        Ok(())
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

    /// Maps a page to canonical records and records it in the store, in one transaction.
    fn accept_page(
        &mut self,
        system: &str,
        b: &SystemEntity,
        items: Vec<crate::runtime::types::Change>,
    ) -> anyhow::Result<Vec<Accepted>> {
        let run_id = self.run_id;
        let mut out = Vec::with_capacity(items.len());
        let mut failed = 0;
        let mut links = Vec::with_capacity(items.len());
        for item in &items {
            links.push(self.store.link_by_local(&b.name, system, &item.id)?);
        }
        self.store.transaction(|tx| {
            for (item, link) in items.into_iter().zip(links) {
                let parsed = match item
                    .data
                    .as_deref()
                    .map(serde_json::from_str::<serde_json::Value>)
                {
                    Some(Ok(serde_json::Value::Object(map))) => Ok(map),
                    Some(Ok(_)) => Err("record body is not a JSON object".to_string()),
                    Some(Err(e)) => Err(format!("record body is not valid JSON: {e}")),
                    None => Err("upsert without a record body".to_string()),
                };
                let record = match parsed {
                    Ok(r) => mapping::to_canonical(b, r),
                    Err(reason) => {
                        failed += 1;
                        let reason = format!("bad record from the source: {reason}");
                        tx.dead_letter(NewDeadLetter {
                            run_id,
                            system,
                            entity: &b.name,
                            global_id: None,
                            local_id: Some(&item.id),
                            data: item.data.as_deref(),
                            reason: &reason,
                        })?;
                        continue;
                    }
                };
                let hash = mapping::hash(&record);
                let text = serde_json::Value::Object(record.clone()).to_string();
                let global_id = match (plan::accept(&hash, link.as_ref()), &link) {
                    (Accept::New, _) => {
                        let gid = tx.create_golden(&b.name, &text, &hash)?;
                        tx.record_seen(&b.name, system, &item.id, gid, &hash)?;
                        gid
                    }
                    (Accept::Changed | Accept::Echo, Some(l)) => {
                        tx.update_golden(l.global_id, &text, &hash)?;
                        tx.record_seen(&b.name, system, &item.id, l.global_id, &hash)?;
                        l.global_id
                    }
                    (_, Some(l)) => l.global_id,
                    (_, None) => unreachable!("accept returns New without a link"),
                };
                out.push(Accepted {
                    global_id,
                    hash,
                    record,
                });
            }
            Ok(())
        })?;
        self.report.counts.failed += failed;
        Ok(out)
    }

    /// Writes accepted records to every target of the entity except the source.
    async fn deliver(
        &mut self,
        s: usize,
        entity: &str,
        accepted: &[Accepted],
    ) -> anyhow::Result<()> {
        for t in 0..self.participants.len() {
            if t == s || self.participants[t].instance.is_none() {
                continue;
            }
            let target = self.participants[t].system;
            let Some(tb) = target.entity(entity).filter(|b| b.direction.writes()) else {
                continue;
            };
            let mut items = Vec::new();
            let mut pending = Vec::new();
            for a in accepted {
                let link = self.store.link_by_global(&target.name, a.global_id)?;
                match plan::write(&a.hash, link.as_ref()) {
                    None => self.report.counts.skipped += 1,
                    Some(w) => {
                        let id = match w {
                            Write::Create => None,
                            Write::Update { local_id } => Some(local_id),
                        };
                        let data =
                            serde_json::Value::Object(mapping::from_canonical(tb, &a.record))
                                .to_string();
                        items.push(WriteItem {
                            id,
                            op: Operation::Upsert,
                            data: Some(data),
                        });
                        pending.push(a);
                    }
                }
            }
            if items.is_empty() {
                continue;
            }
            let bind = binding(tb);
            let instance = self.participants[t]
                .instance
                .as_mut()
                .expect("checked above");
            let outcomes = match instance.write(&bind, items.clone()).await {
                Ok(o) => o,
                Err(e) => {
                    self.report.counts.failed += items.len() as u64;
                    self.fail(t, e);
                    continue;
                }
            };
            if outcomes.len() != items.len() {
                self.report.counts.failed += items.len() as u64;
                self.fail(
                    t,
                    CallError::Trap {
                        system: target.name.clone(),
                        message: format!(
                            "connector returned {} outcomes for {} writes",
                            outcomes.len(),
                            items.len()
                        ),
                    },
                );
                continue;
            }
            let (run_id, name) = (self.run_id, target.name.as_str());
            let mut written = 0;
            let mut failed = 0;
            self.store.transaction(|tx| {
                for ((a, item), outcome) in pending.iter().zip(&items).zip(outcomes) {
                    match outcome {
                        Ok(w) => {
                            written += 1;
                            tx.record_written(entity, name, &w.id, a.global_id, &a.hash)?;
                        }
                        Err(e) => {
                            failed += 1;
                            let reason = format!("{}: {}", kind_name(e.kind), e.message);
                            tx.dead_letter(NewDeadLetter {
                                run_id,
                                system: name,
                                entity,
                                global_id: Some(a.global_id),
                                local_id: item.id.as_deref(),
                                data: item.data.as_deref(),
                                reason: &reason,
                            })?;
                        }
                    }
                }
                Ok(())
            })?;
            self.report.counts.written += written;
            self.report.counts.failed += failed;
        }
        Ok(())
    }
}
