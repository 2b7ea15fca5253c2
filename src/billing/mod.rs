//! Billing: plans, the trial, usage metering, the wallet, and hosted checkout.
//!
//! Metering. A call is billed when it ends, in the transaction that ends it
//! ([`crate::store::calls::finish`] → [`crate::store::billing::meter_in`]): its connected
//! duration rounded up to the whole second ([`billed_seconds`]) is paid for, in order, from the
//! business's lifetime trial seconds, then the included seconds its plan has left in the current
//! period (a calendar month in UTC, [`Period`]), then the wallet at the plan's overage rate,
//! rounded up to the cent per call ([`Balance::split`]). A business without a plan pays past its
//! trial from the wallet at the pay-as-you-go rate (the starter plan's overage rate). The wallet
//! may go below zero, but not for long: a live call checks [`seconds_left`] every
//! `balance_check_secs`, and once nothing is left it goes on for `grace_secs`, then the agent
//! says goodbye and hangs up ([`crate::media::session`]).
//!
//! Enforcement. A business may start a call while any of the three is left
//! ([`Balance::gate`]) and it has fewer calls connecting or in progress than its plan allows
//! ([`CallCaps`]); both are asked in the transaction that hands out a call (inbound and test
//! calls, [`crate::store::calls::insert_admitted`]) and in the dialler's claim (outbound).
//!
//! Checkout. [`Billing::checkout`] asks the configured [`provider::PaymentProvider`] for a hosted
//! page (the engine's own [`builtin`] page, or [`stripe`] Checkout) and records the session with
//! the terms on offer; completing it (the built-in page's confirmation, or Stripe's signed
//! `checkout.session.completed`) activates the plan or credits the wallet exactly once.
//!
//! Stripe subscriptions. A subscription checkout records Stripe's subscription and customer ids
//! with the business; then `invoice.paid` renews the plan for the period its invoice lines name
//! (the included minutes start again: usage is counted in that period, [`Period::current`]),
//! and `invoice.payment_failed` or `customer.subscription.deleted` end it (calls fall back to
//! the wallet at the pay-as-you-go rate). Every event is applied once by its id, and a
//! subscription's events are ordered by their `created` time: an older one never overrides a
//! newer state.
//!
//! The trial is one per account: the first business a user creates gets it
//! ([`crate::store::billing::grant_trial`]).
//!
//! Everything here but [`Billing`]'s methods is arithmetic without I/O; the store uses it inside
//! its transactions.

pub mod builtin;
pub mod provider;
pub mod stripe;

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use secrecy::ExposeSecret;

use crate::accounts::token_hash;
use crate::config::{BillingSettings, PaymentProviderChoice, PlanTerms};
use crate::domain::TenantId;
use crate::store::billing::{self as store, CheckoutRow, NewCheckout};
use crate::store::{Db, StoreError, StoreResult, stamp};
use provider::{Order, PaymentProvider, ProviderError, ProviderKind};

/// How long a checkout session can be completed.
pub const CHECKOUT_TTL: chrono::Duration = chrono::Duration::hours(24);

/// Smallest and largest wallet top-up, in cents.
pub const TOP_UP_MIN_CENTS: i64 = 500;
pub const TOP_UP_MAX_CENTS: i64 = 100_000;

/// The plans on offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    Starter,
    Pro,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Starter, Plan::Pro, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    /// For people: `Starter`, `Pro`, `Enterprise`.
    pub fn title(self) -> &'static str {
        match self {
            Plan::Starter => "Starter",
            Plan::Pro => "Pro",
            Plan::Enterprise => "Enterprise",
        }
    }

    pub fn parse(raw: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

/// A billing period: a calendar month in UTC, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The month `at` falls in.
    pub fn containing(at: DateTime<Utc>) -> Period {
        let month_start = |year: i32, month: u32| {
            Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
                .single()
                .expect("the first of a month at midnight UTC exists")
        };
        let start = month_start(at.year(), at.month());
        let end = if at.month() == 12 {
            month_start(at.year() + 1, 1)
        } else {
            month_start(at.year(), at.month() + 1)
        };
        Period { start, end }
    }

    /// The period usage counts in at `at`: the plan's billing period once Stripe has reported
    /// one (kept past its end until the next paid invoice replaces it, so a late renewal never
    /// hands out a fresh allowance early, nor a calendar month in between), else the calendar
    /// month.
    pub fn current(at: DateTime<Utc>, plan: Option<Period>) -> Period {
        plan.unwrap_or_else(|| Period::containing(at))
    }

    /// The period as usage records name it: its start, RFC 3339 with milliseconds.
    pub fn key(&self) -> String {
        stamp(self.start)
    }
}

/// The seconds a call is billed for: its connected duration rounded up to the whole second.
pub fn billed_seconds(duration_ms: i64) -> i64 {
    if duration_ms <= 0 {
        0
    } else {
        (duration_ms + 999) / 1000
    }
}

/// Seconds as minutes for display: rounded up to the next tenth of a minute.
pub fn shown_minutes(seconds: i64) -> f64 {
    let tenths = (seconds.max(0) * 10 + 59) / 60;
    tenths as f64 / 10.0
}

/// What `seconds` of overage cost at `cents_per_minute`, rounded up to the cent.
pub fn overage_cents(seconds: i64, cents_per_minute: i64) -> i64 {
    (seconds.max(0) * cents_per_minute.max(0) + 59) / 60
}

/// What a new business starts with: its trial, and the rate its wallet pays past the trial
/// before it has a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialGrant {
    pub seconds: i64,
    pub overage_cents_per_minute: i64,
}

/// A business's billing state in one period, as metering and enforcement read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub plan: Option<Plan>,
    /// Lifetime trial seconds left.
    pub trial_seconds: i64,
    /// The plan's included seconds a period (0 without a plan).
    pub included_seconds: i64,
    /// Included seconds already used this period.
    pub included_used_seconds: i64,
    pub wallet_cents: i64,
    /// What the wallet pays a minute past the trial and the included seconds.
    pub overage_cents_per_minute: i64,
}

/// How one call's billed seconds were paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub seconds: i64,
    pub trial_seconds: i64,
    pub included_seconds: i64,
    pub overage_seconds: i64,
    /// Charged to the wallet for the overage.
    pub wallet_cents: i64,
}

/// Why new calls are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error(
        "the trial minutes are used up and the wallet is empty: subscribe to a plan or top up \
         the wallet"
    )]
    TrialUsedUp,
    #[error(
        "the {} plan's included minutes for this period are used up and the wallet is empty: \
         top up the wallet or change plan", .0.as_str()
    )]
    IncludedUsedUp(Plan),
}

impl Balance {
    /// Included seconds left this period.
    pub fn included_remaining(&self) -> i64 {
        match self.plan {
            Some(_) => (self.included_seconds - self.included_used_seconds).max(0),
            None => 0,
        }
    }

    /// Pays for a call of `seconds`: trial first, then the plan's included seconds, then the
    /// wallet at the overage rate.
    pub fn split(&self, seconds: i64) -> Split {
        let seconds = seconds.max(0);
        let trial_seconds = seconds.min(self.trial_seconds.max(0));
        let included_seconds = (seconds - trial_seconds).min(self.included_remaining());
        let overage_seconds = seconds - trial_seconds - included_seconds;
        Split {
            seconds,
            trial_seconds,
            included_seconds,
            overage_seconds,
            wallet_cents: overage_cents(overage_seconds, self.overage_cents_per_minute),
        }
    }

    /// Whether a new call may start: while trial, included seconds or wallet are left.
    pub fn gate(&self) -> Result<(), Blocked> {
        if self.trial_seconds > 0 || self.included_remaining() > 0 || self.wallet_cents > 0 {
            return Ok(());
        }
        Err(match self.plan {
            Some(plan) => Blocked::IncludedUsedUp(plan),
            None => Blocked::TrialUsedUp,
        })
    }
}

/// How many calls a business may have connecting or in progress at once, by plan (from
/// `[billing]`: `trial_max_concurrent_calls` and each plan's `max_concurrent_calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCaps {
    pub trial: u32,
    pub starter: u32,
    pub pro: u32,
    pub enterprise: u32,
}

impl CallCaps {
    pub fn from_settings(settings: &BillingSettings) -> Self {
        let builtin = crate::config::Plans::default();
        let cap = |terms: PlanTerms, builtin: PlanTerms| {
            terms
                .max_concurrent_calls
                .or(builtin.max_concurrent_calls)
                .unwrap_or(1)
        };
        let plans = &settings.plans;
        CallCaps {
            trial: settings.trial_max_concurrent_calls,
            starter: cap(plans.starter, builtin.starter),
            pro: cap(plans.pro, builtin.pro),
            enterprise: cap(plans.enterprise, builtin.enterprise),
        }
    }

    /// The limit of a business on `plan` (`None`: the trial, or pay-as-you-go).
    pub fn for_plan(&self, plan: Option<Plan>) -> i64 {
        i64::from(match plan {
            None => self.trial,
            Some(Plan::Starter) => self.starter,
            Some(Plan::Pro) => self.pro,
            Some(Plan::Enterprise) => self.enterprise,
        })
    }
}

/// Seconds of calls a business can still pay for: its trial, its plan's included seconds left,
/// and what its wallet buys at its overage rate.
pub fn payable_seconds(balance: &Balance) -> i64 {
    let wallet = if balance.wallet_cents > 0 && balance.overage_cents_per_minute > 0 {
        balance.wallet_cents * 60 / balance.overage_cents_per_minute
    } else {
        0
    };
    balance.trial_seconds.max(0) + balance.included_remaining() + wallet
}

/// Seconds of calls the business can still pay for, less what its calls in progress (on every
/// process) have used so far; zero or less: its calls are running on credit.
pub async fn seconds_left(db: &Db, tenant: TenantId) -> StoreResult<i64> {
    let now = Utc::now();
    let period = Period::containing(now);
    let balance = store::balance(db, tenant, &period.key()).await?.balance();
    let running: i64 = crate::store::calls::in_progress_starts(db, tenant)
        .await?
        .iter()
        .filter_map(|started| DateTime::parse_from_rfc3339(started).ok())
        .map(|started| (now - started.with_timezone(&Utc)).num_seconds().max(0))
        .sum();
    Ok(payable_seconds(&balance) - running)
}

/// Whether `tenant` may start a new call now (one query).
pub async fn can_start_call(db: &Db, tenant: TenantId) -> StoreResult<Result<(), Blocked>> {
    let period = store::period(db.pool(), tenant, Utc::now()).await?;
    let row = store::balance(db, tenant, &period.key()).await?;
    Ok(row.balance().gate())
}

/// A business's usage in the current period.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub plan: Option<Plan>,
    pub period: Period,
    pub seconds_used: i64,
    pub included_seconds: i64,
    pub included_remaining_seconds: i64,
    pub trial_seconds_remaining: i64,
    pub wallet_cents: i64,
    pub overage_cents_per_minute: i64,
    pub blocked: Option<Blocked>,
}

/// What a checkout buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purchase {
    Plan(Plan),
    TopUp { amount_cents: i64 },
}

impl Purchase {
    pub fn kind(&self) -> &'static str {
        match self {
            Purchase::Plan(_) => "plan",
            Purchase::TopUp { .. } => "top_up",
        }
    }

    pub fn plan(&self) -> Option<Plan> {
        match self {
            Purchase::Plan(plan) => Some(*plan),
            Purchase::TopUp { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("no such checkout session")]
    CheckoutNotFound,
    #[error("the checkout session has expired")]
    CheckoutExpired,
    #[error("stripe webhooks are not configured")]
    StripeNotConfigured,
    #[error("invalid Stripe-Signature: {0}")]
    BadSignature(&'static str),
    #[error("unreadable event: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What completing a checkout session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The plan is active, or the wallet credited, now.
    Applied,
    /// It had already been completed: nothing changed.
    AlreadyCompleted,
}

/// What a Stripe webhook event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeOutcome {
    Completed(Completion),
    Expired,
    /// `invoice.paid`: the plan is active for the period paid for.
    Renewed,
    /// `invoice.payment_failed` or `customer.subscription.deleted`: the plan ended.
    Ended,
    /// A lifecycle event recorded for a subscription whose checkout has not been reported yet
    /// (it applies when it is), or whose business has another subscription now.
    Recorded,
    /// Older than the event that set the subscription's state: changes nothing.
    Stale,
    /// An event id seen before (a redelivery): changes nothing.
    Duplicate,
    /// Another event type, an unpaid session, or a session that is not ours.
    Ignored,
}

impl StripeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StripeOutcome::Completed(Completion::Applied) => "completed",
            StripeOutcome::Completed(Completion::AlreadyCompleted) => "already_completed",
            StripeOutcome::Expired => "expired",
            StripeOutcome::Renewed => "renewed",
            StripeOutcome::Ended => "ended",
            StripeOutcome::Recorded => "recorded",
            StripeOutcome::Stale => "stale",
            StripeOutcome::Duplicate => "duplicate",
            StripeOutcome::Ignored => "ignored",
        }
    }
}

/// The billing service: the configured plans and trial, and the payment provider.
#[derive(Clone)]
pub struct Billing {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BillingSettings,
    provider: Arc<dyn PaymentProvider>,
    /// The engine's externally reachable base URL, without a trailing slash.
    public_url: String,
}

impl Billing {
    pub fn new(settings: &BillingSettings, public_url: &str) -> Self {
        let provider: Arc<dyn PaymentProvider> = match settings.provider {
            PaymentProviderChoice::Builtin => Arc::new(builtin::Builtin),
            PaymentProviderChoice::Stripe => Arc::new(stripe::Stripe::new(settings)),
        };
        Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                provider,
                public_url: public_url.trim_end_matches('/').to_owned(),
            }),
        }
    }

    /// What a business gets when it is created (the trial only if its owner has not had it).
    pub fn trial(&self) -> TrialGrant {
        let settings = &self.inner.settings;
        TrialGrant {
            seconds: i64::from(settings.trial_minutes) * 60,
            overage_cents_per_minute: i64::from(settings.plans.starter.overage_cents_per_minute),
        }
    }

    pub fn terms(&self, plan: Plan) -> PlanTerms {
        let plans = &self.inner.settings.plans;
        match plan {
            Plan::Starter => plans.starter,
            Plan::Pro => plans.pro,
            Plan::Enterprise => plans.enterprise,
        }
    }

    /// How often a live call checks that its business can still pay ([`seconds_left`]).
    pub fn balance_check(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.inner.settings.balance_check_secs.max(1))
    }

    /// How long a call goes on once its business cannot pay, before the agent says goodbye.
    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.inner.settings.grace_secs)
    }

    pub fn currency(&self) -> &str {
        &self.inner.settings.currency
    }

    pub fn provider(&self) -> ProviderKind {
        self.inner.provider.kind()
    }

    /// The tenant's usage in the current period.
    pub async fn usage(&self, db: &Db, tenant: TenantId) -> StoreResult<Usage> {
        let period = store::period(db.pool(), tenant, Utc::now()).await?;
        let row = store::balance(db, tenant, &period.key()).await?;
        let balance = row.balance();
        Ok(Usage {
            plan: balance.plan,
            period,
            seconds_used: row.seconds_used,
            included_seconds: balance.included_seconds,
            included_remaining_seconds: balance.included_remaining(),
            trial_seconds_remaining: balance.trial_seconds.max(0),
            wallet_cents: balance.wallet_cents,
            overage_cents_per_minute: balance.overage_cents_per_minute,
            blocked: balance.gate().err(),
        })
    }

    /// The URL of a session's page on the engine (the built-in checkout; Stripe returns there).
    pub fn page_url(&self, token: &str) -> String {
        format!("{}/billing/checkout/{token}", self.inner.public_url)
    }

    /// Opens a hosted checkout for `purchase`; returns the URL to send the buyer to.
    pub async fn checkout(
        &self,
        db: &Db,
        tenant: TenantId,
        purchase: Purchase,
    ) -> Result<String, BillingError> {
        let trial = self.trial();
        let (amount_cents, included_seconds, overage_cents_per_minute) = match purchase {
            Purchase::Plan(plan) => {
                let terms = self.terms(plan);
                (
                    i64::from(terms.price_cents),
                    i64::from(terms.included_minutes) * 60,
                    i64::from(terms.overage_cents_per_minute),
                )
            }
            // The rate a wallet pays without a plan, should this top-up be the first money.
            Purchase::TopUp { amount_cents } => (amount_cents, 0, trial.overage_cents_per_minute),
        };
        let token = new_token();
        let page_url = self.page_url(&token);
        let hosted = self
            .inner
            .provider
            .create_checkout(&Order {
                token: &token,
                tenant,
                purchase,
                amount_cents,
                currency: self.currency(),
                return_url: &page_url,
            })
            .await?;
        let now = Utc::now();
        store::insert_checkout(
            db,
            tenant,
            &NewCheckout {
                kind: purchase.kind(),
                plan: purchase.plan().map(Plan::as_str),
                amount_cents,
                currency: self.currency(),
                included_seconds,
                overage_cents_per_minute,
                provider: self.provider().as_str(),
                provider_session_id: hosted.provider_session_id.as_deref(),
                token_hash: &token_hash(&token),
                // The built-in page's URL is the token, which is never stored.
                url: hosted
                    .provider_session_id
                    .as_ref()
                    .map(|_| hosted.url.as_str()),
                created_at: &stamp(now),
                expires_at: &stamp(now + CHECKOUT_TTL),
            },
        )
        .await?;
        tracing::info!(
            tenant_id = %tenant, kind = purchase.kind(), plan = purchase.plan().map(Plan::as_str),
            provider = self.provider().as_str(), "checkout session opened"
        );
        Ok(hosted.url)
    }

    /// The checkout session a page token names; expired built-in sessions are marked so and not
    /// found.
    pub async fn session(&self, db: &Db, token: &str) -> Result<CheckoutRow, BillingError> {
        let row = store::checkout_by_token(db, &token_hash(token))
            .await?
            .ok_or(BillingError::CheckoutNotFound)?;
        let expired = row.status == "expired"
            || (row.status == "open"
                && row.provider == ProviderKind::Builtin.as_str()
                && row.expires_at <= stamp(Utc::now()));
        if expired {
            store::expire_checkout(db, row.id).await?;
            return Err(BillingError::CheckoutExpired);
        }
        Ok(row)
    }

    /// Confirms a built-in checkout: activates its plan or credits the wallet, once. Stripe's
    /// sessions are completed only by Stripe's signed webhook.
    pub async fn confirm_builtin(&self, db: &Db, token: &str) -> Result<Completion, BillingError> {
        let row = self.session(db, token).await?;
        if row.provider != ProviderKind::Builtin.as_str() {
            return Err(BillingError::CheckoutNotFound);
        }
        complete(db, &row).await
    }

    /// Handles a Stripe webhook delivery: checks its signature, then, once per event id (in the
    /// transaction that records the id), completes or expires the checkout session it names or
    /// applies a subscription's lifecycle event unless a newer one already has.
    pub async fn stripe_event(
        &self,
        db: &Db,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<StripeOutcome, BillingError> {
        let secret = self
            .inner
            .settings
            .stripe
            .webhook_secret
            .as_ref()
            .ok_or(BillingError::StripeNotConfigured)?;
        let signature = signature.ok_or(BillingError::BadSignature("missing"))?;
        stripe::verify_signature(
            secret.expose_secret(),
            signature,
            body,
            Utc::now().timestamp(),
        )
        .map_err(BillingError::BadSignature)?;
        let event = stripe::Event::parse(body).map_err(BillingError::BadEvent)?;
        let change = event
            .subscription_change()
            .map_err(BillingError::BadEvent)?;
        let session = match event.checkout_session() {
            Some(session) => self.our_session(db, &event, session).await?,
            None => None,
        };
        let mut tx = db.begin_write().await?;
        let created = event.created.unwrap_or_else(|| Utc::now().timestamp());
        if !store::record_stripe_event(&mut tx, &event.id, &event.kind, created).await? {
            tracing::info!(event_id = %event.id, event = %event.kind, "stripe event already processed");
            return Ok(StripeOutcome::Duplicate);
        }
        let outcome = if let Some(change) = change {
            self.subscription_event(&mut tx, &change).await?
        } else if let Some((row, session)) = session {
            match event.kind.as_str() {
                stripe::SESSION_COMPLETED | stripe::ASYNC_PAYMENT_SUCCEEDED
                    if session.is_paid() =>
                {
                    let applied = store::complete_checkout_in(&mut tx, row.id).await?;
                    if applied && let Some(subscription) = &session.subscription {
                        let tenant = TenantId(row.tenant_id);
                        store::attach_subscription(
                            &mut tx,
                            subscription,
                            session.customer.as_deref(),
                            tenant,
                            created,
                        )
                        .await?;
                        store::sync_plan(
                            &mut tx,
                            subscription,
                            self.trial().overage_cents_per_minute,
                        )
                        .await?;
                    }
                    StripeOutcome::Completed(if applied {
                        Completion::Applied
                    } else {
                        Completion::AlreadyCompleted
                    })
                }
                stripe::SESSION_EXPIRED => {
                    store::expire_checkout_in(&mut tx, row.id).await?;
                    StripeOutcome::Expired
                }
                _ => StripeOutcome::Ignored,
            }
        } else {
            StripeOutcome::Ignored
        };
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(
            event_id = %event.id, event = %event.kind, result = outcome.as_str(),
            "stripe event processed"
        );
        Ok(outcome)
    }

    /// The checkout row a Checkout Session event is about, if the session is one of ours: its
    /// reference is a token we issued and its id the one Stripe gave us for it.
    async fn our_session(
        &self,
        db: &Db,
        event: &stripe::Event,
        session: stripe::SessionObject,
    ) -> Result<Option<(CheckoutRow, stripe::SessionObject)>, BillingError> {
        let Some(reference) = session.client_reference_id.as_deref() else {
            return Ok(None);
        };
        let row = store::checkout_by_token(db, &token_hash(reference)).await?;
        let row = row.filter(|row| {
            row.provider == ProviderKind::Stripe.as_str()
                && row.provider_session_id.as_deref() == Some(session.id.as_str())
        });
        if row.is_none() {
            tracing::info!(event = %event.kind, "stripe event for a checkout session that is not ours");
        }
        Ok(row.map(|row| (row, session)))
    }

    /// Applies `invoice.paid`, `invoice.payment_failed` or `customer.subscription.deleted`.
    async fn subscription_event(
        &self,
        tx: &mut crate::store::Tx,
        change: &stripe::SubscriptionChange,
    ) -> Result<StripeOutcome, BillingError> {
        let period = match change.state {
            stripe::SubscriptionState::Paid { start, end } => {
                let instant = |t: i64| {
                    DateTime::from_timestamp(t, 0).map(stamp).ok_or_else(|| {
                        BillingError::BadEvent(format!("period bound {t} is out of range"))
                    })
                };
                Some((instant(start)?, instant(end)?))
            }
            stripe::SubscriptionState::Ended => None,
        };
        let state = store::SubscriptionState {
            customer: change.customer.as_deref(),
            status: if period.is_some() { "active" } else { "ended" },
            period: period.as_ref().map(|(s, e)| (s.as_str(), e.as_str())),
            created: change.created,
        };
        if !store::set_subscription_state(tx, &change.subscription, state).await? {
            tracing::info!(subscription = %change.subscription, "stale stripe event ignored");
            return Ok(StripeOutcome::Stale);
        }
        let synced = store::sync_plan(
            tx,
            &change.subscription,
            self.trial().overage_cents_per_minute,
        )
        .await?;
        Ok(match synced {
            store::PlanSync::Active => StripeOutcome::Renewed,
            store::PlanSync::Ended => StripeOutcome::Ended,
            store::PlanSync::Unattached | store::PlanSync::Superseded => StripeOutcome::Recorded,
        })
    }
}

async fn complete(db: &Db, row: &CheckoutRow) -> Result<Completion, BillingError> {
    let applied = store::complete_checkout(db, row.id).await?;
    if applied {
        tracing::info!(
            tenant_id = row.tenant_id, checkout_id = row.id, kind = %row.kind,
            plan = row.plan.as_deref(), amount_cents = row.amount_cents, "checkout completed"
        );
        Ok(Completion::Applied)
    } else {
        Ok(Completion::AlreadyCompleted)
    }
}

/// A checkout token: 256 random bits in hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// An amount for people: `49.00 USD`.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        cents / 100,
        cents % 100,
        currency.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calls_are_billed_by_the_second_rounded_up() {
        assert_eq!(billed_seconds(0), 0);
        assert_eq!(billed_seconds(-5), 0);
        assert_eq!(billed_seconds(1), 1);
        assert_eq!(billed_seconds(999), 1);
        assert_eq!(billed_seconds(1_000), 1);
        assert_eq!(billed_seconds(1_001), 2);
        assert_eq!(billed_seconds(61_500), 62);
    }

    #[test]
    fn minutes_are_shown_rounded_up_to_a_tenth() {
        assert_eq!(shown_minutes(0), 0.0);
        assert_eq!(shown_minutes(1), 0.1);
        assert_eq!(shown_minutes(6), 0.1);
        assert_eq!(shown_minutes(7), 0.2);
        assert_eq!(shown_minutes(60), 1.0);
        assert_eq!(shown_minutes(61), 1.1);
        assert_eq!(shown_minutes(207), 3.5);
        assert_eq!(shown_minutes(87 * 60), 87.0);
    }

    #[test]
    fn overage_is_rounded_up_to_the_cent() {
        assert_eq!(overage_cents(0, 12), 0);
        assert_eq!(overage_cents(1, 12), 1);
        assert_eq!(overage_cents(5, 12), 1);
        assert_eq!(overage_cents(26, 12), 6);
        assert_eq!(overage_cents(60, 15), 15);
        assert_eq!(overage_cents(61, 15), 16);
    }

    #[test]
    fn a_subscriptions_period_replaces_the_calendar_month_until_the_next_one() {
        let now = at("2025-03-15T10:00:00Z");
        assert_eq!(Period::current(now, None), Period::containing(now));
        let paid = Period {
            start: at("2025-03-10T08:00:00Z"),
            end: at("2025-04-10T08:00:00Z"),
        };
        assert_eq!(Period::current(now, Some(paid)), paid);
        // Past its end, until Stripe reports the next paid invoice: still the same period.
        assert_eq!(
            Period::current(at("2025-04-10T09:00:00Z"), Some(paid)),
            paid
        );
    }

    #[test]
    fn periods_are_calendar_months_in_utc() {
        let p = Period::containing(at("2025-03-15T10:00:00Z"));
        assert_eq!(p.start, at("2025-03-01T00:00:00Z"));
        assert_eq!(p.end, at("2025-04-01T00:00:00Z"));
        assert_eq!(p.key(), "2025-03-01T00:00:00.000Z");
        let december = Period::containing(at("2024-12-31T23:59:59.999Z"));
        assert_eq!(december.start, at("2024-12-01T00:00:00Z"));
        assert_eq!(december.end, at("2025-01-01T00:00:00Z"));
        let first_instant = Period::containing(at("2025-01-01T00:00:00Z"));
        assert_eq!(first_instant.start, at("2025-01-01T00:00:00Z"));
        // 9 am on 1 March in Sydney is still February in UTC, and February is what counts.
        let leap = Period::containing(at("2024-03-01T09:00:00+11:00"));
        assert_eq!(leap.start, at("2024-02-01T00:00:00Z"));
        assert_eq!(leap.end, at("2024-03-01T00:00:00Z"));
    }

    fn balance(plan: Option<Plan>, trial: i64, included: i64, used: i64, wallet: i64) -> Balance {
        Balance {
            plan,
            trial_seconds: trial,
            included_seconds: included,
            included_used_seconds: used,
            wallet_cents: wallet,
            overage_cents_per_minute: 12,
        }
    }

    #[test]
    fn calls_are_paid_from_trial_then_included_then_wallet() {
        let b = balance(Some(Plan::Pro), 14, 120, 0, 500);
        assert_eq!(
            b.split(100),
            Split {
                seconds: 100,
                trial_seconds: 14,
                included_seconds: 86,
                overage_seconds: 0,
                wallet_cents: 0
            }
        );
        let b = balance(Some(Plan::Pro), 0, 120, 86, 500);
        assert_eq!(
            b.split(60),
            Split {
                seconds: 60,
                trial_seconds: 0,
                included_seconds: 34,
                overage_seconds: 26,
                wallet_cents: 6
            }
        );
        // Included seconds used beyond the allowance (a plan changed mid-period) count as none.
        let b = balance(Some(Plan::Starter), 0, 60, 90, 0);
        assert_eq!(b.included_remaining(), 0);
        assert_eq!(b.split(10).overage_seconds, 10);
        // Without a plan nothing is included, even if a snapshot says otherwise.
        let b = balance(None, 30, 6_000, 0, 100);
        assert_eq!(
            b.split(45),
            Split {
                seconds: 45,
                trial_seconds: 30,
                included_seconds: 0,
                overage_seconds: 15,
                wallet_cents: 3
            }
        );
        assert_eq!(b.split(0), Split::default());
    }

    #[test]
    fn new_calls_are_refused_only_when_trial_included_and_wallet_are_all_gone() {
        assert_eq!(balance(None, 1, 0, 0, 0).gate(), Ok(()));
        assert_eq!(balance(None, 0, 0, 0, 1).gate(), Ok(()));
        assert_eq!(balance(Some(Plan::Pro), 0, 60, 59, 0).gate(), Ok(()));
        assert_eq!(balance(None, 0, 0, 0, 0).gate(), Err(Blocked::TrialUsedUp));
        assert_eq!(
            balance(None, 0, 0, 0, -40).gate(),
            Err(Blocked::TrialUsedUp)
        );
        assert_eq!(
            balance(Some(Plan::Pro), 0, 60, 60, 0).gate(),
            Err(Blocked::IncludedUsedUp(Plan::Pro))
        );
        assert!(
            Blocked::IncludedUsedUp(Plan::Pro)
                .to_string()
                .contains("pro plan's included minutes")
        );
    }

    #[test]
    fn payable_seconds_count_trial_included_and_what_the_wallet_buys() {
        // 30 s of trial, 60 of 120 included left, 30 cents at 12 cents a minute (150 s).
        let b = balance(Some(Plan::Starter), 30, 120, 60, 30);
        assert_eq!(payable_seconds(&b), 30 + 60 + 150);
        assert_eq!(payable_seconds(&balance(None, 0, 0, 0, 0)), 0);
        assert_eq!(payable_seconds(&balance(None, 0, 0, 0, -50)), 0);
    }

    #[test]
    fn concurrent_call_limits_follow_the_plan() {
        let caps = CallCaps::from_settings(&BillingSettings::default());
        assert_eq!(caps.for_plan(None), 2);
        assert_eq!(caps.for_plan(Some(Plan::Starter)), 5);
        assert_eq!(caps.for_plan(Some(Plan::Pro)), 20);
        assert_eq!(caps.for_plan(Some(Plan::Enterprise)), 100);
    }

    #[test]
    fn money_is_shown_with_its_currency() {
        assert_eq!(money(4_900, "usd"), "49.00 USD");
        assert_eq!(money(5, "eur"), "0.05 EUR");
        assert_eq!(money(-120, "usd"), "-1.20 USD");
    }

    #[test]
    fn tokens_are_256_bits_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
