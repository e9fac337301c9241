//! The sync engine: reads sources, keeps golden records and id links in the
//! central store, and writes what changed to the destinations.
//!
//! The files follow the flow of a pass (`run`): `read` a source (with
//! `inbox`, the changes kept in the store, and `prepare`, the work done off
//! the pass's thread), `accept` each page into the store, then `dispatch`
//! the outbox (`deliver` is its store side, `retry` its backoff). `identity`
//! recognises records read without a link (match keys, creates read back),
//! `look` asks a target before creating in it. `plan` is
//! the pure part (what to do with a record, given the links); `review`
//! carries out people's decisions, `rollback` undoes a run, `dry_run` plans
//! without writing, `faults` holds the test-only kill hooks. `pass` is the
//! state one pass carries, `work` the types handed from step to step,
//! `report` what a pass is asked and answers.

mod accept;
mod deliver;
mod dispatch;
mod dry_run;
mod duplicates;
mod error;
mod faults;
mod golden;
mod identity;
mod inbox;
mod look;
mod merge;
mod pass;
pub mod plan;
mod prepare;
mod read;
mod report;
mod retry;
mod review;
mod rollback;
mod run;
mod state;
mod work;

pub use error::SyncError;
pub use report::{Identity, PlanLine, Polled, SyncOptions, SyncReport};
pub use review::{decide_conflict, Decided};
pub use run::{dry_run, merge, rollback, sync, writer_lease};
pub use state::connector_state;
pub use work::binding;
