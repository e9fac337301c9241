//! A whole CSV file in memory, for writing: rows in file order, indexed by
//! primary key, changed by write items and written back in one go.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};

use csv::ByteRecord;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use weir_sdk::json::value_to_text;
use weir_sdk::{ConnectorError, Operation, Result, WriteItem, Written};

use crate::reader::key_column;
use crate::{errors, reader};

/// A CSV file held in memory.
#[derive(Debug)]
pub struct Table {
    /// The file name, for messages.
    file: String,
    /// The column names, in file order.
    header: Vec<String>,
    /// Column name → position in the header.
    columns: HashMap<String, usize>,
    /// The position of the primary-key column.
    key_at: usize,
    /// The rows in file order; none where a row was deleted.
    rows: Vec<Option<ByteRecord>>,
    /// Record id → position in `rows`.
    index: HashMap<String, usize>,
    /// The next id to try for a created record: above every numeric id.
    next_id: u64,
    /// Whether anything changed since loading.
    changed: bool,
}

impl Table {
    /// An empty table for a file that does not exist yet: its only column is the key.
    pub fn new(file: &str, pk: &str) -> Self {
        Table {
            file: file.to_string(),
            header: vec![pk.to_string()],
            columns: HashMap::from([(pk.to_string(), 0)]),
            key_at: 0,
            rows: Vec::new(),
            index: HashMap::new(),
            next_id: 1,
            changed: false,
        }
    }

    /// Loads a CSV file. An empty file gives an empty table; a header without the key
    /// column is a schema error. Of rows sharing an id the last one is kept (as a full
    /// read would); `warn` is told about the others, dropped when the file is rewritten.
    pub fn load<R: Read>(
        input: R,
        file: &str,
        pk: &str,
        warn: &mut dyn FnMut(String),
    ) -> Result<Self> {
        let mut reader = reader::builder().from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| errors::csv(e, file))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.is_empty() {
            return Ok(Table::new(file, pk));
        }
        let key_at = key_column(header.iter().map(String::as_str), file, pk)?;
        let mut columns = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            columns.entry(name.clone()).or_insert(i);
        }
        let mut table = Table {
            file: file.to_string(),
            header,
            columns,
            key_at,
            rows: Vec::new(),
            index: HashMap::new(),
            next_id: 1,
            changed: false,
        };
        for record in reader.into_byte_records() {
            let record = record.map_err(|e| errors::csv(e, file))?;
            table.add_loaded(record, warn);
        }
        Ok(table)
    }

    /// Adds a row read from the file, indexing it by its id if it has one.
    fn add_loaded(&mut self, record: ByteRecord, warn: &mut dyn FnMut(String)) {
        let id = record
            .get(self.key_at)
            .and_then(|cell| std::str::from_utf8(cell).ok())
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        let line = record.position().map_or(0, |p| p.line());
        let at = self.rows.len();
        self.rows.push(Some(record));
        if let Some(id) = id {
            if let Some(earlier) = self.index.insert(id.clone(), at) {
                self.rows[earlier] = None;
                warn(format!(
                    "file '{}' line {line}: duplicate id '{id}'; the earlier row is dropped when the file is rewritten",
                    self.file
                ));
            }
            self.note_id(&id);
        }
    }

    /// Whether a write changed the table.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Applies one write item; `entity` names the entity in messages.
    pub fn apply(&mut self, item: &WriteItem, entity: &str) -> Result<Written> {
        match (&item.op, &item.id) {
            (Operation::Delete, Some(id)) => {
                self.delete(id);
                Ok(Written {
                    id: id.clone(),
                    version: None,
                })
            }
            (Operation::Delete, None) => Err(ConnectorError::rejected(format!(
                "entity '{entity}': delete without a record id"
            ))),
            (Operation::Upsert, id) => {
                let what = match id {
                    Some(id) => format!("entity '{entity}': record '{id}'"),
                    None => format!("entity '{entity}': new record"),
                };
                let fields = parse_fields(item.data.as_deref())
                    .map_err(|e| ConnectorError::rejected(format!("{what}: {e}")))?;
                let id = match id {
                    Some(id) if id.is_empty() => {
                        return Err(ConnectorError::rejected(format!(
                            "{what}: the record id is empty"
                        )));
                    }
                    Some(id) => id.clone(),
                    None => self.assign_id().ok_or_else(|| {
                        ConnectorError::rejected(format!("{what}: no numeric id is left to assign"))
                    })?,
                };
                self.upsert(&id, &fields);
                Ok(Written { id, version: None })
            }
        }
    }

    /// Whether record `id` still holds `seen` (field → value, compared as
    /// its cells are written; an empty cell or a missing column holds
    /// null). None when there is no such record.
    pub fn holds(&self, id: &str, seen: &serde_json::Map<String, Value>) -> Option<bool> {
        let row = self.index.get(id).and_then(|&at| self.rows[at].as_ref())?;
        Some(seen.iter().all(|(field, value)| {
            let cell = self
                .columns
                .get(field)
                .and_then(|&at| row.get(at))
                .unwrap_or_default();
            cell == value_to_text(value).as_bytes()
        }))
    }

    /// Record `id` as a read gives it, if there is one.
    pub fn row(&self, id: &str) -> Option<reader::Row> {
        let row = self.index.get(id).and_then(|&at| self.rows[at].as_ref())?;
        let header = csv::StringRecord::from(self.header.clone());
        reader::to_row(&header, self.key_at, row).ok()
    }

    /// Removes the record `id`, if present.
    fn delete(&mut self, id: &str) {
        if let Some(at) = self.index.remove(id) {
            self.rows[at] = None;
            self.changed = true;
        }
    }

    /// Updates the record `id` with `fields` (columns not among them keep their
    /// cells, as an SQL update would), or appends it. Unknown fields become new
    /// columns, in the order they appear; the key field in the body is ignored.
    fn upsert(&mut self, id: &str, fields: &[(String, Value)]) {
        let pk = self.header[self.key_at].clone();
        let fields: Vec<&(String, Value)> = fields.iter().filter(|(name, _)| *name != pk).collect();
        let positions: Vec<usize> = fields.iter().map(|(name, _)| self.column(name)).collect();
        let mut cells = vec![String::new(); self.header.len()];
        if let Some(existing) = self.index.get(id).and_then(|&at| self.rows[at].as_ref()) {
            for (at, cell) in existing.iter().enumerate().take(cells.len()) {
                cells[at] = String::from_utf8_lossy(cell).into_owned();
            }
        }
        cells[self.key_at] = id.to_string();
        for ((_, value), at) in fields.iter().zip(positions) {
            cells[at] = value_to_text(value);
        }
        let record = ByteRecord::from(cells);
        match self.index.get(id) {
            Some(&at) => self.rows[at] = Some(record),
            None => {
                self.index.insert(id.to_string(), self.rows.len());
                self.rows.push(Some(record));
                self.note_id(id);
            }
        }
        self.changed = true;
    }

    /// The position of a column, appending it to the header if it is new.
    fn column(&mut self, name: &str) -> usize {
        if let Some(&at) = self.columns.get(name) {
            return at;
        }
        let at = self.header.len();
        self.header.push(name.to_string());
        self.columns.insert(name.to_string(), at);
        at
    }

    /// Keeps `next_id` above every numeric id in the table.
    fn note_id(&mut self, id: &str) {
        if let Some(n) = numeric_id(id) {
            self.next_id = self.next_id.max(n.saturating_add(1));
        }
    }

    /// The id of a created record: one more than the largest numeric id (1 in an
    /// empty table), never one already in use. None once the numbers run out.
    fn assign_id(&mut self) -> Option<String> {
        loop {
            let n = self.next_id;
            if n == u64::MAX {
                return None;
            }
            self.next_id = n + 1;
            let id = n.to_string();
            if !self.index.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Writes the table as CSV: the header, then the rows in order, short rows padded
    /// with empty cells.
    pub fn write<W: Write>(&self, out: W) -> std::result::Result<(), csv::Error> {
        let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(out);
        writer.write_record(&self.header)?;
        for row in self.rows.iter().flatten() {
            for cell in row {
                writer.write_field(cell)?;
            }
            for _ in row.len()..self.header.len() {
                writer.write_field("")?;
            }
            writer.write_record(None::<&[u8]>)?;
        }
        writer.flush()?;
        Ok(())
    }
}

/// The value of an id made only of ASCII digits.
fn numeric_id(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The fields of a record body, in the order they were written.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        /// Collects the entries of a JSON object in order.
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Parses an upsert's body into its fields, in order.
fn parse_fields(data: Option<&str>) -> std::result::Result<Vec<(String, Value)>, String> {
    let text = data.ok_or("upsert without a record body")?;
    serde_json::from_str::<Fields>(text)
        .map(|fields| fields.0)
        .map_err(|e| format!("record body must be a JSON object: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::ErrorKind;

    fn load(text: &str) -> (Table, Vec<String>) {
        let mut warnings = Vec::new();
        let table = Table::load(text.as_bytes(), "people.csv", "id", &mut |w| {
            warnings.push(w)
        })
        .unwrap();
        (table, warnings)
    }

    fn text(table: &Table) -> String {
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn upsert(id: Option<&str>, data: &str) -> WriteItem {
        WriteItem {
            id: id.map(str::to_string),
            op: Operation::Upsert,
            data: Some(data.to_string()),
        }
    }

    fn delete(id: &str) -> WriteItem {
        WriteItem {
            id: Some(id.to_string()),
            op: Operation::Delete,
            data: None,
        }
    }

    #[test]
    fn creates_take_the_next_numeric_id() {
        let (mut table, _) = load("id,name\n3,Ada\nx7,Bob\n");
        let written = table
            .apply(&upsert(None, r#"{"name":"Cy"}"#), "people")
            .unwrap();
        assert_eq!(written.id, "4");
        let mut empty = Table::new("people.csv", "id");
        assert_eq!(empty.apply(&upsert(None, "{}"), "people").unwrap().id, "1");
        assert_eq!(empty.apply(&upsert(None, "{}"), "people").unwrap().id, "2");
        let (mut words, _) = load("id\nada\nbob\n");
        assert_eq!(words.apply(&upsert(None, "{}"), "people").unwrap().id, "1");
    }

    #[test]
    fn upserts_update_rows_and_add_columns_in_order() {
        let (mut table, _) = load("id,name\n1,Ada\n2,Bob\n");
        table
            .apply(
                &upsert(
                    Some("1"),
                    r#"{"zeta":true,"name":"Ada L","alpha":[1,2],"n":null}"#,
                ),
                "people",
            )
            .unwrap();
        table
            .apply(
                &upsert(Some("9"), r#"{"id":"ignored","alpha":1.5}"#),
                "people",
            )
            .unwrap();
        assert!(table.changed());
        assert_eq!(
            text(&table),
            "id,name,zeta,alpha,n\n1,Ada L,true,\"[1,2]\",\n2,Bob,,,\n9,,,1.5,\n"
        );
    }

    #[test]
    fn an_update_keeps_the_cells_it_does_not_name() {
        let (mut table, _) = load("id,name,ssn\n1,Ada,S1\n");
        table
            .apply(&upsert(Some("1"), r#"{"name":"Ada L"}"#), "people")
            .unwrap();
        table
            .apply(&upsert(Some("1"), r#"{"deleted":true}"#), "people")
            .unwrap();
        assert_eq!(text(&table), "id,name,ssn,deleted\n1,Ada L,S1,true\n");
    }

    #[test]
    fn deletes_are_idempotent() {
        let (mut table, _) = load("id,name\n1,Ada\n2,Bob\n");
        table.apply(&delete("1"), "people").unwrap();
        table.apply(&delete("1"), "people").unwrap();
        assert_eq!(text(&table), "id,name\n2,Bob\n");
        let (mut untouched, _) = load("id\n1\n");
        untouched.apply(&delete("5"), "people").unwrap();
        assert!(!untouched.changed());
    }

    #[test]
    fn new_files_start_with_the_key_column() {
        let mut table = Table::new("people.csv", "id");
        table
            .apply(&upsert(Some("a"), r#"{"name":"Ada"}"#), "people")
            .unwrap();
        assert_eq!(text(&table), "id,name\na,Ada\n");
    }

    #[test]
    fn bad_bodies_are_rejected_alone() {
        let (mut table, _) = load("id\n1\n");
        for bad in ["[1]", "{", "3"] {
            let err = table.apply(&upsert(Some("1"), bad), "people").unwrap_err();
            assert_eq!(err.kind, ErrorKind::Rejected);
            assert!(err
                .message
                .starts_with("entity 'people': record '1': record body must be a JSON object"));
        }
        let missing = WriteItem {
            id: None,
            op: Operation::Upsert,
            data: None,
        };
        assert_eq!(
            table.apply(&missing, "people").unwrap_err().kind,
            ErrorKind::Rejected
        );
        assert!(!table.changed());
    }

    #[test]
    fn duplicates_keep_the_last_row_and_rows_without_ids_stay() {
        let (mut table, warnings) = load("id,name\n1,Ada\n,Nobody\n1,Ada 2\n");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("file 'people.csv' line 4: duplicate id '1'"),
            "{}",
            warnings[0]
        );
        table.apply(&upsert(Some("2"), "{}"), "people").unwrap();
        assert_eq!(text(&table), "id,name\n,Nobody\n1,Ada 2\n2,\n");
    }

    #[test]
    fn single_empty_cells_survive_a_rewrite() {
        let (mut table, _) = load("id\n\"\"\n1\n");
        table.apply(&upsert(Some("2"), "{}"), "people").unwrap();
        assert_eq!(text(&table), "id\n\"\"\n1\n2\n");
        assert_eq!(
            table
                .apply(&upsert(Some(""), "{}"), "people")
                .unwrap_err()
                .kind,
            ErrorKind::Rejected
        );
    }

    #[test]
    fn headers_without_the_key_are_refused() {
        let err = Table::load("a,b\n".as_bytes(), "people.csv", "id", &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Schema);
        let (empty, _) = load("");
        assert_eq!(text(&empty), "id\n");
    }

    #[test]
    fn numeric_ids_are_digits_only() {
        assert_eq!(numeric_id("42"), Some(42));
        assert_eq!(numeric_id("+4"), None);
        assert_eq!(numeric_id(""), None);
        assert_eq!(numeric_id("99999999999999999999999"), None);
    }
}
