//! Webhook requests turned into changes, as the system's `webhook` table
//! says: the shared secret, where the event name, the collection, the ids and
//! the record fields are in the payload, and which events upsert or delete.
//! Pure: no I/O.

use crate::changes::change_time;
use crate::config::Webhook;
use crate::paths;
use serde_json::{json, Value};
use weir_sdk::json::kind_of;
use weir_sdk::{Change, Operation};

/// An entity bound to this system, as webhooks name it.
pub(crate) struct Target {
    /// The entity's name in the manifest.
    pub name: String,
    pub primary_key: String,
    /// Its `webhook_name` setting.
    pub webhook_name: Option<String>,
    /// Its path without the leading `/` and any `items/` prefix.
    pub path_name: String,
    /// Its `updated_at` fields, for the version of full payloads.
    pub updated_at: Vec<String>,
}

/// The reply to a webhook request and the changes it announced.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub changes: Vec<Change>,
}

impl Reply {
    fn error(status: u16, message: String) -> Reply {
        Reply {
            status,
            body: json!({ "error": message }),
            changes: Vec::new(),
        }
    }

    fn ignored(reason: String) -> Reply {
        Reply {
            status: 200,
            body: json!({ "accepted": 0, "ignored": reason }),
            changes: Vec::new(),
        }
    }
}

/// Checks a request and turns its body into changes. A missing or wrong
/// secret is a 401 reply, a body that lacks what the `webhook` table points at
/// a 400 reply naming it, an event no `ops` suffix matches or a collection
/// not bound here a 200 reply without changes. The error is a configuration
/// problem the request cannot fix.
pub(crate) fn handle(
    hook: &Webhook,
    targets: &[Target],
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    let sent = headers
        .iter()
        .find(|(name, _)| *name == hook.secret_header)
        .map(|(_, value)| value.as_bytes());
    if !sent.is_some_and(|s| same_secret(s, hook.secret.as_bytes())) {
        return Ok(Reply::error(
            401,
            format!("missing or wrong {} header", hook.secret_header),
        ));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(body) => body,
        Err(e) => return Ok(Reply::error(400, format!("the body is not JSON: {e}"))),
    };
    let rows: Vec<&Value> = match &hook.rows {
        None => vec![&body],
        Some(path) => match paths::get(&body, path) {
            Some(Value::Array(rows)) => rows.iter().collect(),
            other => {
                return Ok(Reply::error(
                    400,
                    format!(
                        "no array of rows at '{path}' (webhook.rows): found {}",
                        other.map_or("nothing", kind_of)
                    ),
                ))
            }
        },
    };
    let mut changes = Vec::new();
    let mut ignored = Vec::new();
    for (n, row) in rows.into_iter().enumerate() {
        let scope = Scope {
            row,
            body: &body,
            rows: hook.rows.is_some(),
        };
        match row_changes(hook, targets, &scope)? {
            Row::Changes(found) => changes.extend(found),
            Row::Ignored(reason) => ignored.push(reason),
            // Nothing of a body with a bad row is taken: the sender is told
            // what to fix and may send it again.
            Row::Bad(message) if scope.rows => {
                return Ok(Reply::error(400, format!("row {n}: {message}")))
            }
            Row::Bad(message) => return Ok(Reply::error(400, message)),
        }
    }
    if changes.is_empty() && !ignored.is_empty() {
        return Ok(Reply::ignored(ignored.swap_remove(0)));
    }
    let mut body = json!({ "accepted": changes.len() });
    if !ignored.is_empty() {
        body["ignored"] = json!(ignored);
    }
    Ok(Reply {
        status: 200,
        body,
        changes,
    })
}

/// Where a row's values are looked up: its ids and fields in the row only;
/// its event name and collection in the row, then (with `rows`) in the
/// whole body, so that one given once for all rows applies to each.
struct Scope<'a> {
    row: &'a Value,
    body: &'a Value,
    rows: bool,
}

impl Scope<'_> {
    /// A value of the row itself.
    fn own(&self, path: &str) -> Option<&Value> {
        paths::get(self.row, path)
    }

    /// A value of the row, else of the body.
    fn get(&self, path: &str) -> Option<&Value> {
        match paths::get(self.row, path) {
            Some(v) => Some(v),
            None if self.rows => paths::get(self.body, path),
            None => None,
        }
    }
}

/// What one row (or a body without rows) announced.
enum Row {
    Changes(Vec<Change>),
    /// Acknowledged without changes, and why.
    Ignored(String),
    /// What is missing or malformed: a 400 reply.
    Bad(String),
}

/// The changes one row announces. The error is a configuration problem the
/// request cannot fix.
fn row_changes(hook: &Webhook, targets: &[Target], scope: &Scope) -> Result<Row, String> {
    let event = match scope.get(&hook.event) {
        Some(Value::String(event)) => event.as_str(),
        other => {
            return Ok(Row::Bad(format!(
                "no event name at '{}' (webhook.event): found {}",
                hook.event,
                other.map_or("nothing", kind_of)
            )))
        }
    };
    let Some(op) = op_for(event, &hook.ops) else {
        return Ok(Row::Ignored(format!(
            "event '{event}' matches no suffix of webhook.ops"
        )));
    };
    let target = match &hook.collection {
        Some(path) => {
            let Some(name) = scope.get(path).and_then(paths::scalar_text) else {
                return Ok(Row::Bad(format!(
                    "no collection name at '{path}' (webhook.collection)"
                )));
            };
            match find_target(targets, &name) {
                Some(t) => t,
                None => {
                    return Ok(Row::Ignored(format!(
                        "collection '{name}' is not an entity of this system"
                    )))
                }
            }
        }
        None => match targets {
            [one] => one,
            [] => return Ok(Row::Ignored("no entity is bound to this system".into())),
            _ => {
                return Err(format!(
                    "webhook.collection is not set and {} entities are bound to this system; set it to the dotted path of the collection name in the payload (for example \"collection\")",
                    targets.len()
                ))
            }
        },
    };
    let ids = match ids(hook, scope) {
        Ok(ids) => ids,
        Err(message) => return Ok(Row::Bad(message)),
    };
    let data = match (op, hook.partial, &hook.payload) {
        (Operation::Upsert, false, Some(path)) => match scope.own(path) {
            Some(Value::Object(fields)) => Some(fields),
            other => {
                return Ok(Row::Bad(format!(
                    "no record fields at '{path}' (webhook.payload): found {}",
                    other.map_or("nothing", kind_of)
                )))
            }
        },
        // With rows and no payload path, the row is the record.
        (Operation::Upsert, false, None) => match scope.row {
            Value::Object(fields) => Some(fields),
            other => {
                return Ok(Row::Bad(format!(
                    "the row is {}, not a record object",
                    kind_of(other)
                )))
            }
        },
        _ => None,
    };
    Ok(Row::Changes(
        ids.into_iter()
            .map(|(id, raw)| {
                let record = data.map(|fields| {
                    let mut record = fields.clone();
                    record.insert(target.primary_key.clone(), raw);
                    Value::Object(record)
                });
                Change {
                    entity: target.name.clone(),
                    id,
                    op,
                    version: record
                        .as_ref()
                        .and_then(|r| change_time(r, &target.updated_at)),
                    data: record.map(|r| r.to_string()),
                    previous: None,
                    actor: None,
                }
            })
            .collect(),
    ))
}

/// Compares secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The operation of the longest suffix of `event` in `ops`; none when no
/// suffix matches.
pub(crate) fn op_for(event: &str, ops: &[(String, Operation)]) -> Option<Operation> {
    ops.iter()
        .filter(|(suffix, _)| event.ends_with(suffix.as_str()))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, op)| *op)
}

/// The entity a payload names: by its name, else its `webhook_name`, else its path.
fn find_target<'a>(targets: &'a [Target], name: &str) -> Option<&'a Target> {
    targets
        .iter()
        .find(|t| t.name == name)
        .or_else(|| {
            targets
                .iter()
                .find(|t| t.webhook_name.as_deref() == Some(name))
        })
        .or_else(|| targets.iter().find(|t| t.path_name == name))
}

/// The ids a payload names at `webhook.id` and `webhook.ids`, as text and as
/// they were written, without repeats.
fn ids(hook: &Webhook, scope: &Scope) -> Result<Vec<(String, Value)>, String> {
    let mut raw: Vec<(&str, &Value)> = Vec::new();
    if let Some(path) = &hook.id {
        if let Some(id) = scope.own(path).filter(|v| !v.is_null()) {
            raw.push(("webhook.id", id));
        }
    }
    if let Some(path) = &hook.ids {
        match scope.own(path) {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => raw.extend(ids.iter().map(|id| ("webhook.ids", id))),
            Some(other) => {
                return Err(format!(
                    "'{path}' (webhook.ids) holds {}, not an array of ids",
                    kind_of(other)
                ))
            }
        }
    }
    let mut ids: Vec<(String, Value)> = Vec::new();
    for (key, id) in raw {
        let Some(text) = paths::scalar_text(id) else {
            return Err(format!("the id {id} ({key}) is not a string or a number"));
        };
        if !ids.iter().any(|(seen, _)| *seen == text) {
            ids.push((text, id.clone()));
        }
    }
    if ids.is_empty() {
        let wanted: Vec<String> = [(&hook.id, "webhook.id"), (&hook.ids, "webhook.ids")]
            .into_iter()
            .filter_map(|(path, key)| path.as_ref().map(|p| format!("'{p}' ({key})")))
            .collect();
        return Err(format!("no record id at {}", wanted.join(" or ")));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
