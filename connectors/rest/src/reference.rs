//! The settings reference page (`SETTINGS.md`), generated from the schema
//! the connector describes and checks (`schema.json`), so that the page
//! and the code cannot disagree. `cargo test` fails when the page is out of
//! date; `WEIR_BLESS=1 cargo test` rewrites it.

use serde_json::Value;
use std::fmt::Write;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/SETTINGS.md");

/// The page for `schema`.
fn render(schema: &Value) -> String {
    let mut out = String::from(
        "# The `rest` connector: settings reference\n\n\
         Generated from `src/schema.json`, the schema the connector describes and\n\
         weir checks every manifest against (`weir check`); do not edit by hand:\n\
         `WEIR_BLESS=1 cargo test -p weir-connector-rest` rewrites it. How the\n\
         connector behaves is described in `src/lib.rs`; complete manifest blocks\n\
         for real systems are in `RECIPES.md`.\n",
    );
    section(
        &mut out,
        "System `config`",
        "The `config` table of a `[systems.NAME]` block.",
        schema,
    );
    let defs = &schema["$defs"];
    section(
        &mut out,
        "Entity `settings`",
        "The `settings` table of a `[systems.NAME.entities.ENTITY]` block.",
        &defs["settings"],
    );
    section(
        &mut out,
        "Operation tables",
        "The tables of the entity settings `get`, `create`, `update` and `delete`: how one record is read, created, updated and deleted. Defaults: `GET {path}/{id}`, `POST {path}`, `PATCH {path}/{id}` (or `update_method`), `DELETE {path}/{id}`.",
        &defs["operation"],
    );
    out
}

/// A section: a table of the keys of `object` (nested tables as
/// `parent.key`).
fn section(out: &mut String, title: &str, intro: &str, object: &Value) {
    let _ = write!(
        out,
        "\n## {title}\n\n{intro}\n\n| key | type | default | what it is |\n|---|---|---|---|\n"
    );
    rows(out, "", object);
}

fn rows(out: &mut String, prefix: &str, object: &Value) {
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = object["properties"].as_object() else {
        return;
    };
    for (key, prop) in props {
        let default = match prop.get("default") {
            Some(v) => format!("`{v}`"),
            None if required.contains(&key.as_str()) => "required".to_string(),
            None => "none".to_string(),
        };
        let description = prop["description"].as_str().unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{prefix}{key}` | {} | {} | {} |",
            cell(&type_of(prop)),
            cell(&default),
            cell(description)
        );
        if prop["properties"].is_object() {
            rows(out, &format!("{prefix}{key}."), prop);
        }
    }
}

/// A table cell: pipes escaped, on one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A key's type in words.
fn type_of(prop: &Value) -> String {
    if let Some(values) = prop["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return values.join(" or ");
    }
    if prop.get("$ref").is_some() {
        return "operation table".into();
    }
    let one = |t: &str| match t {
        "array" => format!("array of {}", type_of(&prop["items"])),
        "object" if prop["additionalProperties"].is_object() => {
            format!("table of {}", type_of(&prop["additionalProperties"]))
        }
        "object" => "table".into(),
        "integer" => match (prop["minimum"].as_i64(), prop["maximum"].as_i64()) {
            (Some(lo), Some(hi)) => format!("integer, {lo} to {hi}"),
            (Some(lo), None) => format!("integer, {lo} or more"),
            _ => "integer".into(),
        },
        other => other.to_string(),
    };
    match &prop["type"] {
        Value::String(t) => one(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

#[test]
fn every_key_is_described_and_the_page_is_up_to_date() {
    let schema: Value = serde_json::from_str(crate::config::CONFIG_SCHEMA).unwrap();
    let page = render(&schema);
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        assert!(
            !line.ends_with("|  |"),
            "a key without a description: {line}"
        );
    }
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(PAGE, &page).unwrap();
    }
    let held = std::fs::read_to_string(PAGE).unwrap_or_default();
    assert!(
        held == page,
        "SETTINGS.md is not what src/schema.json says; run `WEIR_BLESS=1 cargo test -p weir-connector-rest` and commit the page"
    );
}
