//! Which proxy nodes are alive, so that `online` survives another node's start and does not survive
//! its own node's crash. A single process may clear every flag when it starts (nobody is connected
//! to it yet); with several nodes on one database that would mark the other nodes' visitors offline.
//! So every node has a random id per process, sets `online_node` with the flag, and heartbeats its
//! row in `cobrowse_nodes`. A flag counts only while its node's heartbeat is younger than
//! [`LAPSE`]: reads filter on that at once, and a start or sweep on any node clears the lapsed flags
//! and node rows. A node that stops cleanly clears its own flags (`leave`).
//!
//! Heartbeats carry each node's clock, so the nodes' clocks must agree to well within [`LAPSE`].

use std::time::{Duration, SystemTime};

use tokio_postgres::Client;

use crate::store::retention;
use crate::store::StoreError;

/// How often a node refreshes its row (on a timer, and before a batch once this much clock time
/// has passed, so a clock moved ahead in tests does not lapse a node that is working).
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A node silent this long is taken for dead, and its visitors for offline.
pub const LAPSE: Duration = Duration::from_secs(180);

/// Node rows whose heartbeat is before this are lapsed at `now`.
pub fn lapse_cutoff(now: SystemTime) -> i64 {
    retention::cutoff(now, LAPSE)
}

pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub async fn heartbeat(client: &Client, node: &str, now: SystemTime) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO cobrowse_nodes (id, alive_at) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET alive_at = greatest(cobrowse_nodes.alive_at, $2)",
            &[&node, &retention::unix_ms(now)],
        )
        .await?;
    Ok(())
}

/// Clears the flags of lapsed nodes (and of none at all) and forgets those nodes.
pub async fn clear_lapsed(client: &Client, now: SystemTime) -> Result<(), StoreError> {
    let cutoff = lapse_cutoff(now);
    client
        .execute(
            "UPDATE cobrowse_visitors v SET online = false, online_node = NULL
             WHERE online AND NOT EXISTS (SELECT 1 FROM cobrowse_nodes n
                                          WHERE n.id = v.online_node AND n.alive_at > $1)",
            &[&cutoff],
        )
        .await?;
    client
        .execute(
            "DELETE FROM cobrowse_nodes WHERE alive_at <= $1",
            &[&cutoff],
        )
        .await?;
    Ok(())
}

/// A node that stops holds no connections any more: its flags and its row go.
pub async fn leave(client: &Client, node: &str) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE cobrowse_visitors SET online = false, online_node = NULL
             WHERE online AND online_node = $1",
            &[&node],
        )
        .await?;
    client
        .execute("DELETE FROM cobrowse_nodes WHERE id = $1", &[&node])
        .await?;
    Ok(())
}
