//! The SQL text the connector sends, built for one dialect. Pure functions only:
//! values travel as positional parameters, identifiers are always quoted.

use crate::schema::Column;
use weir_sdk::sql::{Dialect, Value};
use weir_sdk::sql_util::quote_ident;

/// A table (or function) of the database as SQL names it: quoted, and
/// qualified by its schema when one is set (PostgreSQL; without one, the
/// first schema of the connection's search path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub schema: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> From<&'a str> for Name<'a> {
    fn from(name: &'a str) -> Self {
        Name { schema: None, name }
    }
}

impl<'a> Name<'a> {
    /// The name in SQL.
    pub fn sql(&self) -> String {
        match self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(self.name)),
            None => quote_ident(self.name),
        }
    }

    /// Another object, `name`, in the same schema.
    pub fn beside<'b>(&self, name: &'b str) -> Name<'b>
    where
        'a: 'b,
    {
        Name {
            schema: self.schema,
            name,
        }
    }
}

/// The primary-key column as queries return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// The column name.
    pub name: &'a str,
    /// In what form queries return it: the form reads give it.
    pub form: KeyForm,
}

/// The form a query returns a primary key in ([`key_form`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// As it is: a type the host reads.
    AsIs,
    /// As its text (PostgreSQL `inet`, an enum, ...).
    Text,
    /// As JSON (a PostgreSQL array).
    Json,
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(name: &'a str) -> Self {
        Key {
            name,
            form: KeyForm::AsIs,
        }
    }
}

impl Key<'_> {
    /// The key in a select list or a `RETURNING` clause, of the table
    /// `table` (quoted): as it is, or in the form reads give it
    /// ([`select_list`]) under its own name, so that ids agree.
    fn out(&self, table: &str) -> String {
        let k = quote_ident(self.name);
        match self.form {
            KeyForm::AsIs => k,
            KeyForm::Text => format!("format('%s', {table}.{k}) AS {k}"),
            KeyForm::Json => format!("to_jsonb({table}.{k}) AS {k}"),
        }
    }

    /// The key in an `ORDER BY` of a query selecting [`Key::out`]: the
    /// column, not the value of the same name.
    fn order(&self, table: &str) -> String {
        let k = quote_ident(self.name);
        match self.form {
            KeyForm::AsIs => k,
            KeyForm::Text | KeyForm::Json => format!("{table}.{k}"),
        }
    }
}

impl std::fmt::Display for Name<'_> {
    /// The name as a user writes it in messages: `schema.table` or `table`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// The positional placeholder number `n` (1-based) of a dialect: `?n` or `$n`.
pub fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

/// Lists the columns of the table named by parameter 1 (in the schema named
/// by parameter 2 on PostgreSQL, or the current one if it is null), one row per column:
/// name, declared type, not-null flag (0/1), primary-key flag (0 when unknown),
/// on PostgreSQL the fractional digits a time column keeps (else null),
/// whether the database computes the column's values (a generated column:
/// never written), whether it is `GENERATED ALWAYS AS IDENTITY`, the
/// sequence its default values come from (`serial` or identity; else null),
/// and whether it is unique on its own (the whole primary key, or alone in a
/// valid unique index without a condition): what an upsert matches rows by.
/// A view or a foreign table has no index to tell: it counts as unique, and
/// the database judges its writes. Last, whether the table takes `COPY`
/// as it takes inserts: an ordinary or partitioned PostgreSQL table without
/// rules (`COPY` ignores rules and does not reach through views).
///
/// On PostgreSQL the types are spelt as `information_schema.columns` spells
/// them (`ARRAY`, `USER-DEFINED`, a domain as its base type), but read from
/// the system catalogs: the view costs milliseconds a call, and the
/// connector asks at every batch it writes.
pub fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            r#"SELECT x.name, x.type, x."notnull", x.pk, NULL, x.hidden IN (2, 3), 0, NULL,
                 (x.pk = 1 AND (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1)
                 OR EXISTS (SELECT 1 FROM pragma_index_list(?1) AS l
                            WHERE l."unique" AND NOT l.partial
                              AND (SELECT count(*) FROM pragma_index_info(l.name)) = 1
                              AND (SELECT i.name FROM pragma_index_info(l.name) AS i) = x.name),
                 0
               FROM pragma_table_xinfo(?1) AS x WHERE x.hidden <> 1"#
        }
        Dialect::Postgres => {
            "SELECT a.attname::text, \
               CASE WHEN t.typtype = 'd' THEN \
                      CASE WHEN b.typelem <> 0 AND b.typlen = -1 THEN 'ARRAY' \
                           WHEN b.typnamespace = 'pg_catalog'::regnamespace THEN format_type(t.typbasetype, NULL) \
                           ELSE 'USER-DEFINED' END \
                    WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'ARRAY' \
                    WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN format_type(a.atttypid, NULL) \
                    ELSE 'USER-DEFINED' END, \
               CASE WHEN a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) THEN 1 ELSE 0 END, 0, \
               CAST(information_schema._pg_datetime_precision( \
                      CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                      CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) AS bigint), \
               CASE WHEN a.attgenerated <> '' THEN 1 ELSE 0 END, CASE WHEN a.attidentity = 'a' THEN 1 ELSE 0 END, \
               (SELECT d.objid::regclass::text FROM pg_depend d JOIN pg_class q ON q.oid = d.objid AND q.relkind = 'S' \
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                   AND d.refobjid = c.oid AND d.refobjsubid = a.attnum AND d.deptype IN ('a', 'i') LIMIT 1), \
               CASE WHEN c.relkind IN ('v', 'f') OR EXISTS (SELECT 1 FROM pg_index i \
                   WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid \
                   AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL) \
                 THEN 1 ELSE 0 END, \
               CASE WHEN c.relkind IN ('r', 'p') AND NOT c.relhasrules THEN 1 ELSE 0 END \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
             WHERE c.relname = $1 AND n.nspname = coalesce($2::text, current_schema()) \
               AND c.relkind IN ('r', 'v', 'f', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum"
        }
    }
}

/// The types the host reads from PostgreSQL as they are, as
/// [`columns`] spells them; enums too.
const DECODED: &[&str] = &[
    "boolean",
    "smallint",
    "integer",
    "bigint",
    "oid",
    "real",
    "double precision",
    "bytea",
    "text",
    "character varying",
    "character",
    "name",
    "json",
    "jsonb",
    "numeric",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "uuid",
];

/// Whether reads take a column as its text (PostgreSQL types the host does
/// not read as they are; arrays, as JSON text).
pub fn read_as_text(dialect: Dialect, column: &Column) -> bool {
    dialect == Dialect::Postgres && !DECODED.contains(&column.sql_type.as_str())
}

/// The form reads give a key column, which the other queries returning it
/// follow.
pub fn key_form(dialect: Dialect, column: &Column) -> KeyForm {
    if !read_as_text(dialect, column) {
        KeyForm::AsIs
    } else if column.sql_type == "ARRAY" {
        KeyForm::Json
    } else {
        KeyForm::Text
    }
}

/// What a read selects: `*`, or on PostgreSQL, when a column's type is one
/// the host does not read as it is, every column by name: arrays as JSON
/// (`to_jsonb`, read like a `jsonb` column) and the other such types
/// (`interval`, `inet`, ranges, user-defined types, ...) as their text, as
/// psql prints them.
pub fn select_list(dialect: Dialect, columns: &[Column]) -> String {
    let decoded = |c: &Column| !read_as_text(dialect, c);
    if columns.iter().all(decoded) {
        return "*".to_string();
    }
    columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            if decoded(c) {
                name
            } else if c.sql_type == "ARRAY" {
                format!("to_jsonb({name}) AS {name}")
            } else {
                // The type's own output, as psql prints it (a cast to text
                // can differ: `inet` gains its netmask). `IS NULL` is true
                // of a composite value whose fields are all null;
                // `num_nulls` asks about the value itself.
                format!(
                    "CASE WHEN num_nulls({name}) = 1 THEN NULL ELSE format('%s', {name}) END AS {name}"
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of `table` that may match any of `probes` (field, value pairs):
/// a text comparison of each field without case or surrounding space, a
/// null value by `IS NULL`; the probes joined by `OR`, so that one read of
/// the table serves them all. The caller compares the rows it gets with
/// each probe. Returns the statement and its parameters (the values' text).
pub fn find(
    dialect: Dialect,
    table: Name<'_>,
    select: &str,
    probes: &[Vec<(&str, &serde_json::Value)>],
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut any = Vec::new();
    for probe in probes.iter().filter(|p| !p.is_empty()) {
        let mut all = Vec::new();
        for (field, value) in probe {
            let column = quote_ident(field);
            let text = match (dialect, value) {
                (_, serde_json::Value::Null) => None,
                (Dialect::Sqlite, serde_json::Value::Bool(b)) => Some(i64::from(*b).to_string()),
                (_, v) => Some(weir_sdk::json::probe_text(v)),
            };
            match text {
                None => all.push(format!("{column} IS NULL")),
                Some(t) => {
                    params.push(Value::Text(t));
                    all.push(format!(
                        "lower(trim(CAST({column} AS TEXT))) = {}",
                        placeholder(dialect, params.len())
                    ));
                }
            }
        }
        any.push(format!("({})", all.join(" AND ")));
    }
    if any.is_empty() {
        any.push("1 = 0".to_string());
    }
    let sql = format!(
        "SELECT {select} FROM {} WHERE {}",
        table.sql(),
        any.join(" OR ")
    );
    (sql, params)
}

/// One page of a keyset-paginated snapshot, ordered by the primary key,
/// selecting `select` ([`select_list`]).
/// With `after`, parameter 1 is the last key of the previous page and parameter 2
/// the limit; without it, parameter 1 is the limit.
pub fn read_page(dialect: Dialect, table: Name<'_>, pk: &str, after: bool, select: &str) -> String {
    let (t, k) = (table.sql(), quote_ident(pk));
    let by = ordered(&t, &k, select);
    if after {
        format!(
            "SELECT {select} FROM {t} WHERE {k} > {} ORDER BY {by} LIMIT {}",
            placeholder(dialect, 1),
            placeholder(dialect, 2)
        )
    } else {
        format!(
            "SELECT {select} FROM {t} WHERE {k} IS NOT NULL ORDER BY {by} LIMIT {}",
            placeholder(dialect, 1)
        )
    }
}

/// The rows of a table without a primary-key value (a table without a
/// key constraint, or a view): parameter 1 is the limit. A snapshot hands
/// them to the host as rejects, so that they do not vanish unseen.
pub fn keyless_rows(dialect: Dialect, table: Name<'_>, pk: &str, select: &str) -> String {
    format!(
        "SELECT {select} FROM {} WHERE {} IS NULL LIMIT {}",
        table.sql(),
        quote_ident(pk),
        placeholder(dialect, 1)
    )
}

/// A column to order a read by: named through its table when the select
/// list may give an output column its name (a key read as text must be
/// ordered as the key, as the `WHERE` compares it).
fn ordered(table: &str, column: &str, select: &str) -> String {
    if select == "*" {
        column.to_string()
    } else {
        format!("{table}.{column}")
    }
}

/// The newest (updated-at, primary key) pair of the table, if any row has an
/// updated-at. With `settled` (PostgreSQL), only rows settled by the
/// horizon, parameter 1, count.
pub fn checkpoint<'k>(
    table: Name<'_>,
    pk: impl Into<Key<'k>>,
    updated_at: &str,
    settled: Option<Stamps>,
) -> String {
    let (t, pk, u) = (table.sql(), pk.into(), quote_ident(updated_at));
    let before = match settled {
        Some(stamps) => format!(" AND {}", stamps.settled(&u, "$1")),
        None => String::new(),
    };
    format!(
        "SELECT {u}, {} FROM {t} WHERE {u} IS NOT NULL{before} ORDER BY {u} DESC, {} DESC LIMIT 1",
        pk.out(&t),
        pk.order(&t)
    )
}

/// What the stamps of an updated-at (or deleted-at) column are, on
/// PostgreSQL, for telling the rows settled by the horizon: rows stamped
/// before it, which no transaction still open can add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamps {
    /// Times (`timestamp` or `timestamptz`) that keep `precision`
    /// fractional digits of seconds (6, microseconds, unless declared
    /// otherwise). A column of fewer digits rounds its stamps, so the
    /// horizon is rounded alike before they are compared: a row committed
    /// late, stamped at the horizon or after, is then stamped no earlier
    /// than the rounded horizon.
    Times { precision: i64 },
    /// Dates: settled when before the horizon's day.
    Dates,
}

impl Stamps {
    /// The condition that column `column` (quoted) is settled by the
    /// horizon, the placeholder `horizon` (seconds since the epoch).
    fn settled(self, column: &str, horizon: &str) -> String {
        match self {
            Stamps::Times { precision } if (0..6).contains(&precision) => {
                format!("{column} < CAST(to_timestamp({horizon}) AS timestamptz({precision}))")
            }
            Stamps::Times { .. } => format!("{column} < to_timestamp({horizon})"),
            Stamps::Dates => format!("{column} < CAST(to_timestamp({horizon}) AS date)"),
        }
    }
}

/// The stamps of a tombstone table's `deleted_at` (`timestamptz`).
const DELETED_AT: Stamps = Stamps::Times { precision: 6 };

/// PostgreSQL: the horizon, in seconds since the epoch: the time before
/// which every row stamped by a transaction (with `now()`,
/// `clock_timestamp()` or a trigger) is committed. That is the start of the
/// oldest transaction still open in another session of this database, or
/// now (`xact_start` needs `track_activities`, on by default). A session
/// this role may not look into (it lacks `pg_read_all_stats`) shows neither
/// its start nor its type (`backend_type` is NULL only then): it counts as
/// having begun a minute ago, whether in a transaction or not. Autovacuum,
/// when visible, writes no rows and is left out. The second column is the
/// horizon's age in whole seconds.
pub const HORIZON: &str =
    "SELECT CAST(extract(epoch FROM h) AS float8), CAST(extract(epoch FROM now() - h) AS bigint) \
     FROM (SELECT least(now(), min(CASE \
         WHEN xact_start IS NOT NULL THEN xact_start \
         WHEN backend_type IS NULL THEN now() - interval '1 minute' END)) AS h \
       FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
         AND (datname IS NULL OR datname = current_database()) \
         AND (backend_type IS NULL OR backend_type NOT LIKE 'autovacuum%')) AS oldest";

/// The horizon's age (seconds) past which a change read warns that an open
/// transaction holds its cursor back.
pub const HORIZON_WARN_SECS: i64 = 600;

/// The name of the column that `changes` with `settled` adds to each row.
pub const SETTLED: &str = "weir:settled";

/// Rows changed after a (updated-at, primary key) position, oldest first.
/// With `after`, parameters 1 and 2 are the position and 3 the limit; without it
/// (no position yet), parameter 1 is the limit. With `settled` (PostgreSQL),
/// the parameter after the limit is the horizon, and each row ends with a
/// column named [`SETTLED`]: whether the horizon settles it.
pub fn changes(
    dialect: Dialect,
    table: Name<'_>,
    pk: &str,
    updated_at: &str,
    after: bool,
    settled: Option<Stamps>,
    select: &str,
) -> String {
    let (t, k, u) = (table.sql(), quote_ident(pk), quote_ident(updated_at));
    let (filter, limit) = if after {
        (
            format!(
                "({u}, {k}) > ({}, {})",
                placeholder(dialect, 1),
                placeholder(dialect, 2)
            ),
            3,
        )
    } else {
        (format!("{u} IS NOT NULL"), 1)
    };
    let flag = match settled {
        Some(stamps) => format!(
            ", {} AS {}",
            stamps.settled(&u, &placeholder(dialect, limit + 1)),
            quote_ident(SETTLED)
        ),
        None => String::new(),
    };
    format!(
        "SELECT {select}{flag} FROM {t} WHERE {filter} ORDER BY {}, {} LIMIT {}",
        ordered(&t, &u, select),
        ordered(&t, &k, select),
        placeholder(dialect, limit)
    )
}

/// The statements that create the tombstone table `tombstones` of `table` and
/// the trigger that records each deleted key there with the time of the delete.
/// `key_type` is the type of the primary key. Each statement is idempotent.
pub fn tombstone_setup(
    dialect: Dialect,
    table: Name<'_>,
    pk: &str,
    key_type: &str,
    tombstones: Name<'_>,
) -> Vec<String> {
    let (t, k, d) = (table.sql(), quote_ident(pk), tombstones.sql());
    // The index goes into its table's schema, and the function is put there.
    let index = quote_ident(&format!("{}_by_time", tombstones.name));
    let trigger_name = format!("{}_keep", tombstones.name);
    let trigger = quote_ident(&trigger_name);
    let function = tombstones.beside(&trigger_name).sql();
    match dialect {
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {d} ({k} {key_type} PRIMARY KEY, deleted_at TEXT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {index} ON {d} (deleted_at, {k})"),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {trigger} AFTER DELETE ON {t} FOR EACH ROW BEGIN \
                 INSERT INTO {d} ({k}, deleted_at) VALUES (OLD.{k}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
                 ON CONFLICT ({k}) DO UPDATE SET deleted_at = excluded.deleted_at; END"
            ),
        ],
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {d} ({k} {key_type} PRIMARY KEY, deleted_at timestamptz NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {index} ON {d} (deleted_at, {k})"),
            format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $weir$ BEGIN \
                 INSERT INTO {d} ({k}, deleted_at) VALUES (OLD.{k}, clock_timestamp()) \
                 ON CONFLICT ({k}) DO UPDATE SET deleted_at = excluded.deleted_at; RETURN OLD; END $weir$"
            ),
            format!(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
        ],
    }
}

/// Whether the tombstone table (parameter 1) and its trigger (parameter 2)
/// on the table (parameter 3) exist: one row with 1 or 0. The names are given
/// quoted for PostgreSQL and plain for SQLite.
pub fn tombstones_exist(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT count(*) = 2 FROM sqlite_master WHERE (type = 'table' AND name = ?1) OR (type = 'trigger' AND name = ?2 AND tbl_name = ?3)"
        }
        Dialect::Postgres => {
            "SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $2 AND tgrelid = to_regclass($3))"
        }
    }
}

/// Tombstones of `table` after a (deleted-at, key) position, oldest first, as
/// (key, deleted-at) rows; a key that exists in the table again (deleted and
/// inserted anew) is not a delete. With `after`, parameters 1 and 2 are the
/// position and 3 the limit; without it, parameter 1 is the limit. With
/// `settled` (PostgreSQL), the parameter after the limit is the horizon, and
/// each row ends with a column named [`SETTLED`], as in [`changes`].
pub fn tombstones<'k>(
    dialect: Dialect,
    table: Name<'_>,
    tombstones: Name<'_>,
    pk: impl Into<Key<'k>>,
    after: bool,
    settled: bool,
) -> String {
    let pk = pk.into();
    let (t, d, k) = (table.sql(), tombstones.sql(), quote_ident(pk.name));
    let gone = format!("NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{k} = {d}.{k})");
    let (filter, limit) = if after {
        (
            format!(
                "(deleted_at, {k}) > ({}, {}) AND {gone}",
                placeholder(dialect, 1),
                placeholder(dialect, 2)
            ),
            3,
        )
    } else {
        (gone, 1)
    };
    let flag = if settled {
        format!(
            ", {} AS {}",
            DELETED_AT.settled("deleted_at", &placeholder(dialect, limit + 1)),
            quote_ident(SETTLED)
        )
    } else {
        String::new()
    };
    format!(
        "SELECT {}, deleted_at{flag} FROM {d} WHERE {filter} ORDER BY deleted_at, {} LIMIT {}",
        pk.out(&d),
        pk.order(&d),
        placeholder(dialect, limit)
    )
}

/// Removes the tombstones older than parameter 1 days.
pub fn prune_tombstones(dialect: Dialect, tombstones: Name<'_>) -> String {
    let d = tombstones.sql();
    match dialect {
        Dialect::Sqlite => format!(
            "DELETE FROM {d} WHERE deleted_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' days')"
        ),
        Dialect::Postgres => {
            format!("DELETE FROM {d} WHERE deleted_at < now() - make_interval(days => $1::int)")
        }
    }
}

/// The newest (deleted-at, key) pair of a tombstone table, if any.
pub fn tombstone_checkpoint<'k>(
    tombstones: Name<'_>,
    pk: impl Into<Key<'k>>,
    settled: bool,
) -> String {
    let (d, pk) = (tombstones.sql(), pk.into());
    let before = if settled {
        format!(" WHERE {}", DELETED_AT.settled("deleted_at", "$1"))
    } else {
        String::new()
    };
    format!(
        "SELECT deleted_at, {} FROM {d}{before} ORDER BY deleted_at DESC, {} DESC LIMIT 1",
        pk.out(&d),
        pk.order(&d)
    )
}

/// The `RETURNING` clause of a write to `table` (quoted) giving back the
/// primary key and, if configured, the updated-at.
fn returning(table: &str, pk: Key<'_>, updated_at: Option<&str>) -> String {
    match updated_at {
        Some(u) => format!(" RETURNING {}, {}", pk.out(table), quote_ident(u)),
        None => format!(" RETURNING {}", pk.out(table)),
    }
}

/// Creates the row with a given primary key, or updates the columns given if it exists.
/// Parameter 1 is the key, parameters 2..=n+1 the values of `columns` (which must not
/// hold the key). With no columns the update sets the key to itself, so that
/// the row comes back as the database spells its key; under `overriding`,
/// which refuses that, a row that exists is left alone and not returned.
/// `overriding` (PostgreSQL) writes the key given into a key column
/// `GENERATED ALWAYS AS IDENTITY`.
pub fn upsert<'k>(
    dialect: Dialect,
    table: Name<'_>,
    pk: impl Into<Key<'k>>,
    updated_at: Option<&str>,
    columns: &[&str],
    overriding: bool,
) -> String {
    let pk = pk.into();
    let (t, k) = (table.sql(), quote_ident(pk.name));
    let names: Vec<String> = std::iter::once(k.clone())
        .chain(columns.iter().map(|c| quote_ident(c)))
        .collect();
    let values = (1..=names.len())
        .map(|n| placeholder(dialect, n))
        .collect::<Vec<_>>()
        .join(", ");
    let action = if columns.is_empty() && overriding {
        "DO NOTHING".to_string()
    } else if columns.is_empty() {
        format!("DO UPDATE SET {k} = excluded.{k}")
    } else {
        let updates = names[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("DO UPDATE SET {updates}")
    };
    format!(
        "INSERT INTO {t} ({}) {}VALUES ({values}) ON CONFLICT ({k}) {action}{}",
        names.join(", "),
        overriding_clause(overriding),
        returning(&t, pk, updated_at)
    )
}

/// The clause that lets an insert give a value to a column `GENERATED
/// ALWAYS AS IDENTITY` (PostgreSQL), when `overriding`.
fn overriding_clause(overriding: bool) -> &'static str {
    if overriding {
        "OVERRIDING SYSTEM VALUE "
    } else {
        ""
    }
}

/// The `VALUES` rows of a multi-row statement: `rows` tuples of `width`
/// placeholders, numbered in order from 1. Batches repeat a few shapes, and
/// a full one has thousands of placeholders: the texts are kept for the
/// instance (a few dozen at most).
fn value_rows(dialect: Dialect, width: usize, rows: usize) -> String {
    use std::cell::RefCell;
    use std::collections::HashMap;
    type Key = (bool, usize, usize);
    thread_local! {
        static KEPT: RefCell<HashMap<Key, String>> = RefCell::new(HashMap::new());
    }
    const MOST_KEPT: usize = 64;
    let key = (dialect == Dialect::Postgres, width, rows);
    if let Some(text) = KEPT.with(|k| k.borrow().get(&key).cloned()) {
        return text;
    }
    use std::fmt::Write;
    let sigil = match dialect {
        Dialect::Sqlite => '?',
        Dialect::Postgres => '$',
    };
    let mut text = String::with_capacity(rows * width * 7);
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for c in 1..=width {
            if c > 1 {
                text.push_str(", ");
            }
            text.push(sigil);
            let _ = write!(text, "{}", r * width + c);
        }
        text.push(')');
    }
    if rows > 1 {
        KEPT.with(|k| {
            let mut kept = k.borrow_mut();
            if kept.len() >= MOST_KEPT {
                kept.clear();
            }
            kept.insert(key, text.clone());
        });
    }
    text
}

/// Creates `rows` rows in one statement; the database assigns the primary key
/// unless `columns` holds it (then `overriding` as in [`upsert`]). The
/// parameters are the values of `columns`, row after row. Without columns,
/// one row of defaults is created.
pub fn insert_many<'k>(
    dialect: Dialect,
    table: Name<'_>,
    pk: impl Into<Key<'k>>,
    updated_at: Option<&str>,
    columns: &[&str],
    rows: usize,
    overriding: bool,
) -> String {
    let (t, pk) = (table.sql(), pk.into());
    if columns.is_empty() {
        return format!(
            "INSERT INTO {t} DEFAULT VALUES{}",
            returning(&t, pk, updated_at)
        );
    }
    let names = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let overriding = overriding && columns.contains(&pk.name);
    format!(
        "INSERT INTO {t} ({names}) {}VALUES {}{}",
        overriding_clause(overriding),
        value_rows(dialect, columns.len(), rows),
        returning(&t, pk, updated_at)
    )
}

/// Creates or updates `rows` rows in one statement, each by its primary key.
/// Each row's parameters are its key, then the values of `columns` (which must
/// not hold the key); the keys must differ.
pub fn upsert_many<'k>(
    dialect: Dialect,
    table: Name<'_>,
    pk: impl Into<Key<'k>>,
    updated_at: Option<&str>,
    columns: &[&str],
    rows: usize,
    overriding: bool,
) -> String {
    let single = upsert(dialect, table, pk, updated_at, columns, overriding);
    // The single-row statement with its one VALUES tuple widened to `rows`.
    let one = value_rows(dialect, columns.len() + 1, 1);
    single.replacen(&one, &value_rows(dialect, columns.len() + 1, rows), 1)
}

/// Moves the key sequence named by parameter 1 past the larger of the
/// table's largest key and parameter 2 (the largest key about to be
/// written), if its next value would not be past it: keys written as given
/// (shared keys) do not move it, and the inserts that take their keys from
/// it would collide with them. Run before the keys are written, so that no
/// insert of the application takes one of them meanwhile. Never moves it
/// back, and leaves alone a sequence that counts down or still starts past
/// the keys (each system its own range of keys). The next value is read and
/// set in one statement; an application taking values past the keys in
/// between could be set back: a window of microseconds.
pub fn catch_up_sequence(table: Name<'_>, pk: &str) -> String {
    let (t, k) = (table.sql(), quote_ident(pk));
    format!(
        "SELECT setval($1::regclass, x.m) \
         FROM (SELECT greatest((SELECT max({k}) FROM {t}), $2::bigint) AS m) AS x, pg_sequence AS s \
         WHERE s.seqrelid = $1::regclass AND s.seqincrement > 0 \
           AND x.m >= coalesce(pg_sequence_last_value($1::regclass) + s.seqincrement, s.seqstart)"
    )
}

/// Deletes the `rows` rows whose primary keys are the parameters.
pub fn delete_many(dialect: Dialect, table: Name<'_>, pk: &str, rows: usize) -> String {
    let keys = (1..=rows)
        .map(|n| placeholder(dialect, n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DELETE FROM {} WHERE {} IN ({keys})",
        table.sql(),
        quote_ident(pk)
    )
}

/// Sets the columns `set` (parameters 1..=n) of the row whose key is
/// parameter n+1, only if each of those columns still holds the value of
/// its parameter after the key (n+2..=2n+1; NULL matches NULL), and returns
/// the key and version of the row it updated: no row when the row is gone
/// or holds other values. A column of a type without equality (PostgreSQL
/// `json`, `xml`, geometric types) is compared as the type `compare_as`
/// gives for it (`jsonb`, `text`).
pub fn guarded_update(
    dialect: Dialect,
    table: Name<'_>,
    pk: Key<'_>,
    updated_at: Option<&str>,
    set: &[&str],
    compare_as: &dyn Fn(&str) -> Option<&'static str>,
) -> String {
    let t = table.sql();
    let n = set.len();
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = {}", quote_ident(c), placeholder(dialect, i + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    let same = match dialect {
        Dialect::Sqlite => "IS",
        Dialect::Postgres => "IS NOT DISTINCT FROM",
    };
    let conditions: String = set
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (column, param) = (quote_ident(c), placeholder(dialect, n + 2 + i));
            match compare_as(c) {
                Some(ty) => format!(" AND {column}::{ty} {same} {param}::{ty}"),
                None => format!(" AND {column} {same} {param}"),
            }
        })
        .collect();
    format!(
        "UPDATE {t} SET {assignments} WHERE {} = {}{conditions}{}",
        quote_ident(pk.name),
        placeholder(dialect, n + 1),
        returning(&t, pk, updated_at)
    )
}

/// [`guarded_update`] of `rows` rows in one statement (SQLite): a `VALUES`
/// row per record holds its key, the values of `set`, then the values seen
/// in them; only the rows that still hold what was seen are updated and
/// returned (key, version).
pub fn guarded_update_many(
    table: Name<'_>,
    pk: Key<'_>,
    updated_at: Option<&str>,
    set: &[&str],
    rows: usize,
) -> String {
    let t = table.sql();
    let n = set.len();
    let assignments = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = v.column{}", quote_ident(c), i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let conditions: String = set
        .iter()
        .enumerate()
        .map(|(i, c)| format!(" AND {t}.{} IS v.column{}", quote_ident(c), n + 2 + i))
        .collect();
    format!(
        "UPDATE {t} SET {assignments} FROM (VALUES {}) AS v WHERE {t}.{} = v.column1{conditions}{}",
        value_rows(Dialect::Sqlite, 1 + 2 * n, rows),
        quote_ident(pk.name),
        returning(&t, pk, updated_at)
    )
}

/// Selects `select` of the rows whose key is one of `n` parameters.
pub fn select_by_keys(
    dialect: Dialect,
    table: Name<'_>,
    select: &str,
    pk: &str,
    n: usize,
) -> String {
    let keys = (1..=n)
        .map(|i| placeholder(dialect, i))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {select} FROM {} WHERE {} IN ({keys})",
        table.sql(),
        quote_ident(pk)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_updates_check_what_was_seen() {
        let t = Name {
            schema: None,
            name: "t",
        };
        assert_eq!(
            guarded_update(
                Dialect::Sqlite,
                t,
                "id".into(),
                Some("u"),
                &["a", "b"],
                &|_| None
            ),
            r#"UPDATE "t" SET "a" = ?1, "b" = ?2 WHERE "id" = ?3 AND "a" IS ?4 AND "b" IS ?5 RETURNING "id", "u""#
        );
        assert_eq!(
            guarded_update(Dialect::Postgres, t, "id".into(), None, &["a"], &|_| None),
            r#"UPDATE "t" SET "a" = $1 WHERE "id" = $2 AND "a" IS NOT DISTINCT FROM $3 RETURNING "id""#
        );
        let json = |c: &str| (c == "doc").then_some("jsonb");
        assert_eq!(
            guarded_update(
                Dialect::Postgres,
                t,
                "id".into(),
                None,
                &["a", "doc"],
                &json
            ),
            r#"UPDATE "t" SET "a" = $1, "doc" = $2 WHERE "id" = $3 AND "a" IS NOT DISTINCT FROM $4 AND "doc"::jsonb IS NOT DISTINCT FROM $5::jsonb RETURNING "id""#
        );
        assert_eq!(
            guarded_update_many(t, "id".into(), None, &["a"], 2),
            r#"UPDATE "t" SET "a" = v.column2 FROM (VALUES (?1, ?2, ?3), (?4, ?5, ?6)) AS v WHERE "t"."id" = v.column1 AND "t"."a" IS v.column3 RETURNING "id""#
        );
        assert_eq!(
            select_by_keys(Dialect::Postgres, t, "*", "id", 2),
            r#"SELECT * FROM "t" WHERE "id" IN ($1, $2)"#
        );
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        assert_eq!(placeholder(Dialect::Sqlite, 3), "?3");
        assert_eq!(placeholder(Dialect::Postgres, 3), "$3");
        // Kept texts are told apart by dialect and shape.
        for _ in 0..2 {
            assert_eq!(
                value_rows(Dialect::Postgres, 2, 3),
                "($1, $2), ($3, $4), ($5, $6)"
            );
            assert_eq!(
                value_rows(Dialect::Sqlite, 2, 3),
                "(?1, ?2), (?3, ?4), (?5, ?6)"
            );
            assert_eq!(
                value_rows(Dialect::Sqlite, 3, 2),
                "(?1, ?2, ?3), (?4, ?5, ?6)"
            );
        }
    }

    #[test]
    fn read_pages_use_keyset_pagination() {
        assert_eq!(
            read_page(Dialect::Sqlite, "people".into(), "id", false, "*"),
            r#"SELECT * FROM "people" WHERE "id" IS NOT NULL ORDER BY "id" LIMIT ?1"#
        );
        assert_eq!(
            read_page(Dialect::Postgres, "people".into(), "id", true, "*"),
            r#"SELECT * FROM "people" WHERE "id" > $1 ORDER BY "id" LIMIT $2"#
        );
    }

    #[test]
    fn changes_compare_row_values() {
        assert_eq!(
            changes(
                Dialect::Sqlite,
                "t".into(),
                "id",
                "updated",
                true,
                None,
                "*"
            ),
            r#"SELECT * FROM "t" WHERE ("updated", "id") > (?1, ?2) ORDER BY "updated", "id" LIMIT ?3"#
        );
        assert_eq!(
            checkpoint("t".into(), "id", "updated", None),
            r#"SELECT "updated", "id" FROM "t" WHERE "updated" IS NOT NULL ORDER BY "updated" DESC, "id" DESC LIMIT 1"#
        );
    }

    #[test]
    fn changes_on_postgresql_mark_the_rows_stamped_before_the_horizon() {
        assert_eq!(
            changes(
                Dialect::Postgres,
                "t".into(),
                "id",
                "updated",
                true,
                Some(Stamps::Times { precision: 6 }),
                "*"
            ),
            r#"SELECT *, "updated" < to_timestamp($4) AS "weir:settled" FROM "t" WHERE ("updated", "id") > ($1, $2) ORDER BY "updated", "id" LIMIT $3"#
        );
        assert_eq!(
            changes(
                Dialect::Postgres,
                "t".into(),
                "id",
                "updated",
                false,
                Some(Stamps::Dates),
                "*"
            ),
            r#"SELECT *, "updated" < CAST(to_timestamp($2) AS date) AS "weir:settled" FROM "t" WHERE "updated" IS NOT NULL ORDER BY "updated", "id" LIMIT $1"#
        );
        assert_eq!(
            checkpoint(
                "t".into(),
                "id",
                "updated",
                Some(Stamps::Times { precision: 0 })
            ),
            r#"SELECT "updated", "id" FROM "t" WHERE "updated" IS NOT NULL AND "updated" < CAST(to_timestamp($1) AS timestamptz(0)) ORDER BY "updated" DESC, "id" DESC LIMIT 1"#
        );
    }

    #[test]
    fn inserts_return_the_key_and_version() {
        assert_eq!(
            insert_many(
                Dialect::Sqlite,
                "t".into(),
                "id",
                Some("u"),
                &["a", "b"],
                1,
                false
            ),
            r#"INSERT INTO "t" ("a", "b") VALUES (?1, ?2) RETURNING "id", "u""#
        );
        assert_eq!(
            insert_many(Dialect::Postgres, "t".into(), "id", None, &[], 1, false),
            r#"INSERT INTO "t" DEFAULT VALUES RETURNING "id""#
        );
    }

    #[test]
    fn a_key_read_as_text_is_returned_as_text_and_ordered_as_itself() {
        let key = Key {
            name: "addr",
            form: KeyForm::Text,
        };
        assert_eq!(
            checkpoint("hosts".into(), key, "u", None),
            r#"SELECT "u", format('%s', "hosts"."addr") AS "addr" FROM "hosts" WHERE "u" IS NOT NULL ORDER BY "u" DESC, "hosts"."addr" DESC LIMIT 1"#
        );
        assert_eq!(
            tombstone_checkpoint("gone".into(), key, false),
            r#"SELECT deleted_at, format('%s', "gone"."addr") AS "addr" FROM "gone" ORDER BY deleted_at DESC, "gone"."addr" DESC LIMIT 1"#
        );
        assert!(tombstones(Dialect::Postgres, "hosts".into(), "gone".into(), key, true, false)
            .starts_with(r#"SELECT format('%s', "gone"."addr") AS "addr", deleted_at FROM "gone" WHERE (deleted_at, "addr") > ($1, $2)"#));
        let array = Key {
            name: "path",
            form: KeyForm::Json,
        };
        assert_eq!(
            checkpoint("t".into(), array, "u", None),
            r#"SELECT "u", to_jsonb("t"."path") AS "path" FROM "t" WHERE "u" IS NOT NULL ORDER BY "u" DESC, "t"."path" DESC LIMIT 1"#
        );
        assert_eq!(
            upsert(Dialect::Postgres, "hosts".into(), key, None, &["n"], false),
            r#"INSERT INTO "hosts" ("addr", "n") VALUES ($1, $2) ON CONFLICT ("addr") DO UPDATE SET "n" = excluded."n" RETURNING format('%s', "hosts"."addr") AS "addr""#
        );
    }

    #[test]
    fn upserts_update_only_given_columns() {
        assert_eq!(
            upsert(Dialect::Sqlite, "t".into(), "id", None, &["a", "b"], false),
            r#"INSERT INTO "t" ("id", "a", "b") VALUES (?1, ?2, ?3) ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a", "b" = excluded."b" RETURNING "id""#
        );
        assert_eq!(
            upsert(Dialect::Postgres, "t".into(), "id", Some("u"), &[], false),
            r#"INSERT INTO "t" ("id") VALUES ($1) ON CONFLICT ("id") DO UPDATE SET "id" = excluded."id" RETURNING "id", "u""#
        );
        assert_eq!(
            upsert(Dialect::Postgres, "t".into(), "id", None, &[], true),
            r#"INSERT INTO "t" ("id") OVERRIDING SYSTEM VALUE VALUES ($1) ON CONFLICT ("id") DO NOTHING RETURNING "id""#
        );
    }

    #[test]
    fn a_key_given_to_an_identity_column_overrides_the_system_value() {
        assert_eq!(
            upsert_many(Dialect::Postgres, "t".into(), "id", None, &["a"], 2, true),
            r#"INSERT INTO "t" ("id", "a") OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4) ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a" RETURNING "id""#
        );
        assert_eq!(
            insert_many(
                Dialect::Postgres,
                "t".into(),
                "id",
                None,
                &["id", "a"],
                1,
                true
            ),
            r#"INSERT INTO "t" ("id", "a") OVERRIDING SYSTEM VALUE VALUES ($1, $2) RETURNING "id""#
        );
        // Without the key, the database assigns it.
        assert_eq!(
            insert_many(Dialect::Postgres, "t".into(), "id", None, &["a"], 1, true),
            r#"INSERT INTO "t" ("a") VALUES ($1) RETURNING "id""#
        );
    }

    #[test]
    fn multi_row_statements_number_their_parameters_row_by_row() {
        assert_eq!(
            insert_many(
                Dialect::Postgres,
                "t".into(),
                "id",
                None,
                &["a", "b"],
                2,
                false
            ),
            r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4) RETURNING "id""#
        );
        assert_eq!(
            upsert_many(
                Dialect::Sqlite,
                "t".into(),
                "id",
                Some("u"),
                &["a"],
                3,
                false
            ),
            r#"INSERT INTO "t" ("id", "a") VALUES (?1, ?2), (?3, ?4), (?5, ?6) ON CONFLICT ("id") DO UPDATE SET "a" = excluded."a" RETURNING "id", "u""#
        );
        assert_eq!(
            delete_many(Dialect::Postgres, "t".into(), "id", 3),
            r#"DELETE FROM "t" WHERE "id" IN ($1, $2, $3)"#
        );
    }

    #[test]
    fn tombstones_are_kept_by_a_trigger_and_read_in_order() {
        let pg = tombstone_setup(
            Dialect::Postgres,
            "people".into(),
            "id",
            "bigint",
            "people_gone".into(),
        );
        assert_eq!(pg.len(), 4);
        assert!(
            pg[0].starts_with(
                r#"CREATE TABLE IF NOT EXISTS "people_gone" ("id" bigint PRIMARY KEY"#
            ),
            "{}",
            pg[0]
        );
        assert!(
            pg[3].contains(
                r#"AFTER DELETE ON "people" FOR EACH ROW EXECUTE FUNCTION "people_gone_keep"()"#
            ),
            "{}",
            pg[3]
        );
        let lite = tombstone_setup(
            Dialect::Sqlite,
            "people".into(),
            "id",
            "INTEGER",
            "people_gone".into(),
        );
        assert!(
            lite[2].contains(r#"INSERT INTO "people_gone" ("id", deleted_at) VALUES (OLD."id""#),
            "{}",
            lite[2]
        );
        assert_eq!(
            tombstones(
                Dialect::Postgres,
                "people".into(),
                "people_gone".into(),
                "id",
                true,
                false
            ),
            r#"SELECT "id", deleted_at FROM "people_gone" WHERE (deleted_at, "id") > ($1, $2) AND NOT EXISTS (SELECT 1 FROM "people" WHERE "people"."id" = "people_gone"."id") ORDER BY deleted_at, "id" LIMIT $3"#
        );
        assert_eq!(
            tombstones(
                Dialect::Postgres,
                "people".into(),
                "people_gone".into(),
                "id",
                false,
                true
            ),
            r#"SELECT "id", deleted_at, deleted_at < to_timestamp($2) AS "weir:settled" FROM "people_gone" WHERE NOT EXISTS (SELECT 1 FROM "people" WHERE "people"."id" = "people_gone"."id") ORDER BY deleted_at, "id" LIMIT $1"#
        );
        assert_eq!(
            tombstone_checkpoint("people_gone".into(), "id", false),
            r#"SELECT deleted_at, "id" FROM "people_gone" ORDER BY deleted_at DESC, "id" DESC LIMIT 1"#
        );
        assert_eq!(
            tombstone_checkpoint("people_gone".into(), "id", true),
            r#"SELECT deleted_at, "id" FROM "people_gone" WHERE deleted_at < to_timestamp($1) ORDER BY deleted_at DESC, "id" DESC LIMIT 1"#
        );
    }

    #[test]
    fn a_table_in_a_schema_is_named_with_it_and_keeps_its_tombstones_there() {
        let table = Name {
            schema: Some("sales"),
            name: "people",
        };
        assert_eq!(table.to_string(), "sales.people");
        assert_eq!(
            read_page(Dialect::Postgres, table, "id", false, "*"),
            r#"SELECT * FROM "sales"."people" WHERE "id" IS NOT NULL ORDER BY "id" LIMIT $1"#
        );
        let setup = tombstone_setup(
            Dialect::Postgres,
            table,
            "id",
            "bigint",
            table.beside("people_gone"),
        );
        assert!(
            setup[0].starts_with(r#"CREATE TABLE IF NOT EXISTS "sales"."people_gone" ("#),
            "{}",
            setup[0]
        );
        // An index is created in its table's schema, and named without it.
        assert!(
            setup[1].starts_with(
                r#"CREATE INDEX IF NOT EXISTS "people_gone_by_time" ON "sales"."people_gone""#
            ),
            "{}",
            setup[1]
        );
        assert!(
            setup[2].starts_with(
                r#"CREATE OR REPLACE FUNCTION "sales"."people_gone_keep"() RETURNS trigger"#
            ),
            "{}",
            setup[2]
        );
        assert!(
            setup[3].ends_with(r#"AFTER DELETE ON "sales"."people" FOR EACH ROW EXECUTE FUNCTION "sales"."people_gone_keep"()"#),
            "{}",
            setup[3]
        );
    }

    #[test]
    fn reads_select_arrays_as_json_and_other_types_as_text_on_postgresql() {
        let column = |name: &str, sql_type: &str| Column {
            name: name.into(),
            sql_type: sql_type.into(),
            not_null: false,
            precision: None,
            generated: false,
            always_identity: false,
            sequence: None,
            unique: false,
            copy: false,
        };
        let plain = [
            column("id", "bigint"),
            column("at", "timestamp with time zone"),
        ];
        assert_eq!(select_list(Dialect::Postgres, &plain), "*");
        let odd = [
            column("id", "bigint"),
            column("tags", "ARRAY"),
            column("span", "interval"),
            column("mood", "USER-DEFINED"),
        ];
        assert_eq!(
            select_list(Dialect::Postgres, &odd),
            r#""id", to_jsonb("tags") AS "tags", CASE WHEN num_nulls("span") = 1 THEN NULL ELSE format('%s', "span") END AS "span", CASE WHEN num_nulls("mood") = 1 THEN NULL ELSE format('%s', "mood") END AS "mood""#
        );
        assert_eq!(select_list(Dialect::Sqlite, &odd), "*");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(
            delete_many(Dialect::Sqlite, "we\"ird".into(), "id", 1),
            r#"DELETE FROM "we""ird" WHERE "id" IN (?1)"#
        );
    }
}
