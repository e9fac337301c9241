//! The validated manifest: what the rest of weir reads.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub file: PathBuf,
    /// The central store's SQLite file.
    pub store: PathBuf,
    /// How many days audit rows are kept (`[store] audit_retention_days`,
    /// default 30); none keeps them forever (0 in the manifest).
    pub audit_retention_days: Option<u32>,
    /// How long the store's writer lease lasts unless renewed (`[store]
    /// lease_secs`, default 30 s): a process that dies holds the store up
    /// to this long; a live one renews its lease every third of it.
    pub lease: std::time::Duration,
    /// Where `weir run` sends alerts (`[alerts]`), if anywhere.
    pub alerts: Option<Alerts>,
    /// Canonical entities, in declaration order (the sync order).
    pub entities: Vec<Entity>,
    /// Systems, in declaration order.
    pub systems: Vec<System>,
    /// What validation found odd but not wrong (an entity no system holds),
    /// for the command line to print.
    pub warnings: Vec<super::ManifestError>,
}

/// A canonical entity.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Its name, for example `contacts`.
    pub name: String,
    /// The default primary-key field of every system.
    pub primary_key: Option<String>,
    /// How concurrent edits of one record in several systems are resolved.
    pub conflict: ConflictPolicy,
    /// Systems by priority, highest first (for `priority`, and for fields
    /// without an owner under `field-owner`).
    pub priority: Vec<String>,
    /// Field → the system that owns it (for `field-owner`).
    pub owners: BTreeMap<String, String>,
    /// Canonical field → the entity it refers to; values are translated
    /// through the id links of that entity.
    pub references: BTreeMap<String, String>,
    /// Rules of canonical fields, checked before every write.
    pub rules: BTreeMap<String, crate::mapping::Rules>,
    /// Canonical fields that never leave the system they are in.
    pub sensitive: Vec<String>,
    /// A pass that would delete more than this share (percent) of the
    /// entity's records in one system holds those deletes back and asks.
    pub max_delete_percent: Option<f64>,
    /// Changes by one user beyond `count` within `window` are held for review.
    pub max_changes_per_user: Option<UserLimit>,
    /// Every system keys a record by the same value (a natural key, or ids
    /// copied from one system into the others): the key is also a canonical
    /// field, named after `primary_key` (default `id`), and a record is created
    /// in a system under that key.
    pub shared_key: bool,
    /// The canonical fields that recognise the same real-world record in
    /// several systems (for example `["email"]`), compared after the
    /// mappings' conversions with `mapping::match_key`'s normalisation;
    /// empty: records are recognised by their links alone.
    pub match_on: Vec<String>,
}

/// A per-user change limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserLimit {
    /// Changes allowed per window.
    pub count: u32,
    /// The window.
    pub window: Duration,
}

/// How concurrent edits are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The change from the system higher in `priority` wins.
    Priority,
    /// The change that arrives last wins (the default).
    LastWriterWins,
    /// Each field takes the value of its owner system (`owners`).
    FieldOwner,
}

impl ConflictPolicy {
    /// The manifest's name of the policy.
    pub fn name(self) -> &'static str {
        match self {
            ConflictPolicy::Priority => "priority",
            ConflictPolicy::LastWriterWins => "last-writer-wins",
            ConflictPolicy::FieldOwner => "field-owner",
        }
    }
}

/// What a target does when a record is deleted at its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    /// Delete it too (the default).
    Delete,
    /// Keep it and set `soft_delete_field` to true.
    Soft,
    /// Keep it unchanged.
    Ignore,
}

/// Which way records of one entity flow for one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// weir reads from the system only.
    Read,
    /// weir writes to the system only.
    Write,
    /// Both.
    Both,
}

impl Direction {
    /// Whether weir reads this entity from the system.
    pub fn reads(self) -> bool {
        matches!(self, Direction::Read | Direction::Both)
    }
    /// Whether weir writes this entity to the system.
    pub fn writes(self) -> bool {
        matches!(self, Direction::Write | Direction::Both)
    }
}

/// One system: a connector component and what it may reach.
#[derive(Debug, Clone)]
pub struct System {
    /// Its name in the manifest.
    pub name: String,
    /// The connector component (`.wasm`).
    pub connector: PathBuf,
    /// The `config` table as a JSON object, secrets resolved.
    pub config: serde_json::Value,
    /// Granted databases: grant name → database.
    pub databases: BTreeMap<String, Database>,
    /// Granted directories: guest name → host directory.
    pub directories: BTreeMap<String, PathBuf>,
    /// Host names the connector may send HTTP requests to.
    pub allowed_hosts: Vec<String>,
    /// Whether HTTP requests may go to loopback and private addresses.
    pub allow_private_network: bool,
    /// Credentials the host injects into HTTP requests: name → (header, value).
    pub credentials: BTreeMap<String, Credential>,
    /// Resource limits.
    pub limits: Limits,
    /// The bearer token that authorises pushing changes of this system to a
    /// running daemon (`POST /publish/{system}/{entity}`) and asking it to
    /// refresh the system; without one, the daemon refuses both.
    pub publish_token: Option<Secret>,
    /// The header of this system's webhooks that identifies a delivery
    /// (lower case), for dropping repeated deliveries.
    pub delivery_id_header: Option<String>,
    /// How long a write to this system may keep failing with passing
    /// errors (the system down, time-outs) before it goes to the dead
    /// letters with its last error (`give_up_after`, default 24 hours).
    pub give_up_after: Duration,
    /// How long the polls of a source of this system may fail before its
    /// next poll that works reads it in full (RESYNC):
    /// `resync_after_failure`, default 1 hour.
    pub resync_after_failure: Duration,
    /// When `weir run` polls the system's entities (each may override it).
    pub poll: Poll,
    /// Set when the system sends webhooks: how their health changes polling.
    pub webhooks: Option<Webhooks>,
    /// The entities this system holds, in the order of the manifest's entities.
    pub entities: Vec<SystemEntity>,
}

/// When `weir run` polls a source.
#[derive(Debug, Clone, Default)]
pub enum Poll {
    /// At the service's `--interval`.
    #[default]
    Default,
    /// At this interval (`poll_every`).
    Every(Duration),
    /// At the times of a cron expression in UTC (`schedule`), for example
    /// nightly; `weir refresh` still polls on demand.
    Cron(Box<croner::Cron>),
}

/// How a system's webhooks drive polling. While they are healthy the system
/// is polled only every `reconcile_every`; it is degraded, and polled at its
/// normal interval, when no webhook arrived for `max_silence` or when a poll
/// finds changes that no webhook announced. A webhook arriving after a poll
/// that found nothing new makes it healthy again.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// The slow polling interval while webhooks are healthy (default 15 min).
    pub reconcile_every: Duration,
    /// How long without any webhook before the system counts as degraded.
    pub max_silence: Option<Duration>,
}

/// Outgoing alerts of `weir run`: a JSON POST to `url` for new conflicts,
/// new dead letters, a system failing for longer than `failing_for` and
/// webhooks turning degraded; at most one per kind and system every
/// `min_interval` (the ones held back are counted in the next).
#[derive(Clone)]
pub struct Alerts {
    /// The receiver (a secret: it often carries a token).
    pub url: String,
    /// Extra request headers, for example `Authorization` (secrets).
    pub headers: Vec<(String, String)>,
    /// The least time between two alerts of one kind and system (default 10 min).
    pub min_interval: Duration,
    /// How long a system must fail before it is alerted (default 15 min).
    pub failing_for: Duration,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("url", &"<redacted>")
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("min_interval", &self.min_interval)
            .field("failing_for", &self.failing_for)
            .finish()
    }
}

/// A granted database.
#[derive(Debug, Clone)]
pub enum Database {
    /// An SQLite file; `create` lets the host create it, empty, when it is
    /// missing (`{ path = "x.db", create = true }`), else a missing file is
    /// an error rather than a new empty database.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Whether a missing file is created.
        create: bool,
    },
    /// A PostgreSQL database, reached through a pool the host keeps.
    Postgres(Arc<PgGrant>),
}

/// A granted PostgreSQL database. The connection settings never reach the
/// connector, which names the grant only.
#[derive(Clone)]
pub struct PgGrant {
    /// The connection settings (`postgres://user@host:port/db?...`), password included.
    pub config: tokio_postgres::Config,
    /// Whether and how connections use TLS.
    pub tls: PgTls,
    /// Extra trusted root certificates (PEM), for servers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The most connections the pool opens (default 4).
    pub pool_size: usize,
}

impl std::fmt::Debug for PgGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGrant")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("tls", &self.tls)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// TLS for PostgreSQL connections. When TLS is used, the server's certificate
/// is always verified (against the public roots and `ca_file`) and must name the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    /// Plain connections only (`disable`).
    Disable,
    /// TLS when the server offers it (`prefer`, the default). Unlike libpq's
    /// `prefer`, the certificate is verified: a server with a private CA
    /// needs `ca_file`, or `tls = "disable"` on a trusted network.
    Prefer,
    /// TLS or no connection (`require`).
    Require,
}

/// A daily window in UTC, minutes since midnight; it may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, inclusive.
    pub from: u16,
    /// End, exclusive.
    pub to: u16,
}

impl Window {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let minutes = |t: &str| -> Result<u16, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("'{t}' is not HH:MM"))?;
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| format!("'{t}' is not HH:MM"))?,
                m.parse().map_err(|_| format!("'{t}' is not HH:MM"))?,
            );
            if h > 23 || m > 59 {
                return Err(format!("'{t}' is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("'{text}' is not a window HH:MM-HH:MM"))?;
        let w = Window {
            from: minutes(a)?,
            to: minutes(b)?,
        };
        if w.from == w.to {
            return Err(format!("'{text}' is an empty window"));
        }
        Ok(w)
    }

    /// Whether a minute of the day (UTC) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

/// A secret value whose `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A credential the host adds to outgoing requests.
#[derive(Clone)]
pub struct Credential {
    /// The header to set, for example `Authorization`.
    pub header: String,
    /// The header value (a secret).
    pub value: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Resource limits of one system's connector.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap.
    pub memory_bytes: usize,
    /// Time limit of one call into the connector (CPU in the guest and waits in host calls alike).
    pub call_timeout: Duration,
    /// Time limit of one HTTP request.
    pub http_timeout: Duration,
    /// Largest HTTP response body accepted.
    pub http_max_response_bytes: usize,
    /// Largest number of rows one SQL query may return.
    pub sql_max_rows: u32,
    /// Time limit of one SQL statement.
    pub sql_timeout: Duration,
    /// Largest page (or batch of changes) one call may return, in bytes of
    /// record text.
    pub page_max_bytes: usize,
    /// Most log lines one call may write.
    pub log_lines_per_call: u32,
    /// Largest value the connector may keep in its state.
    pub state_max_bytes: usize,
}

impl Default for Limits {
    /// 256 MiB of memory, 30 s per call, 30 s and 16 MiB per HTTP request,
    /// 100 000 rows and 30 s per SQL statement, 64 MiB per page, 1000 log
    /// lines per call, 1 MiB per state value.
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(30),
            http_timeout: Duration::from_secs(30),
            http_max_response_bytes: 16 << 20,
            sql_max_rows: 100_000,
            sql_timeout: Duration::from_secs(30),
            page_max_bytes: 64 << 20,
            log_lines_per_call: 1000,
            state_max_bytes: 1 << 20,
        }
    }
}

/// An entity as bound to one system.
#[derive(Debug, Clone)]
pub struct SystemEntity {
    /// The canonical entity's name.
    pub name: String,
    /// Which way records flow.
    pub direction: Direction,
    /// The system's primary-key field.
    pub primary_key: String,
    /// A field of the system's records where weir keeps its own key (the
    /// golden record's id) of each record it creates there: a create whose
    /// outcome a crash left unknown is then found by that key, however the
    /// record was edited there since. Not a canonical field.
    pub key_field: Option<String>,
    /// The mapping to and from the canonical record: renames, ignored fields,
    /// conversions, value maps, defaults, computed fields, unmapped fields,
    /// sensitive fields and the filter.
    pub mapping: std::sync::Arc<crate::mapping::Mapping>,
    /// Connector-specific settings (a JSON object).
    pub settings: serde_json::Value,
    /// What to do here when the record is deleted at its source.
    pub on_delete: OnDelete,
    /// The field set to true by a soft delete.
    pub soft_delete_field: Option<String>,
    /// Batch delivery: writes to this system wait in the outbox (several
    /// changes of a record become one write) until this daily UTC window;
    /// without one, delivery is real time.
    pub deliver_between: Option<Window>,
    /// When `weir run` polls this entity, if not as the system says.
    pub poll: Option<Poll>,
}

impl System {
    /// The binding of `entity` to this system, if it holds it.
    pub fn entity(&self, entity: &str) -> Option<&SystemEntity> {
        self.entities.iter().find(|e| e.name == entity)
    }
}
