//! `weir check`: the manifest, then every system's connector described and
//! checked ([`crate::check`]); this file prints what was found.

use crate::check::{self, Checked, Outcome, SystemCheck};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
) -> anyhow::Result<ExitCode> {
    // Connector files, exports, config and grants: bad input, as a manifest
    // error is (exit 2), before any system is contacted.
    check::preflight::all(manifest, runtime).await?;
    println!(
        "manifest {}: ok ({} entities, {} systems)",
        manifest.file.display(),
        manifest.entities.len(),
        manifest.systems.len()
    );
    let mut problems = 0;
    for system in &manifest.systems {
        let found = check::system(manifest, runtime, system).await;
        print(manifest, &found);
        problems += found.problems();
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The lines of one system: its problems, or its connector and schemas.
fn print(manifest: &Manifest, found: &SystemCheck) {
    let system = &found.system;
    let (exports, missing, checked) = match &found.outcome {
        Outcome::NotLoaded(e) => {
            println!("system {system}: {e}");
            return;
        }
        Outcome::Loaded {
            exports,
            missing,
            checked,
        } => (exports, missing, checked),
    };
    for m in missing {
        let fix = if m.export == "source" {
            "write"
        } else {
            "read"
        };
        let verb = if m.export == "source" {
            "read"
        } else {
            "written"
        };
        println!("system {system}: entity {} is {verb} (direction = {:?}) but the connector does not export '{}'; set direction = \"{fix}\"", m.entity, m.direction, m.export);
    }
    match checked {
        Ok(c) => print_checked(manifest, system, exports, c),
        Err(e) => println!("{e}"),
    }
}

/// A connector that described itself: its name and version, where the
/// mappings disagree with its schemas, then the schemas.
fn print_checked(
    manifest: &Manifest,
    system: &str,
    exports: &crate::runtime::Exports,
    c: &Checked,
) {
    println!(
        "system {system}: ok ({} {}; exports {exports})",
        c.name, c.version
    );
    for p in &c.schema_problems {
        let line = p.line.map(|l| format!(":{l}")).unwrap_or_default();
        println!(
            "{}{line}: {}: {}",
            manifest.file.display(),
            p.key.join("."),
            p.message
        );
    }
    for s in &c.schemas {
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
