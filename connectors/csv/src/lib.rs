//! The `csv` connector: a folder with one CSV file per entity, in a directory the
//! manifest grants to the system (the host preopens it at `/<grant name>`).
//!
//! System config: `{"directory": "<grant name>"}`.
//! Entity settings: `{"file": "<name>.csv"}`, optional; `<entity name>.csv` by default.
//! Entity setting `updated_at`, optional: a column holding when each row last
//! changed. With it the entity has a change feed (the rows updated since the last
//! read, found by one scan of the file); without it the host runs full reads.
//! Every cell is text; an empty cell reads as null.

// The bindings reuse the SDK's types and host imports.
weir_sdk::bindings!("keyed-sync-connector");

mod changes;
mod errors;
mod reader;
mod scan;
mod table;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::{destination, keyed_destination, source};
use serde::Deserialize;
use weir_sdk::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, FieldSchema,
    FieldType, KeyedOutcome, KeyedWrite, Operation, Page, Probe, Result, WriteItem, Written,
};

use reader::ReadCursor;
use table::Table;

/// The JSON Schema of the system configuration.
const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "directory": {"type": "string", "minLength": 1, "x-weir-grant": "directories", "description": "the name of a directory the manifest grants to this system"}
  },
  "required": ["directory"],
  "additionalProperties": false,
  "$defs": {
    "settings": {
      "type": "object",
      "properties": {
        "file": {"type": "string", "minLength": 1, "description": "the file name inside the directory; ENTITY.csv by default"},
        "updated_at": {"type": "string", "minLength": 1, "description": "the column that holds when each row last changed"}
      },
      "additionalProperties": false
    }
  }
}"#;

/// Why `checkpoint` and `changes` are refused.
const NO_CHANGE_FEED: &str =
    "without an `updated_at` setting a csv file has no change feed; the host runs full reads";

/// The system-level configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The name under which the manifest grants the directory.
    directory: String,
}

/// The settings of one entity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The file name inside the directory.
    file: Option<String>,
    /// The column that holds when each row last changed.
    updated_at: Option<String>,
}

/// A granted directory.
struct Directory {
    system: String,
    grant: String,
}

/// The CSV file of one entity.
struct EntityFile {
    entity: String,
    pk: String,
    name: String,
    path: PathBuf,
    updated_at: Option<String>,
}

impl Directory {
    /// Reads the system configuration.
    fn of(ctx: &Context) -> Result<Self> {
        let config: Config = weir_sdk::config(ctx)?;
        if !is_plain_name(&config.directory) {
            return Err(ConnectorError::invalid_config(format!(
                "system '{}': setting 'directory' must be the name of a granted directory, got '{}'",
                ctx.system, config.directory
            )));
        }
        Ok(Directory {
            system: ctx.system.clone(),
            grant: config.directory,
        })
    }

    /// Where the host mounts the directory in the sandbox.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/{}", self.grant))
    }

    /// Checks that the directory is there and readable.
    fn check(&self) -> Result<()> {
        fs::read_dir(self.root()).map(drop).map_err(|e| {
            ConnectorError::invalid_config(format!(
                "system '{}': directory '{}' cannot be read ({e}); the manifest must grant it under `directories`",
                self.system, self.grant
            ))
        })
    }

    /// The file of an entity.
    fn file(&self, entity: &EntityBinding) -> Result<EntityFile> {
        let settings = entity_settings(entity)?;
        let name = settings
            .file
            .unwrap_or_else(|| format!("{}.csv", entity.name));
        if !is_plain_name(&name) {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': setting 'file' must be a file name without folders, got '{name}'",
                entity.name
            )));
        }
        if entity.primary_key.is_empty() {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': the primary key is empty",
                entity.name
            )));
        }
        Ok(EntityFile {
            entity: entity.name.clone(),
            pk: entity.primary_key.clone(),
            path: self.root().join(&name),
            name,
            updated_at: settings.updated_at.filter(|c| !c.is_empty()),
        })
    }
}

impl EntityFile {
    /// Opens the file for reading; none if it does not exist yet.
    fn open(&self) -> Result<Option<File>> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(errors::io(&e, &self.describe())),
        }
    }

    /// Names the file and its entity, for messages.
    fn describe(&self) -> String {
        format!("entity '{}': file '{}'", self.entity, self.name)
    }

    /// The entity schema: every column of the header, as text.
    fn schema(&self) -> Result<EntitySchema> {
        let header = match self.open()? {
            Some(file) => reader::header(file, &self.name).map_err(|e| self.prefixed(e))?,
            None => Vec::new(),
        };
        let fields = if header.is_empty() {
            vec![self.field(&self.pk)]
        } else {
            reader::key_column(header.iter().map(String::as_str), &self.name, &self.pk)
                .map_err(|e| self.prefixed(e))?;
            if let Some(column) = &self.updated_at {
                changes::stamp_column(header.iter().map(String::as_str), &self.name, column)
                    .map_err(|e| self.prefixed(e))?;
            }
            header.iter().map(|name| self.field(name)).collect()
        };
        Ok(EntitySchema {
            name: self.entity.clone(),
            primary_key: self.pk.clone(),
            fields,
            incremental: self.updated_at.is_some(),
        })
    }

    /// The updated-at column, or the refusal of a change feed without one.
    fn change_column(&self) -> Result<&str> {
        self.updated_at
            .as_deref()
            .ok_or_else(|| ConnectorError::unsupported(NO_CHANGE_FEED))
    }

    /// A text field; only the primary key is required.
    fn field(&self, name: &str) -> FieldSchema {
        FieldSchema {
            name: name.to_string(),
            kind: FieldType::Text,
            required: name == self.pk,
        }
    }

    /// Prefixes an error with the entity's name.
    fn prefixed(&self, mut err: ConnectorError) -> ConnectorError {
        err.message = format!("entity '{}': {}", self.entity, err.message);
        err
    }

    /// A row as an upsert change.
    fn upsert(&self, row: reader::Row) -> Change {
        Change {
            entity: self.entity.clone(),
            id: row.id,
            op: Operation::Upsert,
            data: Some(row.data),
            previous: None,
            version: None,
            actor: None,
        }
    }

    /// Loads the whole file, or an empty table if it does not exist.
    fn load(&self) -> Result<Table> {
        match self.open()? {
            Some(file) => {
                Table::load(file, &self.name, &self.pk, &mut warn).map_err(|e| self.prefixed(e))
            }
            None => Ok(Table::new(&self.name, &self.pk)),
        }
    }

    /// Replaces the file with the table: written to a temporary file in the same
    /// directory, then renamed over the original, so readers never see half a file.
    fn save(&self, table: &Table) -> Result<()> {
        let temporary = self.path.with_file_name(format!(".{}.weir-tmp", self.name));
        let result =
            write_file(&temporary, table).and_then(|()| fs::rename(&temporary, &self.path));
        result.map_err(|e| {
            // Best effort: the temporary file is only litter at this point.
            let _ = fs::remove_file(&temporary);
            errors::io(&e, &self.describe())
        })
    }
}

/// Writes a table to a new file and flushes it to disk.
fn write_file(path: &std::path::Path, table: &Table) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    table.write(&mut out).map_err(io::Error::other)?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Whether a name is a single path component (no folders, not `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Reads an entity's settings; blank or null settings mean the defaults.
fn entity_settings(entity: &EntityBinding) -> Result<Settings> {
    match entity.settings.trim() {
        "" | "null" => Ok(Settings::default()),
        _ => weir_sdk::settings(entity),
    }
}

/// Hands a row that cannot be a record to the host, as a dead letter.
fn reject(entity: &EntityBinding, row: reader::BadRow) {
    weir_sdk::reject(&entity.name, row.id.as_deref(), &row.why, &row.raw);
}

/// Logs a warning through the host.
fn warn(message: String) {
    weir_sdk::log(weir_sdk::log::Level::Warn, message);
}

/// The `csv` connector.
struct CsvConnector;

impl connector::Guest for CsvConnector {
    fn describe() -> Description {
        Description {
            name: "csv".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "csv files, one per entity, in a directory granted by the manifest"
                .to_string(),
            config_schema: CONFIG_SCHEMA.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        let dir = Directory::of(&ctx)?;
        dir.check()?;
        entities
            .iter()
            .map(|entity| dir.file(entity)?.schema())
            .collect()
    }
}

impl source::Guest for CsvConnector {
    fn read(
        ctx: Context,
        entity: EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let cursor = cursor
            .map(|text| ReadCursor::decode(&text, &file.entity))
            .transpose()?;
        let Some(input) = file.open()? else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let page = reader::read_page(
            input,
            &file.name,
            &file.pk,
            cursor,
            limit as usize,
            &mut |row| reject(&entity, row),
        )
        .map_err(|e| file.prefixed(e))?;
        let items = page.rows.into_iter().map(|row| file.upsert(row)).collect();
        Ok(Page {
            items,
            next: page.next.map(|at| at.encode()),
        })
    }

    /// The latest updated-at in the file now: changes are the rows updated since.
    fn checkpoint(ctx: Context, entity: EntityBinding) -> Result<String> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let column = file.change_column()?;
        let since = match file.open()? {
            Some(input) => {
                changes::latest(input, &file.name, column).map_err(|e| file.prefixed(e))?
            }
            None => None,
        };
        Ok(changes::ChangeCursor { since, scan: None }.encode())
    }

    fn changes(
        ctx: Context,
        entity: EntityBinding,
        cursor: String,
        limit: u32,
    ) -> Result<ChangeBatch> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let column = file.change_column()?;
        let cursor = changes::ChangeCursor::decode(&cursor, &file.entity)?;
        let Some(input) = file.open()? else {
            return Ok(ChangeBatch {
                items: Vec::new(),
                cursor: cursor.encode(),
                more: false,
            });
        };
        let meta = input
            .metadata()
            .map_err(|e| errors::io(&e, &file.describe()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        let version = changes::Version {
            len: meta.len(),
            modified,
        };
        let out = changes::read(
            input,
            version,
            &file.name,
            &file.pk,
            column,
            cursor,
            limit as usize,
            &mut warn,
            &mut |row| reject(&entity, row),
        )
        .map_err(|e| file.prefixed(e))?;
        Ok(ChangeBatch {
            items: out.rows.into_iter().map(|row| file.upsert(row)).collect(),
            cursor: out.next.encode(),
            more: out.more,
        })
    }
}

impl destination::Guest for CsvConnector {
    /// Loads the file, applies the items in order and writes the file back once.
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written>>> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let mut table = file.load()?;
        let outcomes = items
            .iter()
            .map(|item| table.apply(item, &file.entity))
            .collect();
        if table.changed() {
            file.save(&table)?;
        }
        Ok(outcomes)
    }
}

impl keyed_destination::Guest for CsvConnector {
    /// Writes as `destination.write` does (a CSV file has no place for the
    /// key), but an update that carries what the host last saw writes only
    /// the fields it changes, and only if the row still holds the seen
    /// values; a row that does not is answered `changed`, as it is now.
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<KeyedWrite>,
    ) -> Result<Vec<KeyedOutcome>> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let mut table = file.load()?;
        let outcomes = items
            .into_iter()
            .map(|k| {
                let apply = |table: &mut table::Table, item: &WriteItem| {
                    weir_sdk::keyed_outcome(table.apply(item, &file.entity))
                };
                let seen = k
                    .seen
                    .as_deref()
                    .and_then(|s| weir_sdk::json::parse_record(s).ok());
                let (Some(seen), Some(id), Operation::Upsert) = (seen, &k.item.id, k.item.op)
                else {
                    return apply(&mut table, &k.item);
                };
                match (table.holds(id, &seen), table.row(id)) {
                    (Some(false), Some(row)) => KeyedOutcome::Changed(file.upsert(row)),
                    (Some(true), _) => {
                        let mut item = k.item.clone();
                        let data = item.data.as_deref().map(weir_sdk::json::parse_record);
                        if let Some(Ok(mut data)) = data {
                            data.retain(|field, _| seen.contains_key(field));
                            item.data = Some(serde_json::Value::Object(data).to_string());
                        }
                        apply(&mut table, &item)
                    }
                    // Gone: deleted here since weir saw it, not written again.
                    _ => KeyedOutcome::Changed(weir_sdk::gone(&entity.name, id)),
                }
            })
            .collect();
        if table.changed() {
            file.save(&table)?;
        }
        Ok(outcomes)
    }

    /// Scans the file once for every probe: the rows whose cells equal the
    /// probe's fields (see `weir_sdk::json::probe_matches`), at most ten each.
    fn find(ctx: Context, entity: EntityBinding, probes: Vec<Probe>) -> Result<Vec<Vec<Change>>> {
        let file = Directory::of(&ctx)?.file(&entity)?;
        let probes = probes
            .iter()
            .map(|p| weir_sdk::json::parse_record(&p.fields))
            .collect::<Result<Vec<_>>>()?;
        let mut found = vec![Vec::new(); probes.len()];
        let mut cursor = None;
        loop {
            let Some(input) = file.open()? else {
                return Ok(found);
            };
            let page = reader::read_page(input, &file.name, &file.pk, cursor, 10_000, &mut |_| {})
                .map_err(|e| file.prefixed(e))?;
            for row in page.rows {
                let Ok(data) = weir_sdk::json::parse_record(&row.data) else {
                    continue;
                };
                let hits: Vec<usize> = (0..probes.len())
                    .filter(|&i| {
                        found[i].len() < 10 && weir_sdk::json::probe_matches(&probes[i], &data)
                    })
                    .collect();
                if hits.is_empty() {
                    continue;
                }
                let change = file.upsert(row);
                for i in hits {
                    found[i].push(change.clone());
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(found),
            }
        }
    }
}

export!(CsvConnector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settings_key_of_the_schema_is_read() {
        let schema: serde_json::Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        let mut full = serde_json::Map::new();
        for key in schema["$defs"]["settings"]["properties"]
            .as_object()
            .unwrap()
            .keys()
        {
            full.insert(key.clone(), serde_json::json!("x"));
        }
        let s: Settings = serde_json::from_value(full.into()).unwrap();
        assert_eq!(
            (s.file.as_deref(), s.updated_at.as_deref()),
            (Some("x"), Some("x"))
        );
    }
}
