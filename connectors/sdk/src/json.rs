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
