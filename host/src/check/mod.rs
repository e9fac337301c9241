//! What `weir check` finds beyond the manifest: every system's connector
//! loaded, its exports compared with the directions of the system's
//! entities, described and checked, and the schemas it reports compared
//! with the entities' mappings. Nothing is read or written: `check` is the
//! connector's own look at its configuration. The caller prints the result.

pub mod preflight;
pub mod schema;

use crate::engine;
use crate::manifest::{Direction, Manifest, System};
use crate::mapping::SystemKind;
use crate::runtime::types::{EntitySchema, FieldType};
use crate::runtime::{Exports, Runtime};

/// What the check of one system found.
#[derive(Debug)]
pub struct SystemCheck {
    /// The system's name.
    pub system: String,
    /// What came of it.
    pub outcome: Outcome,
}

/// How far the check of one system got.
#[derive(Debug)]
pub enum Outcome {
    /// The component could not be loaded: the runtime's message.
    NotLoaded(String),
    /// The component was loaded.
    Loaded {
        /// What it exports.
        exports: Exports,
        /// Entities whose direction needs an export the component lacks.
        missing: Vec<MissingExport>,
        /// The description and schemas, or why there are none: the
        /// instance could not be made, or `describe` or `check` failed
        /// (the runtime's message, which names the system).
        checked: Result<Checked, String>,
    },
}

/// An entity that is read or written through an interface the component
/// does not export.
#[derive(Debug)]
pub struct MissingExport {
    /// The entity.
    pub entity: String,
    /// Its direction in the manifest.
    pub direction: Direction,
    /// The export it needs: `source` or `destination`.
    pub export: &'static str,
}

/// A connector that described itself and checked its configuration.
#[derive(Debug)]
pub struct Checked {
    /// The connector's name, from `describe`.
    pub name: String,
    /// The connector's version, from `describe`.
    pub version: String,
    /// Where the mappings disagree with the schemas.
    pub schema_problems: Vec<SchemaProblem>,
    /// The schema of each entity, as the connector reports it.
    pub schemas: Vec<EntitySchema>,
}

/// A mapping that does not fit the schema the connector reports.
#[derive(Debug)]
pub struct SchemaProblem {
    /// The manifest key, from `systems` on.
    pub key: Vec<String>,
    /// Its line in the manifest file, if it can be found.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl SystemCheck {
    /// How many problems the check found (each is one line of `weir check`).
    pub fn problems(&self) -> usize {
        match &self.outcome {
            Outcome::NotLoaded(_) => 1,
            Outcome::Loaded {
                missing, checked, ..
            } => {
                missing.len()
                    + match checked {
                        Ok(c) => c.schema_problems.len(),
                        Err(_) => 1,
                    }
            }
        }
    }
}

/// Checks every system of the manifest, in manifest order.
pub async fn all(manifest: &Manifest, runtime: &Runtime) -> Vec<SystemCheck> {
    let mut checks = Vec::new();
    for system in &manifest.systems {
        checks.push(self::system(manifest, runtime, system).await);
    }
    checks
}

/// Checks one system: loads its connector, compares exports with
/// directions, then describes and checks it and compares its schemas with
/// the mappings.
pub async fn system(manifest: &Manifest, runtime: &Runtime, system: &System) -> SystemCheck {
    let outcome = match runtime.load(&system.connector) {
        Err(e) => Outcome::NotLoaded(e.to_string()),
        Ok(connector) => {
            let exports = connector.exports();
            let checked = match runtime
                .instantiate(
                    &connector,
                    system,
                    crate::engine::connector_state(&manifest.store, &system.name),
                )
                .await
            {
                Err(e) => Err(e.to_string()),
                Ok(mut instance) => {
                    let bindings: Vec<_> = system.entities.iter().map(engine::binding).collect();
                    let described = instance.describe().await;
                    match (described, instance.check(&bindings).await) {
                        (Ok(d), Ok(schemas)) => Ok(Checked {
                            name: d.name,
                            version: d.version,
                            schema_problems: schema_problems(manifest, system, &schemas),
                            schemas,
                        }),
                        (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
                    }
                }
            };
            Outcome::Loaded {
                exports,
                missing: missing_exports(system, exports),
                checked,
            }
        }
    };
    SystemCheck {
        system: system.name.clone(),
        outcome,
    }
}

/// The entities whose direction the component's exports cannot serve.
fn missing_exports(system: &System, exports: Exports) -> Vec<MissingExport> {
    let mut missing = Vec::new();
    for b in &system.entities {
        for (needed, present, export) in [
            (b.direction.reads(), exports.source, "source"),
            (b.direction.writes(), exports.destination, "destination"),
        ] {
            if needed && !present {
                missing.push(MissingExport {
                    entity: b.name.clone(),
                    direction: b.direction,
                    export,
                });
            }
        }
    }
    missing
}

/// The mappings of the system's entities against the schemas reported.
fn schema_problems(
    manifest: &Manifest,
    system: &System,
    schemas: &[EntitySchema],
) -> Vec<SchemaProblem> {
    let mut problems = Vec::new();
    for s in schemas {
        let Some(b) = system.entity(&s.name) else {
            continue;
        };
        let kinds: Vec<(String, SystemKind)> = s
            .fields
            .iter()
            .map(|f| (f.name.clone(), system_kind(f.kind)))
            .collect();
        for p in b.mapping.check_schema(&kinds) {
            let mut key = vec!["systems", system.name.as_str(), "entities", b.name.as_str()];
            key.extend(p.key.iter().map(String::as_str));
            problems.push(SchemaProblem {
                line: manifest.line_of(&key),
                key: key.into_iter().map(String::from).collect(),
                message: p.message,
            });
        }
    }
    problems
}

/// The mapping module's view of a connector's field type.
fn system_kind(kind: FieldType) -> SystemKind {
    use FieldType as F;
    use SystemKind as K;
    match kind {
        F::Text => K::Text,
        F::Integer => K::Integer,
        F::Number => K::Number,
        F::Decimal => K::Decimal,
        F::Boolean => K::Boolean,
        F::Date => K::Date,
        F::Timestamp => K::Timestamp,
        F::Any => K::Any,
    }
}
