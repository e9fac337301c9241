//! Running the weir command line and reading what it prints: the summary
//! line of a sync, the audit log, conflicts and the outbox.

use std::path::Path;
use std::process::{Command, Output};

/// The outcome of running weir.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The outcome of a finished process.
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The weir binary `bin` with `--manifest MANIFEST` and `args`, the compile
/// cache shared by all tests, and `WEIR_LOG` unset: to be run as it is or
/// given more (environment variables, pipes).
pub fn weir_command(bin: &str, manifest: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--manifest")
        .arg(manifest)
        .args(args)
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .env_remove("WEIR_LOG");
    cmd
}

/// Runs the weir binary `bin` with `args` against `manifest`, with the
/// compile cache shared by all tests.
pub fn weir(bin: &str, manifest: &Path, args: &[&str]) -> Run {
    weir_env(bin, manifest, args, &[])
}

/// Runs weir like [`weir`], with extra environment variables (for example the
/// fault-injection switches). A run killed by a signal has code -1.
pub fn weir_env(bin: &str, manifest: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = weir_command(bin, manifest, args)
        .envs(envs.iter().copied())
        .output()
        .expect("running weir");
    Run::of(out)
}

/// The counts of a `weir sync` summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub run: u64,
    pub read: u64,
    pub written: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub echoes: u64,
    pub conflicts: u64,
    pub failed: u64,
}

/// Parses `run {id}: {read} read, {written} written, {deleted} deleted,
/// {unchanged} unchanged, {echoes} echoes, {conflicts} conflicts, {failed} failed`.
pub fn parse_summary(line: &str) -> Option<Summary> {
    let (id, counts) = line.trim().strip_prefix("run ")?.split_once(": ")?;
    let labels = [
        "read",
        "written",
        "deleted",
        "unchanged",
        "echoes",
        "conflicts",
        "failed",
    ];
    let parts: Vec<&str> = counts.split(", ").collect();
    if parts.len() != labels.len() {
        return None;
    }
    let mut n = [0u64; 7];
    for (slot, (part, label)) in n.iter_mut().zip(parts.iter().zip(labels)) {
        let (number, name) = part.split_once(' ')?;
        if name != label {
            return None;
        }
        *slot = number.parse().ok()?;
    }
    Some(Summary {
        run: id.parse().ok()?,
        read: n[0],
        written: n[1],
        deleted: n[2],
        unchanged: n[3],
        echoes: n[4],
        conflicts: n[5],
        failed: n[6],
    })
}

/// The summary of a sync run, which must be the only line it printed.
pub fn summary(run: &Run) -> Summary {
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "`weir sync` prints exactly one summary line: {run:?}"
    );
    parse_summary(lines[0])
        .unwrap_or_else(|| panic!("not a sync summary line: {:?}\n{run:?}", lines[0]))
}

/// One line of `weir audit`.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// The run that wrote the row (`-` outside a run).
    pub run: Option<u64>,
    pub system: String,
    pub entity: String,
    pub global: String,
    pub local: String,
    pub op: String,
    pub outcome: String,
}

const OPERATIONS: [&str; 6] = [
    "read:create",
    "read:update",
    "read:delete",
    "write:create",
    "write:update",
    "write:delete",
];
const OUTCOMES: [&str; 5] = ["ok", "echo", "conflict", "rejected", "failed"];

/// Parses `#{id} {time} run {run} {system} {entity} {global_id} {local_id or -}
/// {operation} {outcome}`, from the right so that the time may hold spaces.
pub fn parse_audit(line: &str) -> Option<AuditRow> {
    let t: Vec<&str> = line.split_whitespace().collect();
    let n = t.len();
    if n < 10 || !t[0].starts_with('#') || t[n - 8] != "run" {
        return None;
    }
    let (op, outcome) = (t[n - 2], t[n - 1]);
    if !OPERATIONS.contains(&op) || !OUTCOMES.contains(&outcome) {
        return None;
    }
    Some(AuditRow {
        run: match t[n - 7] {
            "-" => None,
            r => Some(r.parse().ok()?),
        },
        system: t[n - 6].to_string(),
        entity: t[n - 5].to_string(),
        global: t[n - 4].to_string(),
        local: t[n - 3].to_string(),
        op: op.to_string(),
        outcome: outcome.to_string(),
    })
}

/// Every line of a finished `weir` command that is not blank nor indented
/// (detail lines), parsed by `parse`; the command must have succeeded and
/// each line parse.
fn listed<T>(run: &Run, what: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(char::is_whitespace))
        .map(|l| parse(l).unwrap_or_else(|| panic!("not {what} line: {l:?}\n{run:?}")))
        .collect()
}

/// The arguments of `weir audit` that list every row matching `filters`
/// (`--system S`, `--entity E`).
pub fn audit_args<'a>(filters: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["audit"];
    args.extend_from_slice(filters);
    args.extend_from_slice(&["--limit", "1000000"]);
    args
}

/// The rows a finished `weir audit` run (see [`audit_args`]) printed.
pub fn audit_rows(run: &Run) -> Vec<AuditRow> {
    listed(run, "an audit", parse_audit)
}

/// Every audit row matching the filters (`--system S`, `--entity E`).
pub fn audit(bin: &str, m: &Path, filters: &[&str]) -> Vec<AuditRow> {
    audit_rows(&crate::weir(bin, m, &audit_args(filters)))
}

/// How many audit rows have this operation and outcome.
pub fn audited(rows: &[AuditRow], op: &str, outcome: &str) -> usize {
    rows.iter()
        .filter(|r| r.op == op && r.outcome == outcome)
        .count()
}

/// One line of `weir conflicts`.
#[derive(Debug, Clone)]
pub struct ConflictRow {
    pub entity: String,
    pub global: String,
    pub system: String,
    pub other: String,
    pub winner: String,
    pub policy: String,
}

/// Parses `#{id} {time} {entity} {global_id}: {system} vs {other}: {winner} wins ({policy})`.
pub fn parse_conflict(line: &str) -> Option<ConflictRow> {
    let mut parts = line.trim().rsplitn(3, ": ");
    let (verdict, pair, head) = (parts.next()?, parts.next()?, parts.next()?);
    let head: Vec<&str> = head.split_whitespace().collect();
    if head.len() < 4 || !head[0].starts_with('#') {
        return None;
    }
    let (system, other) = pair.split_once(" vs ")?;
    let (winner, policy) = verdict.split_once(" wins (")?;
    Some(ConflictRow {
        entity: head[head.len() - 2].to_string(),
        global: head[head.len() - 1].to_string(),
        system: system.to_string(),
        other: other.to_string(),
        winner: winner.to_string(),
        policy: policy.strip_suffix(')')?.to_string(),
    })
}

/// Every recorded conflict (indented detail lines, such as the values, are skipped).
pub fn conflicts(bin: &str, m: &Path) -> Vec<ConflictRow> {
    listed(
        &crate::weir(bin, m, &["conflicts"]),
        "a conflict",
        parse_conflict,
    )
}

/// The `outbox: {n} pending` line of `weir status`.
pub fn outbox_pending(bin: &str, m: &Path) -> u64 {
    let run = crate::weir(bin, m, &["status"]);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("outbox: ")?
                .strip_suffix(" pending")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `outbox: N pending` line in `weir status`: {run:?}"))
}
