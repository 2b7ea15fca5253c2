//! Call records: created when a stream is handed out, started when it connects, finished once.

use sqlx::FromRow;

use serde_json::json;

use super::{Backend, Db, StoreError, StoreResult, Tx, now, outbox};
use crate::billing::{Blocked, CallCaps, Period};
use crate::domain::{AgentId, CallId, CallStatus, Carrier, Direction, NodeId, TenantId};

#[derive(Debug, Clone, FromRow)]
pub struct CallRow {
    pub id: i64,
    pub tenant_id: i64,
    pub agent_id: Option<i64>,
    pub agent_version: Option<i64>,
    pub direction: String,
    pub carrier: String,
    pub carrier_call_id: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub status: String,
    pub disposition: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub summary: Option<String>,
    pub sentiment: Option<f64>,
    pub recording_status: String,
    pub recording_bytes: Option<i64>,
    pub transcript_ready_at: Option<String>,
}

impl CallRow {
    /// The call as `call.started` and `call.ended` events describe it.
    pub fn event(&self) -> serde_json::Value {
        json!({
            "call_id": self.id,
            "agent_id": self.agent_id,
            "agent_version": self.agent_version,
            "direction": self.direction,
            "carrier": self.carrier,
            "from_number": self.from_number,
            "to_number": self.to_number,
            "status": self.status,
            "disposition": self.disposition,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_sec": self.duration_ms.map(|ms| ms as f64 / 1000.0),
        })
    }
}

/// What is known of a call when its stream is handed out.
pub struct NewCall<'a> {
    pub agent: AgentId,
    pub agent_version: i64,
    pub direction: Direction,
    pub carrier: Carrier,
    pub carrier_call_id: Option<&'a str>,
    pub from_number: Option<&'a str>,
    pub to_number: Option<&'a str>,
}

pub async fn insert(db: &Db, tenant: TenantId, call: NewCall<'_>) -> StoreResult<CallRow> {
    insert_row(db.pool(), tenant, &call).await
}

/// The `initiated` row of a new call, on a pool or inside a transaction.
async fn insert_row<'e, E>(
    executor: E,
    tenant: TenantId,
    call: &NewCall<'_>,
) -> StoreResult<CallRow>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query_as(
        "INSERT INTO calls (tenant_id, agent_id, agent_version, direction, carrier, \
            carrier_call_id, from_number, to_number, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'initiated', $9) RETURNING *",
    )
    .bind(tenant.0)
    .bind(call.agent.0)
    .bind(call.agent_version)
    .bind(call.direction.as_str())
    .bind(call.carrier.as_str())
    .bind(call.carrier_call_id)
    .bind(call.from_number)
    .bind(call.to_number)
    .bind(now())
    .fetch_one(executor)
    .await?;
    Ok(row)
}

/// Why [`insert_admitted`] did not create the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// The trial, included minutes and wallet are used up.
    Blocked(Blocked),
    /// The business already has `limit` calls connecting or in progress (its plan's limit).
    AtLimit(i64),
}

/// Calls of `tenant` that count against its concurrent-call limit: in progress, or handed out
/// since `connecting_since` and not yet streaming (older handed-out calls are expired by the
/// sweep and never connect).
pub async fn active_in(tx: &mut Tx, tenant: TenantId, connecting_since: &str) -> StoreResult<i64> {
    let n = sqlx::query_scalar(
        "SELECT COUNT(*) FROM calls WHERE tenant_id = $1 AND (status = 'in-progress' \
            OR (status = 'initiated' AND created_at > $2))",
    )
    .bind(tenant.0)
    .bind(connecting_since)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n)
}

/// Locks the business's row for the rest of the transaction on PostgreSQL (SQLite's write
/// transaction already serialises writers), so that two processes admitting calls at once
/// count each other's. `NO KEY UPDATE`: see [`super::billing::meter_in`].
pub async fn lock_tenant(tx: &mut Tx, backend: Backend, tenant: TenantId) -> StoreResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
            .bind(tenant.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Creates the call (`initiated`) if the business may start one: it has trial, included
/// minutes or wallet left, and fewer calls connecting or in progress than its plan allows
/// (`caps`). One write transaction, so concurrent hand-outs on any process cannot both take the
/// last place.
pub async fn insert_admitted(
    db: &Db,
    tenant: TenantId,
    call: NewCall<'_>,
    caps: CallCaps,
    connecting_since: &str,
) -> StoreResult<Result<CallRow, NotAdmitted>> {
    let mut tx = db.begin_write().await?;
    lock_tenant(&mut tx, db.backend(), tenant).await?;
    let period = Period::containing(chrono::Utc::now()).key();
    let balance = super::billing::balance_in(&mut tx, tenant, &period)
        .await?
        .balance();
    if let Err(blocked) = balance.gate() {
        return Ok(Err(NotAdmitted::Blocked(blocked)));
    }
    let limit = caps.for_plan(balance.plan);
    if active_in(&mut tx, tenant, connecting_since).await? >= limit {
        return Ok(Err(NotAdmitted::AtLimit(limit)));
    }
    let row = insert_row(&mut *tx, tenant, &call).await?;
    tx.commit().await?;
    Ok(Ok(row))
}

/// When each of the business's calls in progress started (RFC 3339), over every process.
pub async fn in_progress_starts(db: &Db, tenant: TenantId) -> StoreResult<Vec<String>> {
    let rows = sqlx::query_scalar(
        "SELECT started_at FROM calls WHERE tenant_id = $1 AND status = 'in-progress' \
            AND started_at IS NOT NULL",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn get(db: &Db, tenant: TenantId, call: CallId) -> StoreResult<CallRow> {
    let row = sqlx::query_as("SELECT * FROM calls WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(call.0)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// Marks a handed-out call as streaming. A call starts once: a second start (a replayed
/// stream token) is refused with `Conflict`.
///
/// The stream's own claim of the carrier's call id (`carrier_call_id`) never replaces one the
/// carrier's verified webhook or the dialler recorded, and is ignored for test calls, whose
/// stream is opened by whoever asked for the test call: transfers act on that id, so a stream
/// must not be able to point them at somebody else's call.
pub async fn start(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    carrier_call_id: Option<&str>,
) -> StoreResult<CallRow> {
    start_on(db, tenant, call, carrier_call_id, None).await
}

/// [`start`] on the node streaming the call: its heartbeat keeps the call's `last_active_at`
/// fresh, and should the node die, another ends the call with that duration and bills it.
pub async fn start_on(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    carrier_call_id: Option<&str>,
    node: Option<NodeId>,
) -> StoreResult<CallRow> {
    let mut tx = db.begin_write().await?;
    let row: Option<CallRow> = sqlx::query_as(
        "UPDATE calls SET status = 'in-progress', started_at = $1, last_active_at = $1, \
            carrier_call_id = CASE WHEN carrier_call_id IS NULL AND direction <> 'test' \
                THEN $2 ELSE carrier_call_id END, node_id = $5 \
         WHERE tenant_id = $3 AND id = $4 AND status = 'initiated' RETURNING *",
    )
    .bind(now())
    .bind(carrier_call_id)
    .bind(tenant.0)
    .bind(call.0)
    .bind(node.map(|n| n.0))
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(StoreError::Conflict)?;
    outbox::push(&mut tx, tenant, outbox::CALL_STARTED, &row.event()).await?;
    tx.commit().await?;
    Ok(row)
}

/// Ends a call once, with its duration measured from the start (zero if it never started), and
/// bills it in the same transaction (see [`super::billing::meter_in`]).
pub async fn finish(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    status: CallStatus,
    disposition: &str,
    duration_ms: i64,
) -> StoreResult<CallRow> {
    let mut tx = db.begin_write().await?;
    let row: Option<CallRow> = sqlx::query_as(
        "UPDATE calls SET status = $1, disposition = $2, ended_at = $3, duration_ms = $4 \
         WHERE tenant_id = $5 AND id = $6 AND status IN ('initiated', 'in-progress') RETURNING *",
    )
    .bind(status.as_str())
    .bind(disposition)
    .bind(now())
    .bind(duration_ms)
    .bind(tenant.0)
    .bind(call.0)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(StoreError::Conflict)?;
    // Only calls that connected were announced; only they are reported ended.
    if row.started_at.is_some() {
        outbox::push(&mut tx, tenant, outbox::CALL_ENDED, &row.event()).await?;
    }
    super::billing::meter_in(&mut tx, db.backend(), tenant, &row).await?;
    tx.commit().await?;
    Ok(row)
}

/// One agent turn's texts and latency report.
#[derive(Debug, Clone, Default, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct TurnRow {
    pub turn: i64,
    pub caller_text: Option<String>,
    /// What the caller actually heard (clauses cut by barge-in are left out).
    pub agent_text: Option<String>,
    pub endpoint_wait_ms: Option<i64>,
    pub stt_ms: Option<i64>,
    pub turn_ms: Option<i64>,
    pub tts_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub interrupted: i64,
    /// When the caller's utterance began, from the start of the call.
    pub caller_offset_ms: Option<i64>,
    /// When the agent's reply was first heard, from the start of the call.
    pub agent_offset_ms: Option<i64>,
}

pub async fn insert_turn(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    turn: &TurnRow,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO call_turns (call_id, tenant_id, turn, caller_text, agent_text, \
            endpoint_wait_ms, stt_ms, turn_ms, tts_ms, total_ms, interrupted, created_at, \
            caller_offset_ms, agent_offset_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(call.0)
    .bind(tenant.0)
    .bind(turn.turn)
    .bind(turn.caller_text.as_deref())
    .bind(turn.agent_text.as_deref())
    .bind(turn.endpoint_wait_ms)
    .bind(turn.stt_ms)
    .bind(turn.turn_ms)
    .bind(turn.tts_ms)
    .bind(turn.total_ms)
    .bind(turn.interrupted)
    .bind(now())
    .bind(turn.caller_offset_ms)
    .bind(turn.agent_offset_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn turns(db: &Db, tenant: TenantId, call: CallId) -> StoreResult<Vec<TurnRow>> {
    let rows = sqlx::query_as(
        "SELECT turn, caller_text, agent_text, endpoint_wait_ms, stt_ms, turn_ms, tts_ms, \
                total_ms, interrupted, caller_offset_ms, agent_offset_ms \
         FROM call_turns WHERE tenant_id = $1 AND call_id = $2 ORDER BY turn",
    )
    .bind(tenant.0)
    .bind(call.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// Fails every call handed out before `cutoff` (RFC 3339) whose stream never started: its token
/// has expired, so it never will. A system sweep across tenants; returns how many it ended.
pub async fn expire_unstarted(db: &Db, cutoff: &str) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE calls SET status = 'failed', disposition = 'not-connected', ended_at = $1, \
            duration_ms = 0 \
         WHERE status = 'initiated' AND created_at < $2",
    )
    .bind(now())
    .bind(cutoff)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Records that `node` still streams `calls` (its live-call registry), now: the call's last
/// known moment should the node die. A system update across tenants, from the heartbeat.
pub async fn touch_live(db: &Db, node: NodeId, calls: &[CallId]) -> StoreResult<()> {
    // Bounded statements: a node streams a few hundred calls at most.
    for chunk in calls.chunks(200) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        // Only numbered placeholders go into the text; the ids are bound.
        let sql = format!(
            "UPDATE calls SET last_active_at = $1 \
             WHERE node_id = $2 AND status = 'in-progress' AND id IN ({list})"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now())
            .bind(node.0);
        for call in chunk {
            query = query.bind(call.0);
        }
        query.execute(db.pool()).await?;
    }
    Ok(())
}

/// A call left in progress by a node that is gone.
#[derive(Debug, Clone, FromRow)]
pub struct InterruptedRow {
    pub id: i64,
    pub tenant_id: i64,
    pub started_at: Option<String>,
    pub last_active_at: Option<String>,
}

/// Calls in progress on a node other than `node` that is gone: its row deleted, or its
/// heartbeat older than `cutoff` (RFC 3339). A system sweep across tenants.
pub async fn interrupted(db: &Db, node: NodeId, cutoff: &str) -> StoreResult<Vec<InterruptedRow>> {
    let rows = sqlx::query_as(
        "SELECT c.id, c.tenant_id, c.started_at, c.last_active_at FROM calls c \
         WHERE c.status = 'in-progress' AND c.node_id IS NOT NULL AND c.node_id <> $1 \
            AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = c.node_id AND n.heartbeat_at >= $2) \
         ORDER BY c.id LIMIT 500",
    )
    .bind(node.0)
    .bind(cutoff)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// The recording's state once the call has ended: `encoding`, `ready` (with its size) or
/// `failed`.
pub async fn set_recording(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    status: &str,
    bytes: Option<i64>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE calls SET recording_status = $1, recording_bytes = $2 \
         WHERE tenant_id = $3 AND id = $4",
    )
    .bind(status)
    .bind(bytes)
    .bind(tenant.0)
    .bind(call.0)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Stores the summary and sentiment and adds `call.transcript_ready` in one transaction; once
/// per call (a second run changes nothing).
pub async fn set_analysis(
    db: &Db,
    tenant: TenantId,
    call: CallId,
    summary: &str,
    sentiment: Option<f64>,
    event: &serde_json::Value,
) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE calls SET summary = $1, sentiment = $2, transcript_ready_at = $3 \
         WHERE tenant_id = $4 AND id = $5 AND transcript_ready_at IS NULL",
    )
    .bind(summary)
    .bind(sentiment)
    .bind(now())
    .bind(tenant.0)
    .bind(call.0)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        outbox::push(&mut tx, tenant, outbox::CALL_TRANSCRIPT_READY, event).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Calls that ended (and connected) but have no transcript yet: a system sweep at start-up.
pub async fn unanalysed(db: &Db) -> StoreResult<Vec<CallRow>> {
    let rows = sqlx::query_as(
        "SELECT * FROM calls WHERE status IN ('completed', 'failed') \
            AND started_at IS NOT NULL AND transcript_ready_at IS NULL ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// Filters for listing calls; dates are RFC 3339 bounds on `created_at`.
#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub agent: Option<i64>,
    pub status: Option<String>,
    /// Inclusive lower bound.
    pub from: Option<String>,
    /// Exclusive upper bound.
    pub until: Option<String>,
}

/// One page of a tenant's calls, newest first, and the total matching the filter.
pub async fn list(
    db: &Db,
    tenant: TenantId,
    filter: &CallFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<CallRow>, i64)> {
    let mut clauses = vec!["tenant_id = $1".to_owned()];
    let mut n = 1;
    let mut next = |column: &str, op: &str| {
        n += 1;
        format!("{column} {op} ${n}")
    };
    if filter.agent.is_some() {
        clauses.push(next("agent_id", "="));
    }
    if filter.status.is_some() {
        clauses.push(next("status", "="));
    }
    if filter.from.is_some() {
        clauses.push(next("created_at", ">="));
    }
    if filter.until.is_some() {
        clauses.push(next("created_at", "<"));
    }
    // Only fixed column names and numbered placeholders go into the text; values are bound.
    let condition = clauses.join(" AND ");
    let count_sql = format!("SELECT COUNT(*) FROM calls WHERE {condition}");
    let page_sql = format!(
        "SELECT * FROM calls WHERE {condition} ORDER BY created_at DESC, id DESC \
         LIMIT {limit} OFFSET {offset}"
    );
    macro_rules! bind_filter {
        ($query:expr) => {{
            let mut query = $query.bind(tenant.0);
            if let Some(agent) = filter.agent {
                query = query.bind(agent);
            }
            if let Some(status) = &filter.status {
                query = query.bind(status.as_str());
            }
            if let Some(from) = &filter.from {
                query = query.bind(from.as_str());
            }
            if let Some(until) = &filter.until {
                query = query.bind(until.as_str());
            }
            query
        }};
    }
    let (total,): (i64,) = bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(count_sql)))
        .fetch_one(db.pool())
        .await?;
    let rows = bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(page_sql)))
        .fetch_all(db.pool())
        .await?;
    Ok((rows, total))
}

/// A call by id alone, for signed recording URLs (the signature names the tenant).
pub async fn get_unscoped(db: &Db, call: CallId) -> StoreResult<CallRow> {
    let row = sqlx::query_as("SELECT * FROM calls WHERE id = $1")
        .bind(call.0)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}
