//! Phone numbers, campaigns, their targets and dial attempts.
//!
//! The dialler's guarantee lives here. [`claim`] takes one due target of a running campaign in a
//! single write transaction: it checks the campaign's limits, marks the target `dialling` with a
//! lease, counts the attempt, creates the call record and inserts the attempt row, which is
//! unique per target and attempt number. Only after that commits is the carrier asked to dial.
//! An attempt therefore exists before its dial, and a second dial of the same attempt would need a
//! second row, which the unique key forbids. A dialler that dies leaves its targets `dialling`
//! with a lease that lapses; [`reclaim`] closes such an attempt as `interrupted` (its call may
//! or may not have happened) and schedules the next attempt if any are left, never the same one.
//! On PostgreSQL the campaign row is locked `FOR UPDATE` while a claim runs, so several engine
//! processes claiming for one campaign respect its limits, and targets are picked `FOR UPDATE
//! SKIP LOCKED`; on SQLite `BEGIN IMMEDIATE` serialises claims.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::FromRow;

use super::{Backend, Db, StoreError, StoreResult, Tx, now, outbox};
use crate::domain::{AgentId, TenantId};

fn at(t: DateTime<Utc>) -> String {
    super::stamp(t)
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

#[derive(Debug, Clone, FromRow)]
pub struct NumberRow {
    pub id: i64,
    pub tenant_id: i64,
    pub number: String,
    pub country: String,
    pub kind: Option<String>,
    pub carrier: String,
    pub carrier_sid: String,
    pub agent_id: Option<i64>,
    pub created_at: String,
}

pub struct NewNumber<'a> {
    pub number: &'a str,
    pub country: &'a str,
    pub kind: Option<&'a str>,
    pub carrier: &'a str,
    pub carrier_sid: &'a str,
}

/// Stores a provisioned number; `Conflict` when it is provisioned already (by anyone).
pub async fn insert_number(
    db: &Db,
    tenant: TenantId,
    number: NewNumber<'_>,
) -> StoreResult<NumberRow> {
    let row = sqlx::query_as(
        "INSERT INTO phone_numbers (tenant_id, number, country, kind, carrier, carrier_sid, \
            created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
    )
    .bind(tenant.0)
    .bind(number.number)
    .bind(number.country)
    .bind(number.kind)
    .bind(number.carrier)
    .bind(number.carrier_sid)
    .bind(now())
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

pub async fn numbers(db: &Db, tenant: TenantId) -> StoreResult<Vec<NumberRow>> {
    let rows = sqlx::query_as("SELECT * FROM phone_numbers WHERE tenant_id = $1 ORDER BY id")
        .bind(tenant.0)
        .fetch_all(db.pool())
        .await?;
    Ok(rows)
}

pub async fn number(db: &Db, tenant: TenantId, id: i64) -> StoreResult<NumberRow> {
    let row = sqlx::query_as("SELECT * FROM phone_numbers WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// A number by its E.164 form, whoever holds it: for inbound calls, where the number dialled
/// names the business.
pub async fn number_by_e164(db: &Db, e164: &str) -> StoreResult<Option<NumberRow>> {
    let row = sqlx::query_as("SELECT * FROM phone_numbers WHERE number = $1")
        .bind(e164)
        .fetch_optional(db.pool())
        .await?;
    Ok(row)
}

/// Every provisioned number starting with `prefix` (a country calling code, `+61`), for the
/// inventory to skip.
pub async fn provisioned_with_prefix(db: &Db, prefix: &str) -> StoreResult<Vec<String>> {
    let rows = sqlx::query_scalar("SELECT number FROM phone_numbers WHERE number LIKE $1")
        .bind(format!("{prefix}%"))
        .fetch_all(db.pool())
        .await?;
    Ok(rows)
}

/// Points a number at an agent (or at none).
pub async fn assign(
    db: &Db,
    tenant: TenantId,
    id: i64,
    agent: Option<AgentId>,
) -> StoreResult<NumberRow> {
    let row = sqlx::query_as(
        "UPDATE phone_numbers SET agent_id = $1 WHERE tenant_id = $2 AND id = $3 RETURNING *",
    )
    .bind(agent.map(|a| a.0))
    .bind(tenant.0)
    .bind(id)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

pub async fn delete_number(db: &Db, tenant: TenantId, id: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM phone_numbers WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The numbers assigned to each of the tenant's agents: (agent id, number), oldest first.
pub async fn agent_numbers(db: &Db, tenant: TenantId) -> StoreResult<Vec<(i64, String)>> {
    let rows = sqlx::query_as(
        "SELECT agent_id, number FROM phone_numbers \
         WHERE tenant_id = $1 AND agent_id IS NOT NULL ORDER BY id",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Campaigns

#[derive(Debug, Clone, FromRow)]
pub struct CampaignRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub agent_id: Option<i64>,
    pub from_number: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub max_concurrency: i64,
    pub calls_per_minute: i64,
    pub hours_start: Option<String>,
    pub hours_end: Option<String>,
    pub timezone: String,
    pub max_attempts: i64,
    pub retry_delay_minutes: i64,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

pub struct NewCampaign<'a> {
    pub name: &'a str,
    pub agent: AgentId,
    pub from_number: &'a str,
    pub max_concurrency: i64,
    pub calls_per_minute: i64,
    pub hours: Option<(&'a str, &'a str)>,
    pub timezone: &'a str,
    pub max_attempts: i64,
    pub retry_delay_minutes: i64,
}

/// A target as given: E.164 number and an optional name.
pub struct NewTarget {
    pub phone_number: String,
    pub name: Option<String>,
}

/// Targets inserted per statement: 500 rows of 7 values stays under both databases' limits on
/// bound parameters.
const TARGET_BATCH: usize = 500;

/// Creates a campaign (`draft`) with its targets in one transaction.
pub async fn insert_campaign(
    db: &Db,
    tenant: TenantId,
    campaign: NewCampaign<'_>,
    targets: &[NewTarget],
) -> StoreResult<CampaignRow> {
    let mut tx = db.begin_write().await?;
    let stamp = now();
    let row: CampaignRow = sqlx::query_as(
        "INSERT INTO campaigns (tenant_id, name, agent_id, from_number, max_concurrency, \
            calls_per_minute, hours_start, hours_end, timezone, max_attempts, \
            retry_delay_minutes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING *",
    )
    .bind(tenant.0)
    .bind(campaign.name)
    .bind(campaign.agent.0)
    .bind(campaign.from_number)
    .bind(campaign.max_concurrency)
    .bind(campaign.calls_per_minute)
    .bind(campaign.hours.map(|h| h.0))
    .bind(campaign.hours.map(|h| h.1))
    .bind(campaign.timezone)
    .bind(campaign.max_attempts)
    .bind(campaign.retry_delay_minutes)
    .bind(&stamp)
    .fetch_one(&mut *tx)
    .await?;
    for (batch_index, batch) in targets.chunks(TARGET_BATCH).enumerate() {
        let values: Vec<String> = (0..batch.len())
            .map(|i| {
                let p = i * 7;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO campaign_targets (campaign_id, tenant_id, ordinal, phone_number, name, \
                next_attempt_at, updated_at) VALUES {}",
            values.join(", ")
        );
        // Only placeholders are formatted in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, target) in batch.iter().enumerate() {
            query = query
                .bind(row.id)
                .bind(tenant.0)
                .bind((batch_index * TARGET_BATCH + i) as i64)
                .bind(target.phone_number.as_str())
                .bind(target.name.as_deref())
                .bind(&stamp)
                .bind(&stamp);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(row)
}

pub async fn campaigns(db: &Db, tenant: TenantId) -> StoreResult<Vec<CampaignRow>> {
    let rows = sqlx::query_as("SELECT * FROM campaigns WHERE tenant_id = $1 ORDER BY id")
        .bind(tenant.0)
        .fetch_all(db.pool())
        .await?;
    Ok(rows)
}

pub async fn campaign(db: &Db, tenant: TenantId, id: i64) -> StoreResult<CampaignRow> {
    let row = sqlx::query_as("SELECT * FROM campaigns WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// Target counts by status, and attempts made, for a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub pending: i64,
    pub in_progress: i64,
    pub completed: i64,
    pub no_answer: i64,
    pub busy: i64,
    pub failed: i64,
    pub voicemail: i64,
    pub cancelled: i64,
    /// Dial attempts made so far.
    pub attempts: i64,
}

impl Stats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The stats of every campaign of the tenant (campaign id → stats).
pub async fn stats(
    db: &Db,
    tenant: TenantId,
) -> StoreResult<std::collections::BTreeMap<i64, Stats>> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT campaign_id, status, COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS BIGINT) \
         FROM campaign_targets WHERE tenant_id = $1 GROUP BY campaign_id, status",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    let mut out: std::collections::BTreeMap<i64, Stats> = Default::default();
    for (campaign, status, count, attempts) in rows {
        let stats = out.entry(campaign).or_default();
        stats.attempts += attempts;
        match status.as_str() {
            "pending" => stats.pending += count,
            "dialling" => stats.in_progress += count,
            "completed" => stats.completed += count,
            "no-answer" => stats.no_answer += count,
            "busy" => stats.busy += count,
            "voicemail" => stats.voicemail += count,
            "cancelled" => stats.cancelled += count,
            _ => stats.failed += count,
        }
    }
    Ok(out)
}

/// Moves a campaign from one of `from` to `to`; `None` when it was in none of them.
pub async fn transition(
    db: &Db,
    tenant: TenantId,
    id: i64,
    from: &[&str],
    to: &str,
) -> StoreResult<Option<CampaignRow>> {
    let mut tx = db.begin_write().await?;
    let current: CampaignRow =
        sqlx::query_as("SELECT * FROM campaigns WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if !from.contains(&current.status.as_str()) {
        return Ok(None);
    }
    let row: CampaignRow = sqlx::query_as(
        "UPDATE campaigns SET status = $1, status_reason = NULL, updated_at = $2 \
         WHERE id = $3 RETURNING *",
    )
    .bind(to)
    .bind(now())
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if to == "cancelled" {
        sqlx::query(
            "UPDATE campaign_targets SET status = 'cancelled', updated_at = $1 \
             WHERE campaign_id = $2 AND status = 'pending'",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(row))
}

#[derive(Debug, Clone, FromRow)]
pub struct TargetRow {
    pub id: i64,
    pub campaign_id: i64,
    pub ordinal: i64,
    pub phone_number: String,
    pub name: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub target_id: i64,
    pub attempt: i64,
    pub call_id: Option<i64>,
    pub outcome: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// One page of a campaign's targets, in the order given, and their attempts.
pub async fn targets(
    db: &Db,
    tenant: TenantId,
    campaign: i64,
    limit: i64,
    offset: i64,
) -> StoreResult<(i64, Vec<TargetRow>, Vec<AttemptRow>)> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_targets WHERE tenant_id = $1 AND campaign_id = $2",
    )
    .bind(tenant.0)
    .bind(campaign)
    .fetch_one(db.pool())
    .await?;
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT id, campaign_id, ordinal, phone_number, name, status, attempts, \
            next_attempt_at, updated_at \
         FROM campaign_targets WHERE tenant_id = $1 AND campaign_id = $2 \
         ORDER BY ordinal LIMIT $3 OFFSET $4",
    )
    .bind(tenant.0)
    .bind(campaign)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok((total, rows, Vec::new()));
    };
    let attempts = sqlx::query_as(
        "SELECT a.target_id, a.attempt, a.call_id, a.outcome, a.started_at, a.ended_at \
         FROM campaign_attempts a JOIN campaign_targets t ON t.id = a.target_id \
         WHERE t.tenant_id = $1 AND a.campaign_id = $2 AND t.ordinal BETWEEN $3 AND $4 \
         ORDER BY a.target_id, a.attempt",
    )
    .bind(tenant.0)
    .bind(campaign)
    .bind(first.ordinal)
    .bind(last.ordinal)
    .fetch_all(db.pool())
    .await?;
    Ok((total, rows, attempts))
}

// ---------------------------------------------------------------------------------------------
// The dialler's claims

/// The ids of running campaigns, oldest first.
pub async fn running(db: &Db) -> StoreResult<Vec<i64>> {
    let ids = sqlx::query_scalar("SELECT id FROM campaigns WHERE status = 'running' ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    Ok(ids)
}

/// What a dialler needs to place a claimed attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant: TenantId,
    pub campaign: i64,
    pub target: i64,
    pub attempt: i64,
    pub call: i64,
    pub agent: AgentId,
    pub to: String,
    pub from: String,
}

/// Why a claim found nothing to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoClaim {
    /// No due target, or a limit (concurrency, calls a minute) is reached: try again later.
    Wait,
    /// Outside the calling hours.
    OutOfHours,
    /// The campaign cannot go on (its agent was deleted, or its business's minutes and wallet
    /// are used up): it was paused with this reason.
    Paused(String),
}

/// The limits a claim checks besides the campaign's own.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Calls a tenant may have ringing or connected at once, over all its campaigns.
    pub tenant_concurrency: i64,
    pub lease: std::time::Duration,
    /// The business's concurrent calls by plan (over inbound, test and outbound calls).
    pub caps: crate::billing::CallCaps,
}

/// Claims one due target of `campaign` for `owner` (see the module documentation).
pub async fn claim(
    db: &Db,
    campaign: i64,
    owner: &str,
    limits: ClaimLimits,
) -> StoreResult<Result<Claimed, NoClaim>> {
    let mut tx = db.begin_write().await?;
    let lock = if db.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row: Option<CampaignRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM campaigns WHERE id = $1 AND status = 'running'{lock}"
    )))
    .bind(campaign)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(c) = row else {
        return Ok(Err(NoClaim::Wait));
    };
    let now_utc = Utc::now();
    if !within_hours(&c, now_utc) {
        return Ok(Err(NoClaim::OutOfHours));
    }
    let Some(agent) = c.agent_id else {
        let reason = "the campaign's agent was deleted".to_owned();
        pause_in(&mut tx, c.id, &reason).await?;
        tx.commit().await?;
        return Ok(Err(NoClaim::Paused(reason)));
    };
    let dialling: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_targets WHERE campaign_id = $1 AND status = 'dialling'",
    )
    .bind(c.id)
    .fetch_one(&mut *tx)
    .await?;
    if dialling >= c.max_concurrency {
        return Ok(Err(NoClaim::Wait));
    }
    let tenant_dialling: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_targets WHERE tenant_id = $1 AND status = 'dialling'",
    )
    .bind(c.tenant_id)
    .fetch_one(&mut *tx)
    .await?;
    if tenant_dialling >= limits.tenant_concurrency {
        return Ok(Err(NoClaim::Wait));
    }
    let minute_ago = at(now_utc - Duration::seconds(60));
    let last_minute: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_attempts WHERE campaign_id = $1 AND started_at > $2",
    )
    .bind(c.id)
    .bind(&minute_ago)
    .fetch_one(&mut *tx)
    .await?;
    if last_minute >= c.calls_per_minute {
        return Ok(Err(NoClaim::Wait));
    }
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT current_version FROM agents WHERE id = $1 AND status = 'active'",
    )
    .bind(agent)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(version) = version else {
        let reason = "the campaign's agent is being deleted".to_owned();
        pause_in(&mut tx, c.id, &reason).await?;
        tx.commit().await?;
        return Ok(Err(NoClaim::Paused(reason)));
    };
    let stamp = at(now_utc);
    let skip = if db.backend() == Backend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let target: Option<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, phone_number FROM campaign_targets \
         WHERE campaign_id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
         ORDER BY next_attempt_at, ordinal LIMIT 1{skip}"
    )))
    .bind(c.id)
    .bind(&stamp)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((target, to)) = target else {
        return Ok(Err(NoClaim::Wait));
    };
    // A business that may not start calls has its campaigns paused with the reason, not dialled.
    let period = crate::billing::Period::containing(now_utc).key();
    let balance = super::billing::balance_in(&mut tx, TenantId(c.tenant_id), &period).await?;
    if let Err(blocked) = balance.balance().gate() {
        let reason = format!("calls are paused: {blocked}");
        pause_in(&mut tx, c.id, &reason).await?;
        tx.commit().await?;
        return Ok(Err(NoClaim::Paused(reason)));
    }
    // The business's calls of every kind against its plan's limit: at the limit the target
    // waits (it stays pending and is not counted as an attempt). The business's row is locked
    // first on PostgreSQL so that hand-outs and other diallers count this call.
    let tenant = TenantId(c.tenant_id);
    super::calls::lock_tenant(&mut tx, db.backend(), tenant).await?;
    let limit = limits.caps.for_plan(balance.balance().plan);
    let since = crate::calls::connecting_since();
    if super::calls::active_in(&mut tx, tenant, &since).await? >= limit {
        return Ok(Err(NoClaim::Wait));
    }
    let lease = Duration::from_std(limits.lease).unwrap_or(Duration::seconds(30));
    let attempt: i64 = sqlx::query_scalar(
        "UPDATE campaign_targets SET status = 'dialling', attempts = attempts + 1, \
            lease_owner = $1, lease_until = $2, updated_at = $3 \
         WHERE id = $4 AND status = 'pending' RETURNING attempts",
    )
    .bind(owner)
    .bind(at(now_utc + lease))
    .bind(&stamp)
    .bind(target)
    .fetch_one(&mut *tx)
    .await?;
    let call: i64 = sqlx::query_scalar(
        "INSERT INTO calls (tenant_id, agent_id, agent_version, direction, carrier, from_number, \
            to_number, status, created_at) \
         VALUES ($1, $2, $3, 'outbound', 'twilio', $4, $5, 'initiated', $6) RETURNING id",
    )
    .bind(c.tenant_id)
    .bind(agent)
    .bind(version)
    .bind(&c.from_number)
    .bind(&to)
    .bind(&stamp)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO campaign_attempts (target_id, campaign_id, attempt, call_id, started_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(target)
    .bind(c.id)
    .bind(attempt)
    .bind(call)
    .bind(&stamp)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Claimed {
        tenant: TenantId(c.tenant_id),
        campaign: c.id,
        target,
        attempt,
        call,
        agent: AgentId(agent),
        to,
        from: c.from_number,
    }))
}

async fn pause_in(tx: &mut Tx, campaign: i64, reason: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE campaigns SET status = 'paused', status_reason = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'running'",
    )
    .bind(reason)
    .bind(now())
    .bind(campaign)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether `now` is within the campaign's calling hours in its time zone (always, without
/// hours; an end before the start spans midnight).
pub fn within_hours(c: &CampaignRow, now: DateTime<Utc>) -> bool {
    let (Some(start), Some(end)) = (&c.hours_start, &c.hours_end) else {
        return true;
    };
    let parse = |t: &str| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok();
    let (Some(start), Some(end)) = (parse(start), parse(end)) else {
        return true;
    };
    let tz: chrono_tz::Tz = c.timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&tz).time();
    if start <= end {
        local >= start && local < end
    } else {
        local >= start || local < end
    }
}

/// Extends the leases `owner` holds on these targets.
pub async fn renew(
    db: &Db,
    owner: &str,
    targets: &[i64],
    lease: std::time::Duration,
) -> StoreResult<()> {
    let until = at(Utc::now() + Duration::from_std(lease).unwrap_or(Duration::seconds(30)));
    for target in targets {
        sqlx::query(
            "UPDATE campaign_targets SET lease_until = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'dialling'",
        )
        .bind(&until)
        .bind(target)
        .bind(owner)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Voicemail,
    Busy,
    NoAnswer,
    Failed,
    /// Its dialler died; the call's fate is unknown.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Voicemail => "voicemail",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no-answer",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Worth another attempt after the delay.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Outcome::Busy | Outcome::NoAnswer | Outcome::Interrupted
        )
    }

    /// The target's status when this outcome is its last.
    fn final_status(self) -> &'static str {
        match self {
            Outcome::Interrupted => "failed",
            other => other.as_str(),
        }
    }
}

/// Records how attempt `attempt` of `target` ended: the attempt's outcome, the target's next
/// state (due again after the retry delay, or final), and `campaign.completed` once every
/// target is final. False when the attempt was already closed (by a reclaim, say).
pub async fn finish_attempt(
    db: &Db,
    target: i64,
    attempt: i64,
    outcome: Outcome,
) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let done = finish_in(&mut tx, db.backend(), target, attempt, outcome).await?;
    tx.commit().await?;
    Ok(done)
}

async fn finish_in(
    tx: &mut Tx,
    backend: Backend,
    target: i64,
    attempt: i64,
    outcome: Outcome,
) -> StoreResult<bool> {
    // Finishes of one campaign's attempts are serialised on its row: two processes closing the
    // last two attempts at once would otherwise each still see the other's target open, and
    // neither would complete the campaign. (SQLite's writers are serialised already.)
    if backend == Backend::Postgres {
        sqlx::query(
            "SELECT c.id FROM campaigns c JOIN campaign_targets t ON t.campaign_id = c.id \
             WHERE t.id = $1 FOR UPDATE OF c",
        )
        .bind(target)
        .fetch_optional(&mut **tx)
        .await?;
    }
    let stamp = now();
    let closed = sqlx::query(
        "UPDATE campaign_attempts SET outcome = $1, ended_at = $2 \
         WHERE target_id = $3 AND attempt = $4 AND outcome IS NULL",
    )
    .bind(outcome.as_str())
    .bind(&stamp)
    .bind(target)
    .bind(attempt)
    .execute(&mut **tx)
    .await?;
    if closed.rows_affected() == 0 {
        return Ok(false);
    }
    let row: Option<(i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT c.id, c.tenant_id, c.max_attempts, c.retry_delay_minutes, c.status \
         FROM campaign_targets t JOIN campaigns c ON c.id = t.campaign_id \
         WHERE t.id = $1 AND t.status = 'dialling' AND t.attempts = $2",
    )
    .bind(target)
    .bind(attempt)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((campaign, tenant, max_attempts, delay, status)) = row else {
        return Ok(true);
    };
    // A cancelled campaign tries no one again.
    if outcome.retryable() && attempt < max_attempts && status != "cancelled" {
        let due = at(Utc::now() + Duration::minutes(delay));
        sqlx::query(
            "UPDATE campaign_targets SET status = 'pending', next_attempt_at = $1, \
                lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(due)
        .bind(&stamp)
        .bind(target)
        .execute(&mut **tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE campaign_targets SET status = $1, lease_owner = NULL, lease_until = NULL, \
                updated_at = $2 WHERE id = $3",
        )
        .bind(outcome.final_status())
        .bind(&stamp)
        .bind(target)
        .execute(&mut **tx)
        .await?;
        complete_if_done(tx, campaign, TenantId(tenant)).await?;
    }
    Ok(true)
}

/// Marks the campaign completed, with its event, once no target is pending or dialling.
async fn complete_if_done(tx: &mut Tx, campaign: i64, tenant: TenantId) -> StoreResult<()> {
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM campaign_targets \
         WHERE campaign_id = $1 AND status IN ('pending', 'dialling')",
    )
    .bind(campaign)
    .fetch_one(&mut **tx)
    .await?;
    if open > 0 {
        return Ok(());
    }
    let row: Option<CampaignRow> = sqlx::query_as(
        "UPDATE campaigns SET status = 'completed', completed_at = $1, updated_at = $1 \
         WHERE id = $2 AND status IN ('running', 'paused') RETURNING *",
    )
    .bind(now())
    .bind(campaign)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM campaign_targets \
         WHERE campaign_id = $1 GROUP BY status",
    )
    .bind(campaign)
    .fetch_all(&mut **tx)
    .await?;
    let mut stats = json!({});
    let mut attempts = 0;
    for (status, count, made) in counts {
        stats[status.replace('-', "_")] = json!(count);
        attempts += made;
    }
    stats["attempts"] = json!(attempts);
    let event = json!({
        "campaign_id": row.id,
        "name": row.name,
        "agent_id": row.agent_id,
        "completed_at": row.completed_at,
        "stats": stats,
    });
    outbox::push(tx, tenant, outbox::CAMPAIGN_COMPLETED, &event).await?;
    Ok(())
}

/// Closes the attempts of targets whose lease lapsed before now: as the call record says when it
/// ended, else as `interrupted` (the call record is then failed). Returns how many.
pub async fn reclaim(db: &Db) -> StoreResult<usize> {
    let stamp = now();
    let lapsed: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, attempts FROM campaign_targets \
         WHERE status = 'dialling' AND lease_until < $1",
    )
    .bind(&stamp)
    .fetch_all(db.pool())
    .await?;
    let mut closed = 0;
    for (target, attempt) in lapsed {
        let mut tx = db.begin_write().await?;
        // Still lapsed inside the write transaction (its dialler may have just renewed it).
        let still: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM campaign_targets \
             WHERE id = $1 AND status = 'dialling' AND attempts = $2 AND lease_until < $3",
        )
        .bind(target)
        .bind(attempt)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        if still.is_none() {
            continue;
        }
        let call: Option<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT c.id, c.status, c.disposition, c.answered_by FROM campaign_attempts a \
             JOIN calls c ON c.id = a.call_id WHERE a.target_id = $1 AND a.attempt = $2",
        )
        .bind(target)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match &call {
            Some((_, status, disposition, answered_by)) => {
                outcome_of(status, disposition.as_deref(), answered_by.as_deref())
                    .unwrap_or(Outcome::Interrupted)
            }
            None => Outcome::Interrupted,
        };
        if let (Some((id, status, _, _)), Outcome::Interrupted) = (&call, outcome)
            && (status == "initiated" || status == "in-progress")
        {
            sqlx::query(
                "UPDATE calls SET status = 'failed', disposition = 'interrupted', ended_at = $1 \
                 WHERE id = $2 AND status IN ('initiated', 'in-progress')",
            )
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if finish_in(&mut tx, db.backend(), target, attempt, outcome).await? {
            closed += 1;
        }
        tx.commit().await?;
    }
    Ok(closed)
}

/// An attempt's outcome from its call record, once the call has ended.
pub fn outcome_of(
    status: &str,
    disposition: Option<&str>,
    answered_by: Option<&str>,
) -> Option<Outcome> {
    match (status, disposition) {
        ("initiated" | "in-progress", _) => None,
        (_, Some("busy")) => Some(Outcome::Busy),
        (_, Some("no-answer")) => Some(Outcome::NoAnswer),
        (_, Some("interrupted")) => Some(Outcome::Interrupted),
        ("completed", _) if answered_by == Some("machine") => Some(Outcome::Voicemail),
        ("completed", _) => Some(Outcome::Completed),
        _ => Some(Outcome::Failed),
    }
}

/// The call's status, disposition and who answered.
pub async fn call_state(
    db: &Db,
    call: i64,
) -> StoreResult<(String, Option<String>, Option<String>)> {
    let row = sqlx::query_as("SELECT status, disposition, answered_by FROM calls WHERE id = $1")
        .bind(call)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// Records who answered an outbound call.
pub async fn set_answered_by(db: &Db, call: i64, machine: bool) -> StoreResult<()> {
    sqlx::query("UPDATE calls SET answered_by = $1 WHERE id = $2")
        .bind(if machine { "machine" } else { "human" })
        .bind(call)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Records the carrier's id for a placed call.
pub async fn set_carrier_call_id(db: &Db, call: i64, carrier_call_id: &str) -> StoreResult<()> {
    sqlx::query("UPDATE calls SET carrier_call_id = $1 WHERE id = $2")
        .bind(carrier_call_id)
        .bind(call)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Ends a call that never connected (busy, no answer, refused) with that disposition.
pub async fn fail_unconnected(db: &Db, call: i64, disposition: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE calls SET status = 'failed', disposition = $1, ended_at = $2, duration_ms = 0 \
         WHERE id = $3 AND status = 'initiated'",
    )
    .bind(disposition)
    .bind(now())
    .bind(call)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The outbound call of a campaign attempt, by call id: (tenant, campaign, target, attempt).
pub async fn attempt_of_call(db: &Db, call: i64) -> StoreResult<Option<(i64, i64, i64, i64)>> {
    let row = sqlx::query_as(
        "SELECT t.tenant_id, a.campaign_id, a.target_id, a.attempt FROM campaign_attempts a \
         JOIN campaign_targets t ON t.id = a.target_id WHERE a.call_id = $1",
    )
    .bind(call)
    .fetch_optional(db.pool())
    .await?;
    Ok(row)
}
