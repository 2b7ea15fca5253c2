//! Calls over the API: test calls (talk to an agent without a phone number) and call records.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{Auth, parse_id, query_value};
use super::{AppState, JsonResult};
use crate::calls::aftercall::{self, TranscriptEntry};
use crate::calls::{self, Parties};
use crate::domain::{AgentId, CallId, Carrier, Direction, TenantId};
use crate::store::agents as agent_store;
use crate::store::bookings::{self, BookingRow};
use crate::store::calls::{self as store, CallFilter, CallRow, TurnRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(test_call))
        .routes(routes!(list_calls))
        .routes(routes!(get_call))
        .routes(routes!(get_transcript))
        .routes(routes!(get_recording))
        .routes(routes!(list_bookings))
        .routes(routes!(get_booking))
}

/// The signed recording file route, outside `/api` (the URL's signature is the credential).
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(serve_recording))
}

/// How long a signed recording URL stays valid.
const RECORDING_URL_TTL_SECS: i64 = 3600;
const PER_PAGE_DEFAULT: i64 = 20;
const PER_PAGE_MAX: i64 = 100;

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
        params(("id" = i64, Path), ("carrier" = Option<String>, Query, description = "Stream protocol: twilio (default), telnyx, plivo, vonage or web (the browser protocol)"),
               ("from" = Option<String>, Query, description = "The caller's number to simulate (E.164): bookings default to it")),
    responses(
        (status = 201, body = TestCall),
        (status = 402, description = "The business's trial, included minutes and wallet are used up", body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The agent is being deleted", body = ErrorBody),
        (status = 429, description = "The business has as many calls connecting or in progress as its plan allows, or this engine is at its call limit; retry after `Retry-After` seconds", body = ErrorBody)
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
    let from = query_value(query.as_deref(), "from");
    if let Some(from) = &from
        && !crate::agent::is_e164(from)
    {
        return Err(ApiError::field(
            "from",
            "must be an E.164 number such as +61255501234",
        ));
    }
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
        from_number: from.as_deref(),
        to_number: None,
    };
    let telephony = &state.telephony;
    let handed = calls::hand_out(
        &state.db,
        &telephony.tokens,
        &telephony.capacity,
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
    /// The after-call summary (an LLM's when one is configured, else extractive).
    pub summary: Option<String>,
    /// The caller's sentiment, -1 (negative) to 1 (positive).
    pub sentiment: Option<f64>,
    /// `none` (not recorded, or the call is still in progress), `encoding`, `ready` or `failed`;
    /// fetch a URL from
    /// `/api/calls/{id}/recording` once `ready`.
    pub recording_status: String,
    /// When the transcript, summary and sentiment were ready.
    pub transcript_ready_at: Option<String>,
    /// Aggregates of the per-turn latency report (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// Each agent turn: what the caller said, what the caller heard, and the latency report
    /// (milliseconds from the end of the caller's speech to the first agent audio frame).
    /// Detail only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
            summary: row.summary,
            sentiment: row.sentiment,
            recording_status: row.recording_status,
            transcript_ready_at: row.transcript_ready_at,
            latency: None,
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
    view.latency = Some(LatencySummary::of(&view.turns));
    Ok(Json(view))
}

/// Medians and worst cases of a call's per-turn latency report (ms), over the turns that
/// answered the caller (the greeting is left out).
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencySummary {
    pub turns: usize,
    pub endpoint_wait_ms_median: Option<i64>,
    pub stt_ms_median: Option<i64>,
    pub turn_ms_median: Option<i64>,
    pub tts_ms_median: Option<i64>,
    pub total_ms_median: Option<i64>,
    pub total_ms_max: Option<i64>,
}

impl LatencySummary {
    fn of(turns: &[TurnRow]) -> Self {
        let answered: Vec<&TurnRow> = turns.iter().filter(|t| t.caller_text.is_some()).collect();
        let median = |stage: fn(&TurnRow) -> Option<i64>| {
            let mut values: Vec<i64> = answered.iter().filter_map(|t| stage(t)).collect();
            values.sort_unstable();
            (!values.is_empty()).then(|| values[values.len() / 2])
        };
        LatencySummary {
            turns: answered.len(),
            endpoint_wait_ms_median: median(|t| t.endpoint_wait_ms),
            stt_ms_median: median(|t| t.stt_ms),
            turn_ms_median: median(|t| t.turn_ms),
            tts_ms_median: median(|t| t.tts_ms),
            total_ms_median: median(|t| t.total_ms),
            total_ms_max: answered.iter().filter_map(|t| t.total_ms).max(),
        }
    }
}

/// Page metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageMeta {
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
    pub total_pages: i64,
}

impl PageMeta {
    pub(crate) fn new(page: i64, per_page: i64, total: i64) -> Self {
        PageMeta {
            page,
            per_page,
            total,
            total_pages: (total + per_page - 1) / per_page,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallPage {
    pub data: Vec<CallView>,
    pub meta: PageMeta,
}

/// `page` and `per_page` from a query, with their field errors.
pub(crate) fn paging(query: Option<&str>, errors: &mut FieldErrors) -> (i64, i64) {
    let mut number = |name: &str, default: i64, max: i64| match query_value(query, name) {
        None => default,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.insert(
                    name.into(),
                    vec![format!("must be a whole number from 1 to {max}")],
                );
                default
            }
        },
    };
    let per_page = number("per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX);
    let page = number("page", 1, 1_000_000);
    (page, per_page)
}

/// A date (`2026-11-29`, the whole day, UTC) or an RFC 3339 time, as stored-time bounds: the
/// inclusive start, and the exclusive end for `to`.
fn date_bound(raw: &str, end: bool) -> Option<String> {
    use chrono::{NaiveDate, Utc};
    if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let day = if end { day.succ_opt()? } else { day };
        let at = day.and_hms_opt(0, 0, 0)?.and_utc();
        return Some(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    let at = DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc);
    let at = if end {
        at + chrono::Duration::milliseconds(1)
    } else {
        at
    };
    Some(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The tenant's calls, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/calls", tag = "calls", security(("bearer" = [])),
    params(
        ("per_page" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("page" = Option<i64>, Query, description = "From 1"),
        ("agent_id" = Option<i64>, Query),
        ("status" = Option<String>, Query, description = "initiated, in-progress, completed or failed"),
        ("from" = Option<String>, Query, description = "Date (YYYY-MM-DD, UTC) or RFC 3339 time: calls created then or later"),
        ("to" = Option<String>, Query, description = "Date (the whole day, UTC) or RFC 3339 time: calls created then or earlier"),
    ),
    responses((status = 200, body = CallPage), (status = 422, body = ErrorBody))
)]
async fn list_calls(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> JsonResult<CallPage> {
    let tenant = auth.tenant()?;
    let query = query.as_deref();
    let mut errors = FieldErrors::new();
    if query.is_some_and(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).is_err()) {
        errors.insert("query".into(), vec!["is not a valid query string".into()]);
    }
    let (page, per_page) = paging(query, &mut errors);
    let mut filter = CallFilter::default();
    if let Some(raw) = query_value(query, "agent_id") {
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => filter.agent = Some(id),
            _ => {
                errors.insert("agent_id".into(), vec!["must be an agent id".into()]);
            }
        }
    }
    if let Some(status) = query_value(query, "status") {
        if ["initiated", "in-progress", "completed", "failed"].contains(&status.as_str()) {
            filter.status = Some(status);
        } else {
            errors.insert(
                "status".into(),
                vec!["must be initiated, in-progress, completed or failed".into()],
            );
        }
    }
    for (name, end) in [("from", false), ("to", true)] {
        if let Some(raw) = query_value(query, name) {
            match date_bound(&raw, end) {
                Some(bound) if end => filter.until = Some(bound),
                Some(bound) => filter.from = Some(bound),
                None => {
                    errors.insert(
                        name.into(),
                        vec!["must be a date (YYYY-MM-DD) or an RFC 3339 time".into()],
                    );
                }
            }
        }
    }
    if let (Some(from), Some(until)) = (&filter.from, &filter.until)
        && from >= until
    {
        errors.insert("to".into(), vec!["must not be before from".into()]);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (rows, total) =
        store::list(&state.db, tenant, &filter, per_page, (page - 1) * per_page).await?;
    Ok(Json(CallPage {
        data: rows.into_iter().map(CallView::from).collect(),
        meta: PageMeta::new(page, per_page, total),
    }))
}

/// A call's transcript: both speakers in order, with offsets from the start of the call.
#[utoipa::path(
    get, path = "/api/calls/{id}/transcript", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<TranscriptEntry>), (status = 404, body = ErrorBody))
)]
async fn get_transcript(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<Vec<TranscriptEntry>> {
    let (tenant, call) = (auth.tenant()?, CallId(parse_id(&id)?));
    store::get(&state.db, tenant, call).await?;
    let turns = store::turns(&state.db, tenant, call).await?;
    Ok(Json(aftercall::transcript(&turns)))
}

/// A signed, time-limited URL of the call's recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingUrl {
    /// Streams or downloads the MP3 (supports `Range`); valid until `expires_at`.
    pub url: String,
    pub expires_at: String,
}

/// A signed URL of the call's MP3 recording, valid one hour.
#[utoipa::path(
    get, path = "/api/calls/{id}/recording", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = RecordingUrl),
        (status = 404, description = "No such call, or no recording (yet): the message says which", body = ErrorBody)
    )
)]
async fn get_recording(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<RecordingUrl> {
    let (tenant, call) = (auth.tenant()?, CallId(parse_id(&id)?));
    let row = store::get(&state.db, tenant, call).await?;
    let reason = match (row.recording_status.as_str(), row.status.as_str()) {
        ("ready", _) => None,
        (_, "initiated" | "in-progress") => {
            Some("the call is still in progress; its recording is ready shortly after it ends")
        }
        ("encoding", _) => Some("the recording is being encoded; try again shortly"),
        ("failed", _) => Some("the recording of this call failed"),
        _ => Some("this call was not recorded"),
    };
    if let Some(reason) = reason {
        return Err(ApiError::NotFound(reason.into()));
    }
    let expires_at = chrono::Utc::now().timestamp() + RECORDING_URL_TTL_SECS;
    let signature = state
        .telephony
        .tokens
        .sign_recording(tenant, call, expires_at);
    Ok(Json(RecordingUrl {
        url: format!(
            "{}/recordings/{call}.mp3?expires={expires_at}&signature={signature}",
            state.telephony.public_url
        ),
        expires_at: DateTime::from_timestamp(expires_at, 0)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default(),
    }))
}

/// Streams a recording for a signed URL; `Range` requests get 206. Expired or tampered → 403.
#[utoipa::path(
    get, path = "/recordings/{file}", tag = "calls",
    params(
        ("file" = String, Path, description = "`<call id>.mp3`"),
        ("expires" = i64, Query, description = "Unix seconds"),
        ("signature" = String, Query, description = "Hex HMAC-SHA256 issued with the URL"),
    ),
    responses(
        (status = 200, description = "The MP3", content_type = "audio/mpeg"),
        (status = 206, description = "The requested byte range", content_type = "audio/mpeg"),
        (status = 403, description = "Expired or tampered URL", body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
async fn serve_recording(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    use tower::ServiceExt;
    let forbidden = || ApiError::Forbidden("the recording link is invalid or has expired".into());
    let call = file
        .strip_suffix(".mp3")
        .and_then(|id| id.parse::<i64>().ok())
        .map(CallId)
        .ok_or_else(|| ApiError::NotFound("not found".into()))?;
    let expires_at = query_value(query.as_deref(), "expires")
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or_else(forbidden)?;
    let signature = query_value(query.as_deref(), "signature").ok_or_else(forbidden)?;
    let row = match store::get_unscoped(&state.db, call).await {
        Ok(row) => row,
        // An unknown call is indistinguishable from a bad signature.
        Err(crate::store::StoreError::NotFound) => return Err(forbidden()),
        Err(error) => return Err(error.into()),
    };
    let now = chrono::Utc::now().timestamp();
    state
        .telephony
        .tokens
        .verify_recording(TenantId(row.tenant_id), call, expires_at, &signature, now)
        .map_err(|_| forbidden())?;
    let Some(dir) = &state.media.config.recordings else {
        return Err(ApiError::NotFound("recordings are turned off".into()));
    };
    let path = crate::calls::recording::mp3_path(dir, call);
    if row.recording_status != "ready" || !path.exists() {
        return Err(ApiError::NotFound(
            "the recording is no longer available".into(),
        ));
    }
    let response = tower_http::services::ServeFile::new_with_mime(
        path,
        &"audio/mpeg".parse().expect("a valid MIME type"),
    )
    .oneshot(request)
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(response.map(axum::body::Body::new))
}

/// A booking made by an agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingView {
    pub id: i64,
    pub call_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub name: String,
    pub phone: Option<String>,
    /// Local date and time (`YYYY-MM-DDTHH:MM:SS`) in `timezone`.
    pub start: String,
    pub timezone: String,
    /// The same instant in UTC (RFC 3339).
    pub start_utc: String,
    pub notes: Option<String>,
    pub created_at: String,
}

impl From<BookingRow> for BookingView {
    fn from(row: BookingRow) -> Self {
        BookingView {
            id: row.id,
            call_id: row.call_id,
            agent_id: row.agent_id,
            name: row.name,
            phone: row.phone,
            start: row.starts_at,
            timezone: row.timezone,
            start_utc: row.starts_utc,
            notes: row.notes,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingPage {
    pub data: Vec<BookingView>,
    pub meta: PageMeta,
}

/// The tenant's bookings, newest first.
#[utoipa::path(
    get, path = "/api/bookings", tag = "calls", security(("bearer" = [])),
    params(
        ("per_page" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("page" = Option<i64>, Query, description = "From 1"),
    ),
    responses((status = 200, body = BookingPage), (status = 422, body = ErrorBody))
)]
async fn list_bookings(
    State(state): State<AppState>,
    auth: Auth,
    RawQuery(query): RawQuery,
) -> JsonResult<BookingPage> {
    let tenant = auth.tenant()?;
    let mut errors = FieldErrors::new();
    let (page, per_page) = paging(query.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let rows = bookings::list(&state.db, tenant, per_page, (page - 1) * per_page).await?;
    let total = bookings::count(&state.db, tenant).await?;
    Ok(Json(BookingPage {
        data: rows.into_iter().map(BookingView::from).collect(),
        meta: PageMeta::new(page, per_page, total),
    }))
}

/// One booking.
#[utoipa::path(
    get, path = "/api/bookings/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = BookingView), (status = 404, body = ErrorBody))
)]
async fn get_booking(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<BookingView> {
    let tenant = auth.tenant()?;
    let row = bookings::get(&state.db, tenant, parse_id(&id)?).await?;
    Ok(Json(BookingView::from(row)))
}
