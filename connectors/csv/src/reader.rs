//! Reading CSV files: the header, and pages of records that resume where the
//! previous page stopped by seeking to a byte position, so that reading a large
//! file page by page stays linear.

use std::io::{Read, Seek};

use csv::{ByteRecord, StringRecord};
use serde::{Deserialize, Serialize};
use weir_sdk::{ConnectorError, Result};

use crate::errors;

/// Bytes read from the file at a time. Every read crosses the sandbox to
/// the host's file system, so few large reads beat many small ones.
const READ_BUFFER: usize = 1 << 20;

/// The CSV reader settings shared by every read: rows may be short or long
/// (checked per row), and the file is read in large chunks.
pub fn builder() -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.flexible(true).buffer_capacity(READ_BUFFER);
    builder
}

/// Where the next page starts: the position just after the last record returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadCursor {
    /// The byte offset in the file.
    pub byte: u64,
    /// The line number at that offset (1-based), for messages.
    pub line: u64,
}

impl ReadCursor {
    /// Encodes the cursor as JSON text.
    pub fn encode(&self) -> String {
        // A struct of two integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a cursor; `entity` names the entity in the error message.
    pub fn decode(text: &str, entity: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            ConnectorError::invalid_config(format!("entity '{entity}': bad cursor '{text}': {e}"))
        })
    }
}

/// One record of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The primary-key cell.
    pub id: String,
    /// The record's JSON text: header name → cell text, empty cells as
    /// null, in header order (a name the header repeats keeps its last cell
    /// when the text is read).
    pub data: String,
}

/// One page of records.
#[derive(Debug, Default)]
pub struct PageOut {
    /// The records, in file order.
    pub rows: Vec<Row>,
    /// Where the next page starts, when this page is full.
    pub next: Option<ReadCursor>,
}

/// The header of a CSV file; empty for an empty file.
pub fn header<R: Read>(input: R, file: &str) -> Result<Vec<String>> {
    let mut reader = builder().from_reader(input);
    let header = reader.headers().map_err(|e| errors::csv(e, file))?;
    Ok(header.iter().map(str::to_string).collect())
}

/// The position of the primary-key column in a header; a schema error if it is missing.
pub fn key_column<'a>(
    header: impl IntoIterator<Item = &'a str>,
    file: &str,
    pk: &str,
) -> Result<usize> {
    header.into_iter().position(|h| h == pk).ok_or_else(|| {
        ConnectorError::schema(format!(
            "file '{file}': the header has no primary-key column '{pk}'"
        ))
    })
}

/// Reads up to `limit` records starting at `cursor` (the first record when none).
/// Rows without a primary-key value, with more cells than the header or with text
/// that is not UTF-8 are skipped; `warn` is told about each one.
pub fn read_page<R: Read + Seek>(
    input: R,
    file: &str,
    pk: &str,
    cursor: Option<ReadCursor>,
    limit: usize,
    warn: &mut dyn FnMut(String),
) -> Result<PageOut> {
    let mut reader = builder().from_reader(input);
    let header = reader.headers().map_err(|e| errors::csv(e, file))?.clone();
    if header.is_empty() {
        return Ok(PageOut::default());
    }
    let key_at = key_column(header.iter(), file, pk)?;
    if let Some(at) = cursor {
        let mut position = csv::Position::new();
        position.set_byte(at.byte).set_line(at.line);
        reader.seek(position).map_err(|e| errors::csv(e, file))?;
    }

    let limit = limit.max(1);
    let mut rows = Vec::new();
    let mut record = ByteRecord::new();
    while rows.len() < limit
        && reader
            .read_byte_record(&mut record)
            .map_err(|e| errors::csv(e, file))?
    {
        match to_row(&header, key_at, &record) {
            Ok(row) => rows.push(row),
            Err(why) => {
                let line = record.position().map_or(0, |p| p.line());
                warn(format!("file '{file}' line {line}: {why}; row skipped"));
            }
        }
    }
    let next = (rows.len() >= limit).then(|| {
        let at = reader.position();
        ReadCursor {
            byte: at.byte(),
            line: at.line(),
        }
    });
    Ok(PageOut { rows, next })
}

/// Turns a CSV row into a record, or says why it cannot be one.
pub fn to_row(
    header: &StringRecord,
    key_at: usize,
    record: &ByteRecord,
) -> std::result::Result<Row, String> {
    if record.len() > header.len() {
        return Err(format!(
            "{} cells but the header has {}",
            record.len(),
            header.len()
        ));
    }
    // Written as it is read: no map of the cells is built.
    let mut data = Vec::with_capacity(
        header.as_byte_record().as_slice().len() + record.as_slice().len() * 2 + 32,
    );
    let mut id = None;
    data.push(b'{');
    for (i, name) in header.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        push_str(&mut data, name);
        data.push(b':');
        match record.get(i) {
            None | Some(b"") => data.extend_from_slice(b"null"),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => {
                    if i == key_at {
                        id = Some(text.to_string());
                    }
                    push_str(&mut data, text);
                }
                Err(_) => return Err(format!("cell '{name}' is not valid UTF-8")),
            },
        }
    }
    data.push(b'}');
    // Made of JSON punctuation and escaped UTF-8 text.
    let data = String::from_utf8(data).map_err(|e| e.to_string())?;
    match id {
        Some(id) => Ok(Row { id, data }),
        None => Err(format!(
            "no value for the primary key '{}'",
            header.get(key_at).unwrap_or_default()
        )),
    }
}

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Cursor;
    use weir_sdk::json::Record;

    const FILE: &str =
        "id,name,age\n1,Ada,36\n2,,\n,Nobody,1\n3,\"Grace, H\",85\n4,Bad,1,extra\n5,Eve,40\n";

    fn page(text: &str, cursor: Option<ReadCursor>, limit: usize) -> (PageOut, Vec<String>) {
        let mut warnings = Vec::new();
        let out = read_page(
            Cursor::new(text.as_bytes().to_vec()),
            "people.csv",
            "id",
            cursor,
            limit,
            &mut |w| warnings.push(w),
        )
        .unwrap();
        (out, warnings)
    }

    fn record(row: &Row) -> Record {
        weir_sdk::json::parse_record(&row.data).unwrap()
    }

    fn ids(out: &PageOut) -> Vec<&str> {
        out.rows.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn pages_resume_at_the_cursor() {
        let (first, warnings) = page(FILE, None, 2);
        assert_eq!(ids(&first), ["1", "2"]);
        assert!(warnings.is_empty());
        let (second, warnings) = page(FILE, first.next, 2);
        assert_eq!(ids(&second), ["3", "5"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("file 'people.csv' line 4: no value for the primary key 'id'"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with("file 'people.csv' line 6: 4 cells"),
            "{}",
            warnings[1]
        );
        let (third, _) = page(FILE, second.next, 2);
        assert!(third.rows.is_empty());
        assert!(third.next.is_none());
    }

    #[test]
    fn cells_become_strings_or_null() {
        let (out, _) = page(FILE, None, 10);
        let second = &record(&out.rows[1]);
        assert_eq!(second.get("name"), Some(&Value::Null));
        assert_eq!(second.get("id"), Some(&Value::String("2".into())));
        assert_eq!(
            record(&out.rows[2]).get("name"),
            Some(&Value::String("Grace, H".into()))
        );
        assert!(out.next.is_none());
    }

    #[test]
    fn short_rows_and_crlf_endings_are_read() {
        let text = "\u{feff}id,name\r\n1\r\n2,Bo\r\n";
        let (first, _) = page(text, None, 1);
        assert_eq!(ids(&first), ["1"]);
        assert_eq!(record(&first.rows[0]).get("name"), Some(&Value::Null));
        let (second, _) = page(text, first.next, 1);
        assert_eq!(ids(&second), ["2"]);
    }

    #[test]
    fn empty_files_and_missing_keys() {
        let (out, _) = page("", None, 10);
        assert!(out.rows.is_empty() && out.next.is_none());
        let err = read_page(
            Cursor::new(b"a,b\n1,2\n".to_vec()),
            "x.csv",
            "id",
            None,
            5,
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "file 'x.csv': the header has no primary-key column 'id'"
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = ReadCursor { byte: 120, line: 7 };
        assert_eq!(c.encode(), r#"{"byte":120,"line":7}"#);
        assert_eq!(ReadCursor::decode(&c.encode(), "people").unwrap(), c);
        assert!(ReadCursor::decode("{}", "people").is_err());
    }
}
