//! The embedded store: one SQLite file in the controller's state directory.
//!
//! WAL with `synchronous=FULL`: a commit is on disk before the call returns, so a decision the
//! controller then sends survives a power loss (NORMAL may lose the last commits, and a node
//! would then hold a CNCI or tunnel id the store forgot). Writers take the write lock at
//! `BEGIN` (IMMEDIATE), so concurrent callers, in this process or another, serialize instead of
//! deciding on the same snapshot; the busy timeout makes them wait rather than fail.

mod auto;
mod decide;
mod forward;
mod ingress_rule;
mod membership;
mod ops;
mod rows;
pub mod schema;
mod security;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::store::{Result, StoreError};

/// The store's file name inside the state directory.
pub const STORE_FILE: &str = "controller.sqlite3";

/// How long a caller waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite [`Store`](crate::Store). One connection; open one store per thread or process
/// for parallel callers (they share the file safely).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            rusqlite::Error::FromSqlConversionFailure(_, _, why) => {
                StoreError::Corrupt(why.to_string())
            }
            other => StoreError::Backend(Box::new(other)),
        }
    }
}

impl SqliteStore {
    /// Open (or create) the store in `state_dir`, creating the directory if needed.
    pub fn open_in(state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir).map_err(|e| StoreError::NotAStore {
            path: state_dir.display().to_string(),
            why: format!("cannot create the state directory: {e}"),
        })?;
        Self::open(&state_dir.join(STORE_FILE))
    }

    /// Open (or create) the store file at `path`, migrating an older schema.
    ///
    /// Several processes may create or migrate the same file at once. SQLite answers some of
    /// those races with SQLITE_BUSY without calling the busy handler (switching a new file to
    /// WAL, a WAL recovery in progress), so a busy open is tried again, within the busy timeout.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let started = std::time::Instant::now();
        loop {
            match Self::open_unchecked(path, &shown) {
                Err(err) if is_busy(&err) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other.map_err(|err| not_a_database(err, &shown)),
            }
        }
    }

    fn open_unchecked(path: &Path, shown: &str) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        set_pragmas(&conn, shown)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::migrate(&tx, shown)?;
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file (always [`schema::SCHEMA_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|tx| Ok(tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction rolled it back when it unwound: the connection is sound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `decide` in one write transaction: committed (durably) if it returns Ok, rolled
    /// back entirely otherwise.
    fn write<T>(&self, decide: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = decide(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Run `look` on one consistent snapshot.
    fn read<T>(&self, look: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        look(&tx)
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock this one needs.
fn is_busy(err: &StoreError) -> bool {
    let StoreError::Backend(inner) = err else {
        return false;
    };
    inner
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| matches!(code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// SQLite's "not a database" and "malformed" errors, said as what they mean for the caller.
fn not_a_database(err: StoreError, shown: &str) -> StoreError {
    if let StoreError::Backend(inner) = &err {
        if let Some(sqlite) = inner.downcast_ref::<rusqlite::Error>() {
            if let Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =
                sqlite.sqlite_error_code()
            {
                return StoreError::NotAStore {
                    path: shown.to_owned(),
                    why: sqlite.to_string(),
                };
            }
        }
    }
    err
}

fn set_pragmas(conn: &Connection, shown: &str) -> Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotAStore {
            path: shown.to_owned(),
            why: format!("journal_mode stayed {mode}: WAL refused"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}
