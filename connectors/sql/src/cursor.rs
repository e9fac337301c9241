//! Cursors of the `read` and `changes` calls: JSON text that keeps the type of the
//! key values (an integer key stays an integer), so that the next query compares
//! like with like.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_sdk::{ConnectorError, Result};

/// Where a snapshot continues: after this primary-key value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadCursor {
    /// The primary key of the last row returned.
    pub after: Value,
}

/// Where the change feed continues: after this (updated-at, primary key) pair.
/// Both are null when no row had an updated-at yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeCursor {
    /// The updated-at value of the last change seen.
    pub ts: Value,
    /// The primary key of the last change seen at that updated-at.
    pub id: Value,
    /// Where the tombstones continue, when the entity keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Position>,
    /// The WAL position up to which the replication slot was read, when
    /// deletes are read from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// The position of the cursor before this one: the host committed it
    /// when it asks with this one, so the slot may be moved on to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<String>,
}

/// A (time, primary key) position in a table ordered by both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// The time of the last row seen.
    pub ts: Value,
    /// The primary key of the last row seen at that time.
    pub id: Value,
}

/// Encodes a cursor as JSON text.
pub fn encode<T: Serialize>(cursor: &T) -> String {
    // A struct of JSON values always serializes.
    serde_json::to_string(cursor).unwrap_or_default()
}

/// Decodes a cursor; `entity` names the entity in the error message.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str, entity: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        ConnectorError::invalid_config(format!("entity '{entity}': bad cursor '{text}': {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_cursor_keeps_the_key_type() {
        let text = encode(&ReadCursor { after: json!(123) });
        assert_eq!(text, r#"{"after":123}"#);
        let back: ReadCursor = decode(&text, "contacts").unwrap();
        assert_eq!(back.after, json!(123));
        let text = encode(&ReadCursor {
            after: json!("123"),
        });
        assert_eq!(text, r#"{"after":"123"}"#);
    }

    #[test]
    fn change_cursor_round_trips() {
        let c = ChangeCursor {
            ts: json!("2024-01-02 03:04:05"),
            id: json!(7),
            deleted: None,
            lsn: None,
            settled: None,
        };
        assert_eq!(encode(&c), r#"{"ts":"2024-01-02 03:04:05","id":7}"#);
        let logical = ChangeCursor {
            lsn: Some("0/16B3748".into()),
            settled: Some("0/16B3700".into()),
            ..c.clone()
        };
        assert_eq!(
            encode(&logical),
            r#"{"ts":"2024-01-02 03:04:05","id":7,"lsn":"0/16B3748","settled":"0/16B3700"}"#
        );
        assert_eq!(
            decode::<ChangeCursor>(&encode(&logical), "contacts").unwrap(),
            logical
        );
        let back: ChangeCursor = decode(&encode(&c), "contacts").unwrap();
        assert_eq!(back, c);
        let empty: ChangeCursor = decode(r#"{"ts":null,"id":null}"#, "contacts").unwrap();
        assert!(empty.ts.is_null() && empty.id.is_null());
    }

    #[test]
    fn bad_cursors_name_the_entity() {
        let err = decode::<ReadCursor>("nonsense", "contacts").unwrap_err();
        assert!(err
            .message
            .starts_with("entity 'contacts': bad cursor 'nonsense'"));
    }
}
