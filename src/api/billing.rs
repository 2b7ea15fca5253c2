//! Billing over the API: the current period's usage, the plans on offer, and hosted checkout
//! for a plan or a wallet top-up (owners only). Outside `/api`, without a bearer token: the
//! built-in checkout page (its URL's token is the credential) and Stripe's webhook (its
//! signature is).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::SecondsFormat;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, Fields, JsonBody, Optional};
use super::{AppState, JsonResult};
use crate::billing::{
    BillingError, Plan, Purchase, TOP_UP_MAX_CENTS, TOP_UP_MIN_CENTS, builtin, shown_minutes,
};
use crate::domain::Role;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(plans))
        .routes(routes!(subscribe))
        .routes(routes!(top_up))
}

/// The checkout page and Stripe's webhook, outside `/api`.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkout_page, confirm_checkout))
        .routes(routes!(stripe_webhook))
}

/// The current billing period's usage and what is left.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// `starter`, `pro` or `enterprise`; null while on the trial.
    pub plan: Option<String>,
    /// Billed minutes this period (each call rounded up to the second), shown rounded up to
    /// one decimal.
    pub minutes_used: f64,
    /// Billed seconds this period, exactly.
    pub seconds_used: i64,
    /// The plan's minutes included each period (0 without a plan).
    pub included_minutes: i64,
    /// Included minutes left this period, rounded up to one decimal.
    pub included_minutes_remaining: f64,
    /// May be negative: calls in progress are never cut, and their overage is charged when
    /// they end.
    pub wallet_balance_cents: i64,
    /// Lifetime trial minutes left, rounded up to one decimal.
    pub trial_minutes_remaining: f64,
    pub trial_seconds_remaining: i64,
    /// What the wallet pays a minute past the trial and the included minutes.
    pub overage_cents_per_minute: i64,
    pub currency: String,
    /// The period: a calendar month in UTC (RFC 3339; the end is exclusive).
    pub period_start: String,
    pub period_end: String,
    /// Whether new calls are accepted: while trial, included minutes or wallet are left.
    pub calls_allowed: bool,
    /// Why new calls are refused, when they are.
    pub blocked_reason: Option<String>,
}

/// Usage in the current period: minutes used, included minutes, wallet and trial left, and
/// whether new calls are accepted.
#[utoipa::path(
    get, path = "/api/billing/usage", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = UsageView), (status = 403, body = ErrorBody))
)]
async fn usage(State(state): State<AppState>, auth: Auth) -> JsonResult<UsageView> {
    let tenant = auth.tenant()?;
    let usage = state.billing.usage(&state.db, tenant).await?;
    let rfc3339 = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(Json(UsageView {
        plan: usage.plan.map(|p| p.as_str().to_owned()),
        minutes_used: shown_minutes(usage.seconds_used),
        seconds_used: usage.seconds_used,
        included_minutes: usage.included_seconds / 60,
        included_minutes_remaining: shown_minutes(usage.included_remaining_seconds),
        wallet_balance_cents: usage.wallet_cents,
        trial_minutes_remaining: shown_minutes(usage.trial_seconds_remaining),
        trial_seconds_remaining: usage.trial_seconds_remaining,
        overage_cents_per_minute: usage.overage_cents_per_minute,
        currency: state.billing.currency().to_owned(),
        period_start: rfc3339(usage.period.start),
        period_end: rfc3339(usage.period.end),
        calls_allowed: usage.blocked.is_none(),
        blocked_reason: usage.blocked.map(|b| b.to_string()),
    }))
}

/// A plan on offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub plan: String,
    pub included_minutes: u32,
    /// The monthly price.
    pub price_cents: u32,
    pub overage_cents_per_minute: u32,
    pub currency: String,
}

/// The plans on offer and their terms (from the engine's configuration).
#[utoipa::path(
    get, path = "/api/billing/plans", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = Vec<PlanView>), (status = 403, body = ErrorBody))
)]
async fn plans(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<PlanView>> {
    auth.tenant()?;
    let billing = &state.billing;
    Ok(Json(
        Plan::ALL
            .into_iter()
            .map(|plan| {
                let terms = billing.terms(plan);
                PlanView {
                    plan: plan.as_str().to_owned(),
                    included_minutes: terms.included_minutes,
                    price_cents: terms.price_cents,
                    overage_cents_per_minute: terms.overage_cents_per_minute,
                    currency: billing.currency().to_owned(),
                }
            })
            .collect(),
    ))
}

/// Where to send the buyer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutUrl {
    /// The hosted checkout page.
    pub url: String,
}

#[allow(dead_code)] // Documentation of the request bodies; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct SubscribeRequest {
        /// `starter`, `pro` or `enterprise`.
        pub plan: String,
    }

    #[derive(ToSchema)]
    pub struct TopUpRequest {
        /// 500 to 100000 (5.00 to 1,000.00 in the engine's currency).
        pub amount_cents: i64,
    }
}

/// Opens a hosted checkout for a plan (owners only): redirect the user to `url`. Completing it
/// activates the plan.
#[utoipa::path(
    post, path = "/api/billing/subscribe", tag = "billing", security(("bearer" = [])),
    request_body = docs::SubscribeRequest,
    responses(
        (status = 200, body = CheckoutUrl),
        (status = 403, description = "Only owners buy", body = ErrorBody),
        (status = 422, description = "Unknown plan", body = ErrorBody),
        (status = 502, description = "The payment provider refused or could not be reached", body = ErrorBody),
    )
)]
async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> JsonResult<CheckoutUrl> {
    let tenant = auth.require(Role::Owner)?;
    let mut fields = Fields::new(&body);
    let plan = fields.required_string("plan", 32).and_then(|raw| {
        fields.check(
            "plan",
            Plan::parse(&raw).ok_or("must be one of starter, pro, enterprise"),
        )
    });
    let plan = fields.finish_with(plan)?;
    let url = state
        .billing
        .checkout(&state.db, tenant, Purchase::Plan(plan))
        .await?;
    Ok(Json(CheckoutUrl { url }))
}

/// Opens a hosted checkout that adds `amount_cents` to the wallet (owners only).
#[utoipa::path(
    post, path = "/api/billing/top-up", tag = "billing", security(("bearer" = [])),
    request_body = docs::TopUpRequest,
    responses(
        (status = 200, body = CheckoutUrl),
        (status = 403, description = "Only owners buy", body = ErrorBody),
        (status = 422, description = "The amount is missing or out of range", body = ErrorBody),
        (status = 502, description = "The payment provider refused or could not be reached", body = ErrorBody),
    )
)]
async fn top_up(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> JsonResult<CheckoutUrl> {
    let tenant = auth.require(Role::Owner)?;
    let mut fields = Fields::new(&body);
    let amount = match fields.optional_int("amount_cents", TOP_UP_MIN_CENTS, TOP_UP_MAX_CENTS) {
        Optional::Value(amount) => Some(amount),
        Optional::Null => {
            fields.error("amount_cents", "is required");
            None
        }
        // Present but invalid: already reported.
        Optional::Absent => {
            if !fields.is_present("amount_cents") {
                fields.error("amount_cents", "is required");
            }
            None
        }
    };
    let amount_cents = fields.finish_with(amount)?;
    let url = state
        .billing
        .checkout(&state.db, tenant, Purchase::TopUp { amount_cents })
        .await?;
    Ok(Json(CheckoutUrl { url }))
}

fn html(status: StatusCode, page: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

fn missing(error: BillingError) -> Result<Response, ApiError> {
    match error {
        BillingError::CheckoutNotFound => Ok(html(
            StatusCode::NOT_FOUND,
            builtin::not_found("This checkout link is not valid"),
        )),
        BillingError::CheckoutExpired => Ok(html(
            StatusCode::NOT_FOUND,
            builtin::not_found("This checkout link has expired"),
        )),
        other => Err(other.into()),
    }
}

/// The checkout page of a session: what it buys, and (built-in provider) a Confirm button.
#[utoipa::path(
    get, path = "/billing/checkout/{token}", tag = "billing",
    params(("token" = String, Path, description = "The session's token, from the checkout URL")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html"),
        (status = 404, description = "Unknown or expired (after 24 hours) session: HTML page", content_type = "text/html"),
    )
)]
async fn checkout_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    match state.billing.session(&state.db, &token).await {
        Ok(row) => Ok(html(StatusCode::OK, builtin::page(&row))),
        Err(error) => missing(error),
    }
}

/// Confirms a built-in checkout session: activates its plan or credits the wallet, once (a
/// second confirmation changes nothing). Answers 303 to the page, which shows the result.
#[utoipa::path(
    post, path = "/billing/checkout/{token}", tag = "billing",
    params(("token" = String, Path, description = "The session's token, from the checkout URL")),
    responses(
        (status = 303, description = "Confirmed (now or before): see the page"),
        (status = 404, description = "Unknown or expired session, or one another provider completes: HTML page", content_type = "text/html"),
    )
)]
async fn confirm_checkout(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    match state.billing.confirm_builtin(&state.db, &token).await {
        Ok(_) => {
            let page = state.billing.page_url(&token);
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, page)]).into_response())
        }
        Err(error) => missing(error),
    }
}

/// What the webhook did with an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// `completed`, `already_completed`, `expired`, `renewed`, `ended`, `recorded` (a
    /// subscription whose checkout is not reported yet), `stale` (older than the subscription's
    /// state), `duplicate` (an event id seen before) or `ignored`.
    pub result: String,
}

/// Stripe's webhook: `checkout.session.completed` (and `async_payment_succeeded`) activate the
/// plan or credit the wallet of the session it names, once; `checkout.session.expired` closes
/// it; `invoice.paid` renews a subscription's plan for the period paid for;
/// `invoice.payment_failed` and `customer.subscription.deleted` end it. Each event id is
/// applied once, and an event older than its subscription's state changes nothing; other
/// events are acknowledged and ignored.
#[utoipa::path(
    post, path = "/billing/stripe/webhook", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "A Stripe event, signed in Stripe-Signature"),
    responses(
        (status = 200, body = WebhookReceipt),
        (status = 400, description = "Missing or wrong Stripe-Signature (or a timestamp over 5 minutes off), or not an event", body = ErrorBody),
        (status = 404, description = "Stripe webhooks are not configured", body = ErrorBody),
    )
)]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> JsonResult<WebhookReceipt> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = match state
        .billing
        .stripe_event(&state.db, signature, &body)
        .await
    {
        Ok(outcome) => outcome,
        Err(error @ BillingError::BadSignature(_)) => {
            tracing::warn!(%error, "stripe webhook refused");
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    let result = outcome.as_str();
    Ok(Json(WebhookReceipt {
        received: true,
        result: result.into(),
    }))
}
