//! Webhook endpoints: registration (the signing secret is shown once), updates, secret rotation,
//! a signed test ping, the delivery log and redelivery. Owners and admins only; these routes
//! have their own, stricter per-token rate limit on top of the general one.

use axum::Json;
use axum::extract::{FromRequestParts, OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::calls::{PageMeta, paging};
use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{Auth, Fields, JsonBody, Optional, parse_id, query_value};
use super::ratelimit::Decision;
use super::{AppState, JsonResult};
use crate::domain::{Role, TenantId};
use crate::events::signature;
use crate::store::StoreError;
use crate::store::outbox::EVENT_TYPES;
use crate::store::webhooks::{self as store, AttemptRow, DeliveryRow, EndpointPatch, EndpointRow};

/// How long the secret before a rotation keeps signing.
const ROTATION_OVERLAP_HOURS: i64 = 24;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

/// An owner or admin of the business, charged against the webhook routes' own limit.
pub struct WebhookAdmin(pub TenantId);

impl FromRequestParts<AppState> for WebhookAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let auth = Auth::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Decision::Limited {
            limit,
            retry_after_secs,
        } = state.limiters.check_webhooks(auth.token_id)
        {
            let mut response = ApiError::RateLimited { retry_after_secs }.into_response();
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
            return Err(response);
        }
        auth.require(Role::Admin)
            .map(WebhookAdmin)
            .map_err(IntoResponse::into_response)
    }
}

/// A registered endpoint (its secret is shown only when created or rotated).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    /// The event types sent to it.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// The secret's last four characters, to tell secrets apart.
    pub secret_hint: String,
    /// While set and in the future, requests carry a second `v1` signed with the old secret.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<EndpointRow> for WebhookView {
    fn from(row: EndpointRow) -> Self {
        let now = crate::store::now();
        WebhookView {
            events: row.event_types(),
            secret_hint: format!(
                "whsec_…{}",
                &row.secret[row.secret.len().saturating_sub(4)..]
            ),
            previous_secret_expires_at: row.previous_secret_expires_at.filter(|t| *t > now),
            id: row.id,
            url: row.url,
            description: row.description,
            enabled: row.enabled != 0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// An endpoint with its signing secret: keep it, it is not shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

/// The outcome of a test ping.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub event_id: String,
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// One event's delivery to the endpoint, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered`, or `failed` (given up after the retry window).
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    pub attempt_log: Vec<AttemptRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    pub meta: PageMeta,
}

#[allow(dead_code)] // Documentation of request bodies; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct CreateWebhook {
        /// http:// or https://; not this engine.
        pub url: String,
        /// Any of call.started, call.ended, call.transcript_ready, booking.created,
        /// campaign.completed; default all.
        pub events: Option<Vec<String>>,
        pub description: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct UpdateWebhook {
        pub url: Option<String>,
        pub events: Option<Vec<String>>,
        pub description: Option<String>,
        /// A disabled endpoint gets no new events; its pending deliveries wait.
        pub enabled: Option<bool>,
    }
}

/// The `events` field: absent or null means every type; otherwise a non-empty list of known
/// types (duplicates dropped, in the canonical order).
fn event_list(fields: &mut Fields<'_>, body: &JsonBody) -> Optional<Vec<String>> {
    match body.0.get("events") {
        None => Optional::Absent,
        Some(Value::Null) => Optional::Null,
        Some(Value::Array(items)) => {
            let mut chosen = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(t) if EVENT_TYPES.contains(&t) => chosen.push(t),
                    _ => {
                        fields.error(
                            "events",
                            format!("each must be one of {}", EVENT_TYPES.join(", ")),
                        );
                        return Optional::Absent;
                    }
                }
            }
            if chosen.is_empty() {
                fields.error("events", "must name at least one event type");
                return Optional::Absent;
            }
            Optional::Value(
                EVENT_TYPES
                    .iter()
                    .filter(|t| chosen.contains(t))
                    .map(|t| (*t).to_owned())
                    .collect(),
            )
        }
        Some(_) => {
            fields.error("events", "must be a list of event types");
            Optional::Absent
        }
    }
}

fn all_events() -> Vec<String> {
    EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect()
}

async fn checked_url(
    state: &AppState,
    fields: &mut Fields<'_>,
    raw: Option<String>,
) -> Option<String> {
    let raw = raw?;
    match state.webhooks.check_url(&raw).await {
        Ok(url) => Some(url.to_string()),
        Err(message) => {
            fields.error("url", message);
            None
        }
    }
}

/// Registers an endpoint. The response holds its signing secret, shown this once.
#[utoipa::path(
    post, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = docs::CreateWebhook,
    responses(
        (status = 201, body = WebhookWithSecret),
        (status = 403, body = ErrorBody),
        (status = 422, description = "Not an http(s) URL, the engine itself, or unknown event types", body = ErrorBody),
    )
)]
async fn create_webhook(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    body: JsonBody,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    let mut fields = Fields::new(&body);
    let raw = fields.required_string("url", 2048);
    let events = event_list(&mut fields, &body).or(all_events());
    let description = fields.optional_string("description", 500).value();
    let url = checked_url(&state, &mut fields, raw).await;
    let url = fields.finish_with(url)?;
    let secret = signature::new_secret();
    let row = store::create_endpoint(
        &state.db,
        tenant,
        store::NewEndpoint {
            url: &url,
            events: &events,
            description: description.as_deref(),
            secret: &secret,
        },
    )
    .await?;
    tracing::info!(webhook_id = row.id, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: row.into(),
            secret,
        }),
    ))
}

/// The business's endpoints.
#[utoipa::path(
    get, path = "/api/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<WebhookView>), (status = 403, body = ErrorBody))
)]
async fn list_webhooks(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
) -> JsonResult<Vec<WebhookView>> {
    let rows = store::endpoints(&state.db, tenant).await?;
    Ok(Json(rows.into_iter().map(WebhookView::from).collect()))
}

async fn own_endpoint(
    state: &AppState,
    tenant: TenantId,
    id: &str,
) -> Result<EndpointRow, ApiError> {
    store::endpoint(&state.db, tenant, parse_id(id)?)
        .await
        .map_err(not_found)
}

fn not_found(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::NotFound("webhook not found".into()),
        other => other.into(),
    }
}

/// One endpoint.
#[utoipa::path(
    get, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_webhook(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
) -> JsonResult<WebhookView> {
    Ok(Json(own_endpoint(&state, tenant, &id).await?.into()))
}

/// Changes an endpoint's URL, events, description or whether it is enabled.
#[utoipa::path(
    patch, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = docs::UpdateWebhook,
    responses((status = 200, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn update_webhook(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
    body: JsonBody,
) -> JsonResult<WebhookView> {
    let endpoint = own_endpoint(&state, tenant, &id).await?;
    let mut fields = Fields::new(&body);
    let raw = match fields.optional_string("url", 2048) {
        Optional::Value(url) => Some(url),
        Optional::Null => {
            fields.error("url", "cannot be null");
            None
        }
        Optional::Absent => None,
    };
    let events = match event_list(&mut fields, &body) {
        Optional::Absent => None,
        Optional::Null => Some(all_events()),
        Optional::Value(events) => Some(events),
    };
    let description = match fields.optional_string("description", 500) {
        Optional::Absent => None,
        Optional::Null => Some(None),
        Optional::Value(d) => Some(Some(d)),
    };
    let enabled = match body.0.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            fields.error("enabled", "must be true or false");
            None
        }
    };
    let url = checked_url(&state, &mut fields, raw).await;
    fields.finish()?;
    let row = store::update_endpoint(
        &state.db,
        tenant,
        endpoint.id,
        EndpointPatch {
            url,
            events,
            description,
            enabled,
        },
    )
    .await
    .map_err(not_found)?;
    Ok(Json(row.into()))
}

/// Removes an endpoint, with its pending deliveries and delivery log.
#[utoipa::path(
    delete, path = "/api/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    store::delete_endpoint(&state.db, tenant, parse_id(&id)?)
        .await
        .map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the signing secret. For 24 hours requests carry a second `v1` signed with the old
/// one, so receivers can switch over without missing an event.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = WebhookWithSecret), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn rotate_secret(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
) -> JsonResult<WebhookWithSecret> {
    let secret = signature::new_secret();
    let until = chrono::Utc::now() + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
    let row = store::rotate_secret(&state.db, tenant, parse_id(&id)?, &secret, until)
        .await
        .map_err(not_found)?;
    tracing::info!(webhook_id = row.id, "webhook secret rotated");
    Ok(Json(WebhookWithSecret {
        webhook: row.into(),
        secret,
    }))
}

/// Sends a signed `ping` event to the endpoint now and reports what came back. Pings are not
/// retried and not in the delivery log.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = TestResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn test_webhook(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
) -> JsonResult<TestResult> {
    let endpoint = own_endpoint(&state, tenant, &id).await?;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "id": event_id,
        "type": crate::events::PING,
        "created_at": crate::store::now(),
        "tenant_id": tenant.0,
        "data": {"webhook_id": endpoint.id, "message": "A test event from CallGenius."},
    })
    .to_string();
    let now = crate::store::now();
    let sent = state
        .webhooks
        .send(
            &endpoint.url,
            &event_id,
            body,
            &endpoint.signing_secrets(&now),
        )
        .await;
    Ok(Json(TestResult {
        event_id,
        delivered: sent.delivered(),
        status_code: sent.status_code,
        latency_ms: sent.latency_ms,
        error: sent.error,
    }))
}

fn delivery_views(
    rows: Vec<DeliveryRow>,
    mut attempts: Vec<(i64, AttemptRow)>,
) -> Vec<DeliveryView> {
    rows.into_iter()
        .map(|row| {
            let log = attempts
                .iter_mut()
                .filter(|(delivery, _)| *delivery == row.id)
                .map(|(_, a)| a.clone())
                .collect();
            DeliveryView {
                next_attempt_at: (row.status == "pending").then_some(row.next_attempt_at),
                id: row.id,
                event_id: row.event_id,
                kind: row.kind,
                status: row.status,
                attempts: row.attempts,
                last_status_code: row.last_status_code,
                last_error: row.last_error,
                delivered_at: row.delivered_at,
                created_at: row.created_at,
                attempt_log: log,
            }
        })
        .collect()
}

/// The endpoint's deliveries, newest first, each with its attempts (status code, latency,
/// error, next retry).
#[utoipa::path(
    get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(
        ("id" = i64, Path),
        ("status" = Option<String>, Query, description = "pending, delivered or failed"),
        ("per_page" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("page" = Option<i64>, Query, description = "From 1"),
    ),
    responses((status = 200, body = DeliveryPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_deliveries(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> JsonResult<DeliveryPage> {
    let endpoint = own_endpoint(&state, tenant, &id).await?;
    let query = uri.query();
    let mut errors = FieldErrors::new();
    let (page, per_page) = paging(query, &mut errors);
    let status = query_value(query, "status");
    if let Some(s) = &status
        && !matches!(s.as_str(), "pending" | "delivered" | "failed")
    {
        errors.insert(
            "status".into(),
            vec!["must be pending, delivered or failed".into()],
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let status = status.as_deref();
    let total = store::count_deliveries(&state.db, tenant, endpoint.id, status).await?;
    let rows = store::deliveries(
        &state.db,
        tenant,
        endpoint.id,
        status,
        per_page,
        (page - 1) * per_page,
    )
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let attempts = store::attempts(&state.db, &ids).await?;
    Ok(Json(DeliveryPage {
        data: delivery_views(rows, attempts),
        meta: PageMeta::new(page, per_page, total),
    }))
}

/// Sends a delivery again, with the same event id, as soon as the worker gets to it (after any
/// earlier pending event of the same call).
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = i64, Path), ("delivery_id" = i64, Path)),
    responses((status = 202, body = DeliveryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn redeliver(
    State(state): State<AppState>,
    WebhookAdmin(tenant): WebhookAdmin,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let endpoint = own_endpoint(&state, tenant, &id).await?;
    let delivery = parse_id(&delivery)?;
    let missing = |e: StoreError| match e {
        StoreError::NotFound => ApiError::NotFound("delivery not found".into()),
        other => other.into(),
    };
    store::redeliver(&state.db, tenant, endpoint.id, delivery)
        .await
        .map_err(missing)?;
    let row = store::delivery(&state.db, tenant, endpoint.id, delivery)
        .await
        .map_err(missing)?;
    let attempts = store::attempts(&state.db, &[row.id]).await?;
    let view = delivery_views(vec![row], attempts)
        .pop()
        .ok_or_else(|| ApiError::Internal("a redelivered delivery vanished".into()))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}
