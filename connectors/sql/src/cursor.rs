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
    /// Within a pass over rows some of which are not settled yet (a
    /// transaction still open may commit rows stamped before them): the last
    /// settled position, where the pass's last page puts the cursor back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Position>,
    /// The same for the tombstones' position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_deleted: Option<Position>,
}

impl ChangeCursor {
    /// Moves the (updated-at, key) position over a page of rows (see
    /// [`Position::advance`]), and back to the last settled row when no page
    /// follows (`more` false; see [`Position::settle`]).
    pub fn step(&mut self, end: Option<Position>, settled: Option<Position>, more: bool) {
        let mut at = self.position();
        at.advance(&mut self.kept, end, settled);
        if !more {
            at.settle(&mut self.kept);
        }
        self.ts = at.ts;
        self.id = at.id;
    }

    /// At the end of a pass: puts the tombstones' position back on the last
    /// settled tombstone.
    pub fn settle_deleted(&mut self) {
        if let Some(deleted) = &mut self.deleted {
            deleted.settle(&mut self.kept_deleted);
        }
    }

    /// The (updated-at, primary key) position.
    pub fn position(&self) -> Position {
        Position {
            ts: self.ts.clone(),
            id: self.id.clone(),
        }
    }
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

impl Position {
    /// The position before any row (no row had a time yet).
    pub fn start() -> Position {
        Position {
            ts: Value::Null,
            id: Value::Null,
        }
    }

    /// Moves over a page of rows read on a database whose late commits are
    /// known: `end` is the page's last row, `settled` the last row of the
    /// page stamped before the horizon (with no horizon, `end` itself). The
    /// position goes to the end of the page, so that a pass goes on, and
    /// `kept` remembers the last settled row of the pass while it differs.
    /// Once a row was not settled, `kept` stays where it is until the pass
    /// ends, even if later pages are settled by a horizon that has moved
    /// on: what committed meanwhile among the rows already passed by must
    /// still be read.
    pub fn advance(
        &mut self,
        kept: &mut Option<Position>,
        end: Option<Position>,
        settled: Option<Position>,
    ) {
        let last_settled = match kept.take() {
            Some(kept) => kept,
            None => settled.unwrap_or_else(|| self.clone()),
        };
        if let Some(end) = end {
            *self = end;
        }
        *kept = (last_settled != *self).then_some(last_settled);
    }

    /// At the end of a pass: back to the last settled row, so that the next
    /// pass reads the rows after it again, with whatever committed among
    /// them meanwhile.
    pub fn settle(&mut self, kept: &mut Option<Position>) {
        if let Some(settled) = kept.take() {
            *self = settled;
        }
    }
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
            kept: None,
            kept_deleted: None,
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

    fn at(ts: i64, id: i64) -> Position {
        Position {
            ts: json!(ts),
            id: json!(id),
        }
    }

    fn cursor(ts: i64, id: i64) -> ChangeCursor {
        ChangeCursor {
            ts: json!(ts),
            id: json!(id),
            deleted: None,
            lsn: None,
            settled: None,
            kept: None,
            kept_deleted: None,
        }
    }

    #[test]
    fn a_pass_ends_on_its_last_settled_row() {
        // All settled: the cursor follows the rows.
        let mut c = cursor(1, 1);
        c.step(Some(at(5, 2)), Some(at(5, 2)), true);
        assert_eq!((c.position(), c.kept.clone()), (at(5, 2), None));
        c.step(Some(at(9, 1)), Some(at(9, 1)), false);
        assert_eq!((c.position(), c.kept.clone()), (at(9, 1), None));

        // The first page ends on unsettled rows: the pass goes on from its
        // end, keeping its last settled row; the second page has none
        // settled and is the last, so the cursor goes back to that row.
        let mut c = cursor(1, 1);
        c.step(Some(at(7, 3)), Some(at(4, 8)), true);
        assert_eq!((c.position(), c.kept.clone()), (at(7, 3), Some(at(4, 8))));
        let text = encode(&c);
        assert_eq!(decode::<ChangeCursor>(&text, "contacts").unwrap(), c);
        c.step(Some(at(8, 1)), None, false);
        assert_eq!((c.position(), c.kept.clone()), (at(4, 8), None));

        // Nothing settled in the whole pass: back to where it began.
        let mut c = cursor(3, 3);
        c.step(Some(at(6, 1)), None, true);
        assert_eq!(c.kept, Some(at(3, 3)));
        c.step(None, None, false);
        assert_eq!((c.position(), c.kept.clone()), (at(3, 3), None));

        // The horizon moved on between pages, settling the second page: a
        // transaction that ended meanwhile may have committed rows among
        // those the first page passed by, so the pass still ends on the
        // first page's last settled row.
        let mut c = cursor(1, 1);
        c.step(Some(at(6, 1)), Some(at(2, 2)), true);
        c.step(Some(at(9, 9)), Some(at(9, 9)), false);
        assert_eq!((c.position(), c.kept.clone()), (at(2, 2), None));

        // No row has an updated-at yet: the null position is kept.
        let mut c = ChangeCursor {
            ts: serde_json::Value::Null,
            id: serde_json::Value::Null,
            ..cursor(0, 0)
        };
        c.step(Some(at(5, 5)), None, false);
        assert!(c.ts.is_null() && c.id.is_null() && c.kept.is_none());
    }

    #[test]
    fn tombstones_go_back_to_their_last_settled_row_when_the_pass_ends() {
        let mut c = cursor(1, 1);
        c.deleted = Some(at(2, 2));
        // A page of tombstones, the last two unsettled, then upserts with
        // more to come: the tombstones' position stays at the page's end.
        let mut deleted = c.deleted.take().unwrap();
        deleted.advance(&mut c.kept_deleted, Some(at(6, 6)), Some(at(4, 4)));
        c.deleted = Some(deleted);
        c.step(Some(at(3, 1)), Some(at(3, 1)), true);
        assert_eq!(c.deleted, Some(at(6, 6)));
        // The next call finds no tombstone after it; its upserts end the
        // pass: both positions go back to their last settled rows.
        let mut deleted = c.deleted.take().unwrap();
        deleted.advance(&mut c.kept_deleted, None, None);
        c.deleted = Some(deleted);
        c.step(Some(at(9, 9)), Some(at(5, 5)), false);
        c.settle_deleted();
        assert_eq!(
            (c.deleted.clone(), c.kept_deleted.clone()),
            (Some(at(4, 4)), None)
        );
        assert_eq!((c.position(), c.kept.clone()), (at(5, 5), None));
    }
}
