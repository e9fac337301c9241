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
