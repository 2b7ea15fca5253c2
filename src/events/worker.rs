//! The delivery worker: every engine process runs one. It claims due deliveries with a lease (a
//! batch at a time; on PostgreSQL rows being claimed by another process are skipped), sends them
//! concurrently, and records every attempt with the next retry. Nothing is held in memory that
//! the database does not also hold, so a restart loses nothing: a delivery leased by a process
//! that died is claimed again once its lease lapses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use super::{Webhooks, next_retry};
use crate::store::webhooks::{self as store, Claimed, Outcome};

/// Delivers until the application stops.
pub async fn run(webhooks: Webhooks) {
    let idle = Duration::from_millis(webhooks.settings.poll_ms);
    loop {
        match deliver_due(&webhooks).await {
            // Something was sent: successors of delivered events may be due now.
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "webhook delivery round failed"),
        }
        tokio::time::sleep(idle).await;
    }
}

/// One round: claims a batch, sends it, records the outcomes. Returns how many were sent.
pub async fn deliver_due(webhooks: &Webhooks) -> Result<usize, crate::store::StoreError> {
    let settings = &webhooks.settings;
    let lease = chrono::Duration::seconds(settings.lease_secs as i64);
    let claimed = store::claim(
        &webhooks.db,
        &webhooks.owner,
        Utc::now() + lease,
        i64::from(settings.batch),
    )
    .await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let outcomes = join_all(claimed.iter().map(|c| attempt(webhooks, c))).await;
    store::record(&webhooks.db, &webhooks.owner, &outcomes).await?;
    let delivered = outcomes.iter().filter(|o| o.retry.is_none()).count();
    metrics::counter!("webhook_deliveries_total", "outcome" => "delivered")
        .increment(delivered as u64);
    metrics::counter!("webhook_deliveries_total", "outcome" => "failed")
        .increment((outcomes.len() - delivered) as u64);
    Ok(outcomes.len())
}

async fn attempt(webhooks: &Webhooks, claimed: &Claimed) -> Outcome {
    let started_at = crate::store::now();
    let secrets = claimed.signing_secrets(&started_at);
    let sent = webhooks
        .send(&claimed.url, &claimed.event_id, claimed.body(), &secrets)
        .await;
    let retry = if sent.delivered() {
        None
    } else {
        let created = DateTime::parse_from_rfc3339(&claimed.created_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let next = next_retry(
            &webhooks.settings,
            claimed.attempts + 1,
            created,
            Utc::now(),
        );
        tracing::info!(
            delivery = claimed.id, event = %claimed.event_id, attempt = claimed.attempts + 1,
            error = sent.error.as_deref().unwrap_or_default(), retry_at = ?next,
            "webhook not delivered"
        );
        Some(next)
    };
    Outcome {
        delivery: claimed.id,
        started_at,
        status_code: sent.status_code,
        latency_ms: sent.latency_ms,
        error: sent.error,
        retry,
    }
}

/// Gives back this process's leases at shutdown.
pub async fn release(webhooks: &Webhooks) {
    match store::release_leases(&webhooks.db, &webhooks.owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "released webhook leases"),
        Err(error) => tracing::warn!(%error, "could not release webhook leases"),
    }
}
