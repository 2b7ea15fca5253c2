//! Operational routes: liveness, readiness, Prometheus metrics, the OpenAPI description and the
//! interactive documentation page (self-contained: it works on a machine with no internet).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::models::ModelStatus;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// `ready` (loaded) or `installed` (checked; loaded on first use).
    pub models: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The engine can serve: the database answers and the speech models are installed and not
/// still loading.
#[utoipa::path(
    get, path = "/readyz", tag = "system",
    responses((status = 200, body = Readiness), (status = 503, description = "The database does not answer, or the models are loading or failed to load", body = ErrorBody))
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    state.db.ping().await.map_err(|error| {
        ApiError::Unavailable(format!(
            "database unreachable: {}",
            ApiError::internal(error).cause()
        ))
    })?;
    let models = match state.speech.status() {
        ModelStatus::Ready => "ready",
        ModelStatus::Installed => "installed",
        ModelStatus::Loading => {
            return Err(ApiError::Unavailable("speech models are loading".into()));
        }
        ModelStatus::Failed(reason) => {
            return Err(ApiError::Unavailable(format!(
                "speech models failed to load: {reason}"
            )));
        }
    };
    Ok(Json(Readiness {
        status: "ready".into(),
        database: state.db.backend().as_str().into(),
        models: models.into(),
    }))
}

/// Request counts and latencies by route, in the Prometheus text format. When the engine has a
/// metrics token, only a request bearing it is answered.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, description = "A metrics token is configured and was not given", body = ErrorBody),
    )
)]
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        use secrecy::ExposeSecret;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_token(given, expected.expose_secret()) {
            let mut response =
                ApiError::Unauthorized("missing or invalid metrics token").into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Compares two tokens in time that does not depend on where they differ (their SHA-256 digests).
fn same_token(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json(Extension(doc): Extension<Arc<OpenApi>>) -> Response {
    match doc.to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// Interactive documentation: every route of the OpenAPI description, with a form to call it.
#[utoipa::path(
    get, path = "/docs", tag = "system",
    responses((status = 200, description = "HTML page", content_type = "text/html"))
)]
async fn docs() -> (StatusCode, Html<&'static str>) {
    (StatusCode::OK, Html(include_str!("docs.html")))
}
