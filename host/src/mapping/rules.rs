//! Validation of canonical records against an entity's rules.

use super::{id_text, loosely_equal, Record};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The canonical type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// An exact decimal, as text.
    Decimal,
    /// True or false.
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339.
    Timestamp,
}

/// The rules of one canonical field, checked before every write.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The type.
    pub kind: Option<Kind>,
    /// Must be present and not null.
    pub required: bool,
    /// Must look like an e-mail address.
    pub email: bool,
    /// Must match this regular expression.
    pub pattern: Option<regex::Regex>,
    /// Must be one of these.
    pub allowed: Vec<Value>,
    /// Lower bound.
    pub min: Option<Decimal>,
    /// Upper bound.
    pub max: Option<Decimal>,
}

/// A rule a record breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The canonical field.
    pub field: String,
    /// The rule (`required`, `type`, `format`, `pattern`, `enum`, `min`, `max`).
    pub rule: &'static str,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "field '{}' breaks rule '{}': {}",
            self.field, self.rule, self.message
        )
    }
}

/// Checks a canonical record against the rules of its entity.
pub fn validate(rules: &BTreeMap<String, Rules>, record: &Record) -> Result<(), Violation> {
    for (field, r) in rules {
        let v = record.get(field).unwrap_or(&Value::Null);
        let fail = |rule: &'static str, message: String| {
            Err(Violation {
                field: field.clone(),
                rule,
                message,
            })
        };
        if v.is_null() {
            if r.required {
                return fail("required", "the value is missing".into());
            }
            continue;
        }
        if let Some(kind) = r.kind {
            let ok = match kind {
                Kind::String => v.is_string(),
                Kind::Integer => v.is_i64() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
                Kind::Decimal => {
                    v.is_number() || v.as_str().is_some_and(|s| Decimal::from_str(s).is_ok())
                }
                Kind::Boolean => v.is_boolean(),
                Kind::Date => v
                    .as_str()
                    .is_some_and(|s| s.parse::<jiff::civil::Date>().is_ok()),
                Kind::Timestamp => v
                    .as_str()
                    .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
            };
            if !ok {
                return fail(
                    "type",
                    format!("{v} is not of type {}", format!("{kind:?}").to_lowercase()),
                );
            }
        }
        let text = id_text(v);
        if r.email && !is_email(&text) {
            return fail("format", format!("'{text}' is not an e-mail address"));
        }
        if let Some(p) = &r.pattern {
            if !p.is_match(&text) {
                return fail("pattern", format!("'{text}' does not match /{p}/"));
            }
        }
        if !r.allowed.is_empty() && !r.allowed.iter().any(|a| loosely_equal(a, v)) {
            let list: Vec<String> = r.allowed.iter().map(Value::to_string).collect();
            return fail("enum", format!("{v} is not one of {}", list.join(", ")));
        }
        if r.min.is_some() || r.max.is_some() {
            let Ok(n) = Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text))
            else {
                return fail("type", format!("{v} is not a number"));
            };
            if let Some(min) = r.min.filter(|m| n < *m) {
                return fail("min", format!("{n} is below {min}"));
            }
            if let Some(max) = r.max.filter(|m| n > *m) {
                return fail("max", format!("{n} is above {max}"));
            }
        }
    }
    Ok(())
}

/// A pragmatic e-mail check: one `@`, a non-empty local part, a dotted domain, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|p| !p.is_empty())
}
