//! Billing state: the business's plan (with the terms it was bought on), trial and wallet on its
//! `tenants` row; a `usage_records` row per metered call; `checkout_sessions`.
//!
//! [`meter_in`] runs inside the transaction that ends a call. On PostgreSQL it locks the
//! business's row first (`FOR NO KEY UPDATE`), so calls ending at once on several connections or
//! processes are paid for one after the other and never spend the same trial second or included
//! second twice; on SQLite the write transaction (`BEGIN IMMEDIATE`) already serialises them.
//!
//! Stripe: `stripe_events` (every event applied, by id, so a redelivery is applied once) and
//! `stripe_subscriptions` (each subscription's state as its newest event left it, tied to its
//! business by the checkout that created it). [`sync_plan`] copies a subscription's state onto
//! its business's plan columns, which metering reads.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::calls::CallRow;
use super::{Backend, Db, StoreResult, Tx, now};
use crate::billing::{Balance, Period, Plan, Split, TrialGrant, billed_seconds};
use crate::domain::{TenantId, UserId};

/// A business's billing columns and its usage in one period.
#[derive(Debug, Clone, FromRow)]
pub struct BalanceRow {
    pub plan: Option<String>,
    pub trial_seconds_remaining: i64,
    pub plan_included_seconds: i64,
    pub overage_cents_per_minute: i64,
    pub wallet_cents: i64,
    /// Included seconds used in the period.
    pub included_used_seconds: i64,
    /// Every billed second in the period.
    pub seconds_used: i64,
}

impl BalanceRow {
    pub fn balance(&self) -> Balance {
        Balance {
            plan: self.plan.as_deref().and_then(Plan::parse),
            trial_seconds: self.trial_seconds_remaining,
            included_seconds: self.plan_included_seconds,
            included_used_seconds: self.included_used_seconds,
            wallet_cents: self.wallet_cents,
            overage_cents_per_minute: self.overage_cents_per_minute,
        }
    }
}

// SUM over BIGINT is NUMERIC on PostgreSQL: cast back so both databases return a 64-bit integer.
const BALANCE: &str = "SELECT t.plan, t.trial_seconds_remaining, t.plan_included_seconds, \
        t.overage_cents_per_minute, t.wallet_cents, \
        (SELECT CAST(COALESCE(SUM(u.included_seconds), 0) AS BIGINT) FROM usage_records u \
         WHERE u.tenant_id = t.id AND u.period_start = $2) AS included_used_seconds, \
        (SELECT CAST(COALESCE(SUM(u.seconds), 0) AS BIGINT) FROM usage_records u \
         WHERE u.tenant_id = t.id AND u.period_start = $2) AS seconds_used \
     FROM tenants t WHERE t.id = $1";

/// The business's balance in the period starting at `period` (a [`Period::key`]).
pub async fn balance(db: &Db, tenant: TenantId, period: &str) -> StoreResult<BalanceRow> {
    let row = sqlx::query_as(BALANCE)
        .bind(tenant.0)
        .bind(period)
        .fetch_one(db.pool())
        .await?;
    Ok(row)
}

/// [`balance`] inside a transaction.
pub async fn balance_in(tx: &mut Tx, tenant: TenantId, period: &str) -> StoreResult<BalanceRow> {
    let row = sqlx::query_as(BALANCE)
        .bind(tenant.0)
        .bind(period)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row)
}

/// The period `tenant`'s usage counts in at `at`: its subscription's current period when
/// Stripe has reported one, else the calendar month (see [`Period::current`]).
pub async fn period<'e, E>(executor: E, tenant: TenantId, at: DateTime<Utc>) -> StoreResult<Period>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (start, end): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT plan_period_start, plan_period_end FROM tenants WHERE id = $1")
            .bind(tenant.0)
            .fetch_one(executor)
            .await?;
    let instant = |t: Option<String>| {
        t.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let plan = match (instant(start), instant(end)) {
        (Some(start), Some(end)) => Some(Period { start, end }),
        _ => None,
    };
    Ok(Period::current(at, plan))
}

/// Gives a new business the pay-as-you-go rate, and the trial if its owner has not had theirs
/// (inside the transaction that creates it). The trial is one per account: the first business a
/// user creates gets it, marked on the user's row in the same transaction (on PostgreSQL the
/// update takes the user's row lock, so two businesses created at once cannot both win it).
/// Returns the trial seconds given.
pub async fn grant_trial(
    tx: &mut Tx,
    tenant: TenantId,
    owner: UserId,
    trial: TrialGrant,
) -> StoreResult<i64> {
    let first = sqlx::query(
        "UPDATE users SET trial_granted_at = $1 WHERE id = $2 AND trial_granted_at IS NULL",
    )
    .bind(now())
    .bind(owner.0)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let seconds = if first { trial.seconds } else { 0 };
    sqlx::query(
        "UPDATE tenants SET trial_seconds_remaining = $1, overage_cents_per_minute = $2 \
         WHERE id = $3",
    )
    .bind(seconds)
    .bind(trial.overage_cents_per_minute)
    .bind(tenant.0)
    .execute(&mut **tx)
    .await?;
    Ok(seconds)
}

/// Bills an ended call inside the transaction that ended it: a usage record and the business's
/// trial and wallet brought down. Calls that never connected, or lasted no time, cost nothing.
pub async fn meter_in(
    tx: &mut Tx,
    backend: Backend,
    tenant: TenantId,
    call: &CallRow,
) -> StoreResult<Option<Split>> {
    let seconds = billed_seconds(call.duration_ms.unwrap_or(0));
    if call.started_at.is_none() || seconds == 0 {
        return Ok(None);
    }
    let ended = call
        .ended_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    // NO KEY UPDATE, not UPDATE: the transaction already holds a KEY SHARE lock on this row
    // (its outbox insert references it), as does every other call ending for the business;
    // FOR UPDATE conflicts with those and two such transactions would deadlock.
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
            .bind(tenant.0)
            .execute(&mut **tx)
            .await?;
    }
    let period = period(&mut **tx, tenant, ended).await?.key();
    let balance = balance_in(tx, tenant, &period).await?.balance();
    let split = balance.split(seconds);
    sqlx::query(
        "INSERT INTO usage_records (tenant_id, call_id, period_start, seconds, trial_seconds, \
            included_seconds, overage_seconds, wallet_cents, plan, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(tenant.0)
    .bind(call.id)
    .bind(&period)
    .bind(split.seconds)
    .bind(split.trial_seconds)
    .bind(split.included_seconds)
    .bind(split.overage_seconds)
    .bind(split.wallet_cents)
    .bind(balance.plan.map(Plan::as_str))
    .bind(now())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE tenants SET trial_seconds_remaining = trial_seconds_remaining - $1, \
            wallet_cents = wallet_cents - $2 WHERE id = $3",
    )
    .bind(split.trial_seconds)
    .bind(split.wallet_cents)
    .bind(tenant.0)
    .execute(&mut **tx)
    .await?;
    Ok(Some(split))
}

/// A checkout session about to be recorded.
#[derive(Debug)]
pub struct NewCheckout<'a> {
    /// `plan` or `top_up`.
    pub kind: &'a str,
    pub plan: Option<&'a str>,
    pub amount_cents: i64,
    pub currency: &'a str,
    /// The plan's terms as offered (a top-up: 0, and the pay-as-you-go rate).
    pub included_seconds: i64,
    pub overage_cents_per_minute: i64,
    pub provider: &'a str,
    pub provider_session_id: Option<&'a str>,
    pub token_hash: &'a str,
    pub url: Option<&'a str>,
    pub created_at: &'a str,
    pub expires_at: &'a str,
}

/// A checkout session, with its business's name (for its page).
#[derive(Debug, Clone, FromRow)]
pub struct CheckoutRow {
    pub id: i64,
    pub tenant_id: i64,
    pub tenant_name: String,
    pub kind: String,
    pub plan: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub included_seconds: i64,
    pub overage_cents_per_minute: i64,
    pub provider: String,
    pub provider_session_id: Option<String>,
    /// `open`, `completed` or `expired`.
    pub status: String,
    pub url: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub completed_at: Option<String>,
}

pub async fn insert_checkout(db: &Db, tenant: TenantId, c: &NewCheckout<'_>) -> StoreResult<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO checkout_sessions (tenant_id, kind, plan, amount_cents, currency, \
            included_seconds, overage_cents_per_minute, provider, provider_session_id, \
            token_hash, url, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(tenant.0)
    .bind(c.kind)
    .bind(c.plan)
    .bind(c.amount_cents)
    .bind(c.currency)
    .bind(c.included_seconds)
    .bind(c.overage_cents_per_minute)
    .bind(c.provider)
    .bind(c.provider_session_id)
    .bind(c.token_hash)
    .bind(c.url)
    .bind(c.created_at)
    .bind(c.expires_at)
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

/// The session whose token hashes to `token_hash`. Not scoped to a business: the token is the
/// credential (as a signed URL's signature is).
pub async fn checkout_by_token(db: &Db, token_hash: &str) -> StoreResult<Option<CheckoutRow>> {
    let row = sqlx::query_as(
        "SELECT c.id, c.tenant_id, t.name AS tenant_name, c.kind, c.plan, c.amount_cents, \
            c.currency, c.included_seconds, c.overage_cents_per_minute, c.provider, \
            c.provider_session_id, c.status, c.url, c.created_at, c.expires_at, c.completed_at \
         FROM checkout_sessions c JOIN tenants t ON t.id = c.tenant_id \
         WHERE c.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    Ok(row)
}

/// Marks an open session expired.
pub async fn expire_checkout(db: &Db, id: i64) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    expire_checkout_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// [`expire_checkout`] inside a transaction.
pub async fn expire_checkout_in(tx: &mut Tx, id: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE checkout_sessions SET status = 'expired' WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Completes an open session and applies it, in one transaction: a plan becomes the business's
/// (with the session's terms), a top-up is added to the wallet. Returns whether this call did
/// it; a session already completed (a second confirmation, a replayed webhook) changes nothing.
pub async fn complete_checkout(db: &Db, id: i64) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let applied = complete_checkout_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`complete_checkout`] inside a transaction.
pub async fn complete_checkout_in(tx: &mut Tx, id: i64) -> StoreResult<bool> {
    let stamp = now();
    let done: Option<(i64, String, Option<String>, i64, i64, i64)> = sqlx::query_as(
        "UPDATE checkout_sessions SET status = 'completed', completed_at = $1 \
         WHERE id = $2 AND status = 'open' \
         RETURNING tenant_id, kind, plan, amount_cents, included_seconds, overage_cents_per_minute",
    )
    .bind(&stamp)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((tenant, kind, plan, amount_cents, included_seconds, rate)) = done else {
        return Ok(false);
    };
    if kind == "plan" {
        sqlx::query(
            "UPDATE tenants SET plan = $1, plan_included_seconds = $2, \
                overage_cents_per_minute = $3, plan_activated_at = $4 WHERE id = $5",
        )
        .bind(plan)
        .bind(included_seconds)
        .bind(rate)
        .bind(&stamp)
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    } else {
        // Without a plan, the wallet pays at the pay-as-you-go rate offered with this top-up.
        sqlx::query(
            "UPDATE tenants SET wallet_cents = wallet_cents + $1, \
                overage_cents_per_minute = CASE WHEN plan IS NULL THEN $2 \
                    ELSE overage_cents_per_minute END \
             WHERE id = $3",
        )
        .bind(amount_cents)
        .bind(rate)
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Stripe subscriptions

/// Records a Stripe event by its id; `false` if it was recorded before (a redelivery).
pub async fn record_stripe_event(
    tx: &mut Tx,
    id: &str,
    kind: &str,
    created: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO stripe_events (id, type, created, received_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(created)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A subscription's state as a lifecycle event reports it: `active` (with the period paid for,
/// RFC 3339) or `ended`.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionState<'a> {
    pub customer: Option<&'a str>,
    pub status: &'a str,
    pub period: Option<(&'a str, &'a str)>,
    /// The event's `created` (unix seconds).
    pub created: i64,
}

/// Records a subscription's state unless a newer event already set it (the row is created if
/// this is the first word of it). Returns whether it was recorded; `false`: the event is stale.
pub async fn set_subscription_state(
    tx: &mut Tx,
    subscription: &str,
    state: SubscriptionState<'_>,
) -> StoreResult<bool> {
    let (start, end) = state.period.unzip();
    let row: Option<(String,)> = sqlx::query_as(
        "INSERT INTO stripe_subscriptions (id, customer_id, status, period_start, period_end, \
            state_created, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET \
            customer_id = COALESCE(excluded.customer_id, stripe_subscriptions.customer_id), \
            status = excluded.status, \
            period_start = COALESCE(excluded.period_start, stripe_subscriptions.period_start), \
            period_end = COALESCE(excluded.period_end, stripe_subscriptions.period_end), \
            state_created = excluded.state_created, updated_at = excluded.updated_at \
         WHERE stripe_subscriptions.state_created <= excluded.state_created \
         RETURNING id",
    )
    .bind(subscription)
    .bind(state.customer)
    .bind(state.status)
    .bind(start)
    .bind(end)
    .bind(state.created)
    .bind(now())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

/// Ties a subscription to the business whose checkout created it, with the plan and terms
/// bought, and makes it the subscription behind the business's plan. The checkout activates it
/// as of `created` unless a newer event (a deletion that arrived first) says otherwise.
pub async fn attach_subscription(
    tx: &mut Tx,
    subscription: &str,
    customer: Option<&str>,
    tenant: TenantId,
    created: i64,
) -> StoreResult<()> {
    let stamp = now();
    sqlx::query(
        "INSERT INTO stripe_subscriptions (id, customer_id, status, state_created, updated_at) \
         VALUES ($1, $2, 'active', $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(subscription)
    .bind(customer)
    .bind(created)
    .bind(&stamp)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE stripe_subscriptions SET tenant_id = t.id, plan = t.plan, \
            included_seconds = t.plan_included_seconds, \
            overage_cents_per_minute = t.overage_cents_per_minute, \
            customer_id = COALESCE($1, stripe_subscriptions.customer_id), \
            status = CASE WHEN stripe_subscriptions.state_created < $2 THEN 'active' \
                ELSE stripe_subscriptions.status END, \
            state_created = CASE WHEN stripe_subscriptions.state_created < $2 THEN $2 \
                ELSE stripe_subscriptions.state_created END, \
            updated_at = $3 \
         FROM tenants t WHERE t.id = $4 AND stripe_subscriptions.id = $5",
    )
    .bind(customer)
    .bind(created)
    .bind(&stamp)
    .bind(tenant.0)
    .bind(subscription)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE tenants SET stripe_subscription_id = $1 WHERE id = $2")
        .bind(subscription)
        .bind(tenant.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a subscription's state did to its business's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSync {
    /// No business yet: its checkout has not been reported.
    Unattached,
    /// The plan is active with the subscription's period.
    Active,
    /// The plan ended (the subscription was the one behind it).
    Ended,
    /// Another subscription is behind the business's plan now: nothing changed.
    Superseded,
}

/// Brings the plan of the subscription's business in line with the subscription, when it is
/// the one behind the plan (or none is): active, with its terms and its period; or ended, back
/// to pay-as-you-go at `payg_rate`.
pub async fn sync_plan(tx: &mut Tx, subscription: &str, payg_rate: i64) -> StoreResult<PlanSync> {
    type Row = (
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        String,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT tenant_id, plan, included_seconds, overage_cents_per_minute, status, \
            period_start, period_end FROM stripe_subscriptions WHERE id = $1",
    )
    .bind(subscription)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((Some(tenant), Some(plan), included, rate, status, start, end)) = row else {
        return Ok(PlanSync::Unattached);
    };
    if status == "active" {
        // Not over another subscription now behind the plan (a second checkout).
        let done = sqlx::query(
            "UPDATE tenants SET plan = $1, plan_included_seconds = $2, \
                overage_cents_per_minute = $3, plan_period_start = $4, plan_period_end = $5, \
                plan_activated_at = COALESCE(plan_activated_at, $6), \
                stripe_subscription_id = $7 \
             WHERE id = $8 AND (stripe_subscription_id IS NULL OR stripe_subscription_id = $7)",
        )
        .bind(plan)
        .bind(included.unwrap_or(0))
        .bind(rate.unwrap_or(payg_rate))
        .bind(start)
        .bind(end)
        .bind(now())
        .bind(subscription)
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
        return Ok(if done.rows_affected() == 1 {
            PlanSync::Active
        } else {
            PlanSync::Superseded
        });
    }
    let done = sqlx::query(
        "UPDATE tenants SET plan = NULL, plan_included_seconds = 0, \
            overage_cents_per_minute = $1, plan_period_start = NULL, plan_period_end = NULL, \
            stripe_subscription_id = NULL WHERE id = $2 AND stripe_subscription_id = $3",
    )
    .bind(payg_rate)
    .bind(tenant)
    .bind(subscription)
    .execute(&mut **tx)
    .await?;
    Ok(if done.rows_affected() == 1 {
        PlanSync::Ended
    } else {
        PlanSync::Superseded
    })
}
