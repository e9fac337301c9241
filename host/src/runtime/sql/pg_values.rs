//! Values of the `sql` import to and from PostgreSQL's wire formats.
//!
//! Parameters: integers, reals, booleans and bytes go in binary where the
//! parameter's type takes them as they are; everything else is sent in text
//! format and parsed by the server, as `psql` would, so that a text value can
//! fill a `numeric`, `date`, `timestamptz`, `uuid`, `jsonb` or enum column.
//!
//! Results: integers and booleans (0/1) become integers, floats reals, `bytea`
//! blobs, and the other common types text in PostgreSQL's canonical spelling
//! (exact decimals, ISO 8601 dates and times, `Z` for UTC). Other types are
//! refused with a message naming the column and the fix.

use super::super::bindings::weir::connector::sql::Value;
use bytes::{BufMut, BytesMut};
use std::error::Error;
use std::fmt::Write as _;
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Column, Row};

type BoxError = Box<dyn Error + Sync + Send>;

/// A parameter value, encoded for the type the server asks for.
#[derive(Debug)]
pub(super) struct Param<'a>(pub &'a Value);

impl Param<'_> {
    /// Whether the value goes in binary for `ty`.
    fn binary(&self, ty: &Type) -> bool {
        match self.0 {
            Value::Integer(_) => matches!(
                *ty,
                Type::BOOL | Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8
            ),
            Value::Real(_) => matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
            Value::Blob(_) => *ty == Type::BYTEA,
            Value::Null | Value::Text(_) => false,
        }
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self.0, self.binary(ty)) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Integer(i), true) => match *ty {
                Type::BOOL => out.put_u8(u8::from(*i != 0)),
                Type::INT2 => out.put_i16(i16::try_from(*i)?),
                Type::INT4 => out.put_i32(i32::try_from(*i)?),
                Type::INT8 => out.put_i64(*i),
                Type::FLOAT4 => out.put_f32(*i as f32),
                _ => out.put_f64(*i as f64),
            },
            (Value::Real(f), true) => match *ty {
                Type::FLOAT4 => out.put_f32(*f as f32),
                _ => out.put_f64(*f),
            },
            (Value::Blob(b), true) => out.put_slice(b),
            (Value::Integer(i), false) => write!(Text(out), "{i}")?,
            (Value::Real(f), false) => write!(Text(out), "{f}")?,
            // Bytes read from PostgreSQL reach JSON as plain hex: written
            // back, they are hex again (bytea's text form wants `\x`).
            (Value::Text(s), false) if *ty == Type::BYTEA && is_hex(s) => {
                out.put_slice(b"\\x");
                out.put_slice(s.as_bytes());
            }
            (Value::Text(s), false) => out.put_slice(s.as_bytes()),
            (Value::Blob(_), false) => {
                return Err(format!("bytes given for a parameter of type {ty}").into())
            }
            (Value::Text(_), true) => unreachable!("text always goes in text format"),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.binary(ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

/// Appends a value to a row of `COPY ... FROM STDIN` in text format: `\N`
/// for NULL, bytes as `bytea` hex, and the four characters the format
/// gives a meaning to (backslash, tab, newline, carriage return) escaped.
pub(super) fn copy_text(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Null => out.put_slice(b"\\N"),
        Value::Integer(i) => {
            let _ = write!(Text(out), "{i}");
        }
        Value::Real(f) => {
            let _ = write!(Text(out), "{f}");
        }
        Value::Text(s) => {
            let mut rest = s.as_bytes();
            while let Some(at) = rest
                .iter()
                .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
            {
                out.put_slice(&rest[..at]);
                out.put_slice(match rest[at] {
                    b'\\' => b"\\\\",
                    b'\t' => b"\\t",
                    b'\n' => b"\\n",
                    _ => b"\\r",
                });
                rest = &rest[at + 1..];
            }
            out.put_slice(rest);
        }
        Value::Blob(b) => {
            out.put_slice(b"\\\\x");
            for byte in b {
                let _ = write!(Text(out), "{byte:02x}");
            }
        }
    }
}

/// Whether a text is bytes in plain hex (an even number of hex digits).
fn is_hex(s: &str) -> bool {
    s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut BytesMut);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// The raw binary value of a column, whatever its type.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The value of column `i` of a row.
pub(super) fn decode(row: &Row, i: usize, column: &Column) -> Result<Value, String> {
    let raw: Option<Raw<'_>> = row
        .try_get(i)
        .map_err(|e| format!("column '{}': {e}", column.name()))?;
    let Some(Raw(raw)) = raw else {
        return Ok(Value::Null);
    };
    from_binary(column.type_(), raw).map_err(|why| {
        format!(
            "column '{}' of type {}: {why}",
            column.name(),
            column.type_()
        )
    })
}

/// Decodes one binary value of type `ty`.
fn from_binary(ty: &Type, raw: &[u8]) -> Result<Value, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        if raw.len() == n {
            Ok(raw)
        } else {
            Err(format!("expected {n} bytes, got {}", raw.len()))
        }
    };
    let text = |raw: &[u8]| {
        std::str::from_utf8(raw)
            .map(|s| Value::Text(s.to_string()))
            .map_err(|_| "the text is not UTF-8".to_string())
    };
    Ok(match *ty {
        Type::BOOL => Value::Integer(i64::from(fixed(1)?[0] != 0)),
        Type::INT2 => Value::Integer(i16::from_be_bytes(fixed(2)?.try_into().unwrap()).into()),
        Type::INT4 => Value::Integer(i32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
        Type::OID => Value::Integer(u32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
        Type::INT8 => Value::Integer(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        Type::FLOAT4 => Value::Real(widen(f32::from_be_bytes(fixed(4)?.try_into().unwrap()))),
        Type::FLOAT8 => Value::Real(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            text(raw)?
        }
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => text(rest)?,
            _ => return Err("unknown jsonb version".to_string()),
        },
        Type::NUMERIC => Value::Text(numeric(raw)?),
        Type::DATE => Value::Text(date(i32::from_be_bytes(fixed(4)?.try_into().unwrap()))?),
        Type::TIMESTAMP => Value::Text(timestamp(i64::from_be_bytes(fixed(8)?.try_into().unwrap()), false)?),
        Type::TIMESTAMPTZ => Value::Text(timestamp(i64::from_be_bytes(fixed(8)?.try_into().unwrap()), true)?),
        Type::TIME => Value::Text(time(i64::from_be_bytes(fixed(8)?.try_into().unwrap()))?),
        Type::UUID => Value::Text(uuid(fixed(16)?)),
        _ if matches!(ty.kind(), Kind::Enum(_)) => text(raw)?,
        _ => {
            return Err(
                "weir cannot read this type; select it through a view that casts it (for example to text)"
                    .to_string(),
            )
        }
    })
}

/// PostgreSQL's epoch, 2000-01-01, in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `date`: days since 2000-01-01.
fn date(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => Ok("infinity".to_string()),
        i32::MIN => Ok("-infinity".to_string()),
        _ => jiff::civil::date(2000, 1, 1)
            .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
            .map(|d| d.to_string())
            .map_err(|e| e.to_string()),
    }
}

/// A `timestamp` or `timestamptz`: microseconds since 2000-01-01 00:00 (UTC
/// for `timestamptz`, written with `Z`).
fn timestamp(micros: i64, utc: bool) -> Result<String, String> {
    match micros {
        i64::MAX => return Ok("infinity".to_string()),
        i64::MIN => return Ok("-infinity".to_string()),
        _ => {}
    }
    let at = micros
        .checked_add(PG_EPOCH_MICROS)
        .ok_or("out of range")
        .and_then(|m| jiff::Timestamp::from_microsecond(m).map_err(|_| "out of range"))?;
    Ok(if utc {
        at.to_string()
    } else {
        at.to_zoned(jiff::tz::TimeZone::UTC).datetime().to_string()
    })
}

/// A `time`: microseconds since midnight.
fn time(micros: i64) -> Result<String, String> {
    jiff::civil::Time::midnight()
        .checked_add(jiff::SignedDuration::from_micros(micros))
        .map(|t| t.to_string())
        .map_err(|e| e.to_string())
}

/// A `uuid` in its hyphenated spelling.
fn uuid(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// A `numeric` in PostgreSQL's text spelling, exactly (binary form: digit
/// count, weight, sign, display scale, then base-10000 digits).
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, _>>()?;
    match sign {
        0xC000 => return Ok("NaN".to_string()),
        0xD000 => return Ok("Infinity".to_string()),
        0xF000 => return Ok("-Infinity".to_string()),
        0x0000 | 0x4000 => {}
        _ => return Err("unknown numeric sign".to_string()),
    }
    let digit = |d: i64| -> u16 {
        if d >= 0 && (d as usize) < digits.len() {
            digits[d as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for d in 0..=weight {
            if d == 0 {
                let _ = write!(s, "{}", digit(d));
            } else {
                let _ = write!(s, "{:04}", digit(d));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut d = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(d));
            d += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// A `real` as the nearest double to its shortest decimal form: 0.1f32 is
/// 0.1, not 0.10000000149011612 (the exact widening).
fn widen(f: f32) -> f64 {
    f.to_string().parse().unwrap_or(f64::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_is_written_to_bytea_as_hex() {
        let mut out = BytesMut::new();
        let text = Value::Text("00ff10".into());
        Param(&text).to_sql(&Type::BYTEA, &mut out).unwrap();
        assert_eq!(&out[..], b"\\x00ff10");
        let mut out = BytesMut::new();
        let plain = Value::Text("not hex".into());
        Param(&plain).to_sql(&Type::BYTEA, &mut out).unwrap();
        assert_eq!(&out[..], b"not hex");
        let mut out = BytesMut::new();
        Param(&text).to_sql(&Type::TEXT, &mut out).unwrap();
        assert_eq!(&out[..], b"00ff10");
    }

    #[test]
    fn reals_widen_to_their_shortest_form() {
        assert_eq!(widen(0.1), 0.1);
        assert_eq!(widen(-2.5e-8), -2.5e-8);
        assert_eq!(widen(16_777_216.0), 16_777_216.0);
        assert!(widen(f32::NAN).is_nan());
        assert_eq!(widen(f32::INFINITY), f64::INFINITY);
    }

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_keep_their_exact_digits() {
        // 12345.67 = [1, 2345, 6700] weight 1
        assert_eq!(
            numeric(&numeric_bytes(1, 0, 2, &[1, 2345, 6700])).unwrap(),
            "12345.67"
        );
        // -0.0012 = [12] weight -1, scale 4
        assert_eq!(
            numeric(&numeric_bytes(-1, 0x4000, 4, &[12])).unwrap(),
            "-0.0012"
        );
        // 0.00 has no digits
        assert_eq!(numeric(&numeric_bytes(0, 0, 2, &[])).unwrap(), "0.00");
        // 10000 = [1] weight 1 (trailing zero groups are omitted)
        assert_eq!(numeric(&numeric_bytes(1, 0, 0, &[1])).unwrap(), "10000");
        // 0.00000001 = [1] weight -2 -> groups 0000 0000 0001? no: weight -2 means 1e-8
        assert_eq!(
            numeric(&numeric_bytes(-2, 0, 8, &[1])).unwrap(),
            "0.00000001"
        );
        assert_eq!(numeric(&numeric_bytes(0, 0xC000, 0, &[])).unwrap(), "NaN");
    }

    #[test]
    fn dates_and_times_use_iso_8601() {
        assert_eq!(date(0).unwrap(), "2000-01-01");
        assert_eq!(date(-1).unwrap(), "1999-12-31");
        assert_eq!(
            timestamp(1_500_000, true).unwrap(),
            "2000-01-01T00:00:01.5Z"
        );
        assert_eq!(timestamp(0, false).unwrap(), "2000-01-01T00:00:00");
        assert_eq!(time(3_600_000_000 + 1).unwrap(), "01:00:00.000001");
        assert_eq!(
            uuid(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8]),
            "12345678-9abc-def0-0102-030405060708"
        );
    }

    #[test]
    fn copy_rows_escape_what_the_text_format_gives_a_meaning_to() {
        let mut out = BytesMut::new();
        for v in [
            Value::Null,
            Value::Text("\\N".into()),
            Value::Text("a\tb\nc\rd\\e \"f\" ü".into()),
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Blob(vec![0, 0xab]),
        ] {
            copy_text(&v, &mut out);
            out.put_u8(b'|');
        }
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "\\N|\\\\N|a\\tb\\nc\\rd\\\\e \"f\" ü|-7|1.5|\\\\x00ab|"
        );
    }

    #[test]
    fn text_values_go_in_text_format_for_typed_columns() {
        let text = Value::Text("12.50".into());
        assert!(matches!(
            Param(&text).encode_format(&Type::NUMERIC),
            Format::Text
        ));
        let int = Value::Integer(7);
        assert!(matches!(
            Param(&int).encode_format(&Type::INT4),
            Format::Binary
        ));
        assert!(matches!(
            Param(&int).encode_format(&Type::NUMERIC),
            Format::Text
        ));
        let mut out = BytesMut::new();
        Param(&int).to_sql(&Type::NUMERIC, &mut out).unwrap();
        assert_eq!(&out[..], b"7");
        let mut out = BytesMut::new();
        Param(&int).to_sql(&Type::INT2, &mut out).unwrap();
        assert_eq!(&out[..], &7i16.to_be_bytes());
        let big = Value::Integer(1 << 20);
        assert!(Param(&big)
            .to_sql(&Type::INT2, &mut BytesMut::new())
            .is_err());
    }
}
