//! `weir check`: the manifest, then every system's connector described and checked.

use crate::manifest::Manifest;
use crate::runtime::{types::EntityBinding, Runtime};
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
) -> anyhow::Result<ExitCode> {
    println!(
        "manifest {}: ok ({} entities, {} systems)",
        manifest.file.display(),
        manifest.entities.len(),
        manifest.systems.len()
    );
    let mut problems = 0;
    for system in &manifest.systems {
        let connector = match runtime.load(&system.connector) {
            Ok(c) => c,
            Err(e) => {
                problems += 1;
                println!("system {}: {e}", system.name);
                continue;
            }
        };
        let exports = connector.exports();
        for b in &system.entities {
            if b.direction.reads() && !exports.source {
                problems += 1;
                println!("system {}: entity {} is read (direction = {:?}) but the connector does not export 'source'; set direction = \"write\"", system.name, b.name, b.direction);
            }
            if b.direction.writes() && !exports.destination {
                problems += 1;
                println!("system {}: entity {} is written (direction = {:?}) but the connector does not export 'destination'; set direction = \"read\"", system.name, b.name, b.direction);
            }
        }
        let mut instance = match runtime
            .instantiate(&connector, system, &manifest.store)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                problems += 1;
                println!("{e}");
                continue;
            }
        };
        let bindings: Vec<EntityBinding> = system
            .entities
            .iter()
            .map(|e| EntityBinding {
                name: e.name.clone(),
                primary_key: e.primary_key.clone(),
                settings: e.settings.to_string(),
            })
            .collect();
        let described = instance.describe().await;
        match (described, instance.check(&bindings).await) {
            (Ok(d), Ok(schemas)) => {
                println!(
                    "system {}: ok ({} {}; exports {exports})",
                    system.name, d.name, d.version
                );
                for s in &schemas {
                    let Some(b) = system.entity(&s.name) else {
                        continue;
                    };
                    let kinds: Vec<(String, crate::mapping::SystemKind)> = s
                        .fields
                        .iter()
                        .map(|f| (f.name.clone(), system_kind(f.kind)))
                        .collect();
                    for p in b.mapping.check_schema(&kinds) {
                        problems += 1;
                        let mut key =
                            vec!["systems", system.name.as_str(), "entities", b.name.as_str()];
                        key.extend(p.key.iter().map(String::as_str));
                        let line = manifest
                            .line_of(&key)
                            .map(|l| format!(":{l}"))
                            .unwrap_or_default();
                        println!(
                            "{}{line}: {}: {}",
                            manifest.file.display(),
                            key.join("."),
                            p.message
                        );
                    }
                }
                for s in schemas {
                    let fields: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
                    println!(
                        "  {}: key {}, {} fields ({}){}",
                        s.name,
                        s.primary_key,
                        fields.len(),
                        fields.join(", "),
                        if s.incremental { ", incremental" } else { "" }
                    );
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                problems += 1;
                println!("{e}");
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The mapping module's view of a connector's field type.
fn system_kind(kind: crate::runtime::types::FieldType) -> crate::mapping::SystemKind {
    use crate::mapping::SystemKind as K;
    use crate::runtime::types::FieldType as F;
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
