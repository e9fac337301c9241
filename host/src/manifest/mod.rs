//! The manifest (`weir.toml`): systems, entities, grants and limits.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and every error names
//! the file, the line and the key, says what is wrong and how to fix it. After
//! [`Manifest::load`] returns, every path is absolute, every `${VAR}` secret is
//! resolved and every entity of every system has a primary key.
//!
//! `raw.rs` is the manifest as written (serde), `model.rs` the manifest as
//! validated, `validate.rs` the steps from one to the other (with
//! `systems.rs` for `[systems.NAME]` and its grants), `fields.rs` the
//! `fields` tables and `error.rs` the messages with their lines.

mod error;
mod fields;
mod model;
mod raw;
mod secrets;
mod systems;
mod validate;

pub use error::{ManifestError, ManifestErrors};
pub use model::*;

use std::path::Path;
use validate::Validator;

impl Manifest {
    /// Reads, parses and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ManifestErrors::one(
                ManifestError::new(path, None, "", format!("cannot read the manifest: {e}"))
                    .hint("pass the path of an existing weir.toml with --manifest"),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` names the file in errors and
    /// anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestErrors> {
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let raw: raw::Manifest = toml::from_str(text)
            .map_err(|e| ManifestErrors::one(ManifestError::from_toml(&file, text, &e)))?;
        let mut v = Validator::new(&file, text);
        let mut manifest = v.manifest(raw);
        manifest.warnings = v.finish()?;
        Ok(manifest)
    }

    /// The directory of the manifest file; relative paths are resolved against it.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// The line of a dotted key in the manifest file, if it can be found
    /// (for messages about the manifest found after loading it).
    pub fn line_of(&self, key: &[&str]) -> Option<usize> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        error::Locator::new(&text).line_of(key)
    }

    /// An entity by name.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// A system by name.
    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
