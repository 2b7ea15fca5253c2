//! Call limits over real HTTP and real media websockets: a business's and a node's concurrent
//! calls (test calls get 429 with Retry-After, a signed inbound Twilio call hears that the lines
//! are busy), an agent's longest call, a call that outlives its money, and keypad digits gathered
//! into one caller turn.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Response, Session, TestApp, assert_error, reception, spawn_app_with};
use crate::media::{Twilio, connect, settled_call};

const AUTH_TOKEN: &str = "tw-limits-secret";

/// An engine whose speech models are loaded before the test's call starts, so that a call's
/// clock (its longest length, its money) does not run while a loaded machine loads them.
async fn ready_app(configure: impl FnOnce(&mut callgenius::config::Config)) -> TestApp {
    let app = spawn_app_with(|c| {
        c.preload_models = true;
        configure(c);
    })
    .await;
    let started = Instant::now();
    loop {
        let r = app
            .request(reqwest::Method::GET, "/readyz", None, None)
            .await;
        if r.status == StatusCode::OK && r.body["models"] == "ready" {
            return app;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "models never became ready: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until the engine sends the mark that ends `clause` (e.g. `turn-2-clause-1`).
async fn until_mark(twilio: &mut Twilio, clause: &str) -> Vec<Value> {
    twilio
        .read_until(Duration::from_secs(90), |m| {
            m["event"] == "mark" && m["mark"]["name"] == clause
        })
        .await
}

async fn test_call(app: &TestApp, s: &Session, agent: i64) -> Response {
    app.post(
        &format!("/api/agents/{agent}/test-call"),
        &s.token,
        json!({}),
    )
    .await
}

/// A test call that must be accepted, with its stream connected like Twilio's.
async fn live_call(app: &TestApp, s: &Session, agent: i64) -> (i64, Twilio) {
    let r = test_call(app, s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let twilio = connect(
        r.body["stream_url"].as_str().unwrap(),
        r.body["token"].as_str().unwrap(),
    )
    .await;
    let id = r.body["call_id"].as_i64().unwrap();
    let call = settled_call(app, s, id, |c| c["status"] == "in-progress").await;
    assert_eq!(call["status"], "in-progress", "{call}");
    (id, twilio)
}

/// Twilio's signature of a webhook: HMAC-SHA1 of the URL and the sorted parameters, base64
/// (the scheme `api::twilio::valid_signature` checks).
fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An inbound call as Twilio places it: a signed POST to the voice webhook; the TwiML answer.
async fn inbound_call(app: &TestApp, agent: i64, call_sid: &str) -> String {
    let url = format!("{}/carrier/twilio/voice?agent_id={agent}", app.base);
    let form = [
        ("CallSid", call_sid),
        ("From", "+15551234567"),
        ("To", "+15557654321"),
    ];
    let owned: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature = twilio_signature(&url, &form);
    assert!(callgenius::api::twilio::valid_signature(
        AUTH_TOKEN, &url, &owned, &signature
    ));
    let r = app
        .client
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn hang_up(app: &TestApp, s: &Session, call: i64, mut twilio: Twilio) {
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "close")
        .await;
    let call = settled_call(app, s, call, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");
}

async fn calls_total(app: &TestApp, s: &Session) -> i64 {
    app.get("/api/calls", &s.token).await.body["meta"]["total"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_business_at_its_concurrent_call_limit_is_refused_until_a_call_ends() {
    let app = spawn_app_with(|c| {
        c.billing.trial_max_concurrent_calls = 2;
        c.twilio_auth_token = Some(AUTH_TOKEN.to_owned().into());
    })
    .await;
    let s = app.register("busy@example.com", "Busy").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let first = live_call(&app, &s, agent).await;
    let _second = live_call(&app, &s, agent).await;

    // A third test call: 429 with Retry-After and a message that says which limit.
    let r = test_call(&app, &s, agent).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "15");
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("2 calls connecting or in progress"),
        "{message}"
    );
    // A caller ringing the business hears that the lines are busy, and is hung up on.
    let twiml = inbound_call(&app, agent, "CAbusy1").await;
    assert!(
        twiml.contains("<Say>Sorry, all our lines are busy right now."),
        "{twiml}"
    );
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    assert!(!twiml.contains("<Stream"), "{twiml}");
    assert_eq!(
        calls_total(&app, &s).await,
        2,
        "refused calls leave no record"
    );

    // Another business is not held back by this one's calls.
    let other = app.register("free@example.com", "Free").await;
    let other_agent = app.create_agent(&other.token, "Reception").await;
    let r = test_call(&app, &other, other_agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // One call ends: the next caller gets through, and then the limit holds again.
    hang_up(&app, &s, first.0, first.1).await;
    let twiml = inbound_call(&app, agent, "CAbusy2").await;
    assert!(twiml.contains("<Stream"), "{twiml}");
    let r = test_call(&app, &s, agent).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_node_at_its_call_limit_refuses_new_calls_of_any_business() {
    let app = spawn_app_with(|c| c.max_calls_per_node = 1).await;
    let s = app.register("node@example.com", "Node").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (call, twilio) = live_call(&app, &s, agent).await;

    let other = app.register("node2@example.com", "Node2").await;
    let other_agent = app.create_agent(&other.token, "Reception").await;
    let r = test_call(&app, &other, other_agent).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1 calls"),
        "{}",
        r.body
    );

    hang_up(&app, &s, call, twilio).await;
    let r = test_call(&app, &other, other_agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// Transcript entries of a finished call as (speaker, text).
async fn transcript(app: &TestApp, s: &Session, call: i64) -> Vec<(String, String)> {
    let r = app
        .get(&format!("/api/calls/{call}/transcript"), &s.token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["speaker"].as_str().unwrap().to_owned(),
                e["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Everything the engine sends until it closes the stream.
async fn until_closed(twilio: &mut Twilio) -> Vec<Value> {
    twilio
        .read_until(Duration::from_secs(90), |m| m["event"] == "close")
        .await
}

/// Media frames of the agent's goodbye (turn 2): sent after the greeting's last mark and before
/// the goodbye's mark.
fn goodbye_frames(messages: &[Value]) -> usize {
    let is_mark = |m: &Value, prefix: &str| {
        m["event"] == "mark" && m["mark"]["name"].as_str().unwrap_or("").starts_with(prefix)
    };
    let greeting_end = messages
        .iter()
        .rposition(|m| is_mark(m, "turn-1-"))
        .expect("the greeting's marks");
    let goodbye_end = messages
        .iter()
        .position(|m| is_mark(m, "turn-2-clause-1"))
        .expect("the goodbye's mark");
    messages[greeting_end..goodbye_end]
        .iter()
        .filter(|m| m["event"] == "media")
        .count()
}

#[tokio::test]
async fn the_agent_says_goodbye_and_hangs_up_at_its_longest_call() {
    let app = ready_app(|_| {}).await;
    let s = app.register("long@example.com", "Long").await;

    // The setting is validated, stored and returned.
    for bad in [json!(9), json!(14_401), json!("ten")] {
        let mut body = reception("Bad");
        body["max_call_seconds"] = bad;
        let r = app.post("/api/agents", &s.token, body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            r.body["errors"]["max_call_seconds"].is_array(),
            "{}",
            r.body
        );
    }
    let default = app.create_agent(&s.token, "Default").await;
    let r = app.get(&format!("/api/agents/{default}"), &s.token).await;
    assert_eq!(r.body["max_call_seconds"], 1800, "{}", r.body);
    let mut body = reception("Short");
    body["max_call_seconds"] = json!(10);
    let r = app.post("/api/agents", &s.token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["max_call_seconds"], 10, "{}", r.body);
    let agent = r.body["id"].as_i64().unwrap();

    let r = test_call(&app, &s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call = r.body["call_id"].as_i64().unwrap();
    let started = Instant::now();
    let mut twilio = connect(
        r.body["stream_url"].as_str().unwrap(),
        r.body["token"].as_str().unwrap(),
    )
    .await;
    // The caller stays on the line in silence; the engine ends the call.
    let messages = until_closed(&mut twilio).await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(messages.last().unwrap()["code"], 1000, "{messages:?}");
    // The goodbye was spoken (turn 2, after the greeting) before the stream closed: over a
    // second of audio.
    assert!(goodbye_frames(&messages) > 50, "{messages:?}");
    let record = settled_call(&app, &s, call, |c| c["status"] == "completed").await;
    assert_eq!(record["disposition"], "max-duration", "{record}");
    let said = transcript(&app, &s, call).await;
    let last = said.last().unwrap();
    assert_eq!(last.0, "agent");
    assert!(last.1.contains("time limit for this call"), "{said:?}");
}

#[tokio::test]
async fn a_call_that_outlives_its_money_gets_a_grace_period_then_a_goodbye() {
    let app = ready_app(|c| {
        c.billing.grace_secs = 3;
        c.billing.balance_check_secs = 1;
    })
    .await;
    let s = app.register("broke@example.com", "Broke").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    // Four seconds of trial left, no plan, an empty wallet.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(app.database_url.expose_secret())
        .await
        .unwrap();
    sqlx::query("UPDATE tenants SET trial_seconds_remaining = 4 WHERE id = $1")
        .bind(s.tenant_id)
        .execute(&mut db)
        .await
        .unwrap();

    let r = test_call(&app, &s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call = r.body["call_id"].as_i64().unwrap();
    let started = Instant::now();
    let mut twilio = connect(
        r.body["stream_url"].as_str().unwrap(),
        r.body["token"].as_str().unwrap(),
    )
    .await;
    let messages = until_closed(&mut twilio).await;
    let lasted = started.elapsed();
    // Not before the trial and the grace had passed; well before the agent's 30 minutes.
    assert!(lasted >= Duration::from_secs(7), "{lasted:?}");
    assert!(lasted < Duration::from_secs(60), "{lasted:?}");
    assert_eq!(messages.last().unwrap()["code"], 1000, "{messages:?}");
    let record = settled_call(&app, &s, call, |c| c["status"] == "completed").await;
    assert_eq!(record["disposition"], "out-of-minutes", "{record}");
    let said = transcript(&app, &s, call).await;
    let last = said.last().unwrap();
    assert_eq!(last.0, "agent");
    assert!(last.1.contains("I have to end the call here"), "{said:?}");
    // The business may not start another call now.
    assert_error(
        &test_call(&app, &s, agent).await,
        StatusCode::PAYMENT_REQUIRED,
    );
}

fn dtmf(digit: &str) -> Value {
    json!({ "event": "dtmf", "streamSid": "MZ1", "dtmf": { "track": "inbound_track", "digit": digit } })
}

#[tokio::test]
async fn keypad_digits_are_gathered_into_one_caller_turn() {
    let app = ready_app(|_| {}).await;
    let s = app.register("keys@example.com", "Keys").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = test_call(&app, &s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call = r.body["call_id"].as_i64().unwrap();
    let mut twilio = connect(
        r.body["stream_url"].as_str().unwrap(),
        r.body["token"].as_str().unwrap(),
    )
    .await;
    // The greeting, to its end.
    until_mark(&mut twilio, "turn-1-clause-1").await;
    twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    // 1, 2, 3, 4 then # ends the entry: one reply (turn 2).
    for digit in ["1", "2", "3", "4", "#"] {
        twilio.send(dtmf(digit)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until_mark(&mut twilio, "turn-2-clause-1").await;
    twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    // 9 then a pause ends the entry (turn 3).
    twilio.send(dtmf("9")).await;
    until_mark(&mut twilio, "turn-3-clause-1").await;
    twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    hang_up(&app, &s, call, twilio).await;

    let said = transcript(&app, &s, call).await;
    let caller: Vec<&str> = said
        .iter()
        .filter(|(speaker, _)| speaker == "caller")
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(caller, ["[pressed 1234]", "[pressed 9]"], "{said:?}");
    assert!(
        said.iter().any(|(_, text)| text == "You pressed 1 2 3 4."),
        "{said:?}"
    );
    assert!(
        said.iter().any(|(_, text)| text == "You pressed 9."),
        "{said:?}"
    );
}

#[tokio::test]
async fn test_calls_requested_at_once_never_overshoot_the_limit() {
    let app = spawn_app_with(|c| c.billing.trial_max_concurrent_calls = 3).await;
    let s = app.register("rush@example.com", "Rush").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    // Ten requests at once for three places (handed-out calls count until their stream starts).
    let requests = (0..10).map(|_| test_call(&app, &s, agent));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((created, refused), (3, 7), "{statuses:?}");
    assert_eq!(calls_total(&app, &s).await, 3);
}
