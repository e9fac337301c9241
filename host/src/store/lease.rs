//! One writer per store: the process that syncs (`weir sync`, `weir run`,
//! `weir rollback`) first takes the store's writer lease, a row with its
//! holder, a fencing token and an expiry. A thread renews it while the
//! process lives; a process that dies stops renewing, and its lease can be
//! taken over once it has expired (at once by a process of the same host,
//! which can see that the holder's pid no longer runs). Every write transaction of a process
//! that holds the lease checks, inside the transaction, that the token is
//! still its own, so a holder that was paused past its expiry (and whose
//! lease was taken over) writes nothing more.
//!
//! The table keeps one row per lease name; today there is one, `writer`.
//! Later the same rows can lease a source or a batch of deliveries each to
//! one of several workers.

use super::{configure, now, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The name of the lease that makes a process the store's writer.
const WRITER: &str = "writer";

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it took the lease.
    pub since: String,
    /// When the lease expires unless renewed.
    pub expires_at: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weir process {} on {}, since {} (its lease runs until {} unless renewed)",
            self.pid, self.host, self.since, self.expires_at
        )
    }
}

/// The tokens of the leases this process holds, by store file: the store's
/// transactions check them.
fn held() -> &'static Mutex<HashMap<PathBuf, i64>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, i64>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// Whether this process holds the writer lease of the store at `path`.
pub fn holds_writer_lease(path: &Path) -> bool {
    token_for(path).is_some()
}

/// This process's writer token for the store at `path`, if it holds one.
pub(super) fn token_for(path: &Path) -> Option<i64> {
    let held = held().lock().unwrap_or_else(|p| p.into_inner());
    held.get(path).copied()
}

/// Fails unless the writer lease of the store on `conn` still carries
/// `token` (inside a transaction: the check and the writes commit together).
pub(super) fn check(conn: &Connection, path: &Path, token: i64) -> Result<()> {
    let row: Option<(i64, String, u32, String, String)> = conn
        .prepare_cached("SELECT token, host, pid, since, expires_at FROM leases WHERE name = ?1")
        .and_then(|mut st| {
            st.query_row([WRITER], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    match row {
        Some((t, ..)) if t == token => Ok(()),
        other => Err(StoreError::LeaseLost {
            path: path.to_path_buf(),
            holder: other.map(|(_, host, pid, since, expires_at)| Holder {
                host,
                pid,
                since,
                expires_at,
            }),
        }),
    }
}

/// The writer lease of one store, held by this process until dropped.
pub struct WriterLease {
    path: PathBuf,
    token: i64,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl WriterLease {
    /// Takes the writer lease of the store at `path` (which must exist,
    /// migrated), for `ttl` at a time, renewed every third of it. When
    /// another live process holds it: with `wait`, tries again until that
    /// lease is released or expires; without, fails naming the holder.
    pub fn take(path: &Path, ttl: Duration, wait: bool) -> Result<WriterLease> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        configure(&conn).map_err(err)?;
        let token = loop {
            match try_take(&mut conn, path, ttl)? {
                Ok(token) => break token,
                Err(holder) if !wait => {
                    return Err(StoreError::Leased {
                        path: path.to_path_buf(),
                        holder,
                    })
                }
                Err(holder) => {
                    tracing::info!(%holder, "waiting for the store's writer lease");
                    std::thread::sleep(ttl.min(Duration::from_secs(3)) / 3);
                }
            }
        };
        held()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf(), token);
        let (stop, stopped) = mpsc::channel();
        let renewer = std::thread::Builder::new()
            .name("weir-lease".into())
            .spawn({
                let path = path.to_path_buf();
                move || renew(conn, &path, token, ttl, stopped)
            })
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(WriterLease {
            path: path.to_path_buf(),
            token,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }

    /// The fencing token: higher than that of every earlier holder.
    pub fn token(&self) -> i64 {
        self.token
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        held()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.path);
        // The renewer releases the lease as it stops.
        drop(self.stop.take());
        if let Some(r) = self.renewer.take() {
            let _ = r.join();
        }
    }
}

/// One attempt at the writer lease: its new token, or who holds it. A
/// lease left by this very process, or by one of this host that no longer
/// runs, is taken at once; another's once it has run out.
fn try_take(conn: &mut Connection, path: &Path, ttl: Duration) -> Result<Result<i64, Holder>> {
    let err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let host = host_name();
    let pid = std::process::id();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let now = now();
    let current: Option<(i64, Holder)> = tx
        .query_row(
            "SELECT token, host, pid, since, expires_at FROM leases WHERE name = ?1",
            [WRITER],
            |r| {
                Ok((
                    r.get(0)?,
                    Holder {
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        since: r.get(3)?,
                        expires_at: r.get(4)?,
                    },
                ))
            },
        )
        .optional()
        .map_err(err)?;
    if let Some((_, holder)) = &current {
        let here = holder.host == host;
        // A holder on this host that no longer runs (killed, crashed) is
        // not waited for; one elsewhere is, until its lease runs out.
        let gone = here && (holder.pid == pid || !running(holder.pid));
        if holder.expires_at > now && !gone {
            return Ok(Err(holder.clone()));
        }
    }
    let token = current.map_or(1, |(t, _)| t + 1);
    tx.execute(
        "INSERT INTO leases (name, token, host, pid, since, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (name) DO UPDATE SET token = excluded.token, host = excluded.host,
            pid = excluded.pid, since = excluded.since, expires_at = excluded.expires_at",
        params![WRITER, token, host, pid, now, expiry(ttl)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(Ok(token))
}

/// Renews the lease every third of `ttl` until told to stop (or the sender
/// is dropped), then releases it. A renewal that finds the lease taken
/// over stops renewing: the store's transactions refuse this process's
/// writes from then on.
fn renew(conn: Connection, path: &Path, token: i64, ttl: Duration, stop: mpsc::Receiver<()>) {
    let every = ttl / 3;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let renewed = conn.execute(
            "UPDATE leases SET expires_at = ?3 WHERE name = ?1 AND token = ?2",
            params![WRITER, token, expiry(ttl)],
        );
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::error!(store = %path.display(), "the store's writer lease was taken over: this process writes no more");
                return;
            }
            // A busy store: the next renewal tries again, well before expiry.
            Err(e) => tracing::warn!(store = %path.display(), "cannot renew the writer lease: {e}"),
        }
    }
    let _ = conn.execute(
        "DELETE FROM leases WHERE name = ?1 AND token = ?2",
        params![WRITER, token],
    );
}

/// When a lease taken or renewed now expires.
fn expiry(ttl: Duration) -> String {
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    let at = jiff::Timestamp::now()
        .checked_add(ttl)
        .unwrap_or(jiff::Timestamp::MAX);
    format!("{at:.3}")
}

/// Whether process `pid` of this host runs. Where the system cannot say
/// (no `/proc`), it is taken to run: its lease is then waited out.
fn running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// This machine's name, as the kernel gives it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const TTL: Duration = Duration::from_secs(30);

    /// A migrated store in a fresh folder.
    fn store() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.db");
        drop(Store::open(&path).unwrap());
        (dir, path)
    }

    /// Makes the lease row another process's, expiring `at`.
    fn give_away(path: &Path, at: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute(
            "UPDATE leases SET token = token + 1, host = 'elsewhere', pid = 4242, expires_at = ?1",
            [at],
        )
        .unwrap();
    }

    #[test]
    fn tokens_grow_and_a_dropped_lease_is_released() {
        let (_dir, path) = store();
        let first = WriterLease::take(&path, TTL, false).unwrap();
        assert_eq!(first.token(), 1);
        assert!(holds_writer_lease(&path));
        drop(first);
        assert!(!holds_writer_lease(&path));
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the lease row is gone once released");
        let second = WriterLease::take(&path, TTL, false).unwrap();
        assert_eq!(second.token(), 1, "a released lease starts over");
    }

    #[test]
    fn a_live_holder_is_named_and_an_expired_one_is_taken_over() {
        let (_dir, path) = store();
        let lease = WriterLease::take(&path, TTL, false).unwrap();
        give_away(&path, "9999-01-01T00:00:00.000Z");
        held().lock().unwrap().remove(&path);
        let e = WriterLease::take(&path, TTL, false)
            .err()
            .expect("held elsewhere");
        let text = e.to_string();
        assert!(
            text.contains("in use by weir process 4242 on elsewhere") && text.contains("--wait"),
            "{text}"
        );
        give_away(&path, "2000-01-01T00:00:00.000Z");
        let taken = WriterLease::take(&path, TTL, false).unwrap();
        assert_eq!(taken.token(), 4, "one past the expired holder's token");
        drop(lease);
    }

    #[test]
    fn a_holder_whose_lease_was_taken_over_writes_nothing() {
        let (_dir, path) = store();
        let mut store = Store::open(&path).unwrap();
        let lease = WriterLease::take(&path, TTL, false).unwrap();
        store
            .transaction(|tx| tx.set_cursor("a", "contacts", crate::store::CursorKind::Read, "1"))
            .expect("the holder writes");
        give_away(&path, "9999-01-01T00:00:00.000Z");
        let e = store
            .transaction(|tx| tx.set_cursor("a", "contacts", crate::store::CursorKind::Read, "2"))
            .expect_err("a lease taken over fences the old holder");
        assert!(
            matches!(&e, StoreError::LeaseLost { holder: Some(h), .. } if h.pid == 4242),
            "{e}"
        );
        assert!(
            e.to_string().contains("no longer holds its writer lease"),
            "{e}"
        );
        assert_eq!(
            store
                .cursor("a", "contacts", crate::store::CursorKind::Read)
                .unwrap(),
            Some("1".into()),
            "the fenced write did not commit"
        );
        drop(lease);
    }
}
