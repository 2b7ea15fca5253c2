use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with, spawn_ready_app_with};

async fn twilio_voice(
    app: &TestApp,
    query: &str,
    form: &[(&str, &str)],
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/carrier/twilio/voice{query}", app.base))
        .form(form);
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    request.send().await.unwrap()
}

/// Posts to Twilio's voice webhook as Twilio does, signed.
async fn signed_twilio_voice(
    app: &TestApp,
    query: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let path = format!("/carrier/twilio/voice{query}");
    crate::carrier_signing::twilio_post(app, &path, form)
        .send()
        .await
        .unwrap()
}

fn parameter(twiml: &str, name: &str) -> String {
    let marker = format!("<Parameter name=\"{name}\" value=\"");
    let start = twiml
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {twiml}"))
        + marker.len();
    twiml[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_test_call_hands_out_a_stream_and_a_call_record() {
    let app = spawn_app().await;
    let s = app.register("t@example.com", "T").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ws = app.base.replacen("http", "ws", 1);
    assert_eq!(r.body["stream_url"], format!("{ws}/media/twilio"));
    assert!(r.body["token"].as_str().unwrap().starts_with("v1."));
    assert!(r.body["expires_at"].as_str().unwrap().ends_with('Z'));
    let call = app
        .get(&format!("/api/calls/{}", r.body["call_id"]), &s.token)
        .await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.body);
    assert_eq!(call.body["status"], "initiated");
    assert_eq!(call.body["direction"], "test");
    assert_eq!(call.body["agent_id"], agent);
    assert_eq!(call.body["agent_version"], 1);
    assert_eq!(call.body["duration_sec"], Value::Null);

    let other = app.register("o@example.com", "O").await;
    assert_error(
        &app.get(&format!("/api/calls/{}", r.body["call_id"]), &other.token)
            .await,
        StatusCode::NOT_FOUND,
    );
    let foreign = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &other.token,
            serde_json::json!({}),
        )
        .await;
    assert_error(&foreign, StatusCode::NOT_FOUND);
    assert_error(
        &app.get("/api/calls/abc", &s.token).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn the_twilio_voice_webhook_answers_twiml_that_streams_to_the_agent() {
    let app = crate::carrier_signing::spawn_signed_app().await;
    let s = app.register("w@example.com", "W").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let form = [
        ("CallSid", "CA0123456789abcdef"),
        ("From", "+61412345678"),
        ("To", "+61298765432"),
        ("AccountSid", "AC1"),
    ];
    let r = signed_twilio_voice(&app, &format!("?agent_id={agent}"), &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let twiml = r.text().await.unwrap();
    let ws = app.base.replacen("http", "ws", 1);
    assert!(twiml.starts_with("<?xml"), "{twiml}");
    assert!(
        twiml.contains(&format!("<Connect><Stream url=\"{ws}/media/twilio\">")),
        "{twiml}"
    );
    assert!(parameter(&twiml, "token").starts_with("v1."));
    let call = app
        .get(
            &format!("/api/calls/{}", parameter(&twiml, "call_id")),
            &s.token,
        )
        .await;
    assert_eq!(call.body["direction"], "inbound");
    assert_eq!(call.body["carrier_call_id"], "CA0123456789abcdef");
    assert_eq!(call.body["from_number"], "+61412345678");
    assert_eq!(call.body["to_number"], "+61298765432");

    for query in ["", "?agent_id=999999", "?agent_id=abc"] {
        let refused = signed_twilio_voice(&app, query, &form).await;
        assert_eq!(refused.status(), StatusCode::OK);
        let twiml = refused.text().await.unwrap();
        assert!(
            twiml.contains("<Say>") && twiml.contains("<Hangup/>") && !twiml.contains("<Stream"),
            "{query}: {twiml}"
        );
    }
}

#[tokio::test]
async fn with_an_auth_token_the_webhook_requires_twilios_signature() {
    let app = spawn_app_with(|c| c.twilio_auth_token = Some("tw-secret".to_owned().into())).await;
    let s = app.register("sig@example.com", "Sig").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let form = [
        ("CallSid", "CA42"),
        ("From", "+15551234567"),
        ("To", "+15557654321"),
    ];
    let query = format!("?agent_id={agent}");
    let url = format!("{}/carrier/twilio/voice{query}", app.base);
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"tw-secret").unwrap();
    mac.update(format!("{url}CallSidCA42From+15551234567To+15557654321").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());

    assert_eq!(
        twilio_voice(&app, &query, &form, None).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        twilio_voice(&app, &query, &form, Some("AAAA"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let tampered = [
        ("CallSid", "CA43"),
        ("From", "+15551234567"),
        ("To", "+15557654321"),
    ];
    assert_eq!(
        twilio_voice(&app, &query, &tampered, Some(&signature))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let ok = twilio_voice(&app, &query, &form, Some(&signature)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.text().await.unwrap().contains("<Stream"));
}

#[tokio::test]
async fn calls_whose_stream_never_connects_are_failed_by_the_sweep() {
    let app = spawn_app().await;
    let s = app.register("sweep@example.com", "Sweep").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            serde_json::json!({}),
        )
        .await;
    let call_id = r.body["call_id"].as_i64().unwrap();
    let db = callgenius::store::Db::connect(&app.database_url, 1)
        .await
        .unwrap();

    // A fresh hand-out still has a live token: the sweep leaves it.
    assert_eq!(callgenius::calls::expire_unstarted(&db).await.unwrap(), 0);
    assert_eq!(
        app.get(&format!("/api/calls/{call_id}"), &s.token)
            .await
            .body["status"],
        "initiated"
    );

    // Past the token's life, it is failed as never connected.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        callgenius::store::calls::expire_unstarted(&db, &later)
            .await
            .unwrap(),
        1
    );
    let call = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body;
    assert_eq!(call["status"], "failed");
    assert_eq!(call["disposition"], "not-connected");
    assert_eq!(call["duration_sec"], 0.0);
    assert_eq!(
        callgenius::store::calls::expire_unstarted(&db, &later)
            .await
            .unwrap(),
        0,
        "once"
    );
}

#[tokio::test]
async fn the_vonage_answer_webhook_returns_an_ncco_that_streams_to_the_agent() {
    let app = crate::carrier_signing::spawn_signed_app().await;
    let s = app.register("ncco@example.com", "Ncco").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let path = format!(
        "/carrier/vonage/answer?agent_id={agent}&from=447700900000&to=447700900001&uuid=abc-uuid"
    );
    let ncco: serde_json::Value = crate::carrier_signing::vonage_get(&app, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ncco[0]["action"], "connect", "{ncco}");
    let endpoint = &ncco[0]["endpoint"][0];
    assert_eq!(endpoint["type"], "websocket");
    assert_eq!(endpoint["content-type"], "audio/l16;rate=16000");
    let ws = app.base.replacen("http", "ws", 1);
    assert!(
        endpoint["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{ws}/media/vonage?token=v1.")),
        "{endpoint}"
    );
    let call_id = endpoint["headers"]["call_id"].as_str().unwrap();
    let call = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body;
    assert_eq!(call["carrier"], "vonage");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["carrier_call_id"], "abc-uuid");
    assert_eq!(call["from_number"], "447700900000");

    for query in ["", "?agent_id=99999"] {
        let refusal: serde_json::Value =
            crate::carrier_signing::vonage_get(&app, &format!("/carrier/vonage/answer{query}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(refusal[0]["action"], "talk", "{refusal}");
    }
}

/// `callgenius call` against the engine in one protocol: the greeting, the caller heard and
/// answered, the agent's audio recorded as the caller heard it.
async fn simulate(carrier: callgenius::simulator::SimCarrier) {
    use callgenius::simulator::{CallPlan, SimCarrier};
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("sim@example.com", "Sim").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/speech/s3-piper-joe-16k.wav");
    let mut caller = callgenius::pipeline::wav::read(&path).unwrap();
    // The caller listens to the greeting (about four seconds), speaks, then waits.
    let mut samples = vec![0.0f32; 16_000 * 9];
    samples.extend(&caller.samples);
    samples.extend(vec![0.0f32; 16_000]);
    caller.samples = samples;
    let report = callgenius::simulator::run(CallPlan {
        base_url: app.base.clone(),
        api_token: s.token.clone(),
        agent_id: agent,
        caller,
        then: Vec::new(),
        pause: std::time::Duration::from_millis(800),
        from: None,
        speed: 2.0,
        quiet: std::time::Duration::from_millis(1500),
        carrier,
    })
    .await
    .unwrap();
    let call = &report.call;
    assert_eq!(call["status"], "completed", "{carrier:?}: {call}");
    assert_eq!(call["carrier"], format!("{carrier:?}").to_lowercase());
    assert!(
        report.frames_received > 100,
        "{carrier:?}: {} frames",
        report.frames_received
    );
    assert_eq!(report.frames_undecodable, 0, "{carrier:?}");
    let audio = &report.agent_audio;
    assert!(audio.seconds() > 3.0, "{carrier:?}: agent audio recorded");
    let level = audio.samples.iter().map(|s| s * s).sum::<f32>() / audio.samples.len() as f32;
    assert!(level > 1e-4, "{carrier:?}: the agent is audible ({level})");
    let heard = call["turns"][1]["caller_text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(heard.contains("pizza"), "{carrier:?}: {call}");
    if carrier != SimCarrier::Vonage {
        assert!(report.marks >= 2, "{carrier:?}: marks");
    }
}

#[tokio::test]
async fn the_carrier_simulator_completes_a_twilio_call() {
    simulate(callgenius::simulator::SimCarrier::Twilio).await;
}

#[tokio::test]
async fn the_carrier_simulator_completes_a_telnyx_call() {
    simulate(callgenius::simulator::SimCarrier::Telnyx).await;
}

#[tokio::test]
async fn the_carrier_simulator_completes_a_plivo_call() {
    simulate(callgenius::simulator::SimCarrier::Plivo).await;
}

#[tokio::test]
async fn the_carrier_simulator_completes_a_vonage_call() {
    simulate(callgenius::simulator::SimCarrier::Vonage).await;
}

#[tokio::test]
async fn the_carrier_simulator_completes_a_browser_call_in_opus() {
    simulate(callgenius::simulator::SimCarrier::Web).await;
}
