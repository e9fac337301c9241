//! SQL helpers: conversions between JSON and SQL values, identifier quoting.

use crate::sql::Value as SqlValue;
use serde_json::{Map, Number, Value};

/// Converts a JSON value to a SQL parameter, taking its text rather than
/// copying it; as [`to_sql`].
pub fn into_sql(v: Value) -> SqlValue {
    match v {
        Value::String(s) => SqlValue::Text(s),
        other => to_sql(&other),
    }
}

/// Converts a JSON value to a SQL parameter. Booleans become 0/1, arrays and
/// objects become their JSON text.
pub fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// Converts a SQL value to JSON. Blobs become lower-case hex text.
pub fn to_json(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Number((*i).into()),
        SqlValue::Real(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        SqlValue::Text(s) => Value::String(s.clone()),
        SqlValue::Blob(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// The text form of a SQL value, used for record ids.
pub fn to_id(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => String::new(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// Builds a JSON object from a row.
pub fn row_to_record(columns: &[String], row: &[SqlValue]) -> Map<String, Value> {
    columns
        .iter()
        .zip(row)
        .map(|(c, v)| (c.clone(), to_json(v)))
        .collect()
}

/// Quotes an identifier for SQLite and PostgreSQL alike.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a statement error passes with time: PostgreSQL's transaction
/// rollbacks (class 40: serialization failures, deadlocks), lock timeouts
/// (55P03), lost or refused connections (class 08, 57P01-57P03) and
/// exhausted resources (class 53 but 53400, a configured limit), as the host
/// tags them (`[SQLSTATE …]`);
/// a prepared statement outdated by a table change; SQLite's busy or locked
/// files.
pub fn passing(message: &str) -> bool {
    let code = message
        .rsplit_once("[SQLSTATE ")
        .and_then(|(_, rest)| rest.strip_suffix(']'));
    if let Some(code) = code {
        return code.starts_with("40")
            || code.starts_with("08")
            || (code.starts_with("53") && code != "53400")
            || matches!(code, "55P03" | "57P01" | "57P02" | "57P03")
            // The host prepares the statement afresh next time.
            || message.contains("cached plan must not change result type");
    }
    message.contains("database is locked") || message.contains("database table is locked")
}
