//! What a pass is asked to do and what it reports: options, the report
//! and its figures, the polls and a dry run's plan lines.

use crate::store::RunCounts;
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
    /// Writes waiting for a retry that come due within this time are
    /// delivered with those due (default none). The rows one failure
    /// postponed come due spread out by their jitter; `weir run` gathers
    /// them into one pass instead of waking for each.
    pub retry_gather: std::time::Duration,
    /// At most this many outbox rows per target and entity in one pass
    /// (default no limit); the rest waits for the next pass, which the
    /// report asks for (`more_due`). `weir run` keeps its passes short this
    /// way: a target back from an outage with a large backlog does not
    /// hold up what the other targets are due meanwhile.
    pub pass_rows: Option<usize>,
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
            retry_gather: std::time::Duration::ZERO,
            pass_rows: None,
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
    /// How records were recognised, per system and entity.
    pub identity: std::collections::BTreeMap<(String, String), Identity>,
    /// Records sources offered again as they were when they went to the
    /// dead letters: counted there, not failures of this pass.
    pub refused_again: u64,
    /// Outbox rows were left due by `pass_rows`: another pass should follow.
    pub more_due: bool,
}

/// How the records of one system and entity were recognised in a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Read without a link, and linked to a golden record by match key.
    pub matched: u64,
    /// Read, and new golden records made of them.
    pub created: u64,
    /// Held for a person: their match key matches several golden records
    /// (or, this system a target, several of its records match a golden one).
    pub ambiguous: u64,
    /// This system a target: records found there and linked instead of
    /// created.
    pub found: u64,
}

impl Identity {
    /// Whether anything was matched, found or held.
    pub fn any_matching(&self) -> bool {
        self.matched + self.ambiguous + self.found > 0
    }
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
    /// The empty report of run `run_id`.
    pub(super) fn new(run_id: i64) -> SyncReport {
        SyncReport {
            run_id,
            counts: RunCounts::default(),
            failures: Vec::new(),
            held: 0,
            plan: Vec::new(),
            polled: Vec::new(),
            notes: Vec::new(),
            identity: Default::default(),
            refused_again: 0,
            more_due: false,
        }
    }

    /// Whether everything synced without a failure or a dead letter.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty() && self.counts.failed == 0
    }
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

/// What one accepted page changed in the run's figures.
#[derive(Default)]
pub(super) struct PageCounts {
    /// Changes with content weir did not know yet.
    pub(super) fresh: u64,
    /// Records new to weir.
    pub(super) created: u64,
    /// Records read with content weir already had.
    pub(super) unchanged: u64,
    pub(super) echoes: u64,
    pub(super) conflicts: u64,
    /// Records refused, new to the dead letters.
    pub(super) failed: u64,
    /// Records refused again as they were (their letters counted).
    pub(super) again: u64,
    pub(super) held: u64,
    /// Records without a link recognised by their match key.
    pub(super) matched: u64,
    /// Records held because their match key matches several golden records.
    pub(super) ambiguous: u64,
}

impl PageCounts {
    /// Counts a record refused on its way in.
    pub(super) fn read_letter(&mut self, lettered: crate::store::Lettered) {
        match lettered {
            crate::store::Lettered::New => self.failed += 1,
            crate::store::Lettered::Again => self.again += 1,
        }
    }

    /// The records refused so far, new or again.
    pub(super) fn refused(&self) -> u64 {
        self.failed + self.again
    }

    pub(super) fn add_to(&self, report: &mut SyncReport, system: &str, entity: &str) {
        let identity = report
            .identity
            .entry((system.to_string(), entity.to_string()))
            .or_default();
        identity.matched += self.matched;
        identity.created += self.created;
        identity.ambiguous += self.ambiguous;
        report.counts.skipped += self.unchanged;
        report.counts.echoes += self.echoes;
        report.counts.conflicts += self.conflicts;
        report.counts.failed += self.failed;
        report.refused_again += self.again;
        report.held += self.held;
    }
}
