//! The system `config` table and each entity's `settings`, parsed and checked
//! before anything is sent (every key is documented in the crate docs). Pure:
//! no I/O.

use crate::ops::{Ops, RawOp, RawOps};
use crate::pagination::Ends;
use crate::query::SINCE;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use weir_sdk::{ConnectorError, Context, EntityBinding, Operation, Result};

/// The JSON Schema of the system `config` table, returned by `describe`.
pub(crate) const CONFIG_SCHEMA: &str = include_str!("schema.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    base_url: String,
    credential: Option<String>,
    #[serde(default = "default_pagination")]
    pagination: String,
    #[serde(default = "default_page_param")]
    page_param: String,
    #[serde(default = "default_first_page")]
    first_page: u64,
    #[serde(default = "default_offset_param")]
    offset_param: String,
    #[serde(default = "default_cursor_param")]
    cursor_param: String,
    next_cursor: Option<String>,
    #[serde(default = "default_limit_param")]
    limit_param: String,
    page_size: Option<u32>,
    last_page_flag: Option<String>,
    more_path: Option<String>,
    total_path: Option<String>,
    next_link: Option<String>,
    envelope: Option<String>,
    item_envelope: Option<String>,
    #[serde(default = "default_missing_status")]
    missing_status: Vec<u16>,
    webhook: Option<RawWebhook>,
}

fn default_pagination() -> String {
    "page".into()
}
fn default_page_param() -> String {
    "_page".into()
}
fn default_first_page() -> u64 {
    1
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_limit_param() -> String {
    "_limit".into()
}
fn default_missing_status() -> Vec<u16> {
    vec![404]
}

/// How a collection is paged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pagination {
    /// `page_param` counts pages from `first`.
    Page { param: String, first: u64 },
    /// `offset_param` counts records from 0.
    Offset { param: String },
    /// `param` carries the cursor found at the dotted path `next` of the last response.
    Cursor { param: String, next: String },
    /// The `Link` header's `rel="next"` URL is followed.
    Link,
}

/// The system configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub base_url: String,
    pub credential: Option<String>,
    pub pagination: Pagination,
    pub limit_param: String,
    pub page_size: Option<u32>,
    /// What says a page is the last, besides the style's own signal.
    pub ends: Ends,
    pub envelope: String,
    pub item_envelope: String,
    pub missing_status: Vec<u16>,
    pub webhook: Option<Webhook>,
}

impl Config {
    pub(crate) fn parse(ctx: &Context) -> Result<Config> {
        let raw: RawConfig = weir_sdk::config(ctx)?;
        let bad = |message: String| {
            ConnectorError::invalid_config(format!("system '{}': {message}", ctx.system))
        };
        let pagination = match raw.pagination.as_str() {
            "page" => Pagination::Page {
                param: raw.page_param,
                first: raw.first_page,
            },
            "offset" => Pagination::Offset {
                param: raw.offset_param,
            },
            "cursor" => Pagination::Cursor {
                param: raw.cursor_param,
                next: raw.next_cursor.ok_or_else(|| {
                    bad("pagination = \"cursor\" needs next_cursor, the dotted path of the next cursor in a list response (for example \"meta.next_cursor\")".into())
                })?,
            },
            "link" => Pagination::Link,
            other => {
                return Err(bad(format!(
                    "pagination = \"{other}\" is not a pagination style; use \"page\", \"offset\", \"cursor\" or \"link\""
                )))
            }
        };
        let scheme = raw.base_url.to_ascii_lowercase();
        if !scheme.starts_with("http://") && !scheme.starts_with("https://") {
            return Err(bad(format!(
                "base_url = \"{}\" is not an http or https URL; write it in full, for example \"https://api.example.com\"",
                raw.base_url
            )));
        }
        if raw.page_size == Some(0) {
            return Err(bad(
                "page_size = 0: set it to the largest page the API returns, or leave it out".into(),
            ));
        }
        let ends = Ends {
            last_page_flag: raw.last_page_flag,
            more_path: raw.more_path,
            total_path: raw.total_path,
            next_link: raw.next_link,
        };
        if ends.total_path.is_some()
            && matches!(pagination, Pagination::Cursor { .. } | Pagination::Link)
        {
            return Err(bad(format!(
                "total_path works with pagination = \"page\" or \"offset\", not \"{}\"; use last_page_flag or more_path to end a cursor or link listing",
                raw.pagination
            )));
        }
        if ends.next_link.is_some() && pagination != Pagination::Link {
            return Err(bad(format!(
                "next_link is the next page's URL of pagination = \"link\", but pagination is \"{}\"; set pagination = \"link\" or use more_path",
                raw.pagination
            )));
        }
        let webhook = raw
            .webhook
            .map(|w| Webhook::new(w).map_err(|m| bad(format!("webhook.{m}"))))
            .transpose()?;
        Ok(Config {
            base_url: raw.base_url.trim_end_matches('/').to_string(),
            credential: raw.credential,
            pagination,
            limit_param: raw.limit_param,
            page_size: raw.page_size,
            ends,
            envelope: raw.envelope.unwrap_or_default(),
            item_envelope: raw.item_envelope.unwrap_or_default(),
            missing_status: raw.missing_status,
            webhook,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    secret: String,
    #[serde(default = "default_secret_header")]
    secret_header: String,
    #[serde(default = "default_event")]
    event: String,
    collection: Option<String>,
    id: Option<String>,
    ids: Option<String>,
    rows: Option<String>,
    payload: Option<String>,
    #[serde(default = "default_partial")]
    partial: bool,
    ops: Option<BTreeMap<String, String>>,
}

fn default_secret_header() -> String {
    "x-webhook-secret".into()
}
fn default_event() -> String {
    "event".into()
}
fn default_partial() -> bool {
    true
}

/// How webhook requests are checked and read (the system's `webhook` table).
pub(crate) struct Webhook {
    pub secret: String,
    /// Lower case, as the host hands headers over.
    pub secret_header: String,
    pub event: String,
    pub collection: Option<String>,
    pub id: Option<String>,
    pub ids: Option<String>,
    /// Dotted path of an array of rows, each announcing changes.
    pub rows: Option<String>,
    pub payload: Option<String>,
    pub partial: bool,
    /// Event-name suffixes and what they do.
    pub ops: Vec<(String, Operation)>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("secret", &"<redacted>")
            .field("secret_header", &self.secret_header)
            .field("event", &self.event)
            .field("collection", &self.collection)
            .field("id", &self.id)
            .field("ids", &self.ids)
            .field("rows", &self.rows)
            .field("payload", &self.payload)
            .field("partial", &self.partial)
            .field("ops", &self.ops)
            .finish()
    }
}

impl Webhook {
    /// Checks the table; an error names the key (after `webhook.`) and the fix.
    fn new(raw: RawWebhook) -> std::result::Result<Webhook, String> {
        if raw.secret.is_empty() {
            return Err("secret is empty: set it to the shared secret the system sends".into());
        }
        if raw.id.is_none() && raw.ids.is_none() {
            return Err("id or webhook.ids is needed: the dotted path of the record id (for example \"key\") or of an array of ids (for example \"keys\") in the payload".into());
        }
        if !raw.partial && raw.payload.is_none() && raw.rows.is_none() {
            return Err("partial = false needs webhook.payload, the dotted path of the record fields (or webhook.rows, whose rows are the records); or leave partial = true to read each record by id".into());
        }
        let ops = match raw.ops {
            None => vec![
                ("create".to_string(), Operation::Upsert),
                ("update".to_string(), Operation::Upsert),
                ("delete".to_string(), Operation::Delete),
            ],
            Some(ops) => ops
                .into_iter()
                .map(|(suffix, op)| match op.as_str() {
                    "upsert" => Ok((suffix, Operation::Upsert)),
                    "delete" => Ok((suffix, Operation::Delete)),
                    other => Err(format!(
                        "ops.{suffix} = \"{other}\" is not an operation; use \"upsert\" or \"delete\""
                    )),
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        Ok(Webhook {
            secret: raw.secret,
            secret_header: raw.secret_header.to_ascii_lowercase(),
            event: raw.event,
            collection: raw.collection,
            id: raw.id,
            ids: raw.ids,
            rows: raw.rows,
            payload: raw.payload,
            partial: raw.partial,
            ops,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    path: Option<String>,
    updated_at: Option<Value>,
    since_param: Option<String>,
    change_filter: Option<String>,
    change_params: Option<String>,
    lookback_secs: Option<Value>,
    update_method: Option<String>,
    webhook_name: Option<String>,
    deletes: Option<Deletes>,
    find: Option<String>,
    get: Option<RawOp>,
    create: Option<RawOp>,
    update: Option<RawOp>,
    delete: Option<RawOp>,
}

/// How `changes` asks for records changed since a time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChangedSince {
    /// A query parameter set to the time (`since_param`).
    Param(String),
    /// A query template with `{since}` (`change_filter`).
    Filter(String),
}

/// The feed of deleted records (entity setting `deletes`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deletes {
    /// The feed's path under `base_url`.
    pub path: String,
    /// The query, a template with `{since}`.
    pub query: String,
    /// Dotted path of the deleted record's id in an entry.
    #[serde(default = "default_delete_id")]
    pub id: String,
    /// Dotted path of the time of the delete in an entry.
    pub at: String,
    /// Dotted path of the entries array; default: the system's `envelope`.
    pub envelope: Option<String>,
}

fn default_delete_id() -> String {
    "id".into()
}

/// An entity's settings.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The collection path under `base_url`, with a leading `/`.
    pub path: String,
    /// The fields holding a record's change time, first non-null wins.
    pub updated_at: Vec<String>,
    pub changed_since: Option<ChangedSince>,
    pub change_params: Option<String>,
    /// How far before the last change time seen change reads ask from, in
    /// seconds: changes committed late with earlier times are found.
    pub lookback_secs: u32,
    /// How one record is read, created, updated and deleted.
    pub ops: Ops,
    pub webhook_name: Option<String>,
    pub deletes: Option<Deletes>,
    /// How records are looked for by field values: a query pair template
    /// with `{field}` and `{value}`, one pair per field (`find`).
    pub find: Option<String>,
}

impl Settings {
    pub(crate) fn parse(entity: &EntityBinding) -> Result<Settings> {
        let raw: RawSettings = match entity.settings.trim() {
            "" | "null" => RawSettings::default(),
            _ => weir_sdk::settings(entity)?,
        };
        let bad = |message: String| {
            ConnectorError::invalid_config(format!("entity '{}': {message}", entity.name))
        };
        let updated_at = match raw.updated_at {
            None => Vec::new(),
            Some(Value::String(field)) => vec![field],
            Some(Value::Array(fields)) if !fields.is_empty() => fields
                .into_iter()
                .map(|f| match f {
                    Value::String(field) => Ok(field),
                    other => Err(bad(format!("updated_at lists {other}; write field names as strings"))),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(bad(format!(
                    "updated_at = {other}: write a field name (\"updatedAt\") or an array of them, first non-null wins ([\"date_updated\", \"date_created\"])"
                )))
            }
        };
        let changed_since = match (raw.since_param, raw.change_filter) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "since_param and change_filter are both set; keep one (change_filter for a query template with {since})".into(),
                ))
            }
            (Some(param), None) => Some(ChangedSince::Param(param)),
            (None, Some(filter)) if !filter.contains(SINCE) => {
                return Err(bad(format!(
                    "change_filter = \"{filter}\" has no {SINCE} placeholder; put {SINCE} where the time of the last change seen goes"
                )))
            }
            (None, Some(filter)) => Some(ChangedSince::Filter(filter)),
            (None, None) => None,
        };
        let update_method = match raw.update_method.as_deref().map(str::to_ascii_uppercase) {
            None => None,
            Some(m) if m == "PATCH" || m == "PUT" => Some(m),
            Some(_) => {
                return Err(bad(format!(
                    "update_method = \"{}\": use \"PATCH\" or \"PUT\"",
                    raw.update_method.unwrap_or_default()
                )))
            }
        };
        let lookback_secs = match raw.lookback_secs {
            None => 0,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => n,
                None => {
                    return Err(bad(format!(
                        "lookback_secs = {v}: write a whole number of seconds, 0 or more (for example 60)"
                    )))
                }
            },
        };
        if lookback_secs > 0 && changed_since.is_none() {
            return Err(bad(
                "lookback_secs is set but changes are not read: set since_param or change_filter, and updated_at".into(),
            ));
        }
        if let Some(d) = &raw.deletes {
            if !d.query.contains(SINCE) {
                return Err(bad(format!(
                    "deletes.query = \"{}\" has no {SINCE} placeholder; select the entries after the last delete seen, for example \"filter[timestamp][_gt]={SINCE}\"",
                    d.query
                )));
            }
            if changed_since.is_none() {
                return Err(bad(
                    "deletes is set but changes are not read: set since_param or change_filter, and updated_at".into(),
                ));
            }
        }
        let path = match raw.path {
            Some(p) if p.starts_with('/') => p,
            Some(p) => format!("/{p}"),
            None => format!("/{}", entity.name),
        };
        let ops = RawOps {
            get: raw.get,
            create: raw.create,
            update: raw.update,
            delete: raw.delete,
        };
        let ops = Ops::new(&path, update_method, ops).map_err(bad)?;
        Ok(Settings {
            path,
            updated_at,
            changed_since,
            change_params: raw.change_params,
            lookback_secs,
            ops,
            webhook_name: raw.webhook_name,
            deletes: raw.deletes,
            find: raw.find,
        })
    }

    /// Whether `changes` can report this entity's changes.
    pub(crate) fn incremental(&self) -> bool {
        self.changed_since.is_some() && !self.updated_at.is_empty()
    }

    /// The name a webhook payload may give this entity besides its own name
    /// and `webhook_name`: its path without the leading `/` and any `items/`
    /// prefix (`/items/contacts` → `contacts`).
    pub(crate) fn path_name(&self) -> String {
        let trimmed = self.path.trim_start_matches('/');
        trimmed
            .strip_prefix("items/")
            .unwrap_or(trimmed)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(config: Value) -> Context {
        Context {
            system: "api".into(),
            config: config.to_string(),
            dry_run: false,
        }
    }

    fn entity(settings: Value) -> EntityBinding {
        EntityBinding {
            name: "contacts".into(),
            primary_key: "id".into(),
            settings: settings.to_string(),
        }
    }

    fn config_error(config: Value) -> String {
        Config::parse(&ctx(config)).unwrap_err().message
    }

    fn settings_error(settings: Value) -> String {
        Settings::parse(&entity(settings)).unwrap_err().message
    }

    #[test]
    fn defaults_are_the_json_server_ones() {
        let c = Config::parse(&ctx(json!({"base_url": "http://h/api/"}))).unwrap();
        assert_eq!(c.base_url, "http://h/api");
        assert_eq!(
            c.pagination,
            Pagination::Page {
                param: "_page".into(),
                first: 1
            }
        );
        assert_eq!(c.limit_param, "_limit");
        assert_eq!(c.envelope, "");
        assert_eq!(c.item_envelope, "");
        assert_eq!(c.missing_status, [404]);
        assert!(c.webhook.is_none());
        let s = Settings::parse(&entity(Value::Null)).unwrap();
        assert_eq!(s.path, "/contacts");
        assert_eq!(s.ops.update.method, "PATCH");
        assert!(!s.incremental());
    }

    #[test]
    fn every_settings_key_of_the_schema_is_read() {
        let schema: Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        let keys: Vec<&String> = schema["$defs"]["settings"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let full = json!({
            "path": "/people", "updated_at": ["updatedAt"], "since_param": "updatedAt_gte",
            "change_params": "_sort=updatedAt", "lookback_secs": 5, "update_method": "Put",
            "webhook_name": "people", "find": "{field}={value}",
            "get": {"path": "/people?id={id}"}, "create": {"envelope": "data"},
            "update": {"key_field": "Id"}, "delete": {"missing_status": [404, 410]},
            "deletes": {"path": "/deleted", "query": "since={since}", "id": "key", "at": "at", "envelope": "data"}
        });
        let mut listed: Vec<&String> = full.as_object().unwrap().keys().collect();
        let filter = "change_filter".to_string();
        listed.push(&filter);
        listed.sort();
        assert_eq!(keys, listed, "the settings schema lists every key");
        let s = Settings::parse(&entity(full)).unwrap();
        assert_eq!(s.ops.update.method, "PUT");
    }

    #[test]
    fn every_key_of_the_schema_is_accepted() {
        let schema: Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        let keys: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        let full = json!({
            "base_url": "https://h", "credential": "token", "pagination": "cursor",
            "page_param": "page", "first_page": 0, "offset_param": "skip", "cursor_param": "after",
            "next_cursor": "meta.next", "limit_param": "limit", "page_size": 100,
            "last_page_flag": "meta.last", "more_path": "meta.more", "total_path": "meta.total",
            "next_link": "next",
            "envelope": "data", "item_envelope": "data", "missing_status": [403, 404],
            "webhook": {"secret": "s", "secret_header": "X-Secret", "event": "event",
                "collection": "collection", "id": "key", "ids": "keys", "rows": "data.rows", "payload": "payload",
                "partial": false, "ops": {"create": "upsert", "items.delete": "delete"}}
        });
        assert_eq!(
            keys,
            full.as_object().unwrap().keys().collect::<Vec<_>>(),
            "the schema lists every key"
        );
        let hook_keys: Vec<&String> = schema["properties"]["webhook"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            hook_keys,
            full["webhook"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
        // total_path and next_link belong to other styles than cursor.
        let mut cursor_style = full.clone();
        for key in ["total_path", "next_link"] {
            cursor_style.as_object_mut().unwrap().remove(key);
        }
        let c = Config::parse(&ctx(cursor_style)).unwrap();
        assert_eq!(c.ends.more_path.as_deref(), Some("meta.more"));
        assert_eq!(
            c.pagination,
            Pagination::Cursor {
                param: "after".into(),
                next: "meta.next".into()
            }
        );
        let w = c.webhook.unwrap();
        assert_eq!(w.secret_header, "x-secret");
        assert!(
            !format!("{w:?}").contains("\"s\""),
            "the secret is redacted"
        );
    }

    #[test]
    fn config_errors_name_the_key_and_the_fix() {
        for (config, expected) in [
            (
                json!({"base_url": "http://h", "pagination": "pages"}),
                "system 'api': pagination = \"pages\" is not a pagination style; use \"page\"",
            ),
            (
                json!({"base_url": "http://h", "pagination": "cursor"}),
                "pagination = \"cursor\" needs next_cursor",
            ),
            (
                json!({"base_url": "h.example.com"}),
                "base_url = \"h.example.com\" is not an http or https URL",
            ),
            (
                json!({"base_url": "http://h", "page_size": 0}),
                "page_size = 0",
            ),
            (
                json!({"base_url": "http://h", "pagination": "link", "total_path": "meta.total"}),
                "total_path works with pagination = \"page\" or \"offset\", not \"link\"",
            ),
            (
                json!({"base_url": "http://h", "next_link": "next"}),
                "next_link is the next page's URL of pagination = \"link\"",
            ),
            (
                json!({"base_url": "http://h", "pagnation": "link"}),
                "unknown field `pagnation`",
            ),
            (
                json!({"base_url": "http://h", "webhook": {"secret": "s"}}),
                "webhook.id or webhook.ids is needed",
            ),
            (
                json!({"base_url": "http://h", "webhook": {"secret": "s", "id": "key", "partial": false}}),
                "webhook.partial = false needs webhook.payload",
            ),
            (
                json!({"base_url": "http://h", "webhook": {"secret": "s", "id": "key", "ops": {"create": "insert"}}}),
                "webhook.ops.create = \"insert\" is not an operation; use \"upsert\" or \"delete\"",
            ),
            (
                json!({"base_url": "http://h", "webhook": {"secret": "", "id": "key"}}),
                "webhook.secret is empty",
            ),
        ] {
            let message = config_error(config);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn updated_at_takes_a_field_or_a_list() {
        let one = Settings::parse(&entity(
            json!({"updated_at": "updatedAt", "since_param": "updatedAt_gte"}),
        ))
        .unwrap();
        assert_eq!(one.updated_at, ["updatedAt"]);
        assert!(one.incremental());
        let many = Settings::parse(&entity(
            json!({"updated_at": ["date_updated", "date_created"]}),
        ))
        .unwrap();
        assert_eq!(many.updated_at, ["date_updated", "date_created"]);
        assert!(
            settings_error(json!({"updated_at": 3})).contains("updated_at = 3: write a field name")
        );
        assert!(settings_error(json!({"updated_at": []})).contains("updated_at = []"));
    }

    #[test]
    fn settings_errors_name_the_key_and_the_fix() {
        for (settings, expected) in [
            (
                json!({"since_param": "a", "change_filter": "b={since}"}),
                "entity 'contacts': since_param and change_filter are both set",
            ),
            (
                json!({"change_filter": "filter[x][_gt]=now"}),
                "has no {since} placeholder",
            ),
            (
                json!({"update_method": "POST"}),
                "update_method = \"POST\": use \"PATCH\" or \"PUT\"",
            ),
            (
                json!({"change_filter": "a={since}", "deletes": {"path": "/activity", "query": "x=1", "at": "timestamp"}}),
                "deletes.query = \"x=1\" has no {since}",
            ),
            (
                json!({"deletes": {"path": "/activity", "query": "x={since}", "at": "timestamp"}}),
                "deletes is set but changes are not read",
            ),
            (
                json!({"deletes": {"path": "/activity", "query": "x={since}"}}),
                "missing field `at`",
            ),
            (
                json!({"lookback_secs": 60}),
                "lookback_secs is set but changes are not read",
            ),
            (
                json!({"lookback_secs": -1, "since_param": "a"}),
                "lookback_secs = -1: write a whole number of seconds, 0 or more",
            ),
            (json!({"paht": "/x"}), "unknown field `paht`"),
        ] {
            let message = settings_error(settings);
            assert!(message.contains(expected), "{message}");
        }
        let put = Settings::parse(&entity(json!({"update_method": "put"}))).unwrap();
        assert_eq!(put.ops.update.method, "PUT");
    }

    #[test]
    fn the_path_name_drops_the_slash_and_the_items_prefix() {
        let s = Settings::parse(&entity(
            json!({"path": "/items/contacts", "webhook_name": "people"}),
        ))
        .unwrap();
        assert_eq!(s.path_name(), "contacts");
        assert_eq!(s.webhook_name.as_deref(), Some("people"));
        let s = Settings::parse(&entity(json!({"path": "api/v1/users"}))).unwrap();
        assert_eq!(s.path, "/api/v1/users");
        assert_eq!(s.path_name(), "api/v1/users");
    }
}
