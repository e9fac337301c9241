//! Reading CSV files: the header, and pages of records that resume where the
//! previous page stopped by seeking to a byte position, so that reading a large
//! file page by page stays linear.

use std::io::{Read, Seek, SeekFrom};

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

/// A row that cannot be a record: it goes to the host as a reject.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// Its primary-key cell, where that could be read.
    pub id: Option<String>,
    /// Where it is and what is wrong: "file 'people.csv' line 4: ...".
    pub why: String,
    /// Its cells as a JSON object (header name → text, bytes that are not
    /// UTF-8 replaced), for a person to repair it.
    pub raw: String,
}

/// Reads up to `limit` records starting at `cursor` (the first record when
/// none). A row without a primary-key value, with more cells than the
/// header, with text that is not UTF-8, or with a quote that is never
/// closed is handed to `bad` and counts towards the limit; after a quote
/// that is never closed (which the `csv` crate would run to the end of the
/// file), reading goes on at the next line.
pub fn read_page<R: Read + Seek>(
    mut input: R,
    file: &str,
    pk: &str,
    cursor: Option<ReadCursor>,
    limit: usize,
    bad: &mut dyn FnMut(BadRow),
) -> Result<PageOut> {
    let len = input
        .seek(SeekFrom::End(0))
        .and_then(|len| input.seek(SeekFrom::Start(0)).map(|_| len))
        .map_err(|e| errors::io(&e, &format!("file '{file}'")))?;
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
    let mut refused = 0;
    let mut record = ByteRecord::new();
    while rows.len() + refused < limit
        && reader
            .read_byte_record(&mut record)
            .map_err(|e| errors::csv(e, file))?
    {
        let (byte, line) = record.position().map_or((0, 0), |p| (p.byte(), p.line()));
        if reader.position().byte() >= len {
            // The last record: one whose quote is never closed swallowed
            // the lines after it. It is its first line alone, refused, and
            // the next page starts on the line after.
            // (The reader has read to the end: it reads nothing more.)
            if let Some(first) = unterminated_at(reader.get_mut(), byte, file)? {
                bad(unterminated_row(&header, key_at, &first.0, file, line));
                let next = ReadCursor {
                    byte: byte + first.1,
                    line: line + 1,
                };
                let next = (next.byte < len).then_some(next);
                return Ok(PageOut { rows, next });
            }
        }
        match to_row(&header, key_at, &record) {
            Ok(row) => rows.push(row),
            Err(why) => {
                refused += 1;
                bad(BadRow {
                    id: key_text(&record, key_at),
                    why: format!("file '{file}' line {line}: {why}"),
                    raw: lossy_json(&header, &record),
                });
            }
        }
    }
    let next = (rows.len() + refused >= limit).then(|| {
        let at = reader.position();
        ReadCursor {
            byte: at.byte(),
            line: at.line(),
        }
    });
    Ok(PageOut { rows, next })
}

/// The first line of the record at `byte` and its length with its
/// terminator, when a quote opened in it is never closed.
fn unterminated_at<R: Read + Seek>(
    input: &mut R,
    byte: u64,
    file: &str,
) -> Result<Option<(Vec<u8>, u64)>> {
    let mut rest = Vec::new();
    input
        .seek(SeekFrom::Start(byte))
        .and_then(|_| input.read_to_end(&mut rest))
        .map_err(|e| errors::io(&e, &format!("file '{file}'")))?;
    Ok(crate::scan::unterminated(&rest).map(|end| {
        let line = rest[..end].trim_ascii_end().to_vec();
        (line, end as u64)
    }))
}

/// A row whose quote is never closed, as a bad row: its first line.
pub fn unterminated_row(
    header: &StringRecord,
    key_at: usize,
    line_bytes: &[u8],
    file: &str,
    line: u64,
) -> BadRow {
    let record = crate::scan::Parser::new().parse(line_bytes);
    BadRow {
        id: key_text(&record, key_at),
        why: format!(
            "file '{file}' line {line}: a quote opened in this row is never closed (as it stands, every line after it would be part of one cell); fix the quote, the lines after it are read as rows"
        ),
        raw: lossy_json(header, &record),
    }
}

/// The primary-key cell of a row, where it is UTF-8 text and not empty.
pub fn key_text(record: &ByteRecord, key_at: usize) -> Option<String> {
    record
        .get(key_at)
        .filter(|k| !k.is_empty())
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_string)
}

/// A row's cells as a JSON object, bytes that are not UTF-8 replaced;
/// cells past the header under their position (`"#5"`).
pub fn lossy_json(header: &StringRecord, record: &ByteRecord) -> String {
    let mut out = serde_json::Map::new();
    for (i, cell) in record.iter().enumerate() {
        let name = header
            .get(i)
            .map_or_else(|| format!("#{}", i + 1), str::to_string);
        out.insert(
            name,
            serde_json::Value::String(String::from_utf8_lossy(cell).into_owned()),
        );
    }
    serde_json::Value::Object(out).to_string()
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
                Err(e) => {
                    return Err(format!(
                        "cell '{name}' is not valid UTF-8 (byte {} of the cell); save the file as UTF-8",
                        e.valid_up_to() + 1
                    ))
                }
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
            &mut |w: BadRow| warnings.push(w.why),
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
        // Refused rows count towards a page's limit.
        let (second, warnings) = page(FILE, first.next, 2);
        assert_eq!(ids(&second), ["3"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("file 'people.csv' line 4: no value for the primary key 'id'"),
            "{}",
            warnings[0]
        );
        let (third, warnings) = page(FILE, second.next, 2);
        assert_eq!(ids(&third), ["5"]);
        assert!(
            warnings[0].starts_with("file 'people.csv' line 6: 4 cells"),
            "{}",
            warnings[0]
        );
        let (fourth, _) = page(FILE, third.next, 2);
        assert!(fourth.rows.is_empty());
        assert!(fourth.next.is_none());
    }

    #[test]
    fn rows_that_cannot_be_records_are_handed_on_with_their_line() {
        let text = b"id,name\n1,Ada\n2,Bj\xf6rn\n3,\"Open quote\n4,Dee\n5,Eve\n".to_vec();
        let mut bad = Vec::new();
        let mut rows = Vec::new();
        let mut cursor = None;
        loop {
            let out = read_page(
                Cursor::new(text.clone()),
                "p.csv",
                "id",
                cursor,
                100,
                &mut |b| bad.push(b),
            )
            .unwrap();
            rows.extend(out.rows.into_iter().map(|r| r.id));
            match out.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        // Every row is either a record or handed on: none vanishes.
        assert_eq!(rows, ["1", "4", "5"]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].id.as_deref(), Some("2"));
        assert!(
            bad[0]
                .why
                .starts_with("file 'p.csv' line 3: cell 'name' is not valid UTF-8"),
            "{}",
            bad[0].why
        );
        assert!(bad[0].raw.contains("Bj\u{fffd}rn"), "{}", bad[0].raw);
        assert_eq!(bad[1].id.as_deref(), Some("3"));
        assert!(
            bad[1]
                .why
                .starts_with("file 'p.csv' line 4: a quote opened in this row is never closed"),
            "{}",
            bad[1].why
        );
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {

            /// Page by page, any file is read to its end, and each of its
            /// records is a row or a bad row: none vanishes.
            #[test]
            fn every_record_of_any_file_is_a_row_or_a_bad_row(
                body in prop::collection::vec(
                    prop_oneof![
                        Just(b'a'), Just(b'1'), Just(b','), Just(b'"'), Just(b'\n'),
                        Just(b'\r'), Just(0xff), Just(0xc3), Just(b' ')
                    ],
                    0..120,
                ),
                limit in 1usize..6,
            ) {
                let mut text = b"id,name\n".to_vec();
                text.extend_from_slice(&body);
                let (mut rows, mut bad, mut cursor, mut pages) = (0, 0, None, 0);
                loop {
                    let mut seen = 0;
                    let out = read_page(Cursor::new(text.clone()), "f.csv", "id", cursor, limit, &mut |_| seen += 1).unwrap();
                    rows += out.rows.len();
                    bad += seen;
                    pages += 1;
                    prop_assert!(pages < 500, "the pages do not end");
                    match out.next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
                // Records as the csv crate reads them (the header aside).
                let records = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(&text[..])
                    .byte_records()
                    .count();
                prop_assert!(rows + bad >= records, "{} rows and {} bad of {} records", rows, bad, records);
            }
        }
    }
}
