//! The SQLite file itself: where it lives, who may read it, the settings that make a deletion a real
//! one, and the schema. Opening happens once at start; everything after runs on the store's own thread
//! (`sqlite/mod.rs`).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::store::StoreError;

/// The file inside the data directory.
pub const FILE_NAME: &str = "cobrowse.sqlite3";

/// Tables and indexes. Every column is metadata the policy allows (`docs/DATA-POLICY.md`); nothing
/// here can hold a body, a cookie or a query string, and times are Unix milliseconds.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS visitors (
    id            TEXT PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    last_seen     INTEGER,
    last_ip       TEXT,
    last_page_url TEXT,
    last_page_at  INTEGER,
    device        TEXT,
    os            TEXT,
    browser       TEXT,
    online        INTEGER NOT NULL DEFAULT 0,
    external_id   TEXT,
    identities    TEXT
);
CREATE INDEX IF NOT EXISTS visitors_touched ON visitors (coalesce(last_seen, created_at));
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    session TEXT NOT NULL,
    name    TEXT NOT NULL,
    role    TEXT,
    bytes   INTEGER
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS events_session ON events (session, at);
";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Creates the folder (owner-only), opens or creates the file, and sets it up.
pub fn open(dir: &Path) -> Result<Connection, StoreError> {
    create_private_dir(dir)?;
    let file = path(dir);
    let conn = Connection::open(&file).map_err(|source| StoreError::Open {
        path: file.clone(),
        source,
    })?;
    restrict_file(&file)?;
    configure(&conn)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// `secure_delete` overwrites deleted rows with zeros, so a deleted visitor or an expired record leaves
/// no bytes behind in the file; the rollback journal (`DELETE` mode) is removed after every commit, so no
/// second file holds old pages either.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "PRAGMA secure_delete = ON;
         PRAGMA journal_mode = DELETE;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )?;
    // A concurrent opener (a second process on the same folder) waits a little instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| StoreError::Dir {
        path: dir.to_owned(),
        source,
    })
}

/// Visitor IPs are personal data: the file is readable by its owner only.
fn restrict_file(file: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Dir {
                path: file.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}
