//! Helpers of the end-to-end tests: where the connectors are, how to run weir
//! and read what it prints, manifests built from shared blocks, real SQLite
//! databases and CSV files, and the real systems the tests start.

pub mod conformance;
pub mod daemon;
pub mod directus;
pub mod files;
pub mod json_server;
pub mod manifests;
pub mod postgres;
pub mod receiver;
pub mod run;
pub mod sqlite;
pub use daemon::Daemon;
pub use directus::Directus;
pub use files::{csv_columns, csv_rows};
pub use json_server::JsonServer;
pub use manifests::{
    contacts_target, crm_read_in_full, crm_system, csv_target, direction, entity, rest_recipe,
    shop_system, tracked_table, write_manifest, System, IGNORE_UPDATED_AT,
};
pub use postgres::{Postgres, PsqlSession};
pub use receiver::{http_receiver, Received};
pub use run::{
    audit, audit_args, audit_rows, audited, conflicts, outbox_pending, parse_summary, summary,
    weir, weir_command, weir_env, AuditRow, ConflictRow, Run, Summary,
};
pub use sqlite::{
    after_last_stamp, count, create_table, crm_db, exec, insert_contacts, rows, shop_db, text,
    touch_trigger, value, Key, Rng, STAMP,
};

use std::path::{Path, PathBuf};

/// The folder of the built connector components.
pub fn connectors_dir() -> PathBuf {
    PathBuf::from(env!("WEIR_TEST_CONNECTORS"))
}

/// A built connector component, by short name (`sql`, `csv`, `hostile`).
pub fn connector(name: &str) -> PathBuf {
    connectors_dir().join(format!("weir_connector_{name}.wasm"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("WEIR_TEST_ROOT"))
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
