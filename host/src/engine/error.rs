//! Why a pass could not run, or stopped before its end. A failure of one
//! system or one record is not among them: the report carries those, and
//! the pass goes on.

use crate::store::StoreError;
use std::path::PathBuf;

/// Why `sync`, `dry_run` or `rollback` failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The central store could not be opened.
    #[error("opening the central store")]
    Open(#[source] StoreError),
    /// A read, a write or a transaction of the central store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rollback named a run the store does not have.
    #[error("there is no run {0}: see `weir runs`")]
    NoSuchRun(i64),
    /// A rollback named a run that changed no record.
    #[error("run {0} changed no record: there is nothing to roll back")]
    NothingToRollBack(i64),
    /// A rollback would overwrite what later runs changed.
    #[error(
        "records of run {run} changed again since ({records}): roll later runs back first, newest first"
    )]
    ChangedSince {
        /// The run to roll back.
        run: i64,
        /// What changed them since: `run N`, `a conflict decision`.
        records: String,
    },
    /// A merge named records it cannot merge; the message says which and why.
    #[error("{0}")]
    CannotMerge(String),
    /// The folder for a dry run's copy of the store could not be made.
    #[error("creating {}", path.display())]
    Scratch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A task of the pass (a connector call, a page's preparation) ended
    /// without its result: it panicked or was cancelled.
    #[error("a {what} task failed: {message}")]
    Task {
        /// Which task: `connector read`, `connector write`, `page preparation`.
        what: &'static str,
        /// The task's error.
        message: String,
    },
}

impl SyncError {
    /// A task that ended without its result.
    pub(super) fn task(what: &'static str, e: tokio::task::JoinError) -> SyncError {
        SyncError::Task {
            what,
            message: e.to_string(),
        }
    }
}
