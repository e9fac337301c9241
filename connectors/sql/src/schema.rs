//! Table columns as the database describes them, and their mapping to field types.

use weir_sdk::sql::{Rows, Value};
use weir_sdk::FieldType;

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// The declared SQL type, as the database spells it.
    pub sql_type: String,
    /// Whether the column is declared `NOT NULL`.
    pub not_null: bool,
    /// The fractional digits of seconds a time column keeps, when the
    /// database says (PostgreSQL: 6 unless declared `timestamp(p)`).
    pub precision: Option<i64>,
    /// Whether the database computes its values (a generated column): it is
    /// read, never written.
    pub generated: bool,
    /// Whether it is `GENERATED ALWAYS AS IDENTITY` (PostgreSQL): a value
    /// given for it is written with `OVERRIDING SYSTEM VALUE`.
    pub always_identity: bool,
    /// The sequence that gives the column its default values (PostgreSQL
    /// `serial` and identity columns).
    pub sequence: Option<String>,
    /// Whether it is unique on its own: the whole primary key, or alone in
    /// a unique index without a condition.
    pub unique: bool,
    /// Whether its table takes `COPY` as it takes inserts (the same for
    /// every column of a table): an ordinary or partitioned PostgreSQL
    /// table without rules.
    pub copy: bool,
}

impl Column {
    /// The field type of this column.
    pub fn field_type(&self) -> FieldType {
        field_type(&self.sql_type)
    }
}

/// Maps a declared SQL type to a field type, by the words it contains
/// (in the manner of SQLite's type affinity rules).
pub fn field_type(sql_type: &str) -> FieldType {
    let t = sql_type.to_ascii_uppercase();
    let has = |word: &str| t.contains(word);
    if has("RANGE") {
        // `int4range`, `daterange`, ...: read as PostgreSQL prints them.
        FieldType::Text
    } else if has("INT") && !has("INTERVAL") && !has("POINT") {
        FieldType::Integer
    } else if has("BOOL") {
        FieldType::Boolean
    } else if has("TIMESTAMP") || has("DATETIME") {
        FieldType::Timestamp
    } else if has("DATE") {
        FieldType::Date
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        FieldType::Number
    } else if has("DEC") || has("NUMERIC") {
        FieldType::Decimal
    } else {
        FieldType::Text
    }
}

/// Reads the rows of the column-listing query (name, type, not-null flag, ...).
/// Rows whose name is not text are ignored.
pub fn parse_columns(rows: &Rows) -> Vec<Column> {
    rows.rows
        .iter()
        .filter_map(|row| {
            let name = match row.first() {
                Some(Value::Text(name)) => name.clone(),
                _ => return None,
            };
            let sql_type = match row.get(1) {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            let not_null = row.get(2).is_some_and(is_true);
            let precision = match row.get(4) {
                Some(Value::Integer(p)) => Some(*p),
                _ => None,
            };
            Some(Column {
                name,
                sql_type,
                not_null,
                precision,
                generated: row.get(5).is_some_and(is_true),
                always_identity: row.get(6).is_some_and(is_true),
                sequence: match row.get(7) {
                    Some(Value::Text(name)) => Some(name.clone()),
                    _ => None,
                },
                unique: row.get(8).is_some_and(is_true),
                copy: row.get(9).is_some_and(is_true),
            })
        })
        .collect()
}

/// Whether a flag value returned by the database means true.
pub fn is_true(v: &Value) -> bool {
    match v {
        Value::Integer(i) => *i != 0,
        Value::Real(f) => *f != 0.0,
        Value::Text(s) => matches!(s.to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes"),
        Value::Null | Value::Blob(_) => false,
    }
}

/// The column named `name`, if the table has it.
pub fn find<'a>(columns: &'a [Column], name: &str) -> Option<&'a Column> {
    columns.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_by_contained_words() {
        let cases = [
            ("INTEGER", FieldType::Integer),
            ("bigint", FieldType::Integer),
            ("REAL", FieldType::Number),
            ("double precision", FieldType::Number),
            ("FLOAT", FieldType::Number),
            ("DECIMAL(10,2)", FieldType::Decimal),
            ("numeric", FieldType::Decimal),
            ("BOOLEAN", FieldType::Boolean),
            ("DATE", FieldType::Date),
            ("DATETIME", FieldType::Timestamp),
            ("timestamp with time zone", FieldType::Timestamp),
            ("interval", FieldType::Text),
            ("int4range", FieldType::Text),
            ("tstzrange", FieldType::Text),
            ("TEXT", FieldType::Text),
            ("", FieldType::Text),
        ];
        for (sql_type, expected) in cases {
            assert_eq!(field_type(sql_type), expected, "{sql_type}");
        }
    }

    #[test]
    fn columns_are_parsed_from_rows() {
        let rows = Rows {
            columns: vec!["name".into(), "type".into(), "notnull".into(), "pk".into()],
            rows: vec![
                vec![
                    Value::Text("id".into()),
                    Value::Text("INTEGER".into()),
                    Value::Integer(0),
                    Value::Integer(1),
                    Value::Null,
                    Value::Integer(0),
                    Value::Integer(1),
                    Value::Text("people_id_seq".into()),
                    Value::Integer(1),
                ],
                vec![
                    Value::Text("full_name".into()),
                    Value::Text("TEXT".into()),
                    Value::Integer(1),
                    Value::Integer(0),
                    Value::Null,
                    Value::Integer(1),
                    Value::Integer(0),
                    Value::Null,
                ],
                vec![
                    Value::Text("name".into()),
                    Value::Text("TEXT".into()),
                    Value::Integer(1),
                    Value::Integer(0),
                ],
                vec![Value::Null],
            ],
        };
        let columns = parse_columns(&rows);
        assert_eq!(columns.len(), 3);
        let id = find(&columns, "id").unwrap();
        assert!(id.always_identity && !id.generated);
        assert_eq!(id.sequence.as_deref(), Some("people_id_seq"));
        assert!(id.unique);
        let full = find(&columns, "full_name").unwrap();
        assert!(full.generated && !full.always_identity && full.sequence.is_none());
        assert!(!full.unique);
        // Rows of four columns (older forms) read as plain columns.
        assert!(!find(&columns, "name").unwrap().generated);
        assert_eq!(find(&columns, "name").map(|c| c.not_null), Some(true));
        assert_eq!(
            find(&columns, "id").map(Column::field_type),
            Some(FieldType::Integer)
        );
        assert!(find(&columns, "missing").is_none());
    }
}
