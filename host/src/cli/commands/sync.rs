//! `weir sync`: one pass, or with `--dry-run` the plan of one.

use crate::cli::SyncArgs;
use crate::engine::{self, SyncOptions};
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: &Manifest,
    runtime: &Runtime,
    args: &SyncArgs,
) -> anyhow::Result<ExitCode> {
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let options = SyncOptions {
        batch_size: args.batch_size,
        progress,
        full: args.full,
        allow_deletes: args.allow_deletes,
        deliver_now: args.now,
        poll: None,
        retry_gather: std::time::Duration::ZERO,
        pass_rows: None,
    };
    if args.dry_run {
        return dry_run(manifest, runtime, &options).await;
    }
    let _lease = engine::writer_lease(manifest, args.wait)?;
    let report = engine::sync(manifest, runtime, &options).await?;
    let c = report.counts;
    println!("run {}: {c}", report.run_id);
    print_identity(&report);
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    if c.failed > 0 {
        eprintln!(
            "{} record(s) failed: see `weir dead-letters` and `weir status`",
            c.failed
        );
    }
    if report.refused_again > 0 {
        eprintln!(
            "{} record(s) read again as they were when refused are still in the dead letters: see `weir dead-letters`",
            report.refused_again
        );
    }
    if report.held > 0 {
        eprintln!("{} change(s) held for review: see `weir held`", report.held);
    }
    if c.conflicts > 0 {
        eprintln!("{} conflict(s) resolved: see `weir conflicts`", c.conflicts);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `weir sync --dry-run`: the pass on a copy of the store, and its plan.
async fn dry_run(
    manifest: &Manifest,
    runtime: &Runtime,
    options: &SyncOptions,
) -> anyhow::Result<ExitCode> {
    let report = engine::dry_run(manifest, runtime, options).await?;
    print_identity(&report);
    print_plan(&report.plan);
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints, per system and entity where records were matched, found or held
/// as ambiguous, how they were recognised, and the pass's notes.
fn print_identity(report: &engine::SyncReport) {
    let mut ambiguous = 0;
    for ((system, entity), i) in &report.identity {
        if !i.any_matching() {
            continue;
        }
        ambiguous += i.ambiguous;
        let mut parts = Vec::new();
        if i.matched + i.created > 0 || i.found == 0 {
            parts.push(format!("{} matched, {} created", i.matched, i.created));
        }
        if i.found > 0 {
            parts.push(format!("{} found there and linked", i.found));
        }
        parts.push(format!("{} ambiguous", i.ambiguous));
        println!("  {entity} in {system}: {}", parts.join(", "));
    }
    if ambiguous > 0 {
        eprintln!("{ambiguous} record(s) held as ambiguous matches: see `weir matches`");
    }
    for n in &report.notes {
        eprintln!("note: {n}");
    }
}

/// Prints a dry run's plan, grouped by target and entity in delivery order.
fn print_plan(plan: &[engine::PlanLine]) {
    println!(
        "dry run: nothing was written; `weir sync` would now make {} write(s)",
        plan.len()
    );
    let mut groups: Vec<(&str, &str, Vec<&engine::PlanLine>)> = Vec::new();
    for line in plan {
        match groups
            .iter_mut()
            .find(|(t, e, _)| *t == line.target && *e == line.entity)
        {
            Some((_, _, lines)) => lines.push(line),
            None => groups.push((&line.target, &line.entity, vec![line])),
        }
    }
    for (target, entity, lines) in groups {
        let count = |kind: &str| lines.iter().filter(|l| l.kind == kind).count();
        println!(
            "{target} {entity}: {} create, {} update, {} delete",
            count("create"),
            count("update"),
            count("delete") + count("soft-delete")
        );
        for l in lines {
            let id = l
                .local_id
                .as_deref()
                .map(|i| format!(" {i}"))
                .unwrap_or_default();
            let fields: Vec<String> = l
                .changes
                .iter()
                .map(|(field, old, new)| match old {
                    Some(old) => format!("{field}: {old} -> {new}"),
                    None => format!("{field} = {new}"),
                })
                .collect();
            if fields.is_empty() {
                println!("  {}{id}", l.kind);
            } else {
                println!("  {}{id}: {}", l.kind, fields.join(", "));
            }
        }
    }
}
