//! Manifests for the tests, built from the blocks they share: entities,
//! systems through each connector, and the systems of the generated CRM and
//! shop databases. A test writes only what makes its case.

use crate::{connector, toml_path};
use std::fmt;
use std::path::{Path, PathBuf};

/// Writes a manifest file into `dir` and returns its path.
pub fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The `[entities.NAME]` table: `primary_key = "KEY"`, then `lines`.
pub fn entity(name: &str, key: &str, lines: &[&str]) -> String {
    let mut text = format!("\n[entities.{name}]\nprimary_key = \"{key}\"\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// One `[systems.NAME]` table and the tables of its entities, built up key
/// by key; its `Display` is the manifest text.
#[derive(Clone, Debug)]
pub struct System {
    name: String,
    head: String,
    entities: String,
}

impl System {
    /// System `name` through the connector `connector` (`sql`, `csv`,
    /// `hostile`...), with `config` (the body of an inline table).
    pub fn new(name: &str, connector_name: &str, config: &str) -> System {
        System {
            name: name.to_string(),
            head: format!(
                "\n[systems.{name}]\nconnector = {}\nconfig = {{ {config} }}\n",
                toml_path(&connector(connector_name))
            ),
            entities: String::new(),
        }
    }

    /// The `sql` connector on the SQLite file `file` (beside the manifest),
    /// granted as `grant`.
    pub fn sqlite(name: &str, grant: &str, file: &str) -> System {
        System::sql(name, grant, &format!("\"{file}\""))
    }

    /// The `sql` connector on the database grant `grant` = `value` (a TOML
    /// value: a file's or a URL's string, or an inline table).
    pub fn sql(name: &str, grant: &str, value: &str) -> System {
        System::new(name, "sql", &format!("database = \"{grant}\""))
            .line(&format!("databases = {{ {grant} = {value} }}"))
    }

    /// The `csv` connector on the folder `folder` (beside the manifest),
    /// granted as `grant`.
    pub fn csv(name: &str, grant: &str, folder: &str) -> System {
        System::new(name, "csv", &format!("directory = \"{grant}\""))
            .line(&format!("directories = {{ {grant} = \"{folder}\" }}"))
    }

    /// The `rest` connector on the API at `base_url` on 127.0.0.1 (a test
    /// server: the private address allowed).
    pub fn rest(name: &str, base_url: &str) -> System {
        System::new(name, "rest", &format!("base_url = \"{base_url}\""))
            .line(r#"allowed_hosts = ["127.0.0.1"]"#)
            .line("allow_private_network = true")
    }

    /// A key of the system's own table (`publish_token = ...`, `limits = ...`).
    pub fn line(mut self, line: &str) -> System {
        self.head.push_str(line);
        self.head.push('\n');
        self
    }

    /// The table of entity `entity` of an `sql` system: `direction`,
    /// `lines`, and the settings of `table`, whose changes are read by its
    /// `updated_at` column (itself not synced).
    pub fn tracked(self, entity: &str, table: &str, direction: &str, lines: &[&str]) -> System {
        let mut all = vec![format!("direction = \"{direction}\"")];
        all.extend(lines.iter().map(|l| l.to_string()));
        all.push(IGNORE_UPDATED_AT.to_string());
        all.push(tracked_table(table));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.entity(entity, &all)
    }

    /// The `fields` table of entity `entity` in this system (how it holds
    /// each canonical field), holding `lines`.
    pub fn fields(mut self, entity: &str, lines: &[&str]) -> System {
        self.entities.push_str(&format!(
            "[systems.{}.entities.{entity}.fields]\n",
            self.name
        ));
        for line in lines {
            self.entities.push_str(line);
            self.entities.push('\n');
        }
        self
    }

    /// The system's table of entity `entity`, holding `lines`.
    pub fn entity(mut self, entity: &str, lines: &[&str]) -> System {
        self.entities
            .push_str(&format!("[systems.{}.entities.{entity}]\n", self.name));
        for line in lines {
            self.entities.push_str(line);
            self.entities.push('\n');
        }
        self
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.head, self.entities)
    }
}

/// The manifest block of the `rest` connector's recipe `name` (the TOML
/// after `<!-- recipe: NAME -->` in `connectors/rest/RECIPES.md`), for the
/// system at `base_url` on 127.0.0.1: the recipe's base URL and host
/// replaced, the private address allowed, the connector the tests built.
pub fn rest_recipe(name: &str, base_url: &str) -> String {
    let page = std::fs::read_to_string(crate::repo_root().join("connectors/rest/RECIPES.md"))
        .expect("read connectors/rest/RECIPES.md");
    let marker = format!("<!-- recipe: {name} -->\n```toml\n");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no recipe '{name}' in RECIPES.md"))
        + marker.len();
    let end = page[start..]
        .find("```")
        .expect("the recipe's fence closes");
    let block = &page[start..start + end];
    let url = block
        .split("base_url = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the recipe sets base_url");
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .expect("the recipe's base_url has a host");
    let allowed = format!("allowed_hosts = [\"{host}\"]");
    assert!(block.contains(&allowed), "recipe '{name}' allows its host");
    block
        .replace(url, base_url)
        .replace(
            &allowed,
            "allowed_hosts = [\"127.0.0.1\"]\nallow_private_network = true",
        )
        .replace(
            "\"connectors/weir_connector_rest.wasm\"",
            &toml_path(&connector("rest")),
        )
}

/// `direction = "DIRECTION"`.
pub fn direction(direction: &str) -> String {
    format!("direction = \"{direction}\"")
}

/// `ignore = ["updated_at"]`: the change time of a table that has one is
/// not synced.
pub const IGNORE_UPDATED_AT: &str = r#"ignore = ["updated_at"]"#;

/// The `sql` connector's settings of `table`, its changes read by its
/// `updated_at` column.
pub fn tracked_table(table: &str) -> String {
    format!("settings = {{ table = \"{table}\", updated_at = \"updated_at\" }}")
}

/// System `crm`: the `contacts` table of [`crate::crm_db`] (`crm.db` beside
/// the manifest) through the `sql` connector, changes by `updated_at`
/// (itself not synced), in `direction`.
pub fn crm_system(direction: &str) -> System {
    System::sqlite("crm", "crm", "crm.db").tracked("contacts", "contacts", direction, &[])
}

/// System `crm` on `crm.db`, only read, in full at every pass (its
/// `updated_at` not synced and not used for change reads).
pub fn crm_read_in_full() -> System {
    System::sqlite("crm", "crm", "crm.db").entity(
        "contacts",
        &[
            r#"direction = "read""#,
            IGNORE_UPDATED_AT,
            r#"settings = { table = "contacts" }"#,
        ],
    )
}

/// System `shop`, which writes contacts into the `customers` table of
/// [`crate::shop_db`] (`shop.db` beside the manifest).
pub fn shop_system() -> System {
    System::sqlite("shop", "shop", "shop.db").entity(
        "contacts",
        &[
            r#"direction = "write""#,
            r#"primary_key = "customer_id""#,
            r#"rename = { fname = "first_name", lname = "last_name", mail = "email" }"#,
            r#"settings = { table = "customers" }"#,
        ],
    )
}

/// System `name`, which only writes contacts into the `contacts` table of
/// `NAME.db` (beside the manifest) through the `sql` connector.
pub fn contacts_target(name: &str) -> System {
    System::sqlite(name, "db", &format!("{name}.db")).entity(
        "contacts",
        &[
            r#"direction = "write""#,
            r#"settings = { table = "contacts" }"#,
        ],
    )
}

/// System `files`, which only writes `entity` into a CSV file of the folder
/// `folder` (beside the manifest, created here), granted as `grant`.
pub fn csv_target(dir: &Path, entity: &str, grant: &str, folder: &str) -> System {
    std::fs::create_dir_all(dir.join(folder)).expect("create the CSV folder");
    System::csv("files", grant, folder).entity(entity, &[r#"direction = "write""#])
}
