//! Mapping between a system's records and the canonical model, validation
//! of canonical records, and filters.
//!
//! *Architecture invariant:* this module is pure: no I/O, no async, no clock.
//! Everything that can be wrong in a mapping (a bad regex, template, filter or
//! format) is found when the manifest is loaded, by [`Mapping::new`] and
//! [`Rules`], not while syncing.

pub mod fields;
mod hash;
mod identity;
mod rules;

pub use fields::{Case, Convert, DecimalRepr};
pub use hash::hash;
pub use identity::{match_key, same_values};
pub use rules::{validate, Kind, Rules, Violation};

use serde_json::{Map, Value};

use std::collections::BTreeMap;

/// A record body: a JSON object.
pub type Record = Map<String, Value>;

/// The canonical field that holds fields without correspondence kept by
/// `unmapped = "extras"`, per system: `{"_extras": {"shop": {...}}}`.
pub const EXTRAS: &str = "_extras";

/// How one canonical field maps to one system.
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    /// The system's field, or a dotted path into nested objects (`address.city`).
    pub from: Option<String>,
    /// Type conversion.
    pub convert: Option<Convert>,
    /// Text case, applied both ways.
    pub case: Option<Case>,
    /// Value map: (canonical value, system value).
    pub values: Vec<(Value, Value)>,
    /// Used when the value is missing or null.
    pub default: Option<Value>,
    /// A template computing the system's value from the canonical record
    /// (written only; such a field is not read back).
    pub compute: Option<String>,
}

/// What happens to a system's fields that have no mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// They pass under their (renamed) name (the default).
    #[default]
    Keep,
    /// They are dropped.
    Drop,
    /// They are kept in the canonical record under `_extras.<system>` and given
    /// back to this system only.
    Extras,
}

/// A mapping problem with one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The canonical field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field '{}': {}", self.field, self.message)
    }
}

/// The compiled mapping of one entity in one system.
#[derive(Clone)]
pub struct Mapping {
    system: String,
    primary_key: String,
    rename: BTreeMap<String, String>,
    ignore: Vec<String>,
    fields: BTreeMap<String, FieldMap>,
    unmapped: Unmapped,
    sensitive: Vec<String>,
    templates: minijinja::Environment<'static>,
    filter: bool,
    shared_key: Option<String>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("system", &self.system)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The parts of a mapping, as the manifest declares them.
pub struct MappingSpec {
    /// The system.
    pub system: String,
    /// The system's primary-key field.
    pub primary_key: String,
    /// System field → canonical field.
    pub rename: BTreeMap<String, String>,
    /// System fields that are not synced.
    pub ignore: Vec<String>,
    /// Canonical field → its mapping.
    pub fields: BTreeMap<String, FieldMap>,
    /// Fields without correspondence.
    pub unmapped: Unmapped,
    /// Canonical fields that never leave their system.
    pub sensitive: Vec<String>,
    /// Only records for which this expression is true are written to the system.
    pub filter: Option<String>,
    /// Set when every system keys a record by the same value: the canonical
    /// field that carries the key (the entity's primary key).
    pub shared_key: Option<String>,
}

/// Where a mapping is wrong, for manifest errors.
#[derive(Debug)]
pub struct SpecError {
    /// The canonical field, or `filter`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Mapping {
    /// Compiles a mapping: templates and the filter are parsed here.
    pub fn new(spec: MappingSpec) -> Result<Mapping, SpecError> {
        let mut templates = minijinja::Environment::new();
        templates.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for (field, fm) in &spec.fields {
            if let Some(source) = &fm.compute {
                templates
                    .add_template_owned(format!("compute:{field}"), source.clone())
                    .map_err(|e| SpecError {
                        field: field.clone(),
                        message: format!("bad compute template: {e}"),
                    })?;
            }
        }
        if let Some(expr) = &spec.filter {
            templates.compile_expression(expr).map_err(|e| SpecError {
                field: "filter".into(),
                message: format!("bad filter expression: {e}"),
            })?;
            templates
                .add_template_owned("filter", format!("{{% if {expr} %}}1{{% endif %}}"))
                .map_err(|e| SpecError {
                    field: "filter".into(),
                    message: format!("bad filter expression: {e}"),
                })?;
        }
        Ok(Mapping {
            system: spec.system,
            primary_key: spec.primary_key,
            rename: spec.rename,
            ignore: spec.ignore,
            fields: spec.fields,
            unmapped: spec.unmapped,
            sensitive: spec.sensitive,
            filter: spec.filter.is_some(),
            templates,
            shared_key: spec.shared_key,
        })
    }

    /// A mapping with renames and ignored fields only.
    pub fn simple(
        system: &str,
        primary_key: &str,
        rename: BTreeMap<String, String>,
        ignore: Vec<String>,
    ) -> Mapping {
        Mapping::new(MappingSpec {
            system: system.into(),
            primary_key: primary_key.into(),
            rename,
            ignore,
            fields: BTreeMap::new(),
            unmapped: Unmapped::Keep,
            sensitive: Vec::new(),
            filter: None,
            shared_key: None,
        })
        .expect("a mapping without templates compiles")
    }

    /// The system field a canonical field comes from.
    fn source_of(&self, canonical: &str) -> String {
        if let Some(from) = self.fields.get(canonical).and_then(|f| f.from.clone()) {
            return from;
        }
        self.rename
            .iter()
            .find(|(_, c)| *c == canonical)
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| canonical.to_string())
    }

    /// Turns a system's record into the canonical record: the primary key and
    /// ignored fields are removed (identity lives in the id links), mapped
    /// fields are converted, the rest follows `unmapped`, and sensitive fields
    /// are dropped before anything else can see them.
    pub fn to_canonical(&self, mut record: Record) -> Result<Record, MapError> {
        let key = record.remove(&self.primary_key);
        for i in &self.ignore {
            record.remove(i);
        }
        let mut out = Record::new();
        for (canonical, fm) in &self.fields {
            let source = self.source_of(canonical);
            let raw = take_path(&mut record, &source);
            if fm.compute.is_some() || self.sensitive.contains(canonical) {
                continue;
            }
            let err = |message: String| MapError {
                field: canonical.clone(),
                message,
            };
            let mut v = raw.unwrap_or(Value::Null);
            if !fm.values.is_empty() && !v.is_null() {
                v = match fm.values.iter().find(|(_, sys)| loosely_equal(sys, &v)) {
                    Some((c, _)) => c.clone(),
                    None => {
                        return Err(err(format!(
                            "value {v} of system field '{source}' has no entry in `values`"
                        )))
                    }
                };
            }
            if let Some(c) = &fm.convert {
                v = c.read(v).map_err(err)?;
            }
            v = fields::apply_case(fm.case, v);
            if v.is_null() {
                if let Some(d) = &fm.default {
                    v = d.clone();
                }
            }
            out.insert(canonical.clone(), v);
        }
        let mut extras = Record::new();
        for (field, value) in record {
            // A dotted source path's container holds its other fields; what
            // is left of it once read (nothing, or not an object at all) is
            // no field of its own.
            let empty = value.as_object().is_none_or(|o| o.is_empty());
            if empty && self.is_path_root(&field) {
                continue;
            }
            let name = self
                .rename
                .get(&field)
                .cloned()
                .unwrap_or_else(|| field.clone());
            if self.fields.contains_key(&name) || self.sensitive.contains(&name) {
                continue;
            }
            match self.unmapped {
                _ if self.rename.contains_key(&field) => {
                    out.insert(name, value);
                }
                Unmapped::Keep => {
                    out.insert(name, value);
                }
                Unmapped::Drop => {}
                Unmapped::Extras => {
                    extras.insert(field, value);
                }
            }
        }
        if let (Some(field), Some(key)) = (&self.shared_key, key) {
            out.insert(field.clone(), key);
        }
        if !extras.is_empty() {
            let mut bag = Record::new();
            bag.insert(self.system.clone(), Value::Object(extras));
            out.insert(EXTRAS.into(), Value::Object(bag));
        }
        Ok(out)
    }

    /// Whether `field` holds the fields of a dotted source path (`address`
    /// for `address.city`).
    fn is_path_root(&self, field: &str) -> bool {
        self.fields.keys().any(|canonical| {
            self.source_of(canonical)
                .split_once('.')
                .is_some_and(|(root, _)| root == field)
        })
    }

    /// The key a record has in this system before it was ever written there,
    /// when keys are shared: the canonical key field as text.
    pub fn shared_key(&self, canonical: &Record) -> Option<String> {
        match canonical.get(self.shared_key.as_ref()?)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Turns a canonical record into the record to write to this system.
    pub fn from_canonical(&self, record: &Record) -> Result<Record, MapError> {
        let mut out = Record::new();
        for (field, value) in record {
            if field == EXTRAS || self.sensitive.contains(field) {
                continue;
            }
            if self.shared_key.as_ref() == Some(field) {
                out.insert(self.primary_key.clone(), value.clone());
                continue;
            }
            let Some(fm) = self.fields.get(field) else {
                let name = self
                    .rename
                    .iter()
                    .find(|(_, c)| *c == field)
                    .map(|(s, _)| s.clone())
                    .unwrap_or_else(|| field.clone());
                if name != self.primary_key
                    && !self.ignore.contains(&name)
                    && (self.unmapped == Unmapped::Keep || self.rename.contains_key(&name))
                {
                    out.insert(name, value.clone());
                }
                continue;
            };
            if fm.compute.is_some() {
                continue;
            }
            let err = |message: String| MapError {
                field: field.clone(),
                message,
            };
            let mut v = value.clone();
            if v.is_null() {
                if let Some(d) = &fm.default {
                    v = d.clone();
                }
            }
            v = fields::apply_case(fm.case, v);
            if let Some(c) = &fm.convert {
                v = c.write(v).map_err(err)?;
            }
            if !fm.values.is_empty() && !v.is_null() {
                v = match fm.values.iter().find(|(c, _)| loosely_equal(c, &v)) {
                    Some((_, sys)) => sys.clone(),
                    None => {
                        return Err(err(format!(
                            "value {v} has no entry in `values` for system '{}'",
                            self.system
                        )))
                    }
                };
            }
            put_path(&mut out, &self.source_of(field), v);
        }
        for (field, fm) in &self.fields {
            if fm.compute.is_some() {
                let t = self
                    .templates
                    .get_template(&format!("compute:{field}"))
                    .map_err(|e| MapError {
                        field: field.clone(),
                        message: e.to_string(),
                    })?;
                let text = t.render(record).map_err(|e| MapError {
                    field: field.clone(),
                    message: format!("compute: {e}"),
                })?;
                put_path(&mut out, &self.source_of(field), Value::String(text));
            } else if !record.contains_key(field) {
                if let Some(d) = &fm.default {
                    put_path(&mut out, &self.source_of(field), d.clone());
                }
            }
        }
        if let Some(Value::Object(mine)) = record.get(EXTRAS).and_then(|b| b.get(&self.system)) {
            merge(&mut out, mine);
        }
        Ok(out)
    }

    /// A system record's text without its sensitive fields, for dead letters;
    /// none when it is not a JSON object (it cannot be cleaned).
    pub fn redact(&self, text: &str) -> Option<String> {
        let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        for canonical in &self.sensitive {
            take_path(&mut record, &self.source_of(canonical));
            record.remove(canonical);
        }
        Some(Value::Object(record).to_string())
    }

    /// A record's text as a source offered it, for a dead letter: a JSON
    /// object without the sensitive fields; other text as it is where the
    /// system has no sensitive field, else none (it cannot be cut apart).
    pub fn redact_text(&self, text: &str) -> Option<String> {
        self.redact(text)
            .or_else(|| self.sensitive.is_empty().then(|| text.to_string()))
    }

    /// Whether a canonical record passes this system's filter (true without one).
    pub fn accepts(&self, record: &Record) -> Result<bool, MapError> {
        if !self.filter {
            return Ok(true);
        }
        let t = self
            .templates
            .get_template("filter")
            .map_err(|e| MapError {
                field: "filter".into(),
                message: e.to_string(),
            })?;
        t.render(record).map(|s| s == "1").map_err(|e| MapError {
            field: "filter".into(),
            message: e.to_string(),
        })
    }
}

/// The type of a field as a connector's schema declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// Text.
    Text,
    /// A whole number.
    Integer,
    /// A floating-point number.
    Number,
    /// An exact decimal.
    Decimal,
    /// True or false.
    Boolean,
    /// A date.
    Date,
    /// A point in time.
    Timestamp,
    /// Anything.
    Any,
}

/// A mapping that does not fit a system's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// Where in the system entity's manifest table: `["fields", F]` or `["rename", F]`.
    pub key: Vec<String>,
    /// What is wrong.
    pub message: String,
}

impl Mapping {
    /// Checks the mapping against the system's schema (field names and
    /// types, as its connector reports them): fields that do not exist and
    /// conversions that cannot apply. A schema with the primary key alone is
    /// open (a file not written yet) and not checked.
    pub fn check_schema(&self, schema: &[(String, SystemKind)]) -> Vec<SchemaProblem> {
        let mut problems = Vec::new();
        if schema.len() <= 1 {
            return problems;
        }
        let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
        let missing = |field: &str| {
            format!(
                "field '{field}' is not in the system's schema (it has: {})",
                names.join(", ")
            )
        };
        for (canonical, fm) in &self.fields {
            if fm.compute.is_some() && fm.from.is_none() && !names.contains(&canonical.as_str()) {
                problems.push(SchemaProblem {
                    key: vec!["fields".into(), canonical.clone()],
                    message: missing(canonical),
                });
                continue;
            }
            let source = self.source_of(canonical);
            let top = source.split('.').next().unwrap_or_default();
            let Some((_, kind)) = schema.iter().find(|(n, _)| n == top) else {
                if fm.from.is_some() || fm.convert.is_some() || fm.compute.is_some() {
                    problems.push(SchemaProblem {
                        key: vec!["fields".into(), canonical.clone()],
                        message: missing(top),
                    });
                }
                continue;
            };
            if source.contains('.') {
                continue;
            }
            let fits = match &fm.convert {
                None => true,
                Some(Convert::Date { .. } | Convert::Timestamp { .. }) => {
                    matches!(
                        kind,
                        SystemKind::Text
                            | SystemKind::Date
                            | SystemKind::Timestamp
                            | SystemKind::Any
                    )
                }
                Some(Convert::Decimal {
                    repr: DecimalRepr::Minor,
                    ..
                }) => matches!(kind, SystemKind::Integer | SystemKind::Any),
                Some(Convert::Decimal {
                    repr: DecimalRepr::Number,
                    ..
                }) => {
                    matches!(
                        kind,
                        SystemKind::Number
                            | SystemKind::Decimal
                            | SystemKind::Integer
                            | SystemKind::Any
                    )
                }
                Some(Convert::Decimal {
                    repr: DecimalRepr::Text,
                    ..
                }) => matches!(
                    kind,
                    SystemKind::Text | SystemKind::Decimal | SystemKind::Any
                ),
                Some(Convert::Phone { .. }) => matches!(kind, SystemKind::Text | SystemKind::Any),
            };
            if !fits {
                problems.push(SchemaProblem {
                    key: vec!["fields".into(), canonical.clone()],
                    message: format!(
                        "the conversion of '{canonical}' cannot apply to field '{top}' of type {}",
                        format!("{kind:?}").to_lowercase()
                    ),
                });
            }
        }
        for field in self.rename.keys() {
            if !names.contains(&field.as_str()) {
                problems.push(SchemaProblem {
                    key: vec!["rename".into(), field.clone()],
                    message: missing(field),
                });
            }
        }
        problems
    }
}

/// JSON equality that also matches `1` with `"1"` (value maps written in TOML
/// meet values read from CSV files and databases).
pub(super) fn loosely_equal(a: &Value, b: &Value) -> bool {
    a == b || id_text(a) == id_text(b)
}

/// Adds the fields of `extra` that `into` lacks, merging nested objects.
fn merge(into: &mut Record, extra: &Record) {
    for (k, v) in extra {
        match (into.get_mut(k), v) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, more),
            (Some(_), _) => {}
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Removes and returns the value at a dotted path.
fn take_path(record: &mut Record, path: &str) -> Option<Value> {
    if let Some(v) = record.remove(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match record.get_mut(head) {
        Some(Value::Object(inner)) => {
            let v = take_path(inner, rest);
            if inner.is_empty() {
                record.remove(head);
            }
            v
        }
        _ => None,
    }
}

/// Sets the value at a dotted path, creating objects on the way.
fn put_path(record: &mut Record, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            record.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = record
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Record::new()));
            if !entry.is_object() {
                *entry = Value::Object(Record::new());
            }
            if let Value::Object(inner) = entry {
                put_path(inner, rest, value);
            }
        }
    }
}

/// The text form of an id value: strings as they are, anything else as JSON.
pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn fm(f: impl FnOnce(&mut FieldMap)) -> FieldMap {
        let mut m = FieldMap::default();
        f(&mut m);
        m
    }

    /// System A: a CRM with camelCase names, US dates, cents and status codes.
    fn crm() -> Mapping {
        let fields = BTreeMap::from([
            (
                "first_name".to_string(),
                fm(|f| f.from = Some("firstName".into())),
            ),
            (
                "birthday".to_string(),
                fm(|f| {
                    f.from = Some("dob".into());
                    f.convert = Some(Convert::Date {
                        format: "%m/%d/%Y".into(),
                    });
                }),
            ),
            (
                "balance".to_string(),
                fm(|f| {
                    f.from = Some("balanceCents".into());
                    f.convert = Some(Convert::Decimal {
                        repr: DecimalRepr::Minor,
                        scale: Some(2),
                    });
                }),
            ),
            (
                "status".to_string(),
                fm(|f| f.values = vec![(json!("Active"), json!(1)), (json!("Inactive"), json!(0))]),
            ),
            ("email".to_string(), fm(|f| f.case = Some(Case::Lower))),
            (
                "city".to_string(),
                fm(|f| f.from = Some("address.city".into())),
            ),
            (
                "phone".to_string(),
                fm(|f| {
                    f.convert = Some(Convert::Phone {
                        country: Some("1".into()),
                    })
                }),
            ),
        ]);
        Mapping::new(MappingSpec {
            system: "crm".into(),
            primary_key: "id".into(),
            rename: BTreeMap::new(),
            ignore: vec!["updatedAt".into()],
            fields,
            unmapped: Unmapped::Extras,
            sensitive: vec!["ssn".into()],
            filter: None,
            shared_key: None,
        })
        .unwrap()
    }

    /// System B: a shop with snake_case names, ISO dates, decimal text, status words.
    fn shop() -> Mapping {
        let fields = BTreeMap::from([
            (
                "balance".to_string(),
                fm(|f| {
                    f.convert = Some(Convert::Decimal {
                        repr: DecimalRepr::Text,
                        scale: Some(2),
                    })
                }),
            ),
            ("country".to_string(), fm(|f| f.default = Some(json!("US")))),
            (
                "label".to_string(),
                fm(|f| f.compute = Some("{{ first_name }} ({{ city }})".into())),
            ),
        ]);
        Mapping::new(MappingSpec {
            system: "shop".into(),
            primary_key: "customer_id".into(),
            rename: BTreeMap::from([("fname".to_string(), "first_name".to_string())]),
            ignore: vec![],
            fields,
            unmapped: Unmapped::Keep,
            sensitive: vec!["ssn".into()],
            filter: Some("status == 'Active'".into()),
            shared_key: None,
        })
        .unwrap()
    }

    #[test]
    fn crm_to_canonical_to_shop_and_back_round_trips() {
        let a = rec(json!({
            "id": 7, "firstName": "Ada", "dob": "12/10/1815", "balanceCents": 1250, "status": 1,
            "email": "ada@example.com", "address": {"city": "London", "zip": "N1"}, "phone": "+44 20 7946 0958",
            "ssn": "123-45-6789", "updatedAt": "x", "favourite": "engines"
        }));
        let canonical = crm().to_canonical(a.clone()).unwrap();
        assert_eq!(
            Value::Object(canonical.clone()),
            json!({
                "first_name": "Ada", "birthday": "1815-12-10", "balance": "12.50", "status": "Active",
                "email": "ada@example.com", "city": "London", "phone": "+442079460958",
                "_extras": {"crm": {"address": {"zip": "N1"}, "favourite": "engines"}}
            })
        );
        let b = shop().from_canonical(&canonical).unwrap();
        assert_eq!(
            Value::Object(b.clone()),
            json!({
                "fname": "Ada", "balance": "12.50", "country": "US", "label": "Ada (London)",
                "birthday": "1815-12-10", "status": "Active", "email": "ada@example.com", "city": "London", "phone": "+442079460958"
            })
        );
        let mut from_b = shop().to_canonical(b).unwrap();
        from_b.insert(EXTRAS.into(), canonical[EXTRAS].clone());
        assert_eq!(
            from_b.remove("country"),
            Some(json!("US")),
            "the shop's default is part of its record"
        );
        assert_eq!(from_b, canonical, "A → canonical → B → canonical");
        let mut back = crm().from_canonical(&from_b).unwrap();
        let mut original = a;
        original.remove("id");
        original.remove("ssn");
        original.remove("updatedAt");
        // Normalised on the way in: the phone is E.164 now.
        original.insert("phone".into(), json!("+442079460958"));
        back.remove("_extras");
        assert_eq!(
            Value::Object(back),
            Value::Object(original),
            "… → A returns the original"
        );
    }

    #[test]
    fn sensitive_fields_never_reach_canonical_nor_leave() {
        let c = crm()
            .to_canonical(rec(json!({"id": 1, "firstName": "A", "ssn": "1"})))
            .unwrap();
        assert!(!c.contains_key("ssn"));
        let out = shop()
            .from_canonical(&rec(json!({"first_name": "A", "ssn": "leak"})))
            .unwrap();
        assert!(!out.contains_key("ssn"));
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = crm()
            .to_canonical(rec(json!({"id": 1, "status": 7})))
            .unwrap_err();
        assert_eq!(e.field, "status");
        assert!(
            e.message
                .contains("value 7 of system field 'status' has no entry in `values`"),
            "{e}"
        );
        let e = crm()
            .to_canonical(rec(json!({"id": 1, "dob": "1815-12-10"})))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("field 'birthday': '1815-12-10' is not a date in format '%m/%d/%Y': "),
            "{e}"
        );
    }

    #[test]
    fn unmapped_fields_can_be_dropped() {
        let m = Mapping::new(MappingSpec {
            system: "s".into(),
            primary_key: "id".into(),
            rename: BTreeMap::from([("nm".to_string(), "name".to_string())]),
            ignore: vec![],
            fields: BTreeMap::from([("age".to_string(), FieldMap::default())]),
            unmapped: Unmapped::Drop,
            sensitive: vec![],
            filter: None,
            shared_key: None,
        })
        .unwrap();
        let c = m
            .to_canonical(rec(json!({"id": 1, "nm": "A", "age": 3, "other": true})))
            .unwrap();
        assert_eq!(Value::Object(c), json!({"name": "A", "age": 3}));
        let out = m
            .from_canonical(&rec(json!({"name": "A", "age": 3, "other": true})))
            .unwrap();
        assert_eq!(Value::Object(out), json!({"nm": "A", "age": 3}));
    }

    #[test]
    fn filters_and_bad_specs() {
        let s = shop();
        assert!(s.accepts(&rec(json!({"status": "Active"}))).unwrap());
        assert!(!s.accepts(&rec(json!({"status": "Inactive"}))).unwrap());
        assert!(!s.accepts(&rec(json!({}))).unwrap());
        let bad = Mapping::new(MappingSpec {
            system: "x".into(),
            primary_key: "id".into(),
            rename: BTreeMap::new(),
            ignore: vec![],
            fields: BTreeMap::new(),
            unmapped: Unmapped::Keep,
            sensitive: vec![],
            filter: Some("status ==".into()),
            shared_key: None,
        });
        assert_eq!(bad.unwrap_err().field, "filter");
    }

    #[test]
    fn validation_table() {
        let rules = BTreeMap::from([
            (
                "email".to_string(),
                Rules {
                    required: true,
                    email: true,
                    ..Default::default()
                },
            ),
            (
                "age".to_string(),
                Rules {
                    kind: Some(Kind::Integer),
                    min: Some(Decimal::ZERO),
                    max: Some(Decimal::from(150)),
                    ..Default::default()
                },
            ),
            (
                "status".to_string(),
                Rules {
                    allowed: vec![json!("Active"), json!("Inactive")],
                    ..Default::default()
                },
            ),
            (
                "sku".to_string(),
                Rules {
                    pattern: Some(regex::Regex::new("^[A-Z]{3}-[0-9]+$").unwrap()),
                    ..Default::default()
                },
            ),
            (
                "since".to_string(),
                Rules {
                    kind: Some(Kind::Date),
                    ..Default::default()
                },
            ),
        ]);
        let ok = json!({"email": "a@b.co", "age": 30, "status": "Active", "sku": "ABC-1", "since": "2024-01-01"});
        assert_eq!(validate(&rules, &rec(ok)), Ok(()));
        let cases = [
            (json!({"age": 3}), "email", "required"),
            (json!({"email": "nope"}), "email", "format"),
            (json!({"email": "a@b.co", "age": -1}), "age", "min"),
            (json!({"email": "a@b.co", "age": 151}), "age", "max"),
            (json!({"email": "a@b.co", "age": "x"}), "age", "type"),
            (
                json!({"email": "a@b.co", "status": "Gone"}),
                "status",
                "enum",
            ),
            (json!({"email": "a@b.co", "sku": "abc-1"}), "sku", "pattern"),
            (
                json!({"email": "a@b.co", "since": "01/02/2024"}),
                "since",
                "type",
            ),
        ];
        for (record, field, rule) in cases {
            let v = validate(&rules, &rec(record.clone())).unwrap_err();
            assert_eq!((v.field.as_str(), v.rule), (field, rule), "{record}: {v}");
        }
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = rec(json!({"a": 1, "b": {"y": 1, "x": [1, 2]}}));
        let mut b = Record::new();
        b.insert("b".into(), json!({"x": [1, 2], "y": 1}));
        b.insert("a".into(), json!(1));
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(
            hash(&a),
            hash(&rec(json!({"a": 2, "b": {"y": 1, "x": [1, 2]}})))
        );
        assert_ne!(hash(&rec(json!({"a": "1"}))), hash(&rec(json!({"a": 1}))));
    }
}
