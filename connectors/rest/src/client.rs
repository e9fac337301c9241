//! Requests to the system, all through the host's `http` import (which
//! enforces the allow-list and adds the credential): list pages, single
//! records, the deletes feed and writes.

use crate::changes::{change_time, ChangeCursor};
use crate::config::{Config, Deletes, Settings};
use crate::pagination::{self, Position, Request, Response};
use crate::{paths, query};
use serde_json::Value;
use weir_sdk::http_util::{encode, send_json};
use weir_sdk::json::kind_of;
use weir_sdk::{
    Change, ConnectorError, Context, EntityBinding, KeyedOutcome, KeyedWrite, Operation, Result,
    WriteItem, Written,
};

/// One entity of one system: its configuration and settings.
pub(crate) struct Collection {
    pub config: Config,
    pub settings: Settings,
    pub entity: EntityBinding,
}

/// A page of a listing and where the next one starts.
pub(crate) struct Listing {
    pub items: Vec<Value>,
    pub next: Option<Position>,
}

impl Collection {
    pub(crate) fn new(ctx: &Context, entity: &EntityBinding) -> Result<Self> {
        Ok(Collection {
            config: Config::parse(ctx)?,
            settings: Settings::parse(entity)?,
            entity: entity.clone(),
        })
    }

    /// A configuration error about this entity.
    pub(crate) fn bad(&self, message: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::invalid_config(format!("entity '{}': {message}", self.entity.name))
    }

    /// The time change reads ask from for a cursor at `since`: that long
    /// before it as `lookback_secs` says, so that a change committed late,
    /// with a time before changes already read, is found (a record read again
    /// unchanged costs a read and nothing else). A time of a form that cannot
    /// be stepped back is asked for as it is, with a warning.
    pub(crate) fn asked_since(&self, since: &str) -> String {
        let secs = self.settings.lookback_secs;
        if secs == 0 {
            return since.to_string();
        }
        crate::changes::earlier(since, secs).unwrap_or_else(|| {
            weir_sdk::log(
                weir_sdk::log::Level::Warn,
                format!(
                    "entity '{}': lookback_secs: the change time '{since}' is neither an ISO 8601 time nor a number, so change reads ask from it as it is",
                    self.entity.name
                ),
            );
            since.to_string()
        })
    }

    fn credential(&self) -> Option<&str> {
        self.config.credential.as_deref()
    }

    fn collection_url(&self) -> String {
        format!("{}{}", self.config.base_url, self.settings.path)
    }

    fn record_url(&self, id: &str) -> String {
        format!("{}/{}", self.collection_url(), encode(id))
    }

    /// Lists one page at `at` (none: the first), with `filters` (encoded
    /// `key=value` pairs) added to the collection URL. A `Link` URL is fetched
    /// as it is: it carries the filters of the first request.
    pub(crate) fn list(
        &self,
        filters: &[String],
        at: Option<&Position>,
        limit: u32,
    ) -> Result<Listing> {
        let size = limit.max(1).min(self.config.page_size.unwrap_or(u32::MAX));
        let url =
            match pagination::request(&self.config.pagination, &self.config.limit_param, at, size)
                .map_err(|m| self.bad(m))?
            {
                Request::Query(pairs) => {
                    let mut parts = filters.to_vec();
                    parts.extend(query::pairs(&pairs));
                    query::append(&self.collection_url(), &parts)
                }
                Request::Url(url) => url,
            };
        let response = send_json("GET", &url, None, self.credential(), &[])?;
        let count = records_at(
            &response.body,
            &self.config.envelope,
            "config envelope",
            &url,
        )?
        .len();
        let next = pagination::next(
            &self.config.pagination,
            at,
            size,
            &Response {
                url: &url,
                count,
                body: &response.body,
                links: response.header_values("link").collect(),
            },
        )
        .map_err(|m| self.bad(m))?;
        let items = match paths::take(response.body, &self.config.envelope) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(), // checked above
        };
        Ok(Listing { items, next })
    }

    /// Reads one record by id; `None` when the system answers with one of
    /// `missing_status`.
    pub(crate) fn fetch(&self, id: &str) -> Result<Option<Value>> {
        let url = self.record_url(id);
        let response = send_json(
            "GET",
            &url,
            None,
            self.credential(),
            &self.config.missing_status,
        )?;
        if self.config.missing_status.contains(&response.status) {
            return Ok(None);
        }
        match paths::take(response.body, &self.config.item_envelope) {
            Some(record @ Value::Object(_)) => Ok(Some(record)),
            other => Err(ConnectorError::schema(format!(
                "GET {url}: expected a record object {}, got {}; set config item_envelope to the dotted path of the record in single-record responses (for example \"data\")",
                where_(&self.config.item_envelope, "config item_envelope"),
                other.as_ref().map_or("nothing", kind_of)
            ))),
        }
    }

    /// A record of a list or lookup as an upsert change; none without an id.
    pub(crate) fn change(&self, record: Value) -> Option<Change> {
        let id = record
            .get(&self.entity.primary_key)
            .and_then(paths::scalar_text)?;
        Some(Change {
            entity: self.entity.name.clone(),
            id,
            op: Operation::Upsert,
            version: change_time(&record, &self.settings.updated_at),
            data: Some(record.to_string()),
            previous: None,
            actor: None,
        })
    }

    /// The records of a listing as upsert changes; an item that is not a
    /// record with an id is handed to the host as a reject (a dead letter),
    /// never dropped.
    pub(crate) fn changes_or_rejects(&self, items: Vec<Value>) -> Vec<Change> {
        let mut changes = Vec::with_capacity(items.len());
        for item in items {
            let raw = item.to_string();
            let why = match &item {
                Value::Object(_) => match self.change(item) {
                    Some(change) => {
                        changes.push(change);
                        continue;
                    }
                    None => format!(
                        "{}: a record has no value in '{}', the entity's primary key; set primary_key to the field that identifies its records",
                        self.collection_url(),
                        self.entity.primary_key
                    ),
                },
                other => format!(
                    "{}: an item of the listing is {}, not a record object",
                    self.collection_url(),
                    kind_of(other)
                ),
            };
            weir_sdk::reject(&self.entity.name, None, &why, &raw);
        }
        changes
    }

    /// Reads the deletes feed since the cursor's `deletes_since` and notes the
    /// times of the deletes in the cursor. The feed is read in one request.
    pub(crate) fn deleted(
        &self,
        deletes: &Deletes,
        cursor: &mut ChangeCursor,
    ) -> Result<Vec<Change>> {
        let path = deletes.path.trim_start_matches('/');
        let url = query::append(
            &format!("{}/{path}", self.config.base_url),
            &query::expand(&deletes.query, cursor.deletes_since()),
        );
        let response = send_json("GET", &url, None, self.credential(), &[])?;
        let envelope = deletes.envelope.as_deref().unwrap_or(&self.config.envelope);
        let setting = match deletes.envelope {
            Some(_) => "setting deletes.envelope",
            None => "config envelope, or setting deletes.envelope",
        };
        let entries = records_at(&response.body, envelope, setting, &url)?;
        let mut changes = Vec::new();
        for entry in entries {
            let at = paths::text(entry, &deletes.at);
            if let Some(at) = &at {
                cursor.saw_delete(at);
            }
            let Some(id) = paths::text(entry, &deletes.id) else {
                weir_sdk::log(
                    weir_sdk::log::Level::Warn,
                    format!(
                        "entity '{}': an entry of {url} has no id at '{}' (deletes.id): {entry}",
                        self.entity.name, deletes.id
                    ),
                );
                continue;
            };
            changes.push(Change {
                entity: self.entity.name.clone(),
                id,
                op: Operation::Delete,
                data: None,
                previous: None,
                version: at,
                actor: None,
            });
        }
        Ok(changes)
    }

    /// The outcome of a write: the id and version in the reply's record
    /// (`item_envelope`), else `fallback` (the id written to).
    fn written(&self, reply: Value, fallback: Option<&str>, what: &str) -> Result<Written> {
        let record = paths::take(reply, &self.config.item_envelope).unwrap_or(Value::Null);
        let id = record
            .get(&self.entity.primary_key)
            .and_then(paths::scalar_text)
            .or_else(|| fallback.map(String::from));
        let version = change_time(&record, &self.settings.updated_at);
        id.map(|id| Written { id, version }).ok_or_else(|| {
            ConnectorError::schema(format!(
                "entity '{}': the reply to {what} has no '{}' {}; set config item_envelope to the dotted path of the record in the reply",
                self.entity.name,
                self.entity.primary_key,
                where_(&self.config.item_envelope, "config item_envelope")
            ))
        })
    }

    /// Writes one record: POST to create, `update_method` to update (POST
    /// again under its id when the record is gone), DELETE to delete (a record
    /// already gone is deleted).
    pub(crate) fn write(&self, item: WriteItem) -> Result<Written> {
        let missing = &self.config.missing_status;
        match (item.op, item.id) {
            (Operation::Delete, Some(id)) => {
                send_json(
                    "DELETE",
                    &self.record_url(&id),
                    None,
                    self.credential(),
                    missing,
                )?;
                Ok(Written { id, version: None })
            }
            (Operation::Delete, None) => Err(ConnectorError::rejected("a delete needs an id")),
            (Operation::Upsert, id) => {
                let mut data = match item.data.as_deref().map(serde_json::from_str::<Value>) {
                    Some(Ok(v @ Value::Object(_))) => v,
                    _ => {
                        return Err(ConnectorError::rejected(
                            "the record body is not a JSON object",
                        ))
                    }
                };
                let collection = self.collection_url();
                let Some(id) = id else {
                    let r = send_json("POST", &collection, Some(&data), self.credential(), &[])?;
                    return self.written(r.body, None, &format!("POST {collection}"));
                };
                let method = &self.settings.update_method;
                let url = self.record_url(&id);
                let r = send_json(method, &url, Some(&data), self.credential(), missing)?;
                if !missing.contains(&r.status) {
                    return self.written(r.body, Some(&id), &format!("{method} {url}"));
                }
                // Gone at the system: create it again under its id.
                data[&self.entity.primary_key] =
                    serde_json::from_str(&id).unwrap_or(Value::String(id.clone()));
                let r = send_json("POST", &collection, Some(&data), self.credential(), &[])?;
                self.written(r.body, Some(&id), &format!("POST {collection}"))
            }
        }
    }

    /// Writes one keyed record. An update that carries what the host last
    /// saw (`seen`) reads the record first: one that no longer holds those
    /// values is answered `changed`, as it is now, and not written; else
    /// only the fields it changes are sent (`PATCH`), or, under `PUT`, the
    /// record read with those fields changed. Between the read and the
    /// write, an edit can still slip in: the API has no condition to give.
    pub(crate) fn write_keyed(&self, k: KeyedWrite) -> KeyedOutcome {
        let seen = k.seen.as_deref().map(weir_sdk::json::parse_record);
        let (Some(Ok(seen)), Some(id), Operation::Upsert) = (seen, k.item.id.clone(), k.item.op)
        else {
            return weir_sdk::keyed_outcome(self.write(k.item));
        };
        let data = match k.item.data.as_deref().map(weir_sdk::json::parse_record) {
            Some(Ok(d)) => d,
            _ => return weir_sdk::keyed_outcome(self.write(k.item)),
        };
        let held = match self.fetch(&id) {
            Ok(Some(Value::Object(held))) => held,
            // Gone: deleted there since weir saw it, not written again.
            Ok(_) => return KeyedOutcome::Changed(weir_sdk::gone(&self.entity.name, &id)),
            Err(e) => return KeyedOutcome::Failed(e),
        };
        if !weir_sdk::json::holds_seen(&held, &seen) {
            return match self.change(Value::Object(held)) {
                Some(change) => KeyedOutcome::Changed(change),
                None => KeyedOutcome::Failed(ConnectorError::schema(format!(
                    "record '{id}' read back without its key field '{}'",
                    self.entity.primary_key
                ))),
            };
        }
        let mut body = if self.settings.update_method == "PATCH" {
            serde_json::Map::new()
        } else {
            held
        };
        for field in seen.keys() {
            body.insert(
                field.clone(),
                data.get(field).cloned().unwrap_or(Value::Null),
            );
        }
        let mut item = k.item;
        item.data = Some(Value::Object(body).to_string());
        weir_sdk::keyed_outcome(self.write(item))
    }

    /// Reads records by id for `lookup`; records gone are left out.
    pub(crate) fn lookup(&self, ids: &[String]) -> Result<Vec<Change>> {
        let mut changes = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(mut record) = self.fetch(id)? else {
                continue;
            };
            let pk = &self.entity.primary_key;
            if record.get(pk).is_none_or(Value::is_null) {
                record[pk] = serde_json::from_str(id).unwrap_or(Value::String(id.clone()));
            }
            changes.extend(self.change(record));
        }
        Ok(changes)
    }
}

/// Where a dotted path points, for messages (`setting` names the key).
fn where_(path: &str, setting: &str) -> String {
    if path.is_empty() {
        "as the body".to_string()
    } else {
        format!("at '{path}' ({setting})")
    }
}

/// The records array at `path` of a list response.
fn records_at<'a>(body: &'a Value, path: &str, setting: &str, url: &str) -> Result<&'a Vec<Value>> {
    match paths::get(body, path) {
        Some(Value::Array(items)) => Ok(items),
        other => Err(ConnectorError::schema(format!(
            "GET {url}: expected an array of records {}, got {}; set {setting} to the dotted path of the records array (for example \"data\")",
            where_(path, setting),
            other.map_or("nothing", kind_of)
        ))),
    }
}
