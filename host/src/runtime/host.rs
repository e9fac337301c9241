//! The data of one instance's store and the host imports it serves
//! that need no module of their own: `types`, `log` and `state`.

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

impl bindings::weir::connector::state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.state.get(&key)?)
    }
    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        Ok(self.state.set(&key, &value)?)
    }
    async fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        Ok(self.state.remove(&key)?)
    }
}
