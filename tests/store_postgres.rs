//! The store on a real PostgreSQL (`tests/support/postgres.rs`): the same contract the SQLite store
//! passes (`tests/support/store_contract.rs`), then what only a shared database has to get right:
//! several nodes starting at once, online flags that belong to a node, and a connection that drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cobrowse_proxy::cache::{Clock, ManualClock};
use cobrowse_proxy::store::{retention, EventName, Identity, Sighting, Store, StoreError};
use cobrowse_proxy::url_codec::SessionId;
use support::postgres::Postgres;
use url::Url;

#[macro_use]
#[path = "support/store_contract.rs"]
mod contract;

use contract::{sighting, Backend, UA};

/// A server and one database on it: what a cluster of proxy nodes shares.
struct Db {
    server: Postgres,
    url: String,
}

async fn db() -> Option<Db> {
    let server = Postgres::start().await?;
    let url = server.create_database().await;
    Some(Db { server, url })
}

impl Db {
    async fn node(&self, clock: &Arc<ManualClock>) -> Store {
        Store::open_postgres(&self.url, clock.clone(), true)
            .await
            .unwrap()
    }

    fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap()
    }

    async fn sql(&self) -> tokio_postgres::Client {
        self.server.client(self.name()).await
    }

    /// Every byte of this database's files, after a checkpoint wrote its pages out.
    async fn files(&self) -> Vec<u8> {
        let sql = self.sql().await;
        sql.batch_execute("CHECKPOINT").await.unwrap();
        let oid: u32 = sql
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let dir = self.server.data_dir().join("base").join(oid.to_string());
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }

    /// Every stored row of every table, as text.
    async fn everything(&self) -> String {
        let sql = self.sql().await;
        let mut all = String::new();
        for table in ["cobrowse_visitors", "cobrowse_events", "cobrowse_nodes"] {
            let query = format!("SELECT t::text FROM {table} t");
            for row in sql.query(&query, &[]).await.unwrap() {
                all.push_str(row.get::<_, &str>(0));
                all.push('\n');
            }
        }
        all
    }
}

impl Backend for Db {
    async fn open(&self, clock: Arc<ManualClock>, debug_events: bool) -> Store {
        Store::open_postgres(&self.url, clock, debug_events)
            .await
            .unwrap()
    }

    /// Neither in any row nor in the database's files (tables, indexes, their statistics), once
    /// checkpointed; the write-ahead log is not looked at (`docs/DATA-POLICY.md`).
    async fn assert_absent(&self, needles: &[&str]) {
        let stored = self.everything().await;
        let files = self.files().await;
        for needle in needles {
            assert!(!stored.contains(needle), "{needle} is stored: {stored}");
            let on_disk = files.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!on_disk, "{needle} is still in the database's files");
        }
    }
}

store_contract!(db());

fn page() -> Url {
    Url::parse("https://www.shop.test/").unwrap()
}

fn online(id: &SessionId, online: bool) -> Sighting<'_> {
    Sighting {
        visitor: id,
        ip: None,
        page: None,
        user_agent: None,
        online: Some(online),
    }
}

/// Retries `check` every 50 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn several_nodes_start_at_once_on_an_empty_database() {
    let Some(db) = db().await else { return };
    let clock = Arc::new(ManualClock::new());
    let opens = (0..4).map(|_| Store::open_postgres(&db.url, clock.clone(), false));
    let nodes: Vec<Store> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|node| node.expect("every node starts"))
        .collect();
    let ids: Vec<SessionId> = nodes.iter().map(|_| SessionId::random()).collect();
    for (node, id) in nodes.iter().zip(&ids) {
        node.seen(sighting(id, &page(), UA));
    }
    for node in &nodes {
        node.close().await;
    }
    let reader = db.node(&clock).await;
    assert_eq!(
        reader.visitors().await.unwrap().len(),
        4,
        "one shared store"
    );
    reader.close().await;
}

#[tokio::test]
async fn online_belongs_to_the_node_that_set_it() {
    let Some(db) = db().await else { return };
    let clock = Arc::new(ManualClock::new());
    let a = db.node(&clock).await;
    let id = SessionId::random();
    a.seen(online(&id, true));
    let _ = a.visitors().await.unwrap();
    let b = db.node(&clock).await;
    let v = b.visitor(&id).await.unwrap().unwrap();
    assert!(v.online, "another node's start leaves a's visitor online");
    b.seen(online(&id, false));
    assert!(
        b.visitor(&id).await.unwrap().unwrap().online,
        "b's leave is not a's: a still holds the visitor's connection"
    );
    a.close().await;
    assert!(
        !b.visitor(&id).await.unwrap().unwrap().online,
        "a stopped: nobody holds the visitor any more"
    );
    b.close().await;
}

#[tokio::test]
async fn a_silent_nodes_visitors_go_offline() {
    let Some(db) = db().await else { return };
    let clock = Arc::new(ManualClock::new());
    let store = db.node(&clock).await;
    let (dead, alive) = (SessionId::random(), SessionId::random());
    store.seen(online(&alive, true));
    let _ = store.visitors().await.unwrap();
    let now = retention::unix_ms(clock.now());
    // A node that crashed four minutes ago, with a visitor it had marked online.
    let sql = db.sql().await;
    sql.execute(
        "INSERT INTO cobrowse_nodes (id, alive_at) VALUES ('crashed', $1)",
        &[&(now - 240_000)],
    )
    .await
    .unwrap();
    sql.execute(
        "INSERT INTO cobrowse_visitors (id, created_at, last_seen, online, online_node)
         VALUES ($1, $2, $2, true, 'crashed')",
        &[&dead.as_str(), &now],
    )
    .await
    .unwrap();
    assert!(
        !store.visitor(&dead).await.unwrap().unwrap().online,
        "read as offline at once"
    );
    assert!(store.visitor(&alive).await.unwrap().unwrap().online);
    store.sweep().await.unwrap();
    let row = sql
        .query_one(
            "SELECT online, online_node FROM cobrowse_visitors WHERE id = $1",
            &[&dead.as_str()],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "the sweep cleared the flag");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    let crashed = sql
        .query("SELECT 1 FROM cobrowse_nodes WHERE id = 'crashed'", &[])
        .await
        .unwrap();
    assert!(crashed.is_empty(), "and forgot the node");
    store.close().await;
}

#[tokio::test]
async fn the_store_rides_out_a_lost_connection() {
    let Some(db) = db().await else { return };
    let clock = Arc::new(ManualClock::new());
    let store = db.node(&clock).await;
    let (before, during, after) = (
        SessionId::random(),
        SessionId::random(),
        SessionId::random(),
    );
    store.seen(sighting(&before, &page(), UA));
    assert_eq!(store.visitors().await.unwrap().len(), 1);

    let admin = db.server.client("postgres").await;
    let name = db.name();
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
    let down = eventually(Duration::from_secs(10), || async {
        store.visitors().await.is_err()
    })
    .await;
    assert!(down, "queries fail while the database is away");
    assert!(matches!(
        store.visitors().await,
        Err(StoreError::Unavailable)
    ));
    store.seen(sighting(&during, &page(), UA));
    store.event(&during, EventName::PageView, None, None);

    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let up = eventually(Duration::from_secs(30), || async {
        store.visitors().await.is_ok()
    })
    .await;
    assert!(up, "reconnected within the backoff bound");
    store.seen(sighting(&after, &page(), UA));
    store.identify(&after, Identity::default());
    let ids: Vec<String> = store
        .visitors()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert!(ids.contains(&before.as_str().to_owned()), "kept");
    assert!(ids.contains(&after.as_str().to_owned()), "recorded again");
    assert!(
        !ids.contains(&during.as_str().to_owned()),
        "dropped, like a full queue"
    );
    store.close().await;
}
