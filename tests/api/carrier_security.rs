//! The carrier webhooks as an attacker sees them, over real HTTP and a real websocket: unsigned,
//! forged, stale, replayed and tampered requests for every carrier, carriers without
//! credentials, floods from one address, and a stream that claims another call's id.

use std::time::Duration;

use aws_lc_rs::signature::Ed25519KeyPair;
use futures_util::SinkExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::carrier_signing::{
    self as signing, PLIVO_TOKEN, TWILIO_TOKEN, VONAGE_SECRET, plivo_signature, telnyx_headers,
    twilio_signature, vonage_claims, vonage_jwt,
};
use crate::helpers::{Session, TestApp, spawn_app_with};

/// Every call row in the engine's database, whoever's.
async fn calls_in_database(app: &TestApp) -> i64 {
    let db = callgenius::store::Db::connect(&app.database_url, 1)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(db.pool())
        .await
        .unwrap();
    db.close().await;
    count
}

async fn refused(request: reqwest::RequestBuilder, label: &str) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{label}");
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].is_string(), "{label}: {body}");
    body
}

async fn business(app: &TestApp, email: &str) -> (Session, i64) {
    let s = app.register(email, "Target").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    (s, agent)
}

#[tokio::test]
async fn unsigned_forged_and_tampered_twilio_webhooks_are_refused_and_create_no_call() {
    let app = signing::spawn_signed_app().await;
    let (_, agent) = business(&app, "twilio-attack@example.com").await;
    let path = format!("/carrier/twilio/voice?agent_id={agent}");
    let url = format!("{}{path}", app.base);
    let form = [
        ("CallSid", "CA1"),
        ("From", "+15550001"),
        ("To", "+15550002"),
    ];

    refused(app.client.post(&url).form(&form), "unsigned").await;
    let forged = twilio_signature("not-the-token", &url, &form);
    refused(
        app.client
            .post(&url)
            .header("X-Twilio-Signature", forged)
            .form(&form),
        "signed with another token",
    )
    .await;
    // A genuine signature for another agent's URL does not carry over to this one.
    let other_url = format!("{}/carrier/twilio/voice?agent_id={}", app.base, agent + 1);
    let elsewhere = twilio_signature(TWILIO_TOKEN, &other_url, &form);
    refused(
        app.client
            .post(&url)
            .header("X-Twilio-Signature", elsewhere)
            .form(&form),
        "signed for another URL",
    )
    .await;
    let genuine = twilio_signature(TWILIO_TOKEN, &url, &form);
    refused(
        app.client
            .post(&url)
            .header("X-Twilio-Signature", genuine)
            .form(&[
                ("CallSid", "CA2"),
                ("From", "+15550001"),
                ("To", "+15550002"),
            ]),
        "tampered body",
    )
    .await;
    // The status callback too: unsigned progress for an outbound call is refused before the
    // call is looked up.
    refused(
        app.client
            .post(format!("{}/carrier/twilio/status?call_id=1", app.base))
            .form(&[("CallSid", "CA1"), ("CallStatus", "completed")]),
        "unsigned status",
    )
    .await;
    assert_eq!(calls_in_database(&app).await, 0);

    let ok = signing::twilio_post(&app, &path, &form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("<Stream"));
    assert_eq!(calls_in_database(&app).await, 1);
}

#[tokio::test]
async fn unsigned_forged_and_stale_telnyx_webhooks_are_refused_and_create_no_call() {
    let app = signing::spawn_signed_app().await;
    let (_, agent) = business(&app, "telnyx-attack@example.com").await;
    let url = format!("{}/carrier/telnyx/voice?agent_id={agent}", app.base);
    let body = "CallSid=v3%3Aattack&From=%2B15550001&To=%2B15550002";
    let post = |headers: [(String, String); 2]| {
        let mut request = app
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
    };
    let now = chrono::Utc::now().timestamp();
    let keys = signing::telnyx_keys();
    let attacker = Ed25519KeyPair::from_seed_unchecked(&[1u8; 32]).unwrap();

    let unsigned = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    refused(unsigned, "unsigned").await;
    refused(
        post(telnyx_headers(&attacker, now, body.as_bytes())),
        "another key",
    )
    .await;
    let stale = refused(
        post(telnyx_headers(&keys, now - 600, body.as_bytes())),
        "ten minutes old",
    )
    .await;
    assert!(
        stale["message"].as_str().unwrap().contains("stale"),
        "{stale}"
    );
    refused(
        post(telnyx_headers(&keys, now + 600, body.as_bytes())),
        "ten minutes ahead",
    )
    .await;
    refused(
        post(telnyx_headers(
            &keys,
            now,
            b"CallSid=v3%3Aother&From=%2B15550001&To=%2B15550002",
        )),
        "signed for another body",
    )
    .await;
    assert_eq!(calls_in_database(&app).await, 0);

    let ok = post(telnyx_headers(&keys, now, body.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("<Connect><Stream"));
    assert_eq!(calls_in_database(&app).await, 1);
}

#[tokio::test]
async fn plivo_webhooks_with_no_wrong_or_mismatched_signature_or_nonce_are_refused() {
    let app = signing::spawn_signed_app().await;
    let (_, agent) = business(&app, "plivo-attack@example.com").await;
    let url = format!("{}/carrier/plivo/answer?agent_id={agent}", app.base);
    let form = [
        ("CallUUID", "p-1"),
        ("From", "15550001"),
        ("To", "15550002"),
    ];
    let post = |signature: String, nonce: &str| {
        app.client
            .post(&url)
            .header("X-Plivo-Signature-V3", signature)
            .header("X-Plivo-Signature-V3-Nonce", nonce.to_owned())
            .form(&form)
    };

    refused(app.client.post(&url).form(&form), "unsigned").await;
    let genuine = plivo_signature(PLIVO_TOKEN, &url, &form, "nonce-1");
    refused(
        app.client
            .post(&url)
            .header("X-Plivo-Signature-V3", genuine.clone())
            .form(&form),
        "no nonce",
    )
    .await;
    refused(post(genuine.clone(), "nonce-2"), "the nonce does not match").await;
    refused(
        post(
            plivo_signature("not-the-token", &url, &form, "nonce-1"),
            "nonce-1",
        ),
        "another token",
    )
    .await;
    refused(
        app.client
            .post(&url)
            .header("X-Plivo-Signature-V3", genuine.clone())
            .header("X-Plivo-Signature-V3-Nonce", "nonce-1")
            .form(&[
                ("CallUUID", "p-2"),
                ("From", "15550001"),
                ("To", "15550002"),
            ]),
        "tampered body",
    )
    .await;
    // GET: the parameters are in the signed URL; another CallUUID breaks it.
    let get_url = format!("{url}&CallUUID=p-3&From=1&To=2");
    let get_signature = plivo_signature(PLIVO_TOKEN, &get_url, &[], "nonce-3");
    refused(
        app.client
            .get(format!("{url}&CallUUID=p-4&From=1&To=2"))
            .header("X-Plivo-Signature-V3", get_signature.clone())
            .header("X-Plivo-Signature-V3-Nonce", "nonce-3"),
        "GET with another query",
    )
    .await;
    assert_eq!(calls_in_database(&app).await, 0);

    // Several signatures (one per active auth token): one matching is enough.
    let ok = post(format!("AAAA,{genuine}"), "nonce-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = app
        .client
        .get(&get_url)
        .header("X-Plivo-Signature-V3", get_signature)
        .header("X-Plivo-Signature-V3-Nonce", "nonce-3")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("<Stream"));
    assert_eq!(calls_in_database(&app).await, 2);
}

#[tokio::test]
async fn vonage_webhooks_that_are_replayed_stale_or_for_another_body_are_refused() {
    let app = signing::spawn_signed_app().await;
    let (_, agent) = business(&app, "vonage-attack@example.com").await;
    let url = format!(
        "{}/carrier/vonage/answer?agent_id={agent}&uuid=v-1&from=1&to=2",
        app.base
    );
    let get =
        |claims: &Value, secret: &str| app.client.get(&url).bearer_auth(vonage_jwt(secret, claims));
    let now = chrono::Utc::now().timestamp();

    refused(app.client.get(&url), "unsigned").await;
    refused(
        get(&vonage_claims(now, "j-forged", b""), "not-the-secret"),
        "another secret",
    )
    .await;
    refused(
        get(&vonage_claims(now - 3600, "j-stale", b""), VONAGE_SECRET),
        "an hour old",
    )
    .await;
    refused(
        get(
            &vonage_claims(now, "j-body", b"{\"uuid\":\"other\"}"),
            VONAGE_SECRET,
        ),
        "payload_hash of another body",
    )
    .await;
    refused(
        get(&json!({ "iat": now, "iss": "Vonage" }), VONAGE_SECRET),
        "no jti",
    )
    .await;
    assert_eq!(calls_in_database(&app).await, 0);

    let claims = vonage_claims(now, "j-once", b"");
    let first = get(&claims, VONAGE_SECRET).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let ncco: Value = first.json().await.unwrap();
    assert_eq!(ncco[0]["action"], "connect", "{ncco}");
    // The very same signed request again: refused, and no second call.
    let replay = refused(get(&claims, VONAGE_SECRET), "replayed jti").await;
    assert!(
        replay["message"].as_str().unwrap().contains("already used"),
        "{replay}"
    );
    // A replay to another engine of the same deployment (same database) is refused too.
    let db_url = app.database_url.clone();
    let twin = spawn_app_with(move |c| {
        signing::configure(c);
        c.database_url = Some(db_url);
    })
    .await;
    let twin_url = url.replace(&app.base, &twin.base);
    let replay = twin
        .client
        .get(&twin_url)
        .bearer_auth(vonage_jwt(VONAGE_SECRET, &claims))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls_in_database(&app).await, 1);
}

#[tokio::test]
async fn without_credentials_every_carriers_webhooks_are_closed_naming_the_setting() {
    let app = crate::helpers::spawn_app().await;
    let (_, agent) = business(&app, "closed@example.com").await;
    let base = &app.base;
    let form = [
        ("CallSid", "CA1"),
        ("From", "+15550001"),
        ("To", "+15550002"),
    ];
    for (request, setting) in [
        (
            app.client
                .post(format!("{base}/carrier/twilio/voice?agent_id={agent}"))
                .form(&form),
            "TWILIO_AUTH_TOKEN",
        ),
        (
            app.client
                .post(format!("{base}/carrier/twilio/status?call_id=1"))
                .form(&form),
            "TWILIO_AUTH_TOKEN",
        ),
        (
            app.client
                .post(format!("{base}/carrier/telnyx/voice?agent_id={agent}"))
                .form(&form),
            "TELNYX_PUBLIC_KEY",
        ),
        (
            app.client
                .post(format!("{base}/carrier/plivo/answer?agent_id={agent}"))
                .form(&form),
            "PLIVO_AUTH_TOKEN",
        ),
        (
            app.client.get(format!(
                "{base}/carrier/plivo/answer?agent_id={agent}&CallUUID=p&From=1&To=2"
            )),
            "PLIVO_AUTH_TOKEN",
        ),
        (
            app.client.get(format!(
                "{base}/carrier/vonage/answer?agent_id={agent}&uuid=u"
            )),
            "VONAGE_SIGNATURE_SECRET",
        ),
    ] {
        let body = refused(request, setting).await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("webhooks are closed") && message.contains(setting),
            "{message}"
        );
    }
    assert_eq!(calls_in_database(&app).await, 0);
}

#[tokio::test]
async fn the_development_switch_opens_only_the_carriers_without_credentials() {
    let app = spawn_app_with(|c| {
        c.carrier_webhooks.insecure = true;
        c.twilio_auth_token = Some(TWILIO_TOKEN.to_owned().into());
    })
    .await;
    let (s, agent) = business(&app, "insecure@example.com").await;
    let base = &app.base;
    let form = [
        ("CallSid", "X1"),
        ("From", "+15550001"),
        ("To", "+15550002"),
    ];
    let telnyx = app
        .client
        .post(format!("{base}/carrier/telnyx/voice?agent_id={agent}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(telnyx.status(), StatusCode::OK);
    assert!(telnyx.text().await.unwrap().contains("<Stream"));
    let plivo = app
        .client
        .get(format!(
            "{base}/carrier/plivo/answer?agent_id={agent}&CallUUID=p&From=1&To=2"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(plivo.status(), StatusCode::OK);
    let vonage: Value = app
        .client
        .get(format!(
            "{base}/carrier/vonage/answer?agent_id={agent}&uuid=u"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(vonage[0]["action"], "connect", "{vonage}");
    // Twilio has its auth token: the switch does not open it.
    refused(
        app.client
            .post(format!("{base}/carrier/twilio/voice?agent_id={agent}"))
            .form(&form),
        "twilio stays signed",
    )
    .await;
    let calls = app.get("/api/calls?per_page=100", &s.token).await;
    assert_eq!(
        calls.body["data"].as_array().unwrap().len(),
        3,
        "{}",
        calls.body
    );
}

#[tokio::test]
async fn an_answer_webhook_flood_from_one_address_is_rate_limited() {
    let app = spawn_app_with(|c| {
        signing::configure(c);
        c.carrier_webhooks.requests_per_minute = 5;
        c.limits.client_address = callgenius::config::ClientAddressSource::ForwardedFor;
    })
    .await;
    let (_, agent) = business(&app, "flood@example.com").await;
    let path = format!("/carrier/twilio/voice?agent_id={agent}");
    let form = [
        ("CallSid", "CA9"),
        ("From", "+15550001"),
        ("To", "+15550002"),
    ];
    let flood =
        || signing::twilio_post(&app, &path, &form).header("X-Forwarded-For", "203.0.113.7");
    for n in 0..5 {
        let r = flood().send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "request {n}");
    }
    for request in [
        flood(),
        // Forged or unsigned requests from the address are limited before they are verified,
        // and spend the same budget whichever carrier they name.
        app.client
            .post(format!("{}{path}", app.base))
            .header("X-Forwarded-For", "203.0.113.7")
            .form(&form),
        signing::plivo_post(
            &app,
            &format!("/carrier/plivo/answer?agent_id={agent}"),
            &[("CallUUID", "p")],
        )
        .header("X-Forwarded-For", "203.0.113.7"),
    ] {
        let limited = request.send().await.unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        calls_in_database(&app).await,
        5,
        "refused requests make no call"
    );
    // Another address is not affected.
    let other = signing::twilio_post(&app, &path, &form)
        .header("X-Forwarded-For", "203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

/// Opens a Twilio media stream for `token` whose `start` claims the call is `call_sid`; returns
/// the socket once the engine has started the call.
async fn stream_claiming(
    app: &TestApp,
    s: &Session,
    call_id: i64,
    token: &str,
    call_sid: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/media/twilio", app.base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }).to_string(),
        ))
        .await
        .unwrap();
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ9",
        "start": { "streamSid": "MZ9", "callSid": call_sid, "accountSid": "AC1", "tracks": ["inbound"],
                   "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                   "customParameters": { "token": token } }
    });
    socket.send(Message::text(start.to_string())).await.unwrap();
    let call = crate::media::settled_call(app, s, call_id, |c| c["status"] == "in-progress").await;
    assert_eq!(call["status"], "in-progress", "{call}");
    socket
}

#[tokio::test]
async fn a_streams_start_message_cannot_change_the_carrier_call_id_a_transfer_would_use() {
    let app = signing::spawn_signed_app().await;
    let (s, agent) = business(&app, "sid@example.com").await;

    // A test call: whoever asked for it opens the stream, so its claimed CallSid (a victim's
    // live call) is not recorded.
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call_id = r.body["call_id"].as_i64().unwrap();
    let token = r.body["token"].as_str().unwrap().to_owned();
    let mut socket = stream_claiming(&app, &s, call_id, &token, "CAvictim0001").await;
    let call = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body;
    assert!(call["carrier_call_id"].is_null(), "{call}");
    socket.close(None).await.ok();

    // An inbound call: the id Twilio's signed webhook gave stays; the stream cannot replace it.
    let form = [
        ("CallSid", "CAgenuine01"),
        ("From", "+15550001"),
        ("To", "+15550002"),
    ];
    let twiml = signing::twilio_post(
        &app,
        &format!("/carrier/twilio/voice?agent_id={agent}"),
        &form,
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let parameter = |name: &str| {
        let marker = format!("<Parameter name=\"{name}\" value=\"");
        let start = twiml.find(&marker).unwrap() + marker.len();
        twiml[start..].split('"').next().unwrap().to_owned()
    };
    let inbound: i64 = parameter("call_id").parse().unwrap();
    let mut socket = stream_claiming(&app, &s, inbound, &parameter("token"), "CAvictim0002").await;
    let call = app
        .get(&format!("/api/calls/{inbound}"), &s.token)
        .await
        .body;
    assert_eq!(call["carrier_call_id"], "CAgenuine01", "{call}");
    socket.close(None).await.ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
}
