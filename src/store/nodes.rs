//! The node registry: one row per running engine process (`nodes`: name, pid, started, last
//! heartbeat). A process registers at start-up, heartbeats from its maintenance worker and
//! deletes its row at a clean shutdown; a node whose heartbeat is older than the timeout, or
//! whose row is gone, is dead, and any node ends the calls it was streaming
//! ([`super::calls::interrupted`]). The name is the machine's host name and the bound address:
//! a process that registers under a name already present has taken that address over, so the
//! earlier rows under it are of processes that are gone ([`retire_previous`]).
//!
//! System-wide rows: no tenant.

use super::{Db, StoreResult, now};
use crate::domain::NodeId;

/// Registers this process; returns its node id.
pub async fn register(db: &Db, name: &str, pid: i64) -> StoreResult<NodeId> {
    let stamp = now();
    let id = sqlx::query_scalar(
        "INSERT INTO nodes (name, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
         RETURNING id",
    )
    .bind(name)
    .bind(pid)
    .bind(&stamp)
    .fetch_one(db.pool())
    .await?;
    Ok(NodeId(id))
}

/// Forgets the earlier processes registered under `name` (this machine, this address), whose
/// calls are then ended by the next sweep without waiting for the timeout. Returns how many.
pub async fn retire_previous(db: &Db, node: NodeId, name: &str) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM nodes WHERE name = $1 AND id <> $2")
        .bind(name)
        .bind(node.0)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Records that `node` is alive. A row that is gone (another node took this one for dead
/// during a long stall) is registered again under the same id.
pub async fn heartbeat(db: &Db, node: NodeId, name: &str, pid: i64) -> StoreResult<()> {
    let stamp = now();
    let done = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2")
        .bind(&stamp)
        .bind(node.0)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        tracing::warn!(node_id = %node, "this node was taken for dead; registering it again");
        sqlx::query(
            "INSERT INTO nodes (id, name, pid, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(node.0)
        .bind(name)
        .bind(pid)
        .bind(&stamp)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// Forgets nodes silent since before `cutoff` (RFC 3339); returns how many.
pub async fn forget_silent(db: &Db, cutoff: &str) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
        .bind(cutoff)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Deletes this node's row at a clean shutdown.
pub async fn deregister(db: &Db, node: NodeId) -> StoreResult<()> {
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(node.0)
        .execute(db.pool())
        .await?;
    Ok(())
}
