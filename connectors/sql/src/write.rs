//! Turning write items into statements of one batch, and statement outcomes back
//! into item outcomes. Pure functions: the host call happens in the caller.

use weir_sdk::json::{self, Record};
use weir_sdk::sql::{Dialect, Rows, Statement, Value};
use weir_sdk::sql_util::{into_sql, quote_ident, to_id};
use weir_sdk::{ConnectorError, Operation, Result, WriteItem, Written};

use crate::statements::{self, Name};

/// The table a batch writes to, as the statements need it.
pub struct Target<'a> {
    /// The dialect of the database.
    pub dialect: Dialect,
    /// The entity name, for messages.
    pub entity: &'a str,
    /// The table.
    pub table: Name<'a>,
    /// The primary-key column.
    pub pk: &'a str,
    /// The form the database returns the key in ([`statements::Key`]).
    pub key_form: statements::KeyForm,
    /// The updated-at column, if configured.
    pub updated_at: Option<&'a str>,
    /// Whether the primary-key column holds integers.
    pub integer_key: bool,
    /// The columns the database computes: left out of every write.
    pub generated: Vec<&'a str>,
    /// The array columns (PostgreSQL): a JSON array given for one, or a
    /// text holding one (as reads give them), is written as an array.
    pub arrays: Vec<&'a str>,
    /// Whether a key given is written with `OVERRIDING SYSTEM VALUE` (a
    /// PostgreSQL key column `GENERATED ALWAYS AS IDENTITY`).
    pub overriding: bool,
    /// Whether a batch of new rows may be loaded with `COPY`: PostgreSQL, a
    /// table that takes `COPY` as it takes inserts, a key of one of the
    /// [`COPIED_KEY_TYPES`], and no `COPY` into the table failed earlier in
    /// the run.
    pub copy: bool,
    /// The `bytea` columns: a write gives their bytes as plain hex text (as
    /// reads give them), which a parameter takes as hex but `COPY` would
    /// take as the bytes of the text; [`Target::copy_rows`] turns it into
    /// bytes.
    pub bytea: Vec<&'a str>,
    /// The columns of a type without equality (PostgreSQL `json`, `xml`,
    /// geometric types), with the type a condition compares them as.
    pub compared_as: Vec<(&'a str, &'static str)>,
}

/// The bytes of a text value in plain hex (an even number of hex digits).
fn hex_bytes(value: &Value) -> Option<Vec<u8>> {
    let Value::Text(s) = value else { return None };
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a planned statement does, to read its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Creates a record; the database assigns its key.
    Create,
    /// Creates or updates the record with this id.
    Upsert(String),
    /// Deletes the record with this id.
    Delete(String),
}

/// The most rows one multi-row statement writes.
const MAX_ROWS: usize = 500;
/// The fewest rows a batch loads with `COPY`: below, the transaction of its
/// own costs more than it saves.
const COPY_AT_LEAST: usize = 100;
/// The key types whose values PostgreSQL keeps as a write spells them
/// (integers when spelt as PostgreSQL prints them, which
/// [`Target::copy_of`] checks): a row loaded with `COPY` is reported under
/// the key it was given, which reads give back. Other keys (`uuid`,
/// `char(n)`, `inet`...) may be spelt anew, and only the upserts'
/// `RETURNING` says how.
pub const COPIED_KEY_TYPES: &[&str] =
    &["bigint", "integer", "smallint", "text", "character varying"];
/// The most parameters of one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 30_000;

/// An item checked and parsed, ready to be combined with others.
pub enum Prepared {
    /// A new record; the database assigns the key unless the record holds it.
    Create(Record),
    /// Creates or updates the record with this id (the key field left out).
    Upsert(String, Record),
    /// Deletes the record with this id.
    Delete(String),
}

/// One statement of a batch and the items (by index) it writes.
pub struct Chunk {
    /// The statement.
    pub statement: Statement,
    /// The items it writes, in the order of its rows, with what it does to each.
    pub members: Vec<(usize, Action)>,
    /// The columns its rows write (after the key, for upserts and deletes),
    /// to write them one by one when the statement fails.
    columns: Vec<String>,
}

/// A statement that takes no time to make: the placeholder of a chunk's
/// statement while the batch holds it.
pub fn no_statement() -> Statement {
    Statement {
        sql: String::new(),
        params: Vec::new(),
    }
}

impl Prepared {
    /// The action, for reading the outcome.
    fn action(&self) -> Action {
        match self {
            Prepared::Create(_) => Action::Create,
            Prepared::Upsert(id, _) => Action::Upsert(id.clone()),
            Prepared::Delete(id) => Action::Delete(id.clone()),
        }
    }

    /// The columns written, for grouping: rows of one statement share them.
    fn columns(&self) -> Vec<&str> {
        match self {
            Prepared::Create(r) | Prepared::Upsert(_, r) => r.keys().map(String::as_str).collect(),
            Prepared::Delete(_) => Vec::new(),
        }
    }

    /// Whether it writes exactly `columns`, in that order.
    fn writes_columns(&self, columns: &[&str]) -> bool {
        match self {
            Prepared::Create(r) | Prepared::Upsert(_, r) => {
                r.len() == columns.len() && r.keys().zip(columns).all(|(a, b)| a == b)
            }
            Prepared::Delete(_) => columns.is_empty(),
        }
    }

    /// The integer key it writes as given (not one the database assigns).
    pub fn given_key(&self, pk: &str) -> Option<i64> {
        match self {
            Prepared::Upsert(id, _) => id.parse().ok(),
            Prepared::Create(r) => r.get(pk).and_then(|k| {
                k.as_i64()
                    .or_else(|| k.as_str().and_then(|s| s.parse().ok()))
            }),
            Prepared::Delete(_) => None,
        }
    }

    /// The key that must not repeat within one statement.
    fn key(&self) -> Option<&str> {
        match self {
            Prepared::Create(_) => None,
            Prepared::Upsert(id, _) | Prepared::Delete(id) => Some(id),
        }
    }
}

impl Target<'_> {
    /// Checks and parses one item, or says why it is rejected.
    pub fn prepare(&self, item: &WriteItem) -> Result<Prepared> {
        match (&item.op, &item.id) {
            (Operation::Delete, Some(id)) => Ok(Prepared::Delete(id.clone())),
            (Operation::Delete, None) => Err(ConnectorError::rejected(format!(
                "entity '{}': delete without a record id",
                self.entity
            ))),
            (Operation::Upsert, id) => {
                let mut record = self.record(id.as_deref(), item.data.as_deref())?;
                Ok(match id {
                    Some(id) => {
                        // The id given wins over a primary-key field left in the body.
                        record.remove(self.pk);
                        Prepared::Upsert(id.clone(), record)
                    }
                    None => Prepared::Create(record),
                })
            }
        }
    }

    /// Combines consecutive items of one kind that write the same columns into
    /// multi-row statements (no key twice in one statement); an item that fits
    /// with no neighbour gets a statement of its own.
    pub fn chunks(&self, items: Vec<(usize, Prepared)>) -> Vec<Chunk> {
        let mut runs = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let first = &items[start].1;
            let columns = first.columns();
            let width = (columns.len() + usize::from(matches!(first, Prepared::Upsert(..)))).max(1);
            let limit = MAX_ROWS.min(MAX_PARAMS / width).max(1);
            let mut keys = std::collections::HashSet::new();
            let mut end = start;
            while end < items.len() && end - start < limit {
                let p = &items[end].1;
                let same = std::mem::discriminant(p) == std::mem::discriminant(first)
                    && p.writes_columns(&columns)
                    && p.key().is_none_or(|k| keys.insert(k));
                if !same {
                    break;
                }
                end += 1;
            }
            // An empty create (no columns) cannot share a statement.
            if matches!(first, Prepared::Create(_)) && columns.is_empty() {
                end = start + 1;
            }
            runs.push(end - start);
            start = end;
        }
        let mut items = items.into_iter();
        runs.into_iter()
            .map(|n| self.chunk(items.by_ref().take(n).collect()))
            .collect()
    }

    /// The statement for a run of items of one kind and the same columns.
    pub fn chunk(&self, run: Vec<(usize, Prepared)>) -> Chunk {
        let members: Vec<(usize, Action)> = run.iter().map(|(i, p)| (*i, p.action())).collect();
        let columns: Vec<String> = run[0].1.columns().into_iter().map(String::from).collect();
        let mut params = Vec::with_capacity(run.len() * (columns.len() + 1));
        for (_, p) in run {
            match p {
                Prepared::Delete(id) => params.push(self.key(&id)),
                Prepared::Create(r) => params.extend(r.into_iter().map(|(_, v)| into_sql(v))),
                Prepared::Upsert(id, r) => {
                    params.push(self.key(&id));
                    params.extend(r.into_iter().map(|(_, v)| into_sql(v)));
                }
            }
        }
        let sql = self.sql(&members[0].1, &columns, members.len());
        Chunk {
            statement: Statement { sql, params },
            members,
            columns,
        }
    }

    /// The text of a statement doing `action` to `rows` rows that write `columns`.
    fn sql(&self, action: &Action, columns: &[String], rows: usize) -> String {
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let key = statements::Key {
            name: self.pk,
            form: self.key_form,
        };
        match action {
            Action::Delete(_) => statements::delete_many(self.dialect, self.table, self.pk, rows),
            // A record with no column gets a statement of its own (`chunks`).
            Action::Create => statements::insert_many(
                self.dialect,
                self.table,
                key,
                self.updated_at,
                &columns,
                rows,
                self.overriding,
            ),
            Action::Upsert(_) => statements::upsert_many(
                self.dialect,
                self.table,
                key,
                self.updated_at,
                &columns,
                rows,
                self.overriding,
            ),
        }
    }

    /// The `COPY` statement that loads the rows of all `chunks` at once, if
    /// they may be: only upserts, of the same columns, no key twice (nor an
    /// integer key spelt otherwise than PostgreSQL prints it, `007`), none
    /// into a column `COPY` cannot fill, and enough of them. Should a row
    /// exist already, the `COPY` fails whole and the chunks are written as
    /// they are.
    pub fn copy_of(&self, chunks: &[Chunk]) -> Option<String> {
        let first = chunks.first()?;
        let rows: usize = chunks.iter().map(|c| c.members.len()).sum();
        if !self.copy || rows < COPY_AT_LEAST {
            return None;
        }
        let mut keys = std::collections::HashSet::with_capacity(rows);
        for chunk in chunks {
            if chunk.columns != first.columns {
                return None;
            }
            for (_, action) in &chunk.members {
                match action {
                    Action::Upsert(id)
                        if keys.insert(id.as_str())
                            && (!self.integer_key
                                || id.parse::<i64>().is_ok_and(|n| n.to_string() == *id)) => {}
                    _ => return None,
                }
            }
        }
        let names: Vec<String> = std::iter::once(self.pk)
            .chain(first.columns.iter().map(String::as_str))
            .map(quote_ident)
            .collect();
        Some(format!(
            "COPY {} ({}) FROM STDIN",
            self.table.sql(),
            names.join(", ")
        ))
    }

    /// A query that returns a row if a key of `chunks` (a batch that
    /// [`Target::copy_of`] takes) is in the table already: the run's first
    /// `COPY` into a table asks it first, since in steady state a batch of
    /// updates would make the `COPY` fail (an error in the database's log
    /// and a batch's upload spent).
    pub fn copy_probe(&self, chunks: &[Chunk]) -> Statement {
        let params: Vec<Value> = chunks
            .iter()
            .flat_map(|c| &c.members)
            .filter_map(|(_, action)| match action {
                Action::Upsert(id) => Some(match id.parse() {
                    Ok(n) if self.integer_key => Value::Integer(n),
                    _ => Value::Text(id.clone()),
                }),
                _ => None,
            })
            .collect();
        let slots: Vec<String> = (1..=params.len())
            .map(|n| statements::placeholder(self.dialect, n))
            .collect();
        Statement {
            sql: format!(
                "SELECT 1 FROM {} WHERE {} IN ({}) LIMIT 1",
                self.table.sql(),
                quote_ident(self.pk),
                slots.join(", ")
            ),
            params,
        }
    }

    /// The rows of `chunks` for [`Target::copy_of`], taken out of their
    /// statements; [`Target::put_back`] returns them. Plain hex text for a
    /// `bytea` column becomes its bytes, which statements take as well.
    pub fn copy_rows(&self, chunks: &mut [Chunk]) -> Vec<Vec<Value>> {
        let mut rows = Vec::new();
        for chunk in chunks {
            let width = chunk.columns.len() + 1;
            let bytea: Vec<usize> = chunk
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| self.bytea.contains(&c.as_str()))
                .map(|(i, _)| i + 1)
                .collect();
            let mut params = std::mem::take(&mut chunk.statement.params).into_iter();
            for _ in 0..chunk.members.len() {
                let mut row: Vec<Value> = params.by_ref().take(width).collect();
                for &i in &bytea {
                    if let Some(bytes) = row.get(i).and_then(hex_bytes) {
                        row[i] = Value::Blob(bytes);
                    }
                }
                rows.push(row);
            }
        }
        rows
    }

    /// Returns rows taken by [`Target::copy_rows`] to their statements.
    pub fn put_back(&self, chunks: &mut [Chunk], rows: Vec<Vec<Value>>) {
        let mut rows = rows.into_iter();
        for chunk in chunks {
            chunk.statement.params = rows.by_ref().take(chunk.members.len()).flatten().collect();
        }
    }

    /// What each item of chunks loaded by `COPY` became: written under its key.
    pub fn copied(&self, chunks: Vec<Chunk>) -> Vec<(usize, Result<Written>)> {
        chunks
            .into_iter()
            .flat_map(|c| c.members)
            .map(|(i, action)| (i, self.written(&action, None)))
            .collect()
    }

    /// A chunk's items each in a statement of its own, to learn which of
    /// them made the whole statement fail.
    pub fn singles(&self, chunk: Chunk) -> Vec<Chunk> {
        let Chunk {
            statement,
            members,
            columns,
        } = chunk;
        if members.len() < 2 {
            return Vec::new();
        }
        let width = statement.params.len() / members.len();
        let mut params = statement.params.into_iter();
        members
            .into_iter()
            .map(|(i, action)| Chunk {
                statement: Statement {
                    sql: self.sql(&action, &columns, 1),
                    params: params.by_ref().take(width).collect(),
                },
                members: vec![(i, action)],
                columns: columns.clone(),
            })
            .collect()
    }

    /// The outcomes of a chunk's items, or `None` when the chunk failed as a
    /// whole and its items must be written one by one to learn which failed.
    pub fn chunk_outcomes(
        &self,
        chunk: &Chunk,
        result: std::result::Result<Rows, String>,
    ) -> Option<Vec<(usize, Result<Written>)>> {
        if let [(i, action)] = chunk.members.as_slice() {
            return Some(vec![(*i, self.outcome(action, result))]);
        }
        let rows = result.ok()?;
        if matches!(chunk.members.first(), Some((_, Action::Delete(_)))) {
            return Some(
                chunk
                    .members
                    .iter()
                    .map(|(i, a)| (*i, self.outcome(a, Ok(empty()))))
                    .collect(),
            );
        }
        // The statement succeeded, so it must not run again. Rows come back in
        // the order of the VALUES; an upsert's row is found by its key first.
        // Fewer rows than records (a trigger skipped some) leave the records
        // without a row refused, rather than guessed.
        let positional = rows.rows.len() == chunk.members.len();
        let by_key: std::collections::HashMap<String, usize> = rows
            .rows
            .iter()
            .enumerate()
            .filter_map(|(n, r)| r.first().map(|k| (to_id(k), n)))
            .collect();
        Some(
            chunk
                .members
                .iter()
                .enumerate()
                .map(|(n, (i, action))| {
                    let at = match action {
                        Action::Upsert(id) => by_key.get(id).copied(),
                        _ => None,
                    }
                    .or(positional.then_some(n));
                    let Some(at) = at else {
                        // A record with only its key that exists already in a
                        // table whose key is always an identity is left as it
                        // is (`DO NOTHING`): no row comes back.
                        if self.overriding
                            && chunk.columns.is_empty()
                            && matches!(action, Action::Upsert(_))
                        {
                            return (*i, self.written(action, None));
                        }
                        let id = match action {
                            Action::Upsert(id) | Action::Delete(id) => Some(id.as_str()),
                            Action::Create => None,
                        };
                        return (
                            *i,
                            Err(self.rejected(
                                id,
                                "the database returned no row for it (did a trigger skip it?)",
                            )),
                        );
                    };
                    (*i, self.written(action, rows.rows.get(at)))
                })
                .collect(),
        )
    }

    /// Reads the outcome of the statement planned for an item.
    pub fn outcome(
        &self,
        action: &Action,
        result: std::result::Result<Rows, String>,
    ) -> Result<Written> {
        let id = match action {
            Action::Create => None,
            Action::Upsert(id) | Action::Delete(id) => Some(id.as_str()),
        };
        let rows = result.map_err(|msg| self.failed(id, &msg))?;
        self.written(action, rows.rows.first())
    }

    /// What a statement that succeeded wrote for an item, from the row it
    /// returned for it (the key, then the version), if any.
    fn written(&self, action: &Action, row: Option<&Vec<Value>>) -> Result<Written> {
        let returned_id = row
            .and_then(|r| r.first())
            .filter(|v| !matches!(v, Value::Null))
            .map(to_id);
        let version = row
            .and_then(|r| r.get(1))
            .filter(|v| !matches!(v, Value::Null))
            .map(to_id);
        match action {
            Action::Delete(id) => Ok(Written {
                id: id.clone(),
                version: None,
            }),
            Action::Upsert(id) => Ok(Written {
                id: returned_id.unwrap_or_else(|| id.clone()),
                version,
            }),
            Action::Create => match returned_id {
                Some(id) => Ok(Written { id, version }),
                None => Err(self.rejected(None, "the database returned no primary key")),
            },
        }
    }

    /// A statement error for one record: a passing one (a deadlock, a lock
    /// that could not be had, a lost connection, a busy SQLite file) is
    /// transient, so the host tries again later; any other is a refusal.
    fn failed(&self, id: Option<&str>, message: &str) -> ConnectorError {
        let refused = self.rejected(id, message);
        if weir_sdk::sql_util::passing(message) {
            ConnectorError::transient(refused.message)
        } else {
            refused
        }
    }

    /// A rejection of the record `id` (none for a new record).
    fn rejected(&self, id: Option<&str>, message: &str) -> ConnectorError {
        match id {
            Some(id) => ConnectorError::rejected(format!(
                "entity '{}': record '{id}': {message}",
                self.entity
            )),
            None => {
                ConnectorError::rejected(format!("entity '{}': new record: {message}", self.entity))
            }
        }
    }

    /// Parses the body of an upsert.
    /// The record of an upsert, without the columns the database computes.
    fn record(&self, id: Option<&str>, data: Option<&str>) -> Result<Record> {
        let text = data.ok_or_else(|| self.rejected(id, "upsert without a record body"))?;
        let mut record = json::parse_record(text).map_err(|e| self.rejected(id, &e.message))?;
        for column in &self.generated {
            record.remove(*column);
        }
        for column in &self.arrays {
            if let Some(value) = record.get_mut(*column) {
                if let Some(literal) = array_literal(value) {
                    *value = serde_json::Value::String(literal);
                }
            }
        }
        Ok(record)
    }

    /// The record of an upsert, as [`Target::prepare`] reads it.
    pub(crate) fn record_of(&self, id: Option<&str>, data: Option<&str>) -> Result<Record> {
        self.record(id, data)
    }

    /// A value of `column` as a write gives it to the database: a JSON
    /// array for an array column as its array literal.
    pub(crate) fn cell(&self, column: &str, value: serde_json::Value) -> serde_json::Value {
        if self.arrays.contains(&column) {
            if let Some(literal) = array_literal(&value) {
                return serde_json::Value::String(literal);
            }
        }
        value
    }

    /// The parameter holding a record id, as [`Target::key`] makes it.
    pub(crate) fn key_param(&self, id: &str) -> Value {
        self.key(id)
    }

    /// The parameter holding a record id: an integer for integer keys when it parses as one.
    fn key(&self, id: &str) -> Value {
        match id.parse::<i64>() {
            Ok(n) if self.integer_key => Value::Integer(n),
            _ => Value::Text(id.to_string()),
        }
    }
}

/// PostgreSQL's text form of an array (`{"a","b"}`) for a JSON array, or a
/// text holding one; `None` for another value (written as it is). Numbers
/// keep their digits as the JSON text has them (no trip through `f64`).
fn array_literal(value: &serde_json::Value) -> Option<String> {
    use serde_json::value::RawValue;
    fn put(text: &str, out: &mut String) -> Option<()> {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        out.push('{');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let raw = item.get().trim();
            match raw.as_bytes().first() {
                Some(b'[') => put(raw, out)?,
                Some(b'n') => out.push_str("NULL"),
                first => {
                    let text = match first {
                        Some(b'"') => serde_json::from_str::<String>(raw).ok()?,
                        _ => raw.to_string(),
                    };
                    out.push('"');
                    out.push_str(&text.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                }
            }
        }
        out.push('}');
        Some(())
    }
    let text = match value {
        serde_json::Value::Array(_) => value.to_string(),
        serde_json::Value::String(s) if s.trim_start().starts_with('[') => s.clone(),
        _ => return None,
    };
    let mut out = String::new();
    put(&text, &mut out)?;
    // Arrays holding only empty arrays (`[[]]`) have no elements: PostgreSQL
    // spells that `{}` and refuses `{{}}`.
    if out.bytes().all(|b| matches!(b, b'{' | b'}' | b',')) {
        out = "{}".to_string();
    }
    Some(out)
}

/// A result without rows.
fn empty() -> Rows {
    Rows {
        columns: Vec::new(),
        rows: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::ErrorKind;

    /// Generated binding types have no `PartialEq`; compare their debug forms.
    fn debug<T: std::fmt::Debug + ?Sized>(value: &T) -> String {
        format!("{value:?}")
    }

    fn target(integer_key: bool) -> Target<'static> {
        Target {
            dialect: Dialect::Sqlite,
            entity: "contacts",
            table: "people".into(),
            pk: "id",
            key_form: statements::KeyForm::AsIs,
            updated_at: Some("updated"),
            integer_key,
            generated: Vec::new(),
            arrays: Vec::new(),
            compared_as: Vec::new(),
            overriding: false,
            copy: false,
            bytea: Vec::new(),
        }
    }

    /// The single-item statement of an item and what it does.
    fn plan(t: &Target<'_>, item: &WriteItem) -> Result<(Statement, Action)> {
        let prepared = t.prepare(item)?;
        let chunk = t.chunk(vec![(0, prepared)]);
        let action = chunk.members[0].1.clone();
        Ok((chunk.statement, action))
    }

    fn item(id: Option<&str>, op: Operation, data: Option<&str>) -> WriteItem {
        WriteItem {
            id: id.map(str::to_string),
            op,
            data: data.map(str::to_string),
        }
    }

    #[test]
    fn create_inserts_the_body() {
        let (st, action) = plan(
            &target(true),
            &item(None, Operation::Upsert, Some(r#"{"name":"Ada"}"#)),
        )
        .unwrap();
        assert_eq!(action, Action::Create);
        assert_eq!(
            st.sql,
            r#"INSERT INTO "people" ("name") VALUES (?1) RETURNING "id", "updated""#
        );
        assert_eq!(debug(&st.params), debug(&[Value::Text("Ada".into())]));
    }

    #[test]
    fn upsert_binds_integer_keys_and_skips_the_key_field() {
        let (st, action) = plan(
            &target(true),
            &item(Some("12"), Operation::Upsert, Some(r#"{"id":99,"age":3}"#)),
        )
        .unwrap();
        assert_eq!(action, Action::Upsert("12".into()));
        assert_eq!(
            debug(&st.params),
            debug(&[Value::Integer(12), Value::Integer(3)])
        );
        assert!(st.sql.contains(r#"("id", "age")"#), "{}", st.sql);
        let (st, _) = plan(
            &target(false),
            &item(Some("12"), Operation::Upsert, Some("{}")),
        )
        .unwrap();
        assert_eq!(debug(&st.params), debug(&[Value::Text("12".into())]));
    }

    #[test]
    fn generated_columns_are_left_out_of_writes() {
        let t = Target {
            generated: vec!["full_name"],
            ..target(true)
        };
        let (st, _) = plan(
            &t,
            &item(
                Some("12"),
                Operation::Upsert,
                Some(r#"{"age":3,"full_name":"Ada L"}"#),
            ),
        )
        .unwrap();
        assert!(st.sql.contains(r#"("id", "age")"#), "{}", st.sql);
        assert_eq!(
            debug(&st.params),
            debug(&[Value::Integer(12), Value::Integer(3)])
        );
    }

    #[test]
    fn arrays_are_written_in_postgresql_array_form() {
        let t = Target {
            arrays: vec!["tags", "grid"],
            ..target(true)
        };
        let (st, _) = plan(
            &t,
            &item(
                Some("1"),
                Operation::Upsert,
                Some(r#"{"tags":"[\"a\",\"say \\\"hi\\\"\",null]","grid":[[1,2],[3,4]],"note":"[not an array"}"#),
            ),
        )
        .unwrap();
        assert_eq!(
            debug(&st.params),
            debug(&[
                Value::Integer(1),
                Value::Text(r#"{{"1","2"},{"3","4"}}"#.into()),
                Value::Text("[not an array".into()),
                Value::Text(r#"{"a","say \"hi\"",NULL}"#.into()),
            ])
        );
    }

    #[test]
    fn array_numbers_keep_their_digits() {
        let text = serde_json::json!(
            "[0.12345678901234567890123, 1.10, 123456789012345678901234, {\"k\": [1]}]"
        );
        assert_eq!(
            array_literal(&text).as_deref(),
            Some(
                r#"{"0.12345678901234567890123","1.10","123456789012345678901234","{\"k\": [1]}"}"#
            )
        );
        assert_eq!(array_literal(&serde_json::json!([])).as_deref(), Some("{}"));
        assert_eq!(
            array_literal(&serde_json::json!([[], []])).as_deref(),
            Some("{}")
        );
        assert_eq!(
            array_literal(&serde_json::json!("[[]]")).as_deref(),
            Some("{}")
        );
        assert_eq!(
            array_literal(&serde_json::json!([[], [""]])).as_deref(),
            Some(r#"{{},{""}}"#),
            "an empty text is an element"
        );
        assert_eq!(array_literal(&serde_json::json!("[1, oops")), None);
    }

    #[test]
    fn runs_of_alike_items_share_a_statement() {
        let t = target(true);
        let items = [
            item(Some("1"), Operation::Upsert, Some(r#"{"a":1}"#)),
            item(Some("2"), Operation::Upsert, Some(r#"{"a":2}"#)),
            // the same key again starts a new statement
            item(Some("1"), Operation::Upsert, Some(r#"{"a":3}"#)),
            // other columns: another statement
            item(Some("3"), Operation::Upsert, Some(r#"{"b":1}"#)),
            item(Some("4"), Operation::Delete, None),
            item(Some("5"), Operation::Delete, None),
        ];
        let prepared: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (i, t.prepare(it).unwrap()))
            .collect();
        let mut chunks = t.chunks(prepared);
        let members: Vec<Vec<usize>> = chunks
            .iter()
            .map(|c| c.members.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(members, vec![vec![0, 1], vec![2], vec![3], vec![4, 5]]);
        assert_eq!(
            chunks[0].statement.sql,
            r#"INSERT INTO "people" ("id", "a") VALUES (?1, ?2), (?3, ?4) ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a" RETURNING "id", "updated""#
        );
        assert_eq!(
            debug(&chunks[3].statement.params),
            debug(&[Value::Integer(4), Value::Integer(5)])
        );
        // Rows come back by key; a failed chunk asks for the items one by one.
        let rows = Rows {
            columns: vec!["id".into(), "updated".into()],
            rows: vec![
                vec![Value::Integer(2), Value::Text("t2".into())],
                vec![Value::Integer(1), Value::Text("t1".into())],
            ],
        };
        let out = t.chunk_outcomes(&chunks[0], Ok(rows)).unwrap();
        let versions: Vec<_> = out
            .iter()
            .map(|(i, w)| (*i, w.as_ref().unwrap().version.clone().unwrap()))
            .collect();
        assert_eq!(versions, vec![(0, "t1".to_string()), (1, "t2".to_string())]);
        assert!(t.chunk_outcomes(&chunks[0], Err("boom".into())).is_none());
        // Written one by one, each item has its own row of the parameters.
        let singles = t.singles(chunks.swap_remove(0));
        assert_eq!(singles.len(), 2);
        for (n, single) in singles.iter().enumerate() {
            assert_eq!(single.members[0].0, n);
            assert_eq!(
                single.statement.sql,
                r#"INSERT INTO "people" ("id", "a") VALUES (?1, ?2) ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a" RETURNING "id", "updated""#
            );
            let n = n as i64 + 1;
            assert_eq!(
                debug(&single.statement.params),
                debug(&[Value::Integer(n), Value::Integer(n)])
            );
        }
    }

    #[test]
    fn batches_of_new_rows_are_copied_when_nothing_stands_in_the_way() {
        let t = Target {
            dialect: Dialect::Postgres,
            copy: true,
            bytea: vec!["photo"],
            ..target(true)
        };
        let upserts = |from: usize, n: usize, body: &str| -> Vec<(usize, Prepared)> {
            (from..from + n)
                .map(|k| {
                    let it = item(Some(&k.to_string()), Operation::Upsert, Some(body));
                    (k, t.prepare(&it).unwrap())
                })
                .collect()
        };
        // 600 rows: two statements, one COPY of all their rows.
        let mut chunks = t.chunks(upserts(0, 600, r#"{"a":"x","b":null}"#));
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            t.copy_of(&chunks).as_deref(),
            Some(r#"COPY "people" ("id", "a", "b") FROM STDIN"#)
        );
        let rows = t.copy_rows(&mut chunks);
        assert_eq!(rows.len(), 600);
        assert_eq!(
            debug(&rows[599]),
            debug(&[Value::Integer(599), Value::Text("x".into()), Value::Null])
        );
        // Failed: the statements get their parameters back, in order.
        t.put_back(&mut chunks, rows);
        assert_eq!(chunks[0].statement.params.len(), 500 * 3);
        assert_eq!(
            debug(&chunks[1].statement.params[..3]),
            debug(&[Value::Integer(500), Value::Text("x".into()), Value::Null])
        );
        // The probe before a run's first COPY asks for any of the keys.
        let probe = t.copy_probe(&chunks);
        assert_eq!(
            probe.sql,
            format!(
                r#"SELECT 1 FROM "people" WHERE "id" IN ({}) LIMIT 1"#,
                (1..=600)
                    .map(|n| format!("${n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        assert_eq!(
            debug(&probe.params[598..]),
            debug(&[Value::Integer(598), Value::Integer(599)])
        );
        let copied = t.copied(chunks);
        assert_eq!(copied.len(), 600);
        assert_eq!(copied[7].1.as_ref().unwrap().id, "7");

        // A bytea column's plain hex is copied as its bytes; other text
        // as text, as a parameter takes it.
        for (given, copied) in [
            ("00aB", Value::Blob(vec![0, 0xab])),
            ("", Value::Blob(Vec::new())),
            ("abc", Value::Text("abc".into())),
            ("+f+f", Value::Text("+f+f".into())),
            (r"\x00", Value::Text(r"\x00".into())),
        ] {
            let body = serde_json::json!({ "photo": given }).to_string();
            let mut chunks = t.chunks(upserts(0, 100, &body));
            assert!(t.copy_of(&chunks).is_some());
            assert_eq!(
                debug(&t.copy_rows(&mut chunks)[99]),
                debug(&[Value::Integer(99), copied])
            );
        }

        // What is not copied: too few rows, a key twice, a delete among
        // them, other columns, no COPY allowed.
        assert!(t.copy_of(&t.chunks(upserts(0, 99, r#"{"a":1}"#))).is_none());
        let mut twice = upserts(0, 150, r#"{"a":1}"#);
        twice.extend(upserts(0, 1, r#"{"a":1}"#));
        assert!(t.copy_of(&t.chunks(twice)).is_none());
        let mut padded = upserts(0, 150, r#"{"a":1}"#);
        padded.push((
            150,
            t.prepare(&item(Some("0150"), Operation::Upsert, Some(r#"{"a":1}"#)))
                .unwrap(),
        ));
        assert!(
            t.copy_of(&t.chunks(padded)).is_none(),
            "0150 reads back as 150"
        );
        let mut delete = upserts(0, 150, r#"{"a":1}"#);
        delete.push((
            150,
            t.prepare(&item(Some("150"), Operation::Delete, None))
                .unwrap(),
        ));
        assert!(t.copy_of(&t.chunks(delete)).is_none());
        let mut other = upserts(0, 150, r#"{"a":1}"#);
        other.extend(upserts(150, 1, r#"{"b":1}"#));
        assert!(t.copy_of(&t.chunks(other)).is_none());
        let off = Target {
            copy: false,
            ..target(true)
        };
        assert!(off
            .copy_of(&off.chunks(upserts(0, 200, r#"{"a":1}"#)))
            .is_none());
    }

    #[test]
    fn records_with_only_their_key_that_exist_are_written() {
        // A key column GENERATED ALWAYS AS IDENTITY.
        let t = Target {
            dialect: Dialect::Postgres,
            overriding: true,
            ..target(true)
        };
        let prepared = (1..=2)
            .map(|n| {
                let it = item(Some(&n.to_string()), Operation::Upsert, Some("{}"));
                (n - 1, t.prepare(&it).unwrap())
            })
            .collect();
        let chunks = t.chunks(prepared);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].statement.sql.contains("DO NOTHING"));
        // Only the new row comes back; the one there already is left alone.
        let rows = Rows {
            columns: vec!["id".into(), "updated".into()],
            rows: vec![vec![Value::Integer(2), Value::Text("t2".into())]],
        };
        let out = t.chunk_outcomes(&chunks[0], Ok(rows)).unwrap();
        let ids: Vec<_> = out
            .iter()
            .map(|(i, w)| (*i, w.as_ref().unwrap().id.clone()))
            .collect();
        assert_eq!(ids, vec![(0, "1".to_string()), (1, "2".to_string())]);
    }

    #[test]
    fn bad_items_are_rejected_alone() {
        let t = target(true);
        for bad in [
            item(Some("1"), Operation::Upsert, Some("[1]")),
            item(Some("1"), Operation::Upsert, Some("{")),
            item(None, Operation::Upsert, None),
            item(None, Operation::Delete, None),
        ] {
            let err = plan(&t, &bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Rejected);
            assert!(
                err.message.starts_with("entity 'contacts': "),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn passing_errors_are_told_from_refusals() {
        assert!(weir_sdk::sql_util::passing(
            "deadlock detected (Process 1 waits) [SQLSTATE 40P01]"
        ));
        assert!(weir_sdk::sql_util::passing(
            "could not obtain lock on row [SQLSTATE 55P03]"
        ));
        assert!(weir_sdk::sql_util::passing("database is locked"));
        assert!(!weir_sdk::sql_util::passing(
            "duplicate key value violates unique constraint [SQLSTATE 23505]"
        ));
        assert!(!weir_sdk::sql_util::passing(
            "value too long [SQLSTATE 22001]"
        ));
        assert!(!weir_sdk::sql_util::passing(
            "UNIQUE constraint failed: contacts.email"
        ));
        let t = target(true);
        let e = t.outcome(
            &Action::Upsert("7".into()),
            Err("canceling statement due to lock timeout [SQLSTATE 55P03]".into()),
        );
        assert_eq!(e.unwrap_err().kind, weir_sdk::ErrorKind::Transient);
        let e = t.outcome(
            &Action::Upsert("7".into()),
            Err("null value in column [SQLSTATE 23502]".into()),
        );
        assert_eq!(e.unwrap_err().kind, weir_sdk::ErrorKind::Rejected);
    }

    #[test]
    fn outcomes_read_the_returned_key_and_version() {
        let t = target(true);
        let rows = Rows {
            columns: vec!["id".into(), "updated".into()],
            rows: vec![vec![Value::Integer(5), Value::Text("2024-01-01".into())]],
        };
        let written = t.outcome(&Action::Create, Ok(rows)).unwrap();
        assert_eq!(
            (written.id.as_str(), written.version.as_deref()),
            ("5", Some("2024-01-01"))
        );
        let empty = Rows {
            columns: vec![],
            rows: vec![],
        };
        assert_eq!(
            t.outcome(&Action::Delete("7".into()), Ok(empty.clone()))
                .unwrap()
                .id,
            "7"
        );
        assert_eq!(
            t.outcome(&Action::Create, Ok(empty)).unwrap_err().kind,
            ErrorKind::Rejected
        );
        let err = t
            .outcome(
                &Action::Upsert("7".into()),
                Err("UNIQUE constraint failed".into()),
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            "entity 'contacts': record '7': UNIQUE constraint failed"
        );
    }
}
