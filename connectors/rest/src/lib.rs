//! A generic REST connector, configured in the manifest: a base URL, a
//! credential the host injects, and per entity a collection path, the id
//! field, the updated-at field and how to ask for changes since a time.
//!
//! System config: `base_url` (required), `credential` (the name of a manifest
//! credential; the host adds it), `page_param` (default `_page`),
//! `limit_param` (default `_limit`), `envelope` (dotted path of the items
//! array in list responses; default: the body is the array).
//!
//! Entity settings: `path` (default `/ENTITY`), `updated_at` (field stamped by
//! the system on every change), `since_param` (query parameter selecting
//! records changed at or after a time, for example `updatedAt_gte`),
//! `change_params` (extra query for change requests, for example
//! `_sort=updatedAt&_order=asc`), `update_method` (`PATCH`, the default, or `PUT`).
//!
//! Reads page through the collection; changes ask for records updated since
//! the cursor (an RFC 3339 time; the boundary is inclusive, the host drops
//! what it has already seen); writes POST, PATCH/PUT and DELETE one record
//! each. Deletes are not visible to `changes`: full reads find them.

weir_sdk::bindings!("sync-connector");

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::{destination, source};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_sdk::http_util::{encode, send_json};
use weir_sdk::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, FieldSchema,
    FieldType, Operation, Page, Result, WriteItem, Written,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
    credential: Option<String>,
    #[serde(default = "default_page")]
    page_param: String,
    #[serde(default = "default_limit")]
    limit_param: String,
    envelope: Option<String>,
}

fn default_page() -> String {
    "_page".into()
}

fn default_limit() -> String {
    "_limit".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    path: Option<String>,
    updated_at: Option<String>,
    since_param: Option<String>,
    change_params: Option<String>,
    update_method: Option<String>,
}

/// The change cursor: records updated at or after `since`, from page `page`.
#[derive(Serialize, Deserialize)]
struct Cursor {
    since: String,
    page: u32,
    /// The latest update time seen in this round of pages.
    latest: Option<String>,
}

struct Collection {
    config: Config,
    settings: Settings,
    entity: EntityBinding,
}

impl Collection {
    fn new(ctx: &Context, entity: &EntityBinding) -> Result<Self> {
        let config: Config = weir_sdk::config(ctx)?;
        let settings: Settings = if entity.settings.trim() == "null" {
            Settings::default()
        } else {
            weir_sdk::settings(entity)?
        };
        Ok(Collection {
            config,
            settings,
            entity: entity.clone(),
        })
    }

    fn url(&self, suffix: &str, query: &[(String, String)]) -> String {
        let path = self
            .settings
            .path
            .clone()
            .unwrap_or_else(|| format!("/{}", self.entity.name));
        let mut url = format!(
            "{}{}{}",
            self.config.base_url.trim_end_matches('/'),
            path,
            suffix
        );
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        if !q.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&q.join("&"));
        }
        url
    }

    fn get_page(
        &self,
        mut query: Vec<(String, String)>,
        page: u32,
        limit: u32,
        extra: Option<&str>,
    ) -> Result<Vec<Value>> {
        query.push((self.config.page_param.clone(), page.to_string()));
        query.push((self.config.limit_param.clone(), limit.max(1).to_string()));
        let mut url = self.url("", &query);
        if let Some(extra) = extra.filter(|e| !e.is_empty()) {
            url.push('&');
            url.push_str(extra);
        }
        let response = send_json("GET", &url, None, self.config.credential.as_deref(), &[])?;
        let mut items = response.body;
        if let Some(path) = &self.config.envelope {
            for part in path.split('.') {
                items = items.get(part).cloned().unwrap_or(Value::Null);
            }
        }
        match items {
            Value::Array(items) => Ok(items),
            other => Err(ConnectorError::schema(format!(
                "GET {url}: expected an array of records, got {}",
                weir_sdk::json::kind_of(&other)
            ))),
        }
    }

    fn change(&self, item: Value) -> Option<Change> {
        let id = item
            .get(&self.entity.primary_key)
            .map(weir_sdk::json::value_to_text)
            .filter(|s| !s.is_empty())?;
        let version = self
            .settings
            .updated_at
            .as_ref()
            .and_then(|u| item.get(u))
            .map(weir_sdk::json::value_to_text);
        Some(Change {
            entity: self.entity.name.clone(),
            id,
            op: Operation::Upsert,
            data: Some(item.to_string()),
            previous: None,
            version,
            actor: None,
        })
    }
}

fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

struct Rest;

impl connector::Guest for Rest {
    fn describe() -> Description {
        Description {
            name: "rest".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "any REST API with JSON collections, configured in the manifest".to_string(),
            config_schema: r#"{"type":"object","properties":{"base_url":{"type":"string"},"credential":{"type":"string"},"page_param":{"type":"string"},"limit_param":{"type":"string"},"envelope":{"type":"string"}},"required":["base_url"],"additionalProperties":false}"#.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        entities
            .iter()
            .map(|e| {
                let c = Collection::new(&ctx, e)?;
                let first = c.get_page(Vec::new(), 1, 1, None)?;
                let mut fields: Vec<FieldSchema> = vec![FieldSchema {
                    name: e.primary_key.clone(),
                    kind: FieldType::Any,
                    required: true,
                }];
                if let Some(Value::Object(record)) = first.first() {
                    fields.extend(record.keys().filter(|k| **k != e.primary_key).map(|k| {
                        FieldSchema {
                            name: k.clone(),
                            kind: FieldType::Any,
                            required: false,
                        }
                    }));
                }
                Ok(EntitySchema {
                    name: e.name.clone(),
                    primary_key: e.primary_key.clone(),
                    fields,
                    incremental: c.settings.since_param.is_some(),
                })
            })
            .collect()
    }
}

impl source::Guest for Rest {
    fn read(
        ctx: Context,
        entity: EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page> {
        let c = Collection::new(&ctx, &entity)?;
        let page: u32 = match cursor {
            Some(p) => p
                .parse()
                .map_err(|_| ConnectorError::invalid_config(format!("bad page cursor '{p}'")))?,
            None => 1,
        };
        let items = c.get_page(Vec::new(), page, limit, None)?;
        let full = items.len() as u32 >= limit.max(1);
        Ok(Page {
            items: items.into_iter().filter_map(|i| c.change(i)).collect(),
            next: full.then(|| (page + 1).to_string()),
        })
    }

    fn checkpoint(ctx: Context, entity: EntityBinding) -> Result<String> {
        let c = Collection::new(&ctx, &entity)?;
        if c.settings.since_param.is_none() || c.settings.updated_at.is_none() {
            return Err(ConnectorError::unsupported(format!(
                "entity '{}': set updated_at and since_param for incremental changes",
                entity.name
            )));
        }
        Ok(serde_json::to_string(&Cursor {
            since: now(),
            page: 1,
            latest: None,
        })
        .unwrap_or_default())
    }

    fn changes(
        ctx: Context,
        entity: EntityBinding,
        cursor: String,
        limit: u32,
    ) -> Result<ChangeBatch> {
        let c = Collection::new(&ctx, &entity)?;
        let (Some(since_param), Some(updated_at)) = (
            c.settings.since_param.clone(),
            c.settings.updated_at.clone(),
        ) else {
            return Err(ConnectorError::unsupported(format!(
                "entity '{}': no since_param",
                entity.name
            )));
        };
        let mut cur: Cursor = serde_json::from_str(&cursor)
            .map_err(|e| ConnectorError::invalid_config(format!("bad change cursor: {e}")))?;
        let items = c.get_page(
            vec![(since_param, cur.since.clone())],
            cur.page,
            limit,
            c.settings.change_params.as_deref(),
        )?;
        let full = items.len() as u32 >= limit.max(1);
        for item in &items {
            if let Some(Value::String(t)) = item.get(&updated_at) {
                if cur.latest.as_deref().is_none_or(|l| t.as_str() > l) {
                    cur.latest = Some(t.clone());
                }
            }
        }
        let changes = items.into_iter().filter_map(|i| c.change(i)).collect();
        let next = if full {
            Cursor {
                since: cur.since,
                page: cur.page + 1,
                latest: cur.latest,
            }
        } else {
            Cursor {
                since: cur.latest.unwrap_or(cur.since),
                page: 1,
                latest: None,
            }
        };
        Ok(ChangeBatch {
            items: changes,
            cursor: serde_json::to_string(&next).unwrap_or_default(),
            more: full,
        })
    }
}

impl destination::Guest for Rest {
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written>>> {
        let c = Collection::new(&ctx, &entity)?;
        let credential = c.config.credential.clone();
        let written = |body: &Value, fallback: Option<&str>| -> Result<Written> {
            let id = body
                .get(&entity.primary_key)
                .map(weir_sdk::json::value_to_text)
                .or_else(|| fallback.map(String::from));
            let version = c
                .settings
                .updated_at
                .as_ref()
                .and_then(|u| body.get(u))
                .map(weir_sdk::json::value_to_text);
            id.map(|id| Written { id, version }).ok_or_else(|| {
                ConnectorError::schema(format!(
                    "entity '{}': the response has no '{}'",
                    entity.name, entity.primary_key
                ))
            })
        };
        let one = |item: WriteItem| -> Result<Written> {
            match (item.op, item.id) {
                (Operation::Delete, Some(id)) => {
                    send_json(
                        "DELETE",
                        &c.url(&format!("/{}", encode(&id)), &[]),
                        None,
                        credential.as_deref(),
                        &[404],
                    )?;
                    Ok(Written { id, version: None })
                }
                (Operation::Delete, None) => Err(ConnectorError::rejected("a delete needs an id")),
                (Operation::Upsert, id) => {
                    let data: Value = match item.data.as_deref().map(serde_json::from_str::<Value>)
                    {
                        Some(Ok(v @ Value::Object(_))) => v,
                        _ => {
                            return Err(ConnectorError::rejected(
                                "the record body is not a JSON object",
                            ))
                        }
                    };
                    if let Some(id) = id {
                        let method = c
                            .settings
                            .update_method
                            .clone()
                            .unwrap_or_else(|| "PATCH".into());
                        let r = send_json(
                            &method,
                            &c.url(&format!("/{}", encode(&id)), &[]),
                            Some(&data),
                            credential.as_deref(),
                            &[404],
                        )?;
                        if r.status != 404 {
                            return written(&r.body, Some(&id));
                        }
                        // Gone at the system: create it again under its id.
                        let mut with_id = data;
                        with_id[&entity.primary_key] =
                            serde_json::from_str(&id).unwrap_or(Value::String(id.clone()));
                        let r = send_json(
                            "POST",
                            &c.url("", &[]),
                            Some(&with_id),
                            credential.as_deref(),
                            &[],
                        )?;
                        return written(&r.body, Some(&id));
                    }
                    let r = send_json(
                        "POST",
                        &c.url("", &[]),
                        Some(&data),
                        credential.as_deref(),
                        &[],
                    )?;
                    written(&r.body, None)
                }
            }
        };
        Ok(items.into_iter().map(one).collect())
    }
}

export!(Rest);
