use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let session = app.register("Jane@Example.com", "Harbour Dental").await;
    assert!(session.token.starts_with("cg_") && session.token.len() >= 64);

    let login = app.login("jane@example.com", "correct horse battery").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(
        login.body["tenant"],
        json!({ "id": session.tenant_id, "name": "Harbour Dental" })
    );
    let token = login.body["token"].as_str().unwrap();
    assert_ne!(token, session.token, "each login issues a new token");

    let me = app.get("/api/me", token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["email"], "jane@example.com");
    assert_eq!(me.body["tenant"]["id"], session.tenant_id);
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["memberships"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn logout_revokes_only_the_calling_token() {
    let app = spawn_app().await;
    let first = app.register("sam@example.com", "Sam's").await;
    let second = app.login("sam@example.com", "correct horse battery").await;
    let second = second.body["token"].as_str().unwrap().to_owned();

    let out = app
        .request(Method::POST, "/api/auth/logout", Some(&first.token), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get("/api/me", &first.token).await,
        StatusCode::UNAUTHORIZED,
    );
    let again = app
        .request(Method::POST, "/api/auth/logout", Some(&first.token), None)
        .await;
    assert_error(&again, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/me", &second).await.status, StatusCode::OK);

    // A client still sending its revoked token can log in again.
    let relogin = app
        .client
        .post(format!("{}/api/auth/login", app.base))
        .bearer_auth(&first.token)
        .json(&json!({ "email": "sam@example.com", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(relogin.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = spawn_app().await;
    app.register("kim@example.com", "Kim Co").await;
    let wrong = app.login("kim@example.com", "not the password").await;
    let unknown = app
        .login("nobody@example.com", "correct horse battery")
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED);
    assert_error(&unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn missing_bad_and_foreign_tokens_are_401() {
    let app = spawn_app().await;
    let none = app.request(Method::GET, "/api/agents", None, None).await;
    assert_error(&none, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_error(
        &app.get("/api/agents", "cg_0000").await,
        StatusCode::UNAUTHORIZED,
    );
    let basic = app
        .client
        .get(format!("{}/api/agents", app.base))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn registration_validates_every_field_and_refuses_a_taken_email() {
    let app = spawn_app().await;
    let r = app
        .request(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({ "email": "nope", "password": "short" })),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = r.body["errors"].as_object().unwrap();
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["business_name", "email", "password"]
    );

    app.register("dup@example.com", "First").await;
    let dup = app
        .request(
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({ "email": "DUP@example.com", "password": "long enough pw", "business_name": "Second" })),
        )
        .await;
    assert_error(&dup, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(dup.body["errors"]["email"][0], "has already been taken");
}

#[tokio::test]
async fn login_is_limited_per_client_address() {
    let app = spawn_app_with(|c| c.limits.auth_requests_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(
            app.login("x@example.com", "whatever1").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app.login("x@example.com", "whatever1").await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

#[tokio::test]
async fn the_121st_request_in_a_minute_is_429_with_retry_after() {
    let app = spawn_app().await;
    let s = app.register("busy@example.com", "Busy").await;
    // The limit is a GCRA bucket: a burst of 120, refilled at one request every 0.5 s. Requests
    // sent back to back get exactly 120 through (plus one per half second they took).
    let started = Instant::now();
    let mut allowed = 0u64;
    let limited = loop {
        let r = app.get("/api/agents", &s.token).await;
        if r.status != StatusCode::OK {
            break r;
        }
        allowed += 1;
        assert_eq!(r.headers["x-ratelimit-limit"], "120");
        let remaining: u64 = r.headers["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining < 120 && remaining + allowed >= 120,
            "remaining {remaining} after {allowed}"
        );
        assert!(allowed <= 1000, "never limited");
    };
    let refills = started.elapsed().as_millis() as u64 / 500;
    assert!(
        (120..=120 + refills).contains(&allowed),
        "{allowed} allowed in {:?}",
        started.elapsed()
    );
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1, "the next request is allowed within a second");

    // The limit is per token: another user's token is unaffected.
    let other = app.register("calm@example.com", "Calm").await;
    assert_eq!(
        app.get("/api/agents", &other.token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = spawn_app_with(|c| {
        c.limits.auth_requests_per_minute = 1;
        c.limits.client_address = callgenius::config::ClientAddressSource::ForwardedFor;
    })
    .await;
    let login = |forwarded: &'static str| {
        app.client
            .post(format!("{}/api/auth/login", app.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": "p@example.com", "password": "whatever1" }))
            .send()
    };
    assert_eq!(
        login("198.51.100.7").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // A client cannot dodge the limit by prepending addresses: the proxy's entry is the last.
    assert_eq!(
        login("10.9.9.9, 198.51.100.7").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("203.0.113.5").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}
