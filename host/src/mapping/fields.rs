//! Field transforms between a system's representation and the canonical one.
//!
//! Canonical representations: dates are `YYYY-MM-DD`, timestamps RFC 3339 in
//! UTC, decimals are strings of exact decimals (never floats), phone numbers
//! are E.164 (`+15550100`). A transform is given in the manifest per system,
//! entity and canonical field; it runs one way on read and the other on write.

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// A type conversion of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Convert {
    /// A calendar date written by the system in `format` (strftime syntax).
    Date {
        /// For example `%m/%d/%Y`.
        format: String,
    },
    /// A point in time written by the system in `format` (strftime syntax,
    /// RFC 3339 when absent), in time zone `zone` when the format has no offset.
    Timestamp {
        /// For example `%Y-%m-%d %H:%M:%S`.
        format: Option<String>,
        /// An IANA zone, for example `Europe/Paris` (default UTC).
        zone: Option<String>,
    },
    /// An exact decimal, as the system holds it.
    Decimal {
        /// How the system holds it.
        repr: DecimalRepr,
        /// Digits after the point; canonical values are rounded to it.
        scale: Option<u32>,
    },
    /// A phone number, normalised to E.164; numbers without a `+` get `country`.
    Phone {
        /// The calling code to add, for example `33`.
        country: Option<String>,
    },
}

/// How a system holds a decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalRepr {
    /// Text, for example `"12.50"`.
    Text,
    /// A JSON number (read exactly from its text; written through f64, so only
    /// for systems that hold floats anyway).
    Number,
    /// An integer count of minor units (cents for `scale = 2`).
    Minor,
}

/// Text case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Lower case.
    Lower,
    /// Upper case.
    Upper,
}

impl Convert {
    /// System value → canonical value.
    pub fn read(&self, v: Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(v);
        }
        match self {
            Convert::Date { format } => {
                let s = text(&v)?;
                let d = jiff::civil::Date::strptime(format, &s)
                    .map_err(|e| format!("'{s}' is not a date in format '{format}': {e}"))?;
                Ok(Value::String(d.to_string()))
            }
            Convert::Timestamp { format, zone } => {
                let s = text(&v)?;
                let ts = parse_timestamp(&s, format.as_deref(), zone.as_deref())?;
                Ok(Value::String(format!("{ts}")))
            }
            Convert::Decimal { repr, scale } => {
                let d = match (repr, &v) {
                    (DecimalRepr::Minor, Value::Number(n)) => {
                        let minor = n
                            .as_i64()
                            .ok_or_else(|| format!("{n} is not a whole number of minor units"))?;
                        Decimal::new(minor, scale.unwrap_or(2))
                    }
                    (_, Value::Number(n)) => Decimal::from_str(&n.to_string())
                        .or_else(|_| Decimal::from_scientific(&n.to_string()))
                        .map_err(|e| format!("{n} is not a decimal: {e}"))?,
                    (_, Value::String(s)) => Decimal::from_str(s.trim())
                        .map_err(|e| format!("'{s}' is not a decimal: {e}"))?,
                    (_, other) => return Err(format!("{other} is not a decimal")),
                };
                Ok(Value::String(canonical_decimal(d, *scale)))
            }
            Convert::Phone { country } => Ok(Value::String(normalise_phone(
                &text(&v)?,
                country.as_deref(),
            )?)),
        }
    }

    /// Canonical value → system value.
    pub fn write(&self, v: Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(v);
        }
        match self {
            Convert::Phone { .. } => Ok(v),
            Convert::Date { format } => {
                let s = text(&v)?;
                let d: jiff::civil::Date = s
                    .parse()
                    .map_err(|e| format!("'{s}' is not a date (YYYY-MM-DD): {e}"))?;
                Ok(Value::String(d.strftime(format).to_string()))
            }
            Convert::Timestamp { format, zone } => {
                let s = text(&v)?;
                let ts: jiff::Timestamp = s
                    .parse()
                    .map_err(|e| format!("'{s}' is not an RFC 3339 timestamp: {e}"))?;
                let zoned = ts
                    .in_tz(zone.as_deref().unwrap_or("UTC"))
                    .map_err(|e| format!("time zone: {e}"))?;
                Ok(Value::String(match format {
                    Some(f) => zoned.strftime(f).to_string(),
                    None => format!("{}", zoned.timestamp()),
                }))
            }
            Convert::Decimal { repr, scale } => {
                let s = text(&v)?;
                let d =
                    Decimal::from_str(&s).map_err(|e| format!("'{s}' is not a decimal: {e}"))?;
                let d = match scale {
                    Some(sc) => d.round_dp(*sc),
                    None => d,
                };
                match repr {
                    DecimalRepr::Text => Ok(Value::String(canonical_decimal(d, *scale))),
                    DecimalRepr::Number => serde_json::Number::from_str(&d.to_string())
                        .map(Value::Number)
                        .map_err(|e| format!("{d}: {e}")),
                    DecimalRepr::Minor => {
                        let minor = d * Decimal::from(10i64.pow(scale.unwrap_or(2)));
                        let whole = minor.trunc();
                        if whole != minor {
                            return Err(format!(
                                "{d} has more digits than scale {}",
                                scale.unwrap_or(2)
                            ));
                        }
                        i64::try_from(whole)
                            .map(Value::from)
                            .map_err(|e| format!("{d}: {e}"))
                    }
                }
            }
        }
    }
}

/// Applies a case to a string value (other values pass).
pub fn apply_case(case: Option<Case>, v: Value) -> Value {
    match (case, v) {
        (Some(Case::Lower), Value::String(s)) => Value::String(s.to_lowercase()),
        (Some(Case::Upper), Value::String(s)) => Value::String(s.to_uppercase()),
        (_, v) => v,
    }
}

fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{other} is not text")),
    }
}

/// A decimal in canonical text: with exactly `scale` digits when given,
/// otherwise without trailing zeros.
pub fn canonical_decimal(d: Decimal, scale: Option<u32>) -> String {
    match scale {
        Some(s) => {
            let mut r = d.round_dp(s);
            r.rescale(s);
            r.to_string()
        }
        None => d.normalize().to_string(),
    }
}

fn parse_timestamp(
    s: &str,
    format: Option<&str>,
    zone: Option<&str>,
) -> Result<jiff::Timestamp, String> {
    let zone = zone.unwrap_or("UTC");
    match format {
        None => {
            if let Ok(ts) = s.parse::<jiff::Timestamp>() {
                return Ok(ts);
            }
            let civil: jiff::civil::DateTime = s
                .parse()
                .map_err(|e| format!("'{s}' is not a timestamp: {e}"))?;
            civil
                .in_tz(zone)
                .map(|z| z.timestamp())
                .map_err(|e| format!("time zone '{zone}': {e}"))
        }
        Some(f) => {
            let tm = jiff::fmt::strtime::BrokenDownTime::parse(f, s)
                .map_err(|e| format!("'{s}' is not a timestamp in format '{f}': {e}"))?;
            if let Ok(ts) = tm.to_timestamp() {
                return Ok(ts);
            }
            let civil = tm
                .to_datetime()
                .map_err(|e| format!("'{s}' in format '{f}': {e}"))?;
            civil
                .in_tz(zone)
                .map(|z| z.timestamp())
                .map_err(|e| format!("time zone '{zone}': {e}"))
        }
    }
}

/// E.164: `+` and digits. Separators are removed; `00` becomes `+`; a number
/// without either gets `+country` (a leading trunk `0` is dropped).
pub fn normalise_phone(s: &str, country: Option<&str>) -> Result<String, String> {
    let trimmed = s.trim();
    let plus = trimmed.starts_with('+');
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-().\u{a0}/".contains(c)))
    {
        return Err(format!("'{s}' is not a phone number"));
    }
    let e164 = if plus {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else if let Some(cc) = country {
        format!("+{cc}{}", digits.strip_prefix('0').unwrap_or(&digits))
    } else {
        return Err(format!(
            "'{s}' has no country code (set phone_country for this field)"
        ));
    };
    if !(8..=16).contains(&e164.len()) {
        return Err(format!("'{s}' does not have the length of a phone number"));
    }
    Ok(e164)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conversions_both_ways() {
        let date = Convert::Date {
            format: "%m/%d/%Y".into(),
        };
        let paris = Convert::Timestamp {
            format: Some("%Y-%m-%d %H:%M:%S".into()),
            zone: Some("Europe/Paris".into()),
        };
        let rfc = Convert::Timestamp {
            format: None,
            zone: None,
        };
        let cents = Convert::Decimal {
            repr: DecimalRepr::Minor,
            scale: Some(2),
        };
        let money = Convert::Decimal {
            repr: DecimalRepr::Text,
            scale: Some(2),
        };
        let float = Convert::Decimal {
            repr: DecimalRepr::Number,
            scale: None,
        };
        let phone = Convert::Phone {
            country: Some("1".into()),
        };
        // (transform, system value, canonical value): read gives canonical, write gives system back.
        let cases: Vec<(&Convert, Value, Value)> = vec![
            (&date, json!("01/31/2024"), json!("2024-01-31")),
            (&date, json!(null), json!(null)),
            (
                &paris,
                json!("2024-07-01 14:30:00"),
                json!("2024-07-01T12:30:00Z"),
            ),
            (
                &paris,
                json!("2024-01-15 09:00:00"),
                json!("2024-01-15T08:00:00Z"),
            ),
            (
                &rfc,
                json!("2024-07-01T12:30:00Z"),
                json!("2024-07-01T12:30:00Z"),
            ),
            (&cents, json!(1250), json!("12.50")),
            (&cents, json!(-5), json!("-0.05")),
            (&money, json!("12.50"), json!("12.50")),
            (&money, json!("0.10"), json!("0.10")),
            (&float, json!(19.99), json!("19.99")),
            (&float, json!(3), json!("3")),
            (&phone, json!("+15550100123"), json!("+15550100123")),
        ];
        for (c, system, canonical) in cases {
            assert_eq!(
                c.read(system.clone()).unwrap(),
                canonical,
                "{c:?} read {system}"
            );
            assert_eq!(
                c.write(canonical.clone()).unwrap(),
                system,
                "{c:?} write {canonical}"
            );
        }
    }

    #[test]
    fn normalising_reads() {
        let money = Convert::Decimal {
            repr: DecimalRepr::Text,
            scale: Some(2),
        };
        assert_eq!(money.read(json!("12.5")).unwrap(), json!("12.50"));
        assert_eq!(
            money.read(json!(12.005)).unwrap(),
            json!("12.00"),
            "banker's rounding of the half"
        );
        let phone = Convert::Phone {
            country: Some("33".into()),
        };
        assert_eq!(
            phone.read(json!("01 23 45 67 89")).unwrap(),
            json!("+33123456789")
        );
        assert_eq!(
            phone.read(json!("0033 1 23 45 67 89")).unwrap(),
            json!("+33123456789")
        );
        assert_eq!(
            phone.read(json!("+1 (555) 010-0123")).unwrap(),
            json!("+15550100123")
        );
        assert_eq!(
            apply_case(Some(Case::Lower), json!("Ada@Example.COM")),
            json!("ada@example.com")
        );
        assert_eq!(apply_case(Some(Case::Upper), json!("fr")), json!("FR"));
        assert_eq!(apply_case(Some(Case::Upper), json!(3)), json!(3));
    }

    #[test]
    fn bad_values_are_named() {
        let date = Convert::Date {
            format: "%m/%d/%Y".into(),
        };
        assert!(date
            .read(json!("2024-01-31"))
            .unwrap_err()
            .contains("'2024-01-31' is not a date in format '%m/%d/%Y'"));
        let cents = Convert::Decimal {
            repr: DecimalRepr::Minor,
            scale: Some(2),
        };
        assert_eq!(
            cents.write(json!("1.005")).unwrap(),
            json!(100),
            "rounded to the scale, half to even"
        );
        let unscaled = Convert::Decimal {
            repr: DecimalRepr::Minor,
            scale: None,
        };
        assert!(unscaled
            .write(json!("1.005"))
            .unwrap_err()
            .contains("more digits than scale 2"));
        assert!(cents
            .read(json!("abc"))
            .unwrap_err()
            .contains("'abc' is not a decimal"));
        assert!(normalise_phone("555-0100", None)
            .unwrap_err()
            .contains("no country code"));
        assert!(normalise_phone("call me", Some("1"))
            .unwrap_err()
            .contains("is not a phone number"));
    }
}
