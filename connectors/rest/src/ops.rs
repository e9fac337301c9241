//! The requests of single-record operations (entity settings `get`,
//! `create`, `update`, `delete`): the method, the URL template and where the
//! record's key goes (`{id}` in the path or the query, or a field of the
//! body), the envelope of the request body and of the reply, and the statuses
//! that mean "no such record". Pure: no I/O.

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::http_util::encode;

/// The placeholder of the record's key in a path template.
pub(crate) const ID: &str = "{id}";

/// One operation's table as the manifest writes it.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOp {
    method: Option<String>,
    path: Option<String>,
    key_field: Option<String>,
    envelope: Option<String>,
    reply_envelope: Option<String>,
    missing_status: Option<Vec<u16>>,
    list: Option<bool>,
}

/// Which operation a table describes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Get,
    Create,
    Update,
    Delete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Delete => "delete",
        }
    }
}

/// How one operation is requested.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Op {
    pub kind: Kind,
    /// Upper case.
    pub method: String,
    /// Under `base_url`, with a leading `/`; may hold `{id}` and a query.
    pub path: String,
    /// The body field that carries the record's key.
    pub key_field: Option<String>,
    /// Dotted path the body is wrapped at (`data` → `{"data": {...}}`).
    pub envelope: String,
    /// Dotted path of the record in the reply; `None`: the system's
    /// `item_envelope`.
    pub reply_envelope: Option<String>,
    /// The statuses meaning "no such record"; `None`: the system's
    /// `missing_status`.
    pub missing_status: Option<Vec<u16>>,
    /// The body is a list of one record (bulk endpoints).
    pub list: bool,
}

/// The four operations of an entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ops {
    pub get: Op,
    pub create: Op,
    pub update: Op,
    pub delete: Op,
}

/// The operation tables of an entity's settings.
#[derive(Default, Debug, Clone)]
pub(crate) struct RawOps {
    pub get: Option<RawOp>,
    pub create: Option<RawOp>,
    pub update: Option<RawOp>,
    pub delete: Option<RawOp>,
}

impl Ops {
    /// The operations of the collection at `path` (with its leading `/`);
    /// `update_method` is the older setting of the update's method. An
    /// error names the key (`update.path`...) and the fix.
    pub(crate) fn new(
        path: &str,
        update_method: Option<String>,
        raw: RawOps,
    ) -> Result<Ops, String> {
        let mut update = raw.update.unwrap_or_default();
        match (&update.method, update_method) {
            (Some(_), Some(_)) => {
                return Err(
                    "update_method and update.method are both set; keep update.method".into(),
                )
            }
            (None, Some(m)) => update.method = Some(m),
            _ => {}
        }
        Ok(Ops {
            get: op(Kind::Get, path, raw.get.unwrap_or_default())?,
            create: op(Kind::Create, path, raw.create.unwrap_or_default())?,
            update: op(Kind::Update, path, update)?,
            delete: op(Kind::Delete, path, raw.delete.unwrap_or_default())?,
        })
    }
}

/// Checks one operation's table and fills in its defaults.
fn op(kind: Kind, collection: &str, raw: RawOp) -> Result<Op, String> {
    let name = kind.name();
    let method = match (kind, raw.method.as_deref().map(str::to_ascii_uppercase)) {
        (Kind::Get, None) => "GET".to_string(),
        (Kind::Create, None) => "POST".to_string(),
        (Kind::Update, None) => "PATCH".to_string(),
        (Kind::Delete, None) => "DELETE".to_string(),
        (Kind::Get, Some(m)) if m != "GET" => {
            return Err(format!("get.method = \"{m}\": a record is read with GET"))
        }
        (_, Some(m)) if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) => m,
        (_, Some(m)) => {
            return Err(format!(
                "{name}.method = \"{m}\": use \"POST\", \"PUT\", \"PATCH\" or \"DELETE\""
            ))
        }
    };
    let path = match raw.path {
        Some(p) if p.starts_with('/') => p,
        Some(p) => format!("/{p}"),
        None if kind == Kind::Create => collection.to_string(),
        None if raw.key_field.is_some() => collection.to_string(),
        None => format!("{collection}/{ID}"),
    };
    let keyed = path.contains(ID) || raw.key_field.is_some();
    match kind {
        Kind::Create if path.contains(ID) => {
            return Err(format!(
                "create.path = \"{path}\" holds {ID}, but a record being created has no key yet; write the collection's path"
            ))
        }
        Kind::Get if raw.key_field.is_some() => {
            return Err(format!(
                "get.key_field: a GET carries no body; put {ID} in get.path instead (for example \"{collection}?id={ID}\")"
            ))
        }
        Kind::Get | Kind::Update | Kind::Delete if !keyed => {
            return Err(format!(
                "{name}.path = \"{path}\" has no place for the record's key: put {ID} in it (for example \"{collection}/{ID}\") or set {name}.key_field to the body field that carries it"
            ))
        }
        _ => {}
    }
    if raw.list.unwrap_or(false) && kind == Kind::Get {
        return Err("get.list: a GET carries no body; leave list out".into());
    }
    if let Some(statuses) = &raw.missing_status {
        if kind == Kind::Create {
            return Err(
                "create.missing_status: a create does not look for a record; leave it out".into(),
            );
        }
        if let Some(s) = statuses.iter().find(|s| !(400..=599).contains(*s)) {
            return Err(format!(
                "{name}.missing_status lists {s}; list the error statuses (400 to 599) the system answers for a record it does not hold"
            ));
        }
    }
    Ok(Op {
        kind,
        method,
        path,
        key_field: raw.key_field,
        envelope: raw.envelope.unwrap_or_default(),
        reply_envelope: raw.reply_envelope,
        missing_status: raw.missing_status,
        list: raw.list.unwrap_or(false),
    })
}

impl Op {
    /// The URL under `base_url` for the record `id` (`{id}` replaced,
    /// percent-encoded); a create's URL has no key.
    pub(crate) fn url(&self, base_url: &str, id: Option<&str>) -> String {
        let path = match id {
            Some(id) => self.path.replace(ID, &encode(id)),
            None => self.path.clone(),
        };
        format!("{base_url}{path}")
    }

    /// The request body for `record` (fields to write; none for a delete)
    /// of the record `id`: its key in `key_field`, as a list of one when
    /// `list`, wrapped at `envelope`. `None` when there is nothing to send.
    pub(crate) fn body(
        &self,
        record: Option<Map<String, Value>>,
        id: Option<&str>,
    ) -> Option<Value> {
        let mut record = match (record, &self.key_field) {
            (Some(r), _) => r,
            (None, Some(_)) => Map::new(),
            (None, None) => return None,
        };
        if let (Some(field), Some(id)) = (&self.key_field, id) {
            record.insert(field.clone(), key_value(id));
        }
        let mut body = Value::Object(record);
        if self.list {
            body = Value::Array(vec![body]);
        }
        for part in self.envelope.rsplit('.').filter(|p| !p.is_empty()) {
            let mut outer = Map::new();
            outer.insert(part.to_string(), body);
            body = Value::Object(outer);
        }
        Some(body)
    }

    /// The statuses meaning "no such record", given the system's.
    pub(crate) fn missing<'a>(&'a self, system: &'a [u16]) -> &'a [u16] {
        self.missing_status.as_deref().unwrap_or(system)
    }

    /// Where the record is in the reply, given the system's `item_envelope`.
    pub(crate) fn reply_at<'a>(&'a self, system: &'a str) -> &'a str {
        self.reply_envelope.as_deref().unwrap_or(system)
    }

    /// The setting that describes this operation, for messages.
    pub(crate) fn setting(&self) -> String {
        format!("settings.{}", self.kind.name())
    }
}

/// A key as JSON: a number when it is one (`5` → `5`), else a string.
pub(crate) fn key_value(id: &str) -> Value {
    match serde_json::from_str::<Value>(id) {
        Ok(n @ Value::Number(_)) => n,
        _ => Value::String(id.to_string()),
    }
}

/// The record a reply holds at `path`: an object, or a list of at most one
/// (a filtered collection). `Ok(None)`: an empty list or nothing there.
pub(crate) fn reply_record(body: Value, path: &str) -> Result<Option<Value>, String> {
    match crate::paths::take(body, path) {
        Some(record @ Value::Object(_)) => Ok(Some(record)),
        Some(Value::Array(mut items)) if items.len() <= 1 => match items.pop() {
            None => Ok(None),
            Some(record @ Value::Object(_)) => Ok(Some(record)),
            Some(other) => Err(format!(
                "a list of {}, not of records",
                weir_sdk::json::kind_of(&other)
            )),
        },
        Some(Value::Array(items)) => Err(format!(
            "{} records where one was asked for by its key",
            items.len()
        )),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(weir_sdk::json::kind_of(&other).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> RawOp {
        serde_json::from_value(v).unwrap()
    }

    fn ops(update: Value, delete: Value) -> Result<Ops, String> {
        Ops::new(
            "/records",
            None,
            RawOps {
                update: Some(raw(update)),
                delete: Some(raw(delete)),
                ..RawOps::default()
            },
        )
    }

    #[test]
    fn the_defaults_put_the_key_in_the_path() {
        let o = Ops::new("/contacts", None, RawOps::default()).unwrap();
        assert_eq!(
            o.get.url("http://h", Some("a b/7")),
            "http://h/contacts/a%20b%2F7"
        );
        assert_eq!(o.create.url("http://h", None), "http://h/contacts");
        assert_eq!(
            (o.update.method.as_str(), o.delete.method.as_str()),
            ("PATCH", "DELETE")
        );
        assert_eq!(o.update.url("http://h", Some("7")), "http://h/contacts/7");
        assert_eq!(o.delete.body(None, Some("7")), None);
        let fields = json!({"name": "Ada"}).as_object().cloned();
        assert_eq!(
            o.update.body(fields, Some("7")),
            Some(json!({"name": "Ada"}))
        );
        assert_eq!(o.get.missing(&[403, 404]), [403, 404]);
        assert_eq!(o.get.reply_at("data"), "data");
        let put = Ops::new("/contacts", Some("PUT".into()), RawOps::default()).unwrap();
        assert_eq!(put.update.method, "PUT");
    }

    #[test]
    fn the_key_goes_in_the_query_or_the_body() {
        let o = ops(
            json!({"key_field": "Id"}),
            json!({"key_field": "Id", "list": true, "missing_status": [404, 500]}),
        )
        .unwrap();
        assert_eq!(o.update.url("http://h", Some("5")), "http://h/records");
        let fields = json!({"name": "Ada"}).as_object().cloned();
        assert_eq!(
            o.update.body(fields, Some("5")),
            Some(json!({"name": "Ada", "Id": 5}))
        );
        assert_eq!(
            o.delete.body(None, Some("rec-5")),
            Some(json!([{"Id": "rec-5"}]))
        );
        assert_eq!(o.delete.missing(&[404]), [404, 500]);
        let q = Ops::new(
            "/contacts",
            None,
            RawOps {
                get: Some(raw(json!({"path": "contacts?id=eq.{id}"}))),
                update: Some(raw(
                    json!({"path": "/contacts?id=eq.{id}", "envelope": "data.item"}),
                )),
                ..RawOps::default()
            },
        )
        .unwrap();
        assert_eq!(
            q.get.url("http://h", Some("7")),
            "http://h/contacts?id=eq.7"
        );
        let fields = json!({"name": "Ada"}).as_object().cloned();
        assert_eq!(
            q.update.body(fields, Some("7")),
            Some(json!({"data": {"item": {"name": "Ada"}}}))
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        for (update, delete, expected) in [
            (
                json!({"path": "/records"}),
                json!({}),
                "update.path = \"/records\" has no place for the record's key: put {id} in it",
            ),
            (
                json!({"method": "POST"}),
                json!({"method": "ERASE"}),
                "delete.method = \"ERASE\": use",
            ),
            (
                json!({}),
                json!({"missing_status": [200]}),
                "delete.missing_status lists 200",
            ),
            (json!({"metod": "PUT"}), json!({}), "unknown field `metod`"),
        ] {
            let message = match (
                serde_json::from_value::<RawOp>(update.clone()),
                serde_json::from_value::<RawOp>(delete.clone()),
            ) {
                (Ok(_), Ok(_)) => ops(update, delete).unwrap_err(),
                (Err(e), _) | (_, Err(e)) => e.to_string(),
            };
            assert!(message.contains(expected), "{message}");
        }
        let create = RawOps {
            create: Some(raw(json!({"path": "/records/{id}"}))),
            ..RawOps::default()
        };
        assert!(Ops::new("/records", None, create)
            .unwrap_err()
            .contains("has no key yet"));
        let both = RawOps {
            update: Some(raw(json!({"method": "PUT"}))),
            ..RawOps::default()
        };
        assert!(Ops::new("/records", Some("PATCH".into()), both)
            .unwrap_err()
            .contains("both set"));
    }

    #[test]
    fn a_reply_holds_a_record_or_a_list_of_at_most_one() {
        assert_eq!(
            reply_record(json!({"data": {"id": 1}}), "data"),
            Ok(Some(json!({"id": 1})))
        );
        assert_eq!(
            reply_record(json!([{"id": 1}]), ""),
            Ok(Some(json!({"id": 1})))
        );
        assert_eq!(reply_record(json!([]), ""), Ok(None));
        assert_eq!(reply_record(json!(null), ""), Ok(None));
        assert!(reply_record(json!([{"id": 1}, {"id": 2}]), "")
            .unwrap_err()
            .contains("2 records"));
        assert_eq!(reply_record(json!("x"), ""), Err("a string".to_string()));
        assert_eq!(key_value("5"), json!(5));
        assert_eq!(key_value("007"), json!("007"));
        assert_eq!(key_value("true"), json!("true"));
    }
}
