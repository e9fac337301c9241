//! A generic REST connector, configured in the manifest: a base URL, a
//! credential the host injects, how collections are paged, and per entity a
//! collection path, the change-time fields and how to ask for changes since a
//! time. It reads, writes, reads records by id (`lookup`) and turns the
//! system's webhooks into changes (`webhook`). Every request goes through the
//! host's `http` import, which enforces the system's `allowed_hosts` (followed
//! `Link` URLs included) and adds the credential.
//!
//! # System config
//!
//! - `base_url` (required): the API root, `http://` or `https://`.
//! - `credential`: the name of a manifest credential; the host adds it to
//!   every request. Default: none.
//! - `pagination`: how list requests are paged. Default `"page"`.
//!   - `"page"`: `page_param` (default `"_page"`) counts pages from
//!     `first_page` (default `1`); the listing goes on while pages are full.
//!   - `"offset"`: `offset_param` (default `"offset"`) counts records from 0;
//!     the listing goes on while pages are full.
//!   - `"cursor"`: the first request has no cursor; then `cursor_param`
//!     (default `"cursor"`) carries the value at `next_cursor` (required: the
//!     dotted path of the next cursor in the response body, for example
//!     `"meta.next_cursor"`); done when that is absent, null or empty.
//!   - `"link"`: the first request asks for a page size; then the `Link`
//!     response header's `rel="next"` URL is fetched as it is (a relative one
//!     is resolved against the request); done when there is none.
//! - `limit_param`: the page-size parameter of every style. Default `"_limit"`.
//! - `last_page_flag`, `more_path`, `total_path`: what says a page is the
//!   last, for APIs that say so (and may answer an error past the end):
//!   a boolean true on the last page (`"pageInfo.isLastPage"`), a value
//!   null, false, empty or missing on the last page (`"has_more"`,
//!   `"next"`), the listing's total (`"meta.filter_count"`, page and offset
//!   styles). With any of them, a short page is not taken for the last; an
//!   empty page always is.
//! - `next_link`: with `pagination = "link"`, the dotted path of the next
//!   page's URL in the body (`"next"`) instead of the `Link` header.
//! - `page_size`: the largest page the API returns; pages ask for the smaller
//!   of it and the host's batch size, so that a capped page is not taken for
//!   the last one. Default: the host's batch size.
//! - `envelope`: dotted path of the records array in list responses (for
//!   example `"data"`). Default: the body is the array.
//! - `item_envelope`: dotted path of the record in single-record responses
//!   (replies to POST, PATCH and PUT, and `lookup` GETs). Default: the body is
//!   the record.
//! - `missing_status`: the statuses that mean "no such record" for GET,
//!   PATCH/PUT and DELETE of one record. Default `[404]`; Directus answers
//!   `403` for a missing item, so `[403, 404]` there (a real permission
//!   problem then reads as a missing record).
//! - `webhook`: how webhook requests are read (without it, webhooks are a
//!   configuration error):
//!   - `secret` (required): the shared secret, compared in constant time with
//!     the header `secret_header` (default `"x-webhook-secret"`); missing or
//!     wrong is a 401 reply without changes.
//!   - `event`: dotted path of the event name. Default `"event"`.
//!   - `ops`: event-name suffixes and what they do, `"upsert"` or `"delete"`;
//!     the longest matching suffix wins; an event none matches is acknowledged
//!     (200) without changes. Default `{create = "upsert", update = "upsert",
//!     delete = "delete"}`; a table given replaces it.
//!   - `collection`: dotted path of the entity name in the payload, matched
//!     against each bound entity's name, else its `webhook_name` setting, else
//!     its path without the leading `/` and any `items/` prefix; a name that
//!     matches none is acknowledged without changes. Default: none, and the
//!     single bound entity is used.
//!   - `id`, `ids`: dotted paths of one id and of an array of ids (numbers or
//!     strings); one of them is required, both may be given.
//!   - `rows`: dotted path of an array of rows (`"data.rows"`), each
//!     announcing changes: `id`, `ids` and `payload` are read in each row,
//!     `event` and `collection` in the row, else in the body (so one body may
//!     mix operations). With `partial = false` and no `payload`, the row is
//!     the record. A bad row refuses the whole body (400, naming the row).
//!   - `payload`: dotted path of the record fields. Default: none.
//!   - `partial`: `true` (default): upserts carry no record and the host reads
//!     each record through `lookup`; `false`: the record is the `payload`
//!     object with the primary key set to the id (needs `payload`).
//!
//!   A body that is not JSON or lacks the event, collection, ids or payload is
//!   a 400 reply `{"error": "..."}` naming what is missing; success is
//!   `200 {"accepted": N}`.
//!
//! # Entity settings
//!
//! - `path`: the collection path under `base_url`. Default `"/ENTITY"`.
//!   Records are at `{path}/{id}` unless the operation tables say otherwise.
//! - `get`, `create`, `update`, `delete`: how one record is read, created,
//!   updated and deleted, each a table of `method`, `path` (under
//!   `base_url`, `{id}` replaced by the key, in the path or the query:
//!   `"/contacts?id=eq.{id}"`), `key_field` (the body field that carries the
//!   key: `PATCH /records` with `{"Id": 5}`), `envelope` (the body wrapped:
//!   `"data"` sends `{"data": {...}}`), `reply_envelope` (the record in the
//!   reply; default `item_envelope`; a list of at most one is taken as that
//!   record or none), `missing_status` (default the system's) and `list` (the
//!   body is a list of one record).
//! - `updated_at`: the field stamped by the system on every change, or an
//!   array of fields whose first non-null value is the change time (Directus:
//!   `["date_updated", "date_created"]`). It is each record's version and
//!   moves the change cursor. Default: none (no changes).
//! - `since_param`: a query parameter selecting records changed at or after a
//!   time (for example `"updatedAt_gte"`).
//! - `change_filter`: instead of `since_param`, a query template with a
//!   `{since}` placeholder, for example
//!   `filter={"_or":[{"date_updated":{"_gt":"{since}"}},{"date_created":{"_gt":"{since}"}}]}&sort=date_updated,id`.
//!   Write values plain: each value is percent-encoded whole after `{since}`
//!   is replaced; keys are kept as written.
//! - `change_params`: extra query of change requests, encoded the same way
//!   (for example `"_sort=updatedAt&_order=asc"`).
//! - `lookback_secs`: change requests ask from that many seconds before the
//!   last change time seen (default 0). A system that stamps a record when a
//!   write begins and shows it when the write commits can show a change
//!   stamped before changes already read; looking back finds it. Records
//!   read again unchanged cost a read and nothing else. The time keeps the
//!   system's form (ISO 8601 with its offset and digits, a date, or a number
//!   of seconds or milliseconds since the epoch).
//! - `deletes`: a feed of deleted records, read after the changed records of
//!   each round: `path` (under `base_url`), `query` (a template with
//!   `{since}`, the time of the last delete seen), `id` (dotted path of the
//!   record id in an entry, default `"id"`), `at` (dotted path of the time of
//!   the delete), `envelope` (dotted path of the entries array, default the
//!   system's `envelope`). The feed is read in one request: ask for all
//!   entries (Directus: `limit=-1`). Directus:
//!   `{ path = "/activity", query = "filter[collection][_eq]=contacts&filter[action][_eq]=delete&filter[timestamp][_gt]={since}&limit=-1", id = "item", at = "timestamp", envelope = "data" }`.
//! - `update_method`: `"PATCH"` (default) or `"PUT"`; the same as
//!   `update = { method = ... }`.
//! - `webhook_name`: the name webhooks give this entity, when it is neither
//!   the entity's name nor its path.
//!
//! # Behaviour
//!
//! Reads page through the collection. Changes (with `updated_at` and
//! `since_param` or `change_filter`) ask for records changed since the cursor
//! time and page through them; when the pages are exhausted the deletes feed
//! is read, and the next round starts from the latest change time seen (the
//! deletes feed from the latest delete time seen). Without a deletes feed,
//! deletes are found by full reads. Writes create, update and delete one
//! record each. A missing status answered to an update or a delete is taken
//! for "the record is gone" only when a `get` of the record agrees: then an
//! update creates the record again under its id and a delete counts as done;
//! when the `get` finds the record, the request did not reach it, and the
//! write is refused with the URL and the setting to fix (a dead letter),
//! never turned into a second copy.
//!
//! `SETTINGS.md` lists every key with its type and default, generated from
//! the schema the connector describes; `RECIPES.md` holds tested manifest
//! blocks for real systems.

weir_sdk::bindings!("full-connector");

mod changes;
mod client;
mod config;
mod ops;
mod pagination;
mod paths;
mod query;
#[cfg(test)]
mod reference;
mod webhook;

use changes::{change_time, ChangeCursor};
use client::Collection;
use config::{ChangedSince, Config, Settings};
use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::webhook::{self as webhook_export, Incoming, Outcome};
use exports::weir::connector::{destination, keyed_destination, lookup, source};
use pagination::Position;
use serde_json::Value;
use weir_sdk::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, FieldSchema,
    FieldType, KeyedOutcome, KeyedWrite, Page, Probe, Result, WriteItem, Written,
};

/// Now, as the checkpoint of a change cursor (milliseconds, UTC).
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
            config_schema: config::CONFIG_SCHEMA.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        entities
            .iter()
            .map(|e| {
                let c = Collection::new(&ctx, e)?;
                let first = c.list(&[], None, 1)?;
                let mut fields: Vec<FieldSchema> = vec![FieldSchema {
                    name: e.primary_key.clone(),
                    kind: FieldType::Any,
                    required: true,
                }];
                if let Some(Value::Object(record)) = first.items.first() {
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
                    incremental: c.settings.incremental(),
                })
            })
            .collect()
    }
}

/// The filter of change requests: records changed since the cursor time.
fn change_filters(c: &Collection, since: &str) -> Result<Vec<String>> {
    let mut filters = match (&c.settings.changed_since, c.settings.updated_at.is_empty()) {
        (Some(ChangedSince::Param(param)), false) => {
            query::pairs(&[(param.clone(), since.to_string())])
        }
        (Some(ChangedSince::Filter(template)), false) => query::expand(template, since),
        _ => {
            return Err(ConnectorError::unsupported(format!(
                "entity '{}': set updated_at and since_param (or change_filter) for incremental changes",
                c.entity.name
            )))
        }
    };
    if let Some(params) = &c.settings.change_params {
        filters.extend(query::expand(params, since));
    }
    Ok(filters)
}

impl source::Guest for Rest {
    fn read(
        ctx: Context,
        entity: EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page> {
        let c = Collection::new(&ctx, &entity)?;
        let at = cursor
            .as_deref()
            .map(Position::parse)
            .transpose()
            .map_err(|m| c.bad(m))?;
        let listing = c.list(&[], at.as_ref(), limit)?;
        Ok(Page {
            items: c.changes_or_rejects(listing.items),
            next: listing
                .next
                .map(|p| serde_json::to_string(&p).unwrap_or_default()),
        })
    }

    fn checkpoint(ctx: Context, entity: EntityBinding) -> Result<String> {
        let c = Collection::new(&ctx, &entity)?;
        let now = now();
        change_filters(&c, &now)?;
        Ok(ChangeCursor::start(now).to_text())
    }

    fn changes(
        ctx: Context,
        entity: EntityBinding,
        cursor: String,
        limit: u32,
    ) -> Result<ChangeBatch> {
        let c = Collection::new(&ctx, &entity)?;
        let mut cursor = ChangeCursor::parse(&cursor).map_err(|m| c.bad(m))?;
        let filters = change_filters(&c, &c.asked_since(&cursor.since))?;
        let listing = c.list(&filters, cursor.next.as_ref(), limit)?;
        for item in &listing.items {
            if let Some(time) = change_time(item, &c.settings.updated_at) {
                cursor.saw(&time);
            }
        }
        let mut items: Vec<Change> = c.changes_or_rejects(listing.items);
        let more = listing.next.is_some();
        let next = match listing.next {
            Some(position) => {
                cursor.next = Some(position);
                cursor
            }
            None => {
                if let Some(deletes) = &c.settings.deletes {
                    items.extend(c.deleted(deletes, &mut cursor)?);
                }
                cursor.next_round()
            }
        };
        Ok(ChangeBatch {
            items,
            cursor: next.to_text(),
            more,
        })
    }
}

impl lookup::Guest for Rest {
    fn get(ctx: Context, entity: EntityBinding, ids: Vec<String>) -> Result<Vec<Change>> {
        Collection::new(&ctx, &entity)?.lookup(&ids)
    }
}

impl destination::Guest for Rest {
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written>>> {
        let c = Collection::new(&ctx, &entity)?;
        Ok(items.into_iter().map(|item| c.write(item)).collect())
    }
}

impl keyed_destination::Guest for Rest {
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<KeyedWrite>,
    ) -> Result<Vec<KeyedOutcome>> {
        let c = Collection::new(&ctx, &entity)?;
        Ok(items.into_iter().map(|k| c.write_keyed(k)).collect())
    }

    /// Lists the collection filtered by each probe's fields, through the
    /// entity's `find` template (the first page only: a match key should
    /// name few records), and keeps the records whose fields compare equal.
    fn find(ctx: Context, entity: EntityBinding, probes: Vec<Probe>) -> Result<Vec<Vec<Change>>> {
        let c = Collection::new(&ctx, &entity)?;
        let Some(template) = c.settings.find.clone() else {
            return Err(ConnectorError::unsupported(format!(
                "entity '{}' has no `find` setting: add one, for example find = \"{{field}}={{value}}\", to let weir look records up before creating them",
                entity.name
            )));
        };
        let mut found = Vec::with_capacity(probes.len());
        for probe in probes {
            let fields = weir_sdk::json::parse_record(&probe.fields)?;
            let pairs: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect();
            let listing = c.list(&query::find(&template, &pairs), None, 10)?;
            let records = listing
                .items
                .into_iter()
                .filter_map(|r| c.change(r))
                .filter(|ch| {
                    ch.data
                        .as_deref()
                        .and_then(|d| weir_sdk::json::parse_record(d).ok())
                        .is_some_and(|d| weir_sdk::json::probe_matches(&fields, &d))
                })
                .collect();
            found.push(records);
        }
        Ok(found)
    }
}

impl webhook_export::Guest for Rest {
    fn handle(ctx: Context, entities: Vec<EntityBinding>, request: Incoming) -> Result<Outcome> {
        let config = Config::parse(&ctx)?;
        let Some(hook) = &config.webhook else {
            return Err(ConnectorError::invalid_config(format!(
                "system '{}': webhooks need a webhook table in config, with at least secret and id or ids",
                ctx.system
            )));
        };
        let targets = entities
            .iter()
            .map(|e| {
                let settings = Settings::parse(e)?;
                Ok(webhook::Target {
                    name: e.name.clone(),
                    primary_key: e.primary_key.clone(),
                    path_name: settings.path_name(),
                    webhook_name: settings.webhook_name,
                    updated_at: settings.updated_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let reply = webhook::handle(hook, &targets, &request.headers, &request.body)
            .map_err(|m| ConnectorError::invalid_config(format!("system '{}': {m}", ctx.system)))?;
        Ok(Outcome {
            changes: reply.changes,
            status: reply.status,
            body: reply.body.to_string().into_bytes(),
        })
    }
}

export!(Rest);
