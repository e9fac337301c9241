//! Side-by-side benchmark: a CSV file of contacts loaded into PostgreSQL by
//! sling, dlt and weir, in one run on one machine against one cluster.
//!
//! `pg-bench [--only sling,dlt,weir] [--keep] [COUNT...]` (default 100000
//! 1000000); `--keep` leaves the work folder (files, manifests, each tool's
//! output) in place and prints where it is.
//!
//! For each count N:
//! 1. generates N contacts into `contacts.csv` (deterministic);
//! 2. `full`: each tool loads the file into its own table of database `bench`
//!    (`public.sling_contacts`, `dlt.dlt_contacts`, `public.weir_contacts`);
//! 3. `1% incr`: rewrites the file with every 100th contact changed (a new
//!    phone, a later `updated_at`) and runs each tool's incremental load.
//!
//! After every step the tool's table is checked: N rows, and after the
//! incremental load the N/100 new phones. A tool that fails or leaves a wrong
//! table gets that in its row instead of figures; the run goes on.
//!
//! Figures: wall seconds of the tool's process, records/s (N / wall: every
//! step reads the whole file, the incremental one too), the process's peak
//! RSS (GNU time) and weir's wall time over the tool's. Before each step
//! PostgreSQL takes a checkpoint and the system writes out its dirty pages
//! (`sync`), so no tool pays for the previous one's writes or for the
//! generated file. The cluster keeps PostgreSQL's default (durable) settings.
//!
//! The peers come from `tests/systems/bench-peers.sh`, which this benchmark
//! runs first (a venv under `${WEIR_E2E_CACHE:-~/.cache/weir-e2e}/bench-peers`).
//! weir is `WEIR_BIN`, else the `weir` binary beside this one, built first with
//! `cargo build -p weir` in this binary's profile; its compiled connectors
//! are warmed by an unmeasured `weir check`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use weir_tests::{Postgres, Rng};

/// The password the peers send; the cluster trusts 127.0.0.1 and ignores it,
/// but dlt refuses credentials without one.
const PASSWORD: &str = "bench";
/// The database every tool loads into.
const DATABASE: &str = "bench";
/// The CSV header, in column order.
const HEADER: [&str; 10] = [
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "birth_date",
    "balance",
    "tags",
    "updated_at",
];
/// Every how many contacts the incremental step changes one.
const CHANGE_EVERY: u64 = 100;
/// The prefix of a changed phone number (generated ones start with `+1 `).
const NEW_PHONE_PREFIX: &str = "+44 20 7946 ";
/// Lines of a failed tool's output quoted in the report.
const ERROR_TAIL_LINES: usize = 8;

/// Has the system write every dirty page to disk (`sync`), so that
/// write-back of what came before does not slow the next step.
fn write_out_dirty_pages() -> Result<(), String> {
    match Command::new("sync").status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`sync` failed: {s}")),
        Err(e) => Err(format!("cannot run `sync`: {e}")),
    }
}

/// The tools compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    /// sling (Go), PyPI wheel `sling-linux-amd64`.
    Sling,
    /// dlt (Python), `tests/systems/dlt_load.py`.
    Dlt,
    /// weir with the `csv` and `sql` connectors.
    Weir,
}

impl Tool {
    /// Every tool, in the order they run.
    const ALL: [Tool; 3] = [Tool::Sling, Tool::Dlt, Tool::Weir];

    /// The name used on the command line and in the table.
    fn name(self) -> &'static str {
        match self {
            Tool::Sling => "sling",
            Tool::Dlt => "dlt",
            Tool::Weir => "weir",
        }
    }

    /// The table the tool loads into.
    fn table(self) -> &'static str {
        match self {
            Tool::Sling => "public.sling_contacts",
            Tool::Dlt => "dlt.dlt_contacts",
            Tool::Weir => "public.weir_contacts",
        }
    }
}

/// The two steps of a count.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Everything into an empty table.
    Full,
    /// The file with 1% of the contacts changed, loaded incrementally.
    Incremental,
}

impl Step {
    /// The label in the table.
    fn label(self) -> &'static str {
        match self {
            Step::Full => "full",
            Step::Incremental => "1% incr",
        }
    }
}

/// The command line.
struct Args {
    /// The tools to run.
    tools: Vec<Tool>,
    /// The counts of contacts.
    counts: Vec<u64>,
    /// Whether the work folder outlives the run.
    keep: bool,
}

/// What one tool did in one step.
struct Row {
    /// Contacts in the file.
    n: u64,
    /// The step.
    step: Step,
    /// The tool.
    tool: Tool,
    /// Wall seconds and peak RSS in KiB, or what went wrong (short).
    outcome: Result<(f64, u64), String>,
}

/// The external programs of the run.
struct Peers {
    /// The sling binary.
    sling: PathBuf,
    /// sling's home folder (`SLING_HOME_DIR`; else it writes `~/.sling`).
    sling_home: PathBuf,
    /// The venv's python (with dlt).
    python: PathBuf,
    /// `tests/systems/dlt_load.py`.
    dlt_script: PathBuf,
    /// The weir binary, or why there is none.
    weir: Result<PathBuf, String>,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pg-bench: {e}");
            eprintln!("usage: pg-bench [--only sling,dlt,weir] [--keep] [COUNT...]");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench(&args) {
        eprintln!("pg-bench: {e}");
        std::process::exit(1);
    }
}

/// Parses `[--only LIST] [--keep] [COUNT...]`.
fn parse_args() -> Result<Args, String> {
    let mut tools = Tool::ALL.to_vec();
    let mut counts = Vec::new();
    let mut keep = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--keep" {
            keep = true;
            continue;
        }
        let only = match arg.strip_prefix("--only=") {
            Some(list) => Some(list.to_owned()),
            None if arg == "--only" => Some(
                it.next()
                    .ok_or("--only needs a list, e.g. --only sling,dlt")?,
            ),
            None => None,
        };
        if let Some(list) = only {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            if let Some(unknown) = names
                .iter()
                .find(|n| !Tool::ALL.iter().any(|t| t.name() == **n))
            {
                return Err(format!(
                    "--only: unknown tool '{unknown}'; the tools are sling, dlt and weir"
                ));
            }
            // Always in the same order, whatever the order of the list.
            tools = Tool::ALL
                .into_iter()
                .filter(|t| names.contains(&t.name()))
                .collect();
            continue;
        }
        let n: u64 = arg
            .parse()
            .map_err(|_| format!("'{arg}' is not a count of contacts (a whole number)"))?;
        if n < CHANGE_EVERY {
            return Err(format!("{n} contacts are too few: the incremental step changes every {CHANGE_EVERY}th, so give at least {CHANGE_EVERY}"));
        }
        counts.push(n);
    }
    if counts.is_empty() {
        counts = vec![100_000, 1_000_000];
    }
    Ok(Args {
        tools,
        counts,
        keep,
    })
}

/// The whole run: peers, cluster, every count, the table.
fn bench(args: &Args) -> Result<(), String> {
    let work = tempfile::Builder::new()
        .prefix("weir-pg-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp folder for the benchmark: {e}"))?;
    let peers = peers(&args.tools, work.path())?;
    let pg = Postgres::start_with(&[])?;
    pg.create_database(DATABASE)?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &n in &args.counts {
        let dir = work.path().join(n.to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_contacts(&dir.join("contacts.csv"), n, false)?;
        reset_tables(&pg)?;
        for step in [Step::Full, Step::Incremental] {
            if step == Step::Incremental {
                write_contacts(&dir.join("contacts.csv"), n, true)?;
            }
            for &tool in &args.tools {
                let full_failed = step == Step::Incremental
                    && rows
                        .iter()
                        .any(|r: &Row| r.n == n && r.tool == tool && r.outcome.is_err());
                let outcome = if full_failed {
                    Err("skipped: the full load failed".to_owned())
                } else {
                    pg.psql(DATABASE, "CHECKPOINT;")?;
                    write_out_dirty_pages()?;
                    run_tool(tool, step, &peers, &pg, &dir)
                        .and_then(|m| verify(&pg, tool, step, n).map(|()| m))
                };
                if let Err(e) = &outcome {
                    if !full_failed {
                        notes.push(format!("{n} {} {}: {e}", step.label(), tool.name()));
                    }
                }
                let row = Row {
                    n,
                    step,
                    tool,
                    outcome: outcome.map_err(|e| short(&e)),
                };
                eprintln!("{}", row_line(&row, None));
                rows.push(row);
            }
        }
    }
    print_report(args, &rows, &notes, &peers, &pg);
    if args.keep {
        println!("\nwork folder kept: {}", work.keep().display());
    }
    Ok(())
}

/// Installs (or finds) the peers and, when weir is compared, the weir binary.
fn peers(tools: &[Tool], work: &Path) -> Result<Peers, String> {
    let root = weir_tests::repo_root();
    let cache = match std::env::var_os("WEIR_E2E_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or("HOME is not set: set WEIR_E2E_CACHE to a cache folder")?,
        )
        .join(".cache/weir-e2e"),
    }
    .join("bench-peers");
    let script = root.join("tests/systems/bench-peers.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&cache)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "{} {} failed ({status}); see its output above",
            script.display(),
            cache.display()
        ));
    }
    let venv = cache.join("venv");
    let sling = std::fs::read_dir(venv.join("lib"))
        .map_err(|e| format!("cannot read {}: {e}", venv.join("lib").display()))?
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/sling_linux_amd64/bin/sling-linux-amd64")
        })
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no sling binary in {}: remove that folder and run again",
                venv.display()
            )
        })?;
    let weir = if tools.contains(&Tool::Weir) {
        weir_binary()
    } else {
        Err("not compared".to_owned())
    };
    Ok(Peers {
        sling,
        sling_home: work.join("sling-home"),
        python: venv.join("bin/python"),
        dlt_script: root.join("tests/systems/dlt_load.py"),
        weir,
    })
}

/// `WEIR_BIN`, else the `weir` binary beside this one after building it
/// (`cargo build -p weir`, in this binary's profile).
fn weir_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WEIR_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let dir = exe.parent().ok_or("this binary has no folder")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "weir", "--bin", "weir"])
        .current_dir(weir_tests::repo_root());
    if dir.file_name().is_some_and(|d| d == "release") {
        build.arg("--release");
    }
    eprintln!("pg-bench: building weir ({:?})", build);
    let out = build
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p weir failed; set WEIR_BIN to a weir binary or fix the build:\n{}",
            tail(&String::from_utf8_lossy(&out.stderr), ERROR_TAIL_LINES)
        ));
    }
    Ok(dir.join("weir"))
}

/// Drops every tool's table and creates weir's (weir writes into an existing table).
fn reset_tables(pg: &Postgres) -> Result<(), String> {
    pg.psql(
        DATABASE,
        "DROP TABLE IF EXISTS public.sling_contacts;
         DROP SCHEMA IF EXISTS dlt CASCADE;
         DROP TABLE IF EXISTS public.weir_contacts;
         CREATE TABLE public.weir_contacts (
             id bigint PRIMARY KEY,
             first_name text,
             last_name text,
             email text,
             phone text,
             company text,
             birth_date date,
             balance numeric(14,2),
             tags jsonb,
             updated_at timestamptz
         );",
    )
    .map(|_| ())
}

/// Runs one tool's step as a child process under GNU time: wall seconds and
/// peak RSS in KiB, or the end of its output.
fn run_tool(
    tool: Tool,
    step: Step,
    peers: &Peers,
    pg: &Postgres,
    dir: &Path,
) -> Result<(f64, u64), String> {
    let csv = dir.join("contacts.csv");
    let pg_url = format!(
        "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
        pg.port()
    );
    let tool_dir = dir.join(tool.name());
    std::fs::create_dir_all(&tool_dir)
        .map_err(|e| format!("cannot create {}: {e}", tool_dir.display()))?;
    let mut args: Vec<String> = Vec::new();
    let program = match tool {
        Tool::Sling => {
            args.extend(["run", "--src-stream"].map(String::from));
            args.push(format!("file://{}", csv.display()));
            args.extend(
                [
                    "--tgt-conn",
                    "PG",
                    "--tgt-object",
                    "public.sling_contacts",
                    "--mode",
                ]
                .map(String::from),
            );
            match step {
                Step::Full => args.push("full-refresh".into()),
                Step::Incremental => args.extend(
                    [
                        "incremental",
                        "--primary-key",
                        "id",
                        "--update-key",
                        "updated_at",
                    ]
                    .map(String::from),
                ),
            }
            peers.sling.clone()
        }
        Tool::Dlt => {
            args.push(peers.dlt_script.display().to_string());
            args.push(match step {
                Step::Full => "full".into(),
                Step::Incremental => "incremental".into(),
            });
            args.push(csv.display().to_string());
            args.push(tool_dir.join("pipelines").display().to_string());
            peers.python.clone()
        }
        Tool::Weir => {
            let weir = peers.weir.clone()?;
            let manifest = weir_manifest(&tool_dir, dir, pg)?;
            if step == Step::Full {
                warm_weir(&weir, &manifest);
            }
            args.extend([
                "--manifest".to_owned(),
                manifest.display().to_string(),
                "sync".into(),
            ]);
            weir
        }
    };
    let label = format!(
        "{}-{}",
        tool.name(),
        if step == Step::Full { "full" } else { "incr" }
    );
    let output = tool_dir.join(format!("{label}.log"));
    let times = tool_dir.join(format!("{label}.time"));
    let log = std::fs::File::create(&output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", output.display()))?;
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(&times)
        .arg(&program)
        .args(&args)
        .current_dir(&tool_dir)
        .env("PG", format!("{pg_url}?sslmode=disable"))
        .env("SLING_DISABLE_TELEMETRY", "true")
        .env("SLING_HOME_DIR", &peers.sling_home)
        .env("DESTINATION__POSTGRES__CREDENTIALS", &pg_url)
        .env("RUNTIME__DLTHUB_TELEMETRY", "false")
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .env_remove("WEIR_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| format!("cannot run /usr/bin/time (Debian package `time`): {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "failed ({status}); last lines of {}:\n{}",
            output.display(),
            tail(&text, ERROR_TAIL_LINES)
        ));
    }
    // GNU time may write a line of its own before the format's.
    let rss = std::fs::read_to_string(&times)
        .ok()
        .and_then(|t| {
            t.lines()
                .last()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| format!("no peak RSS in {}", times.display()))?;
    Ok((wall, rss))
}

/// Writes weir's manifest into `tool_dir`: the CSV folder `data_dir` read,
/// table `weir_contacts` of the cluster written.
fn weir_manifest(tool_dir: &Path, data_dir: &Path, pg: &Postgres) -> Result<PathBuf, String> {
    let csv = weir_tests::toml_path(&weir_tests::connector("csv"));
    let sql = weir_tests::toml_path(&weir_tests::connector("sql"));
    let data = weir_tests::toml_path(data_dir);
    let url = pg.url(DATABASE);
    let text = format!(
        r#"[store]
path = "weir-store.db"
[entities.contacts]
primary_key = "id"
# The CSV's ids are the table's ids too (weir_contacts.id has no default).
shared_key = true
[systems.file]
connector = {csv}
config = {{ directory = "data" }}
directories = {{ data = {data} }}
[systems.file.entities.contacts]
direction = "read"
# Like sling's --update-key: the incremental step reads the rows updated since.
settings = {{ file = "contacts.csv", updated_at = "updated_at" }}
[systems.pg]
connector = {sql}
config = {{ database = "{DATABASE}" }}
databases = {{ {DATABASE} = {{ url = "{url}" }} }}
[systems.pg.entities.contacts]
direction = "write"
settings = {{ table = "weir_contacts", updated_at = "updated_at" }}
"#
    );
    let path = tool_dir.join("weir.toml");
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Compiles weir's connectors into the shared cache, unmeasured (`weir check`).
fn warm_weir(weir: &Path, manifest: &Path) {
    let out = Command::new(weir)
        .arg("--manifest")
        .arg(manifest)
        .arg("check")
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .env_remove("WEIR_LOG")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "pg-bench: weir check failed (the sync will show why):\n{}",
            tail(&String::from_utf8_lossy(&o.stderr), ERROR_TAIL_LINES)
        ),
        Err(e) => eprintln!("pg-bench: cannot run {}: {e}", weir.display()),
    }
}

/// Checks the tool's table: N rows, and after the incremental step the N/100
/// new phones.
fn verify(pg: &Postgres, tool: Tool, step: Step, n: u64) -> Result<(), String> {
    let count = |sql: String| -> Result<u64, String> {
        let out = pg.psql(DATABASE, &sql)?;
        out.trim()
            .parse()
            .map_err(|_| format!("'{sql}' returned '{}'", out.trim()))
    };
    let rows = count(format!("SELECT count(*) FROM {};", tool.table()))?;
    if rows != n {
        return Err(format!("rows {rows} != {n}"));
    }
    if step == Step::Incremental {
        let changed = count(format!(
            "SELECT count(*) FROM {} WHERE phone LIKE '{NEW_PHONE_PREFIX}%';",
            tool.table()
        ))?;
        let expected = n / CHANGE_EVERY;
        if changed != expected {
            return Err(format!("changed {changed} != {expected}"));
        }
    }
    Ok(())
}

/// Given names of the generated contacts.
const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Radia", "Tony",
];
/// Family names of the generated contacts.
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "Perlman", "Hoare",
];
/// Companies of the generated contacts.
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Industries",
];
/// Tags of the generated contacts.
const TAGS: &[&str] = &["vip", "b2b", "newsletter", "trial", "partner", "churn-risk"];
/// 2025-01-01T00:00:00Z: generated contacts were updated in the year after it.
const UPDATED_FROM: u64 = 1_735_689_600;
/// 2026-01-15T10:00:00Z: changed contacts were updated in the hour after it.
const CHANGED_AT: u64 = 1_768_471_200;

/// Writes `n` contacts to `path` (header first); with `changed`, every
/// 100th contact has a new phone and a later `updated_at`. The same `n`
/// always gives the same file.
fn write_contacts(path: &Path, n: u64, changed: bool) -> Result<(), String> {
    let fail = |e: csv::Error| format!("cannot write {}: {e}", path.display());
    let mut w = csv::Writer::from_path(path).map_err(fail)?;
    w.write_record(HEADER).map_err(fail)?;
    let mut rng = Rng::new(7);
    let mut tags = Vec::with_capacity(3);
    for id in 1..=n {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let email = format!(
            "{}.{}{id}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let mut phone = format!(
            "+1 555 {:03} {:04}",
            rng.next_u64() % 1000,
            rng.next_u64() % 10_000
        );
        let company = rng.pick(COMPANIES);
        let birth_date = format!(
            "{}-{:02}-{:02}",
            1950 + rng.next_u64() % 56,
            1 + rng.next_u64() % 12,
            1 + rng.next_u64() % 28
        );
        let cents = (rng.next_u64() % 2_000_000) as i64 - 500_000;
        let balance = format!(
            "{}{}.{:02}",
            if cents < 0 { "-" } else { "" },
            cents.abs() / 100,
            cents.abs() % 100
        );
        tags.clear();
        let (count, first_tag) = (rng.next_u64() % 4, rng.next_u64());
        for k in 0..count {
            tags.push(TAGS[((first_tag + k) % TAGS.len() as u64) as usize]);
        }
        let tags_json = serde_json::to_string(&tags).expect("strings serialize");
        let mut updated_at = UPDATED_FROM + rng.next_u64() % (365 * 86_400);
        if changed && id % CHANGE_EVERY == 0 {
            phone = format!("{NEW_PHONE_PREFIX}{:04}", id % 10_000);
            updated_at = CHANGED_AT + id % 3600;
        }
        w.write_record([
            id.to_string().as_str(),
            first,
            last,
            &email,
            &phone,
            company,
            &birth_date,
            &balance,
            &tags_json,
            &rfc3339(updated_at),
        ])
        .map_err(fail)?;
    }
    w.flush()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A failure cut to fit a table cell: its first line, at most 40 characters.
fn short(e: &str) -> String {
    let line = e.lines().next().unwrap_or_default();
    if line.chars().count() > 40 {
        format!("{}…", line.chars().take(39).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// One line of the table; `weir_wall` is weir's wall time for the same count
/// and step, if it has one.
fn row_line(row: &Row, weir_wall: Option<f64>) -> String {
    let head = format!(
        "{:>9}  {:<8} {:<6}",
        row.n,
        row.step.label(),
        row.tool.name()
    );
    match &row.outcome {
        Ok((wall, rss)) => {
            let ratio = weir_wall.map_or("-".to_owned(), |w| format!("{:.2}", w / wall));
            format!(
                "{head} {wall:>9.2} {:>10.0} {:>13.1} {ratio:>10}",
                row.n as f64 / wall,
                *rss as f64 / 1024.0
            )
        }
        Err(e) => format!("{head} {e}"),
    }
}

/// Prints the versions, the table and the notes of failures.
fn print_report(args: &Args, rows: &[Row], notes: &[String], peers: &Peers, pg: &Postgres) {
    let version = |program: &Path, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .env("SLING_DISABLE_TELEMETRY", "true")
            .env("SLING_HOME_DIR", &peers.sling_home)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nPostgreSQL {} (default settings), one cluster for every tool",
        pg.psql(DATABASE, "SHOW server_version;")
            .unwrap_or_default()
            .trim()
    );
    if args.tools.contains(&Tool::Sling) {
        let v = version(&peers.sling, &["--version"]);
        let _ = writeln!(out, "sling {}", v.trim_start_matches("Version: "));
    }
    if args.tools.contains(&Tool::Dlt) {
        let _ = writeln!(
            out,
            "dlt {}",
            version(&peers.python, &["-c", "import dlt; print(dlt.__version__)"])
        );
    }
    if let (true, Ok(weir)) = (args.tools.contains(&Tool::Weir), &peers.weir) {
        let v = version(weir, &["--version"]);
        let _ = writeln!(out, "weir {}", v.trim_start_matches("weir "));
    }
    let _ = writeln!(
        out,
        "\n{:>9}  {:<8} {:<6} {:>9} {:>10} {:>13} {:>10}",
        "N", "step", "tool", "wall s", "records/s", "peak RSS MiB", "weir/tool"
    );
    for row in rows {
        let weir_wall = rows
            .iter()
            .find(|w| w.tool == Tool::Weir && w.n == row.n && w.step == row.step)
            .and_then(|w| w.outcome.as_ref().ok())
            .map(|(wall, _)| *wall);
        let _ = writeln!(out, "{}", row_line(row, weir_wall));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
        if !args.keep {
            let _ = writeln!(out, "(the work folder goes at exit; --keep keeps it)");
        }
    }
    print!("{out}");
}
