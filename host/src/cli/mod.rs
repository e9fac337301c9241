//! The command line. No business logic here: parse, call the library, print.
//!
//! Exit codes: 0 success; 1 the command ran but something failed (a system
//! failed during a sync, a check found a problem); 2 bad usage, a bad manifest
//! or an error that stopped the command before it did anything.

use crate::engine::{self, SyncOptions};
use crate::manifest::{Manifest, ManifestErrors};
use crate::runtime::{types::EntityBinding, Runtime};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps systems in agreement: sandboxed WebAssembly connectors, one central store.
#[derive(Parser, Debug)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// The manifest.
    #[arg(
        short,
        long,
        global = true,
        default_value = "weir.toml",
        env = "WEIR_MANIFEST"
    )]
    pub manifest: PathBuf,
    /// Where compiled connectors are cached (default: $XDG_CACHE_HOME/weir or ~/.cache/weir).
    #[arg(long, global = true, env = "WEIR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// How log lines (stderr) are written: `text`, or `json` (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WEIR_LOG_FORMAT"
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the manifest, then describe and check every system's connector.
    Check,
    /// Run one sync pass: changes from every readable system, delivered to every writable one.
    Sync {
        /// Records per page read and per batch written.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// Read every source in full (RESYNC) instead of only its changes;
        /// full reads also find records deleted at a source.
        #[arg(long)]
        full: bool,
        /// Deliver deletes even beyond an entity's max_delete_percent.
        #[arg(long)]
        allow_deletes: bool,
        /// Deliver to systems with a delivery window (deliver_between) now too.
        #[arg(long)]
        now: bool,
        /// Print what would be written, per system and entity with field
        /// differences, and write nothing (not even to the central store).
        #[arg(long)]
        dry_run: bool,
    },
    /// Run as a service: a pass at start-up, then passes as sources fall due
    /// (poll_every, schedule, webhook health) and whenever changes are pushed;
    /// serves webhooks, the publish API and manual refresh (see README).
    Run {
        /// Address to listen on (port 0 picks a free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:8377")]
        listen: std::net::SocketAddr,
        /// Print only errors, not a line per pass.
        #[arg(short, long)]
        quiet: bool,
        /// Seconds between polls of sources that set neither poll_every nor schedule.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Records per page read and per batch written.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
    /// Ask a running service to poll a system now (its publish_token authorises it).
    Refresh {
        /// The system.
        system: String,
        /// Only this entity of it.
        entity: Option<String>,
        /// The service's address.
        #[arg(long, default_value = "http://127.0.0.1:8377")]
        daemon: String,
    },
    /// List each system's connector: what it exports and its version.
    Connectors,
    /// Show the latest runs, linked records, the outbox and dead letters.
    Status,
    /// Show the audit log, oldest first; `export` writes it as JSON lines.
    Audit {
        /// `export [--output FILE]`: every matching row as one JSON object per line.
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only this entity.
        #[arg(long, global = true)]
        entity: Option<String>,
        /// Only this system.
        #[arg(long, global = true)]
        system: Option<String>,
        /// Only this golden record (global id).
        #[arg(long)]
        id: Option<i64>,
        /// Only rows at or after this time (RFC 3339, for example 2026-01-31T00:00:00Z).
        #[arg(long, global = true)]
        since: Option<String>,
        /// At most this many rows (the latest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print the record before and after each operation too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Undo a run: put every record it changed back as it was, in every system that takes writes.
    Rollback {
        /// The run to undo (see `weir runs`).
        run: i64,
    },
    /// List the latest runs with their figures.
    Runs {
        /// At most this many (the latest).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one record: the golden record, its id in every system and its history.
    Records {
        /// The entity.
        entity: String,
        /// The golden record's global id, or with --system that system's id of it.
        id: String,
        /// Read ID as this system's id of the record.
        #[arg(long)]
        system: Option<String>,
    },
    /// Copy the central store to a new file with SQLite's online backup (safe while weir runs).
    Backup {
        /// The backup file to write (must not exist).
        path: PathBuf,
    },
    /// Replace the central store's content with a backup. Stop `weir run` first.
    Restore {
        /// A file written by `weir backup`.
        path: PathBuf,
    },
    /// Show recorded conflicts with both values.
    Conflicts {
        /// At most this many (the latest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print both values and the result too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// List changes held for review (per-user limits), or decide on one.
    Held {
        /// `approve ID` or `reject ID`.
        #[command(subcommand)]
        action: Option<HeldAction>,
    },
    /// List records that a system refused, or retry one.
    DeadLetters {
        /// `retry ID` queues dead letter ID for delivery again at the next sync.
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
    },
}

/// A decision on a held change.
#[derive(Subcommand, Debug)]
pub enum HeldAction {
    /// Apply the change at the next sync, past the per-user limit.
    Approve {
        /// The held change's id (see `weir held`).
        id: i64,
    },
    /// Drop the change at the next sync; where weir can write to the system, its record is put back.
    Reject {
        /// The held change's id (see `weir held`).
        id: i64,
    },
}

/// What to do with the audit log.
#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Write every matching row as one JSON object per line (JSONL), oldest first.
    Export {
        /// The file to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// What to do with a dead letter.
#[derive(Subcommand, Debug)]
pub enum DeadLetterAction {
    /// Queue a dead letter for delivery again; it is tried at the next sync.
    Retry {
        /// The dead letter's id (see `weir dead-letters`).
        id: i64,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    crate::telemetry::init_logs(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(m) = e.downcast_ref::<ManifestErrors>() {
                eprintln!("error: {m}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("weir").join("components"))
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(&cli.manifest)?;
    let runtime = || Runtime::new(cache_dir(&cli)).context("starting the WebAssembly runtime");
    match &cli.command {
        Command::Check => check(&manifest, &runtime()?).await,
        Command::Sync {
            batch_size,
            quiet,
            full,
            allow_deletes,
            now,
            dry_run,
        } => {
            let progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let options = SyncOptions {
                batch_size: *batch_size,
                progress,
                full: *full,
                allow_deletes: *allow_deletes,
                deliver_now: *now,
                poll: None,
            };
            if *dry_run {
                let report = engine::dry_run(&manifest, &runtime()?, &options).await?;
                print_plan(&report.plan);
                for f in &report.failures {
                    eprintln!("error: {f}");
                }
                return Ok(if report.failures.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let report = engine::sync(&manifest, &runtime()?, &options).await?;
            let c = report.counts;
            println!("run {}: {c}", report.run_id);
            for f in &report.failures {
                eprintln!("error: {f}");
            }
            if c.failed > 0 {
                eprintln!(
                    "{} write(s) failed: see `weir dead-letters` and `weir status`",
                    c.failed
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
        Command::Rollback { run } => {
            let report =
                engine::rollback(&manifest, &runtime()?, *run, &SyncOptions::default()).await?;
            let c = report.counts;
            println!(
                "run {} (rollback of run {run}): {} record(s) put back, {} written, {} deleted, {} unchanged, {} failed",
                report.run_id, c.read, c.written, c.deleted, c.skipped, c.failed
            );
            for n in &report.notes {
                eprintln!("note: {n}");
            }
            for f in &report.failures {
                eprintln!("error: {f}");
            }
            if c.failed > 0 {
                eprintln!(
                    "{} write(s) failed: see `weir dead-letters`; the rest of the rollback is done",
                    c.failed
                );
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Connectors => connectors(&manifest, &runtime()?).await,
        Command::Run {
            listen,
            quiet,
            interval,
            batch_size,
        } => {
            let options = crate::intake::DaemonOptions {
                listen: *listen,
                interval: std::time::Duration::from_secs(*interval),
                sync: SyncOptions {
                    batch_size: *batch_size,
                    ..SyncOptions::default()
                },
                quiet: *quiet,
            };
            let runtime = runtime()?;
            crate::intake::run(manifest, runtime, options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Refresh {
            system,
            entity,
            daemon,
        } => {
            let Some(s) = manifest.system(system) else {
                anyhow::bail!("no system '{system}' in {}", manifest.file.display());
            };
            let Some(token) = &s.publish_token else {
                anyhow::bail!("system '{system}' has no publish_token; add one to the manifest (and restart `weir run`)");
            };
            let mut url = format!("{}/refresh/{system}", daemon.trim_end_matches('/'));
            if let Some(e) = entity {
                url.push('/');
                url.push_str(e);
            }
            let resp = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&token.0)
                .send()
                .await
                .with_context(|| {
                    format!("cannot reach the service at {daemon} (is `weir run` running?)")
                })?;
            if resp.status().is_success() {
                match entity {
                    Some(e) => println!("refresh of {system} {e} requested"),
                    None => println!("refresh of {system} requested"),
                }
                Ok(ExitCode::SUCCESS)
            } else {
                let status = resp.status();
                eprintln!(
                    "error: the service answered {status}: {}",
                    resp.text().await.unwrap_or_default()
                );
                Ok(ExitCode::from(1))
            }
        }
        Command::Status => status(&manifest),
        Command::Audit {
            action: Some(AuditAction::Export { output }),
            entity,
            system,
            since,
            ..
        } => audit_export(
            &manifest,
            entity.as_deref(),
            system.as_deref(),
            since.as_deref(),
            output.as_deref(),
        ),
        Command::Runs { limit } => runs(&manifest, *limit),
        Command::Records { entity, id, system } => {
            records(&manifest, entity, id, system.as_deref())
        }
        Command::Backup { path } => {
            if path.exists() {
                anyhow::bail!(
                    "'{}' exists already: give a new file name (a backup never overwrites)",
                    path.display()
                );
            }
            let store = crate::store::Store::open(&manifest.store)?;
            let bytes = store.backup_to(path)?;
            println!(
                "backup: {} ({bytes} bytes) of {}",
                path.display(),
                manifest.store.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { path } => {
            if !path.is_file() {
                anyhow::bail!(
                    "no backup at '{}': give a file written by `weir backup`",
                    path.display()
                );
            }
            let mut store = crate::store::Store::open(&manifest.store)?;
            let version = store.restore_from(path)?;
            drop(store);
            // Migrates a backup taken by an older weir.
            crate::store::Store::open(&manifest.store)?;
            println!(
                "restored {} from {} (schema version {version})",
                manifest.store.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            action: None,
            entity,
            system,
            id,
            since,
            limit,
            verbose,
        } => {
            let store = crate::store::Store::open(&manifest.store)?;
            for a in store.audit(
                entity.as_deref(),
                system.as_deref(),
                *id,
                since.as_deref(),
                *limit,
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
                if *verbose {
                    println!(
                        "    before: {}\n    after:  {}",
                        a.before.as_deref().unwrap_or("-"),
                        a.after.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Conflicts { limit, verbose } => {
            let store = crate::store::Store::open(&manifest.store)?;
            for c in store.conflicts(*limit)? {
                let other = c.other_system.as_deref().unwrap_or("-");
                println!(
                    "#{} {} {} {}: {} vs {other}: {} wins ({})",
                    c.id, c.at, c.entity, c.global_id, c.system, c.winner, c.policy
                );
                if *verbose {
                    println!("    {}: {}", c.system, c.theirs.as_deref().unwrap_or("-"));
                    println!("    {other}: {}", c.ours.as_deref().unwrap_or("-"));
                    println!("    result: {}", c.result);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Held { action: None } => {
            let store = crate::store::Store::open(&manifest.store)?;
            for h in store.held(None)? {
                println!(
                    "#{} {} {}/{} record {} by {} [{}]: {}",
                    h.id,
                    h.held_at,
                    h.system,
                    h.entity,
                    h.local_id,
                    h.actor.as_deref().unwrap_or("-"),
                    h.status,
                    h.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Held {
            action: Some(action),
        } => {
            let store = crate::store::Store::open(&manifest.store)?;
            let (id, approve) = match action {
                HeldAction::Approve { id } => (*id, true),
                HeldAction::Reject { id } => (*id, false),
            };
            if store.decide_held(id, approve)? {
                let verb = if approve {
                    "approved: it is applied"
                } else {
                    "rejected: it is dropped"
                };
                println!("held change #{id} {verb} at the next `weir sync`");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: there is no held change #{id}; list them with `weir held`");
                Ok(ExitCode::from(1))
            }
        }
        Command::DeadLetters { action: None } => {
            let store = crate::store::Store::open(&manifest.store)?;
            for d in store.dead_letters(1000)? {
                let record = d
                    .local_id
                    .map(|id| format!(" record {id}"))
                    .unwrap_or_default();
                println!(
                    "#{} {} {}/{}{record}: {}",
                    d.id, d.created_at, d.system, d.entity, d.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters {
            action: Some(DeadLetterAction::Retry { id }),
        } => {
            let mut store = crate::store::Store::open(&manifest.store)?;
            match store.retry_dead_letter(*id)? {
                crate::store::Retry::Queued { system, entity } => {
                    println!("dead letter #{id} queued for {system}/{entity}: it is delivered at the next `weir sync`");
                    Ok(ExitCode::SUCCESS)
                }
                crate::store::Retry::FromSource { system } => {
                    eprintln!("error: dead letter #{id} is a bad record read from system '{system}'; correct it there and it is read again at the next sync");
                    Ok(ExitCode::from(1))
                }
                crate::store::Retry::Missing => {
                    eprintln!(
                        "error: there is no dead letter #{id}; list them with `weir dead-letters`"
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
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

async fn check(manifest: &Manifest, runtime: &Runtime) -> anyhow::Result<ExitCode> {
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
            .instantiate(
                &connector,
                system,
                engine::connector_state(&manifest.store, &system.name),
            )
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

async fn connectors(manifest: &Manifest, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for system in &manifest.systems {
        let connector = match runtime.load(&system.connector) {
            Ok(c) => c,
            Err(e) => {
                println!("{}: {e}", system.name);
                code = ExitCode::from(1);
                continue;
            }
        };
        let described = match runtime
            .instantiate(
                &connector,
                system,
                engine::connector_state(&manifest.store, &system.name),
            )
            .await
        {
            Ok(mut i) => i.describe().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match described {
            Ok(d) => println!(
                "{}: {} {} [{}] exports {} ({})\n  {}",
                system.name,
                d.name,
                d.version,
                connector.hash(),
                connector.exports(),
                system.connector.display(),
                d.summary
            ),
            Err(e) => {
                println!(
                    "{}: exports {} ({}); describe failed: {e}",
                    system.name,
                    connector.exports(),
                    system.connector.display()
                );
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
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

/// `weir runs`: the latest runs, newest first.
fn runs(manifest: &Manifest, limit: u32) -> anyhow::Result<ExitCode> {
    let store = crate::store::Store::open(&manifest.store)?;
    for r in store.runs(limit)? {
        println!(
            "run {} {} -> {} {}: {}{}",
            r.id,
            r.started_at,
            r.finished_at.as_deref().unwrap_or("-"),
            r.status,
            r.counts,
            r.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir records ENTITY ID`: the golden record, its links and its history.
fn records(
    manifest: &Manifest,
    entity: &str,
    id: &str,
    system: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if manifest.entity(entity).is_none() {
        anyhow::bail!("no entity '{entity}' in the manifest: give one of its [entities] names");
    }
    let store = crate::store::Store::open(&manifest.store)?;
    let global_id = match system {
        Some(system) => match store.global_id_of(entity, system, id)? {
            Some(g) => g,
            None => {
                eprintln!("error: weir knows no {entity} '{id}' in system '{system}'");
                return Ok(ExitCode::from(1));
            }
        },
        None => id.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("'{id}' is not a global id: give a number, or --system NAME to look up that system's id")
        })?,
    };
    let Some(golden) = store.golden(global_id)?.filter(|g| g.entity == entity) else {
        eprintln!("error: no {entity} with global id {global_id}");
        return Ok(ExitCode::from(1));
    };
    println!(
        "{entity} {global_id}{}{}",
        if golden.deleted { " (deleted)" } else { "" },
        golden
            .origin
            .as_deref()
            .map(|o| format!(", last taken from {o}"))
            .unwrap_or_default()
    );
    let data: serde_json::Value = serde_json::from_str(&golden.data).unwrap_or_default();
    println!(
        "{}",
        serde_json::to_string_pretty(&data).unwrap_or(golden.data.clone())
    );
    println!("links:");
    for l in store.links_of(global_id)? {
        println!("  {}: {} (since {})", l.system, l.local_id, l.updated_at);
    }
    println!("history:");
    for a in store.audit(Some(entity), None, Some(global_id), None, u32::MAX)? {
        println!(
            "  #{} {} run {} {} {} {}{}",
            a.id,
            a.at,
            a.run_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            a.system,
            a.operation,
            a.outcome,
            a.actor.map(|x| format!(" by {x}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(manifest: &Manifest) -> anyhow::Result<ExitCode> {
    let store = crate::store::Store::open(&manifest.store)?;
    println!(
        "store {} (schema {})",
        store.path().display(),
        store.schema_version()?
    );
    for system in &manifest.systems {
        for e in &system.entities {
            println!(
                "  {} {}: {} linked records",
                system.name,
                e.name,
                store.count_links(&e.name, &system.name)?
            );
        }
    }
    let runs = store.runs(5)?;
    if runs.is_empty() {
        println!("no runs yet");
    }
    for r in runs {
        println!(
            "run {} {} {}: {}{}",
            r.id,
            r.started_at,
            r.status,
            r.counts,
            r.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    println!("outbox: {} pending", store.outbox_pending()?);
    let polls = store.last_polls()?;
    let healths = store.webhook_health()?;
    for system in manifest.systems.iter().filter(|s| s.webhooks.is_some()) {
        let health = healths.iter().find(|h| h.system == system.name).cloned();
        let last = health
            .as_ref()
            .and_then(|h| h.last_webhook_at.clone())
            .unwrap_or_else(|| "never".into());
        match health.as_ref().and_then(|h| h.degraded_since.as_ref()) {
            None => println!("webhooks {}: healthy, last webhook {last}", system.name),
            Some(since) => println!(
                "webhooks {}: DEGRADED since {since} ({}), last webhook {last}; polled at its normal interval",
                system.name,
                health
                    .as_ref()
                    .and_then(|h| h.reason.as_deref())
                    .unwrap_or("-")
            ),
        }
    }
    for h in healths.iter().filter(|h| h.refused > 0) {
        let (at, why) = h.last_refusal.clone().unwrap_or_default();
        println!(
            "webhooks {}: {} request(s) refused, the last at {at}: {why}",
            h.system, h.refused
        );
    }
    for p in &polls {
        println!(
            "last poll {} {}: {}, {} new change(s){}",
            p.system,
            p.entity,
            p.at,
            p.fresh,
            if p.failed { ", failed" } else { "" }
        );
    }
    let held = store.held(None)?.len();
    if held > 0 {
        println!("held: {held} change(s) awaiting review (`weir held`)");
    }
    let parked = store.parked_count()?;
    if parked > 0 {
        println!("parked: {parked} change(s) waiting for a record they refer to");
    }
    let letters = store.dead_letters(10)?;
    if !letters.is_empty() {
        println!("latest dead letters:");
        for d in letters {
            let record = d
                .local_id
                .map(|id| format!(" record {id}"))
                .unwrap_or_default();
            println!(
                "  #{} {} {}/{}{record}: {}",
                d.id, d.created_at, d.system, d.entity, d.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
