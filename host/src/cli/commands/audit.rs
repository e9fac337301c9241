//! `weir audit`: the audit log, and `weir audit export` as JSON lines.

use crate::cli::{AuditAction, AuditArgs};
use crate::manifest::Manifest;
use anyhow::Context as _;
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        Some(AuditAction::Export { output }) => audit_export(
            manifest,
            args.entity.as_deref(),
            args.system.as_deref(),
            args.since.as_deref(),
            output.as_deref(),
        ),
        None => list(manifest, args),
    }
}

/// `weir audit`: the rows, oldest first.
fn list(manifest: &Manifest, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::Store::open(&manifest.store)?;
    for a in store.audit(
        args.entity.as_deref(),
        args.system.as_deref(),
        args.id,
        args.since.as_deref(),
        args.limit,
    )? {
        println!(
            "#{} {} run {} {} {} {} {} {} {}",
            a.id,
            a.at,
            a.run_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            a.system,
            a.entity,
            a.global_id
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            a.local_id.as_deref().unwrap_or("-"),
            a.operation,
            a.outcome
        );
        if args.verbose {
            println!(
                "    before: {}\n    after:  {}",
                a.before.as_deref().unwrap_or("-"),
                a.after.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir audit export`: JSON lines, to a file (written whole, then renamed
/// into place) or to standard output.
fn audit_export(
    manifest: &Manifest,
    entity: Option<&str>,
    system: Option<&str>,
    since: Option<&str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let store = crate::store::Store::open(&manifest.store)?;
    let line = |a: &crate::store::AuditEntry| {
        let parse = |v: &Option<String>| {
            v.as_deref()
                .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.into())))
        };
        serde_json::json!({
            "id": a.id, "at": a.at, "run_id": a.run_id, "system": a.system, "entity": a.entity,
            "global_id": a.global_id, "local_id": a.local_id, "actor": a.actor,
            "operation": a.operation, "before": parse(&a.before), "after": parse(&a.after),
            "outcome": a.outcome,
        })
    };
    let n = match output {
        Some(path) => {
            let partial = path.with_extension("partial");
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = store.each_audit(entity, system, since, |a| {
                serde_json::to_writer(&mut out, &line(a))?;
                out.write_all(b"\n")
            })?;
            out.flush()?;
            std::fs::rename(&partial, path)
                .with_context(|| format!("writing {}", path.display()))?;
            n
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = store.each_audit(entity, system, since, |a| {
                serde_json::to_writer(&mut out, &line(a))?;
                out.write_all(b"\n")
            })?;
            out.flush()?;
            n
        }
    };
    eprintln!("{n} audit row(s) exported");
    Ok(ExitCode::SUCCESS)
}
