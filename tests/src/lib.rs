//! Helpers of the end-to-end tests: where the connectors are, how to run weir,
//! and generators of real SQLite databases.

pub mod daemon;
pub mod directus;
pub mod postgres;
pub mod receiver;
pub use daemon::Daemon;
pub use directus::Directus;
pub use postgres::{Postgres, PsqlSession};
pub use receiver::{http_receiver, Received};

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
    /// The outcome of a finished process.
    pub fn of(out: Output) -> Run {
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

/// The single integer `sql` (a `count(*)`, say) returns on the SQLite file `db`.
pub fn count(db: &Path, sql: &str) -> i64 {
    rows(db, sql)[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

/// The manifest block of system `name` that only writes contacts into the
/// `contacts` table of `NAME.db` (beside the manifest) through the `sql` connector.
pub fn contacts_target(name: &str) -> String {
    format!(
        r#"
[systems.{name}]
connector = {}
config = {{ database = "db" }}
databases = {{ db = "{name}.db" }}
[systems.{name}.entities.contacts]
direction = "write"
settings = {{ table = "contacts" }}
"#,
        toml_path(&connector("sql"))
    )
}

/// The manifest block of system `crm`: the `contacts` table of [`crm_db`]
/// (`crm.db` beside the manifest) through the `sql` connector, changes by
/// `updated_at` (itself not synced), in `direction`.
pub fn crm_system(direction: &str) -> String {
    format!(
        r#"[systems.crm]
connector = {}
config = {{ database = "crm" }}
databases = {{ crm = "crm.db" }}
[systems.crm.entities.contacts]
direction = "{direction}"
ignore = ["updated_at"]
settings = {{ table = "contacts", updated_at = "updated_at" }}
"#,
        toml_path(&connector("sql"))
    )
}

/// The manifest block of the system `shop` that writes contacts into the
/// `customers` table of [`shop_db`] (`shop.db` beside the manifest).
pub fn shop_system() -> String {
    format!(
        r#"[systems.shop]
connector = {}
config = {{ database = "shop" }}
databases = {{ shop = "shop.db" }}
[systems.shop.entities.contacts]
direction = "write"
primary_key = "customer_id"
rename = {{ fname = "first_name", lname = "last_name", mail = "email" }}
settings = {{ table = "customers" }}
"#,
        toml_path(&connector("sql"))
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
    Run::of(out)
}

/// A json-server (npm `json-server@0.17.4`) started on 127.0.0.1 for a test,
/// with a middleware that stamps `updatedAt` on every write; stopped on drop.
pub struct JsonServer {
    child: std::process::Child,
    /// Its base URL.
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl JsonServer {
    /// Starts json-server on `db` (a JSON file) and waits until it answers.
    /// Writes are stamped (`updatedAt`) with the time they arrive, unless
    /// the URL carries `?keep_stamp` (a write stamped earlier, by its client).
    /// `tests/run.sh` installs it and sets `WEIR_JSON_SERVER` to its `bin.js`.
    pub fn start(dir: &Path, db: &Path) -> JsonServer {
        let bin = std::env::var("WEIR_JSON_SERVER").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/weir-e2e/json-server/node_modules/json-server/lib/cli/bin.js")
        });
        assert!(Path::new(&bin).is_file(), "json-server is not installed at {bin}: run `bash tests/run.sh` (it installs it) or set WEIR_JSON_SERVER");
        let stamp = dir.join("stamp.js");
        std::fs::write(
            &stamp,
            "module.exports = (req, res, next) => {\n  if (['POST', 'PUT', 'PATCH'].includes(req.method) && !('keep_stamp' in req.query)) req.body.updatedAt = new Date().toISOString();\n  next();\n};\n",
        )
        .expect("write the middleware");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("node")
            .arg(&bin)
            .arg(db)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--middlewares",
            ])
            .arg(&stamp)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting node");
        let server = JsonServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.request("GET", "/", None).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "json-server did not answer within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    /// Sends a request; the status and body, or none if the server does not answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let body = body.unwrap_or("");
        write!(s, "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        Some((
            status,
            out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string(),
        ))
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
