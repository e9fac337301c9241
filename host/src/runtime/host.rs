//! The data of one instance's store and the host imports it serves
//! that need no module of their own: `types`, `log`, `state` and `rejects`.

use super::{bindings, http, sql};
use crate::manifest::System;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of one store: WASI context, limits, grants and host-side handles.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) system: Arc<System>,
    pub(super) http: http::SystemClient,
    pub(super) sql: sql::Connections,
    pub(super) state: Box<dyn StateBackend>,
    pub(super) deadline: Instant,
    pub(super) denials: Vec<String>,
    /// The records the connector rejected in the call under way.
    pub(super) rejects: Vec<Reject>,
    /// The most rejects the call under way may report (its `limit`).
    pub(super) reject_limit: usize,
    /// Log lines the call under way wrote.
    pub(super) log_lines: u32,
    /// Whether the call under way did something that may have reached the
    /// system: an HTTP request that connected, an SQL statement on an open
    /// database, a file in a granted directory, connector state written.
    /// A write call that reached nothing changed nothing there.
    pub(super) reached: bool,
}

/// A record a source holds but could not turn into a change (the
/// `rejects` import): it becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The entity's name in the manifest.
    pub entity: String,
    /// The record's primary-key value, where the connector could read it.
    pub id: Option<String>,
    /// Where the record is and what is wrong with it.
    pub reason: String,
    /// The record as text, at most [`REJECT_RAW_BYTES`] of it.
    pub raw: String,
}

/// How much of a rejected record's text the host keeps.
pub const REJECT_RAW_BYTES: usize = 64 * 1024;

/// How many rejects a call that has no `limit` (anything but `read` and
/// `changes`) may report.
pub(super) const REJECT_LIMIT: usize = 1000;

/// Text cut to at most `max` bytes, at a character boundary.
pub(super) fn clipped(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(super) fn deny(&mut self, message: String) -> String {
        tracing::warn!(system = %self.system.name, "denied: {message}");
        self.denials.push(message.clone());
        message
    }
}

impl bindings::weir::connector::types::Host for HostState {}

impl bindings::weir::connector::log::Host for HostState {
    async fn write(
        &mut self,
        level: bindings::weir::connector::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use bindings::weir::connector::log::Level;
        self.log_lines += 1;
        let limit = self.system.limits.log_lines_per_call;
        if self.log_lines > limit {
            return Err(super::LimitExceeded::LogLines(limit).into());
        }
        let message = clipped(message, 4096);
        let system = &self.system.name;
        match level {
            Level::Trace => tracing::trace!(system = %system, "{message}"),
            Level::Debug => tracing::debug!(system = %system, "{message}"),
            Level::Info => tracing::info!(system = %system, "{message}"),
            Level::Warn => tracing::warn!(system = %system, "{message}"),
            Level::Error => tracing::error!(system = %system, "{message}"),
        }
        Ok(())
    }
}

/// Where a connector's private key/value `state` import is kept: one
/// backend per instance, given to `Runtime::instantiate` by the host (the
/// central store, in weir). The runtime keeps nothing itself. A failure
/// traps the call: a connector cannot go on without its state.
pub trait StateBackend: Send {
    /// The value under `key`, if any.
    fn get(&mut self, key: &str) -> Result<Option<String>, StateError>;
    /// Sets `key` to `value`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), StateError>;
    /// Removes `key`.
    fn remove(&mut self, key: &str) -> Result<(), StateError>;
}

/// Why a `StateBackend` failed.
#[derive(Debug, thiserror::Error)]
#[error("connector state: {0}")]
pub struct StateError(pub String);

impl bindings::weir::connector::rejects::Host for HostState {
    async fn reject(
        &mut self,
        entity: String,
        id: Option<String>,
        reason: String,
        raw: String,
    ) -> wasmtime::Result<()> {
        if self.rejects.len() >= self.reject_limit {
            // Stops the call: a connector cannot fill the host's memory
            // with rejects.
            return Err(super::LimitExceeded::Rejects(self.reject_limit).into());
        }
        self.rejects.push(Reject {
            entity: clipped(entity, 1024),
            id: id.map(|id| clipped(id, 1024)),
            reason: clipped(reason, 4096),
            raw: clipped(raw, REJECT_RAW_BYTES),
        });
        Ok(())
    }
}

impl bindings::weir::connector::state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state.get(&key)?)
    }
    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        let limit = self.system.limits.state_max_bytes;
        if key.len() + value.len() > limit {
            let kib = (key.len() + value.len()).div_ceil(1024);
            return Err(super::LimitExceeded::State(kib, limit >> 10).into());
        }
        self.reached = true;
        Ok(self.state.set(&key, &value)?)
    }
    async fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        self.reached = true;
        Ok(self.state.remove(&key)?)
    }
}
