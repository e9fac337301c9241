//! A system's `config` and its entities' `settings` against the JSON Schema
//! the connector describes, and the grant names the config gives against
//! the system's grants: problems named at the manifest key that holds them.
//!
//! The schema comes from untrusted code: it is compiled without any
//! retriever (a `$ref` outside the schema is an error, never a fetch), and a
//! schema that does not compile is logged and skipped rather than blocking
//! the system. Messages never echo a configured value (a config string may
//! be a secret); they name the key and what the schema wants.
//!
//! Conventions read from the schema (documented on `config-schema` in
//! `wit/connector.wit`):
//! - `$defs.settings`, when present, is the schema of every entity's
//!   `settings` table;
//! - a property with `"x-weir-grant": "databases" | "directories" |
//!   "credentials"` names a grant of that kind, which must exist.

use crate::manifest::System;
use serde_json::Value;

/// One problem: the manifest key (from `systems` on) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The manifest key.
    pub key: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Everything the described schema finds wrong with `system`'s config and settings.
pub fn problems(system: &System, schema_text: &str) -> Vec<ConfigProblem> {
    let schema: Value = match serde_json::from_str(schema_text) {
        Ok(s @ Value::Object(_)) => s,
        _ => {
            tracing::warn!(system = %system.name, "the connector's config schema is not a JSON object: config not checked");
            return Vec::new();
        }
    };
    let base = vec!["systems".to_string(), system.name.clone()];
    let mut found = Vec::new();
    let config_key = with(&base, &["config"]);
    found.extend(against(system, &schema, &system.config, &config_key));
    found.extend(grants(system, &schema, &system.config, &config_key));
    if let Some(settings) = settings_schema(&schema) {
        for e in &system.entities {
            let key = with(&base, &["entities", &e.name, "settings"]);
            found.extend(against(system, &settings, &e.settings, &key));
        }
    }
    found
}

/// The schema of entity settings, `$defs.settings`, standing alone with the
/// root's `$defs` beside it so that its references still resolve.
fn settings_schema(root: &Value) -> Option<Value> {
    let defs = root.get("$defs")?;
    let mut settings = defs.get("settings")?.clone();
    let obj = settings.as_object_mut()?;
    obj.insert("$defs".into(), defs.clone());
    if let Some(dialect) = root.get("$schema") {
        obj.insert("$schema".into(), dialect.clone());
    }
    Some(settings)
}

/// `instance` against `schema`; `key` is where the instance sits in the manifest.
fn against(
    system: &System,
    schema: &Value,
    instance: &Value,
    key: &[String],
) -> Vec<ConfigProblem> {
    let validator = match jsonschema::options().build(schema) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(system = %system.name, "the connector's config schema does not compile ({e}): not checked");
            return Vec::new();
        }
    };
    validator
        .iter_errors(instance)
        .map(|e| problem(schema, key, &e))
        .collect()
}

/// One validation error as a problem at its manifest key.
fn problem(schema: &Value, key: &[String], e: &jsonschema::ValidationError<'_>) -> ConfigProblem {
    use jsonschema::error::ValidationErrorKind as K;
    let mut at: Vec<String> = key.to_vec();
    at.extend(pointer_segments(e.instance_path().as_str()));
    let schema_path = e.schema_path().as_str();
    let parent = schema_path.rsplit_once('/').map_or("", |(p, _)| p);
    let (message, hint) = match e.kind() {
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let known = known_keys(schema, parent);
            if let Some(first) = unexpected.first() {
                at.push(first.clone());
            }
            (
                format!(
                    "unknown key{} {}",
                    plural(unexpected.len()),
                    quoted(unexpected)
                ),
                if known.is_empty() {
                    "remove it: the connector takes no keys here".to_string()
                } else {
                    format!(
                        "remove it or correct its spelling; the connector knows {}",
                        known.join(", ")
                    )
                },
            )
        }
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_string();
            let what = describe(schema, &format!("{parent}/properties/{name}"));
            at.push(name.clone());
            (format!("missing key '{name}'"), format!("add {name}{what}"))
        }
        K::MinLength { limit: 1 } => (
            "is empty".to_string(),
            format!("give a value{}", describe(schema, parent)),
        ),
        _ => {
            let keyword = e.kind().keyword();
            let wants = schema
                .pointer(schema_path)
                .map(|v| format!(" = {v}"))
                .unwrap_or_default();
            let what = describe(schema, parent);
            (
                format!("does not match what the connector takes: {keyword}{wants}"),
                format!("give a value that fits{what}"),
            )
        }
    };
    ConfigProblem {
        key: at,
        message,
        hint,
    }
}

/// The grant names the config gives, against the system's grants.
fn grants(system: &System, schema: &Value, instance: &Value, key: &[String]) -> Vec<ConfigProblem> {
    let mut found = Vec::new();
    let (Some(props), Some(values)) = (
        schema.get("properties").and_then(Value::as_object),
        instance.as_object(),
    ) else {
        return found;
    };
    for (name, prop) in props {
        let Some(value) = values.get(name) else {
            continue;
        };
        let here = with(key, &[name]);
        if let (Some(kind), Some(given)) = (
            prop.get("x-weir-grant").and_then(Value::as_str),
            value.as_str(),
        ) {
            let granted: Vec<&String> = match kind {
                "databases" => system.databases.keys().collect(),
                "directories" => system.directories.keys().collect(),
                "credentials" => system.credentials.keys().collect(),
                _ => continue,
            };
            if !granted.iter().any(|g| *g == given) {
                let list = if granted.is_empty() {
                    format!("it grants none: add [systems.{}.{kind}]", system.name)
                } else {
                    let names: Vec<&str> = granted.iter().map(|g| g.as_str()).collect();
                    format!(
                        "use one of {} or add the grant under `{kind}`",
                        names.join(", ")
                    )
                };
                found.push(ConfigProblem {
                    key: here,
                    message: format!(
                        "'{given}' names no {} granted to system '{}'",
                        singular(kind),
                        system.name
                    ),
                    hint: list,
                });
            }
        } else if prop.get("properties").is_some() {
            found.extend(grants(system, prop, value, &here));
        }
    }
    found
}

/// The decoded segments of a JSON pointer.
fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The property names a schema object at `pointer` lists.
fn known_keys(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(&format!("{pointer}/properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// `: DESCRIPTION` of the schema at `pointer`, if it has one.
fn describe(schema: &Value, pointer: &str) -> String {
    schema
        .pointer(&format!("{pointer}/description"))
        .and_then(Value::as_str)
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

fn with(key: &[String], more: &[&str]) -> Vec<String> {
    let mut k = key.to_vec();
    k.extend(more.iter().map(|s| s.to_string()));
    k
}

fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    q.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn singular(kind: &str) -> &str {
    match kind {
        "databases" => "database",
        "directories" => "directory",
        _ => "credential",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    const SCHEMA: &str = r##"{
      "type": "object",
      "properties": {
        "database": {"type": "string", "x-weir-grant": "databases", "description": "a granted database"},
        "page_size": {"type": "integer", "minimum": 1},
        "hook": {"type": "object", "properties": {"secret": {"type": "string", "minLength": 8}}, "additionalProperties": false}
      },
      "required": ["database"],
      "additionalProperties": false,
      "$defs": {
        "name": {"type": "string", "minLength": 1},
        "settings": {"type": "object", "properties": {"table": {"$ref": "#/$defs/name"}}, "additionalProperties": false}
      }
    }"##;

    /// The problems of system `crm` with this config and settings.
    fn problems_of(config: &str, settings: &str) -> Vec<ConfigProblem> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.wasm"), b"").unwrap();
        std::fs::write(dir.path().join("crm.db"), b"").unwrap();
        let text = format!(
            "[entities.contacts]\nprimary_key = \"id\"\n\n[systems.crm]\nconnector = \"c.wasm\"\nconfig = {config}\ndatabases = {{ crm = \"crm.db\" }}\n\n[systems.crm.entities.contacts]\nsettings = {settings}\n"
        );
        let m = Manifest::parse(&dir.path().join("weir.toml"), &text).unwrap();
        problems(&m.systems[0], SCHEMA)
    }

    /// The keys of the problems, sorted, and the problems in that order.
    fn keys(found: &mut [ConfigProblem]) -> Vec<String> {
        found.sort_by_key(|p| p.key.join("."));
        found.iter().map(|p| p.key.join(".")).collect()
    }

    #[test]
    fn a_fitting_config_has_no_problem() {
        assert_eq!(
            problems_of(
                r#"{ database = "crm", page_size = 5 }"#,
                r#"{ table = "people" }"#
            ),
            []
        );
    }

    #[test]
    fn unknown_keys_are_named_with_what_is_known() {
        let mut found = problems_of(
            r#"{ database = "crm", pagesize = 5, hook = { secrt = "x" } }"#,
            "{}",
        );
        assert_eq!(
            keys(&mut found),
            [
                "systems.crm.config.hook.secrt",
                "systems.crm.config.pagesize"
            ],
            "{found:?}"
        );
        assert_eq!(found[1].message, "unknown key 'pagesize'");
        assert!(
            found[1].hint.contains("database, hook, page_size"),
            "{}",
            found[1].hint
        );
    }

    #[test]
    fn missing_and_wrong_values_say_what_the_schema_wants_without_the_value() {
        let mut found = problems_of(r#"{ page_size = 0, hook = { secret = "hunter2" } }"#, "{}");
        assert_eq!(
            keys(&mut found),
            [
                "systems.crm.config.database",
                "systems.crm.config.hook.secret",
                "systems.crm.config.page_size"
            ],
            "{found:?}"
        );
        assert_eq!(found[0].message, "missing key 'database'");
        assert!(
            found[0].hint.contains("a granted database"),
            "{}",
            found[0].hint
        );
        assert!(
            found[1].message.ends_with("minLength = 8"),
            "{}",
            found[1].message
        );
        assert!(
            found[2].message.ends_with("minimum = 1"),
            "{}",
            found[2].message
        );
        let all = format!("{found:?}");
        assert!(
            !all.contains("hunter2"),
            "a configured value is never echoed: {all}"
        );
    }

    #[test]
    fn a_grant_name_that_matches_nothing_is_named() {
        let mut found = problems_of(r#"{ database = "crmx" }"#, "{}");
        assert_eq!(keys(&mut found), ["systems.crm.config.database"]);
        assert_eq!(
            found[0].message,
            "'crmx' names no database granted to system 'crm'"
        );
        assert!(
            found[0].hint.contains("use one of crm"),
            "{}",
            found[0].hint
        );
    }

    #[test]
    fn settings_are_checked_against_defs_settings_with_its_references() {
        let mut found = problems_of(
            r#"{ database = "crm" }"#,
            r#"{ tabel = "people", table = "" }"#,
        );
        assert_eq!(
            keys(&mut found),
            [
                "systems.crm.entities.contacts.settings.tabel",
                "systems.crm.entities.contacts.settings.table"
            ],
            "{found:?}"
        );
        assert_eq!(found[1].message, "is empty");
    }

    #[test]
    fn a_schema_that_does_not_compile_or_reaches_out_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.wasm"), b"").unwrap();
        let text = "[entities.contacts]\nprimary_key = \"id\"\n[systems.crm]\nconnector = \"c.wasm\"\nconfig = { x = 1 }\n[systems.crm.entities.contacts]\n";
        let m = Manifest::parse(&dir.path().join("weir.toml"), text).unwrap();
        for schema in [
            "not json",
            r#"{"type": 7}"#,
            r#"{"$ref": "https://example.com/schema.json"}"#,
            r#"{"$ref": "file:///etc/passwd"}"#,
        ] {
            assert_eq!(problems(&m.systems[0], schema), [], "{schema}");
        }
    }
}
