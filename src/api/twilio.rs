//! Twilio call set-up: the voice webhook answers TwiML that connects the call to the engine's
//! media websocket, carrying a stream token bound to the call, its tenant and its agent.
//!
//! The agent is the one the dialled number is assigned to, or the one the webhook URL names
//! (`https://PUBLIC/carrier/twilio/voice?agent_id=42`). The status callback records the
//! progress of the dialler's outbound calls. Both require `X-Twilio-Signature` (base64
//! HMAC-SHA1 under the auth token over the full URL plus the POST parameters sorted by name,
//! each name followed by its value), checked before the database is touched; without an auth
//! token they are closed ([`super::carrier_auth`]).

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha1::Sha1;
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
    OpenApiRouter::new()
        .routes(routes!(voice))
        .routes(routes!(status))
}

/// Refuses a request whose `X-Twilio-Signature` does not match (403), and every request when no
/// auth token is configured, unless the development switch opens the webhooks.
fn check_signature(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    let token = state.telephony.twilio_auth_token.as_deref();
    let Some(auth_token) = carrier_auth::credential(state, Carrier::Twilio, token, uri.path())?
    else {
        return Ok(());
    };
    let url = carrier_auth::public_url(state, uri);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !valid_signature(auth_token.expose_secret(), &url, params, signature) {
        tracing::warn!(path = uri.path(), "twilio webhook with a bad signature");
        return Err(ApiError::Forbidden("invalid X-Twilio-Signature".into()));
    }
    Ok(())
}

/// Progress of an outbound call the dialler placed (Twilio's status callback: initiated,
/// ringing, answered, completed, busy, no-answer, failed).
#[utoipa::path(
    post, path = "/carrier/twilio/status", tag = "carrier",
    params(("call_id" = i64, Query, description = "The engine's call")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's status parameters (CallSid, CallStatus, AnsweredBy, CallDuration, …)"),
    responses(
        (status = 204, description = "Recorded"),
        (status = 403, description = "X-Twilio-Signature missing or wrong, or no Twilio auth token configured", body = ErrorBody),
        (status = 404, description = "No such outbound call", body = ErrorBody),
    )
)]
async fn status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::http::StatusCode, ApiError> {
    // Progress changes outbound calls' state: only signed callbacks count, checked before the
    // call is looked up.
    let params = answer::form_params(&body, None)?;
    check_signature(&state, &uri, &headers, &params)?;
    let call = query_value(uri.query(), "call_id")
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| ApiError::NotFound("no such outbound call".into()))?;
    // Only calls the dialler placed, and only the Twilio call placed for them.
    let record = crate::store::calls::get_unscoped(&state.db, crate::domain::CallId(call))
        .await
        .map_err(|_| ApiError::NotFound("no such outbound call".into()))?;
    let sid = answer::param(&params, "CallSid");
    if record.direction != "outbound"
        || (record.carrier_call_id.is_some() && record.carrier_call_id.as_deref() != sid)
    {
        return Err(ApiError::NotFound("no such outbound call".into()));
    }
    let form: std::collections::HashMap<String, String> = params.into_iter().collect();
    if let Some(progress) = crate::carrier::twilio::parse_status(&form) {
        crate::calls::outbound::apply_progress(&state.db, call, progress).await?;
    }
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Whether `signature` is Twilio's signature of `url` and `params` under `auth_token`.
pub fn valid_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    match STANDARD.decode(signature.trim()) {
        Ok(tag) => mac.verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// Answers an incoming Twilio call with TwiML that streams it to the agent.
#[utoipa::path(
    post, path = "/carrier/twilio/voice", tag = "carrier",
    params(("agent_id" = Option<i64>, Query, description = "The agent that answers; without it, the agent the dialled number (To) is assigned to")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's call parameters (CallSid, From, To, …)"),
    responses(
        (status = 200, description = "TwiML: <Connect><Stream> with the stream token, or a spoken refusal when no agent answers or the business's minutes and wallet are used up", content_type = "text/xml"),
        (status = 403, description = "X-Twilio-Signature missing or wrong, or no Twilio auth token configured", body = ErrorBody),
        (status = 429, description = "Too many answer requests from this address; see Retry-After", body = ErrorBody),
    )
)]
async fn voice(
    State(state): State<AppState>,
    client: ClientAddr,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    carrier_auth::limit_answers(&state, &client)?;
    let params = answer::form_params(&body, None)?;
    check_signature(&state, &uri, &headers, &params)?;
    let telephony = &state.telephony;
    let param = |name| answer::param(&params, name);
    let parties = Parties {
        direction: Direction::Inbound,
        carrier: Carrier::Twilio,
        carrier_call_id: param("CallSid"),
        from_number: param("From"),
        to_number: param("To"),
    };
    let agent = query_value(uri.query(), "agent_id");
    let handed = match answer::hand_out(&state, agent.as_deref(), parties).await? {
        Answer::Connect(handed) => handed,
        Answer::Refuse(message) => {
            let message = xml_escape(message);
            return Ok(xml_response(&format!("<Say>{message}</Say><Hangup/>")));
        }
    };
    let stream = format!(
        "<Connect><Stream url=\"{}\"><Parameter name=\"token\" value=\"{}\"/><Parameter name=\"call_id\" value=\"{}\"/></Stream></Connect>",
        xml_escape(&telephony.media_url(Carrier::Twilio)),
        xml_escape(&handed.token),
        handed.call.id
    );
    Ok(xml_response(&stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from Twilio's security documentation.
    #[test]
    fn validates_twilios_documented_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://example.com/myapp.php?foo=1&bar=2";
        let token = "12345";
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(b"https://example.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212");
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        assert!(valid_signature(token, url, &params, &expected));
        assert!(!valid_signature("other", url, &params, &expected));
        assert!(!valid_signature(
            token,
            "https://example.com/other",
            &params,
            &expected
        ));
        assert!(!valid_signature(token, url, &params[1..], &expected));
        assert!(!valid_signature(token, url, &params, "not base64!"));
    }
}
