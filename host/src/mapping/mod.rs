//! Mapping between a system's records and the canonical model.
//!
//! *Architecture invariant:* this module is pure: no I/O, no async, no clock.

use crate::manifest::SystemEntity;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A record body: a JSON object.
pub type Record = Map<String, Value>;

/// Turns a system's record into the canonical record: the primary key and
/// ignored fields are removed (identity lives in the id links) and fields are
/// renamed to their canonical names.
pub fn to_canonical(binding: &SystemEntity, mut record: Record) -> Record {
    record.remove(&binding.primary_key);
    let mut out = Record::new();
    for (field, value) in record {
        if binding.ignore.contains(&field) {
            continue;
        }
        let name = binding.rename.get(&field).cloned().unwrap_or(field);
        out.insert(name, value);
    }
    out
}

/// Turns a canonical record into the record to write to a system: fields are
/// renamed to the system's names; ignored fields and the primary key are left out.
pub fn from_canonical(binding: &SystemEntity, record: &Record) -> Record {
    let mut out = Record::new();
    for (field, value) in record {
        let name = binding
            .rename
            .iter()
            .find(|(_, canonical)| *canonical == field)
            .map(|(system, _)| system.clone())
            .unwrap_or_else(|| field.clone());
        if name == binding.primary_key || binding.ignore.contains(&name) {
            continue;
        }
        out.insert(name, value.clone());
    }
    out
}

/// The text form of an id value: strings as they are, anything else as JSON.
pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The content hash of a canonical record, independent of key order.
pub fn hash(record: &Record) -> [u8; 16] {
    let mut keys: Vec<&String> = record.keys().collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(canonical_value(&record[k]).as_bytes());
        h.update([0]);
    }
    let full: [u8; 32] = h.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

/// A value's JSON text with object keys sorted at every depth.
fn canonical_value(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        canonical_value(&m[*k])
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_value).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Direction;
    use serde_json::json;

    fn binding() -> SystemEntity {
        SystemEntity {
            name: "contacts".into(),
            direction: Direction::Both,
            primary_key: "id".into(),
            rename: [("fname".to_string(), "first_name".to_string())]
                .into_iter()
                .collect(),
            ignore: vec!["modified".into()],
            settings: json!({}),
            on_delete: crate::manifest::OnDelete::Delete,
            soft_delete_field: None,
        }
    }

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renames_strips_key_and_ignored_fields_both_ways() {
        let b = binding();
        let canonical = to_canonical(
            &b,
            rec(json!({"id": 7, "fname": "Ada", "email": "a@x", "modified": "t"})),
        );
        assert_eq!(
            Value::Object(canonical.clone()),
            json!({"first_name": "Ada", "email": "a@x"})
        );
        let back = from_canonical(&b, &canonical);
        assert_eq!(Value::Object(back), json!({"fname": "Ada", "email": "a@x"}));
        let with_foreign = rec(json!({"first_name": "Ada", "modified": "x", "id": 3}));
        assert_eq!(
            Value::Object(from_canonical(&b, &with_foreign)),
            json!({"fname": "Ada"})
        );
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = rec(json!({"a": 1, "b": {"y": 1, "x": [1, 2]}}));
        let mut b = Record::new();
        b.insert("b".into(), json!({"x": [1, 2], "y": 1}));
        b.insert("a".into(), json!(1));
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(
            hash(&a),
            hash(&rec(json!({"a": 2, "b": {"y": 1, "x": [1, 2]}})))
        );
        assert_ne!(hash(&rec(json!({"a": "1"}))), hash(&rec(json!({"a": 1}))));
    }
}
