//! The connectors' private key/value state, each system's on a connection
//! of its own.

use super::{checkpoint, configure, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// The connector-private key/value state of one system, on its own connection
/// to the store so that connector calls never wait for the engine's transaction.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
    system: String,
}

impl StateStore {
    /// Opens the state of `system` in the store at `path` (which must exist).
    pub fn open(path: &Path, system: &str) -> Result<StateStore> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        configure(&conn).map_err(err)?;
        // Its rare commits leave checkpoints to the engine's connection
        // (the writer's own past 32 MiB of log still applies).
        conn.wal_hook(Some(checkpoint::note_commit));
        Ok(StateStore {
            conn,
            path: path.to_path_buf(),
            system: system.to_string(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT value FROM connector_state WHERE system = ?1 AND key = ?2",
                params![self.system, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Sets `key`.
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO connector_state (system, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (system, key) DO UPDATE SET value = excluded.value",
                params![self.system, key, value],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM connector_state WHERE system = ?1 AND key = ?2",
                params![self.system, key],
            )
            .map(|_| ())
            .map_err(self.err())
    }
}
