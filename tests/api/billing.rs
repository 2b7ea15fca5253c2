//! Billing: usage metered from real calls, the consumption order (trial, then the plan's
//! included minutes, then the wallet), refusal of new calls when all three are used up (inbound,
//! test calls, campaigns), and hosted checkout through the built-in provider and through a local
//! server speaking Stripe's Checkout Sessions API and signing its webhooks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message;

use callgenius::carrier::sandbox::{SandboxOutcome, SandboxRule};
use callgenius::config::{PaymentProviderChoice, PlanTerms, StripePrices};
use callgenius::domain::{CallId, CallStatus, TenantId};
use callgenius::store::Db;

use crate::helpers::{Session, TestApp, assert_error, spawn_app, spawn_app_with};
use crate::telephony::number_for;

async fn usage(app: &TestApp, s: &Session) -> Value {
    let r = app.get("/api/billing/usage", &s.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn database(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.unwrap()
}

/// Opens a checkout for `body` at `route` (subscribe or top-up); returns its URL.
async fn checkout(app: &TestApp, s: &Session, route: &str, body: Value) -> String {
    let r = app
        .post(&format!("/api/billing/{route}"), &s.token, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["url"].as_str().unwrap().to_owned()
}

/// Presses Confirm on a built-in checkout page (following its redirect back to the page).
async fn confirm(app: &TestApp, url: &str) -> (StatusCode, String) {
    let r = app.client.post(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Subscribes to `plan` through the built-in provider.
async fn subscribe(app: &TestApp, s: &Session, plan: &str) {
    let url = checkout(app, s, "subscribe", json!({ "plan": plan })).await;
    let (status, page) = confirm(app, &url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

/// Hands out a test call with `agent` (the API's way, so it is refused when it should be).
async fn test_call(app: &TestApp, s: &Session, agent: i64) -> crate::helpers::Response {
    app.post(
        &format!("/api/agents/{agent}/test-call"),
        &s.token,
        json!({}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Metering

/// A short real call over Twilio's media-stream protocol: connect, wait for the agent's first
/// audio, hang up. Returns the ended call record.
async fn short_call(app: &TestApp, s: &Session, agent: i64) -> Value {
    let r = test_call(app, s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call_id = r.body["call_id"].as_i64().unwrap();
    let url = r.body["stream_url"].as_str().unwrap();
    let token = r.body["token"].as_str().unwrap();
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut tx, mut rx) = socket.split();
    for message in [
        json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }),
        json!({ "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                "start": { "streamSid": "MZ1", "callSid": format!("CA{call_id}"), "accountSid": "AC1",
                           "tracks": ["inbound"],
                           "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                           "customParameters": { "token": token } } }),
    ] {
        tx.send(Message::text(message.to_string())).await.unwrap();
    }
    let greeted = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(Ok(message)) = rx.next().await {
            if let Message::Text(text) = message
                && serde_json::from_str::<Value>(&text).unwrap()["event"] == "media"
            {
                return;
            }
        }
        panic!("the stream closed before the agent spoke");
    })
    .await;
    assert!(greeted.is_ok(), "the agent never spoke");
    tx.send(Message::text(
        json!({ "event": "stop", "streamSid": "MZ1" }).to_string(),
    ))
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let call = app
            .get(&format!("/api/calls/{call_id}"), &s.token)
            .await
            .body;
        if call["status"] == "completed" {
            return call;
        }
        assert!(Instant::now() < until, "the call never ended: {call}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn usage_is_the_sum_of_the_calls_durations_each_rounded_up_to_the_second() {
    let app = spawn_app().await;
    let s = app.register("meter@example.com", "Meter").await;
    let fresh = usage(&app, &s).await;
    assert_eq!(fresh["plan"], Value::Null);
    assert_eq!(fresh["seconds_used"], 0);
    assert_eq!(fresh["minutes_used"], 0.0);
    assert_eq!(fresh["trial_minutes_remaining"], 30.0, "the default trial");
    assert_eq!(fresh["calls_allowed"], true);
    assert_eq!(fresh["blocked_reason"], Value::Null);

    let agent = app.create_agent(&s.token, "Reception").await;
    let mut expected_seconds = 0;
    for _ in 0..2 {
        let call = short_call(&app, &s, agent).await;
        let ms = (call["duration_sec"].as_f64().unwrap() * 1000.0).round() as i64;
        assert!(ms > 0, "{call}");
        expected_seconds += (ms + 999) / 1000;
    }
    let used = usage(&app, &s).await;
    assert_eq!(used["seconds_used"], expected_seconds, "{used}");
    let shown = ((expected_seconds * 10 + 59) / 60) as f64 / 10.0;
    assert_eq!(used["minutes_used"], shown, "{used}");
    assert_eq!(used["trial_seconds_remaining"], 1_800 - expected_seconds);
    assert_eq!(used["wallet_balance_cents"], 0);

    // One usage record per call, paid from the trial, in this month's period.
    let mut db = database(app.database_url.expose_secret()).await;
    let records: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "SELECT seconds, trial_seconds, overage_seconds, period_start FROM usage_records \
         WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(s.tenant_id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|(seconds, trial, overage, _)| seconds == trial && *overage == 0)
    );
    let period_start = used["period_start"].as_str().unwrap().replace("Z", ".000Z");
    assert!(records.iter().all(|r| r.3 == period_start), "{records:?}");
    assert!(used["period_end"].as_str().unwrap() > used["period_start"].as_str().unwrap());
}

/// A business with a numberless agent on an engine where the starter plan includes two minutes
/// at 12 cents a minute beyond, and the trial is one minute.
async fn small_plans_engine() -> TestApp {
    spawn_app_with(|c| {
        c.billing.trial_minutes = 1;
        c.billing.plans.starter = PlanTerms {
            included_minutes: 2,
            price_cents: 4_900,
            overage_cents_per_minute: 12,
            max_concurrent_calls: None,
        };
    })
    .await
}

/// Ends a handed-out call as if its stream had run `ms` milliseconds.
async fn run_call(db: &Db, s: &Session, call: i64, ms: i64) {
    let (tenant, call) = (TenantId(s.tenant_id), CallId(call));
    callgenius::store::calls::start(db, tenant, call, None)
        .await
        .unwrap();
    callgenius::store::calls::finish(db, tenant, call, CallStatus::Completed, "completed", ms)
        .await
        .unwrap();
}

async fn handed_out(app: &TestApp, s: &Session, agent: i64) -> i64 {
    let r = test_call(app, s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["call_id"].as_i64().unwrap()
}

/// (seconds, trial, included, overage, wallet cents) of a call's usage record.
async fn record(db: &mut sqlx::AnyConnection, call: i64) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT seconds, trial_seconds, included_seconds, overage_seconds, wallet_cents \
         FROM usage_records WHERE call_id = $1",
    )
    .bind(call)
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn calls_are_paid_from_the_trial_then_the_included_minutes_then_the_wallet() {
    let app = small_plans_engine().await;
    let s = app.register("order@example.com", "Order").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    subscribe(&app, &s, "starter").await;
    let top_up = checkout(&app, &s, "top-up", json!({ "amount_cents": 500 })).await;
    confirm(&app, &top_up).await;
    let before = usage(&app, &s).await;
    assert_eq!(before["plan"], "starter");
    assert_eq!(before["included_minutes"], 2);
    assert_eq!(before["trial_seconds_remaining"], 60);
    assert_eq!(before["wallet_balance_cents"], 500);
    assert_eq!(before["overage_cents_per_minute"], 12);

    let db = Db::connect(&app.database_url, 2).await.unwrap();
    let mut conn = database(app.database_url.expose_secret()).await;
    // (duration ms, expected record, trial left, included minutes left, wallet after)
    let steps = [
        (45_200, (46, 46, 0, 0, 0), 14, 2.0, 500),
        (100_000, (100, 14, 86, 0, 0), 0, 0.6, 500),
        (60_000, (60, 0, 34, 26, 6), 0, 0.0, 494),
        (1, (1, 0, 0, 1, 1), 0, 0.0, 493),
    ];
    for (ms, expected, trial_left, included_left, wallet) in steps {
        let call = handed_out(&app, &s, agent).await;
        run_call(&db, &s, call, ms).await;
        assert_eq!(record(&mut conn, call).await, expected, "{ms} ms");
        let now = usage(&app, &s).await;
        assert_eq!(now["trial_seconds_remaining"], trial_left, "{ms} ms: {now}");
        assert_eq!(
            now["included_minutes_remaining"], included_left,
            "{ms} ms: {now}"
        );
        assert_eq!(now["wallet_balance_cents"], wallet, "{ms} ms: {now}");
    }
    let total = usage(&app, &s).await;
    assert_eq!(total["seconds_used"], 46 + 100 + 60 + 1);
    assert_eq!(
        total["minutes_used"], 3.5,
        "207 s is 3.45 minutes, shown rounded up"
    );
    let sums: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(trial_seconds) AS BIGINT), CAST(SUM(included_seconds) AS BIGINT), \
            CAST(SUM(overage_seconds) AS BIGINT), CAST(SUM(wallet_cents) AS BIGINT) \
         FROM usage_records WHERE tenant_id = $1",
    )
    .bind(s.tenant_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(sums, (60, 120, 27, 7));
    // A call that never connected costs nothing and leaves no record.
    let unconnected = handed_out(&app, &s, agent).await;
    callgenius::store::calls::finish(
        &db,
        TenantId(s.tenant_id),
        CallId(unconnected),
        CallStatus::Failed,
        "not-connected",
        0,
    )
    .await
    .unwrap();
    let none: Option<i64> = sqlx::query_scalar("SELECT id FROM usage_records WHERE call_id = $1")
        .bind(unconnected)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    assert_eq!(none, None);

    // A new period (this month's records moved to last month) restores the included minutes,
    // not the trial.
    let period = total["period_start"]
        .as_str()
        .unwrap()
        .replace("Z", ".000Z");
    let previous =
        chrono::DateTime::parse_from_rfc3339(&period).unwrap() - chrono::Duration::days(1);
    let previous = callgenius::billing::Period::containing(previous.to_utc()).key();
    sqlx::query("UPDATE usage_records SET period_start = $1 WHERE tenant_id = $2")
        .bind(&previous)
        .bind(s.tenant_id)
        .execute(&mut conn)
        .await
        .unwrap();
    let fresh = usage(&app, &s).await;
    assert_eq!(fresh["seconds_used"], 0);
    assert_eq!(fresh["included_minutes_remaining"], 2.0);
    assert_eq!(fresh["trial_seconds_remaining"], 0);
    let call = handed_out(&app, &s, agent).await;
    run_call(&db, &s, call, 30_000).await;
    assert_eq!(record(&mut conn, call).await, (30, 0, 30, 0, 0));
    assert_eq!(usage(&app, &s).await["wallet_balance_cents"], 493);

    // Without a plan, past the trial the wallet pays the pay-as-you-go (starter) rate.
    let payg = app.register("payg@example.com", "Payg").await;
    let payg_agent = app.create_agent(&payg.token, "Reception").await;
    let top_up = checkout(&app, &payg, "top-up", json!({ "amount_cents": 500 })).await;
    confirm(&app, &top_up).await;
    let call = handed_out(&app, &payg, payg_agent).await;
    run_call(&db, &payg, call, 90_000).await;
    assert_eq!(record(&mut conn, call).await, (90, 60, 0, 30, 6));
    let after = usage(&app, &payg).await;
    assert_eq!(after["plan"], Value::Null);
    assert_eq!(after["wallet_balance_cents"], 494);
    assert_eq!(after["calls_allowed"], true, "the wallet still has money");
}

/// Calls ending at once on many connections share the trial exactly: no second is spent twice
/// (PostgreSQL locks the business's row; SQLite's write transactions are exclusive).
#[tokio::test]
async fn calls_ending_at_once_never_spend_the_same_trial_second_twice() {
    let app = small_plans_engine().await;
    let s = app.register("race@example.com", "Race").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let db = Db::connect(&app.database_url, 8).await.unwrap();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let call = handed_out(&app, &s, agent).await;
        callgenius::store::calls::start(&db, TenantId(s.tenant_id), CallId(call), None)
            .await
            .unwrap();
        calls.push(call);
    }
    let ends = calls.iter().map(|&call| {
        let db = db.clone();
        let tenant = TenantId(s.tenant_id);
        tokio::spawn(async move {
            callgenius::store::calls::finish(
                &db,
                tenant,
                CallId(call),
                CallStatus::Completed,
                "completed",
                10_000,
            )
            .await
            .unwrap();
        })
    });
    for end in futures_util::future::join_all(ends).await {
        end.unwrap();
    }
    let mut conn = database(app.database_url.expose_secret()).await;
    let (trial, overage): (i64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(trial_seconds) AS BIGINT), CAST(SUM(overage_seconds) AS BIGINT) \
         FROM usage_records WHERE tenant_id = $1",
    )
    .bind(s.tenant_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((trial, overage), (60, 40));
    let now = usage(&app, &s).await;
    assert_eq!(now["trial_seconds_remaining"], 0);
    assert_eq!(now["seconds_used"], 100);
    // 40 s at 12 cents a minute over calls of 10 s: 2 cents each, rounded up per call. The
    // calls ran on into debt because calls in progress are never cut.
    assert_eq!(now["wallet_balance_cents"], -8);
    assert_eq!(now["calls_allowed"], false);
}

// ---------------------------------------------------------------------------------------------
// Enforcement

/// The sandbox's dial log: how many calls it has placed.
fn dials(data_dir: &std::path::Path) -> usize {
    std::fs::read_to_string(data_dir.join("sandbox-dials.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

async fn inbound_twiml(app: &TestApp, to: &str) -> String {
    let form = [("CallSid", "CA77"), ("From", "+61255509999"), ("To", to)];
    crate::carrier_signing::twilio_post(app, "/carrier/twilio/voice", &form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the campaign's status is `status`.
async fn campaign_status(app: &TestApp, s: &Session, id: i64, status: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get(&format!("/api/campaigns/{id}"), &s.token).await;
        if r.body["status"] == status {
            return r.body;
        }
        assert!(
            Instant::now() < until,
            "campaign never {status}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_trial_included_minutes_and_wallet_used_up_new_calls_are_refused_until_a_plan() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        crate::carrier_signing::configure(c);
        c.limits.requests_per_minute = 100_000;
        c.data_dir = dir;
        c.billing.trial_minutes = 0;
        c.sandbox.ring_ms = 200;
        c.sandbox.rules = vec![SandboxRule {
            number: "+61491*".into(),
            outcome: SandboxOutcome::NoAnswer,
        }];
    })
    .await;
    let s = app.register("broke@example.com", "Broke").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let number = number_for(&app, &s, agent).await;

    let blocked = usage(&app, &s).await;
    assert_eq!(blocked["calls_allowed"], false, "{blocked}");
    assert_eq!(blocked["trial_minutes_remaining"], 0.0);
    let reason = blocked["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("trial minutes are used up"), "{reason}");

    // Inbound: a short spoken message, then the line hangs up; no stream, no call record.
    let twiml = inbound_twiml(&app, &number).await;
    assert!(
        twiml.contains("<Say>Sorry, we can&apos;t take your call right now.")
            && twiml.contains("<Hangup/>")
            && !twiml.contains("<Stream"),
        "{twiml}"
    );
    let ncco: Value = crate::carrier_signing::vonage_get(
        &app,
        &format!("/carrier/vonage/answer?agent_id={agent}"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(ncco[0]["action"], "talk", "{ncco}");
    assert!(
        ncco[0]["text"]
            .as_str()
            .unwrap()
            .contains("can't take your call")
    );
    // A test call: 402 with the reason.
    let refused = test_call(&app, &s, agent).await;
    assert_error(&refused, StatusCode::PAYMENT_REQUIRED);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("trial minutes are used up"),
        "{}",
        refused.body
    );
    let calls = app.get("/api/calls", &s.token).await;
    assert_eq!(calls.body["meta"]["total"], 0, "{}", calls.body);

    // Outbound: the dialler pauses the campaign with the reason and dials no one.
    let r = app
        .post(
            "/api/campaigns",
            &s.token,
            json!({ "name": "Recall", "agent_id": agent,
                    "targets": [{ "phone_number": "+61491570600" }, { "phone_number": "+61491570601" }],
                    "max_attempts": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let campaign = r.body["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/campaigns/{campaign}/start"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let paused = campaign_status(&app, &s, campaign, "paused").await;
    let why = paused["status_reason"].as_str().unwrap();
    assert!(
        why.contains("calls are paused") && why.contains("trial minutes"),
        "{why}"
    );
    assert_eq!(paused["stats"]["attempts"], 0, "{paused}");
    assert_eq!(dials(data_dir.path()), 0);

    // A plan lets calls start again: inbound, test calls, and the campaign once resumed.
    subscribe(&app, &s, "starter").await;
    let allowed = usage(&app, &s).await;
    assert_eq!(allowed["calls_allowed"], true, "{allowed}");
    assert_eq!(allowed["blocked_reason"], Value::Null);
    assert!(
        inbound_twiml(&app, &number)
            .await
            .contains("<Connect><Stream")
    );
    assert_eq!(test_call(&app, &s, agent).await.status, StatusCode::CREATED);
    let r = app
        .post(
            &format!("/api/campaigns/{campaign}/start"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "running", "{}", r.body);
    let done = campaign_status(&app, &s, campaign, "completed").await;
    assert_eq!(done["stats"]["no_answer"], 2, "{done}");
    assert_eq!(dials(data_dir.path()), 2);
}

// ---------------------------------------------------------------------------------------------
// Checkout: the built-in provider

/// Registers `email` and adds them to `owner`'s business with `role`, their token switched to it.
async fn member(app: &TestApp, owner: &Session, email: &str, role: &str) -> Session {
    let s = app.register(email, "Own").await;
    let r = app
        .post(
            "/api/members",
            &owner.token,
            json!({ "email": email, "role": role }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/api/tenants/switch",
            &s.token,
            json!({ "tenant_id": owner.tenant_id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    Session {
        tenant_id: owner.tenant_id,
        ..s
    }
}

#[tokio::test]
async fn the_builtin_checkout_page_activates_a_plan_once_and_only_owners_buy() {
    let app = spawn_app().await;
    let s = app.register("owner@example.com", "Harbour Dental").await;
    let other = app.register("other@example.com", "Other").await;

    let url = checkout(&app, &s, "subscribe", json!({ "plan": "pro" })).await;
    let prefix = format!("{}/billing/checkout/", app.base);
    let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        usage(&app, &s).await["plan"],
        Value::Null,
        "not before confirming"
    );

    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for text in [
        "Subscribe to Pro",
        "Harbour Dental",
        "149.00 USD a month",
        "350 minutes a month",
        "0.12 USD a minute",
        "<form method=\"post\">",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }

    let (status, done) = confirm(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("The Pro plan is active."), "{done}");
    let active = usage(&app, &s).await;
    assert_eq!(active["plan"], "pro");
    assert_eq!(active["included_minutes"], 350);
    assert_eq!(active["included_minutes_remaining"], 350.0);
    assert_eq!(active["overage_cents_per_minute"], 12);
    // A second confirmation, or a stale page's, changes nothing.
    let (status, again) = confirm(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again.contains("The Pro plan is active."));
    let mut db = database(app.database_url.expose_secret()).await;
    let completed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, completed_at FROM checkout_sessions WHERE tenant_id = $1")
            .bind(s.tenant_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].0, "completed");
    // Nothing stores the token itself.
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM checkout_sessions WHERE token_hash = $1 OR url LIKE $2",
    )
    .bind(token)
    .bind(format!("%{token}%"))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(stored, 0);

    // Changing plan takes the new plan's terms.
    subscribe(&app, &s, "enterprise").await;
    let changed = usage(&app, &s).await;
    assert_eq!(changed["plan"], "enterprise");
    assert_eq!(changed["included_minutes"], 2_000);
    assert_eq!(changed["overage_cents_per_minute"], 9);

    // Unknown or malformed tokens, and expired sessions, are a 404 page.
    for bad in [
        format!("{prefix}{}", "0".repeat(64)),
        format!("{prefix}nope"),
    ] {
        let r = app.client.get(&bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.text().await.unwrap().contains("Checkout not found"));
        assert_eq!(confirm(&app, &bad).await.0, StatusCode::NOT_FOUND);
    }
    let stale = checkout(&app, &s, "subscribe", json!({ "plan": "starter" })).await;
    sqlx::query(
        "UPDATE checkout_sessions SET expires_at = '2000-01-01T00:00:00.000Z' \
         WHERE tenant_id = $1 AND status = 'open'",
    )
    .bind(s.tenant_id)
    .execute(&mut db)
    .await
    .unwrap();
    let (status, page) = confirm(&app, &stale).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("expired"), "{page}");
    assert_eq!(usage(&app, &s).await["plan"], "enterprise");

    // Validation, and only owners.
    for body in [
        json!({ "plan": "platinum" }),
        json!({}),
        json!({ "plan": 3 }),
    ] {
        let r = app
            .post("/api/billing/subscribe", &s.token, body.clone())
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["errors"]["plan"].is_array(), "{body}: {}", r.body);
    }
    for role in ["admin", "member"] {
        let m = member(&app, &s, &format!("{role}@example.com"), role).await;
        for (route, body) in [
            ("subscribe", json!({ "plan": "pro" })),
            ("top-up", json!({ "amount_cents": 1000 })),
        ] {
            let r = app
                .post(&format!("/api/billing/{route}"), &m.token, body)
                .await;
            assert_error(&r, StatusCode::FORBIDDEN);
        }
        // Any member sees the usage.
        assert_eq!(usage(&app, &m).await["plan"], "enterprise");
    }

    // Another business sees only its own state, and cannot act on this one.
    let theirs = usage(&app, &other).await;
    assert_eq!(theirs["plan"], Value::Null);
    assert_eq!(theirs["wallet_balance_cents"], 0);
    let r = app
        .post(
            "/api/tenants/switch",
            &other.token,
            json!({ "tenant_id": s.tenant_id }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN);
    let plans = app.get("/api/billing/plans", &other.token).await;
    assert_eq!(plans.status, StatusCode::OK);
    assert_eq!(
        plans.body[1],
        json!({ "plan": "pro", "included_minutes": 350, "price_cents": 14_900,
                "overage_cents_per_minute": 12, "currency": "usd" })
    );
}

#[tokio::test]
async fn a_builtin_top_up_credits_the_wallet_once() {
    let app = spawn_app().await;
    let s = app.register("wallet@example.com", "Wallet").await;
    for (amount, why) in [
        (json!(499), "below the minimum"),
        (json!(100_001), "above the maximum"),
        (json!("1000"), "not an integer"),
        (json!(12.5), "not an integer"),
        (Value::Null, "null"),
    ] {
        let r = app
            .post(
                "/api/billing/top-up",
                &s.token,
                json!({ "amount_cents": amount }),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            r.body["errors"]["amount_cents"].is_array(),
            "{why}: {}",
            r.body
        );
    }
    let r = app.post("/api/billing/top-up", &s.token, json!({})).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"]["amount_cents"][0], "is required");

    let url = checkout(&app, &s, "top-up", json!({ "amount_cents": 2_500 })).await;
    let page = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Top up the wallet") && page.contains("25.00 USD"),
        "{page}"
    );
    assert_eq!(usage(&app, &s).await["wallet_balance_cents"], 0);
    let (status, done) = confirm(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        done.contains("The wallet was credited with 25.00 USD."),
        "{done}"
    );
    assert_eq!(usage(&app, &s).await["wallet_balance_cents"], 2_500);
    confirm(&app, &url).await;
    let after = usage(&app, &s).await;
    assert_eq!(after["wallet_balance_cents"], 2_500, "credited once");
    assert_eq!(after["plan"], Value::Null, "a top-up is not a plan");
    let second = checkout(&app, &s, "top-up", json!({ "amount_cents": 500 })).await;
    confirm(&app, &second).await;
    assert_eq!(usage(&app, &s).await["wallet_balance_cents"], 3_000);
}

// ---------------------------------------------------------------------------------------------
// Checkout: Stripe

/// What the local Stripe server was asked.
#[derive(Debug, Clone)]
struct StripeRequest {
    authorization: Option<String>,
    idempotency_key: Option<String>,
    form: HashMap<String, String>,
}

/// A local server speaking Stripe's `POST /v1/checkout/sessions`; the price `price_missing`
/// gets Stripe's error shape.
async fn stripe_server() -> (String, Arc<Mutex<Vec<StripeRequest>>>) {
    use axum::extract::State;
    use axum::http::HeaderMap;
    let seen: Arc<Mutex<Vec<StripeRequest>>> = Arc::default();
    async fn create(
        State(seen): State<Arc<Mutex<Vec<StripeRequest>>>>,
        headers: HeaderMap,
        body: String,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let missing = form.get("line_items[0][price]").map(String::as_str) == Some("price_missing");
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(StripeRequest {
                authorization: header("authorization"),
                idempotency_key: header("idempotency-key"),
                form,
            });
            seen.len()
        };
        if missing {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": {
                    "message": "No such price: 'price_missing'",
                    "type": "invalid_request_error", "param": "line_items[0][price]" } })),
            );
        }
        let id = format!("cs_test_a1B2c3{n}");
        (
            axum::http::StatusCode::OK,
            axum::Json(json!({ "id": id, "object": "checkout.session",
                               "url": format!("https://checkout.stripe.com/c/pay/{id}"),
                               "payment_status": "unpaid", "status": "open" })),
        )
    }
    let router = axum::Router::new()
        .route("/v1/checkout/sessions", axum::routing::post(create))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, seen)
}

const WEBHOOK_SECRET: &str = "whsec_test_3kq8";
const SECRET_KEY: &str = "sk_test_51Hx9secret";

/// `Stripe-Signature` for `body` at unix time `t`, as Stripe computes it.
fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Checkout Session event as Stripe sends it: each with its own event id.
fn session_event(kind: &str, session_id: &str, reference: &str) -> String {
    json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
        "data": { "object": {
            "id": session_id, "object": "checkout.session", "client_reference_id": reference,
            "payment_status": "paid", "status": "complete" } }
    })
    .to_string()
}

async fn deliver(app: &TestApp, signature: Option<&str>, body: &str) -> crate::helpers::Response {
    let mut request = app
        .client
        .post(format!("{}/billing/stripe/webhook", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    crate::helpers::Response {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn stripe_checkout_sessions_are_opened_and_completed_by_signed_webhooks_only() {
    let (stripe, seen) = stripe_server().await;
    let app = spawn_app_with(move |c| {
        c.billing.provider = PaymentProviderChoice::Stripe;
        c.billing.stripe.api_url = stripe;
        c.billing.stripe.secret_key = Some(SECRET_KEY.to_owned().into());
        c.billing.stripe.webhook_secret = Some(WEBHOOK_SECRET.to_owned().into());
        c.billing.stripe.prices = StripePrices {
            starter: Some("price_starter".into()),
            pro: Some("price_pro".into()),
            enterprise: Some("price_missing".into()),
        };
    })
    .await;
    let s = app.register("stripe@example.com", "Stripe Dental").await;

    let url = checkout(&app, &s, "subscribe", json!({ "plan": "pro" })).await;
    assert_eq!(url, "https://checkout.stripe.com/c/pay/cs_test_a1B2c31");
    let asked = seen.lock().unwrap()[0].clone();
    assert_eq!(
        asked.authorization.as_deref(),
        Some(&*format!("Bearer {SECRET_KEY}"))
    );
    let form = &asked.form;
    let reference = form["client_reference_id"].clone();
    assert_eq!(reference.len(), 64);
    assert_eq!(asked.idempotency_key.as_deref(), Some(reference.as_str()));
    assert_eq!(form["mode"], "subscription");
    assert_eq!(form["line_items[0][price]"], "price_pro");
    assert_eq!(form["line_items[0][quantity]"], "1");
    assert_eq!(form["metadata[tenant_id]"], s.tenant_id.to_string());
    assert_eq!(form["metadata[plan]"], "pro");
    assert_eq!(form["metadata[kind]"], "plan");
    let page = format!("{}/billing/checkout/{reference}", app.base);
    assert_eq!(form["success_url"], page);
    assert_eq!(form["cancel_url"], page);
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);

    // The engine's page shows the session waiting, with no way to confirm it there.
    let waiting = app
        .client
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(waiting.contains("Waiting for the payment"), "{waiting}");
    assert!(waiting.contains("https://checkout.stripe.com/c/pay/cs_test_a1B2c31"));
    assert!(!waiting.contains("<form"));
    assert_eq!(confirm(&app, &page).await.0, StatusCode::NOT_FOUND);
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);

    // Forged, unsigned, stale and mismatched deliveries are refused and change nothing.
    let completed = session_event("checkout.session.completed", "cs_test_a1B2c31", &reference);
    let now = chrono::Utc::now().timestamp();
    for signature in [
        None,
        Some(stripe_signature("whsec_wrong", now, &completed)),
        Some(stripe_signature(WEBHOOK_SECRET, now - 600, &completed)),
        Some(stripe_signature(
            WEBHOOK_SECRET,
            now,
            &completed.replace("paid", "pa1d"),
        )),
        Some(format!("t={now},v1=deadbeef")),
    ] {
        let r = deliver(&app, signature.as_deref(), &completed).await;
        assert_error(&r, StatusCode::BAD_REQUEST);
    }
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);

    // Signed events about other sessions, or of other types, are acknowledged and ignored.
    for body in [
        session_event("checkout.session.completed", "cs_test_other", &reference),
        session_event(
            "checkout.session.completed",
            "cs_test_a1B2c31",
            &"f".repeat(64),
        ),
        json!({ "id": "evt_inv", "type": "invoice.paid",
                "data": { "object": { "object": "invoice", "id": "in_1" } } })
        .to_string(),
    ] {
        let r = deliver(
            &app,
            Some(&stripe_signature(WEBHOOK_SECRET, now, &body)),
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["result"], "ignored", "{body}");
    }
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);

    // The real one activates the plan; a replay (the same event id) is recognised and changes
    // nothing, and so does another event completing the same session.
    let signature = stripe_signature(WEBHOOK_SECRET, now, &completed);
    let r = deliver(&app, Some(&signature), &completed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({ "received": true, "result": "completed" }));
    let active = usage(&app, &s).await;
    assert_eq!(active["plan"], "pro");
    assert_eq!(active["included_minutes"], 350);
    let r = deliver(&app, Some(&signature), &completed).await;
    assert_eq!(r.body["result"], "duplicate");
    let again = session_event(
        "checkout.session.async_payment_succeeded",
        "cs_test_a1B2c31",
        &reference,
    );
    let r = deliver(
        &app,
        Some(&stripe_signature(WEBHOOK_SECRET, now, &again)),
        &again,
    )
    .await;
    assert_eq!(r.body["result"], "already_completed");
    assert_eq!(usage(&app, &s).await["plan"], "pro");
    let done = app
        .client
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("The Pro plan is active."), "{done}");

    // A top-up is a one-off payment with an inline price.
    let url = checkout(&app, &s, "top-up", json!({ "amount_cents": 2_500 })).await;
    assert_eq!(url, "https://checkout.stripe.com/c/pay/cs_test_a1B2c32");
    let form = seen.lock().unwrap()[1].form.clone();
    assert_eq!(form["mode"], "payment");
    assert_eq!(form["line_items[0][price_data][unit_amount]"], "2500");
    assert_eq!(form["line_items[0][price_data][currency]"], "usd");
    assert!(form.contains_key("line_items[0][price_data][product_data][name]"));
    assert_eq!(form["metadata[kind]"], "top_up");
    assert!(!form.contains_key("line_items[0][price]"));
    let paid = session_event(
        "checkout.session.completed",
        "cs_test_a1B2c32",
        &form["client_reference_id"],
    );
    let signature = stripe_signature(WEBHOOK_SECRET, now, &paid);
    for _ in 0..2 {
        let r = deliver(&app, Some(&signature), &paid).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(usage(&app, &s).await["wallet_balance_cents"], 2_500);

    // Stripe's refusal is a 502 with its explanation, never the secret key.
    let r = app
        .post(
            "/api/billing/subscribe",
            &s.token,
            json!({ "plan": "enterprise" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_GATEWAY);
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("No such price: 'price_missing'"),
        "{message}"
    );
    assert!(!r.body.to_string().contains(SECRET_KEY));
    assert_eq!(usage(&app, &s).await["plan"], "pro");
}

#[tokio::test]
async fn the_stripe_webhook_is_absent_without_stripe() {
    let app = spawn_app().await;
    let body = session_event("checkout.session.completed", "cs_1", "x");
    let now = chrono::Utc::now().timestamp();
    let r = deliver(
        &app,
        Some(&stripe_signature(WEBHOOK_SECRET, now, &body)),
        &body,
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// The trial, once per account

#[tokio::test]
async fn the_trial_is_one_per_account_so_a_second_business_has_none_and_its_calls_are_refused() {
    let app = spawn_app().await;
    let s = app.register("twice@example.com", "First Clinic").await;
    assert_eq!(usage(&app, &s).await["trial_seconds_remaining"], 1_800);
    let first_agent = app.create_agent(&s.token, "Reception").await;

    for name in ["Second Clinic", "Third Clinic"] {
        let created = app
            .post("/api/tenants", &s.token, json!({ "name": name }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_i64().unwrap();
        let r = app
            .post("/api/tenants/switch", &s.token, json!({ "tenant_id": id }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let fresh = usage(&app, &s).await;
        assert_eq!(fresh["trial_seconds_remaining"], 0, "{fresh}");
        assert_eq!(fresh["trial_minutes_remaining"], 0.0, "{fresh}");
        assert_eq!(fresh["calls_allowed"], false, "{fresh}");
        assert!(
            fresh["blocked_reason"]
                .as_str()
                .unwrap()
                .contains("trial minutes are used up"),
            "{fresh}"
        );
        // A test call from it is refused as any business with nothing left is.
        let agent = app.create_agent(&s.token, "Reception").await;
        let refused = test_call(&app, &s, agent).await;
        assert_error(&refused, StatusCode::PAYMENT_REQUIRED);
        let calls = app.get("/api/calls", &s.token).await;
        assert_eq!(calls.body["meta"]["total"], 0, "{}", calls.body);
    }

    // The first business keeps the account's trial and its calls go through.
    let r = app
        .post(
            "/api/tenants/switch",
            &s.token,
            json!({ "tenant_id": s.tenant_id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(usage(&app, &s).await["trial_seconds_remaining"], 1_800);
    let r = test_call(&app, &s, first_agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Another account has its own.
    let other = app.register("other@example.com", "Other Clinic").await;
    assert_eq!(usage(&app, &other).await["trial_seconds_remaining"], 1_800);
}

// ---------------------------------------------------------------------------------------------
// Stripe subscriptions: lifecycle events

/// A signed-event body of `kind` about `object`, with Stripe's event id and `created`.
fn stripe_event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({ "id": id, "object": "event", "type": kind, "created": created,
            "api_version": "2025-03-31.basil", "data": { "object": object } })
    .to_string()
}

/// An invoice event (`invoice.paid`, `invoice.payment_failed`) for `subscription`, covering
/// `[start, end)`, shaped as API versions from 2025 send it (the subscription under `parent`).
fn invoice_event(
    id: &str,
    kind: &str,
    created: i64,
    subscription: &str,
    reason: &str,
    (start, end): (i64, i64),
) -> String {
    stripe_event(
        id,
        kind,
        created,
        json!({
            "id": format!("in_{id}"), "object": "invoice", "customer": "cus_Q1",
            "billing_reason": reason, "status": if kind == "invoice.paid" { "paid" } else { "open" },
            "parent": { "type": "subscription_details",
                        "subscription_details": { "subscription": subscription, "metadata": {} } },
            "lines": { "object": "list", "data": [
                { "id": format!("il_{id}"), "object": "line_item", "amount": 4_900,
                  "period": { "start": start, "end": end } } ] }
        }),
    )
}

fn subscription_deleted(id: &str, created: i64, subscription: &str) -> String {
    stripe_event(
        id,
        "customer.subscription.deleted",
        created,
        json!({ "id": subscription, "object": "subscription", "customer": "cus_Q1",
                "status": "canceled" }),
    )
}

/// A completed subscription-mode Checkout Session.
fn subscription_checkout(
    id: &str,
    created: i64,
    session: &str,
    reference: &str,
    subscription: &str,
) -> String {
    stripe_event(
        id,
        "checkout.session.completed",
        created,
        json!({ "id": session, "object": "checkout.session", "mode": "subscription",
                "client_reference_id": reference, "payment_status": "paid", "status": "complete",
                "customer": "cus_Q1", "subscription": subscription }),
    )
}

/// Delivers `body` signed now; returns the webhook's `result`.
async fn signed(app: &TestApp, body: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let r = deliver(
        app,
        Some(&stripe_signature(WEBHOOK_SECRET, now, body)),
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["result"].as_str().unwrap().to_owned()
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn stripe_subscriptions_renew_and_end_with_their_events_applied_once_and_in_order() {
    let (stripe, seen) = stripe_server().await;
    let app = spawn_app_with(move |c| {
        c.billing.trial_minutes = 0;
        c.billing.provider = PaymentProviderChoice::Stripe;
        c.billing.stripe.api_url = stripe;
        c.billing.stripe.secret_key = Some(SECRET_KEY.to_owned().into());
        c.billing.stripe.webhook_secret = Some(WEBHOOK_SECRET.to_owned().into());
        c.billing.stripe.prices = StripePrices {
            starter: Some("price_starter".into()),
            pro: Some("price_pro".into()),
            enterprise: Some("price_enterprise".into()),
        };
    })
    .await;
    let s = app
        .register("lifecycle@example.com", "Lifecycle Dental")
        .await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let db = Db::connect(&app.database_url, 2).await.unwrap();
    let mut conn = database(app.database_url.expose_secret()).await;
    let day = 86_400;
    let now = chrono::Utc::now().timestamp();
    let t0 = now - 60;

    // The checkout: the plan is active, and the subscription and customer are recorded.
    checkout(&app, &s, "subscribe", json!({ "plan": "pro" })).await;
    let reference = seen.lock().unwrap()[0].form["client_reference_id"].clone();
    let completed = subscription_checkout("evt_c1", t0, "cs_test_a1B2c31", &reference, "sub_A");
    assert_eq!(signed(&app, &completed).await, "completed");
    let (tenant, customer, status): (Option<i64>, Option<String>, String) = sqlx::query_as(
        "SELECT tenant_id, customer_id, status FROM stripe_subscriptions WHERE id = 'sub_A'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (tenant, customer.as_deref(), status.as_str()),
        (Some(s.tenant_id), Some("cus_Q1"), "active")
    );

    // The first invoice sets the period; calls use its included minutes.
    let first = (now - 40 * day, now - 10 * day);
    let paid1 = invoice_event(
        "evt_p1",
        "invoice.paid",
        t0 + 1,
        "sub_A",
        "subscription_create",
        first,
    );
    assert_eq!(signed(&app, &paid1).await, "renewed");
    let u = usage(&app, &s).await;
    assert_eq!(u["plan"], "pro", "{u}");
    assert_eq!(u["period_start"], rfc3339(first.0), "{u}");
    assert_eq!(u["period_end"], rfc3339(first.1), "{u}");
    let call = handed_out(&app, &s, agent).await;
    run_call(&db, &s, call, 90_000).await;
    let u = usage(&app, &s).await;
    assert_eq!(u["seconds_used"], 90, "{u}");
    assert_eq!(u["included_minutes_remaining"], 348.5, "{u}");

    // A replayed event (the same id) is applied once.
    assert_eq!(signed(&app, &paid1).await, "duplicate");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM stripe_events WHERE id = 'evt_p1'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);

    // The renewal: a new period from the invoice's lines, its included minutes whole again.
    let second = (now - 10 * day, now + 20 * day);
    let paid2 = invoice_event(
        "evt_p2",
        "invoice.paid",
        t0 + 2,
        "sub_A",
        "subscription_cycle",
        second,
    );
    assert_eq!(signed(&app, &paid2).await, "renewed");
    let u = usage(&app, &s).await;
    assert_eq!(u["plan"], "pro", "{u}");
    assert_eq!(u["period_start"], rfc3339(second.0), "{u}");
    assert_eq!(u["period_end"], rfc3339(second.1), "{u}");
    assert_eq!(u["seconds_used"], 0, "{u}");
    assert_eq!(u["included_minutes_remaining"], 350.0, "{u}");
    let call = handed_out(&app, &s, agent).await;
    run_call(&db, &s, call, 30_000).await;
    assert_eq!(record(&mut conn, call).await, (30, 0, 30, 0, 0));

    // Out of order: the deletion arrives, then an older paid invoice; the plan stays ended.
    let deleted = subscription_deleted("evt_d1", t0 + 10, "sub_A");
    assert_eq!(signed(&app, &deleted).await, "ended");
    let late = invoice_event(
        "evt_p3",
        "invoice.paid",
        t0 + 5,
        "sub_A",
        "subscription_cycle",
        second,
    );
    assert_eq!(signed(&app, &late).await, "stale");
    let ended = usage(&app, &s).await;
    assert_eq!(ended["plan"], Value::Null, "{ended}");
    assert_eq!(ended["included_minutes"], 0, "{ended}");
    assert_eq!(ended["calls_allowed"], false, "{ended}");
    // Back to pay-as-you-go (the starter plan's overage rate), from the empty wallet.
    assert_eq!(ended["overage_cents_per_minute"], 15, "{ended}");
    assert_error(
        &test_call(&app, &s, agent).await,
        StatusCode::PAYMENT_REQUIRED,
    );
    // Replays of the events already applied change nothing either.
    assert_eq!(signed(&app, &paid2).await, "duplicate");
    assert_eq!(signed(&app, &completed).await, "duplicate");
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);

    // A new subscription whose first invoice arrives before its checkout: recorded, then
    // applied with the checkout; a failed payment ends it, once.
    checkout(&app, &s, "subscribe", json!({ "plan": "starter" })).await;
    let reference = seen.lock().unwrap()[1].form["client_reference_id"].clone();
    let third = (now - day, now + 29 * day);
    let early = invoice_event(
        "evt_p4",
        "invoice.paid",
        t0 + 20,
        "sub_B",
        "subscription_create",
        third,
    );
    assert_eq!(signed(&app, &early).await, "recorded");
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);
    let completed =
        subscription_checkout("evt_c2", t0 + 21, "cs_test_a1B2c32", &reference, "sub_B");
    assert_eq!(signed(&app, &completed).await, "completed");
    let u = usage(&app, &s).await;
    assert_eq!(u["plan"], "starter", "{u}");
    assert_eq!(u["period_start"], rfc3339(third.0), "{u}");
    assert_eq!(u["calls_allowed"], true, "{u}");
    // An event about the old subscription no longer touches the business's plan.
    let old = subscription_deleted("evt_d2", t0 + 25, "sub_A");
    assert_eq!(signed(&app, &old).await, "recorded");
    assert_eq!(usage(&app, &s).await["plan"], "starter");
    let failed = invoice_event(
        "evt_f1",
        "invoice.payment_failed",
        t0 + 30,
        "sub_B",
        "subscription_cycle",
        third,
    );
    assert_eq!(signed(&app, &failed).await, "ended");
    assert_eq!(signed(&app, &failed).await, "duplicate");
    let u = usage(&app, &s).await;
    assert_eq!(u["plan"], Value::Null, "{u}");
    assert_eq!(u["calls_allowed"], false, "{u}");

    // Forged lifecycle events are refused like any other.
    let forged = invoice_event(
        "evt_x",
        "invoice.paid",
        t0 + 40,
        "sub_B",
        "subscription_cycle",
        third,
    );
    let r = deliver(
        &app,
        Some(&stripe_signature("whsec_wrong", now, &forged)),
        &forged,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    // A lifecycle event without its created time cannot be ordered: 400, nothing recorded.
    let undated = json!({ "id": "evt_u", "type": "customer.subscription.deleted",
                          "data": { "object": { "id": "sub_B", "object": "subscription" } } })
    .to_string();
    let r = deliver(
        &app,
        Some(&stripe_signature(WEBHOOK_SECRET, now, &undated)),
        &undated,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(usage(&app, &s).await["plan"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Calls cut off by a crash

/// Heartbeats every second; a node silent for 3 s is gone.
const FAST_NODES: &str = "[nodes]\nheartbeat_secs = 1\ntimeout_secs = 3\n";

#[tokio::test]
async fn a_call_cut_off_by_a_killed_engine_is_ended_and_billed_by_another_engine() {
    crash_mid_call(Restart::AnotherEngine).await;
}

#[tokio::test]
async fn an_engine_restarted_in_place_of_a_killed_one_ends_its_calls_at_once() {
    crash_mid_call(Restart::SameAddress).await;
}

/// Who ends the killed engine's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// Another engine, once the dead one's heartbeat is older than the timeout (3 s).
    AnotherEngine,
    /// The engine started again on the same address, at start-up, though the timeout (10
    /// minutes) is far off.
    SameAddress,
}

/// A live test call on an engine process killed with SIGKILL mid-call; then `restart`.
async fn crash_mid_call(restart: Restart) {
    use crate::telephony::{Engine, shared_database};
    let nodes = match restart {
        Restart::AnotherEngine => FAST_NODES,
        Restart::SameAddress => "[nodes]\nheartbeat_secs = 1\ntimeout_secs = 600\n",
    };
    let dir = tempfile::tempdir().unwrap();
    let database_url = shared_database(dir.path()).await;
    let mut first = Engine::start(dir.path(), &database_url, nodes).await;
    let port: u16 = first.base.rsplit(':').next().unwrap().parse().unwrap();
    let app = TestApp::at(first.base.clone(), database_url.clone().into());
    let s = app.register("crash@example.com", "Crash Clinic").await;
    let agent = app.create_agent(&s.token, "Reception").await;

    // A live test call on the first engine, streaming caller audio (silence) all along.
    let r = test_call(&app, &s, agent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call_id = r.body["call_id"].as_i64().unwrap();
    let url = r.body["stream_url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(first.base.trim_start_matches("http://")),
        "{url}"
    );
    let token = r.body["token"].as_str().unwrap().to_owned();
    let (socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut tx, mut rx) = socket.split();
    for message in [
        json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }),
        json!({ "event": "start", "sequenceNumber": "1", "streamSid": "MZ9",
                "start": { "streamSid": "MZ9", "callSid": format!("CA{call_id}"), "accountSid": "AC1",
                           "tracks": ["inbound"],
                           "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                           "customParameters": { "token": token } } }),
    ] {
        tx.send(Message::text(message.to_string())).await.unwrap();
    }
    let connected = Instant::now();
    let streaming = tokio::spawn(async move {
        use base64::Engine as _;
        let silence = base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160]);
        for n in 0u64.. {
            let frame = json!({ "event": "media", "streamSid": "MZ9", "sequenceNumber": (n + 2).to_string(),
                                "media": { "track": "inbound", "chunk": (n + 1).to_string(),
                                           "timestamp": (n * 20).to_string(), "payload": silence } });
            if tx.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let greeted = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(Ok(message)) = rx.next().await {
            if let Message::Text(text) = message
                && serde_json::from_str::<Value>(&text).unwrap()["event"] == "media"
            {
                return;
            }
        }
        panic!("the stream closed before the agent spoke");
    })
    .await;
    assert!(greeted.is_ok(), "the agent never spoke");
    // Long enough for several heartbeats to stamp the call.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body;
    assert_eq!(live["status"], "in-progress", "{live}");

    // SIGKILL: no drain, no call end, no deregistration.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let wall_ms = connected.elapsed().as_millis() as i64;
    streaming.abort();
    let mut db = database(&database_url).await;
    let (status,): (String,) = sqlx::query_as("SELECT status FROM calls WHERE id = $1")
        .bind(call_id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(status, "in-progress", "nobody ended the call at the kill");

    // A second engine on the same database ends the call with its last known duration.
    let restarted = Instant::now();
    let second = match restart {
        Restart::AnotherEngine => Engine::start(dir.path(), &database_url, nodes).await,
        Restart::SameAddress => Engine::start_on(port, dir.path(), &database_url, nodes).await,
    };
    let app = TestApp::at(second.base.clone(), database_url.clone().into());
    let until = Instant::now() + Duration::from_secs(30);
    let ended = loop {
        let call = app
            .get(&format!("/api/calls/{call_id}"), &s.token)
            .await
            .body;
        if call["status"] != "in-progress" {
            break call;
        }
        assert!(Instant::now() < until, "the call was never ended: {call}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["disposition"], "interrupted", "{ended}");
    if restart == Restart::SameAddress {
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "ended at start-up, not after the 10 minute timeout"
        );
    }
    let ms = (ended["duration_sec"].as_f64().unwrap() * 1000.0).round() as i64;
    // At least the greeting and the 3 s after it, less one heartbeat; at most the wall time.
    assert!(
        ms >= 2_000 && ms <= wall_ms,
        "{ms} ms of {wall_ms} ms: {ended}"
    );

    // Billed: one usage record, paid from the trial.
    let billed = (ms + 999) / 1000;
    assert_eq!(record(&mut db, call_id).await, (billed, billed, 0, 0, 0));
    let u = usage(&app, &s).await;
    assert_eq!(u["seconds_used"], billed, "{u}");
    assert_eq!(u["trial_seconds_remaining"], 1_800 - billed, "{u}");
    // call.ended emitted once.
    let events: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM outbox WHERE tenant_id = $1 AND type = 'call.ended'")
            .bind(s.tenant_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let event: Value = serde_json::from_str(&events[0].0).unwrap();
    assert_eq!(event["call_id"], call_id);
    assert_eq!(event["disposition"], "interrupted");
    // The dead node's row is gone; the live one is registered.
    let (nodes,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(nodes, 1);
}
