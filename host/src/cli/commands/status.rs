//! `weir status`: the store, the latest runs, the outbox, webhook health,
//! polls, held and parked changes and the latest dead letters.

use crate::manifest::Manifest;
use std::process::ExitCode;

pub(in crate::cli) fn run(manifest: &Manifest) -> anyhow::Result<ExitCode> {
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
    for system in &manifest.systems {
        for e in &system.entities {
            let a = store.activity(&system.name, &e.name)?;
            if a.retrying == 0 {
                continue;
            }
            let since = a.failing_since.unwrap_or_else(|| "-".into());
            println!(
                "  {} {}: {} write(s) waiting for a retry, failing since {since} (dead letters after give_up_after = {:#}): {}",
                system.name,
                e.name,
                a.retrying,
                jiff::SignedDuration::try_from(system.give_up_after).unwrap_or_default(),
                a.last_error.as_deref().unwrap_or("-")
            );
        }
    }
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
    for h in store.sources_health()? {
        if let Some(since) = &h.failing_since {
            println!("{} {}: polls failing since {since}", h.system, h.entity);
        }
        if let Some(why) = &h.resync_reason {
            println!(
                "{} {}: its next poll reads it in full: {why}",
                h.system, h.entity
            );
        }
        if let Some((at, why)) = &h.last_resync {
            println!(
                "{} {}: last read in full after a fault at {at}: {why}",
                h.system, h.entity
            );
        }
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
            println!("  {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
