//! The business's call settings: its time zone (bookings are made in it) and the turn engine
//! its agents use unless they choose one. The LLM itself (URL, model, key) is the engine's
//! configuration, never exposed here beyond whether one is configured and its model name.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::ErrorBody;
use super::extract::{Auth, Fields, JsonBody, Optional};
use super::{AppState, JsonResult};
use crate::agent::EngineChoice;
use crate::domain::Role;
use crate::store::accounts::{self as store, TenantSettingsRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// IANA time zone (e.g. Australia/Sydney); dates and times callers say are in it.
    pub timezone: String,
    /// `auto` (the LLM when the engine has one, else the embedded responder), `llm` or
    /// `embedded`: the default for agents that do not choose.
    pub turn_engine: String,
    /// Whether the engine has an OpenAI-compatible LLM configured.
    pub llm_configured: bool,
    /// The configured model's name.
    pub llm_model: Option<String>,
}

fn view(state: &AppState, row: TenantSettingsRow) -> SettingsView {
    let llm = state
        .media
        .llm
        .as_ref()
        .map(|llm| llm.config().model.clone());
    SettingsView {
        timezone: row.timezone,
        turn_engine: row.turn_engine,
        llm_configured: llm.is_some(),
        llm_model: llm,
    }
}

/// The active business's call settings.
#[utoipa::path(
    get, path = "/api/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = SettingsView))
)]
async fn get_settings(State(state): State<AppState>, auth: Auth) -> JsonResult<SettingsView> {
    let row = store::tenant_settings(&state.db, auth.tenant()?).await?;
    Ok(Json(view(&state, row)))
}

#[allow(dead_code)] // Documentation of the request body; parsing goes through `Fields`.
#[derive(ToSchema)]
pub struct SettingsRequest {
    /// IANA time zone name.
    pub timezone: Option<String>,
    /// `auto`, `llm` or `embedded`.
    pub turn_engine: Option<String>,
}

/// Changes the call settings (owners and admins); absent fields keep their value.
#[utoipa::path(
    patch, path = "/api/settings", tag = "settings", security(("bearer" = [])),
    request_body = SettingsRequest,
    responses(
        (status = 200, body = SettingsView),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
async fn update_settings(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> JsonResult<SettingsView> {
    let tenant = auth.require(Role::Admin)?;
    let mut fields = Fields::new(&body);
    let timezone = match fields.optional_string("timezone", 64) {
        Optional::Value(name) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz.name().to_owned()),
            Err(_) => {
                fields.error(
                    "timezone",
                    "must be an IANA time zone such as Europe/London",
                );
                None
            }
        },
        Optional::Null => {
            fields.error("timezone", "must not be null");
            None
        }
        Optional::Absent => None,
    };
    let turn_engine = match fields.optional_string("turn_engine", 16) {
        Optional::Value(raw) => match EngineChoice::parse(&raw) {
            Some(choice) => Some(choice.as_str().to_owned()),
            None => {
                fields.error("turn_engine", "must be auto, llm or embedded");
                None
            }
        },
        Optional::Null => {
            fields.error("turn_engine", "must not be null");
            None
        }
        Optional::Absent => None,
    };
    fields.finish()?;
    let current = store::tenant_settings(&state.db, tenant).await?;
    let updated = TenantSettingsRow {
        timezone: timezone.unwrap_or(current.timezone),
        turn_engine: turn_engine.unwrap_or(current.turn_engine),
    };
    store::update_tenant_settings(&state.db, tenant, &updated).await?;
    Ok(Json(view(&state, updated)))
}
