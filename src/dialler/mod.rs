//! The outbound dialler: every engine process runs one. It claims due targets of running
//! campaigns (the store's [`claim`](crate::store::telephony::claim) checks each campaign's
//! concurrency, calls a minute and calling hours, the business's concurrency, and whether the
//! business may start calls at all: if its minutes and wallet are used up the campaign is paused
//! with that reason), places each
//! call through the carrier, keeps the claims' leases alive, and records each attempt's outcome
//! as the call record shows it (carriers' progress reports land there, on whichever process
//! receives them). Attempts whose dialler died are closed by any process once their lease lapses
//! ([`reclaim`](crate::store::telephony::reclaim)).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::calls::token::{StreamClaims, StreamTokens, TOKEN_TTL_SECS};
use crate::carrier::{Carrier, Dial};
use crate::config::DiallerSettings;
use crate::domain::{CallId, Carrier as MediaCarrier};
use crate::store::Db;
use crate::store::telephony::{self as store, ClaimLimits, Claimed, NoClaim, Outcome};

/// How often (give or take a quarter) the dialler looks for work when nothing wakes it: pausing a
/// campaign stops new dials within this.
const TICK: Duration = Duration::from_millis(200);

/// How often a placed call's record is read for its outcome.
const WATCH: Duration = Duration::from_millis(250);

/// The dialler's handle: cheap to clone.
#[derive(Clone)]
pub struct Dialler {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    carrier: Arc<dyn Carrier>,
    tokens: Arc<StreamTokens>,
    /// The engine's externally reachable base URL.
    public_url: String,
    settings: DiallerSettings,
    /// This process's name on the leases it holds.
    owner: String,
    /// Targets this process is dialling.
    active: Mutex<HashSet<i64>>,
    wake: Notify,
    /// The business's and this node's concurrent-call limits: over them, targets wait.
    capacity: crate::calls::Capacity,
}

impl Dialler {
    pub fn new(
        db: Db,
        carrier: Arc<dyn Carrier>,
        tokens: Arc<StreamTokens>,
        public_url: &str,
        settings: DiallerSettings,
        capacity: crate::calls::Capacity,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                carrier,
                tokens,
                public_url: public_url.trim_end_matches('/').to_owned(),
                settings,
                owner: format!("dialler-{}", uuid::Uuid::new_v4().simple()),
                active: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                capacity,
            }),
        }
    }

    pub fn carrier(&self) -> &Arc<dyn Carrier> {
        &self.inner.carrier
    }

    /// Looks for work now (a campaign was started).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.inner.settings.lease_secs)
    }

    /// Runs until the application stops.
    pub async fn run(self) {
        let mut last_upkeep = Instant::now() - self.lease();
        loop {
            if last_upkeep.elapsed() >= self.lease() / 3 {
                last_upkeep = Instant::now();
                self.upkeep().await;
            }
            match store::running(&self.inner.db).await {
                Ok(campaigns) => {
                    for campaign in campaigns {
                        self.claim_all(campaign).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "dialler: cannot list running campaigns"),
            }
            // Jittered, so that engine processes sharing a database take turns.
            let tick = TICK.mul_f64(0.75 + rand::random::<f64>() / 2.0);
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Renews this process's leases and closes the attempts of dead diallers.
    async fn upkeep(&self) {
        let active: Vec<i64> = self
            .inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if let Err(error) =
            store::renew(&self.inner.db, &self.inner.owner, &active, self.lease()).await
        {
            tracing::warn!(%error, "dialler: cannot renew leases");
        }
        match store::reclaim(&self.inner.db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                attempts = n,
                "dialler: closed the attempts of a dialler that stopped"
            ),
            Err(error) => tracing::warn!(%error, "dialler: cannot reclaim lapsed leases"),
        }
    }

    /// Claims and places as many of the campaign's due targets as its limits allow.
    async fn claim_all(&self, campaign: i64) {
        let limits = ClaimLimits {
            tenant_concurrency: i64::from(self.inner.settings.tenant_concurrency),
            lease: self.lease(),
            caps: self.inner.capacity.caps,
        };
        loop {
            // A node at its limit claims nothing; the targets stay pending for later.
            if self.inner.capacity.node_full() {
                return;
            }
            match store::claim(&self.inner.db, campaign, &self.inner.owner, limits).await {
                Ok(Ok(claimed)) => {
                    self.inner
                        .active
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(claimed.target);
                    let dialler = self.clone();
                    tokio::spawn(async move { dialler.place(claimed).await });
                }
                Ok(Err(NoClaim::Paused(reason))) => {
                    tracing::warn!(campaign_id = campaign, %reason, "dialler: campaign paused");
                    return;
                }
                Ok(Err(NoClaim::Wait | NoClaim::OutOfHours)) => return,
                Err(error) => {
                    tracing::warn!(campaign_id = campaign, %error, "dialler: claim failed");
                    return;
                }
            }
        }
    }

    /// Places one claimed attempt and records its outcome.
    #[tracing::instrument(skip_all, fields(campaign_id = c.campaign, target_id = c.target, attempt = c.attempt, call_id = c.call))]
    async fn place(self, c: Claimed) {
        let outcome = self.dial_and_watch(&c).await;
        tracing::info!(outcome = outcome.as_str(), "outbound attempt ended");
        match store::finish_attempt(&self.inner.db, c.target, c.attempt, outcome).await {
            Ok(_) => {}
            // The lease lapses and another process closes the attempt.
            Err(error) => tracing::warn!(%error, "dialler: cannot record the outcome"),
        }
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.target);
    }

    async fn dial_and_watch(&self, c: &Claimed) -> Outcome {
        let db = &self.inner.db;
        let expires_at = chrono::Utc::now().timestamp() + TOKEN_TTL_SECS;
        let token = self.inner.tokens.issue(StreamClaims {
            call: CallId(c.call),
            tenant: c.tenant,
            agent: c.agent,
            expires_at,
        });
        let base = self
            .inner
            .public_url
            .strip_prefix("http")
            .unwrap_or(&self.inner.public_url);
        let dial = Dial {
            call_id: c.call,
            to: c.to.clone(),
            from: c.from.clone(),
            stream_url: format!("ws{base}/media/{}", MediaCarrier::Twilio.as_str()),
            token,
            status_callback: format!(
                "{}/carrier/{}/status?call_id={}",
                self.inner.public_url,
                self.inner.carrier.name(),
                c.call
            ),
            ring_timeout_secs: self.inner.settings.ring_timeout_secs,
            detect_machine: true,
        };
        let placed = match self.inner.carrier.dial(dial).await {
            Ok(placed) => placed,
            Err(error) => {
                tracing::warn!(%error, "the carrier refused the call");
                let _ = store::fail_unconnected(db, c.call, "carrier-error").await;
                return Outcome::Failed;
            }
        };
        if let Err(error) = store::set_carrier_call_id(db, c.call, &placed.carrier_call_id).await {
            tracing::warn!(%error, "cannot record the carrier's call id");
        }
        let deadline = Instant::now()
            + Duration::from_secs(
                u64::from(self.inner.settings.ring_timeout_secs)
                    + self.inner.settings.max_call_secs,
            );
        let mut ticker = tokio::time::interval(WATCH);
        loop {
            ticker.tick().await;
            match store::call_state(db, c.call).await {
                Ok((status, disposition, answered_by)) => {
                    if let Some(outcome) =
                        store::outcome_of(&status, disposition.as_deref(), answered_by.as_deref())
                    {
                        return outcome;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the call"),
            }
            if Instant::now() >= deadline {
                tracing::warn!("the call outlasted its limit; hanging up");
                let _ = self.inner.carrier.hang_up(&placed.carrier_call_id).await;
                let _ = store::fail_unconnected(db, c.call, "timeout").await;
                return Outcome::Failed;
            }
        }
    }
}
