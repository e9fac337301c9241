//! One record, one copy with a real Directus that weir only writes to and
//! that already holds some of the CRM's people: before creating a record
//! there, weir asks Directus (the rest connector's `find`, a Directus
//! filter) and links what it finds, whatever the case of its address.

use serde_json::json;
use weir_tests::*;

const WEIR: &str = env!("CARGO_BIN_EXE_weir-under-test");

#[test]
fn a_directus_collection_that_holds_people_already_gets_the_others_only() {
    let Some(cms) = Directus::start() else {
        return;
    };
    cms.create_collection("contacts");
    cms.create_item(
        "contacts",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    cms.create_item(
        "contacts",
        &json!({"name": "Alan", "email": "ALAN@example.com"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("people.db");
    create_table(&db, "people", "id", Key::Reused, "name TEXT, email TEXT");
    exec(
        &db,
        "INSERT INTO people (name, email) VALUES
            ('Ada', 'ada@example.com'), ('Alan', 'alan@example.com'),
            ('Grace', 'grace@example.com'), ('Edsger', 'edsger@example.com')",
    );
    let m = write_manifest(
        d,
        &format!(
            r#"
[entities.contacts]
primary_key = "id"
match_on = ["email"]

[systems.db]
connector = {sql}
config = {{ database = "db" }}
databases = {{ db = "people.db" }}
[systems.db.entities.contacts]
direction = "read"
ignore = ["updated_at"]
settings = {{ table = "people", updated_at = "updated_at" }}

[systems.cms]
connector = {rest}
allowed_hosts = ["127.0.0.1"]
allow_private_network = true
credentials = {{ admin = {{ header = "Authorization", value = "Bearer ${{WEIR_TEST_DIRECTUS_TOKEN}}" }} }}
[systems.cms.config]
base_url = "{url}"
credential = "admin"
page_param = "page"
limit_param = "limit"
envelope = "data"
item_envelope = "data"
missing_status = [403, 404]
[systems.cms.entities.contacts]
direction = "write"
ignore = ["date_created", "date_updated"]
[systems.cms.entities.contacts.settings]
path = "/items/contacts"
find = "filter[{{field}}][_icontains]={{value}}"
"#,
            rest = toml_path(&connector("rest")),
            sql = toml_path(&connector("sql")),
            url = cms.url(),
        ),
    );
    let envs = [("WEIR_TEST_DIRECTUS_TOKEN", cms.token())];
    let run = weir_env(WEIR, &m, &["sync"], &envs);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("contacts in cms: 2 found there and linked"),
        "{run:?}"
    );
    let mut held: Vec<String> = cms
        .items("contacts")
        .iter()
        .map(|c| c["email"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            "ada@example.com",
            "alan@example.com",
            "edsger@example.com",
            "grace@example.com"
        ]
    );
    let again = weir_env(WEIR, &m, &["sync"], &envs);
    let s = again
        .stdout
        .lines()
        .find_map(parse_summary)
        .expect("a summary");
    assert_eq!(s.written, 0, "{again:?}");
}
