//! Carriers' webhook requests, signed as each carrier signs them, written here from the
//! carriers' documentation independently of the engine's verifiers: Twilio's
//! `X-Twilio-Signature`, Telnyx's Ed25519 `telnyx-signature-ed25519`, Plivo's
//! `X-Plivo-Signature-V3` and Vonage's signed JWT.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use callgenius::config::Config;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::helpers::{TestApp, spawn_app_with};

pub const TWILIO_TOKEN: &str = "twilio-test-token";
pub const PLIVO_TOKEN: &str = "plivo-test-token";
pub const VONAGE_SECRET: &str = "vonage-test-secret";

/// The test Telnyx account's key pair (the private half stays with "Telnyx", the test).
pub fn telnyx_keys() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]).expect("a valid seed")
}

/// Configures every carrier's webhook credential, as a production engine would be.
pub fn configure(c: &mut Config) {
    c.twilio_auth_token = Some(TWILIO_TOKEN.to_owned().into());
    c.vonage_signature_secret = Some(VONAGE_SECRET.to_owned().into());
    c.carrier_webhooks.plivo_auth_token = Some(PLIVO_TOKEN.to_owned().into());
    let public = telnyx_keys().public_key().as_ref().to_vec();
    c.carrier_webhooks.telnyx_public_key =
        callgenius::config::parse_ed25519_public_key(&STANDARD.encode(public));
}

/// An engine with every carrier's credential configured.
pub async fn spawn_signed_app() -> TestApp {
    spawn_app_with(configure).await
}

fn owned(form: &[(&str, &str)]) -> Vec<(String, String)> {
    form.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Twilio: base64 HMAC-SHA1 under the auth token of the URL, then each POST parameter's name
/// and value, sorted by name.
pub fn twilio_signature(token: &str, url: &str, form: &[(&str, &str)]) -> String {
    let mut sorted = owned(form);
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts `form` to `path` (with its query) as Twilio does.
pub fn twilio_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", app.base);
    let signature = twilio_signature(TWILIO_TOKEN, &url, form);
    app.client
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(form)
}

/// Telnyx: `telnyx-timestamp` and the base64 Ed25519 signature of `{timestamp}|{body}`.
pub fn telnyx_headers(keys: &Ed25519KeyPair, timestamp: i64, body: &[u8]) -> [(String, String); 2] {
    let mut message = format!("{timestamp}|").into_bytes();
    message.extend_from_slice(body);
    [
        ("telnyx-timestamp".into(), timestamp.to_string()),
        (
            "telnyx-signature-ed25519".into(),
            STANDARD.encode(keys.sign(&message).as_ref()),
        ),
    ]
}

/// Posts `form` to `path` as Telnyx does, signed now.
pub fn telnyx_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = serde_urlencoded::to_string(form).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut request = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone());
    for (name, value) in telnyx_headers(&telnyx_keys(), now, body.as_bytes()) {
        request = request.header(name, value);
    }
    request
}

/// Plivo V3: base64 HMAC-SHA256 under the auth token of the URL with its query sorted (for a
/// POST with parameters: `?`, the sorted query and `.` when there is one, then each POST
/// parameter's name and value, sorted), then `.` and the nonce.
pub fn plivo_signature(token: &str, url: &str, post: &[(&str, &str)], nonce: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let sorted = |pairs: Vec<(String, String)>| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k).or_default().push(v);
        }
        let mut out = Vec::new();
        for (k, mut values) in map {
            values.sort();
            out.extend(values.into_iter().map(|v| (k.clone(), v)));
        }
        out
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let query = sorted(query)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut text = base.to_owned();
    if post.is_empty() {
        if !query.is_empty() {
            text = format!("{text}?{query}");
        }
    } else {
        text.push('?');
        if !query.is_empty() {
            text = format!("{text}{query}.");
        }
        for (k, v) in sorted(owned(post)) {
            text.push_str(&k);
            text.push_str(&v);
        }
    }
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(format!("{text}.{nonce}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Posts `form` to `path` as Plivo does.
pub fn plivo_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", app.base);
    let nonce = nonce();
    let signature = plivo_signature(PLIVO_TOKEN, &url, form, &nonce);
    app.client
        .post(&url)
        .header("X-Plivo-Signature-V3", signature)
        .header("X-Plivo-Signature-V3-Nonce", nonce)
        .form(form)
}

/// GETs `path` (its parameters in the query) as Plivo does.
pub fn plivo_get(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", app.base);
    let nonce = nonce();
    let signature = plivo_signature(PLIVO_TOKEN, &url, &[], &nonce);
    app.client
        .get(&url)
        .header("X-Plivo-Signature-V3", signature)
        .header("X-Plivo-Signature-V3-Nonce", nonce)
}

/// A Vonage signed-webhook JWT (HS256) with `claims`.
pub fn vonage_jwt(secret: &str, claims: &Value) -> String {
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        encode(&json!({ "alg": "HS256", "typ": "JWT" })),
        encode(claims)
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The claims Vonage signs for a request with `body`, issued at `iat` with id `jti`.
pub fn vonage_claims(iat: i64, jti: &str, body: &[u8]) -> Value {
    json!({
        "iat": iat, "jti": jti, "iss": "Vonage", "application_id": "app-1",
        "payload_hash": hex::encode(sha2::Sha256::digest(body)),
    })
}

/// GETs `path` as Vonage does (a fresh JWT for the empty body).
pub fn vonage_get(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    let claims = vonage_claims(chrono::Utc::now().timestamp(), &nonce(), b"");
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(vonage_jwt(VONAGE_SECRET, &claims))
}

#[test]
fn the_test_signers_match_the_carriers_documented_examples() {
    // Twilio's security documentation.
    let form = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675310"),
        ("Digits", "1234"),
        ("From", "+14158675310"),
        ("To", "+18005551212"),
    ];
    assert_eq!(
        twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &form
        ),
        "GvWf1cFY/Q7PnoempGyD5oXAezc="
    );
    // Plivo's SDK test suite (POST without a query).
    let params = [
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
    ];
    assert_eq!(
        plivo_signature(
            "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4",
            "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml",
            &params,
            "31627761595286130198"
        ),
        "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="
    );
}
