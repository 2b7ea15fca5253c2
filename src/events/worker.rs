//! The delivery worker: every engine process runs one. It claims due deliveries with a lease (on
//! PostgreSQL rows being claimed by another process are skipped) and sends each as its own task,
//! recording its attempt and next retry as soon as it finishes: a slow receiver holds only its
//! own deliveries, never another business's. At most `batch` deliveries are in flight, and at
//! most `endpoint_concurrency` of them for one endpoint, so one endpoint cannot take every slot.
//! Nothing is held in memory that the database does not also hold, so a restart loses nothing:
//! a delivery leased by a process that died is claimed again once its lease lapses.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::task::JoinSet;

use super::{Webhooks, next_retry};
use crate::store::webhooks::{self as store, Claimed, Outcome};

/// Deliveries in flight: how many per endpoint, and which.
#[derive(Default)]
struct Sending {
    per_endpoint: HashMap<i64, usize>,
    deliveries: HashSet<i64>,
}

type InFlight = Arc<Mutex<Sending>>;

/// Delivers until the application stops (dropping this future stops the sends in flight; their
/// leases are released by [`release`] or lapse).
pub async fn run(webhooks: Webhooks) {
    let idle = Duration::from_millis(webhooks.settings.poll_ms);
    let slots = webhooks.settings.batch as usize;
    let per_endpoint = webhooks.settings.endpoint_concurrency as usize;
    let in_flight: InFlight = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let free = slots.saturating_sub(tasks.len());
        let mut claimed = 0;
        if free > 0 {
            let (busy, sending) = {
                let now = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                (
                    now.per_endpoint.clone(),
                    now.deliveries.iter().copied().collect::<Vec<_>>(),
                )
            };
            match claim(&webhooks, free, &busy, &sending, per_endpoint).await {
                Ok(batch) => {
                    claimed = batch.len();
                    for delivery in batch {
                        {
                            let mut now = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                            *now.per_endpoint.entry(delivery.endpoint_id).or_insert(0) += 1;
                            now.deliveries.insert(delivery.id);
                        }
                        let webhooks = webhooks.clone();
                        let in_flight = Arc::clone(&in_flight);
                        tasks.spawn(async move {
                            let outcome = attempt(&webhooks, &delivery).await;
                            if let Err(error) =
                                store::record(&webhooks.db, &webhooks.owner, std::slice::from_ref(&outcome))
                                    .await
                            {
                                tracing::warn!(%error, delivery = delivery.id,
                                    "could not record a webhook attempt; it is retried when its lease lapses");
                            }
                            count(std::slice::from_ref(&outcome));
                            let mut now = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                            now.deliveries.remove(&delivery.id);
                            if let Some(n) = now.per_endpoint.get_mut(&delivery.endpoint_id) {
                                *n -= 1;
                                if *n == 0 {
                                    now.per_endpoint.remove(&delivery.endpoint_id);
                                }
                            }
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "could not claim webhook deliveries"),
            }
        }
        // Claimed something with slots to spare: more (successors of sent events) may be due.
        if claimed > 0 && tasks.len() < slots {
            continue;
        }
        // Otherwise wait for a send to finish (freeing a slot, or a successor) or the poll.
        if tasks.is_empty() {
            tokio::time::sleep(idle).await;
        } else {
            let _ = tokio::time::timeout(idle, tasks.join_next()).await;
        }
    }
}

async fn claim(
    webhooks: &Webhooks,
    limit: usize,
    in_flight: &HashMap<i64, usize>,
    sending: &[i64],
    per_endpoint: usize,
) -> Result<Vec<Claimed>, crate::store::StoreError> {
    let lease = chrono::Duration::seconds(webhooks.settings.lease_secs as i64);
    store::claim(
        &webhooks.db,
        &webhooks.owner,
        Utc::now() + lease,
        i64::try_from(limit).unwrap_or(i64::MAX),
        in_flight,
        sending,
        per_endpoint,
    )
    .await
}

fn count(outcomes: &[Outcome]) {
    let delivered = outcomes.iter().filter(|o| o.retry.is_none()).count();
    metrics::counter!("webhook_deliveries_total", "outcome" => "delivered")
        .increment(delivered as u64);
    metrics::counter!("webhook_deliveries_total", "outcome" => "failed")
        .increment((outcomes.len() - delivered) as u64);
}

/// One synchronous round, for benchmarks: claims up to `batch` due deliveries, sends them
/// concurrently, records the outcomes together. Returns how many were sent.
pub async fn deliver_due(webhooks: &Webhooks) -> Result<usize, crate::store::StoreError> {
    let batch = webhooks.settings.batch as usize;
    let claimed = claim(webhooks, batch, &HashMap::new(), &[], batch).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let outcomes = join_all(claimed.iter().map(|c| attempt(webhooks, c))).await;
    store::record(&webhooks.db, &webhooks.owner, &outcomes).await?;
    count(&outcomes);
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
