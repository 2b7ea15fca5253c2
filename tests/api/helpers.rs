//! Test harness: each test spawns the engine on port 0 with a fresh database, a temporary SQLite
//! file by default, or a new PostgreSQL database (named by a UUID) on the server that
//! `CALLGENIUS_TEST_DATABASE_URL` points at.

use callgenius::app::Application;
use callgenius::config::Config;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;

/// Set to a PostgreSQL URL (any database on the server; it is used to create the test ones).
pub const POSTGRES_ENV: &str = "CALLGENIUS_TEST_DATABASE_URL";

#[derive(Clone)]
pub struct TestApp {
    pub base: String,
    /// The engine's database, for tests that look beneath the API.
    pub database_url: SecretString,
    pub client: reqwest::Client,
    _data_dir: std::sync::Arc<tempfile::TempDir>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(data_dir.path()).await;
    configure(&mut config);
    let database_url = config.effective_database_url();
    let app = Application::build(config).await.expect("engine starts");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        base,
        database_url,
        client: reqwest::Client::new(),
        _data_dir: std::sync::Arc::new(data_dir),
    }
}

/// An engine whose speech models are loaded before it is used, as a carrier's health check
/// (`/readyz`) would have it before routing a call there. Whole-call tests start from this, so
/// that loading the models on a busy machine is not mistaken for the agent's answer time.
pub async fn spawn_ready_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(|c| {
        c.preload_models = true;
        configure(c);
    })
    .await;
    let started = std::time::Instant::now();
    loop {
        let r = app.request(Method::GET, "/readyz", None, None).await;
        if r.status == StatusCode::OK {
            return app;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(180),
            "the speech models never became ready: {}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The engine's configuration for a test: port 0, a fresh database, the repository's models
/// (loaded on first use, so that tests which never speak do not pay for loading them).
pub async fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config::with_data_dir(data_dir);
    config.database_url = test_database().await;
    config.models_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    config.preload_models = false;
    // Many tests hand out several test calls they never stream (each counts against the
    // business's concurrent-call limit until the sweep expires it); the call-limit tests set
    // their own small limits.
    config.billing.trial_max_concurrent_calls = 50;
    // The engine runs inside this test binary, so its own executable is the test harness: the
    // document reader's child process is the real `callgenius` binary.
    config.extraction.program = Some(env!("CARGO_BIN_EXE_callgenius").into());
    config
}

/// A fresh PostgreSQL database when the suite runs against PostgreSQL; `None` for SQLite.
pub async fn test_database() -> Option<SecretString> {
    let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
    sqlx::any::install_default_drivers();
    let name = format!("cgtest_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (server, _) = admin_url.rsplit_once('/').expect("URL has a database path");
    Some(SecretString::from(format!("{server}/{name}")))
}

impl TestApp {
    /// A client for an engine started by the test itself, on `database_url`.
    pub fn at(base: String, database_url: SecretString) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        TestApp {
            base,
            database_url,
            client: reqwest::Client::new(),
            _data_dir: std::sync::Arc::new(dir),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_response(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: &'static str,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        into_response(request.send().await.expect("request sent")).await
    }

    /// Sends `body` as it is, with the given content type.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        into_response(request.send().await.expect("request sent")).await
    }

    /// Registers `email` with a new business; returns its token.
    pub async fn register(&self, email: &str, business: &str) -> Session {
        let r = self
            .request(
                Method::POST,
                "/api/auth/register",
                None,
                Some(json!({ "email": email, "password": "correct horse battery", "business_name": business })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        Session {
            token: r.body["token"].as_str().unwrap().to_owned(),
            tenant_id: r.body["tenant"]["id"].as_i64().unwrap(),
            user_id: r.body["user"]["id"].as_i64().unwrap(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.request(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }

    /// Creates an agent with the seed's example fields plus `extra`; returns its id.
    pub async fn create_agent(&self, token: &str, name: &str) -> i64 {
        let r = self.post("/api/agents", token, reception(name)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    }
}

pub fn reception(name: &str) -> Value {
    json!({
        "name": name,
        "voice": "aria",
        "language": "en-AU",
        "system_prompt": "You are a friendly receptionist..."
    })
}

pub struct Session {
    pub token: String,
    pub tenant_id: i64,
    pub user_id: i64,
}

async fn into_response(response: reqwest::Response) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("invalid JSON body ({e}): {bytes:?}"))
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Response {
        status,
        headers,
        body,
    }
}

/// Asserts the API's error shape: JSON with a message, and for 422 an errors object.
pub fn assert_error(r: &Response, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.body);
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {}",
        r.body
    );
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        assert!(r.body["errors"].is_object(), "errors object in {}", r.body);
    }
}
