//! Requests to the system, all through the host's `http` import (which
//! enforces the allow-list and adds the credential): list pages, single
//! records, the deletes feed and writes.

use crate::changes::{change_time, ChangeCursor};
use crate::config::{Config, Deletes, Settings};
use crate::ops::{self, Op};
use crate::pagination::{self, Position, Request, Response};
use crate::{paths, query};
use serde_json::Value;
use weir_sdk::http_util::send_json;
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
            &self.config.ends,
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

    /// Reads one record by id (the `get` operation); `None` when the system
    /// answers one of its missing statuses, or with an empty list.
    pub(crate) fn fetch(&self, id: &str) -> Result<Option<Value>> {
        let op = &self.settings.ops.get;
        let url = op.url(&self.config.base_url, Some(id));
        let missing = op.missing(&self.config.missing_status);
        let response = send_json("GET", &url, None, self.credential(), missing)?;
        if missing.contains(&response.status) {
            return Ok(None);
        }
        let at = op.reply_at(&self.config.item_envelope);
        ops::reply_record(response.body, at).map_err(|found| {
            ConnectorError::schema(format!(
                "GET {url}: expected a record object {}, got {found}; set config item_envelope (or settings.get.reply_envelope) to the dotted path of the record in single-record responses (for example \"data\")",
                where_(at, "config item_envelope")
            ))
        })
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

    /// The outcome of a write by `op`: the id and version in the reply's
    /// record, else `fallback` (the id written to).
    fn written(
        &self,
        op: &Op,
        reply: Value,
        fallback: Option<&str>,
        what: &str,
    ) -> Result<Written> {
        let at = op.reply_at(&self.config.item_envelope);
        let record = ops::reply_record(reply, at)
            .ok()
            .flatten()
            .unwrap_or(Value::Null);
        let id = record
            .get(&self.entity.primary_key)
            .and_then(paths::scalar_text)
            .or_else(|| fallback.map(String::from));
        let version = change_time(&record, &self.settings.updated_at);
        id.map(|id| Written { id, version }).ok_or_else(|| {
            ConnectorError::schema(format!(
                "entity '{}': the reply to {what} has no '{}' {}; set config item_envelope (or {}.reply_envelope) to the dotted path of the record in the reply",
                self.entity.name,
                self.entity.primary_key,
                where_(at, "config item_envelope"),
                op.setting()
            ))
        })
    }

    /// Sends `op` for the record `id` with `record`'s fields; the reply and
    /// the URL. A missing status of the operation is a reply, not an error.
    fn send(
        &self,
        op: &Op,
        id: Option<&str>,
        record: Option<serde_json::Map<String, Value>>,
    ) -> Result<(weir_sdk::http_util::JsonResponse, String)> {
        let url = op.url(&self.config.base_url, id);
        let body = op.body(record, id);
        let missing = op.missing(&self.config.missing_status);
        let response = send_json(&op.method, &url, body.as_ref(), self.credential(), missing)?;
        Ok((response, url))
    }

    /// Whether the record `id` is really gone after `op` answered a missing
    /// status at `url`: a `get` must not find it. When it does, the request
    /// did not reach the record and nothing is done by guesswork: the error
    /// names the URL and the setting to fix.
    fn confirm_gone(&self, op: &Op, url: &str, status: u16, id: &str) -> Result<()> {
        if self.fetch(id)?.is_none() {
            return Ok(());
        }
        let get = self.settings.ops.get.url(&self.config.base_url, Some(id));
        Err(ConnectorError::invalid_config(format!(
            "entity '{}': {} {url} answered {status}, a status that means \"no such record\", but GET {get} finds record '{id}': the request does not reach the record, or is refused for it; set {} (method, path with {{id}}, key_field) to how the API {}s one record, or give the credential the permission",
            self.entity.name,
            op.method,
            op.setting(),
            match op.kind {
                ops::Kind::Delete => "delete",
                _ => "update",
            }
        )))
    }

    /// Writes one record: `create` without an id; `update` with one (a
    /// record confirmed gone is created again under its id); `delete` (a
    /// record already gone counts as deleted). A missing status is taken
    /// for "gone" only when a `get` of the record confirms it.
    pub(crate) fn write(&self, item: WriteItem) -> Result<Written> {
        let ops = &self.settings.ops;
        match (item.op, item.id) {
            (Operation::Delete, Some(id)) => {
                let (r, url) = self.send(&ops.delete, Some(&id), None)?;
                if ops
                    .delete
                    .missing(&self.config.missing_status)
                    .contains(&r.status)
                {
                    self.confirm_gone(&ops.delete, &url, r.status, &id)?;
                }
                Ok(Written { id, version: None })
            }
            (Operation::Delete, None) => Err(ConnectorError::rejected("a delete needs an id")),
            (Operation::Upsert, id) => {
                let data = match item.data.as_deref().map(serde_json::from_str::<Value>) {
                    Some(Ok(Value::Object(v))) => v,
                    _ => {
                        return Err(ConnectorError::rejected(
                            "the record body is not a JSON object",
                        ))
                    }
                };
                let Some(id) = id else {
                    let (r, url) = self.send(&ops.create, None, Some(data))?;
                    return self.written(&ops.create, r.body, None, &format!("POST {url}"));
                };
                let (r, url) = self.send(&ops.update, Some(&id), Some(data.clone()))?;
                let what = format!("{} {url}", ops.update.method);
                if !ops
                    .update
                    .missing(&self.config.missing_status)
                    .contains(&r.status)
                {
                    return self.written(&ops.update, r.body, Some(&id), &what);
                }
                self.confirm_gone(&ops.update, &url, r.status, &id)?;
                // Gone at the system: create it again under its id.
                let mut data = data;
                data.insert(self.entity.primary_key.clone(), ops::key_value(&id));
                let (r, url) = self.send(&ops.create, None, Some(data))?;
                self.written(
                    &ops.create,
                    r.body,
                    Some(&id),
                    &format!("{} {url}", ops.create.method),
                )
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
        let mut body = if self.settings.ops.update.method == "PATCH" {
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
                record[pk] = ops::key_value(id);
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
