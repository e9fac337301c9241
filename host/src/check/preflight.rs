//! What every command that runs connectors checks before it opens or
//! creates the central store: each connector is a component exporting the
//! world its directions need, and describes a config schema that the
//! system's `config` and its entities' `settings` fit, with grant names
//! that match the system's grants. Nothing is read or written and no
//! system is contacted (that is `weir check`'s connector check).

use super::schema::{self, ConfigProblem};
use crate::manifest::{Manifest, ManifestError, ManifestErrors, System};
use crate::runtime::{Runtime, StateBackend, StateError};

/// Checks every system; all problems at once, each at its manifest line.
pub async fn all(manifest: &Manifest, runtime: &Runtime) -> Result<(), ManifestErrors> {
    let mut errors = Vec::new();
    for system in &manifest.systems {
        errors.extend(self::system(manifest, runtime, system).await);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ManifestErrors(errors))
    }
}

/// The problems of one system, in the order they are found; loading stops
/// at the first a later step cannot pass.
pub async fn system(manifest: &Manifest, runtime: &Runtime, system: &System) -> Vec<ManifestError> {
    let at = |key: Vec<String>, message: String, hint: String| {
        let refs: Vec<&str> = key.iter().map(String::as_str).collect();
        ManifestError {
            file: manifest.file.clone(),
            line: manifest.line_of(&refs),
            key: key.join("."),
            message,
            hint: Some(hint),
        }
    };
    let key = |more: &[&str]| {
        let mut k = vec!["systems".to_string(), system.name.clone()];
        k.extend(more.iter().map(|s| s.to_string()));
        k
    };
    let connector = match runtime.load(&system.connector) {
        Ok(c) => c,
        Err(e) => {
            return vec![at(
                key(&["connector"]),
                e.to_string(),
                "give a connector built with `cargo build --release --target wasm32-wasip2` (a WebAssembly component of the weir:connector world); see the README".into(),
            )]
        }
    };
    let mut errors = Vec::new();
    let exports = connector.exports();
    for b in &system.entities {
        for (needed, present, export, verb, other) in [
            (
                b.direction.reads(),
                exports.source,
                "source",
                "read",
                "write",
            ),
            (
                b.direction.writes(),
                exports.destination,
                "destination",
                "written",
                "read",
            ),
        ] {
            if needed && !present {
                errors.push(at(
                    key(&["entities", &b.name, "direction"]),
                    format!(
                        "entity '{}' is {verb}, but the connector does not export '{export}'",
                        b.name
                    ),
                    format!(
                        "set direction = \"{other}\", or use a connector that exports '{export}'"
                    ),
                ));
            }
        }
    }
    let instance = runtime
        .instantiate(&connector, system, Box::new(NoState))
        .await;
    let described = match instance {
        Ok(mut i) => i.describe().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match described {
        Ok(d) => {
            let mut found: Vec<ManifestError> = schema::problems(system, &d.config_schema)
                .into_iter()
                .map(|ConfigProblem { key, message, hint }| at(key, message, hint))
                .collect();
            found.sort_by_key(|e| e.line);
            errors.extend(found);
        }
        Err(e) => errors.push(at(
            key(&["connector"]),
            format!("the connector cannot describe itself: {e}"),
            "use a working build of the connector; its author can run it with `weir check`".into(),
        )),
    }
    errors
}

/// State for the instances of the preflight: none (the store may not exist yet).
struct NoState;

impl StateBackend for NoState {
    fn get(&mut self, _: &str) -> Result<Option<String>, StateError> {
        Err(unavailable())
    }
    fn set(&mut self, _: &str, _: &str) -> Result<(), StateError> {
        Err(unavailable())
    }
    fn remove(&mut self, _: &str) -> Result<(), StateError> {
        Err(unavailable())
    }
}

fn unavailable() -> StateError {
    StateError("state is not available while a connector describes itself".into())
}
