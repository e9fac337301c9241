//! The central store behind the connectors' `state` import: each instance
//! gets a backend that opens its own connection to the store the first
//! time the connector asks (most never do), so that connector calls never
//! wait for the pass's transaction.

use crate::runtime::{StateBackend, StateError};
use crate::store::{StateStore, StoreError};
use std::path::{Path, PathBuf};

/// The `state` of one system in the central store at `store`.
pub fn connector_state(store: &Path, system: &str) -> Box<dyn StateBackend> {
    Box::new(Lazy {
        path: store.to_path_buf(),
        system: system.to_string(),
        open: None,
    })
}

/// A system's state, its connection opened at first use.
struct Lazy {
    path: PathBuf,
    system: String,
    open: Option<StateStore>,
}

impl Lazy {
    fn store(&mut self) -> Result<&StateStore, StateError> {
        if self.open.is_none() {
            let opened = StateStore::open(&self.path, &self.system).map_err(failed)?;
            self.open = Some(opened);
        }
        Ok(self.open.as_ref().expect("opened above"))
    }
}

impl StateBackend for Lazy {
    fn get(&mut self, key: &str) -> Result<Option<String>, StateError> {
        self.store()?.get(key).map_err(failed)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), StateError> {
        self.store()?.set(key, value).map_err(failed)
    }

    fn remove(&mut self, key: &str) -> Result<(), StateError> {
        self.store()?.remove(key).map_err(failed)
    }
}

/// A store failure, for the connector's trap.
fn failed(e: StoreError) -> StateError {
    StateError(e.to_string())
}
