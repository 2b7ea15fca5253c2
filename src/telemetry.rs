//! Tracing and metrics set-up, in one place.
//!
//! Logs go to an injectable sink (stderr in the binary, a buffer or nothing in tests). Metrics are
//! recorded through the `metrics` facade into one process-wide Prometheus recorder, rendered by
//! `GET /metrics`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Default log filter; `RUST_LOG` replaces it.
pub const DEFAULT_LOG_FILTER: &str = "info,ort=warn,sqlx=warn";

/// Histogram buckets (seconds) for request latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global tracing subscriber writing to `sink`. Later calls are ignored, so tests may
/// call it freely.
pub fn init_tracing<W>(sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colour only when a person is watching the engine's own stderr.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(sink)
        .try_init();
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("latency buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then our
            // handle renders only what was recorded through it, which is still correct output.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Path prefixes whose next segment is a secret (a bearer credential in the path).
const SECRET_PATH_SEGMENTS: &[&str] = &["/billing/checkout/"];

/// A request URI as logs may show it: every query value replaced (queries carry stream tokens,
/// recording signatures and their expiry) and secret path segments (checkout tokens) hidden.
/// Parameter names stay, so a log still tells which kind of URL it was.
pub fn redact_uri(uri: &axum::http::Uri) -> String {
    let mut path = uri.path().to_owned();
    for prefix in SECRET_PATH_SEGMENTS {
        if let Some(rest) = path.strip_prefix(prefix)
            && !rest.is_empty()
        {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            path = format!("{prefix}[redacted]{tail}");
        }
    }
    match uri.query() {
        None => path,
        Some(query) => {
            let names: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                    format!("{name}=[redacted]")
                })
                .collect();
            format!("{path}?{}", names.join("&"))
        }
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn tokens_and_signatures_never_reach_a_logged_uri() {
        for (uri, shown) in [
            (
                "/media/twilio?token=eyJhbGciOi.secret-part",
                "/media/twilio?token=[redacted]",
            ),
            (
                "/recordings/call-7.mp3?sig=abcdef0123&expires=1765000000",
                "/recordings/call-7.mp3?sig=[redacted]&expires=[redacted]",
            ),
            (
                "/billing/checkout/cs_secret_token",
                "/billing/checkout/[redacted]",
            ),
            (
                "/billing/checkout/cs_secret_token/confirm?x=1",
                "/billing/checkout/[redacted]/confirm?x=[redacted]",
            ),
            ("/api/calls?page=2", "/api/calls?page=[redacted]"),
            ("/api/agents/7", "/api/agents/7"),
            ("/billing/checkout/", "/billing/checkout/"),
        ] {
            let uri: axum::http::Uri = uri.parse().unwrap();
            assert_eq!(redact_uri(&uri), shown);
        }
    }
}
