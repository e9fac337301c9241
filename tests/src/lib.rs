//! Helpers of the end-to-end tests: where the connectors are, how to run weir,
//! and generators of real SQLite databases.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The outcome of running weir.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the weir binary `bin` with `args` against `manifest`, with the
/// compile cache shared by all tests.
pub fn weir(bin: &str, manifest: &Path, args: &[&str]) -> Run {
    weir_env(bin, manifest, args, &[])
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

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Radia", "Tony",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "Perlman", "Hoare",
];

/// Creates a CRM database with `n` generated contacts in table `contacts`
/// (id, first_name, last_name, email, phone, updated_at kept by a trigger).
pub fn crm_db(path: &Path, n: usize) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE contacts (
             id INTEGER PRIMARY KEY,
             first_name TEXT NOT NULL,
             last_name TEXT NOT NULL,
             email TEXT NOT NULL,
             phone TEXT,
             updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         );
         CREATE INDEX contacts_updated_at ON contacts (updated_at, id);
         CREATE TRIGGER contacts_touch AFTER UPDATE ON contacts FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
         BEGIN
             UPDATE contacts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
         END;",
    )?;
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO contacts (first_name, last_name, email, phone) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut rng = Rng::new(42);
        for i in 0..n {
            let first = rng.pick(FIRST);
            let last = rng.pick(LAST);
            let email = format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                i
            );
            let phone = if i % 7 == 0 {
                None
            } else {
                Some(format!("+1 555 {:04}", rng.next_u64() % 10_000))
            };
            st.execute(rusqlite::params![first, last, email, phone])?;
        }
    }
    tx.commit()
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

/// Every row of a query as JSON-ish strings, sorted, for comparing content.
pub fn rows(path: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = Connection::open(path).expect("open database");
    let mut st = conn.prepare(sql).expect("prepare");
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

/// The rows of a CSV file (header first), as read by the csv crate.
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .expect("open csv");
    r.records()
        .map(|rec| rec.expect("csv record").iter().map(String::from).collect())
        .collect()
}

/// Writes a manifest file into `dir` and returns its path.
pub fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Runs weir like [`weir`], with extra environment variables (for example the
/// fault-injection switches). A run killed by a signal has code -1.
pub fn weir_env(bin: &str, manifest: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(bin)
        .arg("--manifest")
        .arg(manifest)
        .args(args)
        .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
        .env_remove("WEIR_LOG")
        .envs(envs.iter().copied())
        .output()
        .expect("running weir");
    Run::from(out)
}
