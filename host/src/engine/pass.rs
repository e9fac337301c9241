//! The state of one pass: the store, the systems taking part with their
//! connector instances, the report so far, and what is shared between
//! reading and delivery.

use super::dry_run::DryRun;
use super::faults::Faults;
use super::report::{SyncOptions, SyncReport};
use super::work::Delivery;
use crate::manifest::{System, SystemEntity};
use crate::runtime::{CallError, Instance};
use crate::store::Store;

/// A system taking part in this run.
pub(super) struct Participant<'m> {
    pub(super) system: &'m System,
    pub(super) instance: Option<Instance>,
    /// Calls of this system that failed in the pass.
    pub(super) failures: u32,
}

pub(super) struct Pass<'a, 'm> {
    pub(super) store: &'a mut Store,
    pub(super) participants: Vec<Participant<'m>>,
    pub(super) report: SyncReport,
    pub(super) run_id: i64,
    pub(super) options: &'a SyncOptions,
    pub(super) faults: Faults,
    /// Parked changes of the system and entity being read: local id → change.
    pub(super) parked: std::collections::HashMap<String, String>,
    /// The ids of records in the read-side dead letters, per system and
    /// entity read in this pass: cleared when a record comes back fixed.
    pub(super) lettered:
        std::collections::HashMap<(String, String), std::collections::HashSet<String>>,
    /// The golden records each target holds a write-side dead letter of:
    /// cleared when the record is written at last.
    pub(super) write_lettered: std::collections::HashMap<String, std::collections::HashSet<i64>>,
    /// Set for a dry run.
    pub(super) dry: Option<DryRun>,
    /// The deliveries going along with the intake under way.
    pub(super) along: Vec<Delivery<'m>>,
    /// Outbox rows whose write failed in this pass: tried again in a later
    /// pass, with backoff, not at the end of this one.
    pub(super) failed_rows: std::collections::HashSet<i64>,
    /// Targets whose last write call reached nothing there (it failed
    /// before a request connected): the creates it carried did not land.
    pub(super) unreached: std::collections::HashSet<String>,
}

impl<'m> Pass<'_, 'm> {
    pub(super) fn fail(&mut self, p: usize, error: CallError) {
        tracing::debug!("{error}");
        if error.is_fatal() {
            self.participants[p].instance = None;
        }
        self.participants[p].failures += 1;
        self.report.failures.push(error.to_string());
    }

    /// Systems that receive writes of an entity.
    pub(super) fn targets(&self, entity: &str) -> Vec<String> {
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

    /// The bindings of the targets written along the intake under way.
    pub(super) fn along_bindings(&self) -> Vec<SystemEntity> {
        self.along.iter().map(|d| d.tb.clone()).collect()
    }
}
