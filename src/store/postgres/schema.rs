//! The shared tables. Several nodes may start at once against an empty database, and concurrent
//! `CREATE TABLE IF NOT EXISTS` can still collide in the catalog, so creation runs under a
//! transaction-scoped advisory lock. Names are prefixed: the database may hold other applications'
//! tables. Same columns and Unix-millisecond times as the SQLite file, plus which node set `online`.

use tokio_postgres::Client;

use crate::store::StoreError;

pub const VISITORS: &str = "cobrowse_visitors";
pub const EVENTS: &str = "cobrowse_events";

/// "cobrowse" in ASCII: the advisory lock every node takes around schema creation.
const SCHEMA_LOCK: i64 = 0x636f_6272_6f77_7365;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cobrowse_visitors (
    id            TEXT PRIMARY KEY,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    last_ip       TEXT,
    last_page_url TEXT,
    last_page_at  BIGINT,
    device        TEXT,
    os            TEXT,
    browser       TEXT,
    online        BOOLEAN NOT NULL DEFAULT false,
    online_node   TEXT,
    external_id   TEXT,
    identities    TEXT
);
CREATE INDEX IF NOT EXISTS cobrowse_visitors_touched
    ON cobrowse_visitors ((coalesce(last_seen, created_at)));
CREATE INDEX IF NOT EXISTS cobrowse_visitors_online_node
    ON cobrowse_visitors (online_node) WHERE online;
CREATE TABLE IF NOT EXISTS cobrowse_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    session TEXT NOT NULL,
    name    TEXT NOT NULL,
    role    TEXT,
    bytes   BIGINT
);
CREATE INDEX IF NOT EXISTS cobrowse_events_at ON cobrowse_events (at);
CREATE INDEX IF NOT EXISTS cobrowse_events_session ON cobrowse_events (session, at);
CREATE TABLE IF NOT EXISTS cobrowse_nodes (
    id       TEXT PRIMARY KEY,
    alive_at BIGINT NOT NULL
);
";

/// Creates whatever is missing; a no-op (but for the lock) once the tables exist.
pub async fn ensure(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await?;
    Ok(())
}

/// How hard to clean a table after deleting from it.
#[derive(Clone, Copy)]
pub enum Vacuum {
    /// Prune dead rows so their space is reused. Their bytes can stay in the page's free space.
    Plain,
    /// Rewrite the table and its indexes into new files (and refresh its statistics, whose samples
    /// hold column values): no deleted row is left in them. Locks the table for the rewrite.
    Full,
}

/// Longest a vacuum waits for its lock behind other nodes' transactions before giving up.
const VACUUM_LOCK_TIMEOUT: &str = "SET lock_timeout = '5s'";

/// Dead row versions stay in the table files until a vacuum prunes them, and even then in free
/// space: PostgreSQL has no `secure_delete` (`docs/DATA-POLICY.md` says what this reaches and what
/// not). Outside any transaction and one statement per call, as `VACUUM` must be; a failure is
/// logged, the deletion itself is already committed.
pub async fn vacuum(client: &Client, table: &str, how: Vacuum) {
    let statement = match how {
        Vacuum::Plain => format!("VACUUM {table}"),
        Vacuum::Full => format!("VACUUM (FULL, ANALYZE) {table}"),
    };
    let result = async {
        client.batch_execute(VACUUM_LOCK_TIMEOUT).await?;
        let vacuumed = client.batch_execute(&statement).await;
        client.batch_execute("RESET lock_timeout").await?;
        vacuumed
    }
    .await;
    if let Err(e) = result {
        let error = super::redacted(&e);
        tracing::warn!(%error, table, "store: vacuum after a deletion failed");
    }
}
