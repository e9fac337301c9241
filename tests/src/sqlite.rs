//! Real SQLite files for the tests: generated CRM and shop databases, tables
//! whose `updated_at` a trigger keeps, and one set of helpers to run
//! statements and read results.

use rusqlite::Connection;
use std::path::Path;

/// The time stamp SQLite writes into `updated_at` (millisecond precision, UTC).
pub const STAMP: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Runs SQL statements on the database file `db`; panics naming the file
/// and the statements.
pub fn exec(db: &Path, sql: &str) {
    let conn = Connection::open(db).unwrap_or_else(|e| panic!("opening {}: {e}", db.display()));
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("on {}: {sql}: {e}", db.display()));
}

/// Every row of a query as JSON-ish strings, sorted, for comparing content.
pub fn rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = Connection::open(path).expect("open database");
    let mut st = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("on {}: {sql}: {e}", path.display()));
    let n = st.column_count();
    let mut out: Vec<Vec<Option<String>>> = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Null => None,
                        rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                        rusqlite::types::Value::Real(f) => Some(f.to_string()),
                        rusqlite::types::Value::Text(s) => Some(s),
                        rusqlite::types::Value::Blob(b) => Some(format!("{b:?}")),
                    })
                })
                .collect()
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    out.sort();
    out
}

/// The single value `sql` returns on the SQLite file `db` (its first
/// column of its first row, as [`rows`] spells it); none for a null.
pub fn value(db: &Path, sql: &str) -> Option<String> {
    rows(db, sql)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("on {}: {sql}: no row", db.display()))
        .swap_remove(0)
}

/// The single integer `sql` (a `count(*)`, an id) returns on the SQLite
/// file `db`; a null is 0.
pub fn count(db: &Path, sql: &str) -> i64 {
    let v = value(db, sql).unwrap_or_else(|| "0".to_string());
    v.parse()
        .unwrap_or_else(|e| panic!("on {}: {sql}: {v:?} is not an integer: {e}", db.display()))
}

/// The single value `sql` returns on the SQLite file `db`, as text; panics
/// on a null.
pub fn text(db: &Path, sql: &str) -> String {
    value(db, sql).unwrap_or_else(|| panic!("on {}: {sql}: null", db.display()))
}

/// How a table's primary key is assigned.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    /// `INTEGER PRIMARY KEY`: the id of a deleted last row is given out again.
    Reused,
    /// `INTEGER PRIMARY KEY AUTOINCREMENT`: ids are never reused, and the first
    /// one is this number plus one.
    Sequence(i64),
}

/// Creates `table` with an integer primary key `pk`, the given columns and an
/// `updated_at` column set on insert and kept current by a trigger, so that the
/// `sql` connector can report incremental changes.
pub fn create_table(db: &Path, table: &str, pk: &str, key: Key, columns: &str) {
    let key_sql = match key {
        Key::Reused => "INTEGER PRIMARY KEY",
        Key::Sequence(_) => "INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    let mut sql = format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE {table} (
             {pk} {key_sql},
             {columns},
             updated_at TEXT NOT NULL DEFAULT ({STAMP})
         );
         {}",
        touch_trigger(table, pk)
    );
    if let Key::Sequence(start) = key {
        if start > 0 {
            sql.push_str(&format!(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('{table}', {start});"
            ));
        }
    }
    exec(db, &sql);
}

/// The trigger that stamps `updated_at` of a row of `table` (keyed by `pk`)
/// on every update that does not set it itself.
pub fn touch_trigger(table: &str, pk: &str) -> String {
    format!(
        "CREATE TRIGGER {table}_touch AFTER UPDATE ON {table} FOR EACH ROW
         WHEN NEW.updated_at = OLD.updated_at
         BEGIN
             UPDATE {table} SET updated_at = {STAMP} WHERE {pk} = NEW.{pk};
         END;"
    )
}

/// Waits until SQLite's clock has moved past every stamp `updated_at` of
/// `table` in `db` holds, so that the next edit carries a later stamp than
/// anything a pass has seen.
pub fn after_last_stamp(db: &Path, table: &str) {
    let query = format!("SELECT {STAMP} > coalesce(max(updated_at), '') FROM {table}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(db, &query) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock of {} did not pass the last stamp of {table}",
            db.display()
        );
        std::thread::yield_now();
    }
}

/// Deterministic pseudo-random generator (xorshift), so tests need no crate for it.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// One item of a slice.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// First names of generated contacts.
pub const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Radia", "Tony",
];
/// Last names of generated contacts.
pub const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "Perlman", "Hoare",
];

/// Inserts `n` generated contacts into `table` of `conn` through `insert`
/// (four parameters: first name, last name, e-mail address, phone or null),
/// names drawn from the first `names` of [`FIRST`] and [`LAST`] by a
/// generator seeded with `seed`; the addresses are unique (the row's number,
/// from `first`, is in them) and every seventh contact has no phone.
pub fn insert_contacts(
    conn: &mut Connection,
    insert: &str,
    (seed, names): (u64, usize),
    numbers: std::ops::Range<usize>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare(insert)?;
        let mut rng = Rng::new(seed);
        for i in numbers {
            let first = rng.pick(&FIRST[..names]);
            let last = rng.pick(&LAST[..names]);
            let email = format!(
                "{}.{}{i}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            );
            let phone = (i % 7 != 0).then(|| format!("+1 555 {:04}", rng.next_u64() % 10_000));
            st.execute(rusqlite::params![first, last, email, phone])?;
        }
    }
    tx.commit()
}

/// Creates a CRM database with `n` generated contacts in table `contacts`
/// (id, first_name, last_name, email, phone, updated_at kept by a trigger).
pub fn crm_db(path: &Path, n: usize) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE contacts (
             id INTEGER PRIMARY KEY,
             first_name TEXT NOT NULL,
             last_name TEXT NOT NULL,
             email TEXT NOT NULL,
             phone TEXT,
             updated_at TEXT NOT NULL DEFAULT ({STAMP})
         );
         CREATE INDEX contacts_updated_at ON contacts (updated_at, id);
         CREATE TRIGGER contacts_touch AFTER UPDATE ON contacts FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
         BEGIN
             UPDATE contacts SET updated_at = {STAMP} WHERE id = NEW.id;
         END;",
    ))?;
    insert_contacts(
        &mut conn,
        "INSERT INTO contacts (first_name, last_name, email, phone) VALUES (?1, ?2, ?3, ?4)",
        (42, FIRST.len()),
        0..n,
    )
}

/// Creates an empty shop database with table `customers` and other column
/// names (customer_id, fname, lname, mail, phone).
pub fn shop_db(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (
             customer_id INTEGER PRIMARY KEY,
             fname TEXT NOT NULL,
             lname TEXT NOT NULL,
             mail TEXT NOT NULL UNIQUE,
             phone TEXT
         );",
    )
}
