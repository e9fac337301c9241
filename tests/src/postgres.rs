//! A real PostgreSQL cluster started on 127.0.0.1 for a test or a benchmark,
//! with a `psql` helper; stopped (immediately) on drop.
//!
//! Defaults: the server binaries of the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package), or of the folder in `WEIR_PG_BIN`; one
//! fresh temp folder per cluster, which is the data directory and also holds
//! the Unix socket and the server log (`log`); superuser `postgres` with
//! `trust` authentication (no password); encoding UTF8 and locale C; a free
//! port. [`Postgres::start`] turns `fsync` off, which is fine for tests only;
//! [`Postgres::start_with`] takes the settings explicitly, so a benchmark can
//! keep PostgreSQL's durable defaults.
//!
//! `initdb` refuses to run as root: when the process runs as root, the temp
//! folder is handed to the `postgres` user and `initdb` and `pg_ctl` run
//! through `runuser -u postgres --`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian installs the server binaries, one folder per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// How many ports [`Postgres::start_with`] tries when the chosen one is taken.
const PORT_ATTEMPTS: usize = 3;
/// Seconds `pg_ctl` waits for the server to accept connections.
const START_TIMEOUT_SECS: &str = "60";
/// Lines of the server log quoted when the server does not start.
const LOG_TAIL_LINES: usize = 20;

/// A running PostgreSQL cluster in a temp folder; stopped on drop.
pub struct Postgres {
    /// The data directory (also the socket folder and the log's home).
    dir: tempfile::TempDir,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// The folder holding `initdb`, `pg_ctl` and `psql`.
    bin: PathBuf,
    /// Whether server commands run as the `postgres` user (we are root).
    as_postgres: bool,
    /// The server options (`-o` of `pg_ctl start`), port included once started.
    options: String,
}

impl Postgres {
    /// Runs `initdb` into a fresh temp folder and starts the server on
    /// 127.0.0.1 at a free port with `fsync` off (tests only: a crash of the
    /// machine may corrupt the cluster), and waits until it accepts
    /// connections.
    pub fn start() -> Result<Postgres, String> {
        Postgres::start_with(&["fsync=off"])
    }

    /// Like [`Postgres::start`], with `settings` (`name=value`, each passed as
    /// `-c name=value`) instead of `fsync=off`; `&[]` keeps PostgreSQL's
    /// defaults, durability included.
    pub fn start_with(settings: &[&str]) -> Result<Postgres, String> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root()?;
        let dir = tempfile::Builder::new()
            .prefix("weir-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp folder for PostgreSQL: {e}"))?;
        let mut pg = Postgres {
            dir,
            port: 0,
            bin,
            as_postgres,
            options: String::new(),
        };
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(pg.dir.path()))
                .map_err(|e| format!("{e}; running as root, the cluster must belong to the user 'postgres' (Debian's postgresql package creates it)"))?;
        }
        let mut initdb = pg.server_command("initdb");
        initdb.arg("-D").arg(pg.dir.path()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut initdb)?;
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -k '{}'",
            pg.dir.path().display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        for attempt in 1..=PORT_ATTEMPTS {
            pg.port = free_port()?;
            let mut start = pg.server_command("pg_ctl");
            start
                .arg("-D")
                .arg(pg.dir.path())
                .arg("-o")
                .arg(format!("{options} -p {}", pg.port))
                .args(["-w", "-t", START_TIMEOUT_SECS, "-l"])
                .arg(pg.log_path())
                .arg("start");
            match run(&mut start) {
                Ok(_) => {
                    pg.options = format!("{options} -p {}", pg.port);
                    return Ok(pg);
                }
                Err(e) => {
                    let log = pg.log_tail();
                    let port_taken =
                        log.contains("could not bind") || log.contains("already in use");
                    if !(port_taken && attempt < PORT_ATTEMPTS) {
                        return Err(format!(
                            "PostgreSQL did not start on 127.0.0.1:{} ({e}); the end of its log {}:\n{log}",
                            pg.port,
                            pg.log_path().display()
                        ));
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Stops the server (`pg_ctl stop -m fast`): clients are cut off and
    /// new connections refused until [`Postgres::resume`].
    pub fn pause(&self) -> Result<(), String> {
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path())
            .args(["-m", "fast", "-w", "stop"]);
        run(&mut stop).map(|_| ())
    }

    /// Starts the server again on the same port after [`Postgres::pause`].
    pub fn resume(&self) -> Result<(), String> {
        let mut start = self.server_command("pg_ctl");
        start
            .arg("-D")
            .arg(self.dir.path())
            .arg("-o")
            .arg(&self.options)
            .args(["-w", "-t", START_TIMEOUT_SECS, "-l"])
            .arg(self.log_path())
            .arg("start");
        run(&mut start).map(|_| ())
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` for the superuser, without a password:
    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates the database `name` (`CREATE DATABASE`, name quoted).
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{}\";", name.replace('"', "\"\"")),
        )
        .map(|_| ())
    }

    /// Runs `sql` (statements and psql meta-commands such as `\copy`) with
    /// `psql -v ON_ERROR_STOP=1 -At -q` on database `db` as the superuser and
    /// returns its standard output: unaligned rows, `|` between columns. The
    /// error names the database and carries psql's standard error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut child = self
            .psql_command(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("psql").display()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = sql.to_owned();
        // Written from a thread: a large script and a large result would
        // otherwise wait for each other on full pipes.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| format!("psql on database '{db}': {e}"))?;
        let written = writer.join().expect("the stdin writer does not panic");
        if !out.status.success() {
            return Err(format!(
                "psql on database '{db}' failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        written.map_err(|e| format!("psql on database '{db}': writing the script: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A psql session on database `db` that runs what [`PsqlSession::send`]
    /// gives it as it arrives, and ends when dropped: a transaction it opens
    /// stays open (and its locks held) until then.
    pub fn session(&self, db: &str) -> Result<PsqlSession, String> {
        let child = self
            .psql_command(db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("psql").display()))?;
        Ok(PsqlSession { child })
    }

    /// psql on database `db` as the superuser, reading its script from
    /// standard input, stopping at the first error, printing unaligned rows.
    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-q",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
        .args(["-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped());
        cmd
    }

    /// The server log so far: errors of statements are in it (PostgreSQL's
    /// default `log_min_error_statement`), each written before the client
    /// learns of it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server log (`log` in the data directory).
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// The last lines of the server log, or why it cannot be read.
    fn log_tail(&self) -> String {
        match std::fs::read_to_string(self.log_path()) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(no log: {e})"),
        }
    }

    /// A command running the server binary `name`, as the `postgres` user
    /// when we are root, from the data directory (so that `postgres` never
    /// needs to enter our working directory).
    fn server_command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }
}

/// A running psql session (see [`Postgres::session`]).
pub struct PsqlSession {
    child: std::process::Child,
}

impl PsqlSession {
    /// Sends statements to the session.
    pub fn send(&mut self, sql: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("the session has ended")?;
        stdin
            .write_all(format!("{sql}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to psql: {e}"))
    }
}

impl Drop for PsqlSession {
    /// Ends the session (its open transaction rolls back) and waits for psql.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    /// Stops the server at once (`pg_ctl stop -m immediate`), ignoring errors;
    /// the temp folder goes next.
    fn drop(&mut self) {
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// The folder of the server binaries: `WEIR_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<major>/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            return Err(format!(
                "WEIR_PG_BIN is {} but it holds no initdb: point it at the folder of initdb, pg_ctl and psql",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    let no_server = || {
        format!("no PostgreSQL server binaries under {DEBIAN_PG_ROOT}/*/bin: install them (apt-get install -y postgresql) or set WEIR_PG_BIN to the folder of initdb, pg_ctl and psql")
    };
    let entries = std::fs::read_dir(DEBIAN_PG_ROOT).map_err(|_| no_server())?;
    entries
        .flatten()
        .filter_map(|e| {
            let version: Vec<u32> = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(no_server)
}

/// Whether the effective user is root (the `Uid:` line of
/// `/proc/self/status`: real, effective, saved, filesystem).
fn running_as_root() -> Result<bool, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status to learn the user id: {e}"))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or("/proc/self/status has no 'Uid:' line with an effective user id")?;
    Ok(effective == "0")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// Runs `cmd` and returns its standard output; the error names the program
/// and carries its standard error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let name = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program of a command and, through `runuser`, the program it runs.
fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    if program == Path::new("runuser") {
        let inner = cmd.get_args().nth(3).map(Path::new).unwrap_or(program);
        format!("{} (as user postgres)", inner.display())
    } else {
        program.display().to_string()
    }
}
