//! Plivo call set-up: the answer URL (POST form or GET query: CallUUID, From, To) answers Plivo
//! XML with a bidirectional `<Stream>` to the engine's media websocket,
//! `/media/plivo?token=…`, µ-law at 8 kHz, kept alive for the whole call. The application's
//! answer URL is `https://PUBLIC/carrier/plivo/answer?agent_id=42` until phone numbers are
//! assigned.
//!
//! Every request must carry Plivo's V3 signature (`X-Plivo-Signature-V3` with
//! `X-Plivo-Signature-V3-Nonce`) under the auth token; without a configured token the webhook is
//! closed ([`super::carrier_auth`]).

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use secrecy::ExposeSecret;
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
        (status = 403, description = "X-Plivo-Signature-V3 or its nonce missing or wrong, or no Plivo auth token configured", body = ErrorBody),
        (status = 429, description = "Too many answer requests from this address; see Retry-After", body = ErrorBody),
    )
)]
async fn answer_call(
    State(state): State<AppState>,
    client: ClientAddr,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    carrier_auth::limit_answers(&state, &client)?;
    let params = answer::form_params(&body, query.as_deref())?;
    let token = state.telephony.plivo_auth_token.as_deref();
    if let Some(token) = carrier_auth::credential(&state, Carrier::Plivo, token, uri.path())? {
        // POSTed parameters are signed after the URL; with GET they are in the URL.
        let post = if body.is_empty() {
            &[][..]
        } else {
            &params[..]
        };
        let url = carrier_auth::public_url(&state, &uri);
        let (nonce, signatures) = carrier_auth::plivo_headers(&headers);
        if let Err(reason) =
            carrier_auth::verify_plivo(token.expose_secret(), &url, post, nonce, signatures)
        {
            tracing::warn!(reason, "plivo webhook with a bad signature");
            return Err(ApiError::Forbidden(format!(
                "invalid Plivo signature: {reason}"
            )));
        }
    }
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
