//! Webhooks: endpoint management and its stricter rate limit; signed deliveries verified with
//! the README's recipe; a receiver that fails, hangs and recovers; an engine killed mid-retry;
//! two engines sharing the work; redirects, redelivery, rotation and test pings.
//!
//! Events are made the way the engine makes them: through the store functions the media
//! session, the after-call work and the dialler call (in the transaction of their change), or by
//! a real sandbox campaign. The booking call in `conversations` checks the deliveries of a whole
//! real call.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use callgenius::carrier::sandbox::SandboxOutcome;
use callgenius::config::{Config, WebhookSettings};
use callgenius::domain::{AgentId, CallId, CallStatus, Carrier, Direction, TenantId};
use callgenius::store::{Db, calls};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_error, spawn_app_with};
use crate::receiver::{Mode, Receiver, verify, verify_with_readme_python};
use crate::telephony::{Engine, shared_database};

const CALL_EVENTS: [&str; 3] = ["call.started", "call.ended", "call.transcript_ready"];

/// Quick retries for tests: 100 ms doubling to 400 ms. The timeout stays generous (3 s): a
/// receiver that accepted a request the engine then gave up on would get it again, which is
/// at-least-once delivery working as designed, not what these tests are about; on a loaded
/// machine a short timeout would make that happen. The receivers listen on loopback, so private
/// targets are allowed (the attack tests below run without).
fn fast() -> WebhookSettings {
    WebhookSettings {
        timeout_ms: 3_000,
        retry_base_ms: 100,
        retry_max_ms: 400,
        retry_hours: 24,
        lease_secs: 4,
        batch: 32,
        poll_ms: 50,
        endpoint_concurrency: 8,
        allow_private_targets: true,
    }
}

fn fast_engine(c: &mut Config) {
    c.webhooks = fast();
    c.limits.requests_per_minute = 100_000;
    c.limits.webhook_requests_per_minute = 100_000;
}

async fn register_webhook(app: &TestApp, s: &Session, body: Value) -> (i64, String) {
    let r = app.post("/api/webhooks", &s.token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["id"].as_i64().unwrap(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn database(url: &SecretString) -> Db {
    Db::connect(url, 4).await.unwrap()
}

/// Starts a call as its media session does (`call.started`).
async fn start_call(db: &Db, tenant: i64, agent: i64) -> i64 {
    let t = TenantId(tenant);
    let row = calls::insert(
        db,
        t,
        calls::NewCall {
            agent: AgentId(agent),
            agent_version: 1,
            direction: Direction::Test,
            carrier: Carrier::Web,
            carrier_call_id: None,
            from_number: None,
            to_number: None,
        },
    )
    .await
    .unwrap();
    calls::start(db, t, CallId(row.id), None).await.unwrap();
    row.id
}

/// Ends it (`call.ended`) as the session does.
async fn end_call(db: &Db, tenant: i64, call: i64) {
    calls::finish(
        db,
        TenantId(tenant),
        CallId(call),
        CallStatus::Completed,
        "caller-hangup",
        2_500,
    )
    .await
    .unwrap();
}

/// Stores its analysis (`call.transcript_ready`) as the after-call work does.
async fn analyse_call(db: &Db, tenant: i64, call: i64) {
    let event = json!({ "call_id": call, "summary": "A test call.", "transcript": [] });
    calls::set_analysis(
        db,
        TenantId(tenant),
        CallId(call),
        "A test call.",
        Some(0.1),
        &event,
    )
    .await
    .unwrap();
}

/// `n` calls with three events each, interleaved: every call starts, then every call ends,
/// then every call is analysed. Returns the call ids.
async fn interleaved_calls(db: &Db, tenant: i64, agent: i64, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(start_call(db, tenant, agent).await);
    }
    for id in &ids {
        end_call(db, tenant, *id).await;
    }
    for id in &ids {
        analyse_call(db, tenant, *id).await;
    }
    ids
}

/// The tenant's event ids in the outbox.
async fn outbox_ids(db: &Db, tenant: i64) -> HashSet<String> {
    callgenius::store::outbox::list(db, TenantId(tenant))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

/// Checks that every accepted request verifies, that each outbox event was accepted exactly
/// once, and that each call's events were accepted in the order they happened.
fn check_exactly_once_in_order(
    accepted: &[crate::receiver::Received],
    secret: &str,
    expected: &HashSet<String>,
) {
    let mut seen = HashMap::new();
    for r in accepted {
        assert!(verify(secret, &r.signature, &r.body), "{}", r.signature);
        *seen.entry(r.event_id.clone()).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "accepted more than once: {duplicates:?}"
    );
    let ids: HashSet<String> = seen.into_keys().collect();
    assert_eq!(&ids, expected);
    let mut per_call: HashMap<i64, Vec<&str>> = HashMap::new();
    for r in accepted {
        if let Some(call) = r.json["data"]["call_id"].as_i64() {
            per_call.entry(call).or_default().push(r.kind.as_str());
        }
    }
    for (call, kinds) in per_call {
        assert_eq!(kinds, CALL_EVENTS, "call {call}");
    }
}

#[tokio::test]
async fn endpoints_are_managed_by_owners_and_admins_and_the_secret_is_shown_once() {
    let app = spawn_app_with(fast_engine).await;
    let receiver = Receiver::start().await;
    let s = app.register("owner@clinic.example", "Clinic").await;

    let r = app
        .post(
            "/api/webhooks",
            &s.token,
            json!({ "url": receiver.url, "description": "CRM" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    assert_eq!(
        r.body["events"],
        json!([
            "call.started",
            "call.ended",
            "call.transcript_ready",
            "booking.created",
            "campaign.completed"
        ])
    );
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["description"], "CRM");
    assert_eq!(
        r.body["secret_hint"],
        format!("whsec_…{}", &secret[secret.len() - 4..])
    );

    let one = app.get(&format!("/api/webhooks/{id}"), &s.token).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.body.get("secret").is_none(), "{}", one.body);
    let list = app.get("/api/webhooks", &s.token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(list.body[0].get("secret").is_none());

    // Validation, every field at once.
    let r = app
        .post(
            "/api/webhooks",
            &s.token,
            json!({ "url": "ftp://example.com/x", "events": ["call.started", "call.exploded"] }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["url"].is_array(), "{}", r.body);
    assert!(r.body["errors"]["events"].is_array(), "{}", r.body);
    for (body, field) in [
        (json!({}), "url"),
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "https://user:pw@example.com/" }), "url"),
        (json!({ "url": receiver.url, "events": [] }), "events"),
        (
            json!({ "url": receiver.url, "events": "call.started" }),
            "events",
        ),
        // The engine itself, by its address and by a name that resolves to it.
        (json!({ "url": format!("{}/api/agents", app.base) }), "url"),
        (
            json!({ "url": app.base.replace("127.0.0.1", "localhost") }),
            "url",
        ),
    ] {
        let r = app.post("/api/webhooks", &s.token, body.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["errors"][field].is_array(), "{body}: {}", r.body);
    }

    // Updates.
    let r = app
        .patch(
            &format!("/api/webhooks/{id}"),
            &s.token,
            json!({ "events": ["call.ended", "call.started", "call.ended"], "enabled": false, "description": null }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["events"], json!(["call.started", "call.ended"]));
    assert_eq!(r.body["enabled"], false);
    assert!(r.body["description"].is_null());
    let r = app
        .patch(
            &format!("/api/webhooks/{id}"),
            &s.token,
            json!({ "url": "gopher://x", "enabled": "yes" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["url"].is_array() && r.body["errors"]["enabled"].is_array());

    // Members cannot manage webhooks; another business cannot see them.
    let member = app.register("member@clinic.example", "Elsewhere").await;
    let r = app
        .post(
            "/api/members",
            &s.token,
            json!({ "email": "member@clinic.example" }),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = app
        .post(
            "/api/tenants/switch",
            &member.token,
            json!({ "tenant_id": s.tenant_id }),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = app.get("/api/webhooks", &member.token).await;
    assert_error(&r, StatusCode::FORBIDDEN);

    let other = app.register("owner@other.example", "Other").await;
    for path in [
        format!("/api/webhooks/{id}"),
        format!("/api/webhooks/{id}/deliveries"),
    ] {
        assert_error(&app.get(&path, &other.token).await, StatusCode::NOT_FOUND);
    }
    for path in [
        format!("/api/webhooks/{id}/test"),
        format!("/api/webhooks/{id}/rotate-secret"),
        format!("/api/webhooks/{id}/deliveries/1/redeliver"),
    ] {
        assert_error(
            &app.post(&path, &other.token, json!({})).await,
            StatusCode::NOT_FOUND,
        );
    }
    assert_error(
        &app.patch(
            &format!("/api/webhooks/{id}"),
            &other.token,
            json!({ "enabled": true }),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.delete(&format!("/api/webhooks/{id}"), &other.token)
            .await,
        StatusCode::NOT_FOUND,
    );
    assert!(
        app.get("/api/webhooks", &other.token)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );

    let r = app.delete(&format!("/api/webhooks/{id}"), &s.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/api/webhooks/{id}"), &s.token).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn the_webhook_routes_have_a_stricter_rate_limit_than_the_rest() {
    let app = spawn_app_with(|c| c.limits.webhook_requests_per_minute = 3).await;
    let s = app.register("owner@clinic.example", "Clinic").await;
    for _ in 0..3 {
        let r = app.get("/api/webhooks", &s.token).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app.get("/api/webhooks", &s.token).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers["x-ratelimit-limit"], "3");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    let r = app
        .post(
            "/api/webhooks",
            &s.token,
            json!({ "url": "http://example.com/" }),
        )
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS);
    // The rest of the API keeps the standard limit.
    let r = app.get("/api/agents", &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-ratelimit-limit"], "120");
}

#[tokio::test]
async fn a_completed_campaign_a_test_ping_and_a_rotation_are_signed_as_the_readme_says() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        fast_engine(c);
        c.data_dir = dir;
        c.sandbox.ring_ms = 100;
        c.sandbox.rules = vec![crate::telephony::rule("+61491*", SandboxOutcome::Busy)];
    })
    .await;
    let receiver = Receiver::start().await;
    let (s, agent, _) = crate::telephony::business_with_number(&app, "owner@clinic.example").await;
    let (id, secret) = register_webhook(
        &app,
        &s,
        json!({ "url": receiver.url, "events": ["campaign.completed"] }),
    )
    .await;

    // A test ping, answered at once.
    let r = app
        .post(&format!("/api/webhooks/{id}/test"), &s.token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["delivered"], true);
    assert_eq!(r.body["status_code"], 200);
    let ping = &receiver.received()[0];
    assert_eq!(ping.kind, "ping");
    assert_eq!(ping.event_id, r.body["event_id"].as_str().unwrap());
    assert!(verify(&secret, &ping.signature, &ping.body));
    assert!(!verify("whsec_wrong", &ping.signature, &ping.body));
    assert!(!verify(
        &secret,
        &ping.signature,
        &ping.body.replace("ping", "pong")
    ));

    // A campaign of one busy target completes; its event is delivered once, signed.
    let campaign = crate::telephony::campaign(
        &app,
        &s,
        agent,
        vec![json!({ "phone_number": "+61491570156" })],
        json!({ "max_attempts": 1 }),
    )
    .await;
    let r = app
        .post(
            &format!("/api/campaigns/{campaign}/start"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let accepted = receiver.wait_accepted(2, Duration::from_secs(30)).await;
    let event = &accepted[1];
    assert_eq!(event.kind, "campaign.completed");
    assert!(verify(&secret, &event.signature, &event.body));
    assert!(verify_with_readme_python(
        &secret,
        &event.signature,
        &event.body
    ));
    assert!(!verify_with_readme_python(
        &secret,
        &event.signature,
        &event.body.replace("busy", "done")
    ));
    assert!(!verify_with_readme_python(
        "whsec_other",
        &event.signature,
        &event.body
    ));
    let stale = event.signature.replacen("t=", "t=1", 1);
    assert!(!verify_with_readme_python(&secret, &stale, &event.body));
    let header = &event.signature;
    assert_eq!(header.matches("v1=").count(), 1, "{header}");
    assert_eq!(
        event.json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "data", "id", "tenant_id", "type"]
    );
    assert_eq!(event.json["tenant_id"], s.tenant_id);
    assert_eq!(event.json["data"]["campaign_id"], campaign);
    assert_eq!(event.json["data"]["stats"]["busy"], 1);
    let db = database(&app.database_url).await;
    assert_eq!(
        outbox_ids(&db, s.tenant_id).await,
        HashSet::from([event.event_id.clone()])
    );

    // After a rotation, deliveries carry a v1 for each secret; both verify.
    let r = app
        .post(
            &format!("/api/webhooks/{id}/rotate-secret"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new_secret = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let expires = r.body["previous_secret_expires_at"].as_str().unwrap();
    let hours = (chrono::DateTime::parse_from_rfc3339(expires)
        .unwrap()
        .to_utc()
        - chrono::Utc::now())
    .num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{expires}");
    let r = app
        .post(&format!("/api/webhooks/{id}/test"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["delivered"], true, "{}", r.body);
    let ping = receiver.received().pop().unwrap();
    assert_eq!(
        ping.signature.matches("v1=").count(),
        2,
        "{}",
        ping.signature
    );
    assert!(verify(&new_secret, &ping.signature, &ping.body));
    assert!(verify(&secret, &ping.signature, &ping.body));
    assert!(verify_with_readme_python(
        &new_secret,
        &ping.signature,
        &ping.body
    ));
    assert!(verify_with_readme_python(
        &secret,
        &ping.signature,
        &ping.body
    ));
}

#[tokio::test]
async fn a_receiver_that_fails_then_hangs_then_recovers_gets_every_event_once_in_order() {
    let app = spawn_app_with(fast_engine).await;
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Fail(500));
    let s = app.register("owner@clinic.example", "Clinic").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (id, secret) = register_webhook(&app, &s, json!({ "url": receiver.url })).await;
    let db = database(&app.database_url).await;

    // Ten calls' events happen while the receiver answers 500.
    let calls = interleaved_calls(&db, s.tenant_id, agent, 10).await;
    receiver.wait_received(25, Duration::from_secs(30)).await;
    // Then it hangs past the engine's 3 s timeout for a while.
    receiver.set_mode(Mode::Hang(Duration::from_millis(5_000)));
    let hung_from = receiver.received().len();
    receiver
        .wait_received(hung_from + 12, Duration::from_secs(30))
        .await;
    // Then it recovers.
    receiver.set_mode(Mode::Accept);
    let expected = outbox_ids(&db, s.tenant_id).await;
    assert_eq!(expected.len(), 30);
    receiver.wait_accepted(30, Duration::from_secs(60)).await;
    // Nothing more arrives once everything is delivered.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let accepted = receiver.accepted();
    check_exactly_once_in_order(&accepted, &secret, &expected);
    let received = receiver.received();
    let failed = received.iter().filter(|r| r.answered == 500).count();
    let hung = received.iter().filter(|r| r.answered == 0).count();
    eprintln!(
        "outage: {} calls, {} events, {} requests sent ({failed} answered 500, {hung} timed out), \
         {} accepted, 0 duplicates by id",
        calls.len(),
        expected.len(),
        received.len(),
        accepted.len()
    );

    // The delivery log shows the attempts: 500s, time-outs, then the 200.
    let r = app
        .get(
            &format!("/api/webhooks/{id}/deliveries?per_page=100"),
            &s.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["meta"]["total"], 30);
    let deliveries = r.body["data"].as_array().unwrap();
    let attempts: Vec<&Value> = deliveries
        .iter()
        .flat_map(|d| d["attempt_log"].as_array().unwrap())
        .collect();
    assert_eq!(attempts.len(), received.len(), "every request is logged");
    assert!(
        attempts
            .iter()
            .any(|a| a["status_code"] == 500 && a["error"] == "HTTP 500")
    );
    assert!(attempts.iter().any(
        |a| a["status_code"].is_null() && a["error"].as_str().unwrap().starts_with("timed out")
    ));
    for d in deliveries {
        assert_eq!(d["status"], "delivered", "{d}");
        assert!(d["next_attempt_at"].is_null());
        let log = d["attempt_log"].as_array().unwrap();
        assert_eq!(d["attempts"].as_u64().unwrap() as usize, log.len());
        let last = log.last().unwrap();
        assert_eq!(last["status_code"], 200);
        assert!(last["next_retry_at"].is_null());
        for failed in &log[..log.len() - 1] {
            assert!(failed["next_retry_at"].is_string(), "{failed}");
            assert!(failed["latency_ms"].as_i64().unwrap() >= 0);
        }
    }
    let r = app
        .get(
            &format!("/api/webhooks/{id}/deliveries?status=pending"),
            &s.token,
        )
        .await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app
        .get(
            &format!("/api/webhooks/{id}/deliveries?status=lost"),
            &s.token,
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn redirects_are_not_followed_disabled_endpoints_get_nothing_and_redelivery_resends() {
    let app = spawn_app_with(fast_engine).await;
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Redirect);
    let s = app.register("owner@clinic.example", "Clinic").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (id, secret) = register_webhook(
        &app,
        &s,
        json!({ "url": receiver.url, "events": ["call.started"] }),
    )
    .await;
    let db = database(&app.database_url).await;
    let call = start_call(&db, s.tenant_id, agent).await;
    end_call(&db, s.tenant_id, call).await; // Not subscribed: never sent.
    receiver.wait_received(2, Duration::from_secs(20)).await;
    assert_eq!(receiver.redirected_to(), 0, "a redirect was followed");
    let r = app
        .get(&format!("/api/webhooks/{id}/deliveries"), &s.token)
        .await;
    let delivery = &r.body["data"][0];
    assert_eq!(r.body["meta"]["total"], 1, "{}", r.body);
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["attempt_log"][0]["status_code"], 302);
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap()
            .contains("not followed"),
        "{delivery}"
    );
    receiver.set_mode(Mode::Accept);
    let accepted = receiver.wait_accepted(1, Duration::from_secs(20)).await;
    assert_eq!(accepted[0].kind, "call.started");

    // Redelivery sends the same event again, with the same id.
    let delivery_id = delivery["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{delivery_id}/redeliver"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    let accepted = receiver.wait_accepted(2, Duration::from_secs(20)).await;
    assert_eq!(accepted[1].event_id, accepted[0].event_id);
    assert!(verify(&secret, &accepted[1].signature, &accepted[1].body));
    let r = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/999999/redeliver"),
            &s.token,
            json!({}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND);

    // A disabled endpoint gets no new events.
    let r = app
        .patch(
            &format!("/api/webhooks/{id}"),
            &s.token,
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    start_call(&db, s.tenant_id, agent).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 4, "{:?}", receiver.received());
}

// ---------------------------------------------------------------------------------------------
// Engine processes

/// Fast webhook retries for engine processes (see [`fast`]), with a patient request timeout: a
/// receiver that accepted but answered after the timeout on a loaded machine is sent the event
/// again (at-least-once delivery working), which is not what this test checks. The lease
/// outlasts the timeout, so a slow send is never claimed twice.
const FAST_WEBHOOKS: &str = "webhook_requests_per_minute = 100000\n[webhooks]\ntimeout_ms = 10000\n\
     retry_base_ms = 100\nretry_max_ms = 400\nlease_secs = 12\npoll_ms = 50\n\
     allow_private_targets = true\n";

#[tokio::test]
async fn an_engine_killed_mid_retry_is_replaced_and_no_event_is_lost_or_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = shared_database(dir.path()).await;
    let mut first = Engine::start(dir.path(), &url, FAST_WEBHOOKS).await;
    let app = TestApp::at(first.base.clone(), url.clone().into());
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Fail(503));
    let s = app.register("owner@clinic.example", "Clinic").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (_, secret) = register_webhook(&app, &s, json!({ "url": receiver.url })).await;
    let db = database(&app.database_url).await;
    interleaved_calls(&db, s.tenant_id, agent, 8).await;
    receiver.wait_received(20, Duration::from_secs(30)).await;

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let before_restart = receiver.received().len();
    receiver.set_mode(Mode::Accept);
    // More events while no engine runs.
    interleaved_calls(&db, s.tenant_id, agent, 2).await;
    let _second = Engine::start(dir.path(), &url, FAST_WEBHOOKS).await;
    let expected = outbox_ids(&db, s.tenant_id).await;
    assert_eq!(expected.len(), 30);
    receiver.wait_accepted(30, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    check_exactly_once_in_order(&receiver.accepted(), &secret, &expected);
    eprintln!(
        "restart: {before_restart} failed requests before the kill, {} in all, 30 accepted once",
        receiver.received().len()
    );
}

#[tokio::test]
async fn two_engines_on_one_database_share_deliveries_without_sending_one_twice() {
    let first = spawn_app_with(fast_engine).await;
    let url = first.database_url.clone();
    let shared = url.clone();
    let second = spawn_app_with(move |c| {
        fast_engine(c);
        c.database_url = Some(shared);
    })
    .await;
    let receiver = Receiver::start().await;
    let s = first.register("owner@clinic.example", "Clinic").await;
    let agent = first.create_agent(&s.token, "Reception").await;
    let (_, secret) = register_webhook(&second, &s, json!({ "url": receiver.url })).await;
    let db = database(&url).await;
    let started = Instant::now();
    interleaved_calls(&db, s.tenant_id, agent, 60).await;
    let expected = outbox_ids(&db, s.tenant_id).await;
    assert_eq!(expected.len(), 180);
    receiver.wait_accepted(180, Duration::from_secs(90)).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    check_exactly_once_in_order(&receiver.accepted(), &secret, &expected);
    eprintln!(
        "two engines: 180 events written and delivered in {:.2} s, {} requests",
        elapsed.as_secs_f64(),
        receiver.received().len()
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks never reach inside the network

/// The engine as deployed: private targets not allowed.
fn strict_engine(c: &mut Config) {
    fast_engine(c);
    c.webhooks.allow_private_targets = false;
}

#[tokio::test]
async fn endpoints_on_internal_addresses_are_refused_at_creation() {
    let app = spawn_app_with(strict_engine).await;
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let s = app.register("owner@clinic.example", "Clinic").await;
    for url in [
        receiver.url.clone(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f.1:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        "http://10.0.0.1/hook".into(),
        "http://192.168.1.10:8080/hook".into(),
        "http://172.20.0.5/hook".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://100.64.0.1/hook".into(),
        "http://0.0.0.0:9/hook".into(),
        "http://[fd00::1]/hook".into(),
        "http://[fe80::1]/hook".into(),
        "http://[64:ff9b::a9fe:a9fe]/hook".into(),
        "http://[2002:a00:1::1]/hook".into(),
        "http://224.0.0.1/hook".into(),
    ] {
        let r = app
            .post("/api/webhooks", &s.token, json!({ "url": url }))
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let message = r.body["errors"]["url"][0].as_str().unwrap_or_default();
        assert!(message.contains("internal address"), "{url}: {}", r.body);
    }
    // A public address is accepted, and an update cannot move it inside.
    let (id, _) = register_webhook(&app, &s, json!({ "url": "https://93.184.216.34/hook" })).await;
    let r = app
        .patch(
            &format!("/api/webhooks/{id}"),
            &s.token,
            json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["url"].is_array(), "{}", r.body);
    let one = app.get(&format!("/api/webhooks/{id}"), &s.token).await;
    assert_eq!(one.body["url"], "https://93.184.216.34/hook");
    assert!(receiver.received().is_empty());
}

/// An endpoint whose name resolved to a public address when it was registered and to an
/// internal one now (DNS rebinding), or one stored before these checks: every delivery resolves
/// the host again, and the attempt fails without a request.
#[tokio::test]
async fn deliveries_and_pings_to_an_address_that_is_now_internal_are_refused() {
    let app = spawn_app_with(strict_engine).await;
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let s = app.register("owner@clinic.example", "Clinic").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let db = database(&app.database_url).await;
    let mut ids = Vec::new();
    for url in [
        format!("http://localhost:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
    ] {
        // Past the API's check, as a rebound name would be.
        let row = callgenius::store::webhooks::create_endpoint(
            &db,
            TenantId(s.tenant_id),
            callgenius::store::webhooks::NewEndpoint {
                url: &url,
                events: &["call.started".to_owned()],
                description: None,
                secret: "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab",
            },
        )
        .await
        .unwrap();
        ids.push(row.id);
    }
    start_call(&db, s.tenant_id, agent).await;
    for id in &ids {
        let until = Instant::now() + Duration::from_secs(20);
        let delivery = loop {
            let r = app
                .get(&format!("/api/webhooks/{id}/deliveries"), &s.token)
                .await;
            let delivery = r.body["data"][0].clone();
            if delivery["attempts"].as_i64().unwrap_or(0) >= 2 {
                break delivery;
            }
            assert!(Instant::now() < until, "no attempts: {}", r.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(delivery["status"], "pending", "{delivery}");
        let attempt = &delivery["attempt_log"][0];
        assert!(attempt["status_code"].is_null(), "{delivery}");
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.starts_with("refused: ") && error.contains("internal addresses"),
            "{error}"
        );
        // The test ping is refused the same way.
        let r = app
            .post(&format!("/api/webhooks/{id}/test"), &s.token, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["delivered"], false);
        assert!(r.body["status_code"].is_null());
        assert!(
            r.body["error"].as_str().unwrap().starts_with("refused: "),
            "{}",
            r.body
        );
    }
    assert!(
        receiver.received().is_empty(),
        "a request reached the internal receiver"
    );
}

#[tokio::test]
async fn a_test_ping_reports_the_status_and_nothing_the_receiver_answered() {
    let app = spawn_app_with(fast_engine).await;
    let receiver = Receiver::start().await;
    let s = app.register("owner@clinic.example", "Clinic").await;
    let (id, _) = register_webhook(&app, &s, json!({ "url": receiver.url })).await;
    receiver.set_mode(Mode::Redirect);
    let r = app
        .post(&format!("/api/webhooks/{id}/test"), &s.token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keys: HashSet<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "event_id",
            "delivered",
            "status_code",
            "latency_ms",
            "error"
        ])
    );
    assert_eq!(r.body["delivered"], false);
    assert_eq!(r.body["status_code"], 302);
    // The redirect's Location (a header of the receiver's answer) is not echoed.
    assert_eq!(r.body["error"], "HTTP 302: redirects are not followed");
    assert_eq!(receiver.redirected_to(), 0);
    receiver.set_mode(Mode::Accept);
    let r = app
        .post(&format!("/api/webhooks/{id}/test"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["delivered"], true, "{}", r.body);
    assert_eq!(r.body["status_code"], 200);
    assert!(r.body["error"].is_null());
    // A name is resolved by the engine and the request pinned to the checked addresses.
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (named, _) = register_webhook(&app, &s, json!({ "url": by_name })).await;
    let r = app
        .post(&format!("/api/webhooks/{named}/test"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["delivered"], true, "{}", r.body);
    assert_eq!(receiver.accepted().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// One slow endpoint never delays another business

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_another_business() {
    let app = spawn_app_with(fast_engine).await;
    let slow = Receiver::start().await;
    slow.set_mode(Mode::Hang(Duration::from_secs(5)));
    let prompt = Receiver::start().await;
    let a = app.register("owner@slow.example", "Slow").await;
    let b = app.register("owner@prompt.example", "Prompt").await;
    let a_agent = app.create_agent(&a.token, "Reception").await;
    let b_agent = app.create_agent(&b.token, "Reception").await;
    let (a_hook, _) = register_webhook(&app, &a, json!({ "url": slow.url })).await;
    let (_, b_secret) = register_webhook(&app, &b, json!({ "url": prompt.url })).await;
    let db = database(&app.database_url).await;

    // Business A's receiver hangs (the engine gives up after 3 s)...
    interleaved_calls(&db, a.tenant_id, a_agent, 3).await;
    slow.wait_received(3, Duration::from_secs(10)).await;
    // ...while business B's events, each call's three in order (each waits for the one before it
    // to be recorded), all arrive before any of A's attempts has ended.
    interleaved_calls(&db, b.tenant_id, b_agent, 2).await;
    let expected = outbox_ids(&db, b.tenant_id).await;
    prompt.wait_accepted(6, Duration::from_secs(20)).await;
    let r = app
        .get(&format!("/api/webhooks/{a_hook}/deliveries"), &a.token)
        .await;
    let attempted: Vec<i64> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .collect();
    assert!(
        attempted.iter().all(|n| *n == 0),
        "B's deliveries waited for A's to time out: A's attempts {attempted:?}"
    );
    check_exactly_once_in_order(&prompt.accepted(), &b_secret, &expected);
    // A's attempts are then recorded as timeouts.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .get(&format!("/api/webhooks/{a_hook}/deliveries"), &a.token)
            .await;
        if let Some(attempt) = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|d| d["attempt_log"].as_array().and_then(|l| l.first()).cloned())
        {
            assert!(
                attempt["error"].as_str().unwrap().starts_with("timed out"),
                "{attempt}"
            );
            break;
        }
        assert!(Instant::now() < until, "A's attempts never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
