//! Outgoing alerts of `weir run` (`[alerts]` in the manifest): after each
//! pass, new conflicts, new dead letters, systems failing for longer than
//! `failing_for` and webhooks that turned degraded are posted as JSON to the
//! receiver. [`Limiter`] (pure) lets at most one alert of a kind, system
//! and entity through per `min_interval`; the ones it holds back are counted
//! and sent as one when the interval has passed.

use crate::manifest::{Alerts, Manifest};
use crate::store::Store;
use jiff::Timestamp;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `conflict`, `dead_letter`, `system_failing` or `webhooks_degraded`.
    pub kind: &'static str,
    pub system: String,
    pub entity: Option<String>,
    /// How many events it stands for (held-back ones included).
    pub count: u64,
    pub message: String,
}

type Key = (&'static str, String, Option<String>);

/// At most one alert per kind, system and entity per interval; the rest are
/// held, counted, and sent as one once the interval has passed.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: BTreeMap<Key, Timestamp>,
    held: BTreeMap<Key, Alert>,
}

impl Limiter {
    /// The alert to send now (its count raised by those held back since the
    /// last one), or none when one of its kind, system and entity went out
    /// less than `interval` ago (then it is held).
    pub fn admit(&mut self, mut alert: Alert, interval: Duration, now: Timestamp) -> Option<Alert> {
        let key = (alert.kind, alert.system.clone(), alert.entity.clone());
        if self.recent(&key, interval, now) {
            match self.held.get_mut(&key) {
                Some(h) => {
                    h.count += alert.count;
                    h.message = alert.message;
                }
                None => {
                    self.held.insert(key, alert);
                }
            }
            return None;
        }
        alert.count += self.held.remove(&key).map_or(0, |h| h.count);
        self.sent.insert(key, now);
        Some(alert)
    }

    /// The held alerts whose interval has passed, each with its count.
    pub fn due(&mut self, interval: Duration, now: Timestamp) -> Vec<Alert> {
        let keys: Vec<Key> = self
            .held
            .keys()
            .filter(|k| !self.recent(k, interval, now))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let alert = self.held.remove(&k)?;
                self.sent.insert(k, now);
                Some(alert)
            })
            .collect()
    }

    fn recent(&self, key: &Key, interval: Duration, now: Timestamp) -> bool {
        self.sent.get(key).is_some_and(|at| {
            now.duration_since(*at) < jiff::SignedDuration::try_from(interval).unwrap_or_default()
        })
    }
}

/// What the alerter remembers between passes.
pub struct Alerter {
    config: Alerts,
    client: reqwest::Client,
    limiter: Limiter,
    last_conflict: i64,
    last_dead_letter: i64,
    /// Since when each failing system has been failing, and whether that
    /// episode was alerted.
    failing: BTreeMap<String, (Timestamp, bool)>,
    degraded: BTreeSet<String>,
}

impl Alerter {
    /// An alerter for the manifest's `[alerts]`, if any; problems already in
    /// the store are not alerted again.
    pub fn new(manifest: &Manifest, store: &Store) -> anyhow::Result<Option<Alerter>> {
        let Some(config) = manifest.alerts.clone() else {
            return Ok(None);
        };
        let (last_conflict, last_dead_letter) = store.last_problem_ids()?;
        Ok(Some(Alerter {
            config,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            limiter: Limiter::default(),
            last_conflict,
            last_dead_letter,
            failing: BTreeMap::new(),
            degraded: BTreeSet::new(),
        }))
    }

    /// The alerts of one pass: new problems in the store, systems failing
    /// (`failed` lists the systems that failed in it, `ok` those that worked)
    /// and the systems whose webhooks are degraded now.
    pub fn collect(
        &mut self,
        store: &Store,
        failed: &BTreeSet<String>,
        ok: &BTreeSet<String>,
        degraded: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        match store.problems_since(self.last_conflict, self.last_dead_letter) {
            Ok(p) => {
                self.last_conflict = p.last_conflict;
                self.last_dead_letter = p.last_dead_letter;
                for (system, entity, n) in p.conflicts {
                    alerts.push(Alert {
                        kind: "conflict",
                        message: format!(
                            "{n} new conflict(s) on {entity} from {system}: see /ui/conflicts or `weir conflicts`"
                        ),
                        system,
                        entity: Some(entity),
                        count: n,
                    });
                }
                for (system, entity, n, reason) in p.dead_letters {
                    alerts.push(Alert {
                        kind: "dead_letter",
                        message: format!(
                            "{system} refused {n} {entity} record(s), the last: {reason}; see `weir dead-letters`"
                        ),
                        system,
                        entity: Some(entity),
                        count: n,
                    });
                }
            }
            Err(e) => tracing::warn!("alerts: cannot read new problems: {e}"),
        }
        for system in ok.difference(failed) {
            self.failing.remove(system);
        }
        let limit = jiff::SignedDuration::try_from(self.config.failing_for).unwrap_or_default();
        for system in failed {
            let (since, alerted) = self.failing.entry(system.clone()).or_insert((now, false));
            if !*alerted && now.duration_since(*since) >= limit {
                *alerted = true;
                alerts.push(Alert {
                    kind: "system_failing",
                    system: system.clone(),
                    entity: None,
                    count: 1,
                    message: format!(
                        "system '{system}' has been failing since {since:.0}; see `weir status`"
                    ),
                });
            }
        }
        for (system, reason) in degraded {
            if self.degraded.insert(system.clone()) {
                alerts.push(Alert {
                    kind: "webhooks_degraded",
                    system: system.clone(),
                    entity: None,
                    count: 1,
                    message: format!("the webhooks of '{system}' are degraded ({reason}): it is polled at its normal interval"),
                });
            }
        }
        self.degraded.retain(|s| degraded.contains_key(s));
        let interval = self.config.min_interval;
        let mut out: Vec<Alert> = alerts
            .into_iter()
            .filter_map(|a| self.limiter.admit(a, interval, now))
            .collect();
        out.extend(self.limiter.due(interval, now));
        out
    }

    /// Posts each alert; a receiver that fails is logged (an alert is not
    /// worth stopping the service for).
    pub async fn send(&self, alerts: Vec<Alert>) {
        for a in alerts {
            let body = json!({
                "kind": a.kind, "system": a.system, "entity": a.entity, "count": a.count,
                "message": a.message, "at": format!("{:.3}", Timestamp::now()),
            });
            let mut request = self
                .client
                .post(&self.config.url)
                .header("content-type", "application/json")
                .body(body.to_string());
            for (k, v) in &self.config.headers {
                request = request.header(k, v);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(kind = a.kind, system = %a.system, "alert sent")
                }
                Ok(r) => tracing::warn!(
                    kind = a.kind,
                    status = r.status().as_u16(),
                    "the alert receiver refused an alert"
                ),
                // The error may hold the URL, which may hold a token: not logged.
                Err(_) => tracing::warn!(kind = a.kind, "the alert receiver cannot be reached"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: &'static str, system: &str, count: u64) -> Alert {
        Alert {
            kind,
            system: system.into(),
            entity: None,
            count,
            message: String::new(),
        }
    }

    #[test]
    fn one_alert_per_kind_and_system_per_interval_with_the_held_ones_counted() {
        let mut l = Limiter::default();
        let t0: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        let min = |m: i64| t0 + jiff::SignedDuration::from_mins(m);
        let every = Duration::from_secs(600);
        assert_eq!(
            l.admit(alert("dead_letter", "shop", 1), every, t0)
                .map(|a| a.count),
            Some(1)
        );
        // Within ten minutes: held, counted.
        assert_eq!(
            l.admit(alert("dead_letter", "shop", 2), every, min(3)),
            None
        );
        assert_eq!(
            l.admit(alert("dead_letter", "shop", 4), every, min(9)),
            None
        );
        // Another system or kind is not held by it.
        assert!(l
            .admit(alert("dead_letter", "crm", 1), every, min(3))
            .is_some());
        assert!(l
            .admit(alert("conflict", "shop", 1), every, min(3))
            .is_some());
        // After the interval: out, with the six held back.
        assert_eq!(
            l.admit(alert("dead_letter", "shop", 1), every, min(10))
                .map(|a| a.count),
            Some(7)
        );
        assert_eq!(
            l.admit(alert("dead_letter", "shop", 1), every, min(11)),
            None
        );
        // A burst that stops is not lost: the held ones go out once the
        // interval has passed, without a new alert of the kind.
        assert!(l.due(every, min(15)).is_empty());
        let due = l.due(every, min(20));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].kind, due[0].count), ("dead_letter", 1));
        assert!(l.due(every, min(40)).is_empty());
    }
}
