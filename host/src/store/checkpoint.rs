//! Checkpoints of the store's write-ahead log, on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: the writer copies the log's pages back into the database file
//! and waits for two fsyncs before its next transaction. A pass that changes
//! records all over a large store dirties thousands of pages a transaction,
//! so most commits paid for a checkpoint. Here a commit only notes how long
//! the log is; past [`CHECKPOINT_FRAMES`] it wakes a thread that checkpoints
//! (`PASSIVE`: it never blocks the writer) on a connection of its own, while
//! the writer goes on.
//!
//! The log starts again from its beginning only when a write transaction
//! finds it wholly copied back, which a checkpoint running beside a busy
//! writer rarely leaves it. A log that keeps growing costs more than the
//! copy: each frame lands in a fresh part of the file, which the kernel
//! zeroes first (a fifth of a large incremental pass's CPU). So past
//! [`WRITER_CHECKPOINT_FRAMES`] the committing connection checkpoints too: a
//! `PASSIVE` checkpoint that copies what the thread has not (and gives way
//! at once if the thread is at it), after which the log starts over.

use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::Connection;
use std::cell::{Cell, OnceCell};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Log length (pages) past which a commit wakes the checkpoint thread; the
/// threshold SQLite's own automatic checkpoint uses.
const CHECKPOINT_FRAMES: c_int = 1000;
/// Log length (pages, 32 MiB at 4 KiB) past which the committing connection
/// checkpoints itself, so that the log starts over.
const WRITER_CHECKPOINT_FRAMES: c_int = 8192;

thread_local! {
    /// The log length the last commit on this thread reported.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// Installed as the WAL hook of the store's connections (in place of the
/// automatic checkpoint). It runs inside the commit, on the committing thread.
pub(super) fn note_commit(wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    if frames >= WRITER_CHECKPOINT_FRAMES {
        // A busy checkpoint is no failure of the commit; the next one retries.
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
    }
    Ok(())
}

#[derive(Default)]
struct State {
    due: bool,
    stop: bool,
    /// Checkpoints run so far.
    done: u64,
}

/// The checkpoints of one open store: the WAL hook on its connection, and
/// the thread, started by the first commit that leaves the log long enough
/// (a store opened only to be read never starts one).
pub(super) struct Checkpoints {
    path: PathBuf,
    thread: OnceCell<Option<Checkpointer>>,
}

impl Checkpoints {
    /// Takes over the checkpoints of `writer`, the store's connection to `path`.
    pub(super) fn new(path: &Path, writer: &Connection) -> Checkpoints {
        writer.wal_hook(Some(note_commit));
        Checkpoints {
            path: path.to_path_buf(),
            thread: OnceCell::new(),
        }
    }

    /// Called after a commit on this thread: wakes the checkpoint thread if
    /// the log has grown past the threshold. Without a thread (it could not
    /// open its connection), the writer's own checkpoint bounds the log.
    pub(super) fn committed(&self) {
        if WAL_FRAMES.take() < CHECKPOINT_FRAMES {
            return;
        }
        if let Some(t) = self.thread.get_or_init(|| Checkpointer::start(&self.path)) {
            t.wake();
        }
    }
}

/// The checkpoint thread of one open store.
struct Checkpointer {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread.
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = match Connection::open(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store = %path.display(), "no checkpoint thread: {e}");
                return None;
            }
        };
        let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weir-checkpoint".into())
            .spawn(move || run(conn, &theirs))
            .ok()?;
        Some(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    fn wake(&self) {
        let (state, wake) = &*self.shared;
        state.lock().unwrap_or_else(|p| p.into_inner()).due = true;
        wake.notify_all();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (state, wake) = &*self.shared;
        state.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, shared: &(Mutex<State>, Condvar)) {
    let (state, wake) = shared;
    loop {
        {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            while !s.due && !s.stop {
                s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.due = false;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("store checkpoint: {e}");
        }
        state.lock().unwrap_or_else(|p| p.into_inner()).done += 1;
        wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::time::Duration;

    impl Checkpointer {
        /// Waits until `n` checkpoints have run; false after `timeout`.
        fn wait_for(&self, n: u64, timeout: Duration) -> bool {
            let (state, wake) = &*self.shared;
            let s = state.lock().unwrap();
            let (s, _) = wake.wait_timeout_while(s, timeout, |s| s.done < n).unwrap();
            s.done >= n
        }
    }

    #[test]
    fn a_long_log_is_copied_back_by_the_thread_while_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.db");
        let mut store = Store::open(&path).unwrap();
        // About 8 MiB of pages in one commit, past the threshold.
        store
            .transaction(|tx| {
                tx.conn()
                    .execute_batch(
                        "CREATE TABLE blobs (b BLOB);
                         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                         INSERT INTO blobs SELECT zeroblob(4000) FROM n;",
                    )
                    .map_err(|source| crate::store::StoreError::Sqlite {
                        path: path.clone(),
                        source,
                    })
            })
            .unwrap();
        let checkpointer = store
            .checkpoints
            .as_ref()
            .and_then(|c| c.thread.get())
            .and_then(Option::as_ref)
            .expect("a checkpoint thread, started by the commit");
        assert!(checkpointer.wait_for(1, Duration::from_secs(30)));
        // The pages are in the database file itself, the store still open
        // (the writer's own checkpoint comes only at 8192 pages).
        assert!(std::fs::metadata(&path).unwrap().len() > 8_000_000);
    }
}
