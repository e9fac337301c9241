//! Outgoing alerts of `weir run` (`[alerts]` in the manifest): after each
//! pass, new conflicts, new dead letters, systems failing for longer than
//! `failing_for` and webhooks that turned degraded are posted as JSON to the
//! receiver. [`Limiter`] (pure) lets at most one alert of a kind and system
//! through per `min_interval` and counts the ones it holds back into the
//! next.

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

/// At most one alert per kind and system per interval; the rest are counted.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: BTreeMap<(&'static str, String), Timestamp>,
    held: BTreeMap<(&'static str, String), u64>,
}

impl Limiter {
    /// The alert to send now (its count raised by those held back since the
    /// last one), or none when one of its kind and system went out less than
    /// `interval` ago.
    pub fn admit(&mut self, mut alert: Alert, interval: Duration, now: Timestamp) -> Option<Alert> {
        let key = (alert.kind, alert.system.clone());
        let recent = self.sent.get(&key).is_some_and(|at| {
            now.duration_since(*at) < jiff::SignedDuration::try_from(interval).unwrap_or_default()
        });
        if recent {
            *self.held.entry(key).or_default() += alert.count;
            return None;
        }
        alert.count += self.held.remove(&key).unwrap_or(0);
        self.sent.insert(key, now);
        Some(alert)
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
        alerts
            .into_iter()
            .filter_map(|a| self.limiter.admit(a, self.config.min_interval, now))
            .collect()
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
    }
}
