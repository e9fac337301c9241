//! Validation: the manifest as written ([`raw`]) becomes the manifest as
//! checked ([`Manifest`]), every problem found on the way recorded with its
//! key and line, in the order of the steps below. `systems.rs` holds the
//! steps of `[systems.NAME]`.

use super::error::{self, ManifestError, ManifestErrors};
use super::raw;
use super::Poll;
use super::{secrets, Alerts, ConflictPolicy, Entity, Manifest, UserLimit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collects the problems of one manifest while building it.
pub(super) struct Validator<'a> {
    file: &'a Path,
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestError>,
    locator: error::Locator,
}

impl<'a> Validator<'a> {
    /// A validator for manifest `text`, read from `file`.
    pub(super) fn new(file: &'a Path, text: &str) -> Self {
        Validator {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
            locator: error::Locator::new(text),
        }
    }

    /// Every problem found, or the warnings.
    pub(super) fn finish(self) -> Result<Vec<ManifestError>, ManifestErrors> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ManifestErrors(self.errors))
        }
    }
}

impl Validator<'_> {
    pub(super) fn error(
        &mut self,
        key: &[&str],
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let line = self.locator.line_of(key);
        self.errors
            .push(ManifestError::new(self.file, line, &key.join("."), message).hint(hint));
    }

    /// Something that works but is probably not what the user meant.
    pub(super) fn warning(
        &mut self,
        key: &[&str],
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let line = self.locator.line_of(key);
        self.warnings
            .push(ManifestError::new(self.file, line, &key.join("."), message).hint(hint));
    }

    pub(super) fn base(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// A secret that must not be empty: a publish token, a credential, a
    /// password. An empty one would let anyone in, or send nothing.
    pub(super) fn required_secret(&mut self, key: &[&str], value: &str) -> String {
        let before = self.errors.len();
        let v = self.secret(key, value);
        if v.is_empty() && self.errors.len() == before {
            let hint = if value.contains("${") {
                format!("the value it reads ({value}) is empty: set it to the secret")
            } else {
                "give the secret, best as ${VAR} or ${file:PATH} so that the manifest holds none"
                    .to_string()
            };
            self.error(key, "the secret is empty", hint);
        }
        v
    }

    pub(super) fn secret(&mut self, key: &[&str], value: &str) -> String {
        match secrets::expand(value, &self.base()) {
            Ok(v) => v,
            Err(e) => {
                let hint = e.hint();
                self.error(key, e.to_string(), hint);
                String::new()
            }
        }
    }

    /// The whole manifest: `[store]`, `[alerts]`, the entities in
    /// declaration order, then the systems.
    pub(super) fn manifest(&mut self, raw: raw::Manifest) -> Manifest {
        let lease = self.lease(raw.store.as_ref().and_then(|s| s.lease_secs));
        let (store, audit_retention_days) = self.store(raw.store);
        let alerts = raw.alerts.map(|a| self.alerts(a));
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
            let entity = self.entity(name, e, &system_names, &entities, &raw.entities);
            entities.push(entity);
        }
        let systems: Vec<super::System> = raw
            .systems
            .into_iter()
            .map(|(name, s)| self.system(&name, s, &entities))
            .collect();
        for e in &entities {
            if !systems.iter().any(|s| s.entity(&e.name).is_some()) {
                self.warning(
                    &["entities", &e.name],
                    format!("no system holds entity '{}': nothing is read or written for it", e.name),
                    format!("add [systems.NAME.entities.{}] to the systems that hold it, or remove the entity", e.name),
                );
            }
        }
        Manifest {
            warnings: Vec::new(),
            file: self.file.to_path_buf(),
            store,
            audit_retention_days,
            lease,
            alerts,
            entities,
            systems,
        }
    }

    /// `[store] lease_secs`: how long the writer lease lasts (default 30 s,
    /// at least 3: it is renewed every third of it).
    fn lease(&mut self, secs: Option<u64>) -> std::time::Duration {
        let secs = secs.unwrap_or(30);
        if secs < 3 {
            self.error(
                &["store", "lease_secs"],
                format!("lease_secs = {secs} is too short"),
                "give at least 3 (seconds): the lease is renewed every third of it",
            );
        }
        std::time::Duration::from_secs(secs.max(3))
    }

    /// `[store]`: the central store's file (default `weir.db`, beside the
    /// manifest) and how many days audit rows are kept (default 30; 0, or
    /// none, keeps them forever).
    fn store(&self, raw: Option<raw::Store>) -> (PathBuf, Option<u32>) {
        let (store, audit_retention_days) = match raw {
            Some(s) => (
                s.path.unwrap_or_else(|| PathBuf::from("weir.db")),
                s.audit_retention_days.unwrap_or(30),
            ),
            None => (PathBuf::from("weir.db"), 30),
        };
        let audit_retention_days = (audit_retention_days > 0).then_some(audit_retention_days);
        (self.base().join(store), audit_retention_days)
    }

    /// `[entities.NAME]`; `systems` are the declared systems, `before` the
    /// entities declared before this one and `declared` all of them.
    fn entity(
        &mut self,
        name: &str,
        e: &raw::Entity,
        systems: &[&String],
        before: &[Entity],
        declared: &indexmap::IndexMap<String, raw::Entity>,
    ) -> Entity {
        self.entity_systems(name, e, systems);
        self.references(name, e, before, declared);
        let conflict = self.conflict(name, e);
        self.entity_limits(name, e);
        let rules = self.rules(name, e);
        self.match_on(name, e);
        Entity {
            name: name.to_string(),
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
            match_on: e.match_on.clone(),
            max_changes_per_user: e.max_changes_per_user.map(|l| UserLimit {
                count: l.count,
                window: Duration::from_secs(l.window_secs),
            }),
        }
    }

    /// `match_on`: field names, each once; a sensitive field cannot be one
    /// (its value is compared with what other systems hold).
    fn match_on(&mut self, name: &str, e: &raw::Entity) {
        let mut seen = std::collections::BTreeSet::new();
        for field in &e.match_on {
            if field.trim().is_empty() {
                self.error(
                    &["entities", name, "match_on"],
                    "an empty field name".to_string(),
                    "list canonical field names, for example match_on = [\"email\"]",
                );
            } else if !seen.insert(field.as_str()) {
                self.error(
                    &["entities", name, "match_on"],
                    format!("field '{field}' is listed twice"),
                    "list each field once",
                );
            } else if e.fields.get(field).is_some_and(|r| r.sensitive) {
                self.error(
                    &["entities", name, "match_on"],
                    format!("field '{field}' is sensitive"),
                    "match on fields that may be compared across systems, or drop `sensitive` from this one",
                );
            } else if e.references.contains_key(field) {
                self.error(
                    &["entities", name, "match_on"],
                    format!("field '{field}' is a reference"),
                    "match on the record's own fields (a reference is an id of another record)",
                );
            }
        }
    }

    /// The systems an entity's `priority` and `owners` name are declared.
    fn entity_systems(&mut self, name: &str, e: &raw::Entity, systems: &[&String]) {
        for s in &e.priority {
            if !systems.contains(&s) {
                self.error(
                    &["entities", name, "priority"],
                    format!("system '{s}' is not declared"),
                    "list systems declared under [systems.NAME]",
                );
            }
        }
        for (field, s) in &e.owners {
            if !systems.contains(&s) {
                self.error(
                    &["entities", name, "owners", field],
                    format!("system '{s}' is not declared"),
                    "name a system declared under [systems.NAME]",
                );
            }
        }
    }

    /// Every entity an entity refers to is declared before it.
    fn references(
        &mut self,
        name: &str,
        e: &raw::Entity,
        before: &[Entity],
        declared: &indexmap::IndexMap<String, raw::Entity>,
    ) {
        for (field, target) in &e.references {
            if !before.iter().any(|x| &x.name == target) {
                let hint = if declared.contains_key(target) {
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
    }

    /// The conflict policy (default: `priority` with a priority list, else
    /// `last-writer-wins`) and what it needs.
    fn conflict(&mut self, name: &str, e: &raw::Entity) -> ConflictPolicy {
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
        conflict
    }

    /// `max_delete_percent` and `max_changes_per_user`.
    fn entity_limits(&mut self, name: &str, e: &raw::Entity) {
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
    }

    /// The rules of the entity's canonical fields.
    fn rules(&mut self, name: &str, e: &raw::Entity) -> BTreeMap<String, crate::mapping::Rules> {
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
        rules
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

    /// Parses a duration such as "30s", "15m" or "1h 30m".
    pub(super) fn duration(&mut self, key: &[&str], text: &str) -> Option<Duration> {
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
    pub(super) fn poll(
        &mut self,
        at: &[&str],
        every: Option<&str>,
        schedule: Option<&str>,
    ) -> Option<Poll> {
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
    pub(super) fn config(&mut self, key: &[&str], value: toml::Value) -> serde_json::Value {
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
