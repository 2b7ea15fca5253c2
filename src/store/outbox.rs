//! The event outbox: each event is written in the same transaction as the change it describes,
//! together with one delivery per webhook endpoint of the business subscribed to its type; the
//! webhook worker (`crate::events`) sends them. An event's id is a UUID, stable across delivery
//! attempts.

use serde_json::Value;
use sqlx::FromRow;

use super::{Db, StoreResult, Tx, now};
use crate::domain::TenantId;

pub const CALL_STARTED: &str = "call.started";
pub const CALL_ENDED: &str = "call.ended";
pub const CALL_TRANSCRIPT_READY: &str = "call.transcript_ready";
pub const BOOKING_CREATED: &str = "booking.created";
pub const CAMPAIGN_COMPLETED: &str = "campaign.completed";

/// Every event type a webhook endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    CALL_STARTED,
    CALL_ENDED,
    CALL_TRANSCRIPT_READY,
    BOOKING_CREATED,
    CAMPAIGN_COMPLETED,
];

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

/// Adds an event inside `tx`, and a delivery to each of the business's enabled endpoints that
/// subscribe to its type.
pub async fn push(tx: &mut Tx, tenant: TenantId, kind: &str, data: &Value) -> StoreResult<()> {
    let event_id = uuid::Uuid::new_v4().to_string();
    let created_at = now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (tenant_id, event_id, type, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(tenant.0)
    .bind(&event_id)
    .bind(kind)
    .bind(data.to_string())
    .bind(&created_at)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries \
            (tenant_id, endpoint_id, outbox_id, order_key, next_attempt_at, created_at) \
         SELECT $1, id, $2, $3, $4, $4 FROM webhook_endpoints \
         WHERE tenant_id = $1 AND enabled = 1 AND (',' || events || ',') LIKE $5",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(order_key(data, &event_id))
    .bind(&created_at)
    .bind(format!("%,{kind},%"))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What an event's deliveries are ordered by: the call it describes (so a receiver sees a call's
/// events in the order they happened), else its campaign, else nothing but itself.
fn order_key(data: &Value, event_id: &str) -> String {
    if let Some(call) = data.get("call_id").and_then(Value::as_i64) {
        format!("call:{call}")
    } else if let Some(campaign) = data.get("campaign_id").and_then(Value::as_i64) {
        format!("campaign:{campaign}")
    } else {
        format!("event:{event_id}")
    }
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
