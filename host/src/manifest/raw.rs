//! The manifest as written, before validation.

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
    pub lease_secs: Option<u64>,
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
    #[serde(default)]
    pub match_on: Vec<String>,
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
                f.write_str("a database path or URL, or a table { url = \"postgres://...\", password, tls, ca_file, pool_size } or { path = \"FILE.db\", create = true }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Database, E> {
                Ok(Database::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Database, A::Error> {
                PgOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Database::Table)
            }
        }
        d.deserialize_any(Grant)
    }
}

/// A database grant written as a table: the URL and the PostgreSQL
/// options, or an SQLite path and whether weir may create the file.
#[derive(Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PgOptions {
    #[serde(alias = "path")]
    pub url: String,
    pub create: Option<bool>,
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
    pub give_up_after: Option<String>,
    pub resync_after_failure: Option<String>,
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
    pub page_max_mib: Option<u64>,
    pub log_lines_per_call: Option<u64>,
    pub state_max_kib: Option<u64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SystemEntity {
    pub direction: Option<Direction>,
    pub primary_key: Option<String>,
    pub key_field: Option<String>,
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
