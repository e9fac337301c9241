//! The change feed of a file with an updated-at column: the rows whose
//! updated-at is at or after the cursor's time, found by one scan of the file.
//!
//! Rows at exactly the cursor's time are reported again (a row written in the
//! same second as the last one seen is not missed; the host ignores a record
//! that did not change). A row whose updated-at is empty or not a time is
//! reported on every read, with a warning: the file cannot say whether it changed.
//! Rows removed from the file are found by full reads only.

use std::io::{Read, Seek, SeekFrom};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use weir_sdk::{ConnectorError, Result};

use crate::errors;
use crate::reader::{self, Row};
use crate::scan;

/// Where the change feed continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeCursor {
    /// Rows updated at or after this time are changes; all rows when none.
    pub since: Option<Timestamp>,
    /// A scan of the file that stopped at a full batch and continues here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<Scan>,
}

/// A scan in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// The byte offset where the scan continues.
    pub byte: u64,
    /// The line number at that offset (1-based), for messages.
    pub line: u64,
    /// The file's length when the scan started; another length (or another
    /// modification time) means the file was rewritten, and the scan starts
    /// again from the top.
    pub len: u64,
    /// The file's modification time when the scan started (nanoseconds
    /// since 1970), where the file system tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
    /// The latest updated-at the scan has seen so far.
    pub latest: Option<Timestamp>,
}

impl ChangeCursor {
    /// Encodes the cursor as JSON text.
    pub fn encode(&self) -> String {
        // Times and integers always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a cursor; `entity` names the entity in the error message.
    pub fn decode(text: &str, entity: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            ConnectorError::invalid_config(format!("entity '{entity}': bad cursor '{text}': {e}"))
        })
    }
}

/// The rows of one call, and where the next call starts.
#[derive(Debug)]
pub struct ChangesOut {
    /// The changed rows, in file order.
    pub rows: Vec<Row>,
    /// The cursor for the next call.
    pub next: ChangeCursor,
    /// Whether the scan stopped at `limit` and more rows may follow.
    pub more: bool,
}

/// Reads a time cell: RFC 3339 with an offset, or a date and time without one
/// (taken as UTC), or a bare date (midnight UTC). None for anything else.
pub fn stamp(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let civil = text.parse::<jiff::civil::DateTime>().ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

/// A time in whole seconds as the 19 bytes `YYYY-MM-DDTHH:MM:SS`, when `cell`
/// is a UTC time in that form (`T` or a space between date and time, an
/// optional fraction, then `Z`, `+00:00` or nothing): two such keys compare
/// as their times do, without parsing. None for any other form.
fn utc_key(cell: &[u8]) -> Option<[u8; 19]> {
    let head: &[u8; 19] = cell.get(..19)?.try_into().ok()?;
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !digits.iter().all(|&i| head[i].is_ascii_digit())
        || head[4] != b'-'
        || head[7] != b'-'
        || !matches!(head[10], b'T' | b' ')
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let mut tail = &cell[19..];
    if let Some(fraction) = tail.strip_prefix(b".") {
        let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        tail = &fraction[n..];
    }
    if !matches!(tail, b"" | b"Z" | b"+00:00") {
        return None;
    }
    let mut key = *head;
    key[10] = b'T';
    Some(key)
}

/// The key of a time for [`utc_key`] comparisons (its whole second, UTC);
/// none for years outside 0000–9999.
fn key_of(at: Timestamp) -> Option<[u8; 19]> {
    let text = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    text.as_bytes().try_into().ok()
}

/// Whether a cell is a time in an earlier second than `key`'s, known
/// without parsing it (false when that cannot be told so).
fn surely_before(cell: &[u8], key: Option<&[u8; 19]>) -> bool {
    key.is_some_and(|key| utc_key(cell).is_some_and(|k| &k < key))
}

/// The latest updated-at in the file: the checkpoint taken before a full read.
pub fn latest<R: Read + Seek>(input: R, file: &str, column: &str) -> Result<Option<Timestamp>> {
    let Some((header, mut records)) = open(input, file, None)? else {
        return Ok(None);
    };
    let at = stamp_column(header.iter(), file, column)?;
    let mut latest: Option<Timestamp> = None;
    let mut key = None;
    while let Some(record) = records.next(at).map_err(|e| read_error(&e, file))? {
        let Some(cell) = record.cell else { continue };
        if surely_before(cell, key.as_ref()) {
            continue;
        }
        let time = time_of(cell);
        if time > latest {
            latest = time;
            key = time.and_then(key_of);
        }
    }
    Ok(latest)
}

/// The header of a file and its records from `scan`'s position, else from
/// the first record; none for an empty file.
fn open<R: Read + Seek>(
    input: R,
    file: &str,
    scan: Option<Scan>,
) -> Result<Option<(csv::StringRecord, scan::Records<R>)>> {
    // The header alone: a small buffer, as the records are read apart.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader.headers().map_err(|e| errors::csv(e, file))?.clone();
    if header.is_empty() {
        return Ok(None);
    }
    let (byte, line) = match scan {
        Some(s) => (s.byte, s.line),
        None => (reader.position().byte(), reader.position().line()),
    };
    let mut input = reader.into_inner();
    input
        .seek(SeekFrom::Start(byte))
        .map_err(|e| read_error(&e, file))?;
    Ok(Some((
        header,
        scan::Records::new(input, byte, line).split_unterminated(),
    )))
}

fn read_error(e: &std::io::Error, file: &str) -> weir_sdk::ConnectorError {
    errors::io(e, &format!("file '{file}'"))
}

/// The time in an updated-at cell, quoted or not.
fn time_of(cell: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(&scan::unquote(cell))
        .ok()
        .and_then(stamp)
}

/// The version of a file a scan stands on: its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    pub modified: Option<u64>,
}

/// Reads up to `limit` changed rows from where `cursor` stands. `version` is
/// the file's current one. Rows that cannot be records are skipped as full
/// reads skip them; `warn` is told about them and about unreadable times.
#[allow(clippy::too_many_arguments)]
pub fn read<R: Read + Seek>(
    input: R,
    version: Version,
    file: &str,
    pk: &str,
    column: &str,
    cursor: ChangeCursor,
    limit: usize,
    warn: &mut dyn FnMut(String),
    bad: &mut dyn FnMut(reader::BadRow),
) -> Result<ChangesOut> {
    let since = cursor.since;
    let scan = cursor
        .scan
        .filter(|s| s.len == version.len && s.modified == version.modified);
    let mut latest = scan.and_then(|s| s.latest);
    let Some((header, mut records)) = open(input, file, scan)? else {
        return Ok(ChangesOut {
            rows: Vec::new(),
            next: ChangeCursor { since, scan: None },
            more: false,
        });
    };
    let key_at = reader::key_column(header.iter(), file, pk)?;
    let stamp_at = stamp_column(header.iter(), file, column)?;

    let limit = limit.max(1);
    let since_key = since.and_then(key_of);
    let mut rows = Vec::new();
    let mut untimed = 0u64;
    let mut refused = 0;
    let mut parser = scan::Parser::new();
    while rows.len() + refused < limit {
        let Some(record) = records.next(stamp_at).map_err(|e| read_error(&e, file))? else {
            break;
        };
        // Most rows of a file are older than the cursor: told by their bytes.
        let cell = record.cell.unwrap_or_default();
        if surely_before(cell, since_key.as_ref()) {
            continue;
        }
        match time_of(cell) {
            Some(at) if since.is_some_and(|s| at < s) => {
                latest = latest.max(Some(at));
                continue;
            }
            Some(at) => latest = latest.max(Some(at)),
            None => untimed += 1,
        }
        if record.unterminated {
            refused += 1;
            bad(reader::unterminated_row(
                &header,
                key_at,
                record.bytes,
                file,
                record.line,
            ));
            continue;
        }
        let cells = parser.parse(record.bytes);
        match reader::to_row(&header, key_at, &cells) {
            Ok(row) => rows.push(row),
            Err(why) => {
                refused += 1;
                bad(reader::BadRow {
                    id: reader::key_text(&cells, key_at),
                    why: format!("file '{file}' line {}: {why}", record.line),
                    raw: reader::lossy_json(&header, &cells),
                });
            }
        }
    }
    if untimed > 0 {
        warn(format!(
            "file '{file}': {untimed} rows have no time in '{column}'; they are reported as changed on every read"
        ));
    }
    let more = rows.len() + refused >= limit;
    let next = if more {
        let (byte, line) = records.position();
        ChangeCursor {
            since,
            scan: Some(Scan {
                byte,
                line,
                len: version.len,
                modified: version.modified,
                latest,
            }),
        }
    } else {
        ChangeCursor {
            since: since.max(latest),
            scan: None,
        }
    };
    Ok(ChangesOut { rows, next, more })
}

/// The position of the updated-at column; a schema error naming the setting if missing.
pub fn stamp_column<'a>(
    header: impl IntoIterator<Item = &'a str>,
    file: &str,
    column: &str,
) -> Result<usize> {
    header.into_iter().position(|h| h == column).ok_or_else(|| {
        ConnectorError::schema(format!(
            "file '{file}': the header has no column '{column}', which the entity's `updated_at` setting names"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const FILE: &str = "id,name,updated_at\n\
        1,Ada,2024-01-01T10:00:00Z\n\
        2,Bo,2024-03-01T10:00:00+02:00\n\
        3,Cy,\n\
        4,Di,2024-02-01 09:30:00\n\
        5,Ed,2024-01-15\n";

    fn changes(text: &str, cursor: ChangeCursor, limit: usize) -> (ChangesOut, Vec<String>) {
        let (mut warnings, mut bad) = (Vec::new(), Vec::new());
        let out = read(
            Cursor::new(text.as_bytes().to_vec()),
            Version {
                len: text.len() as u64,
                modified: Some(1),
            },
            "people.csv",
            "id",
            "updated_at",
            cursor,
            limit,
            &mut |w| warnings.push(w),
            &mut |b: reader::BadRow| bad.push(b.why),
        )
        .unwrap();
        warnings.extend(bad);
        (out, warnings)
    }

    fn ids(out: &ChangesOut) -> Vec<&str> {
        out.rows.iter().map(|r| r.id.as_str()).collect()
    }

    fn at(text: &str) -> Option<Timestamp> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn times_in_several_forms() {
        assert_eq!(stamp("2024-01-01T10:00:00Z"), at("2024-01-01T10:00:00Z"));
        assert_eq!(
            stamp("2024-01-01T12:00:00+02:00"),
            at("2024-01-01T10:00:00Z")
        );
        assert_eq!(stamp("2024-01-01 10:00:00"), at("2024-01-01T10:00:00Z"));
        assert_eq!(stamp("2024-01-01"), at("2024-01-01T00:00:00Z"));
        assert_eq!(stamp("yesterday"), None);
        assert_eq!(stamp(""), None);
    }

    #[test]
    fn utc_times_compare_by_their_bytes() {
        let key = key_of("2024-01-15T10:20:30.5Z".parse().unwrap()).unwrap();
        assert_eq!(&key, b"2024-01-15T10:20:30");
        for older in [
            "2024-01-15T10:20:29Z",
            "2024-01-15 10:20:29.999",
            "2023-12-31T23:59:59+00:00",
        ] {
            assert!(surely_before(older.as_bytes(), Some(&key)), "{older}");
        }
        // The same second, later times and other forms are parsed instead.
        for unsure in [
            "2024-01-15T10:20:30Z",
            "2024-01-15T10:20:31Z",
            "2024-01-15T08:20:29+02:00",
            "2024-01-15",
            "2024-01-15T10:20:29.Z",
            "2024-01-15T10:20:29ZZ",
            "",
        ] {
            assert!(!surely_before(unsure.as_bytes(), Some(&key)), "{unsure}");
        }
        assert!(!surely_before(b"2024-01-15T10:20:29Z", None));
    }

    #[test]
    fn the_checkpoint_is_the_latest_time() {
        let latest = latest(Cursor::new(FILE.as_bytes()), "people.csv", "updated_at").unwrap();
        assert_eq!(latest, at("2024-03-01T08:00:00Z"));
        let err = super::latest(Cursor::new(FILE.as_bytes()), "people.csv", "changed").unwrap_err();
        assert!(
            err.message.contains("no column 'changed'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn rows_at_or_after_the_cursor_are_changes() {
        let since = ChangeCursor {
            since: at("2024-01-15T00:00:00Z"),
            scan: None,
        };
        let (out, warnings) = changes(FILE, since, 10);
        // 1 is older; 3 has no time and is always reported; 5 is at the cursor.
        assert_eq!(ids(&out), ["2", "3", "4", "5"]);
        assert!(!out.more);
        assert_eq!(out.next.since, at("2024-03-01T08:00:00Z"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("1 rows have no time in 'updated_at'"));

        let (all, _) = changes(
            FILE,
            ChangeCursor {
                since: None,
                scan: None,
            },
            10,
        );
        assert_eq!(ids(&all), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn a_full_batch_continues_where_it_stopped() {
        let since = ChangeCursor {
            since: at("2024-01-15T00:00:00Z"),
            scan: None,
        };
        let (first, _) = changes(FILE, since, 2);
        assert_eq!(ids(&first), ["2", "3"]);
        assert!(first.more);
        let scan = first.next.scan.expect("a scan in progress");
        assert_eq!(scan.latest, at("2024-03-01T08:00:00Z"));
        assert_eq!(first.next.since, at("2024-01-15T00:00:00Z"));
        let (second, _) = changes(FILE, first.next.clone(), 2);
        assert_eq!(ids(&second), ["4", "5"]);
        // A full batch may be the last one: the next call finds nothing more.
        let (third, _) = changes(FILE, second.next.clone(), 2);
        assert!(third.rows.is_empty() && !third.more);
        assert_eq!(third.next.since, at("2024-03-01T08:00:00Z"));
        assert_eq!(third.next.scan, None);

        // The file was rewritten meanwhile: the scan starts again from the top.
        let longer = format!("{FILE}6,Fay,2025-01-01T00:00:00Z\n");
        let (again, _) = changes(&longer, first.next.clone(), 10);
        assert_eq!(ids(&again), ["2", "3", "4", "5", "6"]);
        // Rewritten to the same length: told by its modification time.
        let same_length = read(
            Cursor::new(FILE.as_bytes().to_vec()),
            Version {
                len: FILE.len() as u64,
                modified: Some(2),
            },
            "people.csv",
            "id",
            "updated_at",
            first.next,
            10,
            &mut |_| {},
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(ids(&same_length), ["2", "3", "4", "5"]);
    }

    #[test]
    fn cursors_round_trip() {
        let c = ChangeCursor {
            since: at("2024-01-15T00:00:00Z"),
            scan: Some(Scan {
                byte: 40,
                line: 3,
                len: 99,
                modified: Some(7),
                latest: None,
            }),
        };
        assert_eq!(ChangeCursor::decode(&c.encode(), "people").unwrap(), c);
        assert_eq!(
            ChangeCursor {
                since: None,
                scan: None
            }
            .encode(),
            r#"{"since":null}"#
        );
        assert!(ChangeCursor::decode(r#"{"since":"soon"}"#, "people").is_err());
    }
}
