//! Webhook endpoints, their deliveries and every attempt at one. Deliveries are created with the
//! event (`outbox::push`); the worker claims due ones with a lease, sends them and records the
//! outcome here. A delivery is claimable only when no earlier pending delivery to the same
//! endpoint shares its order key, so a receiver sees each call's events in order, even across
//! retries and processes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Backend, Db, StoreError, StoreResult, now, stamp};
use crate::domain::TenantId;

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: i64,
    pub tenant_id: i64,
    pub url: String,
    /// Comma-separated event types.
    pub events: String,
    pub description: Option<String>,
    pub enabled: i64,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl EndpointRow {
    pub fn event_types(&self) -> Vec<String> {
        self.events.split(',').map(str::to_owned).collect()
    }

    /// The secrets that sign a request at `now` (see [`signing_secrets`]).
    pub fn signing_secrets(&self, now: &str) -> Vec<&str> {
        signing_secrets(
            &self.secret,
            self.previous_secret.as_deref(),
            self.previous_secret_expires_at.as_deref(),
            now,
        )
    }
}

/// The secrets that sign a request at `now`: the current one, and the one before the last
/// rotation until it expires.
fn signing_secrets<'a>(
    current: &'a str,
    previous: Option<&'a str>,
    until: Option<&str>,
    now: &str,
) -> Vec<&'a str> {
    let mut secrets = vec![current];
    if let (Some(old), Some(until)) = (previous, until)
        && until > now
    {
        secrets.push(old);
    }
    secrets
}

pub struct NewEndpoint<'a> {
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub secret: &'a str,
}

/// A partial update; `None` keeps the current value.
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

pub async fn create_endpoint(
    db: &Db,
    tenant: TenantId,
    new: NewEndpoint<'_>,
) -> StoreResult<EndpointRow> {
    let stamp = now();
    let row = sqlx::query_as(
        "INSERT INTO webhook_endpoints \
            (tenant_id, url, events, description, enabled, secret, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $6, $6) RETURNING *",
    )
    .bind(tenant.0)
    .bind(new.url)
    .bind(new.events.join(","))
    .bind(new.description)
    .bind(new.secret)
    .bind(&stamp)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

pub async fn endpoints(db: &Db, tenant: TenantId) -> StoreResult<Vec<EndpointRow>> {
    let rows = sqlx::query_as("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id")
        .bind(tenant.0)
        .fetch_all(db.pool())
        .await?;
    Ok(rows)
}

pub async fn endpoint(db: &Db, tenant: TenantId, id: i64) -> StoreResult<EndpointRow> {
    let row = sqlx::query_as("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

pub async fn update_endpoint(
    db: &Db,
    tenant: TenantId,
    id: i64,
    patch: EndpointPatch,
) -> StoreResult<EndpointRow> {
    let mut tx = db.begin_write().await?;
    let current: EndpointRow =
        sqlx::query_as("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let row = sqlx::query_as(
        "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, enabled = $4, \
            updated_at = $5 WHERE tenant_id = $6 AND id = $7 RETURNING *",
    )
    .bind(patch.url.unwrap_or(current.url))
    .bind(patch.events.map_or(current.events, |e| e.join(",")))
    .bind(patch.description.unwrap_or(current.description))
    .bind(patch.enabled.map_or(current.enabled, i64::from))
    .bind(now())
    .bind(tenant.0)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes an endpoint with its deliveries and their attempts.
pub async fn delete_endpoint(db: &Db, tenant: TenantId, id: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Replaces the signing secret; the old one keeps signing (as a second `v1`) until `old_until`.
pub async fn rotate_secret(
    db: &Db,
    tenant: TenantId,
    id: i64,
    secret: &str,
    old_until: DateTime<Utc>,
) -> StoreResult<EndpointRow> {
    let row = sqlx::query_as(
        "UPDATE webhook_endpoints SET previous_secret = secret, \
            previous_secret_expires_at = $1, secret = $2, updated_at = $3 \
         WHERE tenant_id = $4 AND id = $5 RETURNING *",
    )
    .bind(stamp(old_until))
    .bind(secret)
    .bind(now())
    .bind(tenant.0)
    .bind(id)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Deliveries

/// One delivery as the API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: i64,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: String,
    /// The receiver's status code; absent when no response came (refused, timed out).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// When the next attempt is due, if there is one.
    pub next_retry_at: Option<String>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, o.event_id, o.type, d.status, d.attempts, \
     d.next_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at";

/// An endpoint's deliveries, newest first, a page at a time, optionally of one status.
pub async fn deliveries(
    db: &Db,
    tenant: TenantId,
    endpoint: i64,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<DeliveryRow>> {
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox o ON o.id = d.outbox_id \
         WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND ($3 IS NULL OR d.status = $3) \
         ORDER BY d.id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(tenant.0)
    .bind(endpoint)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn count_deliveries(
    db: &Db,
    tenant: TenantId,
    endpoint: i64,
    status: Option<&str>,
) -> StoreResult<i64> {
    let n = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries \
         WHERE tenant_id = $1 AND endpoint_id = $2 AND ($3 IS NULL OR status = $3)",
    )
    .bind(tenant.0)
    .bind(endpoint)
    .bind(status)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

pub async fn delivery(
    db: &Db,
    tenant: TenantId,
    endpoint: i64,
    id: i64,
) -> StoreResult<DeliveryRow> {
    let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN outbox o ON o.id = d.outbox_id \
         WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND d.id = $3"
    )))
    .bind(tenant.0)
    .bind(endpoint)
    .bind(id)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

/// The attempts at each of `deliveries`, oldest first, as `(delivery id, attempt)`.
pub async fn attempts(db: &Db, deliveries: &[i64]) -> StoreResult<Vec<(i64, AttemptRow)>> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let ids = deliveries
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    #[derive(FromRow)]
    struct Row {
        delivery_id: i64,
        #[sqlx(flatten)]
        attempt: AttemptRow,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT delivery_id, attempt, started_at, status_code, latency_ms, error, next_retry_at \
         FROM webhook_attempts WHERE delivery_id IN ({ids}) ORDER BY delivery_id, id"
    )))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.delivery_id, r.attempt))
        .collect())
}

/// Sends a delivery again as soon as possible (whatever its state), with the same event id.
pub async fn redeliver(db: &Db, tenant: TenantId, endpoint: i64, id: i64) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, \
            lease_owner = NULL, lease_until = NULL \
         WHERE tenant_id = $2 AND endpoint_id = $3 AND id = $4",
    )
    .bind(now())
    .bind(tenant.0)
    .bind(endpoint)
    .bind(id)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// A delivery claimed by a worker, with what it needs to send it.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: i64,
    pub endpoint_id: i64,
    pub attempts: i64,
    pub created_at: String,
    pub tenant_id: i64,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<String>,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub payload: String,
    pub event_created_at: String,
}

impl Claimed {
    /// The request body: `{id, type, created_at, tenant_id, data}`, the same bytes every attempt.
    pub fn body(&self) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            r#"{{"id":{},"type":{},"created_at":{},"tenant_id":{},"data":{}}}"#,
            text(&self.event_id),
            text(&self.kind),
            text(&self.event_created_at),
            self.tenant_id,
            self.payload
        )
    }

    pub fn signing_secrets(&self, now: &str) -> Vec<&str> {
        signing_secrets(
            &self.secret,
            self.previous_secret.as_deref(),
            self.previous_secret_expires_at.as_deref(),
            now,
        )
    }
}

/// Leases up to `limit` due deliveries to `owner` until `until`: pending, due, not leased, of an
/// enabled endpoint, and first in line for their endpoint and order key; no endpoint gets more
/// than `per_endpoint` counting the `in_flight` ones (endpoint id → deliveries this worker is
/// sending), and none of the deliveries in `sending` is taken. On PostgreSQL, rows another
/// process is claiming are skipped.
pub async fn claim(
    db: &Db,
    owner: &str,
    until: DateTime<Utc>,
    limit: i64,
    in_flight: &HashMap<i64, usize>,
    sending: &[i64],
    per_endpoint: usize,
) -> StoreResult<Vec<Claimed>> {
    let stamp_now = now();
    let skip = if db.backend() == Backend::Postgres {
        " FOR UPDATE OF d SKIP LOCKED"
    } else {
        ""
    };
    // Endpoints with every slot in flight are left out; the others are given at most their free
    // slots, from a few more candidates than `limit` so that one busy endpoint's backlog does
    // not hide the rest.
    let full: Vec<String> = in_flight
        .iter()
        .filter(|(_, n)| **n >= per_endpoint)
        .map(|(id, _)| id.to_string())
        .collect();
    let mut exclude = if full.is_empty() {
        String::new()
    } else {
        format!(" AND d.endpoint_id NOT IN ({})", full.join(","))
    };
    // A delivery this worker is still sending (or recording) is not taken again even if its
    // lease lapsed meanwhile.
    if !sending.is_empty() {
        let ids: Vec<String> = sending.iter().map(i64::to_string).collect();
        exclude.push_str(&format!(" AND d.id NOT IN ({})", ids.join(",")));
    }
    let mut tx = db.begin_write().await?;
    let candidates: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.id, d.endpoint_id FROM webhook_deliveries d \
            JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
            AND (d.lease_until IS NULL OR d.lease_until < $1) AND e.enabled = 1{exclude} \
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
                WHERE p.endpoint_id = d.endpoint_id AND p.order_key = d.order_key \
                    AND p.status = 'pending' AND p.id < d.id) \
         ORDER BY d.next_attempt_at, d.id LIMIT $2{skip}"
    )))
    .bind(&stamp_now)
    .bind(limit.saturating_mul(4).min(1_000))
    .fetch_all(&mut *tx)
    .await?;
    let mut taken: HashMap<i64, usize> = HashMap::new();
    let mut ids = Vec::new();
    for (id, endpoint) in candidates {
        if ids.len() as i64 >= limit {
            break;
        }
        let busy = in_flight.get(&endpoint).copied().unwrap_or(0);
        let count = taken.entry(endpoint).or_insert(0);
        if busy + *count < per_endpoint {
            *count += 1;
            ids.push(id);
        }
    }
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN ({list})"
    )))
    .bind(owner)
    .bind(stamp(until))
    .execute(&mut *tx)
    .await?;
    let claimed = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.id, d.endpoint_id, d.attempts, d.created_at, d.tenant_id, e.url, e.secret, e.previous_secret, \
            e.previous_secret_expires_at, o.event_id, o.type, o.payload, \
            o.created_at AS event_created_at \
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
            JOIN outbox o ON o.id = d.outbox_id \
         WHERE d.id IN ({list}) ORDER BY d.next_attempt_at, d.id"
    )))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery: i64,
    pub started_at: String,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// `None`: delivered. `Some(Some(t))`: retry at `t`. `Some(None)`: give up.
    pub retry: Option<Option<DateTime<Utc>>>,
}

/// Records a batch of attempts in one transaction and releases their leases. Only deliveries
/// still leased to `owner` change state (one whose lease lapsed was taken over by another
/// worker); every attempt is recorded.
pub async fn record(db: &Db, owner: &str, outcomes: &[Outcome]) -> StoreResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let stamp_now = now();
    let mut tx = db.begin_write().await?;
    for o in outcomes {
        let code = o.status_code.map(i64::from);
        let attempt: Option<i64> =
            match o.retry {
                None => sqlx::query_scalar(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                        delivered_at = $1, last_status_code = $2, last_error = NULL, \
                        lease_owner = NULL, lease_until = NULL \
                     WHERE id = $3 AND lease_owner = $4 RETURNING attempts",
                )
                .bind(&stamp_now)
                .bind(code)
                .bind(o.delivery)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?,
                Some(next) => {
                    sqlx::query_scalar(
                        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                        next_attempt_at = COALESCE($2, next_attempt_at), last_status_code = $3, \
                        last_error = $4, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $5 AND lease_owner = $6 RETURNING attempts",
                    )
                    .bind(if next.is_some() { "pending" } else { "failed" })
                    .bind(next.map(stamp))
                    .bind(code)
                    .bind(&o.error)
                    .bind(o.delivery)
                    .bind(owner)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
        let attempt = match attempt {
            Some(n) => n,
            None => sqlx::query_scalar("SELECT attempts + 1 FROM webhook_deliveries WHERE id = $1")
                .bind(o.delivery)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0),
        };
        if attempt == 0 {
            continue; // Deleted with its endpoint meanwhile.
        }
        sqlx::query(
            "INSERT INTO webhook_attempts \
                (delivery_id, attempt, started_at, status_code, latency_ms, error, next_retry_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(o.delivery)
        .bind(attempt)
        .bind(&o.started_at)
        .bind(code)
        .bind(o.latency_ms)
        .bind(&o.error)
        .bind(o.retry.flatten().map(stamp))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Gives back this worker's leases (at shutdown) so another process need not wait them out.
pub async fn release_leases(db: &Db, owner: &str) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner = $1 AND status = 'pending'",
    )
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}
