//! Validation of `[systems.NAME]`: the connector, its grants (databases,
//! directories, credentials), limits, polling, webhooks and the entities the
//! system holds with their mappings. Problems are recorded in this order.

use super::raw;
use super::validate::Validator;
use super::{
    Credential, Database, Direction, Entity, Limits, OnDelete, PgGrant, PgTls, Secret, System,
    SystemEntity, Webhooks, Window,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `key` followed by `more`.
fn under<'a>(key: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [key, more].concat()
}

/// How long a write may keep failing with passing errors by default.
const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How long a source may fail before it is read in full, by default.
const RESYNC_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Validator<'_> {
    /// One system; `entities` are the manifest's entities, validated.
    pub(super) fn system(&mut self, name: &str, raw: raw::System, entities: &[Entity]) -> System {
        let connector = self.connector(name, &raw.connector);
        let config = self.config(
            &["systems", name, "config"],
            raw.config
                .unwrap_or_else(|| toml::Value::Table(Default::default())),
        );
        let databases = self.databases(name, raw.databases);
        let directories = self.directories(name, raw.directories);
        let credentials = self.credentials(name, raw.credentials);
        let limits = self.limits(name, raw.limits.unwrap_or_default());
        let publish_token = raw
            .publish_token
            .as_ref()
            .map(|t| Secret(self.required_secret(&["systems", name, "publish_token"], t)));
        let bound = self.system_entities(name, &raw.entities, entities);
        let poll = self
            .poll(
                &["systems", name],
                raw.poll_every.as_deref(),
                raw.schedule.as_deref(),
            )
            .unwrap_or_default();
        let webhooks = raw.webhooks.map(|w| self.webhooks(name, w));
        let give_up_after = raw
            .give_up_after
            .as_deref()
            .and_then(|t| self.duration(&["systems", name, "give_up_after"], t))
            .unwrap_or(GIVE_UP_AFTER);
        let resync_after_failure = raw
            .resync_after_failure
            .as_deref()
            .and_then(|t| self.duration(&["systems", name, "resync_after_failure"], t))
            .unwrap_or(RESYNC_AFTER_FAILURE);
        System {
            poll,
            give_up_after,
            resync_after_failure,
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

    /// The connector component, which must exist.
    fn connector(&mut self, name: &str, path: &Path) -> PathBuf {
        let connector = self.base().join(path);
        if !connector.is_file() {
            self.error(
                &["systems", name, "connector"],
                format!("connector file '{}' not found", path.display()),
                "build the connector (see README) or correct the path; relative paths start at the manifest's folder",
            );
        }
        connector
    }

    /// The database grants; a grant with a problem is left out.
    fn databases(
        &mut self,
        name: &str,
        raw: BTreeMap<String, raw::Database>,
    ) -> BTreeMap<String, Database> {
        let mut databases = BTreeMap::new();
        for (grant, db) in raw {
            if let Some(db) = self.database(name, &grant, db) {
                databases.insert(grant, db);
            }
        }
        databases
    }

    /// The directory grants: existing directories under plain names.
    fn directories(
        &mut self,
        name: &str,
        raw: BTreeMap<String, PathBuf>,
    ) -> BTreeMap<String, PathBuf> {
        let base = self.base();
        let mut directories = BTreeMap::new();
        for (grant, dir) in raw {
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
        directories
    }

    /// The credentials the host adds to requests, secrets resolved.
    fn credentials(
        &mut self,
        name: &str,
        raw: BTreeMap<String, raw::Credential>,
    ) -> BTreeMap<String, Credential> {
        let mut credentials = BTreeMap::new();
        for (cred, c) in raw {
            let value =
                self.required_secret(&["systems", name, "credentials", &cred, "value"], &c.value);
            credentials.insert(
                cred,
                Credential {
                    header: c.header,
                    value,
                },
            );
        }
        credentials
    }

    /// `[systems.NAME.webhooks]`.
    fn webhooks(&mut self, name: &str, w: raw::Webhooks) -> Webhooks {
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
    }

    /// The entities the system holds, in the order of the manifest's
    /// entities; each must be declared.
    fn system_entities(
        &mut self,
        name: &str,
        raw: &BTreeMap<String, raw::SystemEntity>,
        entities: &[Entity],
    ) -> Vec<SystemEntity> {
        for entity_name in raw.keys() {
            if !entities.iter().any(|x| &x.name == entity_name) {
                self.error(
                    &["systems", name, "entities", entity_name],
                    format!("entity '{entity_name}' is not declared"),
                    format!("declare it with [entities.{entity_name}] or correct the name"),
                );
            }
        }
        let mut bound = Vec::new();
        for entity in entities {
            if let Some(e) = raw.get(&entity.name) {
                bound.push(self.system_entity(name, entity, e));
            }
        }
        bound
    }

    /// `[systems.NAME.entities.ENTITY]`.
    fn system_entity(
        &mut self,
        name: &str,
        entity: &Entity,
        e: &raw::SystemEntity,
    ) -> SystemEntity {
        let key = ["systems", name, "entities", &entity.name];
        let primary_key = self.primary_key(name, entity, e);
        let settings = self.config(
            &under(&key, &["settings"]),
            e.settings
                .clone()
                .unwrap_or_else(|| toml::Value::Table(Default::default())),
        );
        self.renames(&key, e);
        let on_delete = e.on_delete.unwrap_or(OnDelete::Delete);
        if on_delete == OnDelete::Soft && e.soft_delete_field.is_none() {
            self.error(
                &under(&key, &["on_delete"]),
                "on_delete = \"soft\" needs soft_delete_field",
                "add soft_delete_field = \"deleted\" (the field set to true)",
            );
        }
        let key_field = self.key_field(&key, e, &primary_key);
        let mapping = self.mapping(name, entity, e, &primary_key);
        let deliver_between = self.deliver_between(&key, e);
        let poll = self.poll(&key, e.poll_every.as_deref(), e.schedule.as_deref());
        SystemEntity {
            poll,
            on_delete,
            soft_delete_field: e.soft_delete_field.clone(),
            deliver_between,
            name: entity.name.clone(),
            direction: e.direction.unwrap_or(Direction::Both),
            primary_key,
            key_field,
            settings,
            mapping: std::sync::Arc::new(mapping),
        }
    }

    /// `key_field`: a field of its own, neither the primary key nor empty.
    fn key_field(
        &mut self,
        key: &[&str],
        e: &raw::SystemEntity,
        primary_key: &str,
    ) -> Option<String> {
        let field = e.key_field.clone()?;
        if field.is_empty() || field == primary_key {
            self.error(
                &under(key, &["key_field"]),
                format!("key_field = \"{field}\" must name a field other than the primary key"),
                "name a text column or field of the system's records that only weir writes, for example key_field = \"weir_key\"",
            );
            return None;
        }
        Some(field)
    }

    /// The system's primary key of the entity: its own, else the entity's.
    fn primary_key(&mut self, name: &str, entity: &Entity, e: &raw::SystemEntity) -> String {
        match e.primary_key.clone().or_else(|| entity.primary_key.clone()) {
            Some(pk) if !pk.is_empty() => pk,
            _ => {
                self.error(
                    &["systems", name, "entities", &entity.name],
                    format!("entity '{}' has no primary key for system '{name}'", entity.name),
                    format!("set primary_key = \"id\" (the field that identifies a record) under [entities.{}] or [systems.{name}.entities.{}]", entity.name, entity.name),
                );
                String::new()
            }
        }
    }

    /// No two fields are renamed to one canonical name.
    fn renames(&mut self, key: &[&str], e: &raw::SystemEntity) {
        let mut seen = BTreeMap::new();
        for (from, to) in &e.rename {
            if let Some(prev) = seen.insert(to.clone(), from.clone()) {
                self.error(
                    &under(key, &["rename"]),
                    format!("fields '{prev}' and '{from}' are both renamed to '{to}'"),
                    "give each field its own canonical name",
                );
            }
        }
    }

    /// The mapping of the entity to the system, from its `fields` tables,
    /// renames, ignored fields, `unmapped` and filter; a plain mapping when
    /// it has a problem.
    fn mapping(
        &mut self,
        name: &str,
        entity: &Entity,
        e: &raw::SystemEntity,
        primary_key: &str,
    ) -> crate::mapping::Mapping {
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
            primary_key: primary_key.to_string(),
            rename: e.rename.clone(),
            // weir's key is no canonical field.
            ignore: e.ignore.iter().chain(&e.key_field).cloned().collect(),
            fields: field_maps,
            unmapped: e.unmapped.unwrap_or_default().into(),
            sensitive: entity.sensitive.clone(),
            filter: e.filter.clone(),
            shared_key: entity
                .shared_key
                .then(|| entity.primary_key.clone().unwrap_or_else(|| "id".into())),
        };
        match crate::mapping::Mapping::new(spec) {
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
                crate::mapping::Mapping::simple(name, primary_key, BTreeMap::new(), Vec::new())
            }
        }
    }

    /// `deliver_between`: a daily UTC window.
    fn deliver_between(&mut self, key: &[&str], e: &raw::SystemEntity) -> Option<Window> {
        match e.deliver_between.as_deref().map(Window::parse) {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(why)) => {
                self.error(
                    &under(key, &["deliver_between"]),
                    why,
                    "write a daily UTC window as \"HH:MM-HH:MM\", for example \"02:00-04:00\"",
                );
                None
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
            return Some(self.sqlite(&key, &value, &options));
        }
        self.postgres(&key, &value, options)
    }

    /// An SQLite grant: a file path that exists, or `create = true`.
    fn sqlite(&mut self, key: &[&str], value: &str, options: &raw::PgOptions) -> Database {
        let plain = raw::PgOptions {
            url: options.url.clone(),
            create: options.create,
            ..Default::default()
        };
        if *options != plain {
            self.error(
                key,
                "options for a database that is not a postgres:// URL",
                "password, tls, ca_file and pool_size apply to PostgreSQL only; give an SQLite file as a plain string",
            );
        }
        let file = value.strip_prefix("sqlite:").unwrap_or(value);
        let path = self.base().join(file);
        let create = options.create.unwrap_or(false);
        if !create && !path.is_file() {
            self.error(
                key,
                format!("database file '{file}' does not exist"),
                format!("correct the path (relative paths start at the manifest's folder), or write {{ path = \"{file}\", create = true }} to let weir create an empty database"),
            );
        }
        Database::Sqlite { path, create }
    }

    /// A PostgreSQL grant: the URL `value` (secrets resolved) and its options.
    fn postgres(&mut self, key: &[&str], value: &str, options: raw::PgOptions) -> Option<Database> {
        if options.create.is_some() {
            self.error(
                &under(key, &["create"]),
                "`create` applies to SQLite files only",
                "remove it: weir does not create PostgreSQL databases",
            );
        }
        // The URL may hold a password: errors describe it without echoing it.
        let mut config = match value.parse::<tokio_postgres::Config>() {
            Ok(c) => c,
            // The parser's message names an option, never its value.
            Err(e) => {
                self.error(
                    key,
                    format!("not a valid PostgreSQL connection URL: {e}"),
                    "write it as postgres://USER@HOST:PORT/DATABASE (the password in `password`, from ${ENV} or ${file:PATH}); for TLS use `tls = \"require\"` (sslmode verify-ca/verify-full are not read: certificates are always verified)",
                );
                return None;
            }
        };
        if config.get_dbname().is_none() {
            self.error(
                key,
                "the PostgreSQL URL names no database",
                "end the URL with /DATABASE, for example postgres://weir@db.example.com/crm",
            );
        }
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if let Some(p) = &options.password {
            let password = self.required_secret(&under(key, &["password"]), p);
            config.password(password);
        }
        config.application_name("weir");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = self.pg_tls(key, options.tls.as_deref(), config.get_ssl_mode());
        let ca_file = options.ca_file.map(|f| self.base().join(f));
        if let Some(f) = &ca_file {
            if !f.is_file() {
                self.error(
                    &under(key, &["ca_file"]),
                    format!("certificate file '{}' not found", f.display()),
                    "give a PEM file of the CA that signed the server's certificate; relative paths start at the manifest's folder",
                );
            }
        }
        let pool_size = options.pool_size.unwrap_or(4);
        if pool_size == 0 {
            self.error(
                &under(key, &["pool_size"]),
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

    /// The grant's `tls`, or else the URL's `sslmode`.
    fn pg_tls(
        &mut self,
        key: &[&str],
        tls: Option<&str>,
        ssl_mode: tokio_postgres::config::SslMode,
    ) -> PgTls {
        match tls {
            None => match ssl_mode {
                tokio_postgres::config::SslMode::Disable => PgTls::Disable,
                tokio_postgres::config::SslMode::Require => PgTls::Require,
                _ => PgTls::Prefer,
            },
            Some("disable") => PgTls::Disable,
            Some("prefer") => PgTls::Prefer,
            Some("require") => PgTls::Require,
            Some(other) => {
                self.error(
                    &under(key, &["tls"]),
                    format!("'{other}' is not a TLS mode"),
                    "use \"disable\", \"prefer\" or \"require\" (certificates are always verified when TLS is used)",
                );
                PgTls::Prefer
            }
        }
    }

    /// The resource limits; each must be positive.
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
            page_max_bytes: positive("page_max_mib", raw.page_max_mib)
                .map_or(d.page_max_bytes, |m| (m as usize) << 20),
            log_lines_per_call: positive("log_lines_per_call", raw.log_lines_per_call)
                .map_or(d.log_lines_per_call, |n| n.min(u64::from(u32::MAX)) as u32),
            state_max_bytes: positive("state_max_kib", raw.state_max_kib)
                .map_or(d.state_max_bytes, |k| (k as usize) << 10),
        }
    }
}
