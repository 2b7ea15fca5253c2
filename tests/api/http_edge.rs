//! The HTTP edge against slow and idle clients (header and request timeouts, the connection
//! cap), `/metrics` behind a bearer token, and request URLs in the logs without their secrets.
//! Each attack is made over a real socket against a spawned engine with short limits.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Instant) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&seen).into(), Instant::now());
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_ms = 500).await;
    // Half a request, then nothing (slowloris).
    let mut partial = TcpStream::connect(addr(&app.base)).await.unwrap();
    let started = Instant::now();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: engine\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    // And a connection that never says anything.
    let mut silent = TcpStream::connect(addr(&app.base)).await.unwrap();
    let (answer, closed) = read_to_close(&mut partial, Duration::from_secs(5)).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(closed - started >= Duration::from_millis(400));
    read_to_close(&mut silent, Duration::from_secs(5)).await;
    // A kept-alive connection that goes quiet after a request is closed the same way.
    let mut kept = TcpStream::connect(addr(&app.base)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: engine\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A prompt client is served as ever.
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn idle_connections_past_the_cap_do_not_lock_out_a_new_client() {
    let app = spawn_app_with(|c| {
        c.http.max_connections = 4;
        c.http.header_read_timeout_ms = 500;
    })
    .await;
    // Three times the cap of connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(addr(&app.base)).await.unwrap());
    }
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("served once the idle connections were dropped");
    assert_eq!(r.status(), StatusCode::OK);
    // The cap held: the request waited for the idle connections ahead of it to time out (three
    // rounds of four), instead of the engine taking every connection at once.
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "served after {:?}: the cap did not hold",
        started.elapsed()
    );
    for mut stream in idle {
        read_to_close(&mut stream, Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn a_request_whose_body_trickles_gets_408_but_websockets_outlive_the_timeout() {
    // Long enough for the set-up requests below (registering hashes a password) on a loaded
    // machine; the trickling body never completes, and the stream outlives it.
    let app = spawn_app_with(|c| c.http.request_timeout_ms = 3_000).await;
    let mut slow = TcpStream::connect(addr(&app.base)).await.unwrap();
    slow.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let (answer, _) = read_to_close(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not completed within 3000 ms"), "{answer}");

    // A media stream is not a request: it stays open past the request timeout.
    let s = app.register("ws@example.com", "WS").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let url = r.body["stream_url"].as_str().unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::text(
            json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }).to_string(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    socket
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Pong(payload)) => return Some(payload),
                Ok(Message::Close(frame)) => panic!("closed: {frame:?}"),
                Ok(_) => {}
                Err(error) => panic!("{error}"),
            }
        }
        None
    })
    .await
    .expect("a pong");
    assert_eq!(pong.as_deref(), Some(&b"still there?"[..]));
}

#[tokio::test]
async fn metrics_require_the_bearer_token_when_one_is_set() {
    let app = spawn_app_with(|c| c.metrics_token = Some("m3trics-t0ken".to_owned().into())).await;
    let get = |token: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/metrics", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for token in [None, Some("wrong"), Some("m3trics-t0ke"), Some("")] {
        let r = get(token).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("metrics token"));
    }
    let r = get(Some("m3trics-t0ken")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("http_requests_total"));

    // Without a token configured, /metrics is open as before.
    let open = spawn_app().await;
    let r = open
        .client
        .get(format!("{}/metrics", open.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = open
        .request(reqwest::Method::GET, "/api/agents", None, None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED);
}

/// A log sink the test reads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_urls_reach_the_logs_without_tokens_or_signatures() {
    let logs = Captured::default();
    let sink = logs.clone();
    // Request events at debug, so every request below is logged with its span's URI.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,tower_http=debug"))
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("the only subscriber in this test process");
    let app = spawn_app().await;
    let s = app.register("logs@example.com", "Logs").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    let stream_token = r.body["token"].as_str().unwrap().to_owned();
    for path in [
        format!("/media/twilio?token={stream_token}"),
        "/recordings/1.mp3?expires=4102444800&signature=5ec7e75ec7e7".to_owned(),
        "/billing/checkout/ck_s3cretcheckouttoken".to_owned(),
    ] {
        app.client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for shown in [
        "/media/twilio?token=[redacted]",
        "/recordings/1.mp3?expires=[redacted]&signature=[redacted]",
        "/billing/checkout/[redacted]",
    ] {
        assert!(text.contains(shown), "{shown} not logged in:\n{text}");
    }
    for secret in [
        stream_token.as_str(),
        "5ec7e75ec7e7",
        "ck_s3cretcheckouttoken",
        "4102444800",
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
