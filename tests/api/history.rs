//! The calls API over stored calls: listing with filters and pages, call detail, transcript,
//! recording URLs, bookings and settings; tenant isolation. (Calls that really talk are in
//! `conversations.rs`.)

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Session, TestApp, assert_error, spawn_app, spawn_app_with};

/// Hands out `n` test calls (status `initiated`) with `agent`; returns their ids, oldest first.
async fn hand_out(app: &TestApp, s: &Session, agent: i64, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = app
            .post(
                &format!("/api/agents/{agent}/test-call"),
                &s.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(r.body["call_id"].as_i64().unwrap());
    }
    ids
}

fn ids(body: &serde_json::Value) -> Vec<i64> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn calls_are_listed_newest_first_a_page_at_a_time_with_filters() {
    let app = spawn_app().await;
    let s = app.register("list@example.com", "List").await;
    let a = app.create_agent(&s.token, "A").await;
    let b = app.create_agent(&s.token, "B").await;
    let mut from_a = hand_out(&app, &s, a, 3).await;
    let from_b = hand_out(&app, &s, b, 2).await;

    let r = app.get("/api/calls", &s.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    all.reverse();
    assert_eq!(ids(&r.body), all);
    assert_eq!(
        r.body["meta"],
        json!({ "page": 1, "per_page": 20, "total": 5, "total_pages": 1 })
    );
    assert_eq!(r.body["data"][0]["status"], "initiated");
    assert_eq!(r.body["data"][0]["recording_status"], "none");

    let r = app.get("/api/calls?per_page=2&page=2", &s.token).await;
    assert_eq!(ids(&r.body), all[2..4]);
    assert_eq!(
        r.body["meta"],
        json!({ "page": 2, "per_page": 2, "total": 5, "total_pages": 3 })
    );
    let r = app.get("/api/calls?per_page=2&page=9", &s.token).await;
    assert_eq!(ids(&r.body), Vec::<i64>::new());

    let r = app.get(&format!("/api/calls?agent_id={a}"), &s.token).await;
    from_a.reverse();
    assert_eq!(ids(&r.body), from_a);
    let r = app.get("/api/calls?status=completed", &s.token).await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app
        .get("/api/calls?status=initiated&per_page=100", &s.token)
        .await;
    assert_eq!(r.body["meta"]["total"], 5);

    // Dates are inclusive whole days (UTC); an RFC 3339 time is exact.
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    let tomorrow = today.succ_opt().unwrap();
    let r = app
        .get(&format!("/api/calls?from={today}&to={today}"), &s.token)
        .await;
    assert_eq!(r.body["meta"]["total"], 5, "{}", r.body);
    let r = app
        .get(&format!("/api/calls?to={yesterday}"), &s.token)
        .await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app
        .get(&format!("/api/calls?from={tomorrow}"), &s.token)
        .await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app
        .get(
            "/api/calls?from=2020-01-01T00:00:00Z&to=2999-01-01T00:00:00%2B10:00",
            &s.token,
        )
        .await;
    assert_eq!(r.body["meta"]["total"], 5, "{}", r.body);
}

#[tokio::test]
async fn invalid_call_filters_are_422_with_every_field_named() {
    let app = spawn_app().await;
    let s = app.register("filters@example.com", "Filters").await;
    let r = app
        .get(
            "/api/calls?per_page=101&page=0&agent_id=x&status=done&from=yesterday&to=2026-13-01",
            &s.token,
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["per_page", "page", "agent_id", "status", "from", "to"] {
        assert!(r.body["errors"][field].is_array(), "{field}: {}", r.body);
    }
    let r = app
        .get("/api/calls?from=2026-11-10&to=2026-11-09", &s.token)
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["to"].is_array());
    let r = app.get("/api/bookings?per_page=0", &s.token).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn another_tenants_calls_are_invisible() {
    let app = spawn_app().await;
    let s = app.register("mine@example.com", "Mine").await;
    let other = app.register("theirs@example.com", "Theirs").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let call = hand_out(&app, &s, agent, 1).await[0];

    for path in [
        format!("/api/calls/{call}"),
        format!("/api/calls/{call}/transcript"),
        format!("/api/calls/{call}/recording"),
    ] {
        assert_error(&app.get(&path, &other.token).await, StatusCode::NOT_FOUND);
        assert_ne!(
            app.get(&path, &s.token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = app.get("/api/calls", &other.token).await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app
        .get(&format!("/api/calls?agent_id={agent}"), &other.token)
        .await;
    assert_eq!(r.body["meta"]["total"], 0);
    assert_error(
        &app.get("/api/bookings/1", &other.token).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn a_call_without_a_recording_says_why() {
    let app = spawn_app().await;
    let s = app.register("norec@example.com", "NoRec").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let call = hand_out(&app, &s, agent, 1).await[0];

    let r = app
        .get(&format!("/api/calls/{call}/recording"), &s.token)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND);
    assert!(
        r.body["message"].as_str().unwrap().contains("in progress"),
        "{}",
        r.body
    );
    let r = app
        .get(&format!("/api/calls/{call}/transcript"), &s.token)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!([]));
    let r = app.get(&format!("/api/calls/{call}"), &s.token).await;
    assert_eq!(r.body["latency"]["turns"], 0, "{}", r.body);
    assert!(r.body["summary"].is_null());
}

#[tokio::test]
async fn recording_links_refuse_tampering_and_expiry() {
    let app = spawn_app_with(|c| c.stream_secret = Some("test-secret".to_owned().into())).await;
    let s = app.register("links@example.com", "Links").await;
    let tokens = callgenius::calls::token::StreamTokens::new(b"test-secret");
    let tenant = callgenius::domain::TenantId(s.tenant_id);
    let call = callgenius::domain::CallId(1);
    let get = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };

    // Expired an hour ago, correctly signed.
    let past = chrono::Utc::now().timestamp() - 3600;
    let signature = tokens.sign_recording(tenant, call, past);
    let r = get(format!(
        "{}/recordings/1.mp3?expires={past}&signature={signature}",
        app.base
    ))
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Tampered: a signature for another expiry, or none at all.
    let future = chrono::Utc::now().timestamp() + 3600;
    let r = get(format!(
        "{}/recordings/1.mp3?expires={future}&signature={signature}",
        app.base
    ))
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = get(format!("{}/recordings/1.mp3", app.base)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn business_settings_validate_and_apply() {
    let app = spawn_app().await;
    let s = app.register("settings@example.com", "Settings").await;
    let r = app.get("/api/settings", &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["timezone"], "UTC");
    assert_eq!(r.body["turn_engine"], "auto");
    assert_eq!(r.body["llm_configured"], false);

    let r = app
        .patch(
            "/api/settings",
            &s.token,
            json!({ "timezone": "Mars/Olympus", "turn_engine": "gpt" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["timezone"].is_array());
    assert!(r.body["errors"]["turn_engine"].is_array());

    let r = app
        .patch(
            "/api/settings",
            &s.token,
            json!({ "timezone": "Australia/Sydney" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["timezone"], "Australia/Sydney");
    assert_eq!(r.body["turn_engine"], "auto");
    let r = app
        .patch(
            "/api/settings",
            &s.token,
            json!({ "turn_engine": "embedded" }),
        )
        .await;
    assert_eq!(r.body["timezone"], "Australia/Sydney");
    assert_eq!(r.body["turn_engine"], "embedded");
}

#[tokio::test]
async fn agents_take_a_turn_engine_tools_and_a_transfer_number() {
    let app = spawn_app().await;
    let s = app.register("tools@example.com", "Tools").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app.get(&format!("/api/agents/{agent}"), &s.token).await;
    assert_eq!(r.body["tools"], json!(["book_appointment", "end_call"]));
    assert!(r.body["turn_engine"].is_null());
    let instructions = r.body["compiled_instructions"].as_str().unwrap();
    assert!(
        instructions.contains("- book_appointment:"),
        "{instructions}"
    );
    assert!(!instructions.contains("transfer_call"));

    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "tools": ["hack"], "turn_engine": "magic", "transfer_number": "12345" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["tools", "turn_engine", "transfer_number"] {
        assert!(r.body["errors"][field].is_array(), "{field}: {}", r.body);
    }

    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "tools": ["transfer_call", "end_call", "end_call"], "turn_engine": "embedded",
                    "transfer_number": "+61255501234" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["tools"], json!(["end_call", "transfer_call"]));
    assert_eq!(r.body["turn_engine"], "embedded");
    let instructions = r.body["compiled_instructions"].as_str().unwrap();
    assert!(
        instructions.contains("- transfer_call: transfers the caller to a person at +61255501234"),
        "{instructions}"
    );
    assert!(!instructions.contains("book_appointment"));

    // A rollback restores the earlier tools.
    let r = app
        .post(
            &format!("/api/agents/{agent}/versions/1/rollback"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["tools"], json!(["book_appointment", "end_call"]));
}

#[tokio::test]
async fn after_call_work_cut_short_by_a_stop_is_finished_at_the_next_start() {
    use secrecy::ExposeSecret;
    use sqlx::Connection;
    let app = spawn_app().await;
    let s = app.register("resume@example.com", "Resume").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let call = hand_out(&app, &s, agent, 1).await[0];
    // The call connected and ended, but the engine stopped before its after-call work.
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(app.database_url.expose_secret())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE calls SET status = 'completed', disposition = 'hangup', \
            started_at = created_at, ended_at = created_at, duration_ms = 1000 WHERE id = $1",
    )
    .bind(call)
    .execute(&mut db)
    .await
    .unwrap();

    // Another engine on the same database finishes it at start-up, once.
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path()).await;
    config.database_url = Some(app.database_url.clone());
    let engine = callgenius::app::Application::build(config).await.unwrap();
    let base = format!("http://{}", engine.local_addr());
    tokio::spawn(engine.run_until_stopped(std::future::pending()));
    let again = TestApp::at(base, app.database_url.clone());
    let mut ready = serde_json::Value::Null;
    for _ in 0..100 {
        ready = again
            .get(&format!("/api/calls/{call}"), &s.token)
            .await
            .body;
        if !ready["transcript_ready_at"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready["summary"], "The caller did not speak.", "{ready}");
    assert!(ready["sentiment"].is_null());
    let (events,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM outbox WHERE tenant_id = $1 AND type = 'call.transcript_ready'",
    )
    .bind(s.tenant_id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(events, 1);
}
