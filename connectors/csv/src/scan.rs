//! A quick pass over the records of a CSV file: where each record lies and
//! the raw bytes of one of its cells, without unquoting or copying anything.
//! A change read looks at one cell of every row and needs the others of a
//! few rows only; a full parse of every row cost most of its time.
//!
//! Records are split as the `csv` crate splits them with its default
//! settings: comma-separated, `"` quotes with `""` inside a quoted cell, `\r`,
//! `\n` or `\r\n` ending a record, blank lines skipped, and a quote inside an
//! unquoted cell taken as text. [`Parser`] turns one record's bytes into a
//! [`ByteRecord`] with csv-core, the parser of the `csv` crate itself, so
//! cell values are never read two ways.

use std::borrow::Cow;
use std::io::{self, Read};

use csv::ByteRecord;

/// Bytes read from the file at a time (every read crosses the sandbox).
const CHUNK: usize = 1 << 20;

/// One record of the file.
pub struct Record<'a> {
    /// Its bytes, terminator excluded.
    pub bytes: &'a [u8],
    /// The raw bytes of the cell asked for, quotes included; none when the
    /// record has fewer cells.
    pub cell: Option<&'a [u8]>,
    /// Its line number (1-based).
    pub line: u64,
}

/// Where a record ends in a buffer.
struct Span {
    /// Just past the record's terminator (or the end of the file).
    end: usize,
    /// The end of the record's bytes.
    len: usize,
    /// The cell asked for, as a range.
    cell: Option<(usize, usize)>,
    /// Line feeds inside the record and its terminator.
    newlines: u64,
}

/// Finds the record at the start of `buf` and the bounds of its `want`-th
/// cell. None when `buf` ends before the record does and more may come
/// (`eof` false); at the end of the file the rest is the last record.
fn span(buf: &[u8], want: usize, eof: bool) -> Option<Span> {
    let mut i = 0;
    let mut field = 0;
    let mut cell = None;
    let mut newlines = 0;
    loop {
        let start = i;
        if buf.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(k) = buf[i..].iter().position(|&b| b == b'"') else {
                    if !eof {
                        return None;
                    }
                    // An unterminated quote runs to the end of the file.
                    newlines += count_newlines(&buf[i..]);
                    i = buf.len();
                    break;
                };
                newlines += count_newlines(&buf[i..i + k]);
                i += k + 1;
                match buf.get(i) {
                    Some(b'"') => i += 1,
                    None if !eof => return None,
                    _ => break,
                }
            }
        }
        // The rest of the cell: unquoted text, or what follows a closing quote.
        while i < buf.len() && !matches!(buf[i], b',' | b'\r' | b'\n') {
            i += 1;
        }
        if field == want {
            cell = Some((start, i));
        }
        match buf.get(i) {
            Some(b',') => {
                i += 1;
                field += 1;
            }
            Some(&b) => {
                return Some(Span {
                    end: i + 1,
                    len: i,
                    cell,
                    newlines: newlines + u64::from(b == b'\n'),
                })
            }
            None if eof => {
                return Some(Span {
                    end: i,
                    len: i,
                    cell,
                    newlines,
                })
            }
            None => return None,
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The records of a file from a byte offset on, read in large chunks.
pub struct Records<R> {
    input: R,
    buf: Vec<u8>,
    /// Where the next record starts in `buf`.
    at: usize,
    /// The file offset of `buf[0]`.
    base: u64,
    /// The line number at `at`.
    line: u64,
    eof: bool,
}

impl<R: Read> Records<R> {
    /// Reads records from `input`, which stands at file offset `byte`, on line `line`.
    pub fn new(input: R, byte: u64, line: u64) -> Records<R> {
        Records {
            input,
            buf: Vec::new(),
            at: 0,
            base: byte,
            line,
            eof: false,
        }
    }

    /// Where the next record starts: its file offset and line number.
    pub fn position(&self) -> (u64, u64) {
        (self.base + self.at as u64, self.line)
    }

    /// The next record, with the raw bytes of its `cell`-th cell; blank
    /// lines are skipped.
    pub fn next(&mut self, cell: usize) -> io::Result<Option<Record<'_>>> {
        loop {
            let rest = &self.buf[self.at..];
            if rest.is_empty() && self.eof {
                return Ok(None);
            }
            let Some(s) = (!rest.is_empty())
                .then(|| span(rest, cell, self.eof))
                .flatten()
            else {
                self.fill()?;
                continue;
            };
            let start = self.at;
            let line = self.line;
            self.at += s.end;
            self.line += s.newlines;
            if s.len == 0 {
                continue;
            }
            let bytes = &self.buf[start..start + s.len];
            return Ok(Some(Record {
                bytes,
                cell: s.cell.map(|(a, b)| &bytes[a..b]),
                line,
            }));
        }
    }

    /// Drops the records read and appends the next chunk of the file.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.drain(..self.at);
        self.base += self.at as u64;
        self.at = 0;
        let n = (&mut self.input)
            .take(CHUNK as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = n < CHUNK;
        Ok(())
    }
}

/// A cell's text: quotes removed and `""` made `"`; what follows a closing
/// quote is text.
pub fn unquote(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(inner) = raw.strip_prefix(b"\"") else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'"' {
            if inner.get(i + 1) == Some(&b'"') {
                out.push(b'"');
                i += 2;
                continue;
            }
            out.extend_from_slice(&inner[i + 1..]);
            break;
        }
        out.push(inner[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Parses one record's bytes into its cells.
pub struct Parser {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            core: csv_core::Reader::new(),
            out: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The cells of a record found by [`Records`].
    pub fn parse(&mut self, bytes: &[u8]) -> ByteRecord {
        self.core.reset();
        // A reset reader takes a byte-order mark at the start of its input
        // for the file's and drops it; a blank line first (which it skips)
        // keeps a mark that starts a record mid-file, as the file's reader does.
        let _ = self.core.read_record(b"\n", &mut [], &mut []);
        self.out.resize(bytes.len().max(1), 0);
        self.ends.resize(bytes.len() + 2, 0);
        let mut input = bytes;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (result, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += o;
            nend += e;
            match result {
                // The next call, with no input left, ends the record.
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.out.len();
                    self.out.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
            }
        }
        let mut record = ByteRecord::with_capacity(nout, nend);
        let mut from = 0;
        for &to in &self.ends[..nend] {
            record.push_field(&self.out[from..to]);
            from = to;
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `.1` bytes a read, so records straddle reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const TRICKY: &[&str] = &[
        "a,b,c\n1,2,3\n",
        "a,\"b,c\",d\r\n\"x\"\"y\",\"multi\nline\",z\r\n",
        "\n\n1,2\n\r\n3,4",
        "5'10\",tall,\"ok\"\n",
        "\"ab\"cd,e\n",
        "\"unterminated,x\ny",
        "a,b\rc,d\r",
        ",,\n\"\",\"\"\"\"\n",
        "x\n\"\"",
        "a,b\n\u{feff}\"x\",y\n\u{feff}z\n",
    ];

    /// Records as the `csv` crate reads them.
    fn by_csv(text: &str) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        reader
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    #[test]
    fn records_are_split_as_the_csv_crate_splits_them() {
        for text in TRICKY {
            let expected = by_csv(text);
            for step in [1, 2, 3, 7, CHUNK] {
                for want in 0..3 {
                    let mut records = Records::new(Trickle(text.as_bytes(), step), 0, 1);
                    let mut parser = Parser::new();
                    let mut got = Vec::new();
                    while let Some(r) = records.next(want).unwrap() {
                        let cells: Vec<Vec<u8>> =
                            parser.parse(r.bytes).iter().map(<[u8]>::to_vec).collect();
                        let cell = r.cell.map(|c| unquote(c).into_owned());
                        assert_eq!(cell.as_ref(), cells.get(want), "{text:?} step {step}");
                        got.push(cells);
                    }
                    assert_eq!(got, expected, "{text:?} step {step}");
                    assert_eq!(records.position().0, text.len() as u64, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn positions_resume_a_scan() {
        let text = "id,t\n1,\"a\nb\"\n2,c\n3,d\n";
        let mut records = Records::new(text.as_bytes(), 0, 1);
        assert_eq!(records.next(1).unwrap().unwrap().line, 1);
        assert_eq!(records.next(1).unwrap().unwrap().line, 2);
        let (byte, line) = records.position();
        assert_eq!((byte, line), (13, 4));
        let mut rest = Records::new(&text.as_bytes()[byte as usize..], byte, line);
        let r = rest.next(1).unwrap().unwrap();
        assert_eq!((r.bytes, r.cell, r.line), (&b"2,c"[..], Some(&b"c"[..]), 4));
        assert_eq!(rest.next(1).unwrap().unwrap().bytes, b"3,d");
        assert!(rest.next(1).unwrap().is_none());
        assert_eq!(rest.position(), (text.len() as u64, 6));
    }
}
