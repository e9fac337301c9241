//! Manifest errors that name the file, line and key, and say how to fix them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a manifest.
#[derive(Debug, Clone)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The 1-based line, where known.
    pub line: Option<usize>,
    /// The dotted key, for example `systems.crm.connector`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl ManifestError {
    pub(super) fn new(
        file: &Path,
        line: Option<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Turns a TOML syntax or shape error into a manifest error with its line.
    pub(super) fn from_toml(file: &Path, text: &str, e: &toml::de::Error) -> Self {
        let line = e.span().map(|span| line_at(text, span.start));
        let mut message = e.message().trim().to_string();
        if message.is_empty() {
            // The parser names nothing when the text ends where a value is due.
            message = "the TOML is incomplete here: a value is missing or a quote, bracket or brace is not closed".to_string();
        }
        let hint = if message.contains("unknown field") {
            "remove the key or correct its spelling; see the README for every key"
        } else if message.contains("missing field") {
            "add the missing key"
        } else {
            "correct the TOML at that line"
        };
        let key = key_at(text, line);
        ManifestError::new(file, line, &key, message).hint(hint)
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  to fix: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a manifest.
#[derive(Debug, Clone)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl ManifestErrors {
    pub(super) fn one(e: ManifestError) -> Self {
        ManifestErrors(vec![e])
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid manifest ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key written at a line (`[table]` headers included), best effort.
fn key_at(text: &str, line: Option<usize>) -> String {
    let Some(line) = line else {
        return String::new();
    };
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line {
            if t.starts_with('[') {
                return table;
            }
            let key = t.split('=').next().unwrap_or("").trim();
            return if table.is_empty() {
                key.to_string()
            } else if key.is_empty() {
                table
            } else {
                format!("{table}.{key}")
            };
        }
    }
    table
}

/// Finds the line of a dotted key in the manifest text.
pub(crate) struct Locator {
    doc: Option<toml_edit::ImDocument<String>>,
    text: String,
}

impl Locator {
    pub(crate) fn new(text: &str) -> Self {
        Locator {
            doc: toml_edit::ImDocument::parse(text.to_string()).ok(),
            text: text.to_string(),
        }
    }

    /// The line of the deepest part of `key` that exists in the document.
    pub(crate) fn line_of(&self, key: &[&str]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut best = None;
        for part in key {
            let Some(table) = item.as_table_like() else {
                break;
            };
            let Some((k, next)) = table.get_key_value(part) else {
                break;
            };
            best = next.span().or_else(|| k.span()).or(best);
            item = next;
        }
        best.map(|span| line_at(&self.text, span.start))
    }
}
