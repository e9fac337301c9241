//! One file per command: each takes the manifest (and the runtime, for the
//! commands that run connectors) with its arguments, prints, and returns
//! the exit code.

pub(super) mod audit;
pub(super) mod backup;
pub(super) mod check;
pub(super) mod conflicts;
pub(super) mod connectors;
pub(super) mod dead_letters;
pub(super) mod held;
pub(super) mod matches;
pub(super) mod merge;
pub(super) mod records;
pub(super) mod refresh;
pub(super) mod rollback;
pub(super) mod run;
pub(super) mod runs;
pub(super) mod status;
pub(super) mod sync;
