//! A `weir run` child process for the end-to-end tests: where it listens,
//! the lines it prints, raw HTTP requests to it, and a graceful stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `weir run` and the lines it prints.
pub struct Daemon {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl Daemon {
    /// Starts `BIN --manifest MANIFEST run` on a free port of 127.0.0.1
    /// (the fallback poll interval an hour), with extra environment
    /// variables, and waits for the line saying where it listens.
    pub fn start(bin: &str, manifest: &Path, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_at(bin, manifest, "127.0.0.1:0", envs)
    }

    /// [`Daemon::start`] listening at `listen` (`127.0.0.1:PORT`).
    pub fn start_at(bin: &str, manifest: &Path, listen: &str, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(bin, manifest, listen, &[], envs)
    }

    /// [`Daemon::start_at`] with more arguments of `weir run`
    /// (`--batch-size 7`).
    pub fn start_with(
        bin: &str,
        manifest: &Path,
        listen: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Daemon {
        let mut child = Command::new(bin)
            .args([
                "--manifest",
                manifest.to_str().unwrap(),
                "run",
                "--listen",
                listen,
                "--interval",
                "3600",
            ])
            .args(args)
            .env("WEIR_CACHE_DIR", env!("WEIR_TEST_CACHE"))
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon prints where it listens");
        let port = first
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{first}"));
        Daemon { child, lines, port }
    }

    /// Waits (at most 30 s) for a printed line containing `text`.
    pub fn expect_line(&self, text: &str) -> String {
        self.expect_line_within(text, Duration::from_secs(30))
    }

    /// Waits at most `limit` for a printed line containing `text`.
    pub fn expect_line_within(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {text:?} within {limit:?}"),
            }
        }
    }

    /// The lines printed so far and not yet read.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Sends SIGTERM, waits for the "stopped" line and the exit (30 s at
    /// most); the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill")
            .success());
        self.expect_line("stopped");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("waiting for weir") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Announces a body of `len` bytes without sending it: the service must
    /// refuse it from the length alone.
    pub fn oversized(&self, path: &str, token: &str, len: usize) -> u16 {
        let port = self.port;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n").unwrap();
        // The service answers without waiting for the body; read the status
        // line, not to the end (the connection may stay open for the body).
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        self.request(method, path, &auth, body)
    }

    /// Sends a request with extra header lines (each ending in CRLF).
    pub fn request(&self, method: &str, path: &str, auth: &str, body: &str) -> (u16, String) {
        let port = self.port;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (status, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
