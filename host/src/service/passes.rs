//! The pass loop of `weir run`: a pass at start-up that polls every source,
//! then one whenever a source falls due, a retry comes due or something
//! asks for one (a change pushed, a refresh); between passes it sleeps until
//! the next of these, and checks webhook silence.

use super::schedule::Health;
use super::{alerts, hooks, App, DaemonOptions};
use crate::engine::{self, SyncError, SyncOptions};
use crate::manifest::Manifest;
use crate::store::{LastPoll, Store, StoreError, WebhookHealth};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;

/// Runs passes until `stop` is set.
pub(super) async fn run(
    app: &App,
    options: &DaemonOptions,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The loop's own connection: due retries, new problems for alerts.
    let loop_store = Store::open(&app.manifest.store)?;
    let mut alerter = alerts::Alerter::new(&app.manifest, &loop_store)?;
    let started = jiff::Timestamp::now();
    let mut first = true;
    // Whether something asked for a pass (a change arrived, a refresh), as
    // opposed to the timer.
    let mut asked = true;
    let mut last_pass = jiff::Timestamp::now();
    // The last pass left outbox rows due (`pass_rows`): the next one
    // follows at once.
    let mut more_due = false;
    loop {
        let now = jiff::Timestamp::now();
        // Start-up: every source, for what changed while weir was down.
        let (poll, silent) = if first {
            (None, false)
        } else {
            let (due, silent) = due(app, started, now);
            (Some(due), silent)
        };
        // A retry that came due since the last pass (one still due from
        // before waits for the next pass: its target may be down). The
        // earliest one due after the last pass decides, not the earliest of
        // all: one left overdue must not hide those due later.
        let delivery_due = loop_store
            .next_delivery_after(&format!("{last_pass:.3}"))
            .ok()
            .flatten()
            .is_some_and(|at| at <= format!("{now:.3}"));
        if !asked && !more_due && !delivery_due && poll.as_ref().is_some_and(BTreeSet::is_empty) {
            // The timer woke the loop only to check webhook silence: no pass.
            if silent {
                after_pass(app, &[], false, now);
            }
        } else {
            last_pass = now;
            let report = pass(app, options, poll, first, now).await?;
            more_due = report.as_ref().is_some_and(|r| r.more_due);
            if let (Some(report), Some(alerter)) = (report, alerter.as_mut()) {
                let found = problems(app, &report);
                let alerts = alerter.collect(
                    &loop_store,
                    &found.failed,
                    &found.ok,
                    &found.degraded,
                    jiff::Timestamp::now(),
                );
                alerter.send(alerts).await;
            }
        }
        first = false;
        let wait = if more_due {
            Duration::ZERO
        } else {
            wait(app, &loop_store, last_pass)
        };
        asked = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            _ = app.wake.notified() => true,
            _ = tokio::time::sleep(wait) => false,
        };
        if *stop.borrow() {
            break;
        }
    }
    Ok(())
}

/// The sources due to be polled at `now` (and those a refresh asked for),
/// and whether a system's webhooks fell silent, which degrades them.
fn due(
    app: &App,
    started: jiff::Timestamp,
    now: jiff::Timestamp,
) -> (BTreeSet<(String, String)>, bool) {
    let mut silent = false;
    let mut due = {
        let mut health = app.health.lock().expect("health lock");
        for s in &app.manifest.systems {
            if let Some(w) = &s.webhooks {
                let h = health.entry(s.name.clone()).or_default();
                if h.check_silence(w, started, now) {
                    silent = true;
                    tracing::warn!(system = %s.name, "webhooks degraded: {}", h.reason.as_deref().unwrap_or_default());
                }
            }
        }
        app.schedule
            .lock()
            .expect("schedule lock")
            .due(&health, now)
    };
    due.append(&mut app.refresh.lock().expect("refresh lock"));
    (due, silent)
}

/// How long the loop may sleep: until the next source falls due or the next
/// retry comes due, at most an hour, at most a second while a system has a
/// webhook silence limit.
fn wait(app: &App, loop_store: &Store, last_pass: jiff::Timestamp) -> Duration {
    let wait = {
        let health = app.health.lock().expect("health lock");
        let next = app
            .schedule
            .lock()
            .expect("schedule lock")
            .next(&health, jiff::Timestamp::now());
        next.map(|at| {
            let left = at.duration_since(jiff::Timestamp::now());
            Duration::try_from(left).unwrap_or(Duration::ZERO)
        })
    };
    // Silence is checked at least every second while a limit is set.
    let silence = app
        .manifest
        .systems
        .iter()
        .any(|s| s.webhooks.as_ref().is_some_and(|w| w.max_silence.is_some()));
    let mut wait = wait.unwrap_or(Duration::from_secs(3600));
    if silence {
        wait = wait.min(Duration::from_secs(1));
    }
    // Writes waiting for a retry are delivered when they come due.
    if let Ok(Some(at)) = loop_store.next_delivery_after(&format!("{last_pass:.3}")) {
        if let Ok(at) = at.parse::<jiff::Timestamp>() {
            if at > last_pass {
                let left = Duration::try_from(at.duration_since(jiff::Timestamp::now()))
                    .unwrap_or(Duration::ZERO);
                wait = wait.min(left);
            }
        }
    }
    wait
}

/// What a pass tells the alerter.
struct Found {
    /// Systems that failed in the pass.
    failed: BTreeSet<String>,
    /// Systems polled without failure.
    ok: BTreeSet<String>,
    /// Systems whose webhooks are degraded, with the reason.
    degraded: BTreeMap<String, String>,
}

fn problems(app: &App, report: &engine::SyncReport) -> Found {
    let mut failed: BTreeSet<String> = report
        .failures
        .iter()
        .filter_map(|f| f.strip_prefix("system '")?.split('\'').next())
        .map(String::from)
        .collect();
    failed.extend(
        report
            .polled
            .iter()
            .filter(|p| p.failed)
            .map(|p| p.system.clone()),
    );
    // Sources count as working when polled without failure; systems that
    // are only written to, when the pass reported nothing against them.
    let mut ok: BTreeSet<String> = report
        .polled
        .iter()
        .filter(|p| !p.failed)
        .map(|p| p.system.clone())
        .collect();
    ok.extend(
        app.manifest
            .systems
            .iter()
            .filter(|s| !s.entities.iter().any(|e| e.direction.reads()))
            .filter(|s| !failed.contains(&s.name))
            .map(|s| s.name.clone()),
    );
    let degraded = app
        .health
        .lock()
        .expect("health lock")
        .iter()
        .filter(|(_, h)| !h.healthy())
        .map(|(s, h)| (s.clone(), h.reason.clone().unwrap_or_default()))
        .collect();
    Found {
        failed,
        ok,
        degraded,
    }
}

/// One pass of the service: polls `poll` (every source when none), takes
/// the inboxes, delivers; prints its line and records its polls. A pass
/// that fails is reported and the service goes on, unless the store's
/// writer lease was taken over: then the service stops, with that error.
async fn pass(
    app: &App,
    options: &DaemonOptions,
    poll: Option<BTreeSet<(String, String)>>,
    first: bool,
    now: jiff::Timestamp,
) -> anyhow::Result<Option<engine::SyncReport>> {
    let sync = SyncOptions {
        poll,
        ..options.sync.clone()
    };
    match engine::sync(&app.manifest, &app.runtime, &sync).await {
        Ok(r) => {
            // Health and polls are saved before the line is printed: whoever
            // waits for the line can read them.
            after_pass(app, &r.polled, first, now);
            let polled: Vec<String> = r
                .polled
                .iter()
                .map(|p| format!("{}/{}", p.system, p.entity))
                .collect();
            if !options.quiet {
                println!(
                    "run {}: {}; polled: {}",
                    r.run_id,
                    r.counts,
                    if polled.is_empty() {
                        "none".to_string()
                    } else {
                        polled.join(", ")
                    }
                );
            }
            for f in &r.failures {
                eprintln!("error: {f}");
            }
            Ok(Some(r))
        }
        Err(SyncError::Store(lost @ StoreError::LeaseLost { .. })) => Err(lost.into()),
        Err(e) => {
            eprintln!("error: pass failed: {e:#}");
            Ok(None)
        }
    }
}

/// The webhook health saved by the last run of the service.
pub(super) fn load_health(manifest: &Manifest) -> anyhow::Result<BTreeMap<String, Health>> {
    let parse = |t: Option<String>| t.and_then(|t| t.parse().ok());
    let store = Store::open(&manifest.store)?;
    Ok(store
        .webhook_health()?
        .into_iter()
        .filter(|h| {
            manifest
                .system(&h.system)
                .is_some_and(|s| s.webhooks.is_some())
        })
        .map(|h| {
            let health = Health {
                last_webhook: parse(h.last_webhook_at),
                degraded_since: parse(h.degraded_since),
                reason: h.reason,
            };
            (h.system, health)
        })
        .collect())
}

/// Records the pass's polls in the schedule, judges webhook health by them
/// (not the start-up pass: what changed while weir was down was announced
/// to nobody), and saves both for `weir status`.
fn after_pass(app: &App, polled: &[engine::Polled], first: bool, at: jiff::Timestamp) {
    let mut schedule = app.schedule.lock().expect("schedule lock");
    let mut health = app.health.lock().expect("health lock");
    for p in polled {
        schedule.polled(&p.system, &p.entity, at);
        let Some(system) = app.manifest.system(&p.system) else {
            continue;
        };
        if system.webhooks.is_none() || first {
            continue;
        }
        let h = health.entry(p.system.clone()).or_default();
        let was = h.healthy();
        if h.after_poll(p.fresh, p.failed, jiff::Timestamp::now()) {
            if was {
                tracing::warn!(system = %p.system, "webhooks degraded: {}", h.reason.as_deref().unwrap_or_default());
            } else {
                tracing::info!(system = %p.system, "webhooks healthy again");
            }
        }
    }
    let text = |t: Option<jiff::Timestamp>| t.map(|t| format!("{t:.3}"));
    let rows: Vec<WebhookHealth> = app
        .manifest
        .systems
        .iter()
        .filter(|s| s.webhooks.is_some())
        .map(|s| {
            let h = health.get(&s.name).cloned().unwrap_or_default();
            WebhookHealth {
                system: s.name.clone(),
                last_webhook_at: text(h.last_webhook),
                degraded_since: text(h.degraded_since),
                reason: h.reason,
                refused: 0,
                last_refusal: None,
            }
        })
        .collect();
    let polls: Vec<LastPoll> = polled
        .iter()
        .map(|p| LastPoll {
            system: p.system.clone(),
            entity: p.entity.clone(),
            at: format!("{at:.3}"),
            fresh: p.fresh,
            failed: p.failed,
        })
        .collect();
    drop((schedule, health));
    let refused = hooks::unsaved(&mut app.refusals.lock().expect("refusals lock"));
    let saved = Store::open(&app.manifest.store).and_then(|mut s| {
        s.save_polling(&rows, &polls)?;
        for (system, n, at, why) in &refused {
            s.webhook_refused(system, *n, at, why)?;
        }
        Ok(())
    });
    if let Err(e) = saved {
        tracing::warn!("cannot save polling state: {e}");
    }
}
