//! Benchmark: webhook → target-write latency of a running `weir run`.
//!
//! `webhook-bench [EVENTS] [RATE]` (default 10000 events at 1000/s) starts the
//! service in this process with a webhook source (the `hooks` connector) and
//! a local SQLite target, then:
//! - `paced`: posts EVENTS webhooks, one new record each, at RATE per second
//!   from 4 client threads;
//! - `flood`: posts EVENTS more as fast as 8 client threads can.
//!
//! Each event carries the time it was sent; a trigger in the target stamps
//! the time its row was inserted. Printed per phase: events, p50, p99 and max
//! latency (sent → row inserted) in milliseconds, and events per second
//! (first send to last insert).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_tests::{entity, write_manifest, System};

const SECRET: &str = "bench-s3cret";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: usize = args.first().map_or(Ok(10_000), |a| a.parse())?;
    let rate: u64 = args.get(1).map_or(Ok(1000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let target = d.join("sink.db");
    rusqlite::Connection::open(&target)?.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ref TEXT NOT NULL UNIQUE, sent_ms REAL NOT NULL, written_ms REAL);
         CREATE TRIGGER stamp AFTER INSERT ON events BEGIN
             UPDATE events SET written_ms = unixepoch('subsec') * 1000.0 WHERE id = NEW.id;
         END;",
    )?;
    let app = System::new("app", "hooks", &format!(r#"secret = "{SECRET}""#))
        .entity("events", &[r#"direction = "read""#]);
    let sink = System::sqlite("sink", "sink", "sink.db").entity(
        "events",
        &[
            r#"direction = "write""#,
            r#"primary_key = "id""#,
            r#"settings = { table = "events" }"#,
        ],
    );
    let manifest = write_manifest(
        d,
        &format!(
            "[store]\npath = \"weir.db\"\n{}{app}{sink}",
            entity("events", "key", &[])
        ),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let service = start(&manifest, port)?;
    let url = format!("http://127.0.0.1:{port}/hooks/app");
    wait_until_up(&format!("http://127.0.0.1:{port}/healthz"))?;

    println!(
        "{:<7} {:>7} {:>9} {:>9} {:>9} {:>10}",
        "phase", "events", "p50 ms", "p99 ms", "max ms", "events/s"
    );
    post_all(&url, "paced", 0, events, 4, Some(rate))?;
    report(&target, "paced", events)?;
    post_all(&url, "flood", events, events, 8, None)?;
    report(&target, "flood", events)?;
    drop(service);
    Ok(())
}

/// Runs the service on its own thread; it lives until the process ends.
fn start(
    manifest: &Path,
    port: u16,
) -> Result<std::thread::JoinHandle<()>, Box<dyn std::error::Error>> {
    let manifest = weir::manifest::Manifest::load(manifest).map_err(|e| e.to_string())?;
    let cache = std::env::temp_dir().join("weir-bench-cache");
    let runtime = weir::runtime::Runtime::new(Some(cache))?;
    let options = weir::service::DaemonOptions {
        listen: ([127, 0, 0, 1], port).into(),
        interval: Duration::from_secs(3600),
        sync: weir::engine::SyncOptions::default(),
        quiet: std::env::var_os("WEIR_BENCH_VERBOSE").is_none(),
        wait: false,
    };
    Ok(std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        if let Err(e) = rt.block_on(weir::service::run(manifest, runtime, options)) {
            eprintln!("error: the service stopped: {e:#}");
            std::process::exit(1);
        }
    }))
}

fn wait_until_up(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let agent = agent();
    while Instant::now() < deadline {
        if agent.get(url).call().is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the service did not start within 60 s".into())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Posts events `first..first + n` from `threads` clients, paced at `rate`
/// per second overall when given.
fn post_all(
    url: &str,
    phase: &str,
    first: usize,
    n: usize,
    threads: usize,
    rate: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            let url = url.to_string();
            let phase = phase.to_string();
            std::thread::spawn(move || -> Result<(), String> {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    if let Some(rate) = rate {
                        let due = start + Duration::from_micros(i as u64 * 1_000_000 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let body = format!(
                        r#"{{"event": "events.items.create", "key": "{phase}-{}", "payload": {{"ref": "{phase}-{}", "sent_ms": {}}}}}"#,
                        first + i,
                        first + i,
                        now_ms()
                    );
                    let mut resp = agent
                        .post(&url)
                        .header("x-sync-secret", SECRET)
                        .content_type("application/json")
                        .send(&body)
                        .map_err(|e| e.to_string())?;
                    let status = resp.status().as_u16();
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    if status != 200 {
                        return Err(format!("event {i}: {status} {text}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a client thread panicked")??;
    }
    Ok(())
}

/// Waits for the phase's rows and prints its latency figures.
fn report(target: &Path, phase: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let conn = rusqlite::Connection::open(target)?;
    let pattern = format!("{phase}-%");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let have: usize = conn.query_row(
            "SELECT count(*) FROM events WHERE ref LIKE ?1 AND written_ms IS NOT NULL",
            [&pattern],
            |r| r.get(0),
        )?;
        if have >= n {
            break;
        }
        if Instant::now() > deadline {
            let store = weir::store::Store::open(&target.with_file_name("weir.db"))?;
            let letters: Vec<String> = store
                .dead_letters(3)?
                .into_iter()
                .map(|d| d.reason)
                .collect();
            return Err(format!(
                "{phase}: only {have} of {n} events arrived within 300 s; dead letters: {letters:?}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut st = conn.prepare("SELECT sent_ms, written_ms FROM events WHERE ref LIKE ?1")?;
    let pairs: Vec<(f64, f64)> = st
        .query_map([&pattern], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut latency: Vec<f64> = pairs.iter().map(|(s, w)| w - s).collect();
    latency.sort_by(f64::total_cmp);
    let at = |q: f64| latency[((latency.len() - 1) as f64 * q).round() as usize];
    let first = pairs.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let last = pairs.iter().map(|p| p.1).fold(0.0, f64::max);
    println!(
        "{:<7} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
        phase,
        latency.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        latency.len() as f64 / ((last - first) / 1000.0)
    );
    Ok(())
}
