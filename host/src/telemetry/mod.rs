//! What weir tells its operators: logs (text or JSON) and Prometheus metrics.
//!
//! Every internal event worth counting is a struct in `events` whose
//! `emit()` both logs it and counts it, so a log line and its metric can
//! never disagree. Metric names are `weir_<name>_<unit>`; counters end in
//! `_total`. The gauges that describe the store (outbox depth, dead letters,
//! open conflicts, source lag) are read from it when `/metrics` is scraped.

pub mod events;

use crate::store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Every series `/metrics` can show, with its help text: the documented
/// list (README) and what the compliance test checks.
pub const SERIES: &[(&str, &str)] = &[
    (
        "weir_records_read_total",
        "records accepted from a source, by system and entity",
    ),
    (
        "weir_records_written_total",
        "records created or updated in a target, by system and entity",
    ),
    (
        "weir_records_deleted_total",
        "records deleted (or soft-deleted) in a target, by system and entity",
    ),
    (
        "weir_echoes_suppressed_total",
        "changes recognised as weir's own writes coming back, by system and entity",
    ),
    (
        "weir_conflicts_total",
        "concurrent edits resolved by the conflict policy, by system and entity",
    ),
    (
        "weir_dead_letters_total",
        "records a target refused, sent to the dead letters, by system and entity",
    ),
    (
        "weir_delivery_retries_total",
        "writes that failed for a while and wait in the outbox for a retry, by system and entity",
    ),
    (
        "weir_webhooks_received_total",
        "webhook requests accepted, by system",
    ),
    (
        "weir_webhooks_refused_total",
        "webhook requests refused (bad secret or signature, malformed body), by system",
    ),
    (
        "weir_connector_call_duration_seconds",
        "time spent in each connector call, by system and call",
    ),
    ("weir_passes_total", "sync passes run by this process"),
    ("weir_outbox_depth", "deliveries waiting in the outbox"),
    ("weir_dead_letters", "records in the dead letters"),
    (
        "weir_open_conflicts",
        "conflicts nobody decided on yet (see /ui/conflicts)",
    ),
    (
        "weir_lag_seconds",
        "seconds since a source was last polled without failure, by system and entity",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder (once; later calls return the
/// same handle). Without it, events still log and their counts go nowhere.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("weir_connector_call_duration_seconds".into()),
                &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a host embedding weir);
        // then this handle renders nothing, which is all we can do.
        let _ = metrics::set_global_recorder(recorder);
        for (name, help) in SERIES {
            if name.ends_with("_total") {
                metrics::describe_counter!(*name, *help);
            } else if name.ends_with("_seconds") && name.contains("duration") {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
            } else {
                metrics::describe_gauge!(*name, *help);
            }
        }
        handle
    })
}

/// The Prometheus text of every series, with the store's gauges read now.
pub fn render(store: &Store) -> String {
    let handle = install();
    if let Ok(state) = store.gauges() {
        metrics::gauge!("weir_outbox_depth").set(state.outbox as f64);
        metrics::gauge!("weir_dead_letters").set(state.dead_letters as f64);
        metrics::gauge!("weir_open_conflicts").set(state.open_conflicts as f64);
        let now = jiff::Timestamp::now();
        for (system, entity, at) in state.polls {
            if let Ok(at) = at.parse::<jiff::Timestamp>() {
                let lag = now.duration_since(at).as_secs_f64().max(0.0);
                metrics::gauge!("weir_lag_seconds", "system" => system, "entity" => entity)
                    .set(lag);
            }
        }
    }
    handle.render()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, message).
    Json,
}

/// Sets up logging to stderr; `WEIR_LOG` is the filter (default `warn`).
/// Text lines are coloured only on a terminal (and without a non-empty
/// `NO_COLOR`), so that a log redirected to a file holds no escape codes.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
