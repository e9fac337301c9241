//! How a call into a connector, or loading one, fails.

use super::types::{self, ConnectorError};
use std::path::PathBuf;
use std::time::Duration;

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
