//! Calls over the API: test calls (talk to an agent without a phone number) and call records.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, parse_id, query_value};
use super::{AppState, JsonResult};
use crate::calls::{self, Parties};
use crate::domain::{AgentId, CallId, Carrier, Direction};
use crate::store::agents as agent_store;
use crate::store::calls::{self as store, CallRow, TurnRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(test_call))
        .routes(routes!(get_call))
}

/// A stream for a carrier simulator or a browser: connect to `stream_url`. For Twilio, present
/// `token` in the stream's `start` message (`start.customParameters.token`); for the other
/// protocols it is already in `stream_url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestCall {
    pub call_id: i64,
    pub stream_url: String,
    pub token: String,
    /// The token admits a stream until then (RFC 3339).
    pub expires_at: String,
}

/// Starts a test call with the agent: returns the media stream to connect to.
#[utoipa::path(
    post, path = "/api/agents/{id}/test-call", tag = "calls", security(("bearer" = [])),
        params(("id" = i64, Path), ("carrier" = Option<String>, Query, description = "Stream protocol: twilio (default), telnyx, plivo, vonage or web (the browser protocol)")),
    responses(
        (status = 201, body = TestCall), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The agent is being deleted", body = ErrorBody)
    )
)]
async fn test_call(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<TestCall>), ApiError> {
    let carrier = match query_value(query.as_deref(), "carrier").as_deref() {
        None | Some("twilio") => Carrier::Twilio,
        Some("telnyx") => Carrier::Telnyx,
        Some("plivo") => Carrier::Plivo,
        Some("vonage") => Carrier::Vonage,
        Some("web") => Carrier::Web,
        Some(_) => {
            return Err(ApiError::field(
                "carrier",
                "must be twilio, telnyx, plivo, vonage or web",
            ));
        }
    };
    let tenant = auth.tenant()?;
    let agent = AgentId(parse_id(&id)?);
    let row = agent_store::get(&state.db, tenant, agent).await?;
    if row.status != "active" {
        return Err(ApiError::Conflict(
            "the agent is being deleted and takes no new calls".into(),
        ));
    }
    let parties = Parties {
        direction: Direction::Test,
        carrier,
        carrier_call_id: None,
        from_number: None,
        to_number: None,
    };
    let telephony = &state.telephony;
    let handed = calls::hand_out(
        &state.db,
        &telephony.tokens,
        tenant,
        agent,
        row.current_version,
        parties,
    )
    .await?;
    let expires_at = DateTime::from_timestamp(handed.expires_at, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(TestCall {
            call_id: handed.call.id,
            // Only Twilio carries custom parameters in its first message; for the others the
            // token rides in the stream URL.
            stream_url: match carrier {
                Carrier::Twilio => telephony.media_url(carrier),
                _ => format!("{}?token={}", telephony.media_url(carrier), handed.token),
            },
            token: handed.token,
            expires_at,
        }),
    ))
}

/// A call record.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    pub id: i64,
    pub agent_id: Option<i64>,
    pub agent_version: Option<i64>,
    /// `inbound`, `outbound` or `test`.
    pub direction: String,
    pub carrier: String,
    pub carrier_call_id: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// `initiated`, `in-progress`, `completed` or `failed`.
    pub status: String,
    pub disposition: Option<String>,
    /// Seconds, once the call has ended.
    pub duration_sec: Option<f64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Each agent turn: what the caller said, what the caller heard, and the latency report
    /// (milliseconds from the end of the caller's speech to the first agent audio frame).
    pub turns: Vec<TurnRow>,
}

impl From<CallRow> for CallView {
    fn from(row: CallRow) -> Self {
        CallView {
            id: row.id,
            agent_id: row.agent_id,
            agent_version: row.agent_version,
            direction: row.direction,
            carrier: row.carrier,
            carrier_call_id: row.carrier_call_id,
            from_number: row.from_number,
            to_number: row.to_number,
            status: row.status,
            disposition: row.disposition,
            duration_sec: row.duration_ms.map(|ms| ms as f64 / 1000.0),
            created_at: row.created_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            turns: Vec::new(),
        }
    }
}

/// One call's record.
#[utoipa::path(
    get, path = "/api/calls/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CallView), (status = 404, body = ErrorBody))
)]
async fn get_call(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<CallView> {
    let (tenant, call) = (auth.tenant()?, CallId(parse_id(&id)?));
    let row = store::get(&state.db, tenant, call).await?;
    let mut view = CallView::from(row);
    view.turns = store::turns(&state.db, tenant, call).await?;
    Ok(Json(view))
}
