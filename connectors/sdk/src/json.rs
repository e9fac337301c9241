//! JSON helpers for record bodies.

use crate::{ConnectorError, Result};
use serde_json::{Map, Value};

/// A record body: a JSON object.
pub type Record = Map<String, Value>;

/// Parses a record body; anything but a JSON object is rejected.
pub fn parse_record(text: &str) -> Result<Record> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ConnectorError::rejected(format!(
            "record body must be a JSON object, got {}",
            kind_of(&other)
        ))),
        Err(e) => Err(ConnectorError::rejected(format!(
            "record body is not valid JSON: {e}"
        ))),
    }
}

/// Serializes a record body.
pub fn to_text(record: &Record) -> String {
    // Serializing a map of JSON values cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

/// The text form of a JSON value used for ids and flat files: strings as they are,
/// null as empty, everything else as JSON.
pub fn value_to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A word naming the JSON type of a value, for messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a value a system holds equals one the host saw there
/// (`keyed-write.seen`): numbers by value (a text or a boolean holding one
/// too), a missing value as `null`, anything else exactly.
pub fn same_value(held: Option<&Value>, seen: &Value) -> bool {
    let held = held.unwrap_or(&Value::Null);
    if held == seen {
        return true;
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    match (held, seen) {
        (Value::String(_), Value::String(_)) => false,
        _ => matches!((number(held), number(seen)), (Some(a), Some(b)) if a == b),
    }
}

/// Whether `record` still holds every value of `seen`.
pub fn holds_seen(record: &Record, seen: &Record) -> bool {
    seen.iter()
        .all(|(field, v)| same_value(record.get(field), v))
}

/// The text a value is compared by when the host looks for a record: text
/// trimmed and in lower case, whole numbers without a fraction, null and
/// empty text alike (empty).
pub fn probe_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.trim().to_lowercase(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Whether `record` holds every field of `probe` with a value that compares
/// equal by [`probe_text`] (a missing field is null). An empty probe
/// matches nothing.
pub fn probe_matches(probe: &Record, record: &Record) -> bool {
    !probe.is_empty()
        && probe.iter().all(|(field, value)| {
            probe_text(value) == probe_text(record.get(field).unwrap_or(&Value::Null))
        })
}

#[cfg(test)]
mod probe_tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn seen_values_compare_numbers_by_value_and_text_exactly() {
        assert!(same_value(Some(&json!(5)), &json!(5.0)));
        assert!(same_value(Some(&json!("5")), &json!(5)));
        assert!(same_value(Some(&json!(true)), &json!(1)));
        assert!(same_value(None, &Value::Null));
        assert!(!same_value(Some(&json!("Smith")), &json!("smith")));
        assert!(!same_value(Some(&json!(" a")), &json!("a")));
        assert!(!same_value(Some(&json!("x")), &Value::Null));
        let record = parse_record(r#"{"a": 1, "b": "x"}"#).unwrap();
        assert!(holds_seen(&record, &parse_record(r#"{"a": 1.0}"#).unwrap()));
        assert!(!holds_seen(
            &record,
            &parse_record(r#"{"b": "y"}"#).unwrap()
        ));
    }

    #[test]
    fn probes_compare_text_without_case_and_numbers_by_value() {
        let probe = rec(json!({"email": " Ann@Example.com", "n": 1}));
        assert!(probe_matches(
            &probe,
            &rec(json!({"email": "ann@example.com", "n": "1"}))
        ));
        assert!(probe_matches(
            &probe,
            &rec(json!({"email": "ANN@EXAMPLE.COM", "n": 1.0}))
        ));
        assert!(!probe_matches(
            &probe,
            &rec(json!({"email": "ann@example.org", "n": 1}))
        ));
        assert!(!probe_matches(
            &probe,
            &rec(json!({"email": "ann@example.com"}))
        ));
        assert!(probe_matches(
            &rec(json!({"phone": null})),
            &rec(json!({"phone": ""}))
        ));
        assert!(!probe_matches(&Record::new(), &rec(json!({"a": 1}))));
    }
}
