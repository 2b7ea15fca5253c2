use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_gets_the_json_error_shape() {
    let app = spawn_app().await;
    let s = app.register("j@example.com", "J").await;
    let r = app
        .raw(
            Method::POST,
            "/api/agents",
            &s.token,
            Some("application/json"),
            "{\"name\": ",
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );
    let r = app
        .raw(
            Method::POST,
            "/api/agents",
            &s.token,
            Some("application/json"),
            "[1, 2]",
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"]["body"][0], "must be a JSON object");
}

#[tokio::test]
async fn wrong_content_type_and_missing_body_are_422() {
    let app = spawn_app().await;
    let s = app.register("k@example.com", "K").await;
    let body = r#"{"name":"A","voice":"aria","language":"en-AU"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let r = app
            .raw(Method::POST, "/api/agents", &s.token, content_type, body)
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["errors"]["body"].is_array(), "{content_type:?}");
    }
    let r = app
        .raw(
            Method::POST,
            "/api/agents",
            &s.token,
            Some("application/json"),
            "",
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"]["body"][0], "is required");
    let r = app
        .raw(
            Method::POST,
            "/api/agents",
            &s.token,
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "a charset parameter is fine");
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let app = spawn_app_with(|c| c.limits.max_body_bytes = 4096).await;
    let s = app.register("big@example.com", "Big").await;
    let r = app
        .post("/api/agents", &s.token, json!({ "name": "A", "voice": "aria", "language": "en-AU", "system_prompt": "x".repeat(10_000) }))
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let s = app.register("r@example.com", "R").await;
    assert_error(
        &app.get("/api/nothing-here", &s.token).await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.request(Method::GET, "/elsewhere", None, None).await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.request(Method::DELETE, "/api/agents", Some(&s.token), None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let a = app.request(Method::GET, "/healthz", None, None).await;
    let b = app.request(Method::GET, "/api/agents", None, None).await;
    let id_a = a.headers["x-request-id"].to_str().unwrap().to_owned();
    let id_b = b.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id_a.len(), 36);
    assert_ne!(id_a, id_b);
    let given = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        given.headers()["x-request-id"],
        "trace-me-42",
        "a caller's id is kept"
    );
}
