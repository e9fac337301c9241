//! Turning write items into statements of one batch, and statement outcomes back
//! into item outcomes. Pure functions: the host call happens in the caller.

use weir_sdk::json::{self, Record};
use weir_sdk::sql::{Dialect, Rows, Statement, Value};
use weir_sdk::sql_util::{to_id, to_sql};
use weir_sdk::{ConnectorError, Operation, Result, WriteItem, Written};

use crate::statements;

/// The table a batch writes to, as the statements need it.
pub struct Target<'a> {
    /// The dialect of the database.
    pub dialect: Dialect,
    /// The entity name, for messages.
    pub entity: &'a str,
    /// The table name.
    pub table: &'a str,
    /// The primary-key column.
    pub pk: &'a str,
    /// The updated-at column, if configured.
    pub updated_at: Option<&'a str>,
    /// Whether the primary-key column holds integers.
    pub integer_key: bool,
}

/// What a planned statement does, to read its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Creates a record; the database assigns its key.
    Create,
    /// Creates or updates the record with this id.
    Upsert(String),
    /// Deletes the record with this id.
    Delete(String),
}

impl Target<'_> {
    /// Plans one item: the statement to send and what it does, or why the item is rejected.
    pub fn plan(&self, item: &WriteItem) -> Result<(Statement, Action)> {
        match (&item.op, &item.id) {
            (Operation::Delete, Some(id)) => Ok(self.delete(id)),
            (Operation::Delete, None) => Err(ConnectorError::rejected(format!(
                "entity '{}': delete without a record id",
                self.entity
            ))),
            (Operation::Upsert, id) => {
                let record = self.record(id.as_deref(), item.data.as_deref())?;
                Ok(match id {
                    Some(id) => self.upsert(id, &record),
                    None => self.create(&record),
                })
            }
        }
    }

    /// Reads the outcome of the statement planned for an item.
    pub fn outcome(
        &self,
        action: &Action,
        result: std::result::Result<Rows, String>,
    ) -> Result<Written> {
        let id = match action {
            Action::Create => None,
            Action::Upsert(id) | Action::Delete(id) => Some(id.as_str()),
        };
        let rows = result.map_err(|msg| self.rejected(id, &msg))?;
        let row = rows.rows.first();
        let returned_id = row
            .and_then(|r| r.first())
            .filter(|v| !matches!(v, Value::Null))
            .map(to_id);
        let version = row
            .and_then(|r| r.get(1))
            .filter(|v| !matches!(v, Value::Null))
            .map(to_id);
        match action {
            Action::Delete(id) => Ok(Written {
                id: id.clone(),
                version: None,
            }),
            Action::Upsert(id) => Ok(Written {
                id: returned_id.unwrap_or_else(|| id.clone()),
                version,
            }),
            Action::Create => match returned_id {
                Some(id) => Ok(Written { id, version }),
                None => Err(self.rejected(None, "the database returned no primary key")),
            },
        }
    }

    /// A rejection of the record `id` (none for a new record).
    fn rejected(&self, id: Option<&str>, message: &str) -> ConnectorError {
        match id {
            Some(id) => ConnectorError::rejected(format!(
                "entity '{}': record '{id}': {message}",
                self.entity
            )),
            None => {
                ConnectorError::rejected(format!("entity '{}': new record: {message}", self.entity))
            }
        }
    }

    /// Parses the body of an upsert.
    fn record(&self, id: Option<&str>, data: Option<&str>) -> Result<Record> {
        let text = data.ok_or_else(|| self.rejected(id, "upsert without a record body"))?;
        json::parse_record(text).map_err(|e| self.rejected(id, &e.message))
    }

    /// The parameter holding a record id: an integer for integer keys when it parses as one.
    fn key(&self, id: &str) -> Value {
        match id.parse::<i64>() {
            Ok(n) if self.integer_key => Value::Integer(n),
            _ => Value::Text(id.to_string()),
        }
    }

    fn delete(&self, id: &str) -> (Statement, Action) {
        let sql = statements::delete(self.dialect, self.table, self.pk);
        (
            Statement {
                sql,
                params: vec![self.key(id)],
            },
            Action::Delete(id.to_string()),
        )
    }

    fn upsert(&self, id: &str, record: &Record) -> (Statement, Action) {
        // The id given wins over a primary-key field left in the body.
        let fields: Vec<(&str, &serde_json::Value)> = record
            .iter()
            .filter(|(k, _)| k.as_str() != self.pk)
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let columns: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        let sql = statements::upsert(self.dialect, self.table, self.pk, self.updated_at, &columns);
        let params = std::iter::once(self.key(id))
            .chain(fields.iter().map(|(_, v)| to_sql(v)))
            .collect();
        (Statement { sql, params }, Action::Upsert(id.to_string()))
    }

    fn create(&self, record: &Record) -> (Statement, Action) {
        let columns: Vec<&str> = record.keys().map(String::as_str).collect();
        let sql = statements::insert(self.dialect, self.table, self.pk, self.updated_at, &columns);
        let params = record.values().map(to_sql).collect();
        (Statement { sql, params }, Action::Create)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::ErrorKind;

    /// Generated binding types have no `PartialEq`; compare their debug forms.
    fn debug<T: std::fmt::Debug + ?Sized>(value: &T) -> String {
        format!("{value:?}")
    }

    fn target(integer_key: bool) -> Target<'static> {
        Target {
            dialect: Dialect::Sqlite,
            entity: "contacts",
            table: "people",
            pk: "id",
            updated_at: Some("updated"),
            integer_key,
        }
    }

    fn item(id: Option<&str>, op: Operation, data: Option<&str>) -> WriteItem {
        WriteItem {
            id: id.map(str::to_string),
            op,
            data: data.map(str::to_string),
        }
    }

    #[test]
    fn create_inserts_the_body() {
        let (st, action) = target(true)
            .plan(&item(None, Operation::Upsert, Some(r#"{"name":"Ada"}"#)))
            .unwrap();
        assert_eq!(action, Action::Create);
        assert_eq!(
            st.sql,
            r#"INSERT INTO "people" ("name") VALUES (?1) RETURNING "id", "updated""#
        );
        assert_eq!(debug(&st.params), debug(&[Value::Text("Ada".into())]));
    }

    #[test]
    fn upsert_binds_integer_keys_and_skips_the_key_field() {
        let (st, action) = target(true)
            .plan(&item(
                Some("12"),
                Operation::Upsert,
                Some(r#"{"id":99,"age":3}"#),
            ))
            .unwrap();
        assert_eq!(action, Action::Upsert("12".into()));
        assert_eq!(
            debug(&st.params),
            debug(&[Value::Integer(12), Value::Integer(3)])
        );
        assert!(st.sql.contains(r#"("id", "age")"#), "{}", st.sql);
        let (st, _) = target(false)
            .plan(&item(Some("12"), Operation::Upsert, Some("{}")))
            .unwrap();
        assert_eq!(debug(&st.params), debug(&[Value::Text("12".into())]));
    }

    #[test]
    fn bad_items_are_rejected_alone() {
        let t = target(true);
        for bad in [
            item(Some("1"), Operation::Upsert, Some("[1]")),
            item(Some("1"), Operation::Upsert, Some("{")),
            item(None, Operation::Upsert, None),
            item(None, Operation::Delete, None),
        ] {
            let err = t.plan(&bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Rejected);
            assert!(
                err.message.starts_with("entity 'contacts': "),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn outcomes_read_the_returned_key_and_version() {
        let t = target(true);
        let rows = Rows {
            columns: vec!["id".into(), "updated".into()],
            rows: vec![vec![Value::Integer(5), Value::Text("2024-01-01".into())]],
        };
        let written = t.outcome(&Action::Create, Ok(rows)).unwrap();
        assert_eq!(
            (written.id.as_str(), written.version.as_deref()),
            ("5", Some("2024-01-01"))
        );
        let empty = Rows {
            columns: vec![],
            rows: vec![],
        };
        assert_eq!(
            t.outcome(&Action::Delete("7".into()), Ok(empty.clone()))
                .unwrap()
                .id,
            "7"
        );
        assert_eq!(
            t.outcome(&Action::Create, Ok(empty)).unwrap_err().kind,
            ErrorKind::Rejected
        );
        let err = t
            .outcome(
                &Action::Upsert("7".into()),
                Err("UNIQUE constraint failed".into()),
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            "entity 'contacts': record '7': UNIQUE constraint failed"
        );
    }
}
