//! Plivo call set-up: the answer URL (POST form or GET query: CallUUID, From, To) answers Plivo
//! XML with a bidirectional `<Stream>` to the engine's media websocket,
//! `/media/plivo?token=…`, µ-law at 8 kHz, kept alive for the whole call. The application's
//! answer URL is `https://PUBLIC/carrier/plivo/answer?agent_id=42` until phone numbers are
//! assigned.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::answer::{self, Answer, xml_escape, xml_response};
use super::error::{ApiError, ErrorBody};
use super::extract::query_value;
use crate::calls::Parties;
use crate::domain::{Carrier, Direction};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(answer_call))
}

/// Answers an incoming Plivo call with a bidirectional audio stream to the agent. Plivo's answer
/// method is configurable: GET serves the same document.
#[utoipa::path(
    method(get, post), path = "/carrier/plivo/answer", tag = "carrier",
    params(("agent_id" = i64, Query, description = "The agent that answers (until numbers are assigned)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Plivo's call parameters (CallUUID, From, To, …); with GET they come in the query"),
    responses(
        (status = 200, description = "Plivo XML: a bidirectional <Stream>, or a spoken refusal when no agent answers or the business's minutes and wallet are used up", content_type = "text/xml"),
        (status = 400, body = ErrorBody),
    )
)]
async fn answer_call(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = answer::form_params(&body, query.as_deref())?;
    let param = |name| answer::param(&params, name);
    let parties = Parties {
        direction: Direction::Inbound,
        carrier: Carrier::Plivo,
        carrier_call_id: param("CallUUID"),
        from_number: param("From"),
        to_number: param("To"),
    };
    let agent = query_value(query.as_deref(), "agent_id");
    let handed = match answer::hand_out(&state, agent.as_deref(), parties).await? {
        Answer::Connect(handed) => handed,
        Answer::Refuse(message) => {
            let message = xml_escape(message);
            return Ok(xml_response(&format!("<Speak>{message}</Speak><Hangup/>")));
        }
    };
    let url = format!(
        "{}?token={}",
        state.telephony.media_url(Carrier::Plivo),
        handed.token
    );
    Ok(xml_response(&format!(
        "<Stream bidirectional=\"true\" keepCallAlive=\"true\" contentType=\"audio/x-mulaw;rate=8000\">{}</Stream>",
        xml_escape(&url)
    )))
}
