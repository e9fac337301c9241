//! Properties of the mapping's conversions over arbitrary records: a
//! system's record is mapped or refused with a reason, never a panic, the
//! same way every time, and a canonical record written and read back keeps
//! its values. `tests/fuzz.sh` runs them for as long as it is given.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn field(f: impl FnOnce(&mut FieldMap)) -> FieldMap {
    let mut m = FieldMap::default();
    f(&mut m);
    m
}

/// A mapping with one field of each conversion.
fn mapping() -> Mapping {
    let fields = BTreeMap::from([
        (
            "name".to_string(),
            field(|f| f.from = Some("fullName".into())),
        ),
        (
            "born".to_string(),
            field(|f| {
                f.convert = Some(Convert::Date {
                    format: "%m/%d/%Y".into(),
                })
            }),
        ),
        (
            "seen".to_string(),
            field(|f| {
                f.convert = Some(Convert::Timestamp {
                    format: Some("%Y-%m-%d %H:%M:%S".into()),
                    zone: Some("Europe/Paris".into()),
                })
            }),
        ),
        (
            "cents".to_string(),
            field(|f| {
                f.convert = Some(Convert::Decimal {
                    repr: DecimalRepr::Minor,
                    scale: Some(2),
                })
            }),
        ),
        (
            "price".to_string(),
            field(|f| {
                f.convert = Some(Convert::Decimal {
                    repr: DecimalRepr::Text,
                    scale: Some(2),
                })
            }),
        ),
        (
            "phone".to_string(),
            field(|f| {
                f.convert = Some(Convert::Phone {
                    country: Some("33".into()),
                })
            }),
        ),
        (
            "status".to_string(),
            field(|f| f.values = vec![(json!("Active"), json!(1)), (json!("Gone"), json!(0))]),
        ),
        ("email".to_string(), field(|f| f.case = Some(Case::Lower))),
        (
            "city".to_string(),
            field(|f| f.from = Some("address.city".into())),
        ),
        (
            "country".to_string(),
            field(|f| f.default = Some(json!("FR"))),
        ),
    ]);
    Mapping::new(MappingSpec {
        system: "s".into(),
        primary_key: "id".into(),
        rename: BTreeMap::new(),
        ignore: vec!["updatedAt".into()],
        fields,
        unmapped: Unmapped::Keep,
        sensitive: vec!["secret".into()],
        filter: None,
        shared_key: None,
    })
    .expect("a valid mapping")
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("12/31/1999"),
            Just("02/30/2020"),
            Just("2024-03-31 02:30:00"),
            Just("12.345"),
            Just("-0.5"),
            Just("1e400"),
            Just("+33 1 23 45 67 89"),
            Just("0612345678"),
            Just("Active"),
            Just("ADA@EXAMPLE.COM"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A system record: the mapping's own fields, and others, with any values.
fn record() -> impl Strategy<Value = Record> {
    let names = prop_oneof![
        Just("id"),
        Just("fullName"),
        Just("born"),
        Just("seen"),
        Just("cents"),
        Just("price"),
        Just("phone"),
        Just("status"),
        Just("email"),
        Just("address"),
        Just("country"),
        Just("secret"),
        Just("updatedAt"),
        Just("other"),
    ];
    prop::collection::btree_map(names, value(), 0..10)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {

    #[test]
    fn any_record_is_mapped_or_refused_the_same_way_every_time(r in record()) {
        let m = mapping();
        let first = m.to_canonical(r.clone());
        let again = m.to_canonical(r);
        prop_assert_eq!(format!("{first:?}"), format!("{again:?}"));
        if let Ok(canonical) = first {
            prop_assert!(!canonical.contains_key("secret"), "a sensitive field is kept");
            // Written back, and read again: the same canonical values.
            if let Ok(written) = m.from_canonical(&canonical) {
                if let Ok(read) = m.to_canonical(written) {
                    prop_assert_eq!(read, canonical);
                }
            }
        }
    }
}
