//! The `sql` connector: one table per entity, in a database the manifest grants to
//! the system. The database is reached only through the host's `sql` import: the
//! connector never sees a path or a connection string.
//!
//! The same component serves SQLite and PostgreSQL: the host says which
//! dialect a grant speaks, and the statements follow it.
//!
//! System config: `{"database": "<grant name>"}`.
//! Entity settings, all optional: `table` (the entity name by default);
//! on PostgreSQL, `schema` (the table's schema, the first of the search path
//! by default; its tombstone table and trigger function go there too);
//! `updated_at`, a column that enables incremental changes; `actor`, a column
//! naming who changed a row; `deletes = "tombstones"`, which keeps deleted keys
//! in a table (`tombstones`, `<table>_weir_deleted` by default) filled by an
//! `AFTER DELETE` trigger that `check` installs, and reports them as changes
//! (tombstones older than `tombstone_days`, 30 by default, are removed);
//! or, on PostgreSQL, `deletes = "logical"`, which reads them from a logical
//! replication slot (`slot`, `weir_<system>_<table>` by default, or
//! `weir_<system>_<schema>_<table>`) that `check` creates.
//!
//! Reads are keyset pages; writes group runs of alike records into multi-row
//! statements, one batch (one transaction) per call. Generated columns are
//! left out of writes; a key written as given moves the key column's
//! sequence past it (PostgreSQL). On PostgreSQL, a change
//! read ends its cursors (rows and tombstones) before the horizon of
//! transactions still open ([`statements::HORIZON`]), so that what they
//! commit late is read by the next one.

// The bindings reuse the SDK's types and host imports.
weir_sdk::bindings!("keyed-sync-connector");

mod cursor;
mod guarded;
mod logical;
mod schema;
mod statements;
mod write;

use exports::weir::connector::connector::{self, Description};
use exports::weir::connector::{destination, keyed_destination, source};
use serde::Deserialize;
use weir_sdk::json;
use weir_sdk::sql::{self, Dialect, Rows, Statement, Value};
use weir_sdk::sql_util::{quote_ident, row_to_record, to_id, to_json, to_sql};
use weir_sdk::{
    Change, ChangeBatch, ConnectorError, Context, EntityBinding, EntitySchema, FieldSchema,
    FieldType, KeyedOutcome, KeyedWrite, Operation, Page, Probe, Result, WriteItem, Written,
};

use cursor::{ChangeCursor, ReadCursor};
use schema::Column;

/// Days a tombstone is kept unless the entity says otherwise.
const DEFAULT_TOMBSTONE_DAYS: u32 = 30;

/// The JSON Schema of the system configuration.
const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "database": {"type": "string", "minLength": 1, "x-weir-grant": "databases", "description": "the name of a database the manifest grants to this system"}
  },
  "required": ["database"],
  "additionalProperties": false,
  "$defs": {
    "settings": {
      "type": "object",
      "properties": {
        "table": {"type": "string", "minLength": 1, "description": "the table; the entity name by default"},
        "schema": {"type": "string", "minLength": 1, "description": "the table's schema (PostgreSQL)"},
        "updated_at": {"type": "string", "minLength": 1, "description": "the column holding each row's last-update time"},
        "actor": {"type": "string", "minLength": 1, "description": "the column naming who last changed each row"},
        "deletes": {"enum": ["tombstones", "logical"], "description": "how deletes are found"},
        "tombstones": {"type": "string", "minLength": 1, "description": "the tombstone table"},
        "tombstone_days": {"type": "integer", "minimum": 0, "description": "days a tombstone is kept"},
        "slot": {"type": "string", "minLength": 1, "description": "the logical replication slot (PostgreSQL)"}
      },
      "additionalProperties": false
    }
  }
}"#;

/// The system-level configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The name under which the manifest grants the database.
    database: String,
}

/// The settings of one entity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The table; the entity name by default.
    table: Option<String>,
    /// The table's schema (PostgreSQL); the first of the connection's
    /// search path by default.
    schema: Option<String>,
    /// The column holding each row's last-update time, if any.
    updated_at: Option<String>,
    /// The column naming the user who last changed each row, if any.
    actor: Option<String>,
    /// How deletes are found: `"tombstones"` keeps each deleted key in a
    /// table of its own, filled by a trigger that the connector installs, and
    /// reports it as a change; `"logical"` (PostgreSQL) reads them from a
    /// logical replication slot; without it, the host finds deletes with full reads.
    deletes: Option<String>,
    /// The tombstone table; `<table>_weir_deleted` by default.
    tombstones: Option<String>,
    /// Days a tombstone is kept (30 by default): older ones are removed at
    /// change reads.
    tombstone_days: Option<u32>,
    /// The replication slot; `weir_<system>_<table>` by default.
    slot: Option<String>,
}

/// A granted database and its dialect.
struct Database {
    system: String,
    name: String,
    dialect: Dialect,
    /// A dry run: the database is read, and nothing is created or moved.
    dry_run: bool,
}

/// The table bound to one entity.
struct Table {
    entity: String,
    name: String,
    /// The schema, when set (PostgreSQL).
    schema: Option<String>,
    pk: String,
    updated_at: Option<String>,
    actor: Option<String>,
    /// The tombstone table, when deletes are kept there.
    tombstones: Option<String>,
    /// Days a tombstone is kept.
    tombstone_days: u32,
    /// Whether deletes are read from a replication slot, and its name if set.
    logical: Option<Option<String>>,
}

impl Database {
    /// Reads the system configuration and asks the host for the database's dialect.
    fn open(ctx: &Context) -> Result<Self> {
        let config: Config = weir_sdk::config(ctx)?;
        if config.database.trim().is_empty() {
            return Err(ConnectorError::invalid_config(format!(
                "system '{}': setting 'database' is empty",
                ctx.system
            )));
        }
        let dialect = sql::dialect_of(&config.database).map_err(|e| {
            prefixed(
                e.into(),
                &format!("system '{}': database '{}'", ctx.system, config.database),
            )
        })?;
        Ok(Database {
            system: ctx.system.clone(),
            name: config.database,
            dialect,
            dry_run: ctx.dry_run,
        })
    }

    /// Runs a query for an entity; errors name the entity and the database.
    fn query(&self, entity: &str, sql: String, params: Vec<Value>) -> Result<Rows> {
        sql::query(&self.name, &Statement { sql, params }).map_err(|e| {
            prefixed(
                e.into(),
                &format!("entity '{entity}': database '{}'", self.name),
            )
        })
    }

    /// Runs a batch of statements in one transaction for an entity.
    fn batch(
        &self,
        entity: &str,
        statements: &[Statement],
    ) -> Result<Vec<std::result::Result<Rows, String>>> {
        sql::batch(&self.name, statements).map_err(|e| {
            prefixed(
                e.into(),
                &format!("entity '{entity}': database '{}'", self.name),
            )
        })
    }

    /// Runs the statements of `chunks` in one batch and pairs each chunk with
    /// its outcome; a missing outcome reads as a failure of its statement.
    fn run_chunks(
        &self,
        entity: &str,
        mut chunks: Vec<write::Chunk>,
    ) -> Result<Vec<(write::Chunk, std::result::Result<Rows, String>)>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let statements: Vec<Statement> = chunks
            .iter_mut()
            .map(|c| std::mem::replace(&mut c.statement, write::no_statement()))
            .collect();
        let results = self.batch(entity, &statements);
        // The statements go back to their chunks: a failed one is split.
        for (c, s) in chunks.iter_mut().zip(statements) {
            c.statement = s;
        }
        let mut results = results?.into_iter();
        Ok(chunks
            .into_iter()
            .map(|c| {
                let result = results
                    .next()
                    .unwrap_or_else(|| Err("the database returned no outcome".to_string()));
                (c, result)
            })
            .collect())
    }

    /// The columns of an entity's table; a schema error if the table does not exist.
    fn columns(&self, table: &Table) -> Result<Vec<Column>> {
        let sql = statements::columns(self.dialect).to_string();
        let mut params = vec![Value::Text(table.name.clone())];
        match (self.dialect, &table.schema) {
            (Dialect::Postgres, schema) => {
                params.push(schema.clone().map_or(Value::Null, Value::Text));
            }
            (Dialect::Sqlite, None) => {}
            (Dialect::Sqlite, Some(_)) => {
                return Err(ConnectorError::invalid_config(format!(
                    "entity '{}': setting 'schema' is for PostgreSQL, and database '{}' is SQLite; leave it out",
                    table.entity, self.name
                )))
            }
        }
        let rows = self.query(&table.entity, sql, params)?;
        let columns = schema::parse_columns(&rows);
        if columns.is_empty() {
            let schema = match &table.schema {
                Some(schema) => format!("schema '{schema}'"),
                None => "the first schema of the search path".to_string(),
            };
            return Err(ConnectorError::schema(format!(
                "entity '{}': table '{}' not found in database '{}'{}",
                table.entity,
                table.name,
                self.name,
                match self.dialect {
                    Dialect::Postgres => format!(" ({schema}); set 'schema' if it is in another"),
                    Dialect::Sqlite => String::new(),
                }
            )));
        }
        Ok(columns)
    }

    /// PostgreSQL: the horizon ([`statements::HORIZON`]), before which no
    /// transaction still open can add a row, in seconds since the epoch.
    /// Asked for before the rows it judges are read. A transaction open for
    /// long holds the cursor back: a warning says so.
    fn horizon(&self, entity: &str) -> Result<f64> {
        let rows = self.query(entity, statements::HORIZON.to_string(), Vec::new())?;
        let row = rows.rows.first().map(Vec::as_slice).unwrap_or_default();
        let (at, age) = match row {
            [Value::Real(at), Value::Integer(age)] => (*at, *age),
            other => {
                return Err(ConnectorError::schema(format!(
                    "entity '{entity}': database '{}' gave no time for the oldest open transaction, but {other:?}",
                    self.name
                )))
            }
        };
        if age > statements::HORIZON_WARN_SECS {
            weir_sdk::log(
                weir_sdk::log::Level::Warn,
                format!(
                    "entity '{entity}': database '{}': a transaction open for {age} s (see pg_stat_activity) holds the change cursor back; the rows changed since it began are read again at every pass until it ends",
                    self.name
                ),
            );
        }
        Ok(at)
    }
}

impl Table {
    /// The primary-key column as queries return it.
    fn key(&self, dialect: Dialect, columns: &[Column]) -> statements::Key<'_> {
        statements::Key {
            name: &self.pk,
            form: schema::find(columns, &self.pk).map_or(statements::KeyForm::AsIs, |c| {
                statements::key_form(dialect, c)
            }),
        }
    }

    /// The table's name in statements (and messages).
    fn sql_name(&self) -> statements::Name<'_> {
        statements::Name {
            schema: self.schema.as_deref(),
            name: &self.name,
        }
    }

    /// Reads an entity's settings.
    fn of(entity: &EntityBinding) -> Result<Self> {
        let settings = entity_settings(entity)?;
        let name = settings.table.unwrap_or_else(|| entity.name.clone());
        if name.trim().is_empty() {
            return Err(bad_setting(&entity.name, "table"));
        }
        if settings
            .schema
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(bad_setting(&entity.name, "schema"));
        }
        if settings
            .updated_at
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err(bad_setting(&entity.name, "updated_at"));
        }
        if entity.primary_key.trim().is_empty() {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': the primary key is empty",
                entity.name
            )));
        }
        let deletes = settings.deletes.as_deref();
        for (key, needs) in [
            (
                "tombstones",
                settings.tombstones.is_some() && deletes != Some("tombstones"),
            ),
            (
                "tombstone_days",
                settings.tombstone_days.is_some() && deletes != Some("tombstones"),
            ),
            (
                "slot",
                settings.slot.is_some() && deletes != Some("logical"),
            ),
        ] {
            if needs {
                let wanted = if key == "slot" {
                    "logical"
                } else {
                    "tombstones"
                };
                return Err(ConnectorError::invalid_config(format!(
                    "entity '{}': setting '{key}' needs deletes = \"{wanted}\"",
                    entity.name
                )));
            }
        }
        let (tombstones, logical) = match deletes {
            None => (None, None),
            Some("tombstones") => (
                Some(
                    settings
                        .tombstones
                        .unwrap_or_else(|| format!("{name}_weir_deleted")),
                ),
                None,
            ),
            Some("logical") => {
                if let Some(slot) = settings.slot.as_deref().filter(|s| !logical::valid_slot(s)) {
                    return Err(ConnectorError::invalid_config(format!(
                        "entity '{}': slot '{slot}' is not a replication slot name: use lower-case letters, digits and '_', at most 63",
                        entity.name
                    )));
                }
                (None, Some(settings.slot))
            }
            Some(other) => {
                return Err(ConnectorError::invalid_config(format!(
                    "entity '{}': deletes = \"{other}\" is not known; use \"tombstones\" or \"logical\" (PostgreSQL), or leave it out to find deletes with full reads",
                    entity.name
                )))
            }
        };
        if settings.tombstone_days == Some(0) {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': setting 'tombstone_days' must be at least 1",
                entity.name
            )));
        }
        if let (Some(how), None) = (deletes, &settings.updated_at) {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': deletes = \"{how}\" needs an 'updated_at' column for the other changes",
                entity.name
            )));
        }
        Ok(Table {
            entity: entity.name.clone(),
            name,
            schema: settings.schema,
            pk: entity.primary_key.clone(),
            updated_at: settings.updated_at,
            actor: settings.actor,
            tombstones,
            tombstone_days: settings.tombstone_days.unwrap_or(DEFAULT_TOMBSTONE_DAYS),
            logical,
        })
    }

    /// Creates the tombstone table and its trigger, if deletes are kept there.
    fn keep_tombstones(&self, db: &Database, columns: &[Column]) -> Result<()> {
        let Some(tombstones) = &self.tombstones else {
            return Ok(());
        };
        // Only what is missing is created: the rights to create are needed once.
        let trigger = format!("{tombstones}_keep");
        let table = self.sql_name();
        let names = match db.dialect {
            Dialect::Sqlite => [tombstones.clone(), trigger, self.name.clone()],
            Dialect::Postgres => [table.beside(tombstones).sql(), trigger, table.sql()],
        };
        let exists = db.query(
            &self.entity,
            statements::tombstones_exist(db.dialect).to_string(),
            names.into_iter().map(Value::Text).collect(),
        )?;
        if matches!(
            exists.rows.first().and_then(|r| r.first()),
            Some(Value::Integer(1))
        ) {
            return Ok(());
        }
        if db.dry_run {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': the tombstone table '{tombstones}' or its trigger does not exist yet in database '{}', and a dry run creates nothing; run `weir check` first",
                self.entity, db.name
            )));
        }
        let key_type = schema::find(columns, &self.pk)
            .map(|c| c.sql_type.as_str())
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("USER-DEFINED"))
            .unwrap_or("text");
        // PostgreSQL names `char(n)` and `bit(n)` without their length, which
        // would make the tombstone column too narrow: widen them.
        let key_type = match key_type.to_ascii_lowercase().as_str() {
            "character" => "text",
            "bit" => "bit varying",
            _ => key_type,
        }
        .to_string();
        // On PostgreSQL the trigger runs in the deleting session, whose
        // search path may be another: its function names the tombstone table
        // with its schema (the current one, when none is set).
        let current = match (db.dialect, &self.schema) {
            (Dialect::Postgres, None) => {
                let rows = db.query(&self.entity, "SELECT current_schema()".into(), Vec::new())?;
                match rows.rows.first().and_then(|r| r.first()) {
                    Some(Value::Text(schema)) => Some(schema.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        let table = match &current {
            Some(schema) => statements::Name {
                schema: Some(schema),
                name: &self.name,
            },
            None => table,
        };
        let setup = statements::tombstone_setup(
            db.dialect,
            table,
            &self.pk,
            &key_type,
            table.beside(tombstones),
        );
        let statements: Vec<Statement> = setup
            .into_iter()
            .map(|sql| Statement {
                sql,
                params: Vec::new(),
            })
            .collect();
        for (outcome, st) in db
            .batch(&self.entity, &statements)?
            .into_iter()
            .zip(&statements)
        {
            if let Err(e) = outcome {
                return Err(ConnectorError::schema(format!(
                    "entity '{}': cannot set up the tombstone table '{tombstones}' and its trigger in database '{}': {e} (statement: {}); grant the rights to create them, or create them yourself",
                    self.entity, db.name, st.sql
                )));
            }
        }
        Ok(())
    }

    /// The replication slot, when deletes are read from one.
    fn slot(&self, db: &Database) -> Result<Option<String>> {
        let Some(named) = &self.logical else {
            return Ok(None);
        };
        if db.dialect != Dialect::Postgres {
            return Err(ConnectorError::invalid_config(format!(
                "entity '{}': deletes = \"logical\" needs PostgreSQL, and database '{}' is SQLite; use deletes = \"tombstones\"",
                self.entity, db.name
            )));
        }
        Ok(Some(named.clone().unwrap_or_else(|| {
            logical::default_slot(&db.system, &self.sql_name().to_string())
        })))
    }

    /// Moves the key column's sequence past the keys about to be written as
    /// given (up to `largest`), so that inserts taking keys from it do not
    /// collide with them. A failure (no right to change the sequence) is a
    /// warning, once a run: the writes go on.
    fn catch_up_sequence(&self, db: &Database, sequence: &str, largest: i64) {
        thread_local! {
            static WARNED: std::cell::RefCell<std::collections::BTreeSet<String>> =
                const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
        }
        let sql = statements::catch_up_sequence(self.sql_name(), &self.pk);
        let params = vec![Value::Text(sequence.to_string()), Value::Integer(largest)];
        if let Err(e) = db.query(&self.entity, sql, params) {
            if !WARNED.with(|w| w.borrow_mut().insert(sequence.to_string())) {
                return;
            }
            weir_sdk::log(
                weir_sdk::log::Level::Warn,
                format!(
                    "entity '{}': cannot move sequence {sequence} past the keys written to table '{}' ({}); inserts that take their keys from it may collide with them: grant UPDATE on it",
                    self.entity,
                    self.sql_name(),
                    e.message
                ),
            );
        }
    }

    /// The parameters of the catalog queries about the table's key column:
    /// the quoted table name and the column name.
    fn table_and_key(&self) -> Vec<Value> {
        vec![
            Value::Text(self.sql_name().sql()),
            Value::Text(self.pk.clone()),
        ]
    }

    /// Creates the replication slot if it is missing, once the server and the
    /// table are found fit: `wal_level = logical`, and the primary key is in
    /// the table's replica identity (deleted rows are known by it).
    fn keep_slot(&self, db: &Database, slot: &str) -> Result<()> {
        let what = format!("entity '{}': database '{}'", self.entity, db.name);
        let identity = db.query(
            &self.entity,
            logical::REPLICA_IDENTITY.to_string(),
            self.table_and_key(),
        )?;
        let row = identity.rows.first().map(Vec::as_slice).unwrap_or_default();
        if matches!(row.get(3), Some(Value::Integer(1))) {
            // Logical decoding names the partition a row was deleted from.
            return Err(ConnectorError::invalid_config(format!(
                "{what}: table '{}' is partitioned or has child tables, whose deletes logical decoding reports under their own names; use deletes = \"tombstones\"",
                self.sql_name()
            )));
        }
        let fit = matches!(row.get(1), Some(Value::Text(f)) if f == "f")
            || matches!(row.get(2), Some(Value::Integer(1)));
        if !fit {
            return Err(ConnectorError::schema(format!(
                "{what}: deletes = \"logical\" needs column '{}' in the replica identity of table '{}'; make it the primary key, or run ALTER TABLE {} REPLICA IDENTITY FULL",
                self.pk,
                self.sql_name(),
                self.sql_name().sql()
            )));
        }
        let state = db.query(
            &self.entity,
            logical::SLOT_STATE.to_string(),
            vec![Value::Text(slot.to_string())],
        )?;
        let state =
            logical::SlotState::of(state.rows.first().map(Vec::as_slice).unwrap_or_default());
        if let Some(why) = state.refusal(slot, &what) {
            return Err(ConnectorError::invalid_config(why));
        }
        if state.plugin.is_none() {
            if db.dry_run {
                return Err(ConnectorError::invalid_config(format!(
                    "{what}: replication slot '{slot}' does not exist yet, and a dry run creates nothing; run `weir check` first"
                )));
            }
            db.query(
                &self.entity,
                logical::CREATE_SLOT.to_string(),
                vec![Value::Text(slot.to_string())],
            )
            .map_err(|e| logical::slot_error(&what, slot, e))?;
        }
        Ok(())
    }

    /// The server's current WAL position, as text.
    fn wal_position(&self, db: &Database) -> Result<String> {
        let rows = db.query(
            &self.entity,
            logical::CURRENT_POSITION.to_string(),
            Vec::new(),
        )?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Text(lsn)) => Ok(lsn.clone()),
            _ => Err(ConnectorError::transient(format!(
                "entity '{}': database '{}' did not say its WAL position",
                self.entity, db.name
            ))),
        }
    }

    /// The deletes of the table in the slot after position `from`, the
    /// position of the last change after it, and how many changes of the
    /// database were looked at. The slot is first moved on to `settled`:
    /// what lies before it was committed by the host.
    fn logical_deletes(
        &self,
        db: &Database,
        slot: &str,
        (from, settled): (&str, &str),
        limit: usize,
    ) -> Result<(Vec<Change>, Option<String>, usize)> {
        let what = format!("entity '{}': database '{}'", self.entity, db.name);
        // The slot must not stand past the cursor: it was then read or moved
        // by someone else, or dropped and made anew, and the deletes in
        // between are unknown.
        let position = db
            .query(
                &self.entity,
                logical::SLOT_POSITION.to_string(),
                vec![Value::Text(slot.to_string()), Value::Text(from.to_string())],
            )
            .map_err(|e| logical::slot_error(&what, slot, e))?;
        match position.rows.first().map(Vec::as_slice) {
            None => {
                return Err(ConnectorError::schema(format!(
                    "{what}: replication slot '{slot}' is missing; `weir check` creates it, then run `weir sync --full`: deletes made meanwhile are unknown"
                )))
            }
            Some([_, Value::Integer(1)]) => {
                return Err(ConnectorError::schema(format!(
                    "{what}: replication slot '{slot}' lost the WAL it needed (max_slot_wal_keep_size); drop it, run `weir check`, then `weir sync --full`"
                )))
            }
            Some([Value::Integer(1), _]) => {
                return Err(ConnectorError::schema(format!(
                    "{what}: replication slot '{slot}' has moved past weir's cursor (is it read by someone else, or was it made anew?); deletes in between are unknown: run `weir sync --full`"
                )))
            }
            Some(_) => {}
        }
        if !db.dry_run {
            db.query(
                &self.entity,
                logical::ADVANCE.to_string(),
                vec![
                    Value::Text(slot.to_string()),
                    Value::Text(settled.to_string()),
                ],
            )
            .map_err(|e| logical::slot_error(&what, slot, e))?;
        }
        let rows = db
            .query(
                &self.entity,
                logical::PEEK_DELETES.to_string(),
                vec![
                    Value::Text(slot.to_string()),
                    Value::Text(self.sql_name().sql()),
                    // A dry run cannot move the slot on, so it reads all the
                    // slot holds at once (batches would start over each time).
                    if db.dry_run {
                        Value::Null
                    } else {
                        Value::Integer(limit as i64)
                    },
                    Value::Text(from.to_string()),
                ],
            )
            .map_err(|e| logical::slot_error(&what, slot, e))?;
        let text = |row: &[Value], i: usize| match row.get(i) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let (mut keys, mut unique) = (Vec::new(), std::collections::HashSet::new());
        let (mut last, mut seen) = (None, 0);
        for row in &rows.rows {
            let detail = text(row, 2).unwrap_or_default();
            match row.first() {
                Some(Value::Integer(1)) => {
                    last = text(row, 1);
                    seen = detail.parse().unwrap_or(0);
                    continue;
                }
                Some(Value::Integer(2)) => {
                    return Err(ConnectorError::schema(format!(
                        "{what}: table '{}' was truncated (replication slot '{slot}'); a truncate names no rows, so the deletes it made are unknown: run `weir sync --full`",
                        self.sql_name()
                    )))
                }
                _ => {}
            }
            // An old key's column list starts like a delete's; the key it
            // names is gone only if the table no longer holds it (below).
            match logical::key_of(&detail, &self.pk) {
                Some(key) => {
                    if unique.insert(key.clone()) {
                        keys.push(key);
                    }
                }
                None => weir_sdk::log(
                    weir_sdk::log::Level::Warn,
                    format!(
                        "{what}: a delete or key change in replication slot '{slot}' carries no '{}' ({detail}); it is left to full reads",
                        self.pk
                    ),
                ),
            }
        }
        // A key deleted and inserted anew is not a delete; the others are
        // read back as the key column's type, in the form reads give.
        if !keys.is_empty() {
            let key_type = db.query(
                &self.entity,
                logical::KEY_TYPE.to_string(),
                self.table_and_key(),
            )?;
            let key_type = match key_type.rows.first().and_then(|r| r.first()) {
                Some(Value::Text(t)) => t.clone(),
                _ => "text".to_string(),
            };
            let gone = db.query(
                &self.entity,
                logical::gone_keys(self.sql_name(), &self.pk, &key_type),
                vec![Value::Text(serde_json::Value::from(keys).to_string())],
            )?;
            keys = gone
                .rows
                .iter()
                .filter_map(|r| r.first())
                .filter(|v| !matches!(v, Value::Null))
                .map(to_id)
                .collect();
        }
        let changes = keys.into_iter().map(|id| self.delete(id)).collect();
        Ok((changes, last, seen))
    }

    /// A delete of the record with key `id`, as a change.
    fn delete(&self, id: String) -> Change {
        Change {
            entity: self.entity.clone(),
            id,
            op: Operation::Delete,
            data: None,
            previous: None,
            version: None,
            actor: None,
        }
    }

    /// The deletes recorded after `after` in the tombstone table, oldest first,
    /// the position of the last, and that of the last stamped before
    /// `horizon` (PostgreSQL; without one, every tombstone is settled).
    fn deletes(
        &self,
        db: &Database,
        key: statements::Key<'_>,
        tombstones: &str,
        after: Option<&cursor::Position>,
        limit: usize,
        horizon: Option<f64>,
    ) -> Result<(
        Vec<Change>,
        Option<cursor::Position>,
        Option<cursor::Position>,
    )> {
        let after = after.filter(|at| !at.ts.is_null());
        let flagged = horizon.is_some();
        let sql = statements::tombstones(
            db.dialect,
            self.sql_name(),
            self.sql_name().beside(tombstones),
            key,
            after.is_some(),
            flagged,
        );
        let mut params = match after {
            Some(at) => vec![to_sql(&at.ts), to_sql(&at.id)],
            None => Vec::new(),
        };
        params.push(Value::Integer(limit as i64));
        params.extend(horizon.map(Value::Real));
        let mut rows = db.query(&self.entity, sql, params)?;
        let settled = flagged.then(|| take_last_column(&mut rows));
        let changes = rows
            .rows
            .iter()
            .map(|row| self.delete(row.first().map(to_id).unwrap_or_default()))
            .collect();
        let (last, last_settled) = page_ends(&rows, settled.as_deref(), 1, 0);
        Ok((changes, last, last_settled))
    }

    /// What the updated-at column holds, if a horizon can judge it (times
    /// or dates).
    fn stamps(&self, columns: &[Column]) -> Option<statements::Stamps> {
        let column = schema::find(columns, self.updated_at.as_deref()?)?;
        match column.field_type() {
            FieldType::Timestamp => Some(statements::Stamps::Times {
                precision: column.precision.unwrap_or(6),
            }),
            FieldType::Date => Some(statements::Stamps::Dates),
            _ => None,
        }
    }

    /// Checks that the primary-key and updated-at columns exist.
    fn verify(&self, db: &Database, columns: &[Column]) -> Result<()> {
        let wanted = std::iter::once(("primary key", &self.pk))
            .chain(self.updated_at.as_ref().map(|u| ("updated_at column", u)));
        for (role, column) in wanted {
            if schema::find(columns, column).is_none() {
                return Err(ConnectorError::schema(format!(
                    "entity '{}': {role} '{column}' is not a column of table '{}' in database '{}'",
                    self.entity,
                    self.sql_name(),
                    db.name
                )));
            }
        }
        Ok(())
    }

    /// Why writes cannot match records by the primary-key column, if they
    /// cannot: it is neither the whole primary key nor alone in a unique
    /// index, and an upsert (`ON CONFLICT`) needs one of them.
    fn unmatchable(&self, db: &Database, columns: &[Column]) -> Option<String> {
        if schema::find(columns, &self.pk).is_none_or(|c| c.unique) {
            return None;
        }
        Some(format!(
            "entity '{}': column '{}' of table '{}' in database '{}' is neither its primary key nor alone in a unique index, so writes cannot match records by it; add one (ALTER TABLE {} ADD PRIMARY KEY ({}), or CREATE UNIQUE INDEX), or make the entity's primary_key a column that has one",
            self.entity,
            self.pk,
            self.sql_name(),
            db.name,
            self.sql_name().sql(),
            quote_ident(&self.pk)
        ))
    }

    /// The updated-at column, or an `unsupported` error naming the entity.
    fn change_column(&self) -> Result<&str> {
        self.updated_at.as_deref().ok_or_else(|| {
            ConnectorError::unsupported(format!(
                "entity '{}': no 'updated_at' column is configured for table '{}', so it has no change feed",
                self.entity, self.sql_name()
            ))
        })
    }

    /// The entity schema built from the table's columns.
    fn schema(&self, columns: &[Column]) -> EntitySchema {
        let fields = columns
            .iter()
            .map(|c| FieldSchema {
                name: c.name.clone(),
                kind: c.field_type(),
                required: (c.not_null && !c.generated) || c.name == self.pk,
            })
            .collect();
        EntitySchema {
            name: self.entity.clone(),
            primary_key: self.pk.clone(),
            fields,
            incremental: self.updated_at.is_some(),
        }
    }

    /// Turns the rows of a `SELECT *` into changes (upserts of whole rows).
    /// The values of boolean columns, which reach the connector as 0 and 1,
    /// become JSON booleans.
    fn changes(&self, db: &Database, rows: &Rows) -> Result<Vec<Change>> {
        if rows.rows.is_empty() {
            return Ok(Vec::new());
        }
        self.changes_of(&db.columns(self)?, rows)
    }

    /// [`Table::changes`] with the table's columns at hand.
    fn changes_of(&self, columns: &[Column], rows: &Rows) -> Result<Vec<Change>> {
        let booleans: Vec<usize> = rows
            .columns
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                schema::find(columns, name).is_some_and(|c| c.field_type() == FieldType::Boolean)
            })
            .map(|(i, _)| i)
            .collect();
        let key_at = self.column_index(rows, &self.pk)?;
        let version_at = match &self.updated_at {
            Some(u) => Some(self.column_index(rows, u)?),
            None => None,
        };
        let actor_at = match &self.actor {
            Some(a) => Some(self.column_index(rows, a)?),
            None => None,
        };
        let mut changes = Vec::with_capacity(rows.rows.len());
        for row in &rows.rows {
            let record = with_booleans(&rows.columns, row, &booleans);
            if row.get(key_at).is_none_or(|v| matches!(v, Value::Null)) {
                // Not a record weir can tell apart from others: a dead letter.
                weir_sdk::reject(
                    &self.entity,
                    None,
                    &format!(
                        "table '{}': a row has no value in '{}', the entity's primary key; give it one, or name a column that identifies every row in primary_key",
                        self.name, self.pk
                    ),
                    &json::to_text(&record),
                );
                continue;
            }
            changes.push(self.change(record, row, key_at, version_at, actor_at));
        }
        Ok(changes)
    }

    /// One row, read as `record`, as a change.
    fn change(
        &self,
        record: json::Record,
        row: &[Value],
        key_at: usize,
        version_at: Option<usize>,
        actor_at: Option<usize>,
    ) -> Change {
        let text_at = |i: usize| row.get(i).filter(|v| !matches!(v, Value::Null)).map(to_id);
        Change {
            entity: self.entity.clone(),
            id: text_at(key_at).unwrap_or_default(),
            op: Operation::Upsert,
            data: Some(json::to_text(&record)),
            previous: None,
            version: version_at.and_then(text_at),
            actor: actor_at.and_then(text_at),
        }
    }

    /// The position of a column in a result; a schema error if it is missing.
    fn column_index(&self, rows: &Rows, column: &str) -> Result<usize> {
        rows.columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                ConnectorError::schema(format!(
                    "entity '{}': column '{column}' is missing from the rows of table '{}'",
                    self.entity,
                    self.sql_name()
                ))
            })
    }
}

/// Reads an entity's settings; blank or null settings mean the defaults.
fn entity_settings(entity: &EntityBinding) -> Result<Settings> {
    match entity.settings.trim() {
        "" | "null" => Ok(Settings::default()),
        _ => weir_sdk::settings(entity),
    }
}

/// An error for an empty setting of an entity.
fn bad_setting(entity: &str, key: &str) -> ConnectorError {
    ConnectorError::invalid_config(format!("entity '{entity}': setting '{key}' is empty"))
}

/// Prefixes an error's message with what it concerns.
fn prefixed(mut err: ConnectorError, what: &str) -> ConnectorError {
    err.message = format!("{what}: {}", err.message);
    err
}

/// A row as a record, the integers of the columns at `booleans` as JSON
/// booleans (0 is false, any other is true).
fn with_booleans(columns: &[String], row: &[Value], booleans: &[usize]) -> json::Record {
    let mut record = row_to_record(columns, row);
    for &i in booleans {
        if let (Some(name), Some(Value::Integer(n))) = (columns.get(i), row.get(i)) {
            record.insert(name.clone(), serde_json::Value::Bool(*n != 0));
        }
    }
    record
}

/// The (time, key) positions of the last of `rows` and of the last settled
/// one (by `settled`, a flag per row; without flags, every row is settled).
/// The time and key are columns `ts_at` and `key_at`.
fn page_ends(
    rows: &Rows,
    settled: Option<&[bool]>,
    ts_at: usize,
    key_at: usize,
) -> (Option<cursor::Position>, Option<cursor::Position>) {
    let position = |row: &Vec<Value>| cursor::Position {
        ts: json_at(row, ts_at),
        id: json_at(row, key_at),
    };
    let end = rows.rows.last().map(position);
    let last_settled = match settled {
        Some(flags) => rows
            .rows
            .iter()
            .zip(flags)
            .rev()
            .find(|(_, settled)| **settled)
            .map(|(row, _)| position(row)),
        None => end.clone(),
    };
    (end, last_settled)
}

/// Removes the last column of `rows` (a flag added to `SELECT *`) and gives
/// its values, as booleans.
fn take_last_column(rows: &mut Rows) -> Vec<bool> {
    rows.columns.pop();
    rows.rows
        .iter_mut()
        .map(|row| row.pop().is_some_and(|v| schema::is_true(&v)))
        .collect()
}

/// The page size to ask for: at least one row, so that a full page always moves forward.
fn page_limit(limit: u32) -> usize {
    limit.max(1) as usize
}

/// The value at a column of a row, as JSON (null when absent).
fn json_at(row: &[Value], index: usize) -> serde_json::Value {
    row.get(index)
        .map(to_json)
        .unwrap_or(serde_json::Value::Null)
}

/// The `sql` connector.
struct SqlConnector;

impl connector::Guest for SqlConnector {
    fn describe() -> Description {
        Description {
            name: "sql".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "tables of a SQLite or PostgreSQL database granted by the manifest"
                .to_string(),
            config_schema: CONFIG_SCHEMA.to_string(),
        }
    }

    fn check(ctx: Context, entities: Vec<EntityBinding>) -> Result<Vec<EntitySchema>> {
        let db = Database::open(&ctx)?;
        sql::query(
            &db.name,
            &Statement {
                sql: "SELECT 1".to_string(),
                params: Vec::new(),
            },
        )
        .map_err(|e| {
            prefixed(
                e.into(),
                &format!("system '{}': database '{}'", db.system, db.name),
            )
        })?;
        let mut slots: Vec<(String, String)> = Vec::new();
        entities
            .iter()
            .map(|entity| {
                let table = Table::of(entity)?;
                let columns = db.columns(&table)?;
                table.verify(&db, &columns)?;
                if let Some(why) = table.unmatchable(&db, &columns) {
                    // Fine for a table weir only reads.
                    weir_sdk::log(weir_sdk::log::Level::Warn, why);
                }
                table.keep_tombstones(&db, &columns)?;
                if let Some(slot) = table.slot(&db)? {
                    // One slot serves one entity: each moves it on.
                    if let Some((other, _)) = slots.iter().find(|(_, s)| *s == slot) {
                        return Err(ConnectorError::invalid_config(format!(
                            "entity '{}': replication slot '{slot}' is already the slot of entity '{other}'; name another with setting 'slot'",
                            table.entity
                        )));
                    }
                    table.keep_slot(&db, &slot)?;
                    slots.push((table.entity.clone(), slot));
                }
                Ok(table.schema(&columns))
            })
            .collect()
    }
}

impl source::Guest for SqlConnector {
    fn read(
        ctx: Context,
        entity: EntityBinding,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page> {
        let db = Database::open(&ctx)?;
        let table = Table::of(&entity)?;
        let limit = page_limit(limit);
        let columns = db.columns(&table)?;
        let select = statements::select_list(db.dialect, &columns);
        let (sql, mut params) = match cursor {
            None => (
                statements::read_page(db.dialect, table.sql_name(), &table.pk, false, &select),
                Vec::new(),
            ),
            Some(text) => {
                let at: ReadCursor = cursor::decode(&text, &table.entity)?;
                (
                    statements::read_page(db.dialect, table.sql_name(), &table.pk, true, &select),
                    vec![to_sql(&at.after)],
                )
            }
        };
        let mut room = limit;
        if params.is_empty() {
            // The first page: the rows without a key first, as rejects
            // (they count towards the limit).
            let keyless =
                statements::keyless_rows(db.dialect, table.sql_name(), &table.pk, &select);
            let rows = db.query(&table.entity, keyless, vec![Value::Integer(limit as i64)])?;
            table.changes_of(&columns, &rows)?;
            room = limit.saturating_sub(rows.rows.len()).max(1);
        }
        params.push(Value::Integer(room as i64));
        let rows = db.query(&table.entity, sql, params)?;
        let items = table.changes_of(&columns, &rows)?;
        let next = match rows.rows.last() {
            Some(last) if rows.rows.len() >= room => {
                let key_at = table.column_index(&rows, &table.pk)?;
                Some(cursor::encode(&ReadCursor {
                    after: json_at(last, key_at),
                }))
            }
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn checkpoint(ctx: Context, entity: EntityBinding) -> Result<String> {
        let table = Table::of(&entity)?;
        let updated_at = table.change_column()?;
        let db = Database::open(&ctx)?;
        // A transaction still open may commit rows stamped before the newest
        // row now: the cursor starts before the horizon, so the first change
        // read takes them (and reads the rows after it again).
        let columns = db.columns(&table)?;
        let key = table.key(db.dialect, &columns);
        let horizon = match db.dialect {
            Dialect::Postgres => Some(db.horizon(&table.entity)?),
            Dialect::Sqlite => None,
        };
        let stamps = horizon.and_then(|h| Some((table.stamps(&columns)?, h)));
        let sql = statements::checkpoint(table.sql_name(), key, updated_at, stamps.map(|s| s.0));
        let params = stamps.map(|s| Value::Real(s.1)).into_iter().collect();
        let rows = db.query(&table.entity, sql, params)?;
        let (ts, id) = match rows.rows.first() {
            Some(row) => (json_at(row, 0), json_at(row, 1)),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let deleted = match &table.tombstones {
            Some(tombstones) => {
                table.keep_tombstones(&db, &columns)?;
                let sql = statements::tombstone_checkpoint(
                    table.sql_name().beside(tombstones),
                    key,
                    horizon.is_some(),
                );
                let params = horizon.map(Value::Real).into_iter().collect();
                let rows = db.query(&table.entity, sql, params)?;
                Some(match rows.rows.first() {
                    Some(row) => cursor::Position {
                        ts: json_at(row, 0),
                        id: json_at(row, 1),
                    },
                    None => cursor::Position {
                        ts: serde_json::Value::Null,
                        id: serde_json::Value::Null,
                    },
                })
            }
            None => None,
        };
        let lsn = match table.slot(&db)? {
            Some(slot) => {
                table.keep_slot(&db, &slot)?;
                Some(table.wal_position(&db)?)
            }
            None => None,
        };
        Ok(cursor::encode(&ChangeCursor {
            ts,
            id,
            deleted,
            settled: lsn.clone(),
            lsn,
            kept: None,
            kept_deleted: None,
        }))
    }

    /// Rows whose (updated-at, primary key) comes after the cursor, oldest first,
    /// after the deletes of the tombstone table when the entity keeps one.
    /// Without tombstones, deleted rows leave no trace, so deletes are not
    /// reported here: the host finds them with full reads.
    fn changes(
        ctx: Context,
        entity: EntityBinding,
        cursor: String,
        limit: u32,
    ) -> Result<ChangeBatch> {
        let table = Table::of(&entity)?;
        let updated_at = table.change_column()?;
        let mut at: ChangeCursor = cursor::decode(&cursor, &table.entity)?;
        let db = Database::open(&ctx)?;
        let mut limit = page_limit(limit);
        // On PostgreSQL, a transaction still open may commit rows (or
        // tombstones) stamped before the newest read now: the horizon, asked
        // for before anything is read, tells which are settled.
        let (columns, horizon) = match db.dialect {
            Dialect::Postgres => (Some(db.columns(&table)?), Some(db.horizon(&table.entity)?)),
            Dialect::Sqlite => (None, None),
        };
        // Deletes first: a row that exists now was written after any
        // tombstone of its key, so its upsert must come after the delete.
        let mut items = Vec::new();
        if let Some(tombstones) = &table.tombstones {
            if at.deleted.is_none() {
                // Tombstones turned on after the cursor was taken: make sure
                // the table and its trigger exist before reading them.
                match &columns {
                    Some(columns) => table.keep_tombstones(&db, columns)?,
                    None => table.keep_tombstones(&db, &db.columns(&table)?)?,
                }
            }
            if !db.dry_run {
                // Tombstones are kept for a while, not for ever.
                db.query(
                    &table.entity,
                    statements::prune_tombstones(db.dialect, table.sql_name().beside(tombstones)),
                    vec![Value::Integer(i64::from(table.tombstone_days))],
                )?;
            }
            let key = match &columns {
                Some(columns) => table.key(db.dialect, columns),
                None => table.pk.as_str().into(),
            };
            let (deletes, last, settled) =
                table.deletes(&db, key, tombstones, at.deleted.as_ref(), limit, horizon)?;
            let full = deletes.len() >= limit;
            limit -= deletes.len().min(limit - 1);
            items = deletes;
            // With no tombstone yet, the cursor still records that the table
            // is set up. The position goes back to the last settled tombstone
            // only when the pass ends (below): until then, the pass reads on.
            let mut deleted = at.deleted.take().unwrap_or_else(cursor::Position::start);
            deleted.advance(&mut at.kept_deleted, last, settled);
            at.deleted = Some(deleted);
            if full {
                return Ok(ChangeBatch {
                    items,
                    cursor: cursor::encode(&at),
                    more: true,
                });
            }
        }
        if let Some(slot) = table.slot(&db)? {
            let from = match at.lsn.take() {
                Some(lsn) => lsn,
                None => {
                    // Logical deletes turned on after the cursor was taken:
                    // they are read from now on.
                    table.keep_slot(&db, &slot)?;
                    table.wal_position(&db)?
                }
            };
            let settled = at.settled.take().unwrap_or_else(|| from.clone());
            let (deletes, last, seen) =
                table.logical_deletes(&db, &slot, (&from, &settled), limit)?;
            at.lsn = Some(last.unwrap_or_else(|| from.clone()));
            at.settled = Some(from);
            // The slot had more changes of the database than were looked at.
            let full = !db.dry_run && seen >= limit;
            limit -= deletes.len().min(limit - 1);
            items.extend(deletes);
            if full {
                return Ok(ChangeBatch {
                    items,
                    cursor: cursor::encode(&at),
                    more: true,
                });
            }
        }
        let stamps = match (&columns, horizon) {
            (Some(columns), Some(h)) => table.stamps(columns).map(|stamps| (stamps, h)),
            _ => None,
        };
        let after = !at.ts.is_null();
        let flagged = stamps.is_some();
        let select = match &columns {
            Some(columns) => statements::select_list(db.dialect, columns),
            None => "*".to_string(),
        };
        let sql = statements::changes(
            db.dialect,
            table.sql_name(),
            &table.pk,
            updated_at,
            after,
            stamps.map(|s| s.0),
            &select,
        );
        let mut params = if after {
            vec![to_sql(&at.ts), to_sql(&at.id)]
        } else {
            Vec::new()
        };
        params.push(Value::Integer(limit as i64));
        params.extend(stamps.map(|s| Value::Real(s.1)));
        let mut rows = db.query(&table.entity, sql, params)?;
        let settled = flagged.then(|| take_last_column(&mut rows));
        items.extend(match &columns {
            Some(columns) => table.changes_of(columns, &rows)?,
            None => table.changes(&db, &rows)?,
        });
        let more = rows.rows.len() >= limit;
        let (ts_at, key_at) = match rows.rows.is_empty() {
            true => (0, 0),
            false => (
                table.column_index(&rows, updated_at)?,
                table.column_index(&rows, &table.pk)?,
            ),
        };
        let (end, settled) = page_ends(&rows, settled.as_deref(), ts_at, key_at);
        at.step(end, settled, more);
        if !more {
            at.settle_deleted();
        }
        Ok(ChangeBatch {
            items,
            cursor: cursor::encode(&at),
            more,
        })
    }
}

impl destination::Guest for SqlConnector {
    /// Writes the whole batch with one `batch` call: runs of alike items share a
    /// multi-row statement, and each statement runs in its own savepoint. If a
    /// multi-row statement is refused, its items are written one by one in a
    /// second batch, so that only the refused items fail. A batch of new
    /// rows into a PostgreSQL table may first be loaded with one `copy-in`
    /// call ([`write::Target::copy_of`]); if that fails, it is written as above.
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<WriteItem>,
    ) -> Result<Vec<Result<Written>>> {
        let db = Database::open(&ctx)?;
        let table = Table::of(&entity)?;
        let columns = db.columns(&table)?;
        table.verify(&db, &columns)?;
        if let Some(why) = table.unmatchable(&db, &columns) {
            return Err(ConnectorError::schema(why));
        }
        let key = schema::find(&columns, &table.pk);
        let integer_key = key.is_some_and(|c| c.field_type() == FieldType::Integer);
        let name = table.sql_name().sql();
        let target = write_target(&db, &table, &columns);

        let mut outcomes: Vec<Option<Result<Written>>> = items.iter().map(|_| None).collect();
        let mut prepared = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match target.prepare(item) {
                Ok(p) => prepared.push((i, p)),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        // Keys written as given move the key's sequence past them first.
        let sequence = key.and_then(|c| c.sequence.as_deref());
        let largest = prepared
            .iter()
            .filter_map(|(_, p)| p.given_key(&table.pk))
            .max();
        if let (Some(sequence), Some(largest), true) = (sequence, largest, integer_key) {
            table.catch_up_sequence(&db, sequence, largest);
        }
        let mut chunks = target.chunks(prepared);
        // New rows in bulk (a first load): COPY, or the upserts if it fails.
        let copy = target
            .copy_of(&chunks)
            .filter(|_| first_copy_finds_no_rows(&db, &table.entity, &name, &target, &chunks));
        if let Some(copy) = copy {
            let rows = target.copy_rows(&mut chunks);
            match sql::copy_in(&db.name, &copy, &rows) {
                Ok(_) => {
                    for (i, o) in target.copied(std::mem::take(&mut chunks)) {
                        outcomes[i] = Some(o);
                    }
                }
                Err(e) => {
                    let why = ConnectorError::from(e).message;
                    note_copy_failed(&name, &why);
                    target.put_back(&mut chunks, rows);
                }
            }
        }
        let mut singles = Vec::new();
        for (chunk, result) in db.run_chunks(&table.entity, chunks)? {
            match target.chunk_outcomes(&chunk, result) {
                Some(done) => done.into_iter().for_each(|(i, o)| outcomes[i] = Some(o)),
                None => singles.extend(target.singles(chunk)),
            }
        }
        // A multi-row statement that failed: each of its items alone, in one
        // more batch, to learn which were refused.
        for (chunk, result) in db.run_chunks(&table.entity, singles)? {
            if let Some(done) = target.chunk_outcomes(&chunk, result) {
                done.into_iter().for_each(|(i, o)| outcomes[i] = Some(o));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(ConnectorError::transient(format!(
                        "entity '{}': database '{}' returned fewer outcomes than statements",
                        table.entity, db.name
                    )))
                })
            })
            .collect())
    }
}

/// How a batch writes to `table`: its key, the columns the database
/// computes, and whether `COPY` may load it.
fn write_target<'a>(db: &Database, table: &'a Table, columns: &'a [Column]) -> write::Target<'a> {
    let key = schema::find(columns, &table.pk);
    let integer_key = key.is_some_and(|c| c.field_type() == FieldType::Integer);
    let name = table.sql_name().sql();
    write::Target {
        dialect: db.dialect,
        entity: &table.entity,
        table: table.sql_name(),
        pk: &table.pk,
        key_form: table.key(db.dialect, columns).form,
        updated_at: table.updated_at.as_deref(),
        integer_key,
        // An identity column other than the key is the database's too.
        generated: columns
            .iter()
            .filter(|c| c.generated || (c.always_identity && c.name != table.pk))
            .map(|c| c.name.as_str())
            .collect(),
        arrays: columns
            .iter()
            .filter(|c| db.dialect == Dialect::Postgres && c.sql_type == "ARRAY")
            .map(|c| c.name.as_str())
            .collect(),
        overriding: db.dialect == Dialect::Postgres && key.is_some_and(|c| c.always_identity),
        copy: db.dialect == Dialect::Postgres
            && key
                .is_some_and(|c| c.copy && write::COPIED_KEY_TYPES.contains(&c.sql_type.as_str()))
            && !copy_failed(&name),
        bytea: columns
            .iter()
            .filter(|c| c.sql_type == "bytea")
            .map(|c| c.name.as_str())
            .collect(),
        compared_as: columns
            .iter()
            .filter(|_| db.dialect == Dialect::Postgres)
            .filter_map(|c| {
                let ty = match c.sql_type.as_str() {
                    "json" => "jsonb",
                    "xml" | "point" | "line" | "lseg" | "box" | "path" | "polygon" | "circle" => {
                        "text"
                    }
                    _ => return None,
                };
                Some((c.name.as_str(), ty))
            })
            .collect(),
    }
}

thread_local! {
    /// The tables a `COPY` failed into in this run (an instance lives for one run).
    static COPY_FAILED: std::cell::RefCell<std::collections::BTreeSet<String>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// Whether a `COPY` into `table` failed earlier in the run: the run's later
/// batches into it are upserts, since rows that exist already are what
/// makes a `COPY` fail.
fn copy_failed(table: &str) -> bool {
    COPY_FAILED.with(|f| f.borrow().contains(table))
}

/// Whether a batch that [`write::Target::copy_of`] takes may be copied into
/// `table`: at the run's first such batch, none of its keys is in the table
/// already ([`write::Target::copy_probe`]); later ones go ahead, and a `COPY`
/// that fails still falls back to upserts. A probe that finds a row turns
/// `COPY` off for the run, as a failed `COPY` does; one that fails lets the
/// `COPY` find out.
fn first_copy_finds_no_rows(
    db: &Database,
    entity: &str,
    table: &str,
    target: &write::Target<'_>,
    chunks: &[write::Chunk],
) -> bool {
    thread_local! {
        static PROBED: std::cell::RefCell<std::collections::BTreeSet<String>> =
            const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
    }
    if !PROBED.with(|p| p.borrow_mut().insert(table.to_string())) {
        return true;
    }
    let probe = target.copy_probe(chunks);
    match db.query(entity, probe.sql, probe.params) {
        Ok(found) if !found.rows.is_empty() => {
            note_copy_failed(table, "rows of its first batch are there already");
            false
        }
        _ => true,
    }
}

/// Records that a `COPY` into `table` failed or would, and logs why (once).
fn note_copy_failed(table: &str, why: &str) {
    if COPY_FAILED.with(|f| f.borrow_mut().insert(table.to_string())) {
        weir_sdk::log(
            weir_sdk::log::Level::Debug,
            format!("no COPY into {table} in this run ({why}): its batches are upserted instead"),
        );
    }
}

impl keyed_destination::Guest for SqlConnector {
    /// Writes as `destination.write` does, but for updates that carry what
    /// the host last saw: those set only the columns they change, and only
    /// where the row still holds the seen values ([`guarded`]); a row that
    /// does not is answered `changed`, as it is now.
    fn write(
        ctx: Context,
        entity: EntityBinding,
        items: Vec<KeyedWrite>,
    ) -> Result<Vec<KeyedOutcome>> {
        let n = items.len();
        let (checked, plain) = guarded::split(items);
        let mut outcomes: Vec<Option<KeyedOutcome>> = (0..n).map(|_| None).collect();
        let mut plain: Vec<(usize, WriteItem)> =
            plain.into_iter().map(|(at, k)| (at, k.item)).collect();
        if !checked.is_empty() {
            for (at, done) in guarded::write(&ctx, &entity, checked)? {
                match done {
                    guarded::Done::Outcome(o) => outcomes[at] = Some(o),
                    guarded::Done::Plain(item) => plain.push((at, item)),
                }
            }
        }
        if !plain.is_empty() {
            plain.sort_by_key(|(at, _)| *at);
            let (places, items): (Vec<usize>, Vec<WriteItem>) = plain.into_iter().unzip();
            let results = <SqlConnector as destination::Guest>::write(ctx, entity, items)?;
            for (at, o) in places.into_iter().zip(weir_sdk::keyed_outcomes(results)) {
                outcomes[at] = Some(o);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    KeyedOutcome::Failed(ConnectorError::transient(
                        "the write returned no outcome for an item",
                    ))
                })
            })
            .collect())
    }

    /// The rows equal to each probe's fields (text without case or
    /// surrounding space), at most ten each, read with one statement per
    /// hundred probes ([`statements::find`]).
    fn find(ctx: Context, entity: EntityBinding, probes: Vec<Probe>) -> Result<Vec<Vec<Change>>> {
        let db = Database::open(&ctx)?;
        let table = Table::of(&entity)?;
        let columns = db.columns(&table)?;
        let probes = probes
            .iter()
            .map(|p| json::parse_record(&p.fields))
            .collect::<Result<Vec<_>>>()?;
        for field in probes.iter().flat_map(|p| p.keys()) {
            if !columns.iter().any(|c| &c.name == field) {
                return Err(ConnectorError::schema(format!(
                    "table {} has no column '{field}' to find records by",
                    table.name
                )));
            }
        }
        let select = statements::select_list(db.dialect, &columns);
        let mut found = vec![Vec::new(); probes.len()];
        for (n, chunk) in probes.chunks(100).enumerate() {
            let fields: Vec<Vec<(&str, &serde_json::Value)>> = chunk
                .iter()
                .map(|p| p.iter().map(|(k, v)| (k.as_str(), v)).collect())
                .collect();
            let (sql, params) = statements::find(db.dialect, table.sql_name(), &select, &fields);
            let rows = db.query(&table.entity, sql, params)?;
            for change in table.changes_of(&columns, &rows)? {
                let Some(Ok(data)) = change.data.as_deref().map(json::parse_record) else {
                    continue;
                };
                for (i, probe) in chunk.iter().enumerate() {
                    let at = n * 100 + i;
                    if found[at].len() < 10 && json::probe_matches(probe, &data) {
                        found[at].push(change.clone());
                    }
                }
            }
        }
        Ok(found)
    }
}

export!(SqlConnector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settings_key_of_the_schema_is_read() {
        let schema: serde_json::Value = serde_json::from_str(CONFIG_SCHEMA).unwrap();
        let mut full = serde_json::Map::new();
        for (key, prop) in schema["$defs"]["settings"]["properties"]
            .as_object()
            .unwrap()
        {
            let value = match prop.get("type").and_then(|t| t.as_str()) {
                Some("integer") => serde_json::json!(1),
                _ => prop["enum"]
                    .get(0)
                    .cloned()
                    .unwrap_or(serde_json::json!("x")),
            };
            full.insert(key.clone(), value);
        }
        let s: Settings = serde_json::from_value(full.into()).unwrap();
        assert_eq!(s.tombstone_days, Some(1));
        assert_eq!(s.deletes.as_deref(), Some("tombstones"));
        let c: Config = serde_json::from_value(serde_json::json!({"database": "d"})).unwrap();
        assert_eq!(c.database, "d");
    }

    #[test]
    fn boolean_columns_read_as_json_booleans() {
        let columns = vec!["id".to_string(), "vip".to_string(), "n".to_string()];
        let row = vec![Value::Integer(7), Value::Integer(1), Value::Integer(0)];
        let record = with_booleans(&columns, &row, &[1]);
        assert_eq!(record["id"], serde_json::json!(7));
        assert_eq!(record["vip"], serde_json::json!(true));
        assert_eq!(record["n"], serde_json::json!(0), "not a boolean column");
        let null = with_booleans(
            &columns,
            &[Value::Integer(7), Value::Null, Value::Null],
            &[1],
        );
        assert_eq!(null["vip"], serde_json::Value::Null);
        let off = with_booleans(
            &columns,
            &[Value::Integer(7), Value::Integer(0), Value::Null],
            &[1],
        );
        assert_eq!(off["vip"], serde_json::json!(false));
    }
}
