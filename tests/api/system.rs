use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{POSTGRES_ENV, spawn_app};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let health = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body["models"], "installed",
        "loaded on first use in tests"
    );
    let expected = if std::env::var(POSTGRES_ENV).is_ok_and(|u| !u.is_empty()) {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(ready.body["database"], expected);

    app.register("m@example.com", "M").await;
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="POST",route="/api/auth/register",status="201"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/readyz""#),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_describes_every_route_and_docs_page_serves() {
    let app = spawn_app().await;
    let r = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = &r.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    operations.sort();
    let mut expected = [
        "DELETE /api/agents/{id}",
        "DELETE /api/members/{user_id}",
        "GET /api/calls",
        "GET /api/calls/{id}",
        "GET /api/calls/{id}/transcript",
        "GET /api/calls/{id}/recording",
        "GET /recordings/{file}",
        "GET /api/bookings",
        "GET /api/bookings/{id}",
        "GET /api/settings",
        "PATCH /api/settings",
        "GET /api/knowledge",
        "POST /api/knowledge",
        "GET /api/knowledge/{id}",
        "DELETE /api/knowledge/{id}",
        "POST /api/knowledge/search",
        "GET /api/numbers",
        "POST /api/numbers",
        "GET /api/numbers/available",
        "DELETE /api/numbers/{id}",
        "POST /api/numbers/{id}/assign",
        "POST /api/numbers/{id}/unassign",
        "GET /api/campaigns",
        "POST /api/campaigns",
        "GET /api/campaigns/{id}",
        "GET /api/campaigns/{id}/targets",
        "POST /api/campaigns/{id}/start",
        "POST /api/campaigns/{id}/pause",
        "POST /api/campaigns/{id}/cancel",
        "POST /carrier/twilio/status",
        "GET /api/webhooks",
        "POST /api/webhooks",
        "GET /api/webhooks/{id}",
        "PATCH /api/webhooks/{id}",
        "DELETE /api/webhooks/{id}",
        "POST /api/webhooks/{id}/rotate-secret",
        "POST /api/webhooks/{id}/test",
        "GET /api/webhooks/{id}/deliveries",
        "POST /api/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        "GET /api/agents",
        "GET /api/agents/{id}",
        "GET /api/agents/{id}/versions",
        "GET /api/agents/{id}/versions/{version}",
        "GET /api/me",
        "GET /api/members",
        "GET /api/openapi.json",
        "GET /api/tenants",
        "GET /api/voices",
        "GET /docs",
        "GET /healthz",
        "GET /metrics",
        "GET /readyz",
        "PATCH /api/agents/{id}",
        "POST /api/agents",
        "POST /api/agents/{id}/test-call",
        "POST /api/agents/{id}/versions/{version}/rollback",
        "POST /api/auth/login",
        "POST /api/auth/logout",
        "POST /api/auth/register",
        "POST /api/members",
        "POST /api/tenants",
        "POST /api/tenants/switch",
        "POST /carrier/twilio/voice",
        "POST /carrier/telnyx/voice",
        "GET /carrier/plivo/answer",
        "POST /carrier/plivo/answer",
        "GET /carrier/vonage/answer",
        "PUT /api/agents/{id}",
        "GET /api/billing/usage",
        "GET /api/billing/plans",
        "POST /api/billing/subscribe",
        "POST /api/billing/top-up",
        "GET /billing/checkout/{token}",
        "POST /billing/checkout/{token}",
        "POST /billing/stripe/webhook",
    ];
    expected.sort_unstable();
    assert_eq!(operations, expected);
    let create = &doc["paths"]["/api/agents"]["post"];
    assert!(create["requestBody"].is_object());
    for status in ["201", "401", "403", "422"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /api/agents documents {status}"
        );
    }
    for (method, path) in [
        ("get", "/api/agents"),
        ("delete", "/api/agents/{id}"),
        ("post", "/api/tenants/switch"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for status in ["401", "429"] {
            assert!(
                responses[status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    for status in ["400", "413", "422"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /api/agents documents {status}"
        );
    }
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
    let error_schema = &doc["components"]["schemas"]["ErrorBody"];
    assert!(error_schema["properties"]["errors"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let docs = app.request(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(docs.body.as_str().unwrap().contains("/api/openapi.json"));
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_cleanly() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(data_dir.path()).await;
    let app = callgenius::app::Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        stopped.await.ok();
    }));
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    outcome
        .expect("server stops within 10 s")
        .unwrap()
        .expect("clean exit");
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_router_serves_in_process_without_a_socket() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let data_dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(data_dir.path()).await;
    let db = callgenius::store::Db::connect(&config.effective_database_url(), 2)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let speech = callgenius::models::SpeechModels::open(
        &config.models_dir,
        &config.voice_aliases,
        callgenius::models::pool::InferencePool::new(1),
    )
    .unwrap();
    let telephony = callgenius::api::Telephony::new(&config, "http://localhost");
    let media = callgenius::media::MediaState::from_config(&config).unwrap();
    let state =
        callgenius::api::AppState::new(db, &config, std::sync::Arc::new(speech), telephony, media);
    let router = callgenius::api::router(state, &config.limits);

    let register = Request::post("/api/auth/register")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"email":"io@example.com","password":"in process","business_name":"IO"}"#,
        ))
        .unwrap();
    let response = router.clone().oneshot(register).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let token = serde_json::from_slice::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let list = Request::get("/api/agents")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(list).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "119");
}

#[tokio::test]
async fn the_voice_catalogue_lists_installed_voices_and_aliases() {
    let app = spawn_app().await;
    let s = app.register("v@example.com", "Voices").await;
    let r = app.get("/api/voices", &s.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let voices = r.body.as_array().unwrap();
    let ids: Vec<_> = voices.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["aria", "joe", "leo"]);
    let joe = &voices[1];
    assert_eq!(joe["language"], "en-US");
    assert_eq!(joe["sample_rate"], 22_050);
    assert_eq!(joe["alias_of"], Value::Null);
    assert!(
        joe["licence_note"]
            .as_str()
            .unwrap()
            .contains("commercial use")
    );
    assert_eq!(voices[0]["alias_of"], "joe");
    // An agent may use an installed voice by its own id.
    let mut body = crate::helpers::reception("Joe");
    body["voice"] = "joe".into();
    assert_eq!(
        app.post("/api/agents", &s.token, body).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn models_preload_in_the_background_and_readiness_follows() {
    let app = crate::helpers::spawn_app_with(|c| c.preload_models = true).await;
    let started = std::time::Instant::now();
    loop {
        let r = app.request(Method::GET, "/readyz", None, None).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.body["models"], "ready");
            break;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.body["message"], "speech models are loading");
        assert!(
            started.elapsed().as_secs() < 120,
            "models never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn start_up_names_a_missing_model_file_and_the_fetch_command() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data_dir.path()).await;
    config.models_dir = data_dir.path().join("no-models");
    let error = match callgenius::app::Application::build(config).await {
        Ok(_) => panic!("started without models"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("libonnxruntime.so.1.32.0") && error.contains("./scripts/fetch-models"),
        "{error}"
    );
}
