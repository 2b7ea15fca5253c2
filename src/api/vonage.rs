//! Vonage call set-up: the answer webhook returns an NCCO that connects the call to the engine's
//! websocket (`/media/vonage?token=…`, L16 at 16 kHz). Until phone numbers exist the agent is
//! named in the answer URL configured at Vonage: `https://PUBLIC/carrier/vonage/answer?agent_id=42`.
//! Vonage sends the answer request as GET with `from`, `to` and `uuid` in the query.
//!
//! Signed webhooks: the request must carry `Authorization: Bearer <JWT>` signed with the
//! signature secret (HS256), issued within five minutes, whose `payload_hash` (when present) is
//! the hex SHA-256 of the body and whose `jti` has not been seen before (recorded across nodes in
//! the database, [`crate::store::replays`]); otherwise it is refused with 403. Without a
//! signature secret the webhook is closed ([`super::carrier_auth`]).

use axum::Json;
use axum::extract::{OriginalUri, RawQuery, State};
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
use super::auth::ClientAddr;
use super::carrier_auth::{self, RawBody, SIGNATURE_WINDOW_SECS};
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
        (status = 403, description = "The signed JWT is missing, wrong, stale, for another body or replayed, or no signature secret is configured", body = ErrorBody),
        (status = 429, description = "Too many answer requests from this address; see Retry-After", body = ErrorBody),
        (status = 500, body = ErrorBody),
    )
)]
async fn answer(
    State(state): State<AppState>,
    client: ClientAddr,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    carrier_auth::limit_answers(&state, &client)?;
    let secret = state.telephony.vonage_signature_secret.as_deref();
    if let Some(secret) = carrier_auth::credential(&state, Carrier::Vonage, secret, uri.path())? {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let signed = verify_signed_request(secret.expose_secret(), bearer.trim(), now)
            .and_then(|claims| bound_to_body(claims, &body));
        let signed = match signed {
            Ok(signed) => signed,
            Err(reason) => {
                tracing::warn!(reason, "vonage answer webhook with a bad signature");
                return Err(ApiError::Forbidden("invalid Vonage signature".into()));
            }
        };
        // Used once: a replay within the window (to this node or another) is refused.
        let expires =
            chrono::DateTime::from_timestamp(signed.issued + SIGNATURE_WINDOW_SECS + 1, 0)
                .unwrap_or_else(chrono::Utc::now);
        if !crate::store::replays::first_use(&state.db, "vonage", &signed.jti, expires).await? {
            tracing::warn!(jti = %signed.jti, "vonage answer webhook replayed");
            return Err(ApiError::Forbidden(
                "invalid Vonage signature: the request was already used".into(),
            ));
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

/// What a verified request's JWT says about it.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// The JWT's id: each is accepted once.
    pub jti: String,
    /// When Vonage signed it (unix seconds).
    pub issued: i64,
}

/// Checks a Vonage signed-webhook JWT: HS256 under `secret`, issued within
/// [`SIGNATURE_WINDOW_SECS`] of `now` (unix seconds). Returns its claims.
pub fn verify_signed_request(secret: &str, jwt: &str, now: i64) -> Result<Value, &'static str> {
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
    Ok(claims)
}

/// Binds verified `claims` to the request: a `payload_hash` claim must be the hex SHA-256 of
/// `body`, and a `jti` is required (replays are refused by it).
pub fn bound_to_body(claims: Value, body: &[u8]) -> Result<SignedRequest, &'static str> {
    use sha2::Digest as _;
    if let Some(hash) = claims.get("payload_hash") {
        let hash = hash.as_str().ok_or("unreadable payload_hash")?;
        let actual = hex::encode(Sha256::digest(body));
        if !hash.eq_ignore_ascii_case(&actual) {
            return Err("payload_hash does not match the body");
        }
    }
    let jti = claims["jti"].as_str().filter(|j| !j.is_empty());
    Ok(SignedRequest {
        jti: jti.ok_or("no jti")?.to_owned(),
        issued: claims["iat"].as_i64().ok_or("no issue time")?,
    })
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
        assert_eq!(
            verify_signed_request("s3cret", &jwt, 1_700_000_010),
            Ok(claims.clone())
        );
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

    #[test]
    fn the_claims_bind_the_body_and_carry_a_jti() {
        // SHA-256 of the empty body (a GET), and of "abc" (FIPS 180-2's example).
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let claims = |hash: &str| json!({ "iat": 5, "jti": "j1", "payload_hash": hash });
        let signed = SignedRequest {
            jti: "j1".into(),
            issued: 5,
        };
        assert_eq!(bound_to_body(claims(empty), b""), Ok(signed));
        assert!(bound_to_body(claims(&abc.to_uppercase()), b"abc").is_ok());
        assert_eq!(
            bound_to_body(claims(abc), b"abd"),
            Err("payload_hash does not match the body")
        );
        assert_eq!(
            bound_to_body(claims(empty), b"{}"),
            Err("payload_hash does not match the body")
        );
        assert!(bound_to_body(json!({ "iat": 5, "jti": "j1" }), b"anything").is_ok());
        assert_eq!(bound_to_body(json!({ "iat": 5 }), b""), Err("no jti"));
        assert_eq!(
            bound_to_body(json!({ "iat": 5, "jti": "" }), b""),
            Err("no jti")
        );
    }
}
