//! kill -9 at random moments: a three-way sync (an SQLite CRM, a second
//! SQLite CRM and a CSV folder, all both ways, the last two assigning ids
//! of their own) killed with SIGKILL after a random delay, again and again,
//! with inserts, updates and deletes in the first two between the kills.
//! Afterwards every system holds exactly the CRM's people, once each, with
//! the same values, and a further pass writes nothing.
//!
//! `WEIR_SOAK_RECORDS` and `WEIR_SOAK_KILLS` make it larger (the issue's
//! 50k soak: `WEIR_SOAK_RECORDS=50000 WEIR_SOAK_KILLS=26`); `WEIR_SOAK_SEED`
//! repeats a run (every run prints its seed), and `WEIR_SOAK_KEEP` keeps
//! its folder (the systems and the store) to look into.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn three_way(d: &Path) -> PathBuf {
    std::fs::create_dir_all(d.join("c")).unwrap();
    write_manifest(
        d,
        &format!(
            "{}{}{}{}",
            entity("contacts", "id", &[r#"match_on = ["email"]"#]),
            System::sqlite("a", "a", "a.db").tracked("contacts", "contacts", "both", &[]),
            System::sqlite("b", "b", "b.db").tracked("contacts", "contacts", "both", &[]),
            System::csv("c", "c", "c").entity("contacts", &[r#"direction = "both""#]),
        ),
    )
}

/// A system's people as (address, first name, last name, phone) rows.
type People = BTreeSet<Vec<Option<String>>>;

/// Each system's name, how many rows it has, and its people.
fn people(d: &Path) -> Vec<(String, usize, People)> {
    let mut out = Vec::new();
    for db in ["a.db", "b.db"] {
        let rows = rows(
            &d.join(db),
            "SELECT lower(email), first_name, last_name, phone FROM contacts",
        );
        out.push((db.to_string(), rows.len(), rows.into_iter().collect()));
    }
    let csv = csv_columns(
        &d.join("c").join("contacts.csv"),
        &["email", "first_name", "last_name", "phone"],
    );
    let n = csv.len();
    let set = csv
        .into_iter()
        .map(|mut r| {
            r[0] = r[0].as_ref().map(|e| e.to_lowercase());
            r
        })
        .collect();
    out.push(("c/contacts.csv".to_string(), n, set));
    out
}

/// A round of edits in a and b: new people in a, changed phones in both,
/// a few deletes in a.
fn edit(d: &Path, rng: &mut Rng, round: u64) {
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let max = count(&a, "SELECT max(id) FROM contacts").max(1) as u64;
    let mut sql = String::new();
    for k in 0..200 {
        sql.push_str(&format!(
            "INSERT INTO contacts (first_name, last_name, email, phone) VALUES ('New', 'Person', 'new{round}x{k}@example.net', NULL);"
        ));
    }
    for _ in 0..200 {
        let id = rng.next_u64() % max + 1;
        sql.push_str(&format!(
            "UPDATE contacts SET phone = '+2 {round} {}' WHERE id = {id};",
            rng.next_u64() % 10_000
        ));
    }
    for _ in 0..20 {
        sql.push_str(&format!(
            "DELETE FROM contacts WHERE id = {};",
            rng.next_u64() % max + 1
        ));
    }
    exec(&a, &sql);
    let bmax = count(&b, "SELECT coalesce(max(id), 0) FROM contacts") as u64;
    if bmax > 0 {
        let mut sql = String::new();
        for _ in 0..100 {
            sql.push_str(&format!(
                "UPDATE contacts SET phone = '+3 {round} {}' WHERE id = {};",
                rng.next_u64() % 10_000,
                rng.next_u64() % bmax + 1
            ));
        }
        exec(&b, &sql);
    }
}

/// Runs `weir sync` (with `--full`, a full read of every source, if
/// `full`) and kills it with SIGKILL after `delay` if it is still running
/// then. Returns how long it ran unkilled, none when it was killed.
fn sync_killed_after(m: &Path, full: bool, delay: Duration) -> Option<Duration> {
    let mut args = vec!["sync", "--quiet", "--batch-size", "97"];
    if full {
        args.push("--full");
    }
    let began = Instant::now();
    let mut child = weir_command(WEIR, m, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start weir");
    let end = Instant::now() + delay;
    loop {
        if child.try_wait().expect("wait for weir").is_some() {
            return Some(began.elapsed());
        }
        if Instant::now() >= end {
            child.kill().expect("SIGKILL weir");
            child.wait().expect("reap weir");
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_at_random_moments_every_system_ends_with_each_person_once() {
    let records = setting("WEIR_SOAK_RECORDS", 5_000) as usize;
    let kills = setting("WEIR_SOAK_KILLS", 20);
    let seed = setting(
        "WEIR_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("random kill: {records} records, {kills} kills, WEIR_SOAK_SEED={seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if std::env::var_os("WEIR_SOAK_KEEP").is_some() {
        eprintln!("random kill: working in {}", d.display());
    }
    crm_db(&d.join("a.db"), records).unwrap();
    crm_db(&d.join("b.db"), 0).unwrap();
    let m = three_way(d);

    // How long an uninterrupted first pass takes here sets the range of the
    // delays: from at once to a little past the end.
    let began = Instant::now();
    let probe = tempfile::tempdir().unwrap();
    crm_db(&probe.path().join("a.db"), records).unwrap();
    crm_db(&probe.path().join("b.db"), 0).unwrap();
    let timed = weir(
        WEIR,
        &three_way(probe.path()),
        &["sync", "--quiet", "--batch-size", "97"],
    );
    assert_eq!(timed.code, 0, "{timed:?}");
    let span = began.elapsed().as_millis().max(200) as u64;

    // Each delay is drawn up to a little past the last pass that ran to
    // its end (the first: the uninterrupted one above); every third pass
    // reads every source in full.
    let (mut killed, mut span) = (0, span);
    for round in 0..kills {
        let delay = Duration::from_millis(rng.next_u64() % (span + span / 4 + 1));
        match sync_killed_after(&m, round % 3 == 2, delay) {
            None => killed += 1,
            Some(took) => span = took.as_millis().max(20) as u64,
        }
        edit(d, &mut rng, round);
    }
    assert!(
        killed * 3 >= kills,
        "only {killed} of {kills} passes were killed (seed {seed})"
    );
    eprintln!("random kill: {killed} of {kills} passes killed");

    // Quiet passes until nothing is left to write.
    // The first reads every source in full: a hard delete in an SQLite
    // table without tombstones is found by a full read alone.
    let mut quiet = None;
    for pass in 0..6 {
        let args: &[&str] = if pass == 0 {
            &["sync", "--quiet", "--full"]
        } else {
            &["sync", "--quiet"]
        };
        let run = weir(WEIR, &m, args);
        assert!(run.code == 0, "seed {seed}: {run:?}");
        let s = run
            .stdout
            .lines()
            .find_map(parse_summary)
            .expect("a summary");
        if pass > 0 && s.written == 0 && s.deleted == 0 {
            quiet = Some(s);
            break;
        }
    }
    assert!(
        quiet.is_some(),
        "seed {seed}: the passes after the kills do not settle"
    );

    let expected = count(&d.join("a.db"), "SELECT count(*) FROM contacts") as usize;
    let all = people(d);
    if std::env::var_os("WEIR_SOAK_KEEP").is_some() {
        std::mem::forget(dir);
    }
    let (_, _, reference) = &all[0];
    for (system, n, set) in &all {
        let emails: BTreeSet<_> = set.iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            (*n, emails.len()),
            (expected, expected),
            "seed {seed}: {system} holds {n} rows for {} people; a holds {expected}",
            emails.len()
        );
        assert_eq!(
            set,
            reference,
            "seed {seed}: {system} differs from a in {} rows",
            set.symmetric_difference(reference).count()
        );
    }
    let dead = weir(WEIR, &m, &["dead-letters"]);
    assert!(dead.stdout.trim().is_empty(), "seed {seed}: {dead:?}");
}
