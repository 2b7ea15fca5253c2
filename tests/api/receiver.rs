//! A webhook receiver on loopback for the tests: records every request (headers and raw body)
//! and answers as told: accept, fail with a status, hang past the engine's timeout, or redirect.
//! `verify` is the README's receiver recipe, written out independently of the engine's code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Fail(u16),
    /// Sleep this long, then fail: the engine has given up on the request by then.
    Hang(Duration),
    Redirect,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub kind: String,
    pub body: String,
    pub json: Value,
    pub signature: String,
    /// What the receiver answered; 0 when it hung.
    pub answered: u16,
}

struct Inner {
    mode: Mode,
    received: Vec<Received>,
    redirected_to: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            mode: Mode::Accept,
            received: Vec::new(),
            redirected_to: 0,
        }));
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/elsewhere", post(elsewhere))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, inner }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The requests answered with a 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    pub fn redirected_to(&self) -> usize {
        self.inner.lock().unwrap().redirected_to
    }

    /// Waits until `n` requests were accepted (panics after `timeout`).
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let until = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                Instant::now() < until,
                "{} of {n} events accepted; received {:?}",
                accepted.len(),
                self.received()
                    .iter()
                    .map(|r| (&r.kind, r.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until at least `n` requests arrived, whatever the answer.
    pub async fn wait_received(&self, n: usize, timeout: Duration) {
        let until = Instant::now() + timeout;
        while self.received().len() < n {
            assert!(
                Instant::now() < until,
                "only {} requests",
                self.received().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = String::from_utf8(body.to_vec()).unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mode = inner.lock().unwrap().mode;
    let answered = match mode {
        Mode::Accept => 200,
        Mode::Fail(code) => code,
        Mode::Hang(_) => 0,
        Mode::Redirect => 302,
    };
    inner.lock().unwrap().received.push(Received {
        event_id: json["id"].as_str().unwrap_or_default().to_owned(),
        kind: json["type"].as_str().unwrap_or_default().to_owned(),
        body: text,
        json,
        signature: headers
            .get("x-callgenius-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        answered,
    });
    match mode {
        Mode::Accept => StatusCode::OK.into_response(),
        Mode::Fail(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Mode::Redirect => (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response(),
    }
}

async fn elsewhere(State(inner): State<Arc<Mutex<Inner>>>) -> StatusCode {
    inner.lock().unwrap().redirected_to += 1;
    StatusCode::OK
}

/// The README's recipe: split the header at commas into `t` and `v1` values; recompute
/// HMAC-SHA256 with the endpoint's secret (its full text, `whsec_…`, as the key) over the
/// timestamp, a dot and the raw body; accept if it equals any `v1` (constant-time) and the
/// timestamp is within 5 minutes of now.
pub fn verify(secret: &str, header: &str, raw_body: &str) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    v1.iter().any(|candidate| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{raw_body}").as_bytes());
        hex::decode(candidate).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
    })
}

/// Runs the README's Python receiver code itself (the fenced `python` block of its Webhooks
/// section) on a request, with python3.
pub fn verify_with_readme_python(secret: &str, header: &str, raw_body: &str) -> bool {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("the README shows a Python receiver")
        + "```python\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.py");
    let body = dir.path().join("body");
    std::fs::write(
        &script,
        format!(
            "{}\nimport sys\nprint(verify(sys.argv[1], sys.argv[2], open(sys.argv[3], 'rb').read()))\n",
            &readme[start..end]
        ),
    )
    .unwrap();
    std::fs::write(&body, raw_body).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([secret, header])
        .arg(&body)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("unexpected output {other}"),
    }
}
