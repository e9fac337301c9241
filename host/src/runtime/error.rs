//! How a call into a connector, or loading one, fails.

use super::types::{self, ConnectorError};
use crate::manifest::Limits;
use std::path::PathBuf;
use std::time::Duration;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// A failure of a call into a connector.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connector answered with an error.
    #[error("system '{system}': {kind} error: {message}", kind = kind_name(.error.kind), message = .error.message)]
    Connector {
        /// The system.
        system: String,
        /// What the connector said.
        error: ConnectorError,
    },
    /// The call ran past the system's time limit and was stopped.
    #[error("system '{system}': connector stopped: exceeded its time limit of {limit:?} per call (limits.call_timeout_secs)")]
    Timeout {
        /// The system.
        system: String,
        /// The limit.
        limit: Duration,
    },
    /// The connector tried to use more memory than allowed and was stopped.
    #[error("system '{system}': connector stopped: exceeded its memory limit of {} MiB (limits.memory_mib)", .limit >> 20)]
    Memory {
        /// The system.
        system: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The connector crashed (a trap: a bug in the connector).
    #[error("system '{system}': connector crashed: {message}")]
    Trap {
        /// The system.
        system: String,
        /// The trap and its backtrace.
        message: String,
    },
    /// The connector does not export the interface needed.
    #[error("system '{system}': connector does not export the '{interface}' interface")]
    Unsupported {
        /// The system.
        system: String,
        /// The interface, for example `source`.
        interface: &'static str,
    },
    /// The connector's output broke one of the system's limits (page size,
    /// records or rejects per call, log lines, state size, a cursor that
    /// does not move) and the call was stopped.
    #[error("system '{system}': connector stopped: {what}")]
    Output {
        /// The system.
        system: String,
        /// Which limit, and by how much.
        what: String,
    },
    /// An earlier call failed hard and the instance was dropped.
    #[error("system '{system}': connector was stopped after an earlier failure")]
    Stopped {
        /// The system.
        system: String,
    },
}

/// The WIT name of an error kind, for messages.
pub fn kind_name(kind: types::ErrorKind) -> &'static str {
    use types::ErrorKind as K;
    match kind {
        K::InvalidConfig => "invalid-config",
        K::Auth => "auth",
        K::Permission => "permission",
        K::NotFound => "not-found",
        K::RateLimited => "rate-limited",
        K::Transient => "transient",
        K::Rejected => "rejected",
        K::Schema => "schema",
        K::Unsupported => "unsupported",
    }
}

impl CallError {
    /// Whether the connector itself was stopped (trap, timeout, memory).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            CallError::Connector { .. } | CallError::Unsupported { .. }
        )
    }
}

/// Why the runtime failed to load a component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read connector '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid component or does not fit the connector world.
    #[error("connector '{path}' is not a usable weir connector: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (compile or link error chain).
        message: String,
    },
}

/// A limit the host enforces by stopping the guest.
#[derive(Debug, thiserror::Error)]
pub(super) enum LimitExceeded {
    #[error("time limit exceeded")]
    Time,
    /// The call wrote more log lines than its limit.
    #[error("wrote more than {0} log lines in one call (limits.log_lines_per_call)")]
    LogLines(u32),
    /// The call set a state value larger than the limit.
    #[error("set a state value of {0} KiB, more than limits.state_max_kib = {1}")]
    State(usize, usize),
    /// The call rejected more records than it may return.
    #[error("rejected more than {0} records in one call (the call's limit)")]
    Rejects(usize),
}

/// Turns an error from a call into a [`CallError`], naming the limit that stopped it.
pub(super) fn classify(
    system: &str,
    limits: &Limits,
    e: wasmtime::Error,
    stderr: &MemoryOutputPipe,
) -> CallError {
    let system = system.to_string();
    if let Some(what) = e
        .downcast_ref::<LimitExceeded>()
        .filter(|l| !matches!(l, LimitExceeded::Time))
    {
        return CallError::Output {
            system,
            what: what.to_string(),
        };
    }
    if e.downcast_ref::<LimitExceeded>().is_some()
        || matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        )
    {
        return CallError::Timeout {
            system,
            limit: limits.call_timeout,
        };
    }
    let text = format!("{e:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return CallError::Output {
            system,
            what: format!(
                "handed the host more than {} MiB in one call (a page, a request, a statement); limits.page_max_mib = {} raises it",
                hostcall_fuel(limits) >> 20,
                limits.page_max_bytes >> 20
            ),
        };
    }
    if text.contains("forcing trap when growing memory") {
        return CallError::Memory {
            system,
            limit: limits.memory_bytes,
        };
    }
    tracing::debug!(system = %system, "connector trap: {text}");
    let reason = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    let output = String::from_utf8_lossy(&stderr.contents()).into_owned();
    let tail: Vec<&str> = output
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: "))
        .collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
    let message = if tail.is_empty() {
        reason
    } else {
        format!("{reason}; connector said: {tail}")
    };
    CallError::Trap { system, message }
}

/// The most bytes a connector may hand the host in one transfer (a call's
/// result, an import's arguments): twice the page limit, and never less
/// than wasmtime's own default of 128 MiB. It bounds what the host
/// allocates for a guest before any check of its own can run.
pub(super) fn hostcall_fuel(limits: &Limits) -> usize {
    (limits.page_max_bytes.saturating_mul(2)).max(128 << 20)
}
