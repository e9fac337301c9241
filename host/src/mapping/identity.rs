//! Match keys: how weir recognises the same real-world record in several
//! systems. An entity's `match_on` names canonical fields; a record's key is
//! their values after the mappings' conversions, normalised so that the
//! spellings people type alike compare equal:
//!
//! - text: surrounding white space removed, lower case (Unicode);
//! - numbers: by value (`1`, `1.0` and `1e0` are one key);
//! - booleans, arrays and objects: their JSON text;
//! - a missing or null field, or text that is empty once trimmed: the record
//!   has no key (it is never matched; a link alone recognises it).

use super::Record;
use serde_json::Value;

/// The match key of `record` under the canonical fields `fields`, or none
/// when `fields` is empty or one of them has no value.
pub fn match_key(fields: &[String], record: &Record) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        parts.push(Value::String(normalise(record.get(field)?)?));
    }
    Some(Value::Array(parts).to_string())
}

/// Whether `found` holds every field of `probe` with the same value, as
/// match keys compare values (a missing field is null).
pub fn same_values(probe: &Record, found: &Record) -> bool {
    probe.iter().all(|(field, value)| {
        normalise(value) == normalise(found.get(field).unwrap_or(&Value::Null))
    })
}

/// One value's part of a key.
fn normalise(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_lowercase())
        }
        Value::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
            _ => n.to_string(),
        }),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(fields: &[&str], record: Value) -> Option<String> {
        let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        match_key(&fields, record.as_object().unwrap())
    }

    #[test]
    fn text_is_compared_trimmed_and_without_case() {
        assert_eq!(
            key(&["email"], json!({"email": " Ann@Example.COM "})),
            key(&["email"], json!({"email": "ann@example.com"}))
        );
        assert_ne!(
            key(&["email"], json!({"email": "ann@example.com"})),
            key(&["email"], json!({"email": "anne@example.com"}))
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(key(&["n"], json!({"n": 1})), key(&["n"], json!({"n": 1.0})));
        assert_ne!(
            key(&["n"], json!({"n": 1})),
            key(&["n"], json!({"n": "1 "})).map(|k| k + "x")
        );
    }

    #[test]
    fn a_record_missing_a_field_has_no_key() {
        assert_eq!(key(&["email"], json!({"name": "Ann"})), None);
        assert_eq!(key(&["email"], json!({"email": null})), None);
        assert_eq!(key(&["email"], json!({"email": "  "})), None);
        assert_eq!(key(&[], json!({"email": "a@b"})), None);
    }

    #[test]
    fn composite_keys_keep_their_parts_apart() {
        let a = key(&["first", "last"], json!({"first": "a b", "last": "c"}));
        let b = key(&["first", "last"], json!({"first": "a", "last": "b c"}));
        assert!(a.is_some());
        assert_ne!(a, b);
        assert_eq!(
            a,
            key(&["first", "last"], json!({"first": "A B", "last": " C"}))
        );
    }
}
