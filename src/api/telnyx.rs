//! Telnyx call set-up with TeXML: the voice webhook (form-encoded, TwiML-style parameters)
//! answers `<Connect><Stream>` to the engine's media websocket, `/media/telnyx?token=…`, with
//! audio both ways in PCMU (`bidirectionalMode="rtp"`). The TeXML application's voice URL is
//! `https://PUBLIC/carrier/telnyx/voice?agent_id=42` until phone numbers are assigned.
//!
//! Every request must carry Telnyx's `telnyx-signature-ed25519` over `{telnyx-timestamp}|{body}`
//! under the account's public key, signed within five minutes; without a configured key the
//! webhook is closed ([`super::carrier_auth`]).

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::answer::{self, Answer, xml_escape, xml_response};
use super::auth::ClientAddr;
use super::carrier_auth;
use super::error::{ApiError, ErrorBody};
use super::extract::query_value;
use crate::calls::Parties;
use crate::domain::{Carrier, Direction};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(voice))
}

/// Answers an incoming Telnyx TeXML call with a bidirectional stream to the agent.
#[utoipa::path(
    post, path = "/carrier/telnyx/voice", tag = "carrier",
    params(("agent_id" = i64, Query, description = "The agent that answers (until numbers are assigned)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Telnyx's TeXML call parameters (CallSid, From, To, …)"),
    responses(
        (status = 200, description = "TeXML: <Connect><Stream> to the media websocket, or a spoken refusal when no agent answers or the business's minutes and wallet are used up", content_type = "text/xml"),
        (status = 400, body = ErrorBody),
        (status = 403, description = "telnyx-signature-ed25519 missing, wrong or stale, or no Telnyx public key configured", body = ErrorBody),
        (status = 429, description = "Too many answer requests from this address; see Retry-After", body = ErrorBody),
    )
)]
async fn voice(
    State(state): State<AppState>,
    client: ClientAddr,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    carrier_auth::limit_answers(&state, &client)?;
    let key = state.telephony.telnyx_public_key.as_ref();
    if let Some(key) = carrier_auth::credential(&state, Carrier::Telnyx, key, uri.path())? {
        let now = chrono::Utc::now().timestamp();
        if let Err(reason) = carrier_auth::verify_telnyx(key, &headers, &body, now) {
            tracing::warn!(reason, "telnyx webhook with a bad signature");
            return Err(ApiError::Forbidden(format!(
                "invalid Telnyx signature: {reason}"
            )));
        }
    }
    let params = answer::form_params(&body, None)?;
    let param = |name| answer::param(&params, name);
    let parties = Parties {
        direction: Direction::Inbound,
        carrier: Carrier::Telnyx,
        carrier_call_id: param("CallSid"),
        from_number: param("From"),
        to_number: param("To"),
    };
    let agent = query_value(query.as_deref(), "agent_id");
    let handed = match answer::hand_out(&state, agent.as_deref(), parties).await? {
        Answer::Connect(handed) => handed,
        Answer::Refuse(message) => {
            let message = xml_escape(message);
            return Ok(xml_response(&format!("<Say>{message}</Say><Hangup/>")));
        }
    };
    let url = format!(
        "{}?token={}",
        state.telephony.media_url(Carrier::Telnyx),
        handed.token
    );
    Ok(xml_response(&format!(
        "<Connect><Stream url=\"{}\" bidirectionalMode=\"rtp\" bidirectionalCodec=\"PCMU\"/></Connect>",
        xml_escape(&url)
    )))
}
