//! The manifest (`weir.toml`): systems, entities, grants and limits.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and every error names
//! the file, the line and the key, says what is wrong and how to fix it. After
//! [`Manifest::load`] returns, every path is absolute, every `${VAR}` secret is
//! resolved and every entity of every system has a primary key.

mod error;
mod fields;
mod secrets;

pub use error::{ManifestError, ManifestErrors};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// Where `weir run` sends alerts (`[alerts]`), if anywhere.
    pub alerts: Option<Alerts>,
    /// Canonical entities, in declaration order (the sync order).
    pub entities: Vec<Entity>,
    /// Systems, in declaration order.
    pub systems: Vec<System>,
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
    /// An SQLite file.
    Sqlite(PathBuf),
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
}

impl Default for Limits {
    /// 256 MiB of memory, 30 s per call, 30 s and 16 MiB per HTTP request,
    /// 100 000 rows and 30 s per SQL statement.
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(30),
            http_timeout: Duration::from_secs(30),
            http_max_response_bytes: 16 << 20,
            sql_max_rows: 100_000,
            sql_timeout: Duration::from_secs(30),
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

impl Manifest {
    /// Reads, parses and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ManifestErrors::one(
                ManifestError::new(path, None, "", format!("cannot read the manifest: {e}"))
                    .hint("pass the path of an existing weir.toml with --manifest"),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestErrors> {
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let raw: raw::Manifest = toml::from_str(text)
            .map_err(|e| ManifestErrors::one(ManifestError::from_toml(&file, text, &e)))?;
        let mut v = Validator {
            file: &file,
            errors: Vec::new(),
            locator: error::Locator::new(text),
        };
        let manifest = v.manifest(raw);
        if v.errors.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestErrors(v.errors))
        }
    }

    /// The directory of the manifest file; relative paths are resolved against it.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// The line of a dotted key in the manifest file, if it can be found
    /// (for messages about the manifest found after loading it).
    pub fn line_of(&self, key: &[&str]) -> Option<usize> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        error::Locator::new(&text).line_of(key)
    }

    /// An entity by name.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// A system by name.
    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }
}

struct Validator<'a> {
    file: &'a Path,
    errors: Vec<ManifestError>,
    locator: error::Locator,
}

impl Validator<'_> {
    fn error(&mut self, key: &[&str], message: impl Into<String>, hint: impl Into<String>) {
        let line = self.locator.line_of(key);
        self.errors
            .push(ManifestError::new(self.file, line, &key.join("."), message).hint(hint));
    }

    fn base(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn secret(&mut self, key: &[&str], value: &str) -> String {
        match secrets::expand(value, &self.base()) {
            Ok(v) => v,
            Err(e) => {
                let hint = e.hint();
                self.error(key, e.to_string(), hint);
                String::new()
            }
        }
    }

    /// A database grant: an SQLite path (`sqlite:` prefix optional), a
    /// `postgres://` URL, or a table with `url` and PostgreSQL options.
    fn database(&mut self, system: &str, grant: &str, raw: raw::Database) -> Option<Database> {
        let key = ["systems", system, "databases", grant];
        let options = match raw {
            raw::Database::Url(url) => raw::PgOptions {
                url,
                ..Default::default()
            },
            raw::Database::Table(options) => options,
        };
        let value = self.secret(&key, &options.url);
        let is_postgres = value.starts_with("postgres://") || value.starts_with("postgresql://");
        let lower = value.to_ascii_lowercase();
        if !is_postgres && (lower.contains("://") || lower.contains("password=")) {
            // Not echoed: a connection string may hold a password.
            self.error(
                &key,
                "a connection string that is not a postgres:// URL",
                "write PostgreSQL grants as postgres://USER@HOST:PORT/DATABASE (lower case), the password in `password`; SQLite grants are file paths",
            );
            return None;
        }
        if !is_postgres {
            let plain = raw::PgOptions {
                url: options.url.clone(),
                ..Default::default()
            };
            if options != plain {
                self.error(
                    &key,
                    "options for a database that is not a postgres:// URL",
                    "password, tls, ca_file and pool_size apply to PostgreSQL only; give an SQLite file as a plain string",
                );
            }
            let path = self
                .base()
                .join(value.strip_prefix("sqlite:").unwrap_or(&value));
            return Some(Database::Sqlite(path));
        }
        // The URL may hold a password: errors describe it without echoing it.
        let mut config = match value.parse::<tokio_postgres::Config>() {
            Ok(c) => c,
            // The parser's message names an option, never its value.
            Err(e) => {
                self.error(
                    &key,
                    format!("not a valid PostgreSQL connection URL: {e}"),
                    "write it as postgres://USER@HOST:PORT/DATABASE (the password in `password`, from ${ENV} or ${file:PATH}); for TLS use `tls = \"require\"` (sslmode verify-ca/verify-full are not read: certificates are always verified)",
                );
                return None;
            }
        };
        if config.get_dbname().is_none() {
            self.error(
                &key,
                "the PostgreSQL URL names no database",
                "end the URL with /DATABASE, for example postgres://weir@db.example.com/crm",
            );
        }
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if let Some(p) = &options.password {
            let password = self.secret(&[&key[..], &["password"]].concat(), p);
            config.password(password);
        }
        config.application_name("weir");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = match options.tls.as_deref() {
            None => match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => PgTls::Disable,
                tokio_postgres::config::SslMode::Require => PgTls::Require,
                _ => PgTls::Prefer,
            },
            Some("disable") => PgTls::Disable,
            Some("prefer") => PgTls::Prefer,
            Some("require") => PgTls::Require,
            Some(other) => {
                self.error(
                    &[&key[..], &["tls"]].concat(),
                    format!("'{other}' is not a TLS mode"),
                    "use \"disable\", \"prefer\" or \"require\" (certificates are always verified when TLS is used)",
                );
                PgTls::Prefer
            }
        };
        let ca_file = options.ca_file.map(|f| self.base().join(f));
        if let Some(f) = &ca_file {
            if !f.is_file() {
                self.error(
                    &[&key[..], &["ca_file"]].concat(),
                    format!("certificate file '{}' not found", f.display()),
                    "give a PEM file of the CA that signed the server's certificate; relative paths start at the manifest's folder",
                );
            }
        }
        let pool_size = options.pool_size.unwrap_or(4);
        if pool_size == 0 {
            self.error(
                &[&key[..], &["pool_size"]].concat(),
                "a pool of 0 connections",
                "give at least 1 (the default is 4)",
            );
        }
        Some(Database::Postgres(Arc::new(PgGrant {
            config,
            tls,
            ca_file,
            pool_size: pool_size.max(1),
        })))
    }

    fn alerts(&mut self, raw: raw::Alerts) -> Alerts {
        let url = self.secret(&["alerts", "url"], &raw.url);
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            self.error(
                &["alerts", "url"],
                "the alert receiver is not an http:// or https:// URL",
                "give the full URL of the receiver, for example \"https://hooks.example.com/weir\"",
            );
        }
        let headers = raw
            .headers
            .into_iter()
            .map(|(k, v)| {
                let value = self.secret(&["alerts", "headers", &k], &v);
                (k, value)
            })
            .collect();
        let min_interval = raw
            .min_interval
            .and_then(|t| self.duration(&["alerts", "min_interval"], &t))
            .unwrap_or(Duration::from_secs(600));
        let failing_for = raw
            .failing_for
            .and_then(|t| self.duration(&["alerts", "failing_for"], &t))
            .unwrap_or(Duration::from_secs(900));
        Alerts {
            url,
            headers,
            min_interval,
            failing_for,
        }
    }

    fn manifest(&mut self, raw: raw::Manifest) -> Manifest {
        let base = self.base();
        let (store, audit_retention_days) = match raw.store {
            Some(s) => (
                s.path.unwrap_or_else(|| PathBuf::from("weir.db")),
                s.audit_retention_days.unwrap_or(30),
            ),
            None => (PathBuf::from("weir.db"), 30),
        };
        let store = base.join(store);
        let alerts = raw.alerts.map(|a| self.alerts(a));
        let audit_retention_days = (audit_retention_days > 0).then_some(audit_retention_days);
        if raw.entities.is_empty() {
            self.error(&["entities"], "the manifest declares no entity", "add an [entities.NAME] table, for example [entities.contacts] with primary_key = \"id\"");
        }
        if raw.systems.is_empty() {
            self.error(
                &["systems"],
                "the manifest declares no system",
                "add a [systems.NAME] table with a connector",
            );
        }
        let system_names: Vec<&String> = raw.systems.keys().collect();
        let mut entities: Vec<Entity> = Vec::new();
        for (name, e) in &raw.entities {
            for s in &e.priority {
                if !system_names.contains(&s) {
                    self.error(
                        &["entities", name, "priority"],
                        format!("system '{s}' is not declared"),
                        "list systems declared under [systems.NAME]",
                    );
                }
            }
            for (field, s) in &e.owners {
                if !system_names.contains(&s) {
                    self.error(
                        &["entities", name, "owners", field],
                        format!("system '{s}' is not declared"),
                        "name a system declared under [systems.NAME]",
                    );
                }
            }
            for (field, target) in &e.references {
                if !entities.iter().any(|x| &x.name == target) {
                    let hint = if raw.entities.contains_key(target) {
                        format!("declare [entities.{target}] before [entities.{name}]: entities sync in declaration order")
                    } else {
                        format!("declare [entities.{target}] or correct the name")
                    };
                    self.error(
                        &["entities", name, "references", field],
                        format!("entity '{target}' is not declared before '{name}'"),
                        hint,
                    );
                }
            }
            let conflict = match e.conflict {
                Some(c) => c,
                None if !e.priority.is_empty() => ConflictPolicy::Priority,
                None => ConflictPolicy::LastWriterWins,
            };
            if conflict == ConflictPolicy::Priority && e.priority.is_empty() {
                self.error(
                    &["entities", name, "conflict"],
                    "conflict = \"priority\" needs a priority list",
                    "add priority = [\"system-a\", \"system-b\"] (highest first)",
                );
            }
            if conflict == ConflictPolicy::FieldOwner && e.owners.is_empty() {
                self.error(
                    &["entities", name, "conflict"],
                    "conflict = \"field-owner\" needs owners",
                    "add owners = { field = \"system\" }",
                );
            }
            if let Some(p) = e.max_delete_percent {
                if !(0.0..=100.0).contains(&p) {
                    self.error(
                        &["entities", name, "max_delete_percent"],
                        format!("{p} is not a percentage"),
                        "give a number from 0 to 100",
                    );
                }
            }
            if let Some(l) = e.max_changes_per_user {
                if l.count == 0 || l.window_secs == 0 {
                    self.error(
                        &["entities", name, "max_changes_per_user"],
                        "count and window_secs must be greater than 0",
                        "for example { count = 100, window_secs = 3600 }",
                    );
                }
            }
            let mut rules = BTreeMap::new();
            for (field, raw) in &e.fields {
                match raw.build() {
                    Ok(r) => {
                        rules.insert(field.clone(), r);
                    }
                    Err(p) => self.error(
                        &["entities", name, "fields", field, p.key],
                        p.message,
                        p.hint,
                    ),
                }
            }
            entities.push(Entity {
                name: name.clone(),
                primary_key: e.primary_key.clone(),
                conflict,
                priority: e.priority.clone(),
                owners: e.owners.clone(),
                references: e.references.clone(),
                rules,
                sensitive: e
                    .fields
                    .iter()
                    .filter(|(_, r)| r.sensitive)
                    .map(|(f, _)| f.clone())
                    .collect(),
                max_delete_percent: e.max_delete_percent,
                shared_key: e.shared_key,
                max_changes_per_user: e.max_changes_per_user.map(|l| UserLimit {
                    count: l.count,
                    window: Duration::from_secs(l.window_secs),
                }),
            });
        }
        let systems = raw
            .systems
            .into_iter()
            .map(|(name, s)| self.system(&name, s, &entities))
            .collect();
        Manifest {
            file: self.file.to_path_buf(),
            store,
            audit_retention_days,
            alerts,
            entities,
            systems,
        }
    }

    fn system(&mut self, name: &str, raw: raw::System, entities: &[Entity]) -> System {
        let base = self.base();
        let connector = base.join(&raw.connector);
        if !connector.is_file() {
            self.error(
                &["systems", name, "connector"],
                format!("connector file '{}' not found", raw.connector.display()),
                "build the connector (see README) or correct the path; relative paths start at the manifest's folder",
            );
        }
        let config = self.config(
            &["systems", name, "config"],
            raw.config
                .unwrap_or_else(|| toml::Value::Table(Default::default())),
        );
        let mut databases = BTreeMap::new();
        for (grant, db) in raw.databases {
            if let Some(db) = self.database(name, &grant, db) {
                databases.insert(grant, db);
            }
        }
        let mut directories = BTreeMap::new();
        for (grant, dir) in raw.directories {
            let path = base.join(&dir);
            if !path.is_dir() {
                self.error(
                    &["systems", name, "directories", &grant],
                    format!("directory '{}' does not exist", dir.display()),
                    "create it or correct the path; relative paths start at the manifest's folder",
                );
            }
            if grant.is_empty() || grant.contains(['/', '\\']) || grant == "." || grant == ".." {
                self.error(
                    &["systems", name, "directories", &grant],
                    format!("'{grant}' is not a valid grant name"),
                    "use a plain name such as \"data\": the connector sees the directory as /data",
                );
            }
            directories.insert(grant, path);
        }
        let mut credentials = BTreeMap::new();
        for (cred, c) in raw.credentials {
            let value = self.secret(&["systems", name, "credentials", &cred, "value"], &c.value);
            credentials.insert(
                cred,
                Credential {
                    header: c.header,
                    value,
                },
            );
        }
        let limits = self.limits(name, raw.limits.unwrap_or_default());
        let publish_token = raw
            .publish_token
            .as_ref()
            .map(|t| Secret(self.secret(&["systems", name, "publish_token"], t)));
        let mut bound = Vec::new();
        for entity_name in raw.entities.keys() {
            if !entities.iter().any(|x| &x.name == entity_name) {
                self.error(
                    &["systems", name, "entities", entity_name],
                    format!("entity '{entity_name}' is not declared"),
                    format!("declare it with [entities.{entity_name}] or correct the name"),
                );
            }
        }
        for entity in entities {
            let Some(e) = raw.entities.get(&entity.name) else {
                continue;
            };
            let primary_key = match e.primary_key.clone().or_else(|| entity.primary_key.clone()) {
                Some(pk) if !pk.is_empty() => pk,
                _ => {
                    self.error(
                        &["systems", name, "entities", &entity.name],
                        format!("entity '{}' has no primary key for system '{name}'", entity.name),
                        format!("set primary_key = \"id\" (the field that identifies a record) under [entities.{}] or [systems.{name}.entities.{}]", entity.name, entity.name),
                    );
                    String::new()
                }
            };
            let settings = self.config(
                &["systems", name, "entities", &entity.name, "settings"],
                e.settings
                    .clone()
                    .unwrap_or_else(|| toml::Value::Table(Default::default())),
            );
            let mut seen = BTreeMap::new();
            for (from, to) in &e.rename {
                if let Some(prev) = seen.insert(to.clone(), from.clone()) {
                    self.error(
                        &["systems", name, "entities", &entity.name, "rename"],
                        format!("fields '{prev}' and '{from}' are both renamed to '{to}'"),
                        "give each field its own canonical name",
                    );
                }
            }
            let on_delete = e.on_delete.unwrap_or(OnDelete::Delete);
            if on_delete == OnDelete::Soft && e.soft_delete_field.is_none() {
                self.error(
                    &["systems", name, "entities", &entity.name, "on_delete"],
                    "on_delete = \"soft\" needs soft_delete_field",
                    "add soft_delete_field = \"deleted\" (the field set to true)",
                );
            }
            let mut field_maps = BTreeMap::new();
            for (field, raw) in &e.fields {
                match raw.build() {
                    Ok(f) => {
                        field_maps.insert(field.clone(), f);
                    }
                    Err(p) => self.error(
                        &[
                            "systems",
                            name,
                            "entities",
                            &entity.name,
                            "fields",
                            field,
                            p.key,
                        ],
                        p.message,
                        p.hint,
                    ),
                }
            }
            let spec = crate::mapping::MappingSpec {
                system: name.to_string(),
                primary_key: primary_key.clone(),
                rename: e.rename.clone(),
                ignore: e.ignore.clone(),
                fields: field_maps,
                unmapped: e.unmapped.unwrap_or_default().into(),
                sensitive: entity.sensitive.clone(),
                filter: e.filter.clone(),
                shared_key: entity
                    .shared_key
                    .then(|| entity.primary_key.clone().unwrap_or_else(|| "id".into())),
            };
            let mapping = match crate::mapping::Mapping::new(spec) {
                Ok(m) => m,
                Err(err) => {
                    let key = if err.field == "filter" {
                        "filter".to_string()
                    } else {
                        format!("fields.{}", err.field)
                    };
                    let mut path = vec!["systems", name, "entities", &entity.name];
                    path.extend(key.split('.'));
                    self.error(
                        &path,
                        err.message,
                        "see the README for template and filter syntax (minijinja)",
                    );
                    crate::mapping::Mapping::simple(name, &primary_key, BTreeMap::new(), Vec::new())
                }
            };
            let deliver_between = match e.deliver_between.as_deref().map(Window::parse) {
                None => None,
                Some(Ok(w)) => Some(w),
                Some(Err(why)) => {
                    self.error(
                        &["systems", name, "entities", &entity.name, "deliver_between"],
                        why,
                        "write a daily UTC window as \"HH:MM-HH:MM\", for example \"02:00-04:00\"",
                    );
                    None
                }
            };
            let poll = self.poll(
                &["systems", name, "entities", &entity.name],
                e.poll_every.as_deref(),
                e.schedule.as_deref(),
            );
            bound.push(SystemEntity {
                poll,
                on_delete,
                soft_delete_field: e.soft_delete_field.clone(),
                deliver_between,
                name: entity.name.clone(),
                direction: e.direction.unwrap_or(Direction::Both),
                primary_key,
                settings,
                mapping: std::sync::Arc::new(mapping),
            });
        }
        let poll = self
            .poll(
                &["systems", name],
                raw.poll_every.as_deref(),
                raw.schedule.as_deref(),
            )
            .unwrap_or_default();
        let webhooks = raw.webhooks.map(|w| {
            let key = |k| ["systems", name, "webhooks", k];
            Webhooks {
                reconcile_every: w
                    .reconcile_every
                    .and_then(|t| self.duration(&key("reconcile_every"), &t))
                    .unwrap_or(Duration::from_secs(15 * 60)),
                max_silence: w
                    .max_silence
                    .and_then(|t| self.duration(&key("max_silence"), &t)),
            }
        });
        System {
            poll,
            webhooks,
            name: name.to_string(),
            connector,
            config,
            databases,
            directories,
            allowed_hosts: raw.allowed_hosts,
            allow_private_network: raw.allow_private_network,
            credentials,
            limits,
            publish_token,
            delivery_id_header: raw.delivery_id_header.map(|h| h.to_ascii_lowercase()),
            entities: bound,
        }
    }

    fn limits(&mut self, system: &str, raw: raw::Limits) -> Limits {
        let d = Limits::default();
        let mut positive = |key: &str, v: Option<u64>| -> Option<u64> {
            match v {
                Some(0) => {
                    self.error(
                        &["systems", system, "limits", key],
                        format!("{key} must be greater than 0"),
                        "remove the key to use the default, or give a positive number",
                    );
                    None
                }
                other => other,
            }
        };
        Limits {
            memory_bytes: positive("memory_mib", raw.memory_mib)
                .map_or(d.memory_bytes, |m| (m as usize) << 20),
            call_timeout: positive("call_timeout_secs", raw.call_timeout_secs)
                .map_or(d.call_timeout, Duration::from_secs),
            http_timeout: positive("http_timeout_secs", raw.http_timeout_secs)
                .map_or(d.http_timeout, Duration::from_secs),
            http_max_response_bytes: positive("http_max_response_mib", raw.http_max_response_mib)
                .map_or(d.http_max_response_bytes, |m| (m as usize) << 20),
            sql_max_rows: positive("sql_max_rows", raw.sql_max_rows.map(u64::from))
                .map_or(d.sql_max_rows, |n| n as u32),
            sql_timeout: positive("sql_timeout_secs", raw.sql_timeout_secs)
                .map_or(d.sql_timeout, Duration::from_secs),
        }
    }

    /// Parses a duration such as "30s", "15m" or "1h 30m".
    fn duration(&mut self, key: &[&str], text: &str) -> Option<Duration> {
        match text.parse::<jiff::SignedDuration>() {
            Ok(d) if d.is_positive() => Some(d.unsigned_abs()),
            _ => {
                self.error(
                    key,
                    format!("'{text}' is not a positive duration"),
                    "write it as \"30s\", \"15m\", \"2h\" or \"1h 30m\"",
                );
                None
            }
        }
    }

    /// The polling of a system or entity: `poll_every` or `schedule`, not both.
    fn poll(&mut self, at: &[&str], every: Option<&str>, schedule: Option<&str>) -> Option<Poll> {
        let key = |k: &'static str| -> Vec<&str> {
            let mut key = at.to_vec();
            key.push(k);
            key
        };
        match (every, schedule) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.error(
                    &key("schedule"),
                    "both poll_every and schedule are set",
                    "keep poll_every for polling at an interval, or schedule for polling at set times",
                );
                None
            }
            (Some(every), None) => self.duration(&key("poll_every"), every).map(Poll::Every),
            (None, Some(cron)) => {
                let parser = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Optional)
                    .build();
                match parser.parse(cron) {
                    Ok(c) => Some(Poll::Cron(Box::new(c))),
                    Err(e) => {
                        self.error(
                            &key("schedule"),
                            format!("'{cron}' is not a cron expression: {e}"),
                            "write minute hour day-of-month month day-of-week in UTC, for example \"0 2 * * *\" for 02:00 every night (an optional first field gives seconds)",
                        );
                        None
                    }
                }
            }
        }
    }

    /// Converts a free-form TOML table to JSON, resolving `${VAR}` secrets in strings.
    fn config(&mut self, key: &[&str], value: toml::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            toml::Value::String(s) => J::String(self.secret(key, &s)),
            toml::Value::Integer(i) => J::from(i),
            toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            toml::Value::Boolean(b) => J::Bool(b),
            toml::Value::Datetime(d) => J::String(d.to_string()),
            toml::Value::Array(a) => J::Array(a.into_iter().map(|v| self.config(key, v)).collect()),
            toml::Value::Table(t) => J::Object(
                t.into_iter()
                    .map(|(k, v)| {
                        let mut path: Vec<&str> = key.to_vec();
                        path.push(&k);
                        let v = self.config(&path, v);
                        (k, v)
                    })
                    .collect(),
            ),
        }
    }
}

/// The manifest as written, before validation.
mod raw {
    use super::Direction;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Manifest {
        pub store: Option<Store>,
        pub alerts: Option<Alerts>,
        #[serde(default)]
        pub entities: indexmap::IndexMap<String, Entity>,
        #[serde(default)]
        pub systems: indexmap::IndexMap<String, System>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Store {
        pub path: Option<PathBuf>,
        pub audit_retention_days: Option<u32>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Entity {
        pub primary_key: Option<String>,
        pub conflict: Option<super::ConflictPolicy>,
        #[serde(default)]
        pub priority: Vec<String>,
        #[serde(default)]
        pub owners: BTreeMap<String, String>,
        #[serde(default)]
        pub references: BTreeMap<String, String>,
        #[serde(default)]
        pub fields: BTreeMap<String, super::fields::RawRule>,
        pub max_delete_percent: Option<f64>,
        pub max_changes_per_user: Option<UserLimit>,
        #[serde(default)]
        pub shared_key: bool,
    }

    #[derive(Deserialize, Clone, Copy)]
    #[serde(deny_unknown_fields)]
    pub struct UserLimit {
        pub count: u32,
        pub window_secs: u64,
    }

    /// A database grant: a path or URL, or a table with a URL and options.
    pub enum Database {
        Url(String),
        Table(PgOptions),
    }

    // By hand rather than `untagged`, so that a wrong key in the table form
    // is named in the error instead of "did not match any variant".
    impl<'de> Deserialize<'de> for Database {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Grant;
            impl<'de> serde::de::Visitor<'de> for Grant {
                type Value = Database;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a database path or URL, or a table { url = \"postgres://...\", password, tls, ca_file, pool_size }")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Database, E> {
                    Ok(Database::Url(v.to_string()))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<Database, A::Error> {
                    PgOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                        .map(Database::Table)
                }
            }
            d.deserialize_any(Grant)
        }
    }

    /// A database grant written as a table: the URL and the PostgreSQL options.
    #[derive(Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct PgOptions {
        pub url: String,
        pub password: Option<String>,
        pub tls: Option<String>,
        pub ca_file: Option<PathBuf>,
        pub pool_size: Option<usize>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct System {
        pub connector: PathBuf,
        pub config: Option<toml::Value>,
        #[serde(default)]
        pub databases: BTreeMap<String, Database>,
        #[serde(default)]
        pub directories: BTreeMap<String, PathBuf>,
        #[serde(default)]
        pub allowed_hosts: Vec<String>,
        #[serde(default)]
        pub allow_private_network: bool,
        #[serde(default)]
        pub credentials: BTreeMap<String, Credential>,
        pub limits: Option<Limits>,
        pub publish_token: Option<String>,
        pub delivery_id_header: Option<String>,
        pub poll_every: Option<String>,
        pub schedule: Option<String>,
        pub webhooks: Option<Webhooks>,
        #[serde(default)]
        pub entities: BTreeMap<String, SystemEntity>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Alerts {
        pub url: String,
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        pub min_interval: Option<String>,
        pub failing_for: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Webhooks {
        pub reconcile_every: Option<String>,
        pub max_silence: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Credential {
        pub header: String,
        pub value: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub memory_mib: Option<u64>,
        pub call_timeout_secs: Option<u64>,
        pub http_timeout_secs: Option<u64>,
        pub http_max_response_mib: Option<u64>,
        pub sql_max_rows: Option<u32>,
        pub sql_timeout_secs: Option<u64>,
    }

    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct SystemEntity {
        pub direction: Option<Direction>,
        pub primary_key: Option<String>,
        #[serde(default)]
        pub rename: BTreeMap<String, String>,
        #[serde(default)]
        pub ignore: Vec<String>,
        pub settings: Option<toml::Value>,
        pub on_delete: Option<super::OnDelete>,
        pub soft_delete_field: Option<String>,
        pub deliver_between: Option<String>,
        pub poll_every: Option<String>,
        pub schedule: Option<String>,
        #[serde(default)]
        pub fields: BTreeMap<String, super::fields::RawFieldMap>,
        pub unmapped: Option<super::fields::RawUnmapped>,
        pub filter: Option<String>,
    }
}

#[cfg(test)]
mod tests;
