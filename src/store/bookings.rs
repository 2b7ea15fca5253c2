//! Bookings made by agents during calls (the `book_appointment` tool).

use serde_json::json;
use sqlx::FromRow;

use super::{Db, StoreResult, now, outbox};
use crate::domain::{AgentId, CallId, TenantId};

#[derive(Debug, Clone, FromRow)]
pub struct BookingRow {
    pub id: i64,
    pub tenant_id: i64,
    pub call_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub name: String,
    pub phone: Option<String>,
    /// Local `YYYY-MM-DDTHH:MM:SS` in `timezone`.
    pub starts_at: String,
    pub timezone: String,
    /// The same instant, RFC 3339 UTC.
    pub starts_utc: String,
    pub notes: Option<String>,
    pub created_at: String,
}

pub struct NewBooking<'a> {
    pub call: Option<CallId>,
    pub agent: Option<AgentId>,
    pub name: &'a str,
    pub phone: Option<&'a str>,
    pub starts_at: &'a str,
    pub timezone: &'a str,
    pub starts_utc: &'a str,
    pub notes: Option<&'a str>,
}

impl BookingRow {
    /// The booking as the API and the `booking.created` event show it.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "name": self.name,
            "phone": self.phone,
            "start": self.starts_at,
            "timezone": self.timezone,
            "start_utc": self.starts_utc,
            "notes": self.notes,
            "created_at": self.created_at,
        })
    }
}

/// Stores a booking and its `booking.created` event in one transaction.
pub async fn insert(db: &Db, tenant: TenantId, booking: NewBooking<'_>) -> StoreResult<BookingRow> {
    let mut tx = db.begin_write().await?;
    let row: BookingRow = sqlx::query_as(
        "INSERT INTO bookings (tenant_id, call_id, agent_id, name, phone, starts_at, timezone, \
            starts_utc, notes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
    )
    .bind(tenant.0)
    .bind(booking.call.map(|c| c.0))
    .bind(booking.agent.map(|a| a.0))
    .bind(booking.name)
    .bind(booking.phone)
    .bind(booking.starts_at)
    .bind(booking.timezone)
    .bind(booking.starts_utc)
    .bind(booking.notes)
    .bind(now())
    .fetch_one(&mut *tx)
    .await?;
    outbox::push(&mut tx, tenant, outbox::BOOKING_CREATED, &row.to_json()).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, tenant: TenantId, id: i64) -> StoreResult<BookingRow> {
    let row = sqlx::query_as("SELECT * FROM bookings WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// Newest first, one page.
pub async fn list(
    db: &Db,
    tenant: TenantId,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<BookingRow>> {
    let rows = sqlx::query_as(
        "SELECT * FROM bookings WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
    )
    .bind(tenant.0)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn count(db: &Db, tenant: TenantId) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM bookings WHERE tenant_id = $1")
        .bind(tenant.0)
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}

/// The bookings made during one call.
pub async fn for_call(db: &Db, tenant: TenantId, call: CallId) -> StoreResult<Vec<BookingRow>> {
    let rows =
        sqlx::query_as("SELECT * FROM bookings WHERE tenant_id = $1 AND call_id = $2 ORDER BY id")
            .bind(tenant.0)
            .bind(call.0)
            .fetch_all(db.pool())
            .await?;
    Ok(rows)
}
