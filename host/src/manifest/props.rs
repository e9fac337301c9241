//! Properties of the manifest parser and validator over mutated manifests:
//! whatever the text, it is accepted or refused with errors, never a panic,
//! and every error that names a line names one of the file's.
//! `tests/fuzz.sh` runs them for as long as it is given.

use super::*;
use proptest::prelude::*;

/// A manifest using most of what the validator checks.
const BASE: &str = r#"store = "weir.db"

[entities.contacts]
primary_key = "id"
conflict = "priority"
priority = ["crm", "shop"]
match_on = ["email"]
max_delete_percent = 10
max_changes_per_user = { count = 100, window_secs = 3600 }

[entities.contacts.fields]
email = { required = true, format = "email" }
age = { type = "integer", min = 0, max = 150 }
ssn = { sensitive = true }

[entities.orders]
primary_key = "id"
references = { contact_id = "contacts" }

[systems.crm]
connector = "connectors/weir_connector_sql.wasm"
config = { database = "crm" }
databases = { crm = "crm.db" }
allowed_hosts = ["api.example.com"]
publish_token = "${WEIR_PROPS_TOKEN}"
limits = { memory_mib = 64, call_timeout_secs = 5 }
give_up_after = "2h"
resync_after_failure = "30m"
poll_every = "5m"

[systems.crm.entities.contacts]
direction = "read"
rename = { fname = "first_name" }
ignore = ["updated_at"]
settings = { table = "people", updated_at = "updated_at" }
on_delete = "soft"
soft_delete_field = "deleted"

[systems.crm.entities.contacts.fields]
birthday = { from = "dob", type = "date", format = "%m/%d/%Y" }

[systems.shop]
connector = "connectors/weir_connector_csv.wasm"
config = { directory = "out" }
directories = { out = "out" }
deliver_between = "01:00-03:00"

[systems.shop.entities.contacts]
direction = "write"
key_field = "weir_key"
filter = "status == 'Active'"
"#;

/// One edit of the text.
#[derive(Debug, Clone)]
enum Edit {
    /// Removes `len` bytes at a position (a fraction of the length).
    Cut(f64, usize),
    /// Inserts text at a position.
    Put(f64, String),
    /// Repeats the line at a position.
    Twice(f64),
    /// Swaps the lines at two positions.
    Swap(f64, f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let bits = prop_oneof![
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("\n".to_string()),
        Just(".".to_string()),
        Just("${".to_string()),
        Just("[systems.x]\nconnector = \"\"\n".to_string()),
        Just("entities".to_string()),
        Just("direction = \"both\"".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("\u{0}".to_string()),
        Just("é".to_string()),
        "[a-z_]{1,8}",
        "[ -~]{0,12}",
    ];
    prop_oneof![
        (0.0..1.0f64, 0usize..40).prop_map(|(at, n)| Edit::Cut(at, n)),
        (0.0..1.0f64, bits).prop_map(|(at, s)| Edit::Put(at, s)),
        (0.0..1.0f64).prop_map(Edit::Twice),
        (0.0..1.0f64, 0.0..1.0f64).prop_map(|(a, b)| Edit::Swap(a, b)),
    ]
}

/// The byte position at fraction `at` of `text`, on a character boundary.
fn at(text: &str, at: f64) -> usize {
    let mut i = ((text.len() as f64) * at) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut text: String, edits: &[Edit]) -> String {
    for e in edits {
        match e {
            Edit::Cut(f, n) => {
                let start = at(&text, *f);
                let mut end = (start + n).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(start..end, "");
            }
            Edit::Put(f, s) => {
                let i = at(&text, *f);
                text.insert_str(i, s);
            }
            Edit::Twice(f) | Edit::Swap(f, _) => {
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = ((lines.len() as f64) * f) as usize % lines.len();
                match e {
                    Edit::Swap(_, g) => {
                        let j = ((lines.len() as f64) * g) as usize % lines.len();
                        lines.swap(i, j);
                    }
                    _ => lines.insert(i, lines[i].clone()),
                }
                text = lines.join("\n");
            }
        }
    }
    text
}

proptest! {

    #[test]
    fn mutated_manifests_are_refused_or_taken_never_a_panic(edits in prop::collection::vec(edit(), 1..6)) {
        let text = apply(BASE.to_string(), &edits);
        let lines = text.lines().count().max(1);
        if let Err(errors) = Manifest::parse(Path::new("weir.toml"), &text) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(!e.message.is_empty(), "an error without a message: {:?}", e);
                if let Some(line) = e.line {
                    prop_assert!(line >= 1 && line <= lines + 1, "line {} of {}: {}", line, lines, e);
                }
            }
        }
    }

    #[test]
    fn any_text_is_refused_or_taken_never_a_panic(text in "[ -~\n]{0,400}") {
        let _ = Manifest::parse(Path::new("weir.toml"), &text);
    }
}
