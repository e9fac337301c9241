//! The command line. No business logic here: parse, call the library, print.
//! Each command is a file of [`commands`]; this file holds the clap
//! definitions and the dispatch.
//!
//! Exit codes: 0 success; 1 the command ran but something failed (a system
//! failed during a sync, a check found a problem); 2 bad usage, a bad manifest
//! or an error that stopped the command before it did anything.

mod commands;

use crate::manifest::{Manifest, ManifestErrors};
use crate::runtime::Runtime;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
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

// The argument structs below carry no doc comment of their own: the help
// text of a command is its variant's doc comment.

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the manifest, then describe and check every system's connector.
    Check,
    /// Run one sync pass: changes from every readable system, delivered to every writable one.
    Sync(SyncArgs),
    /// Run as a service: a pass at start-up, then passes as sources fall due
    /// (poll_every, schedule, webhook health) and whenever changes are pushed;
    /// serves webhooks, the publish API and manual refresh (see README).
    Run(RunArgs),
    /// Ask a running service to poll a system now (its publish_token authorises it).
    Refresh(RefreshArgs),
    /// List each system's connector: what it exports and its version.
    Connectors,
    /// Show the latest runs, linked records, the outbox and dead letters.
    Status,
    /// Show the audit log, oldest first; `export` writes it as JSON lines.
    Audit(AuditArgs),
    /// Undo a run: put every record it changed back as it was, in every system that takes writes.
    Rollback(RollbackArgs),
    /// List the latest runs with their figures.
    Runs(RunsArgs),
    /// Show one record: the golden record, its id in every system and its history.
    Records(RecordsArgs),
    /// Copy the central store to a new file with SQLite's online backup (safe while weir runs).
    Backup(BackupArgs),
    /// Replace the central store's content with a backup. Stop `weir run` first.
    Restore(RestoreArgs),
    /// Show recorded conflicts with both values.
    Conflicts(ConflictsArgs),
    /// List changes held for review (per-user limits), or decide on one.
    Held(HeldArgs),
    /// List records that a system refused, or retry one.
    DeadLetters(DeadLettersArgs),
    /// List ambiguous matches held for a decision (a record whose match key
    /// fits several others), or decide one.
    Matches(MatchesArgs),
    /// List golden records of an entity that share a match key.
    Duplicates(DuplicatesArgs),
    /// Merge two golden records that are one real-world record: one copy
    /// in every system, with the values of both. `weir rollback` undoes it.
    Merge(MergeArgs),
}

// `weir sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Records per page read and per batch written.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read every source in full (RESYNC) instead of only its changes;
    /// full reads also find records deleted at a source.
    #[arg(long)]
    pub full: bool,
    /// Deliver deletes even beyond an entity's max_delete_percent.
    #[arg(long)]
    pub allow_deletes: bool,
    /// Deliver to systems with a delivery window (deliver_between) now too.
    #[arg(long)]
    pub now: bool,
    /// Print what would be written, per system and entity with field
    /// differences, and write nothing (not even to the central store).
    #[arg(long)]
    pub dry_run: bool,
    /// When another weir process is syncing this store, wait for it to
    /// finish instead of stopping at once.
    #[arg(long)]
    pub wait: bool,
}

// `weir run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// When another weir process is syncing this store, wait for it to
    /// finish instead of stopping at once.
    #[arg(long)]
    pub wait: bool,
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8377")]
    pub listen: std::net::SocketAddr,
    /// Print only errors, not a line per pass.
    #[arg(short, long)]
    pub quiet: bool,
    /// Seconds between polls of sources that set neither poll_every nor schedule.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Records per page read and per batch written.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// The most pending writes a pass sends to one target and entity; a
    /// larger backlog goes on in the passes that follow at once, so that a
    /// target back from an outage does not hold up the others.
    #[arg(long, default_value_t = crate::service::PASS_ROWS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub pass_rows: u64,
}

// `weir refresh`.
#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// The system.
    pub system: String,
    /// Only this entity of it.
    pub entity: Option<String>,
    /// The service's address.
    #[arg(long, default_value = "http://127.0.0.1:8377")]
    pub daemon: String,
}

// `weir audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// `export [--output FILE]`: every matching row as one JSON object per line.
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Only this entity.
    #[arg(long, global = true)]
    pub entity: Option<String>,
    /// Only this system.
    #[arg(long, global = true)]
    pub system: Option<String>,
    /// Only this golden record (global id).
    #[arg(long)]
    pub id: Option<i64>,
    /// Only rows at or after this time (RFC 3339, for example 2026-01-31T00:00:00Z).
    #[arg(long, global = true)]
    pub since: Option<String>,
    /// At most this many rows (the latest).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print the record before and after each operation too.
    #[arg(short, long)]
    pub verbose: bool,
}

// `weir rollback`.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The run to undo (see `weir runs`).
    pub run: i64,
    /// When another weir process is syncing this store, wait for it to
    /// finish instead of stopping at once.
    #[arg(long)]
    pub wait: bool,
}

// `weir runs`.
#[derive(Args, Debug)]
pub struct RunsArgs {
    /// At most this many (the latest).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

// `weir records`.
#[derive(Args, Debug)]
pub struct RecordsArgs {
    /// The entity.
    pub entity: String,
    /// The golden record's global id, or with --system that system's id of it.
    pub id: String,
    /// Read ID as this system's id of the record.
    #[arg(long)]
    pub system: Option<String>,
}

// `weir backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The backup file to write (must not exist).
    pub path: PathBuf,
}

// `weir restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `weir backup`.
    pub path: PathBuf,
}

// `weir conflicts`.
#[derive(Args, Debug)]
pub struct ConflictsArgs {
    /// At most this many (the latest).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print both values and the result too.
    #[arg(short, long)]
    pub verbose: bool,
}

// `weir held`.
#[derive(Args, Debug)]
pub struct HeldArgs {
    /// `approve ID` or `reject ID`.
    #[command(subcommand)]
    pub action: Option<HeldAction>,
}

// `weir matches`.
#[derive(Args, Debug)]
pub struct MatchesArgs {
    /// `link ID CANDIDATE` or `new ID`.
    #[command(subcommand)]
    pub action: Option<MatchAction>,
}

/// A decision on a held match.
#[derive(Subcommand, Debug)]
pub enum MatchAction {
    /// Take the record for this candidate (a global id for a record read,
    /// a record id of the system for a record to create), at the next sync.
    Link {
        /// The held match's id (see `weir matches`).
        id: i64,
        /// One of the candidates it lists.
        candidate: String,
    },
    /// Take the record for none of the candidates: a record of its own, at
    /// the next sync.
    New {
        /// The held match's id (see `weir matches`).
        id: i64,
    },
}

// `weir duplicates`.
#[derive(Args, Debug)]
pub struct DuplicatesArgs {
    /// The entity.
    pub entity: String,
}

// `weir merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The entity.
    pub entity: String,
    /// A golden record (its global id, as `weir duplicates` lists them).
    pub first: i64,
    /// The other golden record.
    pub second: i64,
    /// The record that survives (one of the two; default: the first).
    #[arg(long)]
    pub keep: Option<i64>,
    /// When another weir process is syncing this store, wait for it to
    /// finish instead of stopping at once.
    #[arg(long)]
    pub wait: bool,
}

// `weir dead-letters`.
#[derive(Args, Debug)]
pub struct DeadLettersArgs {
    /// `retry ID` queues dead letter ID for delivery again at the next sync.
    #[command(subcommand)]
    pub action: Option<DeadLetterAction>,
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
    match runtime.block_on(dispatch(cli)) {
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

/// Loads the manifest and runs the command.
async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    use commands::*;
    let manifest = Manifest::load(&cli.manifest)?;
    for w in &manifest.warnings {
        eprintln!("warning: {w}");
    }
    let runtime = || Runtime::new(cache_dir(&cli)).context("starting the WebAssembly runtime");
    // Commands that run connectors check them first, before any store exists.
    let checked = || async {
        let runtime = runtime()?;
        crate::check::preflight::all(&manifest, &runtime).await?;
        anyhow::Ok(runtime)
    };
    match &cli.command {
        Command::Check => check::run(&manifest, &runtime()?).await,
        Command::Sync(a) => sync::run(&manifest, &checked().await?, a).await,
        Command::Rollback(a) => rollback::run(&manifest, &checked().await?, a).await,
        Command::Connectors => connectors::run(&manifest, &runtime()?).await,
        Command::Run(a) => {
            let runtime = checked().await?;
            run::run(manifest, runtime, a).await
        }
        Command::Refresh(a) => refresh::run(&manifest, a).await,
        Command::Status => status::run(&manifest),
        Command::Audit(a) => audit::run(&manifest, a),
        Command::Runs(a) => runs::run(&manifest, a),
        Command::Records(a) => records::run(&manifest, a),
        Command::Backup(a) => backup::backup(&manifest, a),
        Command::Restore(a) => backup::restore(&manifest, a),
        Command::Conflicts(a) => conflicts::run(&manifest, a),
        Command::Held(a) => held::run(&manifest, a),
        Command::DeadLetters(a) => dead_letters::run(&manifest, a),
        Command::Matches(a) => matches::run(&manifest, a),
        Command::Duplicates(a) => matches::duplicates(&manifest, a),
        Command::Merge(a) => merge::run(&manifest, &checked().await?, a).await,
    }
}
