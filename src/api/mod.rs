//! The REST API: axum routes only. Handlers parse and authorise, call services, and map errors
//! through [`error::ApiError`].
//!
//! A request passes, outermost first: request id → tracing span (its URI redacted) →
//! observation (metrics, 5xx cause logging) → deadline (408 past the request timeout) → panic
//! catcher → body limit → routing → for `/api/*` routes, authentication
//! and the per-token rate limit ([`auth::authenticate`]) → the handler.

pub mod agents;
pub mod answer;
pub mod auth;
pub mod billing;
pub mod calls;
pub mod campaigns;
pub mod carrier_auth;
pub mod error;
pub mod extract;
pub mod knowledge;
pub mod numbers;
pub mod plivo;
pub mod ratelimit;
pub mod settings;
pub mod system;
pub mod telnyx;
pub mod tenants;
pub mod twilio;
pub mod voices;
pub mod vonage;
pub mod webhooks;

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use secrecy::SecretString;

use crate::calls::registry::LiveCalls;
use crate::calls::token::StreamTokens;
use crate::config::Limits;
use crate::media::MediaState;
use crate::models::SpeechModels;
use crate::store::Db;
use error::{ApiError, ErrorCause};
use ratelimit::RateLimiters;

/// Shared application state: a few `Arc`s, cheap to clone; handlers take only what they need
/// through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub limiters: Arc<RateLimiters>,
    pub speech: Arc<SpeechModels>,
    pub telephony: Telephony,
    pub media: MediaState,
    pub metrics: PrometheusHandle,
    pub knowledge: crate::knowledge::KnowledgeBase,
    /// Largest knowledge document accepted, in bytes.
    pub upload_limit: usize,
    /// The carrier and the outbound dialler.
    pub dialler: crate::dialler::Dialler,
    /// Webhook endpoints' requests: the delivery worker and test pings.
    pub webhooks: crate::events::Webhooks,
    /// Plans, the trial, and the payment provider.
    pub billing: crate::billing::Billing,
    /// The bearer token `GET /metrics` requires, if any.
    pub metrics_token: Option<Arc<SecretString>>,
    /// Request time limits ([`deadline`]).
    pub http: Arc<crate::config::HttpSettings>,
}

/// What call set-up needs: stream tokens, the live calls, the public address, carrier secrets.
#[derive(Clone)]
pub struct Telephony {
    pub tokens: Arc<StreamTokens>,
    pub live: Arc<LiveCalls>,
    /// Externally reachable base URL, without a trailing slash.
    pub public_url: Arc<str>,
    pub twilio_auth_token: Option<Arc<SecretString>>,
    pub vonage_signature_secret: Option<Arc<SecretString>>,
    /// Telnyx's public key and Plivo's auth token, for their webhooks' signatures.
    pub telnyx_public_key: Option<[u8; 32]>,
    pub plivo_auth_token: Option<Arc<SecretString>>,
    /// Development only: carriers without credentials have their webhooks open.
    pub insecure_carrier_webhooks: bool,
    /// Twilio's REST API (account SID and base URL), for transfers.
    pub twilio_account_sid: Option<Arc<str>>,
    pub twilio_api_url: Arc<str>,
    /// Outbound HTTP to carriers' APIs.
    pub http: reqwest::Client,
    /// The concurrent-call limits calls are handed out under.
    pub capacity: crate::calls::Capacity,
}

impl Telephony {
    /// From the configuration, for an engine reachable at `public_url`.
    pub fn new(config: &crate::config::Config, public_url: &str) -> Self {
        use secrecy::ExposeSecret;
        let live = LiveCalls::new();
        Self {
            capacity: crate::calls::Capacity {
                caps: crate::billing::CallCaps::from_settings(&config.billing),
                per_node: config.max_calls_per_node as usize,
                live: Arc::clone(&live),
            },
            tokens: Arc::new(match &config.stream_secret {
                Some(secret) => StreamTokens::new(secret.expose_secret().as_bytes()),
                None => StreamTokens::random(),
            }),
            live,
            public_url: Arc::from(public_url.trim_end_matches('/')),
            twilio_auth_token: config.twilio_auth_token.clone().map(Arc::new),
            vonage_signature_secret: config.vonage_signature_secret.clone().map(Arc::new),
            telnyx_public_key: config.carrier_webhooks.telnyx_public_key,
            plivo_auth_token: config
                .carrier_webhooks
                .plivo_auth_token
                .clone()
                .map(Arc::new),
            insecure_carrier_webhooks: config.carrier_webhooks.insecure,
            twilio_account_sid: config.twilio_account_sid.as_deref().map(Arc::from),
            twilio_api_url: Arc::from(config.twilio_api_url.as_str()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// Whether calls on `carrier` can be transferred: Twilio, with its REST credentials.
    pub fn can_transfer(&self, carrier: &str) -> bool {
        carrier == "twilio" && self.twilio_account_sid.is_some() && self.twilio_auth_token.is_some()
    }

    /// The websocket URL of a carrier's media stream (`ws://` or `wss://` per the public URL).
    pub fn media_url(&self, carrier: crate::domain::Carrier) -> String {
        let base = self
            .public_url
            .strip_prefix("http")
            .unwrap_or(&self.public_url);
        format!("ws{base}/media/{}", carrier.as_str())
    }
}

impl AppState {
    pub fn new(
        db: Db,
        config: &crate::config::Config,
        speech: Arc<SpeechModels>,
        telephony: Telephony,
        media: MediaState,
    ) -> Self {
        let limits = &config.limits;
        let carrier = crate::carrier::from_config(config, &db, &speech, &telephony.http);
        let dialler = crate::dialler::Dialler::new(
            db.clone(),
            carrier,
            Arc::clone(&telephony.tokens),
            &telephony.public_url,
            config.dialler.clone(),
            telephony.capacity.clone(),
        );
        let webhooks = crate::events::Webhooks::new(
            db.clone(),
            &config.webhooks,
            config.addr,
            &telephony.public_url,
        );
        Self {
            billing: crate::billing::Billing::new(&config.billing, &telephony.public_url),
            knowledge: crate::knowledge::KnowledgeBase::new(
                db.clone(),
                Arc::clone(&speech),
                &config.extraction,
            ),
            webhooks,
            upload_limit: limits.max_upload_bytes,
            dialler,
            db,
            limiters: Arc::new(
                RateLimiters::new(limits)
                    .with_carrier_webhooks(config.carrier_webhooks.requests_per_minute),
            ),
            speech,
            telephony,
            media,
            metrics: crate::telemetry::metrics_handle(),
            metrics_token: config.metrics_token.clone().map(Arc::new),
            http: Arc::new(config.http.clone()),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CallGenius API",
        description = "Manage agents, calls, phone numbers, campaigns, knowledge and billing. \
                       Every response is JSON; errors carry a message and, for 422, an errors \
                       object with every invalid field."
    ),
    modifiers(&BearerSecurity),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "tenants", description = "Businesses and their members"),
        (name = "agents", description = "Versioned voice agents"),
                (name = "voices", description = "The installed text-to-speech voices"),
                (name = "calls", description = "Calls and test calls, transcripts, recordings and bookings"),
                (name = "settings", description = "The business's time zone and default turn engine"),
                (name = "knowledge", description = "Documents agents answer from, and searching them"),
                (name = "numbers", description = "Phone numbers: inventory, provisioning, assignment"),
                (name = "campaigns", description = "Outbound campaigns and their dialler"),
                (name = "webhooks", description = "Signed event notifications: endpoints, deliveries, redelivery"),
                (name = "billing", description = "Usage, plans, the wallet and hosted checkout"),
        (name = "carrier", description = "Call set-up webhooks that carriers call"),
        (name = "system", description = "Health, readiness, metrics and this description"),
    )
)]
struct ApiDoc;

struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document generated from the routes below.
pub fn openapi() -> utoipa::openapi::OpenApi {
    split_routes().2
}

/// The resource routes (authenticated), the system routes, and the description of both.
fn split_routes() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (resources, mut doc) = resource_routes().split_for_parts();
    let (system, system_doc) = system::routes()
        .merge(twilio::routes())
        .merge(telnyx::routes())
        .merge(plivo::routes())
        .merge(vonage::routes())
        .merge(calls::public_routes())
        .merge(billing::public_routes())
        .split_for_parts();
    doc.merge(system_doc);
    add_common_responses(&mut doc);
    (resources, system, doc)
}

/// Adds the error responses that whole classes of routes share, so that each handler documents
/// only its own: 401 and 429 wherever a token is required; 400, 413 and 422 wherever a JSON body
/// is read.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build();
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let mut shared = Vec::new();
            if operation.security.is_some() {
                shared.push(("401", "Missing, unknown or revoked token"));
                shared.push(("429", "Rate limited; see Retry-After"));
            }
            if operation.request_body.is_some() {
                shared.push(("400", "Malformed JSON"));
                shared.push(("413", "Body over the size limit"));
                shared.push(("422", "Invalid fields, each listed in errors"));
            }
            for (status, description) in shared {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
}

/// Routes that act for a token holder (authenticated and rate limited).
fn resource_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(tenants::routes())
        .merge(agents::routes())
        .merge(voices::routes())
        .merge(calls::routes())
        .merge(settings::routes())
        .merge(knowledge::routes())
        .merge(numbers::routes())
        .merge(campaigns::routes())
        .merge(webhooks::routes())
        .merge(billing::routes())
}

/// Builds the whole HTTP application for `state`.
pub fn router(state: AppState, limits: &Limits) -> Router {
    let (resources, system, doc) = split_routes();
    let resources = resources.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ));
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(resources)
                .merge(system.layer(axum::Extension(Arc::new(doc))))
        .merge(crate::media::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let uri = crate::telemetry::redact_uri(req.uri());
                    tracing::info_span!("request", method = %req.method(), uri = %uri, request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(observe))
                .layer(middleware::from_fn_with_state(Arc::clone(&state.http), deadline))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(limits.max_body_bytes)),
        )
        .with_state(state)
}

/// Counts and times every request by route template (never by id), and logs the cause of any
/// server error exactly once.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(status = status.as_u16(), %cause, "request failed");
    }
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(),
        "status" => status.as_u16().to_string())
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    response
}

/// Answers 408 when a request is not answered in time: its body included, `request_timeout_ms`
/// (`upload_timeout_ms` for a knowledge upload). A websocket upgrade is answered at once, and the
/// stream it opens is not a request: calls are not cut off.
async fn deadline(
    axum::extract::State(limits): axum::extract::State<Arc<crate::config::HttpSettings>>,
    req: Request,
    next: Next,
) -> Response {
    let upload = req.method() == axum::http::Method::POST && req.uri().path() == "/api/knowledge";
    let ms = if upload {
        limits.upload_timeout_ms
    } else {
        limits.request_timeout_ms
    };
    match tokio::time::timeout(std::time::Duration::from_millis(ms), next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let body = error::ErrorBody {
                message: format!("the request was not completed within {ms} ms"),
                errors: None,
            };
            let mut response =
                (axum::http::StatusCode::REQUEST_TIMEOUT, Json(body)).into_response();
            // The body may be half read: the connection cannot carry another request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}

/// A JSON 200 body.
pub type JsonResult<T> = Result<Json<T>, ApiError>;
