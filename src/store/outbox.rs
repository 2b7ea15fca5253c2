//! The event outbox: each event is written in the same transaction as the change it describes;
//! the webhook worker delivers them. An event's id is a UUID, stable across delivery attempts.

use serde_json::Value;
use sqlx::FromRow;

use super::{Db, StoreResult, Tx, now};
use crate::domain::TenantId;

pub const CALL_STARTED: &str = "call.started";
pub const CALL_ENDED: &str = "call.ended";
pub const CALL_TRANSCRIPT_READY: &str = "call.transcript_ready";
pub const BOOKING_CREATED: &str = "booking.created";

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub tenant_id: i64,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: String,
    pub created_at: String,
}

/// Adds an event inside `tx`.
pub async fn push(tx: &mut Tx, tenant: TenantId, kind: &str, data: &Value) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (tenant_id, event_id, type, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.0)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(kind)
    .bind(data.to_string())
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A tenant's events in the order they were written.
pub async fn list(db: &Db, tenant: TenantId) -> StoreResult<Vec<EventRow>> {
    let rows = sqlx::query_as(
        "SELECT id, tenant_id, event_id, type, payload, created_at FROM outbox \
         WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}
