//! Phone numbers and outbound campaigns on the sandbox carrier: inventory, provisioning and
//! validation, assignment and inbound routing, campaign validation, a whole campaign with real
//! calls to simulated callees, pause and resume, and the dialler's crash safety (an engine
//! process killed mid-campaign, two engine processes sharing one database).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;

use callgenius::carrier::sandbox::{SandboxOutcome, SandboxRule};

use crate::helpers::{Session, TestApp, assert_error, spawn_app, spawn_app_with};

pub(crate) fn rule(number: &str, outcome: SandboxOutcome) -> SandboxRule {
    SandboxRule {
        number: number.into(),
        outcome,
    }
}

/// A business with an agent and an AU number assigned to it.
pub(crate) async fn business_with_number(app: &TestApp, email: &str) -> (Session, i64, String) {
    let s = app.register(email, "Harbour Dental").await;
    let agent = app.create_agent(&s.token, "Outreach").await;
    let number = number_for(app, &s, agent).await;
    (s, agent, number)
}

/// Provisions an AU number from the carrier's inventory and assigns it to `agent`; returns it.
pub(crate) async fn number_for(app: &TestApp, s: &Session, agent: i64) -> String {
    let offer = app
        .get(
            "/api/numbers/available?country=AU&area_code=2&limit=1",
            &s.token,
        )
        .await;
    assert_eq!(offer.status, StatusCode::OK, "{}", offer.body);
    let number = offer.body[0]["phone_number"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/numbers",
            &s.token,
            json!({ "phone_number": number, "country": "AU" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/numbers/{id}/assign"),
            &s.token,
            json!({ "agent_id": agent }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    number
}

async fn database(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.unwrap()
}

#[tokio::test]
async fn numbers_are_searched_validated_provisioned_assigned_and_released() {
    let app = crate::carrier_signing::spawn_signed_app().await;
    let s = app.register("owner@clinic.example", "Clinic").await;
    let other = app.register("owner@other.example", "Other").await;

    for (query, prefix) in [
        ("country=AU&type=local&area_code=2", "+612"),
        ("country=AU&type=mobile", "+614"),
        ("country=US&type=local&area_code=415", "+1415"),
        ("country=GB&type=tollfree", "+44"),
        ("country=nz", "+64"),
        ("country=IE&type=mobile", "+3538"),
        ("country=CA&area_code=416", "+1416"),
    ] {
        let r = app
            .get(&format!("/api/numbers/available?{query}"), &s.token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        let offered = r.body.as_array().unwrap();
        assert_eq!(offered.len(), 20, "{query}");
        for n in offered {
            assert!(
                n["phone_number"].as_str().unwrap().starts_with(prefix),
                "{query}: {n}"
            );
            assert!(n["friendly_name"].as_str().is_some());
        }
    }
    for query in [
        "country=FR",
        "type=local",
        "country=AU&type=premium",
        "country=AU&area_code=415",
        "country=AU&limit=500",
    ] {
        let r = app
            .get(&format!("/api/numbers/available?{query}"), &s.token)
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Provisioning validates the number against the country's plan.
    let r = app
        .get(
            "/api/numbers/available?country=AU&area_code=3&limit=2",
            &s.token,
        )
        .await;
    let offered: Vec<String> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone_number"].as_str().unwrap().to_owned())
        .collect();
    for (body, field) in [
        (
            json!({ "phone_number": "0255501234", "country": "AU" }),
            "phone_number",
        ),
        (
            json!({ "phone_number": "+61123", "country": "AU" }),
            "phone_number",
        ),
        (
            json!({ "phone_number": "+442079460711", "country": "AU" }),
            "phone_number",
        ),
        (
            json!({ "phone_number": offered[0], "country": "XX" }),
            "country",
        ),
        (json!({ "country": "AU" }), "phone_number"),
    ] {
        let r = app.post("/api/numbers", &s.token, body.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["errors"][field].is_array(), "{body}: {}", r.body);
    }
    let r = app
        .post(
            "/api/numbers",
            &s.token,
            json!({ "phone_number": offered[0], "country": "AU" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["carrier"], "sandbox");
    assert_eq!(r.body["type"], "local");
    assert!(r.body["agent_id"].is_null());
    let id = r.body["id"].as_i64().unwrap();
    // Not twice, by anyone; and no longer on offer.
    for token in [&s.token, &other.token] {
        let r = app
            .post(
                "/api/numbers",
                token,
                json!({ "phone_number": offered[0], "country": "AU" }),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            r.body["errors"]["phone_number"][0]
                .as_str()
                .unwrap()
                .contains("already")
        );
    }
    let r = app
        .get(
            "/api/numbers/available?country=AU&area_code=3&limit=2",
            &s.token,
        )
        .await;
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["phone_number"] != offered[0])
    );

    // Assigning to an agent; another business sees none of it.
    let agent = app.create_agent(&s.token, "Reception").await;
    let their_agent = app.create_agent(&other.token, "Theirs").await;
    let r = app
        .post(
            &format!("/api/numbers/{id}/assign"),
            &s.token,
            json!({ "agent_id": their_agent }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            &format!("/api/numbers/{id}/assign"),
            &s.token,
            json!({ "agent_id": agent }),
        )
        .await;
    assert_eq!(r.body["agent_id"], agent);
    let a = app.get(&format!("/api/agents/{agent}"), &s.token).await;
    assert_eq!(a.body["has_number"], true);
    assert_eq!(a.body["number"], offered[0].as_str());
    let list = app.get("/api/agents", &s.token).await;
    assert_eq!(list.body[0]["has_number"], true);
    for r in [
        app.post(
            &format!("/api/numbers/{id}/assign"),
            &other.token,
            json!({ "agent_id": their_agent }),
        )
        .await,
        app.post(
            &format!("/api/numbers/{id}/unassign"),
            &other.token,
            json!({}),
        )
        .await,
        app.delete(&format!("/api/numbers/{id}"), &other.token)
            .await,
    ] {
        assert_error(&r, StatusCode::NOT_FOUND);
    }
    assert_eq!(app.get("/api/numbers", &other.token).await.body, json!([]));
    let mine = app.get("/api/numbers", &s.token).await;
    assert_eq!(mine.body[0]["agent_id"], agent);

    // Inbound calls to the number reach its agent; once unassigned, a spoken refusal.
    let voice = |to: String| {
        let app = app.clone();
        async move {
            crate::carrier_signing::twilio_post(
                &app,
                "/carrier/twilio/voice",
                &[
                    ("CallSid", "CA1"),
                    ("From", "+61255509999"),
                    ("To", to.as_str()),
                ],
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
        }
    };
    let twiml = voice(offered[0].clone()).await;
    assert!(twiml.contains("<Connect><Stream"), "{twiml}");
    let r = app
        .post(&format!("/api/numbers/{id}/unassign"), &s.token, json!({}))
        .await;
    assert!(r.body["agent_id"].is_null());
    let twiml = voice(offered[0].clone()).await;
    assert!(
        twiml.contains("<Say>") && twiml.contains("<Hangup/>"),
        "{twiml}"
    );
    assert!(!twiml.contains("<Stream"), "{twiml}");

    // Progress is reported only for outbound calls, and only signed: an unsigned report is
    // refused before any lookup; a signed one for the inbound call is not an outbound call.
    let form = [("CallSid", "CA1"), ("CallStatus", "busy")];
    let unsigned = app
        .client
        .post(format!("{}/carrier/twilio/status?call_id=1", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    let status =
        crate::carrier_signing::twilio_post(&app, "/carrier/twilio/status?call_id=1", &form)
            .send()
            .await
            .unwrap();
    assert_eq!(status.status(), StatusCode::NOT_FOUND);

    let r = app.delete(&format!("/api/numbers/{id}"), &s.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/numbers", &s.token).await.body, json!([]));
    let a = app.get(&format!("/api/agents/{agent}"), &s.token).await;
    assert_eq!(a.body["has_number"], false);
}

#[tokio::test]
async fn campaigns_are_validated_target_by_target_and_kept_per_business() {
    let app = spawn_app().await;
    let (s, agent, number) = business_with_number(&app, "owner@clinic.example").await;
    let other = app.register("owner@other.example", "Other").await;

    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "", "agent_id": 999999, "targets": [
                { "phone_number": "+61491570156" },
                { "phone_number": "0491570157" },
                { "name": "No number" },
                { "phone_number": "+61491570158", "name": 7 },
            ], "max_concurrency": 0, "calling_hours": { "start": "9am", "end": "17:00" },
               "from_number": "+61255500000" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = r.body["errors"].as_object().unwrap();
    for field in [
        "name",
        "agent_id",
        "targets[1].phone_number",
        "targets[2].phone_number",
        "targets[3].name",
        "max_concurrency",
        "calling_hours",
    ] {
        assert!(
            errors.contains_key(field),
            "{field} missing from {errors:?}"
        );
    }
    assert!(!errors.contains_key("targets[0].phone_number"));
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "x", "agent_id": agent, "targets": [] }),
        )
        .await;
    assert!(r.body["errors"]["targets"].is_array(), "{}", r.body);

    // Ten thousand targets in one request; repeats merged, the first name given kept.
    let mut targets: Vec<Value> = (0..9_999)
        .map(|i| json!({ "phone_number": format!("+6149157{:04}", i) }))
        .collect();
    targets.push(json!({ "phone_number": "+61491570000", "name": "Jane Smith" }));
    let started = Instant::now();
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Re-engagement Q2", "agent_id": agent, "targets": targets,
                    "calling_hours": { "start": "09:00", "end": "17:30", "timezone": "Australia/Sydney" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    eprintln!("10,000 targets accepted in {:?}", started.elapsed());
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["status"], "draft");
    assert_eq!(r.body["target_count"], 9_999);
    assert_eq!(r.body["stats"]["pending"], 9_999);
    assert_eq!(r.body["from_number"], number.as_str());
    assert_eq!(r.body["max_concurrency"], 2);
    assert_eq!(r.body["calling_hours"]["timezone"], "Australia/Sydney");
    let page = app
        .get(&format!("/api/campaigns/{id}/targets?per_page=2"), &s.token)
        .await;
    assert_eq!(page.body["meta"]["total"], 9_999);
    assert_eq!(page.body["data"][0]["phone_number"], "+61491570000");
    assert_eq!(page.body["data"][0]["name"], "Jane Smith");
    assert_eq!(page.body["data"][0]["attempts"], json!([]));

    for r in [
        app.get(&format!("/api/campaigns/{id}"), &other.token).await,
        app.get(&format!("/api/campaigns/{id}/targets"), &other.token)
            .await,
        app.post(
            &format!("/api/campaigns/{id}/start"),
            &other.token,
            json!({}),
        )
        .await,
        app.post(
            &format!("/api/campaigns/{id}/cancel"),
            &other.token,
            json!({}),
        )
        .await,
    ] {
        assert_error(&r, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        app.get("/api/campaigns", &other.token).await.body,
        json!([])
    );
    // Another business's agent is not an agent here.
    let theirs = app.create_agent(&other.token, "Theirs").await;
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "x", "agent_id": theirs,
            "targets": [{ "phone_number": "+61491570156" }], "from_number": number }),
        )
        .await;
    assert!(r.body["errors"]["agent_id"].is_array(), "{}", r.body);

    // Cancelling a draft cancels its targets; a cancelled campaign cannot start.
    let r = app
        .post(&format!("/api/campaigns/{id}/cancel"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["stats"]["cancelled"], 9_999);
    let r = app
        .post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    assert_error(&r, StatusCode::CONFLICT);
}

/// Waits until the campaign's status is `status` (up to `limit`).
async fn wait_for(app: &TestApp, token: &str, id: i64, status: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let r = app.get(&format!("/api/campaigns/{id}"), token).await;
        if r.body["status"] == status {
            return r.body;
        }
        assert!(
            Instant::now() < until,
            "campaign never {status}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every target with its attempts' outcomes, by phone number.
async fn outcomes(app: &TestApp, token: &str, id: i64) -> BTreeMap<String, (String, Vec<Value>)> {
    let page = app
        .get(&format!("/api/campaigns/{id}/targets?per_page=100"), token)
        .await;
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["phone_number"].as_str().unwrap().to_owned(),
                (
                    t["status"].as_str().unwrap().to_owned(),
                    t["attempts"].as_array().unwrap().clone(),
                ),
            )
        })
        .collect()
}

/// The sandbox's dial log: call ids in the order dialled.
fn dials(data_dir: &Path) -> Vec<i64> {
    std::fs::read_to_string(data_dir.join("sandbox-dials.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// Waits until the sandbox has dialled `n` calls (up to 30 s).
async fn wait_for_dials(data_dir: &Path, n: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    while dials(data_dir).len() < n {
        assert!(Instant::now() < until, "never dialled {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No call dialled twice, and every attempt's call dialled exactly once.
fn assert_each_attempt_dialled_once(
    dialled: &[i64],
    targets: &BTreeMap<String, (String, Vec<Value>)>,
) {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for call in dialled {
        *counts.entry(*call).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dialled twice: {twice:?}");
    let attempts: Vec<i64> = targets
        .values()
        .flat_map(|(_, a)| a.iter().map(|a| a["call_id"].as_i64().unwrap()))
        .collect();
    assert_eq!(attempts.len(), dialled.len(), "one dial per attempt");
    for call in attempts {
        assert_eq!(counts.get(&call), Some(&1), "call {call}");
    }
}

/// An engine on the sandbox carrier with these callee rules, its data directory (where the dial
/// log is) kept for the test, and a business with a numbered agent: (app, data dir, session,
/// agent).
async fn sandbox(
    ring_ms: u64,
    rules: Vec<SandboxRule>,
) -> (TestApp, tempfile::TempDir, Session, i64) {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        // The tests poll campaigns for minutes.
        c.limits.requests_per_minute = 100_000;
        c.data_dir = dir;
        c.sandbox.ring_ms = ring_ms;
        c.sandbox.rules = rules;
    })
    .await;
    let (s, agent, _) = business_with_number(&app, "owner@clinic.example").await;
    (app, data_dir, s, agent)
}

/// Creates a campaign of `agent` calling `targets` with `settings` added; returns its id.
pub(crate) async fn campaign(
    app: &TestApp,
    s: &Session,
    agent: i64,
    targets: Vec<Value>,
    settings: Value,
) -> i64 {
    let mut body = json!({ "name": "Campaign", "agent_id": agent, "targets": targets });
    for (k, v) in settings.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.post("/api/campaigns", &s.token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().unwrap()
}

/// Twenty targets on the sandbox: four people answer and talk with the agent, two answering
/// machines, seven always busy, seven never answer; busy and no-answer are tried twice.
#[tokio::test]
async fn a_twenty_target_campaign_completes_with_exact_stats_calls_and_one_event() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        // The test polls the campaign for minutes.
        c.limits.requests_per_minute = 100_000;
        c.data_dir = dir;
        c.sandbox.ring_ms = 300;
        c.sandbox.rules = vec![
            rule("+614915701*", SandboxOutcome::Answer),
            rule("+614915702*", SandboxOutcome::Voicemail),
            rule("+614915703*", SandboxOutcome::Busy),
            rule("+614915704*", SandboxOutcome::NoAnswer),
        ];
    })
    .await;
    let (s, agent, number) = business_with_number(&app, "owner@clinic.example").await;
    let mut targets = Vec::new();
    for (group, count) in [(1, 4), (2, 2), (3, 7), (4, 7)] {
        for i in 0..count {
            targets.push(json!({ "phone_number": format!("+61491570{group}{i:02}"), "name": format!("T{group}{i}") }));
        }
    }
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Recall", "agent_id": agent, "targets": targets,
                    "max_concurrency": 3, "max_attempts": 2, "retry_delay_minutes": 0 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let started = Instant::now();
    let r = app
        .post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "running", "{}", r.body);
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(240)).await;
    eprintln!("20 targets, 34 dials, completed in {:?}", started.elapsed());
    assert_eq!(
        done["stats"],
        json!({ "pending": 0, "in_progress": 0, "completed": 4, "no_answer": 7, "busy": 7,
                "failed": 0, "voicemail": 2, "cancelled": 0, "attempts": 34 })
    );
    assert!(done["completed_at"].is_string());

    let targets = outcomes(&app, &s.token, id).await;
    for (phone, (status, attempts)) in &targets {
        let outcomes: Vec<&str> = attempts
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match &phone[..10] {
            "+614915701" => &["completed"],
            "+614915702" => &["voicemail"],
            "+614915703" => &["busy", "busy"],
            _ => &["no-answer", "no-answer"],
        };
        assert_eq!(outcomes, expected, "{phone}: {targets:#?}");
        assert_eq!(status, expected.last().unwrap(), "{phone}");
        assert_eq!(
            attempts
                .iter()
                .map(|a| a["attempt"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            (1..=attempts.len() as i64).collect::<Vec<_>>()
        );
    }
    assert_each_attempt_dialled_once(&dials(data_dir.path()), &targets);

    // The answered calls are real calls: outbound, from the campaign's number, with both sides
    // in the transcript.
    for (phone, (_, attempts)) in targets.iter().filter(|(p, _)| p.starts_with("+614915701")) {
        let call_id = attempts[0]["call_id"].as_i64().unwrap();
        let call = app.get(&format!("/api/calls/{call_id}"), &s.token).await;
        assert_eq!(call.body["direction"], "outbound");
        assert_eq!(call.body["status"], "completed", "{}", call.body);
        assert_eq!(call.body["from_number"], number.as_str());
        assert_eq!(call.body["to_number"], phone.as_str());
        let transcript = app
            .get(&format!("/api/calls/{call_id}/transcript"), &s.token)
            .await;
        let lines = transcript.body.as_array().unwrap();
        assert!(
            lines.iter().any(|l| l["speaker"] == "agent"),
            "{phone}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l["speaker"] == "caller"
                && l["text"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("thanks")),
            "{phone}: {lines:?}"
        );
    }
    let busy_call = targets["+61491570300"].1[0]["call_id"].as_i64().unwrap();
    let call = app.get(&format!("/api/calls/{busy_call}"), &s.token).await;
    assert_eq!(
        (
            call.body["status"].as_str(),
            call.body["disposition"].as_str()
        ),
        (Some("failed"), Some("busy"))
    );

    let mut db = database(app.database_url.expose_secret()).await;
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE tenant_id = $1 AND type = 'campaign.completed'",
    )
    .bind(s.tenant_id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(event["campaign_id"], id);
    assert_eq!(event["stats"]["completed"], 4);
    assert_eq!(event["stats"]["attempts"], 34);
}

/// No call is answered; each rings for a second and a half, two at a time.
#[tokio::test]
async fn pausing_stops_new_dials_at_once_and_starting_resumes_without_repeats() {
    let (app, data_dir, s, agent) =
        sandbox(1_500, vec![rule("+61491*", SandboxOutcome::NoAnswer)]).await;
    let targets: Vec<Value> = (0..10)
        .map(|i| json!({ "phone_number": format!("+614915705{i:02}") }))
        .collect();
    let id = campaign(
        &app,
        &s,
        agent,
        targets,
        json!({ "max_concurrency": 2, "max_attempts": 1 }),
    )
    .await;
    app.post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    // Pause once the third dial is under way.
    wait_for_dials(data_dir.path(), 3).await;
    let r = app
        .post(&format!("/api/campaigns/{id}/pause"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "paused");
    // At most a dial already being claimed slips through.
    let at_pause = dials(data_dir.path()).len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after_a_second = dials(data_dir.path()).len();
    assert!(
        after_a_second <= at_pause + 1,
        "{at_pause} then {after_a_second}"
    );
    // Calls in progress finish; nothing new starts while paused.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let paused = app.get(&format!("/api/campaigns/{id}"), &s.token).await;
    assert_eq!(paused.body["stats"]["in_progress"], 0, "{}", paused.body);
    let settled = dials(data_dir.path()).len();
    assert_eq!(settled, after_a_second);
    assert_eq!(paused.body["stats"]["attempts"], settled);
    assert!(paused.body["stats"]["pending"].as_i64().unwrap() > 0);

    let r = app
        .post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "running");
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["stats"]["no_answer"], 10);
    assert_eq!(done["stats"]["attempts"], 10);
    let targets = outcomes(&app, &s.token, id).await;
    assert!(targets.values().all(|(_, a)| a.len() == 1));
    assert_each_attempt_dialled_once(&dials(data_dir.path()), &targets);
}

/// Cancelling stops everything: pending targets are cancelled, the calls ringing finish and
/// are not tried again.
#[tokio::test]
async fn cancelling_mid_run_lets_ringing_calls_finish_and_tries_no_one_again() {
    let (app, data_dir, s, agent) =
        sandbox(1_500, vec![rule("+61491*", SandboxOutcome::NoAnswer)]).await;
    let targets: Vec<Value> = (0..6)
        .map(|i| json!({ "phone_number": format!("+614915708{i:02}") }))
        .collect();
    let id = campaign(
        &app,
        &s,
        agent,
        targets,
        json!({ "max_concurrency": 2, "max_attempts": 3, "retry_delay_minutes": 0 }),
    )
    .await;
    app.post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    wait_for_dials(data_dir.path(), 2).await;
    let r = app
        .post(&format!("/api/campaigns/{id}/cancel"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let r = app.get(&format!("/api/campaigns/{id}"), &s.token).await;
    let stats = &r.body["stats"];
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(stats["pending"], 0, "{stats}");
    assert_eq!(stats["in_progress"], 0, "{stats}");
    let dialled = dials(data_dir.path()).len() as i64;
    assert_eq!(stats["attempts"], dialled, "{stats}");
    assert_eq!(stats["no_answer"], dialled, "{stats}");
    assert_eq!(stats["cancelled"].as_i64().unwrap(), 6 - dialled, "{stats}");
}

// ---------------------------------------------------------------------------------------------
// Engine processes

/// An engine running as its own process (`callgenius serve`).
pub(crate) struct Engine {
    pub(crate) child: std::process::Child,
    pub(crate) base: String,
}

impl Engine {
    /// Starts `callgenius serve` on a free port with `data_dir`, `database_url` and extra TOML.
    pub(crate) async fn start(data_dir: &Path, database_url: &str, toml: &str) -> Engine {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Engine::start_on(port, data_dir, database_url, toml).await
    }

    /// [`Engine::start`] on a given port (a restart in place of a killed engine).
    pub(crate) async fn start_on(
        port: u16,
        data_dir: &Path,
        database_url: &str,
        toml: &str,
    ) -> Engine {
        let config = data_dir.join("engine.toml");
        std::fs::write(
            &config,
            format!(
                "preload_models = false\nrecord_calls = false\nrequests_per_minute = 100000\n{toml}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(data_dir.join(format!("engine-{port}.log"))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_callgenius"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database-url", database_url])
            .arg("--models-dir")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
            .args(["--stream-secret", "shared-by-every-engine-of-this-test"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("callgenius serve starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < until, "engine never answered on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Engine { child, base }
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The database the engine processes share: the test PostgreSQL database, or a SQLite file.
pub(crate) async fn shared_database(dir: &Path) -> String {
    match crate::helpers::test_database().await {
        Some(url) => url.expose_secret().to_owned(),
        None => format!("sqlite://{}?mode=rwc", dir.join("shared.db").display()),
    }
}

const NO_ANSWER_SANDBOX: &str = "[sandbox]\nring_ms = 1500\nrules = [{ number = \"+61491*\", outcome = \"no-answer\" }]\n[dialler]\nlease_secs = 3\n";

#[tokio::test]
async fn an_engine_killed_mid_campaign_is_replaced_and_no_attempt_is_dialled_twice() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = shared_database(dir.path()).await;
    let mut first = Engine::start(dir.path(), &database_url, NO_ANSWER_SANDBOX).await;
    let app = TestApp::at(first.base.clone(), database_url.clone().into());
    let (s, agent, _) = business_with_number(&app, "owner@clinic.example").await;
    let targets: Vec<Value> = (0..9)
        .map(|i| json!({ "phone_number": format!("+614915706{i:02}") }))
        .collect();
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Crash", "agent_id": agent, "targets": targets,
                    "max_concurrency": 3, "max_attempts": 2, "retry_delay_minutes": 0 }),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    app.post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    // Kill it while calls are ringing, after some attempts have finished.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.get(&format!("/api/campaigns/{id}"), &s.token).await;
        let stats = &r.body["stats"];
        if stats["attempts"].as_i64().unwrap() >= 5 && stats["in_progress"].as_i64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < until, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();
    let mut db = database(&database_url).await;
    // The calls that were ringing: their attempts were never closed.
    let in_flight: Vec<i64> = sqlx::query_scalar(
        "SELECT call_id FROM campaign_attempts WHERE campaign_id = $1 AND outcome IS NULL",
    )
    .bind(id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(!in_flight.is_empty());

    let second = Engine::start(dir.path(), &database_url, NO_ANSWER_SANDBOX).await;
    let app = TestApp::at(second.base.clone(), database_url.clone().into());
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(90)).await;
    assert_eq!(
        done["stats"]["no_answer"].as_i64().unwrap() + done["stats"]["failed"].as_i64().unwrap(),
        9,
        "{done}"
    );
    let targets = outcomes(&app, &s.token, id).await;
    let mut interrupted = 0;
    for (phone, (_, attempts)) in &targets {
        let outcomes: Vec<&str> = attempts
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        // Two attempts each, numbered 1 and 2. An attempt in flight at the kill is closed as
        // its call record says when the callee's answer was recorded first (no-answer), else
        // as interrupted, and a further attempt, if any remain, is a new one.
        assert_eq!(attempts.len(), 2, "{phone}: {outcomes:?}");
        for (n, a) in attempts.iter().enumerate() {
            assert_eq!(a["attempt"], n as i64 + 1, "{phone}");
            let call = a["call_id"].as_i64().unwrap();
            match a["outcome"].as_str().unwrap() {
                "no-answer" => {}
                "interrupted" => {
                    assert!(in_flight.contains(&call), "{phone}: {outcomes:?}");
                    interrupted += 1;
                }
                other => panic!("{phone}: {other} in {outcomes:?}"),
            }
        }
    }
    assert!(interrupted <= in_flight.len());
    let in_flight = in_flight.len();
    let dialled = dials(dir.path());
    assert_each_attempt_dialled_once(&dialled, &targets);
    eprintln!(
        "killed with {in_flight} calls ringing ({interrupted} closed as interrupted); {} dials, 0 duplicates",
        dialled.len()
    );
}

#[tokio::test]
async fn two_engine_processes_share_a_campaign_without_dialling_anyone_twice() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = shared_database(dir.path()).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let fast =
        "[sandbox]\nring_ms = 300\nrules = [{ number = \"+61491*\", outcome = \"no-answer\" }]\n";
    let a = Engine::start(&a_dir, &database_url, fast).await;
    let b = Engine::start(&b_dir, &database_url, fast).await;
    let app = TestApp::at(a.base.clone(), database_url.clone().into());
    let (s, agent, _) = business_with_number(&app, "owner@clinic.example").await;
    let targets: Vec<Value> = (0..40)
        .map(|i| json!({ "phone_number": format!("+614915707{i:02}") }))
        .collect();
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Shared", "agent_id": agent, "targets": targets,
                    "max_concurrency": 6, "calls_per_minute": 600, "max_attempts": 2,
                    "retry_delay_minutes": 0 }),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    let started = Instant::now();
    // Started through the other process.
    let other = TestApp::at(b.base.clone(), database_url.clone().into());
    other
        .post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    assert_eq!(done["stats"]["no_answer"], 40);
    assert_eq!(done["stats"]["attempts"], 80);
    let targets = outcomes(&app, &s.token, id).await;
    assert!(targets.values().all(|(_, a)| a.len() == 2));
    let (from_a, from_b) = (dials(&a_dir), dials(&b_dir));
    let all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    assert_each_attempt_dialled_once(&all, &targets);
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both engines dialled: {} and {}",
        from_a.len(),
        from_b.len()
    );
    eprintln!(
        "two engines: {} + {} dials, 0 duplicates, 80 dials in {elapsed:?}",
        from_a.len(),
        from_b.len()
    );
    drop((a, b));
}

// ---------------------------------------------------------------------------------------------
// Twilio

/// A local server speaking Twilio's REST API for numbers and calls, and acting as Twilio on the
/// calls it is asked to place: it posts signed status callbacks, and for an answered call opens
/// the media stream the call's TwiML names and speaks into it.
mod fake_twilio {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{delete, get, post};
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;

    pub const ACCOUNT: &str = "ACtest0123456789";
    pub const TOKEN: &str = "twilio-auth-token";

    /// One request: method, path, Authorization header, form or query pairs.
    pub type Request = (String, String, String, Vec<(String, String)>);

    #[derive(Default)]
    pub struct Twilio {
        pub requests: Mutex<Vec<Request>>,
    }

    /// Twilio's request signature: base64 HMAC-SHA1 of the URL and the sorted parameters.
    pub fn sign(url: &str, params: &[(&str, String)]) -> String {
        let mut sorted: Vec<&(&str, String)> = params.iter().collect();
        sorted.sort();
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(url.as_bytes());
        for (k, v) in sorted {
            mac.update(k.as_bytes());
            mac.update(v.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Posts a status callback as Twilio does.
    pub async fn callback(url: &str, sid: &str, status: &str, extra: &[(&str, &str)]) -> u16 {
        let mut params = vec![
            ("CallSid", sid.to_owned()),
            ("AccountSid", ACCOUNT.to_owned()),
            ("CallStatus", status.to_owned()),
        ];
        params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        reqwest::Client::new()
            .post(url)
            .header("X-Twilio-Signature", sign(url, &params))
            .form(&params)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn record(
        t: &Twilio,
        method: &str,
        path: String,
        headers: &HeaderMap,
        pairs: Vec<(String, String)>,
    ) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        t.requests
            .lock()
            .unwrap()
            .push((method.into(), path, auth, pairs));
    }

    fn attr(twiml: &str, name: &str) -> String {
        let start = twiml.find(name).unwrap() + name.len();
        let rest = &twiml[start..];
        rest[..rest.find('"').unwrap()].replace("&amp;", "&")
    }

    async fn calls(
        State(t): State<Arc<Twilio>>,
        Path(account): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> impl IntoResponse {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
        record(
            &t,
            "POST",
            format!("/Accounts/{account}/Calls.json"),
            &headers,
            pairs.clone(),
        );
        let field = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let sid = format!("CAfake{}", t.requests.lock().unwrap().len());
        let (to, callback, twiml) = (field("To"), field("StatusCallback"), field("Twiml"));
        let call_sid = sid.clone();
        tokio::spawn(async move {
            callback_then(&callback, &call_sid, &to, &twiml).await;
        });
        (
            StatusCode::CREATED,
            axum::Json(json!({ "sid": sid, "status": "queued" })),
        )
    }

    /// What the callee of `to` does: `…800` is busy, anyone else answers and says goodbye.
    async fn callback_then(url: &str, sid: &str, to: &str, twiml: &str) {
        callback(url, sid, "ringing", &[]).await;
        if to.ends_with("800") {
            callback(url, sid, "busy", &[]).await;
            return;
        }
        callback(url, sid, "in-progress", &[("AnsweredBy", "human")]).await;
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conversations");
        let goodbye = callgenius::pipeline::wav::read(&dir.join("menu-joe-2.wav")).unwrap();
        let call_id: i64 = attr(twiml, "name=\"call_id\" value=\"").parse().unwrap();
        callgenius::simulator::stream(callgenius::simulator::StreamPlan {
            call_id,
            stream_url: attr(twiml, "Stream url=\""),
            token: attr(twiml, "name=\"token\" value=\""),
            utterances: vec![goodbye],
            listen_first: true,
            await_reply: true,
            pause: std::time::Duration::from_millis(600),
            speed: 1.0,
            quiet: std::time::Duration::from_millis(1500),
            carrier: callgenius::simulator::SimCarrier::Twilio,
        })
        .await
        .unwrap();
        callback(url, sid, "completed", &[("CallDuration", "12")]).await;
    }

    pub async fn start() -> (String, Arc<Twilio>) {
        let twilio = Arc::new(Twilio::default());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/AvailablePhoneNumbers/{country}/{kind}",
                get(|State(t): State<Arc<Twilio>>, Path((account, country, kind)): Path<(String, String, String)>,
                     headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    let pairs = serde_urlencoded::from_str(&q.unwrap_or_default()).unwrap();
                    record(&t, "GET", format!("/Accounts/{account}/AvailablePhoneNumbers/{country}/{kind}"), &headers, pairs);
                    axum::Json(json!({ "available_phone_numbers": [
                        { "friendly_name": "(02) 5550 4321", "phone_number": "+61255504321", "iso_country": "AU" },
                    ] }))
                }),
            )
            .route(
                "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json",
                post(|State(t): State<Arc<Twilio>>, Path(account): Path<String>, headers: HeaderMap, body: String| async move {
                    record(&t, "POST", format!("/Accounts/{account}/IncomingPhoneNumbers.json"), &headers, serde_urlencoded::from_str(&body).unwrap());
                    (StatusCode::CREATED, axum::Json(json!({ "sid": "PNfake1", "phone_number": "+61255504321" })))
                }),
            )
            .route(
                "/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{sid}",
                delete(|State(t): State<Arc<Twilio>>, Path((account, sid)): Path<(String, String)>, headers: HeaderMap| async move {
                    record(&t, "DELETE", format!("/Accounts/{account}/IncomingPhoneNumbers/{sid}"), &headers, Vec::new());
                    StatusCode::NO_CONTENT
                }),
            )
            .route("/2010-04-01/Accounts/{account}/Calls.json", post(calls))
            .with_state(twilio.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, twilio)
    }
}

#[tokio::test]
async fn through_twilio_numbers_are_bought_and_campaign_calls_placed_and_tracked() {
    let (twilio_url, twilio) = fake_twilio::start().await;
    let app = spawn_app_with(move |c| {
        c.limits.requests_per_minute = 100_000;
        c.carrier = callgenius::config::CarrierChoice::Twilio;
        c.twilio_account_sid = Some(fake_twilio::ACCOUNT.into());
        c.twilio_auth_token = Some(fake_twilio::TOKEN.to_owned().into());
        c.twilio_api_url = twilio_url;
    })
    .await;
    let s = app.register("owner@clinic.example", "Clinic").await;
    let agent = app.create_agent(&s.token, "Outreach").await;
    let offer = app
        .get(
            "/api/numbers/available?country=AU&area_code=2&limit=5",
            &s.token,
        )
        .await;
    assert_eq!(
        offer.body[0]["phone_number"], "+61255504321",
        "{}",
        offer.body
    );
    let r = app
        .post(
            "/api/numbers",
            &s.token,
            json!({ "phone_number": "+61255504321", "country": "AU" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["carrier"], "twilio");
    let number_id = r.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/numbers/{number_id}/assign"),
        &s.token,
        json!({ "agent_id": agent }),
    )
    .await;

    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Via Twilio", "agent_id": agent, "max_attempts": 1,
                    "targets": [{ "phone_number": "+61491570800" }, { "phone_number": "+61491570801" }] }),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    app.post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(90)).await;
    assert_eq!(done["stats"]["busy"], 1, "{done}");
    assert_eq!(done["stats"]["completed"], 1, "{done}");
    let targets = outcomes(&app, &s.token, id).await;
    let answered = targets["+61491570801"].1[0]["call_id"].as_i64().unwrap();
    let transcript = app
        .get(&format!("/api/calls/{answered}/transcript"), &s.token)
        .await;
    let lines = transcript.body.as_array().unwrap();
    assert!(lines.iter().any(|l| l["speaker"] == "caller"), "{lines:?}");

    // What Twilio was asked, exactly.
    let requests = twilio.requests.lock().unwrap().clone();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", fake_twilio::ACCOUNT, fake_twilio::TOKEN)
        )
    );
    assert!(
        requests.iter().all(|(_, _, a, _)| *a == auth),
        "basic auth on every request"
    );
    let (_, path, _, form) = requests
        .iter()
        .find(|(m, p, _, _)| m == "POST" && p.ends_with("IncomingPhoneNumbers.json"))
        .unwrap();
    assert!(path.contains(fake_twilio::ACCOUNT));
    assert!(form.contains(&("PhoneNumber".into(), "+61255504321".into())));
    assert!(form.contains(&(
        "VoiceUrl".into(),
        format!("{}/carrier/twilio/voice", app.base)
    )));
    let dials: Vec<&Vec<(String, String)>> = requests
        .iter()
        .filter(|(_, p, _, _)| p.ends_with("/Calls.json"))
        .map(|(_, _, _, f)| f)
        .collect();
    assert_eq!(dials.len(), 2);
    for form in dials {
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("From"), Some("+61255504321"));
        assert!(get("Twiml").unwrap().contains("/media/twilio"));
        assert!(
            get("StatusCallback")
                .unwrap()
                .starts_with(&format!("{}/carrier/twilio/status?call_id=", app.base))
        );
        let events: Vec<&str> = form
            .iter()
            .filter(|(n, _)| n == "StatusCallbackEvent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
        assert_eq!(get("MachineDetection"), Some("Enable"));
    }

    // Status callbacks are signed: a forged one is refused, as is one for a call Twilio never
    // placed for us.
    let url = format!("{}/carrier/twilio/status?call_id={answered}", app.base);
    let forged = app
        .client
        .post(&url)
        .header("X-Twilio-Signature", "Zm9yZ2Vk")
        .form(&[("CallSid", "CAx"), ("CallStatus", "busy")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        fake_twilio::callback(&url, "CAother", "busy", &[]).await,
        404
    );
    let call = app.get(&format!("/api/calls/{answered}"), &s.token).await;
    assert_eq!(call.body["status"], "completed");

    let r = app
        .delete(&format!("/api/numbers/{number_id}"), &s.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        twilio
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p, _, _)| m == "DELETE" && p.ends_with("IncomingPhoneNumbers/PNfake1.json"))
    );
}

/// A business at its plan's concurrent-call limit: the dialler waits (claims no target, uses no
/// attempt, fails nothing) and dials once the call holding the place ends.
#[tokio::test]
async fn the_dialler_waits_while_the_business_is_at_its_concurrent_call_limit() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        c.limits.requests_per_minute = 100_000;
        c.data_dir = dir;
        c.sandbox.ring_ms = 500;
        c.sandbox.rules = vec![rule("+61491*", SandboxOutcome::NoAnswer)];
        c.billing.trial_max_concurrent_calls = 1;
    })
    .await;
    let (s, agent, _) = business_with_number(&app, "limit@clinic.example").await;
    // A live test call takes the business's only place.
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call = r.body["call_id"].as_i64().unwrap();
    let mut twilio = crate::media::connect(
        r.body["stream_url"].as_str().unwrap(),
        r.body["token"].as_str().unwrap(),
    )
    .await;
    let live = crate::media::settled_call(&app, &s, call, |c| c["status"] == "in-progress").await;
    assert_eq!(live["status"], "in-progress", "{live}");

    let targets = vec![
        json!({ "phone_number": "+61491570101" }),
        json!({ "phone_number": "+61491570102" }),
    ];
    let id = campaign(&app, &s, agent, targets, json!({ "max_attempts": 1 })).await;
    let r = app
        .post(&format!("/api/campaigns/{id}/start"), &s.token, json!({}))
        .await;
    assert_eq!(r.body["status"], "running", "{}", r.body);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(dials(data_dir.path()).is_empty(), "dialled over the limit");
    let waiting = app.get(&format!("/api/campaigns/{id}"), &s.token).await;
    assert_eq!(waiting.body["status"], "running", "{}", waiting.body);
    assert_eq!(waiting.body["stats"]["pending"], 2, "{}", waiting.body);
    assert_eq!(waiting.body["stats"]["attempts"], 0, "{}", waiting.body);

    // The call ends: the dialler takes the place, one target at a time.
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "close")
        .await;
    let done = wait_for(&app, &s.token, id, "completed", Duration::from_secs(90)).await;
    assert_eq!(done["stats"]["no_answer"], 2, "{done}");
    assert_eq!(done["stats"]["attempts"], 2, "{done}");
    assert_eq!(dials(data_dir.path()).len(), 2);
}
