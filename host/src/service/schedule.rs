//! When `weir run` polls each source, and the health of systems' webhooks.
//!
//! Pure: every function takes the time it should consider, so the rules are
//! tested without waiting. Each readable (system, entity) pair has a cadence:
//! an interval (`poll_every`, or the service's `--interval`) or a cron
//! expression (`schedule`). A system that sends webhooks (`[systems.X.webhooks]`)
//! is polled at its slow `reconcile_every` while its webhooks are healthy and
//! at its normal cadence while they are degraded.

use crate::manifest::{Manifest, Poll, Webhooks};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The health of one system's webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// When the last webhook arrived.
    pub last_webhook: Option<Timestamp>,
    /// Since when the webhooks are degraded; none while healthy.
    pub degraded_since: Option<Timestamp>,
    /// Why they are degraded.
    pub reason: Option<String>,
}

impl Health {
    /// Whether the webhooks are trusted (the system is polled slowly).
    pub fn healthy(&self) -> bool {
        self.degraded_since.is_none()
    }

    /// A webhook arrived.
    pub fn webhook(&mut self, now: Timestamp) {
        self.last_webhook = Some(now);
    }

    fn degrade(&mut self, now: Timestamp, reason: String) -> bool {
        if !self.healthy() {
            return false;
        }
        self.degraded_since = Some(now);
        self.reason = Some(reason);
        true
    }

    /// Marks the webhooks degraded when none arrived for `max_silence`
    /// (counted from `started` if none arrived since). Returns whether the
    /// state changed.
    pub fn check_silence(&mut self, config: &Webhooks, started: Timestamp, now: Timestamp) -> bool {
        let Some(silence) = config.max_silence else {
            return false;
        };
        let since = self.last_webhook.map_or(started, |w| w.max(started));
        if now.duration_since(since) < signed(silence) {
            return false;
        }
        self.degrade(now, format!("no webhook for {}", friendly(silence)))
    }

    /// Judges a poll: one that found changes no webhook announced degrades
    /// the webhooks; a clean poll after a webhook that arrived while degraded
    /// makes them healthy again. Returns whether the state changed.
    pub fn after_poll(&mut self, fresh: u64, failed: bool, now: Timestamp) -> bool {
        if fresh > 0 {
            return self.degrade(
                now,
                format!("a poll found {fresh} change(s) that no webhook announced"),
            );
        }
        match (self.degraded_since, self.last_webhook) {
            (Some(since), Some(last)) if !failed && last > since => {
                self.degraded_since = None;
                self.reason = None;
                true
            }
            _ => false,
        }
    }
}

/// One source's polling.
#[derive(Debug, Clone)]
struct Entry {
    system: String,
    entity: String,
    poll: Poll,
    webhooks: Option<Webhooks>,
    last: Option<Timestamp>,
}

/// When each source is due.
#[derive(Debug, Clone)]
pub struct Schedule {
    entries: Vec<Entry>,
    default_every: Duration,
}

impl Schedule {
    /// The schedule of every readable (system, entity) pair of the manifest;
    /// `default_every` is the interval of pairs with no cadence of their own.
    pub fn new(manifest: &Manifest, default_every: Duration) -> Schedule {
        let mut entries = Vec::new();
        for system in &manifest.systems {
            for e in system.entities.iter().filter(|e| e.direction.reads()) {
                entries.push(Entry {
                    system: system.name.clone(),
                    entity: e.name.clone(),
                    poll: e.poll.clone().unwrap_or_else(|| system.poll.clone()),
                    webhooks: system.webhooks.clone(),
                    last: None,
                });
            }
        }
        Schedule {
            entries,
            default_every,
        }
    }

    /// When a pair is next due; now if it was never polled.
    fn due_at(&self, e: &Entry, health: &BTreeMap<String, Health>, now: Timestamp) -> Timestamp {
        let Some(last) = e.last else { return now };
        let healthy = e.webhooks.is_some() && health.get(&e.system).is_none_or(Health::healthy);
        let every = match (&e.poll, &e.webhooks) {
            (Poll::Cron(cron), _) => {
                let at = last.to_zoned(jiff::tz::TimeZone::UTC);
                return cron
                    .find_next_occurrence(&at, false)
                    .map(|z| z.timestamp())
                    .unwrap_or(Timestamp::MAX);
            }
            (_, Some(w)) if healthy => w.reconcile_every,
            (Poll::Every(d), _) => *d,
            (Poll::Default, _) => self.default_every,
        };
        last.saturating_add(signed(every)).unwrap_or(Timestamp::MAX)
    }

    /// The pairs due at `now`.
    pub fn due(
        &self,
        health: &BTreeMap<String, Health>,
        now: Timestamp,
    ) -> BTreeSet<(String, String)> {
        self.entries
            .iter()
            .filter(|e| self.due_at(e, health, now) <= now)
            .map(|e| (e.system.clone(), e.entity.clone()))
            .collect()
    }

    /// The earliest time a pair is due, if any pair is.
    pub fn next(&self, health: &BTreeMap<String, Health>, now: Timestamp) -> Option<Timestamp> {
        self.entries
            .iter()
            .map(|e| self.due_at(e, health, now))
            .min()
    }

    /// Records that a pair was polled at `at`.
    pub fn polled(&mut self, system: &str, entity: &str, at: Timestamp) {
        for e in &mut self.entries {
            if e.system == system && e.entity == entity {
                e.last = Some(at);
            }
        }
    }

    /// The readable pairs of a system, or only `entity` of it.
    pub fn pairs_of(&self, system: &str, entity: Option<&str>) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| e.system == system && entity.is_none_or(|n| n == e.entity))
            .map(|e| (e.system.clone(), e.entity.clone()))
            .collect()
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A duration as people write it: "90s" → "1m 30s".
pub fn friendly(d: Duration) -> String {
    format!("{:#}", signed(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn manifest(extra: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(dir.path().join("c.wasm"), b"").unwrap();
        std::fs::write(
            &path,
            format!(
                r#"
[entities.contacts]
primary_key = "id"

[systems.a]
connector = "c.wasm"
[systems.a.entities.contacts]

[systems.b]
connector = "c.wasm"
{extra}
[systems.b.entities.contacts]
"#
            ),
        )
        .unwrap();
        let m = Manifest::load(&path).unwrap();
        std::mem::forget(dir);
        m
    }

    fn pair(s: &str) -> (String, String) {
        (s.to_string(), "contacts".to_string())
    }

    #[test]
    fn intervals_and_webhook_health() {
        let m = manifest(
            "poll_every = \"30s\"\n[systems.b.webhooks]\nreconcile_every = \"10m\"\nmax_silence = \"5m\"",
        );
        let mut s = Schedule::new(&m, Duration::from_secs(60));
        let mut health = BTreeMap::new();
        let t0 = at("2026-01-01T00:00:00Z");
        assert_eq!(s.due(&health, t0).len(), 2, "never polled: due at once");
        s.polled("a", "contacts", t0);
        s.polled("b", "contacts", t0);
        assert!(s.due(&health, at("2026-01-01T00:00:59Z")).is_empty());
        // a at the default interval; b only at its reconcile interval while healthy.
        assert_eq!(
            s.due(&health, at("2026-01-01T00:01:00Z")),
            [pair("a")].into()
        );
        assert_eq!(s.next(&health, t0), Some(at("2026-01-01T00:01:00Z")));
        assert_eq!(
            s.due(&health, at("2026-01-01T00:10:00Z")),
            [pair("a"), pair("b")].into()
        );

        // Degraded: b is polled at its poll_every.
        let mut h = Health::default();
        assert!(h.after_poll(2, false, t0));
        assert_eq!(
            h.reason.as_deref(),
            Some("a poll found 2 change(s) that no webhook announced")
        );
        health.insert("b".to_string(), h.clone());
        assert_eq!(
            s.due(&health, at("2026-01-01T00:00:30Z")),
            [pair("b")].into()
        );

        // A clean poll does not heal without a webhook; one after a webhook does.
        assert!(!h.after_poll(0, false, at("2026-01-01T00:01:00Z")));
        h.webhook(at("2026-01-01T00:01:10Z"));
        assert!(
            !h.after_poll(0, true, at("2026-01-01T00:01:20Z")),
            "a failed poll proves nothing"
        );
        assert!(h.after_poll(0, false, at("2026-01-01T00:01:30Z")));
        assert!(h.healthy());
    }

    #[test]
    fn silence_degrades() {
        let w = Webhooks {
            reconcile_every: Duration::from_secs(600),
            max_silence: Some(Duration::from_secs(300)),
        };
        let started = at("2026-01-01T00:00:00Z");
        let mut h = Health::default();
        assert!(!h.check_silence(&w, started, at("2026-01-01T00:04:59Z")));
        h.webhook(at("2026-01-01T00:04:00Z"));
        assert!(!h.check_silence(&w, started, at("2026-01-01T00:08:59Z")));
        assert!(h.check_silence(&w, started, at("2026-01-01T00:09:00Z")));
        assert_eq!(h.reason.as_deref(), Some("no webhook for 5m"));
        assert!(
            !h.check_silence(&w, started, at("2026-01-01T00:10:00Z")),
            "already degraded"
        );
        let quiet = Webhooks {
            max_silence: None,
            ..w
        };
        assert!(!Health::default().check_silence(&quiet, started, at("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn cron_schedules() {
        let m = manifest("schedule = \"0 2 * * *\"");
        let mut s = Schedule::new(&m, Duration::from_secs(60));
        let health = BTreeMap::new();
        let t0 = at("2026-01-01T12:00:00Z");
        s.polled("a", "contacts", t0);
        s.polled("b", "contacts", t0);
        let next_b = s
            .entries
            .iter()
            .find(|e| e.system == "b")
            .map(|e| s.due_at(e, &health, t0))
            .unwrap();
        assert_eq!(next_b, at("2026-01-02T02:00:00Z"));
        assert_eq!(
            s.due(&health, at("2026-01-02T02:00:00Z")),
            [pair("a"), pair("b")].into()
        );
        assert_eq!(s.pairs_of("b", None), vec![pair("b")]);
        assert!(s.pairs_of("b", Some("orders")).is_empty());
    }
}
