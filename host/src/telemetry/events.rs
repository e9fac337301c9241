//! Internal events. Each `emit()` logs the event (at debug level unless it
//! needs attention) and counts it under the series named in
//! [`super::SERIES`].

use std::time::Duration;

/// What one page of a source did.
pub struct RecordsRead<'a> {
    pub system: &'a str,
    pub entity: &'a str,
    /// Records accepted.
    pub read: u64,
    /// Of which weir's own writes coming back.
    pub echoes: u64,
    /// Of which concurrent edits.
    pub conflicts: u64,
    /// Records refused on their way in, new to the dead letters (a record
    /// refused again as it was is not counted again).
    pub dead_letters: u64,
}

impl RecordsRead<'_> {
    pub fn emit(&self) {
        tracing::debug!(
            system = self.system,
            entity = self.entity,
            read = self.read,
            echoes = self.echoes,
            conflicts = self.conflicts,
            dead_letters = self.dead_letters,
            "records read"
        );
        let labels = [
            ("system", self.system.to_string()),
            ("entity", self.entity.to_string()),
        ];
        metrics::counter!("weir_records_read_total", &labels).increment(self.read);
        metrics::counter!("weir_echoes_suppressed_total", &labels).increment(self.echoes);
        metrics::counter!("weir_conflicts_total", &labels).increment(self.conflicts);
        metrics::counter!("weir_dead_letters_total", &labels).increment(self.dead_letters);
    }
}

/// What one delivery batch to a target did.
pub struct RecordsDelivered<'a> {
    pub system: &'a str,
    pub entity: &'a str,
    pub written: u64,
    pub deleted: u64,
    /// Writes that failed for a while and wait for a retry.
    pub retries: u64,
    /// Records refused and sent to the dead letters.
    pub dead_letters: u64,
}

impl RecordsDelivered<'_> {
    pub fn emit(&self) {
        if self.dead_letters > 0 {
            tracing::warn!(
                system = self.system,
                entity = self.entity,
                dead_letters = self.dead_letters,
                "records refused by the target, sent to the dead letters"
            );
        }
        tracing::debug!(
            system = self.system,
            entity = self.entity,
            written = self.written,
            deleted = self.deleted,
            retries = self.retries,
            "records delivered"
        );
        let labels = [
            ("system", self.system.to_string()),
            ("entity", self.entity.to_string()),
        ];
        metrics::counter!("weir_records_written_total", &labels).increment(self.written);
        metrics::counter!("weir_records_deleted_total", &labels).increment(self.deleted);
        metrics::counter!("weir_delivery_retries_total", &labels).increment(self.retries);
        metrics::counter!("weir_dead_letters_total", &labels).increment(self.dead_letters);
    }
}

/// A webhook request was accepted (`refused: None`) or refused.
pub struct WebhookHandled<'a> {
    pub system: &'a str,
    /// The status and reason of a refusal.
    pub refused: Option<(u16, &'a str)>,
}

impl WebhookHandled<'_> {
    pub fn emit(&self) {
        let system = self.system.to_string();
        match self.refused {
            None => {
                tracing::debug!(system = self.system, "webhook accepted");
                metrics::counter!("weir_webhooks_received_total", "system" => system).increment(1);
            }
            Some((status, why)) => {
                tracing::warn!(system = self.system, status, "webhook refused: {why}");
                metrics::counter!("weir_webhooks_refused_total", "system" => system).increment(1);
            }
        }
    }
}

/// A call into a connector returned (successfully or not).
pub struct ConnectorCalled<'a> {
    pub system: &'a str,
    /// The export called: `read`, `changes`, `write`, `lookup`, `handle`, ...
    pub call: &'static str,
    pub took: Duration,
}

impl ConnectorCalled<'_> {
    pub fn emit(&self) {
        tracing::trace!(
            system = self.system,
            call = self.call,
            seconds = self.took.as_secs_f64(),
            "connector call"
        );
        metrics::histogram!(
            "weir_connector_call_duration_seconds",
            "system" => self.system.to_string(),
            "call" => self.call
        )
        .record(self.took.as_secs_f64());
    }
}

/// A sync pass ended.
pub struct PassFinished {
    pub run_id: i64,
    pub took: Duration,
}

impl PassFinished {
    pub fn emit(&self) {
        tracing::debug!(
            run_id = self.run_id,
            seconds = self.took.as_secs_f64(),
            "pass finished"
        );
        metrics::counter!("weir_passes_total").increment(1);
    }
}
