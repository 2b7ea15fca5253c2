//! Who may call the carrier webhooks: each carrier's own signature, checked before anything is
//! read from or written to the database.
//!
//! - Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 under the auth token over the full URL and
//!   the POST parameters sorted by name, each name followed by its value
//!   ([`super::twilio::valid_signature`]).
//! - Telnyx: `telnyx-signature-ed25519`, a base64 Ed25519 signature under the account's public
//!   key over `{telnyx-timestamp}|{raw body}`; a timestamp more than five minutes from now is
//!   refused ([`verify_telnyx`]).
//! - Plivo: `X-Plivo-Signature-V3` (one or more comma-separated signatures) with
//!   `X-Plivo-Signature-V3-Nonce`: base64 HMAC-SHA256 under the auth token over the URL with its
//!   query sorted, the POST parameters sorted and concatenated, then `.` and the nonce
//!   ([`plivo_v3_signed_text`]).
//! - Vonage: `Authorization: Bearer` JWT, HS256 under the signature secret, issued within five
//!   minutes, whose `payload_hash` (when present) is the body's SHA-256 and whose `jti` is used
//!   once ([`super::vonage`], [`crate::store::replays`]).
//!
//! A carrier whose credential is not configured has its webhooks closed (403 naming the
//! setting), unless the development switch `insecure_carrier_webhooks` opens them, which is
//! logged at start-up and on every such request. Answer webhooks are also limited per client
//! address ([`limit_answers`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::AppState;
use super::auth::ClientAddr;
use super::error::ApiError;
use super::ratelimit::Decision;
use crate::domain::Carrier;

/// How far a signed request's time may be from now, in seconds.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

/// The setting that configures `carrier`'s webhook credential (environment variable and file
/// key).
fn setting(carrier: Carrier) -> (&'static str, &'static str, &'static str) {
    match carrier {
        Carrier::Twilio => ("Twilio", "TWILIO_AUTH_TOKEN", "twilio_auth_token"),
        Carrier::Telnyx => ("Telnyx", "TELNYX_PUBLIC_KEY", "telnyx_public_key"),
        Carrier::Plivo => ("Plivo", "PLIVO_AUTH_TOKEN", "plivo_auth_token"),
        Carrier::Vonage | Carrier::Web => (
            "Vonage",
            "VONAGE_SIGNATURE_SECRET",
            "vonage_signature_secret",
        ),
    }
}

/// `carrier`'s credential when configured. Without one the webhook is closed (403 naming the
/// setting), or, under the development switch, open: `Ok(None)`, logged as a warning.
pub fn credential<'a, T: ?Sized>(
    state: &AppState,
    carrier: Carrier,
    credential: Option<&'a T>,
    path: &str,
) -> Result<Option<&'a T>, ApiError> {
    if let Some(credential) = credential {
        return Ok(Some(credential));
    }
    let (name, env, key) = setting(carrier);
    if state.telephony.insecure_carrier_webhooks {
        tracing::warn!(
            carrier = name,
            path,
            "unverified carrier webhook accepted: insecure_carrier_webhooks is on and {env} is not set"
        );
        return Ok(None);
    }
    Err(ApiError::Forbidden(format!(
        "{name} webhooks are closed: set {env} (or {key} in the config file)"
    )))
}

/// Logs, once at start-up, every carrier whose webhooks the development switch leaves open.
pub fn warn_if_insecure(config: &crate::config::Config) {
    if !config.carrier_webhooks.insecure {
        return;
    }
    let open: Vec<&str> = [
        (Carrier::Twilio, config.twilio_auth_token.is_none()),
        (
            Carrier::Telnyx,
            config.carrier_webhooks.telnyx_public_key.is_none(),
        ),
        (
            Carrier::Plivo,
            config.carrier_webhooks.plivo_auth_token.is_none(),
        ),
        (Carrier::Vonage, config.vonage_signature_secret.is_none()),
    ]
    .into_iter()
    .filter(|(_, unset)| *unset)
    .map(|(carrier, _)| setting(carrier).0)
    .collect();
    tracing::warn!(
        open = ?open,
        "insecure_carrier_webhooks is on: these carriers' webhooks accept unsigned requests; \
         never use it in production"
    );
}

/// Charges one answer-webhook request to the client's address: 429 with `Retry-After` past the
/// limit.
pub fn limit_answers(state: &AppState, ClientAddr(ip): &ClientAddr) -> Result<(), ApiError> {
    match state.limiters.check_carrier_address(*ip) {
        Decision::Allowed { .. } => Ok(()),
        Decision::Limited {
            retry_after_secs, ..
        } => {
            tracing::warn!(%ip, "carrier answer webhooks rate limited");
            Err(ApiError::RateLimited { retry_after_secs })
        }
    }
}

/// The full URL a carrier requested, as it was configured at the carrier: the public URL, the
/// path and the query.
pub fn public_url(state: &AppState, uri: &axum::http::Uri) -> String {
    format!(
        "{}{}",
        state.telephony.public_url,
        uri.path_and_query().map_or("", |p| p.as_str())
    )
}

/// A request's raw body, for signatures over it, on routes whose description has no request
/// body (Vonage answers with GET).
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
    }
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
}

/// Checks Telnyx's `telnyx-signature-ed25519` over `{telnyx-timestamp}|{body}` under
/// `public_key`, and that the timestamp is within [`SIGNATURE_WINDOW_SECS`] of `now`.
pub fn verify_telnyx(
    public_key: &[u8; 32],
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    let timestamp = header(headers, "telnyx-timestamp");
    let signature = header(headers, "telnyx-signature-ed25519");
    if timestamp.is_empty() || signature.is_empty() {
        return Err("missing telnyx-signature-ed25519 or telnyx-timestamp");
    }
    let signed_at: i64 = timestamp.parse().map_err(|_| "unreadable timestamp")?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| "unreadable signature")?;
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'|');
    message.extend_from_slice(body);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &signature)
        .map_err(|_| "wrong signature")?;
    if (now - signed_at).abs() > SIGNATURE_WINDOW_SECS {
        return Err("stale timestamp");
    }
    Ok(())
}

/// The text Plivo signs (V3) before `.{nonce}`: for GET, the URL with its query parameters
/// sorted by name and value (`?a=1&b=2`); for POST with parameters, the URL, `?`, the sorted
/// query and a `.` when there is one, then every POST parameter as name and value, sorted.
/// Values are compared decoded, as Plivo's own validators do.
pub fn plivo_v3_signed_text(url: &str, post: &[(String, String)]) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let sorted = |pairs: Vec<(String, String)>| {
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in pairs {
            grouped.entry(name).or_default().push(value);
        }
        grouped.into_iter().flat_map(|(name, mut values)| {
            values.sort();
            values.into_iter().map(move |value| (name.clone(), value))
        })
    };
    let query_pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let query: Vec<String> = sorted(query_pairs)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let query = query.join("&");
    let mut text = base.to_owned();
    if post.is_empty() {
        if !query.is_empty() {
            text.push('?');
            text.push_str(&query);
        }
        return text;
    }
    text.push('?');
    if !query.is_empty() {
        text.push_str(&query);
        text.push('.');
    }
    for (name, value) in sorted(post.to_vec()) {
        text.push_str(&name);
        text.push_str(&value);
    }
    text
}

/// Checks Plivo's V3 signature header (one or more comma-separated signatures, any of which
/// may match) for the request to `url` with `post` parameters.
pub fn verify_plivo(
    auth_token: &str,
    url: &str,
    post: &[(String, String)],
    nonce: &str,
    signatures: &str,
) -> Result<(), &'static str> {
    if nonce.is_empty() || signatures.trim().is_empty() {
        return Err("missing X-Plivo-Signature-V3 or its nonce");
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(plivo_v3_signed_text(url, post).as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    let matched = signatures
        .split(',')
        .filter_map(|candidate| STANDARD.decode(candidate.trim()).ok())
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err("wrong signature")
    }
}

/// Plivo's headers for [`verify_plivo`]: (nonce, signatures).
pub fn plivo_headers(headers: &axum::http::HeaderMap) -> (&str, &str) {
    (
        header(headers, "x-plivo-signature-v3-nonce"),
        header(headers, "x-plivo-signature-v3"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The parameters of the V3 examples in Plivo's own SDK test suite.
    fn plivo_example_params() -> Vec<(String, String)> {
        pairs(&[
            ("Direction", "outbound"),
            ("From", "19792014278"),
            ("ALegUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
            ("CallStatus", "in-progress"),
            ("BillRate", "0.002"),
            ("ParentAuthID", "MANWVLYTK4ZWU1YTY4QA"),
            (
                "To",
                "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
            ),
            ("ALegRequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
            ("CallUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
            ("RequestUUID", "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36"),
            (
                "SIP-H-To",
                "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1",
            ),
            ("SessionStart", "2020-04-08 11:34:33.238707"),
            ("Event", "StartApp"),
        ])
    }

    const PLIVO_TOKEN: &str = "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4";
    const PLIVO_NONCE: &str = "31627761595286130198";
    const PLIVO_URL: &str = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml";

    /// For GET, Plivo's parameters ride in the query.
    fn with_query(url: &str, params: &[(String, String)]) -> String {
        let query = serde_urlencoded::to_string(params).unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{query}")
    }

    #[test]
    fn plivo_v3_matches_plivos_documented_examples() {
        let params = plivo_example_params();
        let post_with_query = format!("{PLIVO_URL}/?a=b&c=d");
        let cases = [
            (
                post_with_query.clone(),
                params.clone(),
                "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c=",
            ),
            (
                with_query(&post_with_query, &params),
                Vec::new(),
                "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ=",
            ),
            (
                PLIVO_URL.to_owned(),
                params.clone(),
                "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0=",
            ),
            (
                with_query(PLIVO_URL, &params),
                Vec::new(),
                "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc=",
            ),
        ];
        for (url, post, signature) in &cases {
            assert_eq!(
                verify_plivo(PLIVO_TOKEN, url, post, PLIVO_NONCE, signature),
                Ok(()),
                "{url}"
            );
            // Several signatures (one per active auth token): any may match.
            let several = format!("AAAA,{signature}");
            assert_eq!(
                verify_plivo(PLIVO_TOKEN, url, post, PLIVO_NONCE, &several),
                Ok(())
            );
            assert_eq!(
                verify_plivo(PLIVO_TOKEN, url, post, "1", signature),
                Err("wrong signature"),
                "another nonce"
            );
            assert_eq!(
                verify_plivo("other", url, post, PLIVO_NONCE, signature),
                Err("wrong signature")
            );
        }
        let mut tampered = params.clone();
        tampered[1].1 = "19792014279".into();
        assert_eq!(
            verify_plivo(PLIVO_TOKEN, PLIVO_URL, &tampered, PLIVO_NONCE, cases[2].2),
            Err("wrong signature")
        );
        assert!(verify_plivo(PLIVO_TOKEN, PLIVO_URL, &params, "", cases[2].2).is_err());
        assert!(verify_plivo(PLIVO_TOKEN, PLIVO_URL, &params, PLIVO_NONCE, "").is_err());
    }

    #[test]
    fn plivo_v3_text_sorts_the_query_and_the_post_parameters() {
        assert_eq!(
            plivo_v3_signed_text("https://e.x/a?z=1&b=2&b=1", &[]),
            "https://e.x/a?b=1&b=2&z=1"
        );
        assert_eq!(
            plivo_v3_signed_text("https://e.x/a", &pairs(&[("To", "2"), ("From", "1")])),
            "https://e.x/a?From1To2"
        );
        assert_eq!(
            plivo_v3_signed_text(
                "https://e.x/a?agent_id=4",
                &pairs(&[("To", "2"), ("From", "1")])
            ),
            "https://e.x/a?agent_id=4.From1To2"
        );
        assert_eq!(plivo_v3_signed_text("https://e.x/a", &[]), "https://e.x/a");
    }

    fn telnyx_headers(timestamp: &str, signature: &[u8]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("telnyx-timestamp", timestamp.parse().unwrap());
        headers.insert(
            "telnyx-signature-ed25519",
            STANDARD.encode(signature).parse().unwrap(),
        );
        headers
    }

    #[test]
    fn telnyx_checks_the_ed25519_signature_over_timestamp_and_body() {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let body = b"CallSid=v3%3A1&From=%2B1555";
        let now = 1_700_000_000;
        let signed = pair.sign(
            format!("{now}|")
                .as_bytes()
                .iter()
                .chain(body)
                .copied()
                .collect::<Vec<u8>>()
                .as_slice(),
        );
        let headers = telnyx_headers(&now.to_string(), signed.as_ref());
        assert_eq!(verify_telnyx(&public, &headers, body, now + 10), Ok(()));
        assert_eq!(
            verify_telnyx(&public, &headers, b"CallSid=v3%3A2", now),
            Err("wrong signature")
        );
        assert_eq!(
            verify_telnyx(&public, &headers, body, now + 301),
            Err("stale timestamp")
        );
        // The timestamp is signed: moving it forward breaks the signature.
        let moved = telnyx_headers(&(now + 600).to_string(), signed.as_ref());
        assert_eq!(
            verify_telnyx(&public, &moved, body, now + 600),
            Err("wrong signature")
        );
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        let other: [u8; 32] = other.public_key().as_ref().try_into().unwrap();
        assert_eq!(
            verify_telnyx(&other, &headers, body, now),
            Err("wrong signature")
        );
        assert!(verify_telnyx(&public, &axum::http::HeaderMap::new(), body, now).is_err());
    }

    #[test]
    fn telnyx_public_keys_are_read_raw_or_as_spki() {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let raw = pair.public_key().as_ref().to_vec();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend(&raw);
        let parse = crate::config::parse_ed25519_public_key;
        assert_eq!(parse(&STANDARD.encode(&raw)).unwrap().to_vec(), raw);
        assert_eq!(parse(&STANDARD.encode(&spki)).unwrap().to_vec(), raw);
        assert_eq!(parse("not base64"), None);
        assert_eq!(parse(&STANDARD.encode([1u8; 31])), None);
    }
}
