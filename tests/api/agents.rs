use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_error, reception, spawn_app};

#[tokio::test]
async fn the_seed_examples_work_verbatim() {
    let app = spawn_app().await;
    let s = app.register("seed@example.com", "Seed").await;
    // curl -X POST …/api/agents -H "Authorization: Bearer <token>" -H "Content-Type: application/json" -d '…'
    let created = app
        .client
        .post(format!("{}/api/agents", app.base))
        .header("Authorization", format!("Bearer {}", s.token))
        .header("Content-Type", "application/json")
        .body(r#"{"name":"Reception Bot","voice":"aria","language":"en-AU","system_prompt":"You are a friendly receptionist..."}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // curl …/api/agents -H "Authorization: Bearer <token>" -H "Accept: application/json"
    let listed = app
        .client
        .get(format!("{}/api/agents", app.base))
        .header("Authorization", format!("Bearer {}", s.token))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(listed.headers()["content-type"], "application/json");
    let body: Value = listed.json().await.unwrap();
    let agent = &body[0];
    let keys: Vec<_> = agent.as_object().unwrap().keys().cloned().collect();
    let mut expected = [
        "id",
        "name",
        "voice",
        "language",
        "current_version",
        "has_number",
        "status",
        "created_at",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(agent["name"], "Reception Bot");
    assert_eq!(agent["voice"], "aria");
    assert_eq!(agent["language"], "en-AU");
    assert_eq!(agent["current_version"], 1);
    assert_eq!(agent["has_number"], false);
    assert_eq!(agent["status"], "active");
}

#[tokio::test]
async fn create_get_and_defaults() {
    let app = spawn_app().await;
    let s = app.register("c@example.com", "C").await;
    let r = app
        .post("/api/agents", &s.token, reception("Reception Bot"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    for (field, value) in [
        ("humour_level", 10),
        ("empathy_level", 50),
        ("formality_level", 50),
        ("energy_level", 50),
        ("directness_level", 50),
    ] {
        assert_eq!(r.body[field], value, "{field} default");
    }
    let got = app.get(&format!("/api/agents/{id}"), &s.token).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, r.body);
    let text = got.body["compiled_instructions"].as_str().unwrap();
    assert!(text.contains("You are a friendly receptionist..."));
    assert!(text.contains("Australia"));
    assert_eq!(got.body["instructions_hash"].as_str().unwrap().len(), 64);
    assert_eq!(got.body["number"], Value::Null);
    assert_eq!(got.body["version_count"], 1);
    assert_eq!(got.body["versions"][0]["version"], 1);
    assert_eq!(got.body["versions"][0]["created_by"], s.user_id);
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = spawn_app().await;
    let s = app.register("v@example.com", "V").await;
    let r = app
        .post(
            "/api/agents",
            &s.token,
            json!({
                "name": "x".repeat(101),
                "voice": "nobody",
                "language": "english",
                "system_prompt": 42,
                "humour_level": 31,
                "empathy_level": -1,
                "formality_level": 101,
                "energy_level": "high",
                "directness_level": 2.5
            }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = r.body["errors"].as_object().unwrap();
    let mut fields: Vec<_> = errors.keys().cloned().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "directness_level",
            "empathy_level",
            "energy_level",
            "formality_level",
            "humour_level",
            "language",
            "name",
            "system_prompt",
            "voice"
        ]
    );
    assert_eq!(errors["humour_level"][0], "must be between 0 and 30");
    assert_eq!(errors["voice"][0], "must be one of: aria, joe, leo");

    let empty = app.post("/api/agents", &s.token, json!({})).await;
    assert_error(&empty, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["name", "voice", "language"] {
        assert_eq!(empty.body["errors"][field][0], "is required", "{field}");
    }
    assert_eq!(
        app.get("/api/agents", &s.token).await.body,
        json!([]),
        "nothing stored"
    );
}

#[tokio::test]
async fn updates_make_versions_and_rollback_restores_old_instructions() {
    let app = spawn_app().await;
    let s = app.register("u@example.com", "U").await;
    let id = app.create_agent(&s.token, "Reception Bot").await;
    let path = format!("/api/agents/{id}");
    let v1 = app.get(&path, &s.token).await.body;

    // PUT replaces: fields left out return to their defaults.
    let put = app
        .put(&path, &s.token, json!({ "name": "Front Desk", "voice": "leo", "language": "es-mx", "formality_level": 95 }))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["current_version"], 2);
    assert_eq!(put.body["language"], "es-MX");
    assert_eq!(put.body["system_prompt"], Value::Null);
    assert_eq!(put.body["formality_level"], 95);
    assert!(
        put.body["compiled_instructions"]
            .as_str()
            .unwrap()
            .contains("Spanish as spoken in Mexico")
    );

    // PATCH changes only what it names; null resets to the default.
    let patch = app
        .patch(
            &path,
            &s.token,
            json!({ "humour_level": 0, "formality_level": null }),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.body["current_version"], 3);
    assert_eq!(patch.body["name"], "Front Desk");
    assert_eq!(patch.body["humour_level"], 0);
    assert_eq!(patch.body["formality_level"], 50);
    let bad_patch = app
        .patch(
            &path,
            &s.token,
            json!({ "name": null, "energy_level": 500 }),
        )
        .await;
    assert_error(&bad_patch, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_patch.body["errors"].as_object().unwrap().len(), 2);

    let versions = app.get(&format!("{path}/versions"), &s.token).await;
    let numbers: Vec<_> = versions
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    let old = app.get(&format!("{path}/versions/1"), &s.token).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(
        old.body["compiled_instructions"],
        v1["compiled_instructions"]
    );
    assert_eq!(
        old.body["system_prompt"],
        "You are a friendly receptionist..."
    );

    let rolled = app
        .post(&format!("{path}/versions/1/rollback"), &s.token, json!({}))
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.body);
    assert_eq!(rolled.body["current_version"], 4);
    assert_eq!(rolled.body["versions"][0]["rolled_back_from"], 1);
    for field in [
        "name",
        "voice",
        "language",
        "system_prompt",
        "humour_level",
        "formality_level",
        "compiled_instructions",
        "instructions_hash",
    ] {
        assert_eq!(rolled.body[field], v1[field], "{field} restored");
    }
    assert_eq!(rolled.body["version_count"], 4, "history is kept");
    assert_eq!(
        app.get(&format!("{path}/versions/2"), &s.token).await.body["name"],
        "Front Desk"
    );

    assert_error(
        &app.post(&format!("{path}/versions/9/rollback"), &s.token, json!({}))
            .await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.post(&format!("{path}/versions/5/rollback"), &s.token, json!({}))
            .await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.get(&format!("{path}/versions/9"), &s.token).await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        app.get(&path, &s.token).await.body["current_version"],
        4,
        "failed rollbacks leave no version"
    );
}

#[tokio::test]
async fn concurrent_patches_never_lose_a_field_or_reuse_a_version() {
    let app = spawn_app().await;
    let s = app.register("race@example.com", "Race").await;
    let id = app.create_agent(&s.token, "Racer").await;
    let path = format!("/api/agents/{id}");
    let fields = [
        "empathy_level",
        "formality_level",
        "energy_level",
        "directness_level",
    ];
    let mut patches = tokio::task::JoinSet::new();
    for (i, field) in fields.iter().enumerate() {
        let (app, token, path) = (app.clone(), s.token.clone(), path.clone());
        let body = json!({ *field: 90 + i });
        patches.spawn(async move { app.patch(&path, &token, body).await });
    }
    while let Some(r) = patches.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let agent = app.get(&path, &s.token).await.body;
    assert_eq!(agent["current_version"], 5);
    for (i, field) in fields.iter().enumerate() {
        assert_eq!(agent[*field], 90 + i, "{field} kept");
    }
}

#[tokio::test]
async fn delete_is_permanent() {
    let app = spawn_app().await;
    let s = app.register("d@example.com", "D").await;
    let keep = app.create_agent(&s.token, "Keep").await;
    let gone = app.create_agent(&s.token, "Gone").await;
    app.patch(
        &format!("/api/agents/{gone}"),
        &s.token,
        json!({ "name": "Gone v2" }),
    )
    .await;
    let r = app.delete(&format!("/api/agents/{gone}"), &s.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/api/agents/{gone}"), &s.token).await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.get(&format!("/api/agents/{gone}/versions/1"), &s.token)
            .await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &app.delete(&format!("/api/agents/{gone}"), &s.token).await,
        StatusCode::NOT_FOUND,
    );
    let ids: Vec<_> = app
        .get("/api/agents", &s.token)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, [json!(keep)]);
}

/// Every agent route, called with another tenant's agent id.
fn agent_routes(id: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/api/agents/{id}"), None),
        (
            Method::PUT,
            format!("/api/agents/{id}"),
            Some(reception("Hijack")),
        ),
        (
            Method::PATCH,
            format!("/api/agents/{id}"),
            Some(json!({ "name": "Hijack" })),
        ),
        (Method::GET, format!("/api/agents/{id}/versions"), None),
        (Method::GET, format!("/api/agents/{id}/versions/1"), None),
        (
            Method::POST,
            format!("/api/agents/{id}/versions/1/rollback"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api/agents/{id}"), None),
    ]
}

#[tokio::test]
async fn another_tenants_agent_is_404_on_every_route() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com", "Owner Co").await;
    let intruder = app.register("intruder@example.com", "Intruder Co").await;
    let id = app.create_agent(&owner.token, "Private").await;
    for (method, path, body) in agent_routes(id) {
        let r = app
            .request(method.clone(), &path, Some(&intruder.token), body)
            .await;
        assert_error(&r, StatusCode::NOT_FOUND);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert_eq!(
        app.get("/api/agents", &intruder.token).await.body,
        json!([])
    );
    let untouched = app.get(&format!("/api/agents/{id}"), &owner.token).await;
    assert_eq!(untouched.body["name"], "Private");
    assert_eq!(untouched.body["current_version"], 1);
    for path in [
        "/api/agents/abc",
        "/api/agents/0",
        "/api/agents/-3",
        "/api/agents/99999999999999999999",
    ] {
        assert_error(&app.get(path, &owner.token).await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn members_read_agents_but_cannot_change_them() {
    let app = spawn_app().await;
    let owner = app.register("boss@example.com", "Boss Co").await;
    let member = app.register("staff@example.com", "Staff's own").await;
    app.post(
        "/api/members",
        &owner.token,
        json!({ "email": "staff@example.com", "role": "member" }),
    )
    .await;
    app.post(
        "/api/tenants/switch",
        &member.token,
        json!({ "tenant_id": owner.tenant_id }),
    )
    .await;
    let id = app.create_agent(&owner.token, "Shared").await;

    assert_eq!(
        app.get("/api/agents", &member.token)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (method, path, body) in agent_routes(id) {
        let r = app
            .request(method.clone(), &path, Some(&member.token), body)
            .await;
        if method == Method::GET {
            assert_eq!(r.status, StatusCode::OK, "{method} {path}");
        } else {
            assert_error(&r, StatusCode::FORBIDDEN);
        }
    }
    let create = app
        .post("/api/agents", &member.token, reception("Mine"))
        .await;
    assert_error(&create, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&format!("/api/agents/{id}"), &owner.token)
            .await
            .body["current_version"],
        1
    );
}
