//! The `fields` tables of the manifest: canonical field rules per entity and
//! field mappings per system and entity, turned into [`crate::mapping`] values.

use crate::mapping::{self, Case, Convert, DecimalRepr, FieldMap, Kind, Rules};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;

/// `[entities.E.fields.F]`: the rules of a canonical field.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "type")]
    kind: Option<RawKind>,
    #[serde(default)]
    required: bool,
    format: Option<RawFormat>,
    pattern: Option<String>,
    #[serde(rename = "enum", default)]
    allowed: Vec<toml::Value>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    #[serde(default)]
    pub(super) sensitive: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    String,
    Integer,
    Decimal,
    Boolean,
    Date,
    Timestamp,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawFormat {
    Email,
}

/// A problem in a `fields` entry: the key under the field and what is wrong.
pub(super) struct FieldProblem {
    pub key: &'static str,
    pub message: String,
    pub hint: String,
}

fn problem(key: &'static str, message: impl Into<String>, hint: impl Into<String>) -> FieldProblem {
    FieldProblem {
        key,
        message: message.into(),
        hint: hint.into(),
    }
}

fn decimal(key: &'static str, v: &toml::Value) -> Result<Decimal, FieldProblem> {
    let text = match v {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::String(s) => s.clone(),
        other => {
            return Err(problem(
                key,
                format!("{other} is not a number"),
                "write a number, for example 0 or \"12.50\"",
            ))
        }
    };
    Decimal::from_str(&text).map_err(|e| {
        problem(
            key,
            format!("'{text}' is not a number: {e}"),
            "write a number, for example 0 or \"12.50\"",
        )
    })
}

/// A TOML value as JSON (value maps, defaults, enums).
pub(super) fn json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl RawRule {
    pub(super) fn build(&self) -> Result<Rules, FieldProblem> {
        let pattern = match &self.pattern {
            Some(p) => Some(regex::Regex::new(p).map_err(|e| {
                problem(
                    "pattern",
                    format!("bad regular expression: {e}"),
                    "correct the pattern (Rust regex syntax)",
                )
            })?),
            None => None,
        };
        Ok(Rules {
            kind: self.kind.map(|k| match k {
                RawKind::String => Kind::String,
                RawKind::Integer => Kind::Integer,
                RawKind::Decimal => Kind::Decimal,
                RawKind::Boolean => Kind::Boolean,
                RawKind::Date => Kind::Date,
                RawKind::Timestamp => Kind::Timestamp,
            }),
            required: self.required,
            email: matches!(self.format, Some(RawFormat::Email)),
            pattern,
            allowed: self.allowed.iter().map(json).collect(),
            min: self.min.as_ref().map(|v| decimal("min", v)).transpose()?,
            max: self.max.as_ref().map(|v| decimal("max", v)).transpose()?,
        })
    }
}

/// `[systems.S.entities.E.fields.F]`: how canonical field F maps to system S.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFieldMap {
    from: Option<String>,
    #[serde(rename = "type")]
    convert: Option<RawConvert>,
    format: Option<String>,
    zone: Option<String>,
    decimal: Option<RawDecimal>,
    scale: Option<u32>,
    phone_country: Option<String>,
    case: Option<RawCase>,
    #[serde(default)]
    values: toml::Table,
    default: Option<toml::Value>,
    compute: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum RawConvert {
    Date,
    Timestamp,
    Decimal,
    Phone,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawDecimal {
    Text,
    Number,
    Minor,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawCase {
    Lower,
    Upper,
}

impl RawFieldMap {
    pub(super) fn build(&self) -> Result<FieldMap, FieldProblem> {
        self.check_keys()?;
        if let Some(zone) = &self.zone {
            jiff::tz::TimeZone::get(zone).map_err(|e| {
                problem(
                    "zone",
                    format!("unknown time zone '{zone}': {e}"),
                    "use an IANA name such as \"Europe/Paris\"",
                )
            })?;
        }
        let convert = self.convert()?;
        if self.compute.is_some() && (self.convert.is_some() || !self.values.is_empty()) {
            return Err(problem(
                "compute",
                "a computed field takes no type and no values",
                "compute the final text in the template",
            ));
        }
        Ok(FieldMap {
            from: self.from.clone(),
            convert,
            case: self.case.map(|c| match c {
                RawCase::Lower => Case::Lower,
                RawCase::Upper => Case::Upper,
            }),
            values: self
                .values
                .iter()
                .map(|(k, v)| (serde_json::Value::String(k.clone()), json(v)))
                .collect(),
            default: self.default.as_ref().map(json),
            compute: self.compute.clone(),
        })
    }

    /// Refuses keys that apply only to another `type`.
    fn check_keys(&self) -> Result<(), FieldProblem> {
        let only = |key: &'static str,
                    present: bool,
                    kinds: &[RawConvert],
                    name: &str|
         -> Result<(), FieldProblem> {
            if present && !self.convert.is_some_and(|c| kinds.contains(&c)) {
                return Err(problem(
                    key,
                    format!("'{key}' applies only to type = \"{name}\""),
                    format!("set type = \"{name}\" or remove '{key}'"),
                ));
            }
            Ok(())
        };
        only(
            "format",
            self.format.is_some(),
            &[RawConvert::Date, RawConvert::Timestamp],
            "date\" or \"timestamp",
        )?;
        only(
            "zone",
            self.zone.is_some(),
            &[RawConvert::Timestamp],
            "timestamp",
        )?;
        only(
            "decimal",
            self.decimal.is_some(),
            &[RawConvert::Decimal],
            "decimal",
        )?;
        only(
            "scale",
            self.scale.is_some(),
            &[RawConvert::Decimal],
            "decimal",
        )?;
        only(
            "phone_country",
            self.phone_country.is_some(),
            &[RawConvert::Phone],
            "phone",
        )
    }

    /// The conversion `type` asks for, with its options.
    fn convert(&self) -> Result<Option<Convert>, FieldProblem> {
        Ok(match self.convert {
            None => None,
            Some(RawConvert::Date) => {
                let format = self.format.clone().ok_or_else(|| problem("format", "type = \"date\" needs a format", "add format = \"%m/%d/%Y\" (strftime syntax), the system's way of writing dates"))?;
                check_format(&format)?;
                Some(Convert::Date { format })
            }
            Some(RawConvert::Timestamp) => {
                if let Some(f) = &self.format {
                    check_format(f)?;
                }
                Some(Convert::Timestamp {
                    format: self.format.clone(),
                    zone: self.zone.clone(),
                })
            }
            Some(RawConvert::Decimal) => Some(Convert::Decimal {
                repr: match self.decimal.unwrap_or(RawDecimal::Text) {
                    RawDecimal::Text => DecimalRepr::Text,
                    RawDecimal::Number => DecimalRepr::Number,
                    RawDecimal::Minor => DecimalRepr::Minor,
                },
                scale: self.scale,
            }),
            Some(RawConvert::Phone) => Some(Convert::Phone {
                country: self.phone_country.clone(),
            }),
        })
    }
}

/// Checks a strftime format by formatting a fixed moment with it.
fn check_format(format: &str) -> Result<(), FieldProblem> {
    let probe = jiff::civil::date(2024, 1, 31).at(12, 30, 0, 0);
    jiff::fmt::strtime::format(format, probe)
        .map(|_| ())
        .map_err(|e| {
            problem(
                "format",
                format!("bad format '{format}': {e}"),
                "use strftime syntax, for example \"%m/%d/%Y\"",
            )
        })
}

/// `unmapped` of a system entity.
#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawUnmapped {
    #[default]
    Keep,
    Drop,
    Extras,
}

impl From<RawUnmapped> for mapping::Unmapped {
    fn from(u: RawUnmapped) -> Self {
        match u {
            RawUnmapped::Keep => mapping::Unmapped::Keep,
            RawUnmapped::Drop => mapping::Unmapped::Drop,
            RawUnmapped::Extras => mapping::Unmapped::Extras,
        }
    }
}
