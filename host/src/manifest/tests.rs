use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestErrors> {
    Manifest::parse(Path::new("weir.toml"), text)
}

fn first_error(text: &str) -> ManifestError {
    parse(text)
        .expect_err("manifest should be rejected")
        .0
        .remove(0)
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = first_error("[entities.contacts]\nprimary_key = \"id\"\nprimery = 1\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("unknown field `primery`"), "{e}");
    assert!(e.to_string().contains("to fix:"), "{e}");
}

#[test]
fn malformed_toml_names_line() {
    let e = first_error("[entities.contacts]\nprimary_key = \"id\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn missing_connector_and_primary_key_are_both_reported() {
    let errs = parse(
        "[entities.contacts]\n\n[systems.a]\nconnector = \"nope.wasm\"\n[systems.a.entities.contacts]\ndirection = \"read\"\n",
    )
    .unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 2, "{text}");
    assert!(
        text.contains("weir.toml:4: systems.a.connector: connector file 'nope.wasm' not found"),
        "{text}"
    );
    assert!(text.contains("has no primary key for system 'a'"), "{text}");
    assert_eq!(errs.0[1].line, Some(5), "{text}");
}

#[test]
fn unset_secret_is_named_without_value() {
    let e = first_error(
        "[entities.contacts]\nprimary_key = \"id\"\n[systems.a]\nconnector = \"Cargo.toml\"\nconfig = { token = \"${WEIR_TEST_UNSET_VARIABLE}\" }\n",
    );
    assert_eq!(e.key, "systems.a.config.token");
    assert_eq!(e.line, Some(5));
    assert!(
        e.message.contains("'WEIR_TEST_UNSET_VARIABLE' is not set"),
        "{e}"
    );
}

#[test]
fn valid_manifest_keeps_entity_order_and_defaults() {
    let m = parse(
        "[entities.contacts]\nprimary_key = \"id\"\n[entities.orders]\nprimary_key = \"order_id\"\n\
         [systems.a]\nconnector = \"Cargo.toml\"\n[systems.a.entities.orders]\n[systems.a.entities.contacts]\ndirection = \"read\"\nrename = { fname = \"first_name\" }\n",
    )
    .unwrap();
    assert_eq!(
        m.entities
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["contacts", "orders"]
    );
    let a = m.system("a").unwrap();
    assert_eq!(a.entities[0].name, "contacts");
    assert_eq!(a.entities[0].direction, Direction::Read);
    assert_eq!(a.entities[1].primary_key, "order_id");
    assert_eq!(a.entities[1].direction, Direction::Both);
    assert_eq!(a.limits.memory_bytes, 256 << 20);
    assert!(m.store.ends_with("weir.db"));
}

#[test]
fn delivery_windows() {
    let night = Window::parse("22:30-02:00").unwrap();
    assert!(
        night.contains(23 * 60)
            && night.contains(60)
            && !night.contains(2 * 60)
            && !night.contains(12 * 60)
    );
    let day = Window::parse("02:00-04:00").unwrap();
    assert!(day.contains(2 * 60) && day.contains(3 * 60 + 59) && !day.contains(4 * 60));
    assert!(Window::parse("2-4")
        .unwrap_err()
        .contains("'2' is not HH:MM"));
    assert!(Window::parse("24:00-01:00")
        .unwrap_err()
        .contains("not a time of day"));
    assert!(Window::parse("01:00-01:00")
        .unwrap_err()
        .contains("empty window"));
}

#[test]
fn postgres_grants_are_checked_and_keep_their_password_out_of_sight() {
    let system = |grant: &str| {
        format!(
            "[entities.contacts]\nprimary_key = \"id\"\n[systems.a]\nconnector = \"Cargo.toml\"\n[systems.a.databases]\nmain = {grant}\n"
        )
    };
    // A wrong key of the table form is named, not "did not match any variant".
    let e = first_error(&system(r#"{ url = "postgres://w@db/crm", pasword = "x" }"#));
    assert!(e.message.contains("unknown field `pasword`"), "{e}");
    assert_eq!(e.line, Some(6), "{e}");
    let e = first_error(&system(r#"{ url = "postgres://w@db/crm", tls = "maybe" }"#));
    assert!(e.message.contains("'maybe' is not a TLS mode"), "{e}");
    let e = first_error(&system(r#""postgres://w@db""#));
    assert!(e.message.contains("names no database"), "{e}");
    let e = first_error(&system(r#"{ url = "crm.db", pool_size = 2 }"#));
    assert!(e.message.contains("not a postgres:// URL"), "{e}");
    // A connection string of another form is refused, never taken for a file
    // path (which would be logged), and not echoed.
    let e = first_error(&system(r#""POSTGRES://u:hidden-pw@db/crm""#));
    assert!(e.message.contains("not a postgres:// URL"), "{e}");
    assert!(!e.to_string().contains("hidden-pw"), "{e}");

    std::env::set_var("WEIR_TEST_PG_SECRET", "s3cret-pw");
    let m = parse(&system(
        r#"{ url = "postgres://weir@db.example.com:6543/crm?sslmode=require", password = "${WEIR_TEST_PG_SECRET}", pool_size = 2 }"#,
    ))
    .unwrap();
    let Database::Postgres(grant) = &m.systems[0].databases["main"] else {
        panic!("a PostgreSQL grant");
    };
    assert_eq!(grant.config.get_password(), Some(&b"s3cret-pw"[..]));
    assert_eq!(grant.config.get_dbname(), Some("crm"));
    assert_eq!(grant.tls, PgTls::Require);
    assert_eq!(grant.pool_size, 2);
    assert!(
        !format!("{m:?}").contains("s3cret-pw"),
        "the password is redacted"
    );
    // A path (prefix `sqlite:` optional) stays an SQLite grant; this one
    // need not exist, as weir may create it.
    let m = parse(&system(r#"{ path = "sqlite:data/crm.db", create = true }"#)).unwrap();
    assert!(
        matches!(&m.systems[0].databases["main"], Database::Sqlite { path, create: true } if path.ends_with("data/crm.db") && !path.to_string_lossy().contains("sqlite:"))
    );
}

#[test]
fn a_key_without_a_value_at_the_end_is_named() {
    let errors = parse("store = \"weir.db\"\nfilter = ").unwrap_err();
    let e = &errors.0[0];
    assert!(!e.message.is_empty(), "{e:?}");
    assert_eq!(e.line, Some(2), "{e}");
}
