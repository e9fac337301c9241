//! The sync engine: reads sources, keeps golden records and id links in the
//! central store, and writes what changed to the destinations.
//!
//! `plan` is the pure part (what to do with a record, given the links);
//! `sync` applies it, which is the only part that does I/O.

pub mod plan;
mod sync;

pub use sync::{binding, dry_run, rollback, sync, PlanLine, Polled, SyncOptions, SyncReport};
