use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn create_list_and_switch_tenants() {
    let app = spawn_app().await;
    let s = app.register("owner@example.com", "First Co").await;
    let created = app
        .post("/api/tenants", &s.token, json!({ "name": "Second Co" }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["role"], "owner");
    assert_eq!(created.body["active"], false);
    let second = created.body["id"].as_i64().unwrap();

    let list = app.get("/api/tenants", &s.token).await;
    let names: Vec<_> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].clone(), t["active"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("First Co"), json!(true)),
            (json!("Second Co"), json!(false))
        ]
    );

    // An agent in the first business is invisible once the token acts on the second.
    let agent = app.create_agent(&s.token, "First Bot").await;
    let switched = app
        .post(
            "/api/tenants/switch",
            &s.token,
            json!({ "tenant_id": second }),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.body);
    assert_eq!(
        switched.body["tenant"],
        json!({ "id": second, "name": "Second Co" })
    );
    assert_eq!(switched.body["role"], "owner");
    assert_eq!(
        app.get("/api/me", &s.token).await.body["tenant"]["id"],
        second
    );
    assert_eq!(app.get("/api/agents", &s.token).await.body, json!([]));
    assert_error(
        &app.get(&format!("/api/agents/{agent}"), &s.token).await,
        StatusCode::NOT_FOUND,
    );

    // The next login starts in the business used last.
    let login = app
        .login("owner@example.com", "correct horse battery")
        .await;
    assert_eq!(login.body["tenant"]["id"], second);

    app.post(
        "/api/tenants/switch",
        &s.token,
        json!({ "tenant_id": s.tenant_id }),
    )
    .await;
    assert_eq!(
        app.get("/api/agents", &s.token)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn switching_to_a_foreign_or_missing_tenant_fails() {
    let app = spawn_app().await;
    let a = app.register("a@example.com", "A").await;
    let b = app.register("b@example.com", "B").await;
    let foreign = app
        .post(
            "/api/tenants/switch",
            &a.token,
            json!({ "tenant_id": b.tenant_id }),
        )
        .await;
    assert_error(&foreign, StatusCode::FORBIDDEN);
    let missing = app
        .post(
            "/api/tenants/switch",
            &a.token,
            json!({ "tenant_id": 999_999 }),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND);
    let invalid = app
        .post(
            "/api/tenants/switch",
            &a.token,
            json!({ "tenant_id": "two" }),
        )
        .await;
    assert_error(&invalid, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.body["errors"]["tenant_id"][0], "must be an integer");
    assert_eq!(
        app.get("/api/me", &a.token).await.body["tenant"]["id"],
        a.tenant_id
    );
}

#[tokio::test]
async fn members_roles_and_their_limits() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com", "Clinic").await;
    let admin = app.register("admin@example.com", "Admin's own").await;
    let member = app.register("member@example.com", "Member's own").await;

    let add = app
        .post(
            "/api/members",
            &owner.token,
            json!({ "email": "admin@example.com", "role": "admin" }),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    assert_eq!(add.body["role"], "admin");
    let add = app
        .post(
            "/api/members",
            &owner.token,
            json!({ "email": "member@example.com" }),
        )
        .await;
    assert_eq!(add.body["role"], "member");
    for (token, who) in [(&admin.token, &admin), (&member.token, &member)] {
        let r = app
            .post(
                "/api/tenants/switch",
                token,
                json!({ "tenant_id": owner.tenant_id }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{} {}", who.user_id, r.body);
    }

    let listed = app.get("/api/members", &member.token).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 3);

    // Members cannot manage membership; admins cannot make owners; nobody is added twice.
    let by_member = app
        .post(
            "/api/members",
            &member.token,
            json!({ "email": "x@example.com" }),
        )
        .await;
    assert_error(&by_member, StatusCode::FORBIDDEN);
    let owner_by_admin = app
        .post(
            "/api/members",
            &admin.token,
            json!({ "email": "member@example.com", "role": "owner" }),
        )
        .await;
    assert_error(&owner_by_admin, StatusCode::FORBIDDEN);
    let twice = app
        .post(
            "/api/members",
            &admin.token,
            json!({ "email": "member@example.com" }),
        )
        .await;
    assert_error(&twice, StatusCode::UNPROCESSABLE_ENTITY);
    let nobody = app
        .post(
            "/api/members",
            &admin.token,
            json!({ "email": "ghost@example.com", "role": "boss" }),
        )
        .await;
    assert_error(&nobody, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(nobody.body["errors"]["role"].is_array());
    assert!(
        nobody.body["errors"].get("email").is_none(),
        "validation fails before any lookup"
    );
    let ghost = app
        .post(
            "/api/members",
            &admin.token,
            json!({ "email": "ghost@example.com" }),
        )
        .await;
    assert_error(&ghost, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        ghost.body["errors"]["email"][0],
        "no account with this email"
    );

    // Owners cannot be removed by admins, and the last owner stays.
    let r = app
        .delete(&format!("/api/members/{}", owner.user_id), &admin.token)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN);
    let r = app
        .delete(&format!("/api/members/{}", owner.user_id), &owner.token)
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);

    // A removed member's token still authenticates but can no longer act on the business.
    let r = app
        .delete(&format!("/api/members/{}", member.user_id), &admin.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get("/api/agents", &member.token).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(
        app.get("/api/me", &member.token).await.body["role"],
        serde_json::Value::Null
    );
    let r = app
        .delete(&format!("/api/members/{}", member.user_id), &admin.token)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND);
}
