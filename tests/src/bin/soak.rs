//! Soak: a `weir run` child process under a paced load of webhooks and
//! publishes, with one of its two targets cut off for a while. Afterwards
//! every accepted change must be in both targets exactly once, with its
//! latest value. Not a CI test: `tests/soak.sh` builds and runs it.
//!
//! `soak WEIR [SECONDS] [RATE] [OUTAGE]` (defaults: 600 s at 1000 events/s,
//! PostgreSQL stopped for 180 s from a third of the run on). Sources: `app`
//! (webhooks through the `hooks` connector) takes the even events, `api`
//! (the publish API) the odd ones; one event in five updates the record
//! created 500 events earlier instead of creating one. Targets: a SQLite
//! file and a PostgreSQL database, whose tables have no unique key on the
//! record's reference, so that a duplicate would show.
//!
//! Printed: a timeline every 10 s (events accepted, rows in each target,
//! weir's resident memory), then the totals: events sent, accepted and
//! refused by status, acknowledgement latency, peak RSS, how long the
//! backlog took to drain after the load ended, and the check of both
//! targets. Exits 1 when a target misses, repeats or holds a stale change.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_tests::{entity, write_manifest, Postgres, System};

type Error = Box<dyn std::error::Error>;

const SECRET: &str = "soak-s3cret";
const TOKEN: &str = "soak-publish-t0ken";
/// Sender threads.
const THREADS: usize = 8;
/// An update changes the record created this many events earlier.
const UPDATE_LAG: usize = 500;
/// How long the backlog may take to drain after the load.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);
/// Seconds between two lines of the timeline.
const TIMELINE_SECS: u64 = 10;

/// What the run is asked to do.
struct Plan {
    weir: PathBuf,
    seconds: u64,
    rate: u64,
    outage: u64,
}

/// What the senders saw: the latest accepted value of every record (its
/// event number plus one; 0 while none was accepted), refusals by status,
/// and acknowledgement latencies in microseconds.
struct Accepted {
    latest: Vec<AtomicU64>,
    accepted: AtomicUsize,
    refused: Mutex<HashMap<String, usize>>,
    latency_us: Mutex<Vec<u64>>,
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = Plan {
        weir: PathBuf::from(
            args.first()
                .ok_or("usage: soak WEIR [SECONDS] [RATE] [OUTAGE]")?,
        ),
        seconds: args.get(1).map_or(Ok(600), |a| a.parse())?,
        rate: args.get(2).map_or(Ok(1000), |a| a.parse())?,
        outage: args.get(3).map_or(Ok(180), |a| a.parse())?,
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let pg = Postgres::start()?;
    pg.create_database("soak")?;
    pg.psql(
        "soak",
        "CREATE TABLE events (id bigserial PRIMARY KEY, ref text NOT NULL, n bigint, src text);",
    )?;
    rusqlite::Connection::open(d.join("sink.db"))?.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ref TEXT NOT NULL, n INTEGER, src TEXT);",
    )?;
    let manifest = write_manifest(d, &manifest_text(&pg));
    let mut weir = start_weir(&plan.weir, &manifest, d)?;
    let total = (plan.seconds * plan.rate) as usize;
    let seen = Arc::new(Accepted {
        latest: (0..total).map(|_| AtomicU64::new(0)).collect(),
        accepted: AtomicUsize::new(0),
        refused: Mutex::new(HashMap::new()),
        latency_us: Mutex::new(Vec::new()),
    });
    println!(
        "soak: {} s at {}/s, PostgreSQL stopped for {} s from {} s on; weir pid {}",
        plan.seconds,
        plan.rate,
        plan.outage,
        plan.seconds / 3,
        weir.child.id()
    );
    let start = Instant::now();
    let senders = send_all(&weir.base, total, plan.rate, seen.clone());
    let lite = d.join("sink.db");
    let targets = Targets {
        lite: &lite,
        pg: &pg,
    };
    timeline(&targets, &mut weir, &seen, &plan, start, || {
        senders.iter().all(|h| h.is_finished())
    })?;
    for h in senders {
        h.join().map_err(|_| "a sender thread panicked")??;
    }
    let load_end = start.elapsed();
    let expected = expected(&seen);
    let drained = drain(&targets, &expected, &weir);
    let peak = memory_kib(weir.child.id(), "VmHWM").unwrap_or(0);
    let status = Command::new(&plan.weir)
        .args(["--manifest", manifest.to_str().ok_or("path")?, "status"])
        .env("WEIR_TEST_SOAK_TOKEN", TOKEN)
        .output()?;
    weir.stop();
    report(&seen, load_end, peak, drained);
    println!("weir status:\n{}", String::from_utf8_lossy(&status.stdout));
    let mut bad = 0;
    for (name, rows) in [("sqlite", lite_rows(&lite)?), ("postgresql", pg_rows(&pg)?)] {
        bad += check(name, &rows, &expected);
    }
    if bad > 0 {
        return Err(format!(
            "{bad} problem(s) in the targets; the store and logs are in {}",
            dir.keep().display()
        )
        .into());
    }
    println!("ok: every accepted change is in both targets exactly once, with its latest value");
    Ok(())
}

/// The manifest: two sources (webhooks, publishes) and two targets.
fn manifest_text(pg: &Postgres) -> String {
    let app = System::new("app", "hooks", &format!(r#"secret = "{SECRET}""#))
        .entity("events", &[r#"direction = "read""#]);
    let api = System::new("api", "hooks", r#"secret = "unused""#)
        .line(r#"publish_token = "${WEIR_TEST_SOAK_TOKEN}""#)
        .entity("events", &[r#"direction = "read""#]);
    let target = |system: System| {
        system.entity(
            "events",
            &[
                r#"direction = "write""#,
                r#"primary_key = "id""#,
                r#"settings = { table = "events" }"#,
            ],
        )
    };
    let lite = target(System::sqlite("lite", "lite", "sink.db"));
    let pgsys = target(System::sql("pg", "pg", &format!("\"{}\"", pg.url("soak"))));
    format!(
        "[store]\npath = \"weir.db\"\n{}{app}{api}{lite}{pgsys}",
        entity("events", "key", &[])
    )
}

/// The `weir run` child: its process, its base URL and its log file.
struct Weir {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Weir {
    /// Stops weir with SIGTERM and waits for it.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `weir run` on a free port; its standard error goes to `log`, its
/// pass lines are read and dropped once it said where it listens.
fn start_weir(bin: &Path, manifest: &Path, dir: &Path) -> Result<Weir, Error> {
    let log = dir.join("weir.log");
    let mut child = Command::new(bin)
        .args(["--manifest", manifest.to_str().ok_or("path")?])
        .args(["run", "--listen", "127.0.0.1:0", "--interval", "3600"])
        .env("WEIR_TEST_SOAK_TOKEN", TOKEN)
        .env(
            "WEIR_CACHE_DIR",
            std::env::temp_dir().join("weir-soak-cache"),
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
    let first = lines.next().ok_or("weir printed nothing")??;
    let port = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| format!("weir did not say where it listens: {first}"))?;
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Ok(Weir {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The request of event `i`: even events are webhooks of `app`, odd ones
/// publishes to `api`; one in five (from the 500th on) updates the record
/// of event `i - 500` (same source, same parity) when that one was
/// accepted. Returns the record's number, the path, the headers and body.
fn request_of(
    i: usize,
    seen: &Accepted,
) -> (usize, &'static str, [(&'static str, String); 1], String) {
    let update =
        i >= UPDATE_LAG && i % 5 == 3 && seen.latest[i - UPDATE_LAG].load(Ordering::Acquire) > 0;
    let record = if update { i - UPDATE_LAG } else { i };
    let key = format!("r-{record}");
    if i.is_multiple_of(2) {
        let event = if update { "update" } else { "create" };
        let body = format!(
            r#"{{"event": "events.items.{event}", "key": "{key}", "payload": {{"ref": "{key}", "n": {i}, "src": "app"}}}}"#
        );
        (
            record,
            "/hooks/app",
            [("x-sync-secret", SECRET.to_string())],
            body,
        )
    } else {
        let body = format!(
            r#"[{{"id": "{key}", "op": "upsert", "data": {{"ref": "{key}", "n": {i}, "src": "api"}}}}]"#
        );
        (
            record,
            "/publish/api/events",
            [("authorization", format!("Bearer {TOKEN}"))],
            body,
        )
    }
}

/// Sends events `0..total` from [`THREADS`] threads at `rate` per second.
fn send_all(
    base: &str,
    total: usize,
    rate: u64,
    seen: Arc<Accepted>,
) -> Vec<std::thread::JoinHandle<Result<(), String>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    (0..THREADS)
        .map(|_| {
            let (next, seen, base) = (next.clone(), seen.clone(), base.to_string());
            std::thread::spawn(move || {
                let agent = agent();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        seen.latency_us
                            .lock()
                            .map_err(|e| e.to_string())?
                            .extend(latencies);
                        return Ok(());
                    }
                    let due = start + Duration::from_micros(i as u64 * 1_000_000 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (record, path, [(name, value)], body) = request_of(i, &seen);
                    let sent = Instant::now();
                    let answer = agent
                        .post(format!("{base}{path}"))
                        .header(name, value)
                        .content_type("application/json")
                        .send(&body);
                    latencies.push(sent.elapsed().as_micros() as u64);
                    let status = match answer {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(e) => format!("transport error: {e}"),
                    };
                    if status == "200" || status == "202" {
                        seen.latest[record].store(i as u64 + 1, Ordering::Release);
                        seen.accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        *seen
                            .refused
                            .lock()
                            .map_err(|e| e.to_string())?
                            .entry(status)
                            .or_default() += 1;
                    }
                }
            })
        })
        .collect()
}

/// The two targets, read by the timeline and the final check.
struct Targets<'a> {
    lite: &'a Path,
    pg: &'a Postgres,
}

impl Targets<'_> {
    /// Rows and the sum of `n` in the SQLite target.
    fn lite_count(&self) -> Result<(i64, i64), Error> {
        let conn = rusqlite::Connection::open(self.lite)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn.query_row(
            "SELECT count(*), coalesce(sum(n), 0) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Rows and the sum of `n` in the PostgreSQL target; `None` while it
    /// is down.
    fn pg_count(&self) -> Option<(i64, i64)> {
        let out = self
            .pg
            .psql(
                "soak",
                "SELECT count(*) || '|' || coalesce(sum(n), 0) FROM events;",
            )
            .ok()?;
        let (rows, sum) = out.trim().split_once('|')?;
        Some((rows.parse().ok()?, sum.parse().ok()?))
    }
}

/// Prints a line every [`TIMELINE_SECS`] until `done`, and stops and
/// starts PostgreSQL on the plan's schedule.
fn timeline(
    targets: &Targets,
    weir: &mut Weir,
    seen: &Accepted,
    plan: &Plan,
    start: Instant,
    done: impl Fn() -> bool,
) -> Result<(), Error> {
    let from = Duration::from_secs(plan.seconds / 3);
    let until = from + Duration::from_secs(plan.outage);
    let (mut stopped, mut started) = (false, false);
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>8}",
        "s", "accepted", "sqlite", "postgres", "RSS MiB"
    );
    let mut tick = 0u64;
    while !done() {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        let now = start.elapsed();
        if now >= from && !stopped {
            targets.pg.pause()?;
            stopped = true;
            println!("{:>6} PostgreSQL stopped", now.as_secs());
        }
        if now >= until && stopped && !started {
            targets.pg.resume()?;
            started = true;
            println!("{:>6} PostgreSQL started", now.as_secs());
        }
        if let Some(exit) = weir.child.try_wait()? {
            return Err(format!(
                "weir stopped during the load ({exit}); see {}",
                weir.log.display()
            )
            .into());
        }
        if tick.is_multiple_of(TIMELINE_SECS) {
            let pg = targets
                .pg_count()
                .map_or("down".to_string(), |c| c.0.to_string());
            println!(
                "{:>6} {:>10} {:>10} {:>10} {:>8}",
                now.as_secs(),
                seen.accepted.load(Ordering::Relaxed),
                targets.lite_count()?.0,
                pg,
                memory_kib(weir.child.id(), "VmRSS").unwrap_or(0) / 1024
            );
        }
    }
    if stopped && !started {
        targets.pg.resume()?;
        println!(
            "{:>6} PostgreSQL started (the load ended first)",
            start.elapsed().as_secs()
        );
    }
    Ok(())
}

/// The latest accepted value of every accepted record, by reference.
fn expected(seen: &Accepted) -> HashMap<String, i64> {
    seen.latest
        .iter()
        .enumerate()
        .filter_map(|(record, v)| {
            let v = v.load(Ordering::Acquire);
            (v > 0).then(|| (format!("r-{record}"), v as i64 - 1))
        })
        .collect()
}

/// Waits until both targets hold as many rows as accepted records with the
/// same sum of values; returns how long that took, `None` past the limit.
fn drain(targets: &Targets, expected: &HashMap<String, i64>, weir: &Weir) -> Option<Duration> {
    let want = (expected.len() as i64, expected.values().sum::<i64>());
    let start = Instant::now();
    while start.elapsed() < DRAIN_LIMIT {
        let lite = targets.lite_count().ok();
        if lite == Some(want) && targets.pg_count() == Some(want) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the targets did not drain within {DRAIN_LIMIT:?}; see {}",
        weir.log.display()
    );
    None
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn report(seen: &Accepted, load: Duration, peak_kib: u64, drained: Option<Duration>) {
    let mut latency = seen
        .latency_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latency.sort_unstable();
    let at = |q: f64| {
        latency
            .get(((latency.len().max(1) - 1) as f64 * q).round() as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let sent = seen.latency_us.lock().map_or(0, |l| l.len());
    println!(
        "sent {sent} events in {:.1} s ({:.0}/s); accepted {}; refused {:?}",
        load.as_secs_f64(),
        sent as f64 / load.as_secs_f64(),
        seen.accepted.load(Ordering::Relaxed),
        seen.refused.lock().map(|r| r.clone()).unwrap_or_default()
    );
    println!(
        "acknowledgement ms: p50 {:.1}, p99 {:.1}, max {:.1}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!("weir peak RSS: {:.0} MiB", peak_kib as f64 / 1024.0);
    match drained {
        Some(d) => println!(
            "backlog drained {:.1} s after the load ended",
            d.as_secs_f64()
        ),
        None => println!("backlog NOT drained within {DRAIN_LIMIT:?}"),
    }
}

fn lite_rows(path: &Path) -> Result<Vec<(String, Option<i64>)>, Error> {
    let conn = rusqlite::Connection::open(path)?;
    let mut st = conn.prepare("SELECT ref, n FROM events")?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn pg_rows(pg: &Postgres) -> Result<Vec<(String, Option<i64>)>, Error> {
    let out = pg.psql(
        "soak",
        "SELECT ref || '|' || coalesce(n::text, '') FROM events;",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(r, n)| (r.to_string(), n.parse().ok()))
        .collect())
}

/// Counts and prints the records a target misses, repeats, holds stale or
/// holds without their having been accepted.
fn check(name: &str, rows: &[(String, Option<i64>)], expected: &HashMap<String, i64>) -> usize {
    let mut held: HashMap<&str, Vec<Option<i64>>> = HashMap::new();
    for (r, n) in rows {
        held.entry(r).or_default().push(*n);
    }
    let (mut missing, mut repeated, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for (r, n) in expected {
        match held.get(r.as_str()).map(Vec::as_slice) {
            None => missing.push(r.as_str()),
            Some([one]) if *one == Some(*n) => {}
            Some([_]) => stale.push(r.as_str()),
            Some(_) => repeated.push(r.as_str()),
        }
    }
    let unasked: Vec<&str> = held
        .keys()
        .filter(|r| !expected.contains_key(**r))
        .copied()
        .collect();
    println!(
        "{name}: {} rows; missing {}, repeated {}, stale {}, not accepted {}",
        rows.len(),
        missing.len(),
        repeated.len(),
        stale.len(),
        unasked.len()
    );
    for (what, list) in [
        ("missing", &missing),
        ("repeated", &repeated),
        ("stale", &stale),
        ("not accepted", &unasked),
    ] {
        if !list.is_empty() {
            println!("  {what}, for example: {:?}", &list[..list.len().min(5)]);
        }
    }
    missing.len() + repeated.len() + stale.len() + unasked.len()
}
