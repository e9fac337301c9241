//! Deletes found by PostgreSQL logical decoding (`deletes = "logical"`): a
//! replication slot with the built-in `test_decoding` plugin keeps every change
//! of the database from the moment it is created; the connector peeks at the
//! slot's changes and keeps the deletes of its table, and the old keys of
//! updates that changed a row's key. A truncate names no rows: the change
//! read stops with an error until a full read finds what it removed.
//!
//! The slot is moved on one batch behind: the host may ask for the next batch
//! with a cursor whose items it has not committed yet (it reads one batch
//! ahead), so a call moves the slot only to the position of the cursor before
//! the one it was given (`settled`), and skips what the slot holds up to the
//! given one. Changes the host did not commit are read again after a crash.
//!
//! The server needs `wal_level = logical` and the role the REPLICATION
//! attribute. A slot holds the server's WAL until it is moved on: a slot that
//! weir no longer reads must be dropped (`SELECT pg_drop_replication_slot('…')`).

use crate::statements::Name;
use weir_sdk::sql::Value;
use weir_sdk::sql_util::quote_ident;
use weir_sdk::ConnectorError;

/// The output plugin; it ships with PostgreSQL.
pub const PLUGIN: &str = "test_decoding";

/// The longest name PostgreSQL gives a slot.
const MAX_SLOT_NAME: usize = 63;

/// The default slot of a system's table: `weir_<system>_<table>`, lower case,
/// with every other character than a-z, 0-9 and `_` as `_`.
pub fn default_slot(system: &str, table: &str) -> String {
    let mut name: String = format!("weir_{system}_{table}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    name.truncate(MAX_SLOT_NAME);
    name
}

/// Whether a slot name is one PostgreSQL accepts.
pub fn valid_slot(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SLOT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The server's `wal_level` and version, and the plugin and database of slot
/// $1 if it exists: one row (wal_level, plugin or null, database or null,
/// whether it is this database, server_version_num).
pub const SLOT_STATE: &str = "SELECT current_setting('wal_level'), s.plugin::text, s.database::text, s.database = current_database(), \
     current_setting('server_version_num')::int \
     FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots AS s ON s.slot_name = $1";

/// Where slot $1 stands against position $2: no row when the slot is
/// missing, else one row (whether it moved past $2, whether its WAL was
/// removed).
pub const SLOT_POSITION: &str =
    "SELECT confirmed_flush_lsn > $2::text::pg_lsn, coalesce(wal_status = 'lost', false) \
     FROM pg_replication_slots WHERE slot_name = $1";

/// Creates slot $1 with the plugin; one row with the slot's start position.
pub const CREATE_SLOT: &str =
    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding')";

/// The server's current write position, as text.
pub const CURRENT_POSITION: &str = "SELECT pg_current_wal_lsn()::text";

/// Moves slot $1 on to position $2; one row. A slot already further on stays
/// where it is (PostgreSQL refuses to move a slot back).
pub const ADVANCE: &str = "SELECT end_lsn::text FROM pg_replication_slot_advance($1, \
     greatest($2::text::pg_lsn, (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1)))";

/// Whether column $2 of table $1 identifies deleted rows in the WAL: one row
/// (whether the table exists, its replica identity, whether the column is in
/// it, whether the table is partitioned or has children).
pub const REPLICA_IDENTITY: &str = "SELECT c.oid IS NOT NULL, c.relreplident::text, \
     EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = c.oid AND a.attname = $2 \
               AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), \
     c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid) \
     FROM (SELECT 1) AS one LEFT JOIN pg_class c ON c.oid = to_regclass($1)";

/// The type of column $2 of table $1, as PostgreSQL spells it in a cast.
pub const KEY_TYPE: &str = "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped";

/// Peeks at up to $3 changes of slot $1 (whole transactions: a transaction is
/// never split) and keeps, of table $2, in transactions that committed after
/// position $4:
/// - deletes: rows (0, the commit's position, the delete's column list);
/// - updates that changed the key, which remove the row under its old key:
///   rows (0, the commit's position, `old-key`'s column list followed by
///   `new-tuple: …`). `test_decoding` prints an old key only then, unless the
///   table's replica identity is `FULL`: then every update has one, and key
///   changes are left to full reads rather than every update looked at;
/// - truncates of the table, alone or with others: rows (2, the commit's
///   position, null). A truncate names no rows.
///
/// And one row (1, the last commit's position after $4 or null, the number
/// of changes looked at). A change's own position is not unique (the next
/// transaction starts where one commits), so a transaction is known by its
/// COMMIT row's position: moving the slot there skips the transaction.
pub const PEEK_DELETES: &str = "WITH target AS ( \
       SELECT format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)) AS name, c.relreplident = 'f' AS full_identity \
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($2)), \
     seen AS (SELECT lsn, xid, data, n FROM pg_logical_slot_peek_changes($1, NULL, $3::int) WITH ORDINALITY AS p(lsn, xid, data, n)), \
     ends AS (SELECT xid, lsn AS done FROM seen WHERE starts_with(data, 'COMMIT')), \
     committed AS (SELECT ends.done, seen.data, seen.n FROM seen JOIN ends ON ends.xid = seen.xid WHERE ends.done > $4::text::pg_lsn), \
     mine AS (SELECT done, substr(data, length('table ' || target.name || ': ') + 1) AS change, n, target.full_identity \
       FROM committed, target WHERE starts_with(data, 'table ' || target.name || ': ')) \
     SELECT part, done::text, detail FROM ( \
       SELECT 0 AS part, done, substr(change, length('DELETE: ') + 1) AS detail, n FROM mine WHERE starts_with(change, 'DELETE: ') \
       UNION ALL SELECT 0, done, substr(change, length('UPDATE: old-key: ') + 1), n FROM mine \
         WHERE starts_with(change, 'UPDATE: old-key: ') AND NOT full_identity \
       UNION ALL SELECT 2, done, NULL, n FROM committed, target \
         WHERE starts_with(data, 'table ') AND split_part(data, ': ', 2) = 'TRUNCATE' \
           AND position(', ' || target.name || ', ' IN ', ' || substr(split_part(data, ': ', 1), length('table ') + 1) || ', ') > 0 \
       UNION ALL SELECT 1, (SELECT max(done) FROM ends WHERE done > $4::text::pg_lsn), count(*)::text, NULL FROM seen) AS found \
     ORDER BY part, n";

/// The keys among a JSON array of key texts ($1) that the table no longer
/// holds, read back as the column's type (so that they have the form reads
/// give them); a key deleted and inserted anew is not among them.
pub fn gone_keys(table: Name<'_>, pk: &str, key_type: &str) -> String {
    let (t, k) = (table.sql(), quote_ident(pk));
    format!(
        "SELECT key FROM (SELECT DISTINCT CAST(j AS {key_type}) AS key FROM jsonb_array_elements_text($1::text::jsonb) AS j) AS keys \
         WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{k} = keys.key)"
    )
}

/// The slot's state as `check` needs it.
pub struct SlotState {
    pub wal_level: String,
    /// The plugin, when the slot exists.
    pub plugin: Option<String>,
    /// The slot's database, when it exists.
    pub database: Option<String>,
    /// Whether the slot belongs to the database the connector is in.
    pub here: bool,
    /// The server's version number (150004 for 15.4).
    pub version: i64,
}

impl SlotState {
    /// Reads the one row of [`SLOT_STATE`].
    pub fn of(row: &[Value]) -> Self {
        let text = |i: usize| match row.get(i) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        SlotState {
            wal_level: text(0).unwrap_or_default(),
            plugin: text(1),
            database: text(2),
            here: matches!(row.get(3), Some(Value::Integer(1))),
            version: match row.get(4) {
                Some(Value::Integer(v)) => *v,
                _ => 0,
            },
        }
    }

    /// Why the slot cannot serve, if it cannot; `slot` and `what` name it.
    pub fn refusal(&self, slot: &str, what: &str) -> Option<String> {
        if self.version < 130_000 {
            return Some(format!(
                "{what}: deletes = \"logical\" needs PostgreSQL 13 or later; use deletes = \"tombstones\""
            ));
        }
        if self.wal_level != "logical" {
            return Some(format!(
                "{what}: deletes = \"logical\" needs wal_level = logical on the server (it is '{}'); set it in postgresql.conf and restart the server, or use deletes = \"tombstones\"",
                self.wal_level
            ));
        }
        match (&self.plugin, &self.database) {
            (Some(plugin), _) if plugin != PLUGIN => Some(format!(
                "{what}: replication slot '{slot}' exists with plugin '{plugin}', not '{PLUGIN}'; name another with setting 'slot', or drop it"
            )),
            (_, Some(database)) if !self.here => Some(format!(
                "{what}: replication slot '{slot}' belongs to database '{database}'; name another with setting 'slot'"
            )),
            _ => None,
        }
    }
}

/// The value of column `pk` in a delete's column list as `test_decoding`
/// prints it (`id[integer]:5 name[text]:'it''s'`): unquoted text, or none when
/// the list lacks the column or cannot be read.
pub fn key_of(detail: &str, pk: &str) -> Option<String> {
    let mut rest = detail.trim_start();
    while !rest.is_empty() {
        let (name, after) = identifier(rest)?;
        let after = after.strip_prefix('[')?;
        // Types may hold brackets (`text[]`); the type ends at the first "]:".
        let end = after.find("]:")?;
        let after = &after[end + 2..];
        let (value, after) = cell(after)?;
        if name == pk {
            return value;
        }
        rest = after.trim_start();
    }
    None
}

/// A column name, as `quote_identifier` prints it, and the text after it.
fn identifier(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let (inner, after) = quoted_until(quoted, '"')?;
        return Some((inner, after));
    }
    let end = text.find('[')?;
    Some((text[..end].to_string(), &text[end..]))
}

/// A value: `'text'` with doubled quotes, `null`, or a bare token up to the
/// next space; and the text after it.
fn cell(text: &str) -> Option<(Option<String>, &str)> {
    if let Some(quoted) = text.strip_prefix('\'') {
        let (inner, after) = quoted_until(quoted, '\'')?;
        return Some((Some(inner), after));
    }
    let end = text.find(' ').unwrap_or(text.len());
    let token = &text[..end];
    Some(((token != "null").then(|| token.to_string()), &text[end..]))
}

/// The text up to the closing `quote` (a doubled quote is one quote inside),
/// and the text after the closing quote.
fn quoted_until(text: &str, quote: char) -> Option<(String, &str)> {
    let mut inner = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != quote {
            inner.push(c);
            continue;
        }
        if matches!(chars.peek(), Some((_, next)) if *next == quote) {
            inner.push(quote);
            chars.next();
            continue;
        }
        return Some((inner, &text[i + c.len_utf8()..]));
    }
    None
}

/// An error about the slot: a missing slot or missing rights say what to do;
/// any other error keeps its kind (a timeout or a lost connection passes).
pub fn slot_error(what: &str, slot: &str, e: ConnectorError) -> ConnectorError {
    let missing = e.message.contains("[SQLSTATE 42704]");
    let denied = e.message.contains("[SQLSTATE 42501]");
    if missing {
        ConnectorError::schema(format!(
            "{what}: replication slot '{slot}' is missing ({}); `weir check` creates it, then run `weir sync --full`: deletes made meanwhile are unknown",
            e.message
        ))
    } else if denied {
        ConnectorError::permission(format!(
            "{what}: replication slot '{slot}': {}; the role needs the REPLICATION attribute",
            e.message
        ))
    } else {
        ConnectorError {
            message: format!("{what}: replication slot '{slot}': {}", e.message),
            ..e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_test_decoding_lines() {
        assert_eq!(key_of("id[integer]:5", "id").as_deref(), Some("5"));
        assert_eq!(
            key_of("id[text]:'it''s here' n[integer]:2", "id").as_deref(),
            Some("it's here")
        );
        assert_eq!(
            key_of("tags[text[]]:'{a,b}' code[character varying]:'X 1'", "code").as_deref(),
            Some("X 1")
        );
        assert_eq!(
            key_of(r#""Key ""A"""[uuid]:'0b0e…' id[bigint]:7"#, "Key \"A\"").as_deref(),
            Some("0b0e…")
        );
        assert_eq!(key_of("id[integer]:null", "id"), None);
        assert_eq!(key_of("(no-tuple-data)", "id"), None);
        assert_eq!(key_of("other[integer]:1", "id"), None);
    }

    #[test]
    fn slot_names() {
        assert_eq!(
            default_slot("CRM-main", "contacts"),
            "weir_crm_main_contacts"
        );
        assert_eq!(default_slot("pg", "public.Orders"), "weir_pg_public_orders");
        assert_eq!(default_slot("a", &"t".repeat(100)).len(), 63);
        assert!(valid_slot("weir_pg_contacts"));
        assert!(!valid_slot("Weir"));
        assert!(!valid_slot(""));
    }

    #[test]
    fn a_slot_that_cannot_serve_is_explained() {
        let state = |wal: &str, plugin: Option<&str>, here: bool| SlotState {
            wal_level: wal.into(),
            plugin: plugin.map(Into::into),
            database: plugin.map(|_| "other".into()),
            here,
            version: 150_004,
        };
        let old = SlotState {
            version: 120_000,
            ..state("logical", None, false)
        };
        let why = old.refusal("s", "entity 'c'").unwrap();
        assert!(why.contains("PostgreSQL 13 or later"), "{why}");
        let why = state("replica", None, false)
            .refusal("s", "entity 'c'")
            .unwrap();
        assert!(
            why.contains("wal_level = logical") && why.contains("'replica'"),
            "{why}"
        );
        let why = state("logical", Some("pgoutput"), true)
            .refusal("s", "entity 'c'")
            .unwrap();
        assert!(why.contains("plugin 'pgoutput'"), "{why}");
        let why = state("logical", Some(PLUGIN), false)
            .refusal("s", "entity 'c'")
            .unwrap();
        assert!(why.contains("belongs to database 'other'"), "{why}");
        assert!(state("logical", Some(PLUGIN), true)
            .refusal("s", "e")
            .is_none());
        assert!(state("logical", None, false).refusal("s", "e").is_none());
    }
}
