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
    /// A quote opened in it is never closed: as the `csv` crate reads it,
    /// it runs to the end of the file. Only with [`Records::split_unterminated`]:
    /// then `bytes` is its first line alone, and the records after it are
    /// read as records.
    pub unterminated: bool,
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
    /// A quote in it runs to the end of the file.
    unterminated: bool,
}

/// Finds the record at the start of `buf` and the bounds of its `want`-th
/// cell. None when `buf` ends before the record does and more may come
/// (`eof` false); at the end of the file the rest is the last record.
/// Compiled with WebAssembly SIMD in the component, so that the searches
/// of [`find`] inline here.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn span(buf: &[u8], want: usize, eof: bool) -> Option<Span> {
    let mut i = 0;
    let mut field = 0;
    let mut cell = None;
    let mut newlines = 0;
    let mut unterminated = false;
    loop {
        let start = i;
        if buf.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(q) = find::quote(buf, i) else {
                    if !eof {
                        return None;
                    }
                    // An unterminated quote runs to the end of the file.
                    newlines += count_newlines(&buf[i..]);
                    i = buf.len();
                    unterminated = true;
                    break;
                };
                newlines += count_newlines(&buf[i..q]);
                i = q + 1;
                match buf.get(i) {
                    Some(b'"') => i += 1,
                    None if !eof => return None,
                    _ => break,
                }
            }
        }
        // The rest of the cell: unquoted text, or what follows a closing quote.
        i = find::cell_end(buf, i).unwrap_or(buf.len());
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
                    unterminated,
                })
            }
            None if eof => {
                return Some(Span {
                    end: i,
                    len: i,
                    cell,
                    newlines,
                    unterminated,
                })
            }
            None => return None,
        }
    }
}

/// The first line of `buf` as a record of its own (an unterminated one):
/// its cells are not looked at.
fn first_line(buf: &[u8]) -> Span {
    let len = buf
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(buf.len());
    let end = match &buf[len..] {
        [b'\r', b'\n', ..] => len + 2,
        [] => len,
        _ => len + 1,
    };
    Span {
        end,
        len,
        cell: None,
        newlines: u64::from(buf[len..end].contains(&b'\n')),
        unterminated: true,
    }
}

/// For the last record of a file, at the start of `rest` (all of the file
/// from there on): the length of its first line with its terminator when a
/// quote opened in it is never closed (so that, as the `csv` crate reads
/// it, it swallows every line after it); none otherwise.
pub fn unterminated(rest: &[u8]) -> Option<usize> {
    let s = span(rest, usize::MAX, true)?;
    s.unterminated.then(|| first_line(rest).end)
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Searches for the bytes that matter to [`span`] sixteen at a time, with
/// the target's vector instructions: WebAssembly SIMD in the component, SSE2
/// on x86-64 (where the unit tests run), plain code elsewhere. Cells are
/// short, so this pays off only because a block is classified in a handful
/// of instructions; a byte-by-byte loop was most of a change read's time.
mod find {
    /// The first byte of `buf` from `from` on that ends an unquoted cell
    /// (`,`, `\r` or `\n`).
    #[inline]
    pub fn cell_end(buf: &[u8], from: usize) -> Option<usize> {
        imp::cell_end(buf, from)
    }

    /// The first `"` of `buf` from `from` on.
    #[inline]
    pub fn quote(buf: &[u8], from: usize) -> Option<usize> {
        imp::quote(buf, from)
    }

    fn is_cell_end(b: u8) -> bool {
        matches!(b, b',' | b'\r' | b'\n')
    }

    /// The first byte from `from` on that `block` marks (one bit a byte,
    /// lowest first, in each 16-byte block), and byte by byte after the
    /// last whole block with `byte`.
    #[inline(always)]
    fn first(
        buf: &[u8],
        from: usize,
        block: impl Fn(&[u8; 16]) -> u32,
        byte: impl Fn(u8) -> bool,
    ) -> Option<usize> {
        let mut i = from;
        while let Some(b) = buf.get(i..i + 16) {
            let bits = block(b.try_into().expect("a 16-byte slice"));
            if bits != 0 {
                return Some(i + bits.trailing_zeros() as usize);
            }
            i += 16;
        }
        buf.get(i..)?.iter().position(|&b| byte(b)).map(|k| i + k)
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_load, v128_or};

        #[target_feature(enable = "simd128")]
        fn load(b: &[u8; 16]) -> v128 {
            // SAFETY: `b` is 16 readable bytes; `v128_load` needs no alignment.
            unsafe { v128_load(b.as_ptr().cast()) }
        }

        // The host runs components with WebAssembly SIMD, as wasmtime does
        // by default; a runtime without it refuses the whole component when
        // loading it (so these are safe to call from anywhere in it).
        #[inline]
        #[target_feature(enable = "simd128")]
        pub fn cell_end(buf: &[u8], from: usize) -> Option<usize> {
            super::first(
                buf,
                from,
                |b| {
                    let v = load(b);
                    let hits = v128_or(
                        u8x16_eq(v, u8x16_splat(b',')),
                        v128_or(
                            u8x16_eq(v, u8x16_splat(b'\n')),
                            u8x16_eq(v, u8x16_splat(b'\r')),
                        ),
                    );
                    u32::from(u8x16_bitmask(hits))
                },
                super::is_cell_end,
            )
        }

        #[inline]
        #[target_feature(enable = "simd128")]
        pub fn quote(buf: &[u8], from: usize) -> Option<usize> {
            super::first(
                buf,
                from,
                |b| u32::from(u8x16_bitmask(u8x16_eq(load(b), u8x16_splat(b'"')))),
                |b| b == b'"',
            )
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod imp {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };

        #[target_feature(enable = "sse2")]
        fn load(b: &[u8; 16]) -> __m128i {
            // SAFETY: `b` is 16 readable bytes; `_mm_loadu_si128` needs no alignment.
            unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
        }

        #[target_feature(enable = "sse2")]
        fn eq(v: __m128i, byte: u8) -> __m128i {
            _mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8))
        }

        pub fn cell_end(buf: &[u8], from: usize) -> Option<usize> {
            // SAFETY: SSE2 is part of every x86-64 processor.
            unsafe { cell_end_sse2(buf, from) }
        }

        pub fn quote(buf: &[u8], from: usize) -> Option<usize> {
            // SAFETY: as in `cell_end`.
            unsafe { quote_sse2(buf, from) }
        }

        #[target_feature(enable = "sse2")]
        fn cell_end_sse2(buf: &[u8], from: usize) -> Option<usize> {
            super::first(
                buf,
                from,
                |b| {
                    let v = load(b);
                    let hits = _mm_or_si128(eq(v, b','), _mm_or_si128(eq(v, b'\n'), eq(v, b'\r')));
                    _mm_movemask_epi8(hits) as u32
                },
                super::is_cell_end,
            )
        }

        #[target_feature(enable = "sse2")]
        fn quote_sse2(buf: &[u8], from: usize) -> Option<usize> {
            super::first(
                buf,
                from,
                |b| _mm_movemask_epi8(eq(load(b), b'"')) as u32,
                |b| b == b'"',
            )
        }
    }

    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    mod imp {
        fn mask(b: &[u8; 16], hit: impl Fn(u8) -> bool) -> u32 {
            b.iter()
                .enumerate()
                .fold(0, |m, (k, &c)| m | u32::from(hit(c)) << k)
        }

        pub fn cell_end(buf: &[u8], from: usize) -> Option<usize> {
            super::first(
                buf,
                from,
                |b| mask(b, super::is_cell_end),
                super::is_cell_end,
            )
        }

        pub fn quote(buf: &[u8], from: usize) -> Option<usize> {
            super::first(buf, from, |b| mask(b, |c| c == b'"'), |b| b == b'"')
        }
    }
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
    /// A record whose quote is never closed is its first line alone.
    split: bool,
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
            split: false,
        }
    }

    /// Takes a record whose quote is never closed (which would run to the
    /// end of the file) for its first line alone, marked
    /// [`Record::unterminated`], and reads the lines after it as records.
    pub fn split_unterminated(mut self) -> Self {
        self.split = true;
        self
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
            let Some(mut s) = (!rest.is_empty())
                .then(|| span(rest, cell, self.eof))
                .flatten()
            else {
                self.fill()?;
                continue;
            };
            if s.unterminated && self.split {
                s = first_line(rest);
            }
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
                unterminated: s.unterminated,
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

    /// The records the scan finds, each parsed; checks on the way that the
    /// raw cell `want` is that cell.
    fn by_scan(records: &mut Records<impl Read>, want: usize) -> Vec<Vec<Vec<u8>>> {
        let mut parser = Parser::new();
        let mut got = Vec::new();
        while let Some(r) = records.next(want).unwrap() {
            let cells: Vec<Vec<u8>> = parser.parse(r.bytes).iter().map(<[u8]>::to_vec).collect();
            let cell = r.cell.map(|c| unquote(c).into_owned());
            assert_eq!(cell.as_ref(), cells.get(want), "{:?}", r.bytes);
            got.push(cells);
        }
        got
    }

    #[test]
    fn records_are_split_as_the_csv_crate_splits_them() {
        for text in TRICKY {
            let expected = by_csv(text);
            for step in [1, 2, 3, 7, CHUNK] {
                for want in 0..3 {
                    let mut records = Records::new(Trickle(text.as_bytes(), step), 0, 1);
                    assert_eq!(
                        by_scan(&mut records, want),
                        expected,
                        "{text:?} step {step}"
                    );
                    assert_eq!(records.position().0, text.len() as u64, "{text:?}");
                }
            }
        }
    }

    /// Cells of every length around the 16-byte blocks the search reads,
    /// quoted and not, ended by each terminator and by the end of the file.
    #[test]
    fn long_cells_are_split_as_the_csv_crate_splits_them() {
        for len in 0..50 {
            let plain = "x".repeat(len);
            let quoted = format!("\"{}\"\"{}\"", "q".repeat(len / 2), "\n".repeat(len % 3));
            for (a, b) in [(&plain, &quoted), (&quoted, &plain), (&plain, &plain)] {
                for end in ["\n", "\r\n", "\r", ""] {
                    let text = format!("{a},{b}{end}{b},{a},{a}{end}");
                    let expected = by_csv(&text);
                    for (want, step) in [(0, 15), (1, 16), (2, 17), (1, CHUNK)] {
                        let mut records = Records::new(Trickle(text.as_bytes(), step), 0, 1);
                        assert_eq!(
                            by_scan(&mut records, want),
                            expected,
                            "{text:?} step {step}"
                        );
                    }
                }
            }
        }
    }

    /// The block searches find what a byte-by-byte search finds, from every
    /// start, whatever the bytes around the 16-byte blocks.
    #[test]
    fn block_searches_find_the_first_byte_a_plain_search_finds() {
        // Runs of plain bytes longer than a block between the ones sought.
        let mut text = [b'x'; 100];
        for (k, at) in [3, 20, 37, 38, 55, 71, 90].into_iter().enumerate() {
            text[at] = b",\"\r\n"[k % 4];
        }
        for len in 0..text.len() {
            let buf = &text[..len];
            for from in 0..=len + 1 {
                let plain = |hit: fn(&u8) -> bool| {
                    buf.get(from..)
                        .and_then(|rest| rest.iter().position(hit))
                        .map(|k| from + k)
                };
                assert_eq!(
                    find::cell_end(buf, from),
                    plain(|b| matches!(b, b',' | b'\r' | b'\n')),
                    "{len} {from}"
                );
                assert_eq!(
                    find::quote(buf, from),
                    plain(|b| *b == b'"'),
                    "{len} {from}"
                );
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

    #[test]
    fn a_quote_never_closed_is_its_first_line_when_split() {
        for (text, end) in [
            ("1,a\n2,\"open\n3,c\r\n4,d", "4,d"),
            ("1,a\r2,\"open\r3,c\r4,d\r", "4,d"),
        ] {
            let mut records = Records::new(Trickle(text.as_bytes(), 3), 0, 1).split_unterminated();
            let mut seen = Vec::new();
            while let Some(r) = records.next(0).unwrap() {
                seen.push((String::from_utf8(r.bytes.to_vec()).unwrap(), r.unterminated));
            }
            let want = [
                ("1,a", false),
                ("2,\"open", true),
                ("3,c", false),
                (end, false),
            ];
            let want: Vec<(String, bool)> = want.iter().map(|(t, u)| (t.to_string(), *u)).collect();
            assert_eq!(seen, want, "{text:?}");
        }
        assert_eq!(unterminated(b"2,\"open\n3,c\n"), Some(8));
        assert_eq!(unterminated(b"2,\"closed\"\n"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {

            /// Whatever the text, the scan splits it as the `csv` crate does,
            /// however the reads cut it.
            #[test]
            fn any_text_is_split_as_the_csv_crate_splits_it(
                text in "[ab,\"\r\n\u{feff}é ]{0,80}",
                step in 1usize..9,
                want in 0usize..3,
            ) {
                // After a first line, as the scan starts after a file's
                // header (a byte-order mark at the very start is the header's).
                let text = format!("h\n{text}");
                let expected = by_csv(&text);
                let mut records = Records::new(Trickle(text.as_bytes(), step), 0, 1);
                prop_assert_eq!(by_scan(&mut records, want), expected);
                prop_assert_eq!(records.position().0, text.len() as u64);
            }

            /// Split where a quote is never closed, the scan still reads to the
            /// end of the text, and finds at least the records it found whole.
            #[test]
            fn split_scans_read_every_byte(text in "[ab,\"\r\n ]{0,80}", step in 1usize..9) {
                let whole = by_csv(&text).len();
                let mut records = Records::new(Trickle(text.as_bytes(), step), 0, 1).split_unterminated();
                let mut n = 0;
                while records.next(0).unwrap().is_some() {
                    n += 1;
                }
                prop_assert!(n >= whole, "{} records split, {} whole", n, whole);
                prop_assert_eq!(records.position().0, text.len() as u64);
            }
        }
    }
}
