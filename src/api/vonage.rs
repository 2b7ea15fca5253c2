//! Vonage call set-up: the answer webhook returns an NCCO that connects the call to the engine's
//! websocket (`/media/vonage?token=…`, L16 at 16 kHz). Until phone numbers exist the agent is
//! named in the answer URL configured at Vonage: `https://PUBLIC/carrier/vonage/answer?agent_id=42`.
//! Vonage sends the answer request as GET with `from`, `to` and `uuid` in the query.
//!
//! Signed webhooks: when a Vonage signature secret is configured, the request must carry
//! `Authorization: Bearer <JWT>` signed with it (HS256), issued within five minutes; otherwise
//! it is refused with 403.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::answer::{self, Answer};
use super::error::{ApiError, ErrorBody};
use super::extract::query_value;
use crate::calls::Parties;
use crate::domain::{Carrier, Direction};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(answer))
}

/// Answers an incoming Vonage call with an NCCO that streams it to the agent.
#[utoipa::path(
    get, path = "/carrier/vonage/answer", tag = "carrier",
    params(
        ("agent_id" = i64, Query, description = "The agent that answers (until numbers are assigned)"),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("uuid" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "NCCO: connect to the media websocket, or a spoken refusal when no agent answers or the business's minutes and wallet are used up"),
        (status = 403, description = "The signed JWT is missing or wrong (when a signature secret is configured)", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
async fn answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if let Some(secret) = &state.telephony.vonage_signature_secret {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        if let Err(reason) = verify_signed_request(secret.expose_secret(), bearer.trim(), now) {
            tracing::warn!(reason, "vonage answer webhook with a bad signature");
            return Err(ApiError::Forbidden("invalid Vonage signature".into()));
        }
    }
    let param = |name: &str| query_value(query.as_deref(), name);
    let (uuid, from, to) = (param("uuid"), param("from"), param("to"));
    let parties = Parties {
        direction: Direction::Inbound,
        carrier: Carrier::Vonage,
        carrier_call_id: uuid.as_deref(),
        from_number: from.as_deref(),
        to_number: to.as_deref(),
    };
    let agent = param("agent_id");
    let handed = match answer::hand_out(&state, agent.as_deref(), parties).await? {
        Answer::Connect(handed) => handed,
        Answer::Refuse(message) => return Ok(Json(json!([{ "action": "talk", "text": message }]))),
    };
    let telephony = &state.telephony;
    let uri = format!(
        "{}?token={}",
        telephony.media_url(Carrier::Vonage),
        handed.token
    );
    Ok(Json(json!([{
        "action": "connect",
        "endpoint": [{
            "type": "websocket",
            "uri": uri,
            "content-type": "audio/l16;rate=16000",
            "headers": { "call_id": handed.call.id.to_string() }
        }]
    }])))
}

/// How far a signed request's issue time may be from now.
const SIGNATURE_WINDOW_SECS: i64 = 300;

/// Checks a Vonage signed-webhook JWT: HS256 under `secret`, issued within
/// [`SIGNATURE_WINDOW_SECS`] of `now` (unix seconds).
pub fn verify_signed_request(secret: &str, jwt: &str, now: i64) -> Result<(), &'static str> {
    let (signing_input, signature) = jwt.rsplit_once('.').ok_or("not a JWT")?;
    let (header, claims) = signing_input.split_once('.').ok_or("not a JWT")?;
    if claims.contains('.') {
        return Err("not a JWT");
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Value = decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("unreadable header")?;
    if header["alg"] != "HS256" {
        return Err("not HS256");
    }
    let signature = decode(signature).map_err(|_| "unreadable signature")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "wrong signature")?;
    let claims: Value = decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or("unreadable claims")?;
    let issued = claims["iat"].as_i64().ok_or("no issue time")?;
    if (now - issued).abs() > SIGNATURE_WINDOW_SECS {
        return Err("expired");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, header: &Value, claims: &Value) -> String {
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signing_input = format!("{}.{}", encode(header), encode(claims));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    #[test]
    fn accepts_a_fresh_hs256_token_and_refuses_the_rest() {
        let header = json!({ "alg": "HS256", "typ": "JWT" });
        let claims = json!({ "iat": 1_700_000_000, "jti": "j1", "iss": "Vonage", "api_key": "k" });
        let jwt = sign("s3cret", &header, &claims);
        assert_eq!(verify_signed_request("s3cret", &jwt, 1_700_000_010), Ok(()));
        assert_eq!(
            verify_signed_request("other", &jwt, 1_700_000_010),
            Err("wrong signature")
        );
        assert_eq!(
            verify_signed_request("s3cret", &jwt, 1_700_000_000 + 301),
            Err("expired")
        );
        // A tampered claim breaks the signature.
        let forged_claims =
            URL_SAFE_NO_PAD.encode(json!({ "iat": 1_700_000_000, "jti": "j2" }).to_string());
        let mut parts: Vec<&str> = jwt.split('.').collect();
        parts[1] = &forged_claims;
        assert_eq!(
            verify_signed_request("s3cret", &parts.join("."), 1_700_000_010),
            Err("wrong signature")
        );
        let none = sign("s3cret", &json!({ "alg": "none" }), &claims);
        assert_eq!(
            verify_signed_request("s3cret", &none, 1_700_000_010),
            Err("not HS256")
        );
        assert_eq!(verify_signed_request("s3cret", "", 0), Err("not a JWT"));
        assert_eq!(verify_signed_request("s3cret", "a.b", 0), Err("not a JWT"));
    }
}
