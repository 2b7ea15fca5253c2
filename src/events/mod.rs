//! Webhooks: the signature scheme, sending one request, the retry schedule and the delivery
//! worker. Events and their deliveries are written by the store (`store::outbox::push`, in the
//! transaction of the change they describe); this module sends them.
//!
//! Each request is a POST of `{id, type, created_at, tenant_id, data}` with
//! `X-CallGenius-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` (a
//! second `v1` during a secret rotation). A 2xx answer is a delivery; anything else (another
//! status, a redirect, which is never followed, a refused connection, a timeout) is retried with
//! exponential back-off and jitter until the retry window closes.

pub mod signature;
pub mod target;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::WebhookSettings;
use crate::store::Db;
use target::{Refused, TargetError, TargetPolicy};

pub use worker::run;

/// The event type of a test request (`POST /api/webhooks/{id}/test`); never stored.
pub const PING: &str = "ping";

/// Clients kept for named hosts (each pinned to the addresses checked); past this many the
/// cache starts again.
const CLIENT_CACHE: usize = 256;

/// Clients by (host, the addresses it resolved to and which were checked).
type PinnedClients = HashMap<(String, Vec<SocketAddr>), reqwest::Client>;

/// What the engine needs to send webhooks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    pub(crate) db: Db,
    pub(crate) settings: Arc<WebhookSettings>,
    /// For address literals: connects to the address in the URL, resolves nothing.
    http: reqwest::Client,
    /// For names: one client per (host, checked addresses), which connects only to those.
    pinned: Arc<Mutex<PinnedClients>>,
    /// This process's name on the leases it takes.
    pub(crate) owner: Arc<str>,
    /// Which destinations are allowed; the engine's own address never is.
    policy: TargetPolicy,
    /// The engine's public URL: a webhook must not point at it.
    public_url: Arc<str>,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// Why it does not count as delivered; `None` for a 2xx.
    pub error: Option<String>,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// A resolver for clients that must never resolve a name themselves: every name they reach is
/// pinned to checked addresses, so a lookup here means a name slipped past the checks.
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            Err(format!("{name} was not resolved and checked before connecting").into())
        })
    }
}

impl Webhooks {
    pub fn new(db: Db, settings: &WebhookSettings, engine: SocketAddr, public_url: &str) -> Self {
        Self {
            db,
            http: client(settings, None),
            pinned: Arc::new(Mutex::new(HashMap::new())),
            settings: Arc::new(settings.clone()),
            owner: Arc::from(format!("webhooks-{}", uuid::Uuid::new_v4())),
            policy: TargetPolicy {
                allow_private: settings.allow_private_targets,
                engine,
            },
            public_url: Arc::from(public_url.trim_end_matches('/')),
        }
    }

    fn lock_pinned(&self) -> std::sync::MutexGuard<'_, PinnedClients> {
        self.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client that connects to `host` only at `addrs` (already checked).
    fn pinned_client(&self, host: &str, addrs: &[SocketAddr]) -> reqwest::Client {
        let mut addrs = addrs.to_vec();
        addrs.sort_unstable();
        addrs.dedup();
        let key = (host.to_ascii_lowercase(), addrs.clone());
        if let Some(client) = self.lock_pinned().get(&key) {
            return client.clone();
        }
        // Built outside the lock (it loads the TLS roots).
        let client = client(&self.settings, Some((host, &addrs)));
        let mut cache = self.lock_pinned();
        if cache.len() >= CLIENT_CACHE {
            cache.clear();
        }
        cache.insert(key, client.clone());
        client
    }

    /// POSTs `body` to `url`, signed with `secrets` at the current time. The host is resolved
    /// once and every address checked; the request goes only to the addresses checked. A
    /// refused address fails the attempt without a request.
    pub async fn send(&self, url: &str, event_id: &str, body: String, secrets: &[&str]) -> Sent {
        let started = Instant::now();
        let elapsed =
            |started: Instant| i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let resolved = match target::resolve(url, &self.policy).await {
            Ok(resolved) => resolved,
            Err(error) => {
                return Sent {
                    status_code: None,
                    latency_ms: elapsed(started),
                    error: Some(match error {
                        TargetError::Refused(refused) => format!("refused: {refused}"),
                        other => other.to_string(),
                    }),
                };
            }
        };
        let http = if resolved.is_name {
            self.pinned_client(&resolved.host, &resolved.addrs)
        } else {
            self.http.clone()
        };
        let signed = signature::sign(secrets, Utc::now().timestamp(), body.as_bytes());
        let result = http
            .post(resolved.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signed)
            .header("x-callgenius-event-id", event_id)
            .body(body)
            .send()
            .await;
        let latency_ms = elapsed(started);
        match result {
            Ok(response) => {
                let status = response.status();
                // Nothing of the answer but its status is kept: its headers and body are the
                // receiver's, not something to show back.
                let error = if status.is_success() {
                    None
                } else if status.is_redirection() {
                    Some(format!(
                        "HTTP {}: redirects are not followed",
                        status.as_u16()
                    ))
                } else {
                    Some(format!("HTTP {}", status.as_u16()))
                };
                Sent {
                    status_code: Some(status.as_u16()),
                    latency_ms,
                    error,
                }
            }
            Err(error) => Sent {
                status_code: None,
                latency_ms,
                error: Some(describe(&error, self.settings.timeout_ms)),
            },
        }
    }

    /// Why `url` cannot be a webhook endpoint, if it cannot: only http(s) URLs with a host and no
    /// credentials, which lead neither back to this engine nor (unless private targets are
    /// allowed) to an internal address. A name that does not resolve now is accepted: it may
    /// later, and every delivery checks it again.
    pub async fn check_url(&self, raw: &str) -> Result<reqwest::Url, String> {
        let url = target::parse(raw).map_err(|e| e.to_string())?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        if let Ok(public) = reqwest::Url::parse(&self.public_url)
            && public
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
            && public.port_or_known_default() == Some(port)
        {
            return Err("must not point at this engine".into());
        }
        match target::resolve(raw, &self.policy).await {
            Ok(_) | Err(TargetError::Unresolved(_)) => Ok(url),
            Err(TargetError::Refused(Refused::Engine { .. })) => {
                Err("must not point at this engine".into())
            }
            Err(TargetError::Refused(refused)) => {
                Err(format!("must not point at an internal address: {refused}"))
            }
            Err(other) => Err(other.to_string()),
        }
    }
}

/// A webhook client: no redirects, no proxy (it would connect instead of us), and no name
/// resolution of its own; `pin` sends one host's requests to its checked addresses.
fn client(settings: &WebhookSettings, pin: Option<(&str, &[SocketAddr])>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .connect_timeout(Duration::from_millis(settings.timeout_ms.min(5_000)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(NoLookup))
        .user_agent(concat!("CallGenius-Webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some((host, addrs)) = pin {
        builder = builder.resolve_to_addrs(host, addrs);
    }
    builder.build().unwrap_or_default()
}

/// A transport error in a few words, without the URL (it is shown beside the delivery).
fn describe(error: &reqwest::Error, timeout_ms: u64) -> String {
    if error.is_timeout() {
        format!("timed out after {timeout_ms} ms")
    } else if error.is_connect() {
        "could not connect".into()
    } else if error.is_request() || error.is_body() {
        "the request failed while sending".into()
    } else {
        "the request failed".into()
    }
}

/// When to try again after the `attempts`-th failed attempt of an event created at `created`,
/// or `None` to give up: the delay doubles from `retry_base_ms` up to `retry_max_ms`, each with
/// equal jitter (half fixed, half random), and retries go on until `retry_hours` after the event,
/// the last one falling on the window's end.
pub fn next_retry(
    settings: &WebhookSettings,
    attempts: i64,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let deadline = created + chrono::Duration::hours(settings.retry_hours as i64);
    if now >= deadline {
        return None;
    }
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    let delay = settings
        .retry_base_ms
        .saturating_mul(1u64 << doublings.min(40))
        .min(settings.retry_max_ms);
    let jittered = delay / 2 + (rand::random::<f64>() * (delay / 2) as f64) as u64;
    let at = now + chrono::Duration::milliseconds(i64::try_from(jittered).unwrap_or(i64::MAX));
    Some(at.min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_leading_back_to_the_engine_are_refused() {
        let db = Db::connect(&secrecy::SecretString::from("sqlite::memory:"), 1)
            .await
            .unwrap();
        let everywhere = Webhooks::new(
            db.clone(),
            &WebhookSettings::default(),
            "0.0.0.0:8080".parse().unwrap(),
            "https://voice.example.com",
        );
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost:8080/",
            "http://[::1]:8080/",
            "http://0.0.0.0:8080/",
            "https://voice.example.com/webhooks",
            "https://VOICE.example.com:443/",
        ] {
            assert!(everywhere.check_url(url).await.is_err(), "{url}");
        }
        for url in [
            "https://voice.example.com:8443/",
            "http://93.184.216.34:8080/",
        ] {
            assert!(everywhere.check_url(url).await.is_ok(), "{url}");
        }
        // With private targets allowed, loopback on another port is a receiver; on the
        // engine's port it is still the engine.
        let open = Webhooks::new(
            db.clone(),
            &WebhookSettings {
                allow_private_targets: true,
                ..WebhookSettings::default()
            },
            "0.0.0.0:8080".parse().unwrap(),
            "https://voice.example.com",
        );
        assert!(open.check_url("http://127.0.0.1:8081/hook").await.is_ok());
        assert!(open.check_url("http://localhost:8080/").await.is_err());
        assert!(
            open.check_url("http://[::ffff:127.0.0.1]:8080/")
                .await
                .is_err()
        );
        for (url, why) in [
            ("ftp://example.com/", "http"),
            ("https://user:pw@example.com/", "credentials"),
            ("mailto:x@example.com", "http"),
            ("/relative", "absolute"),
        ] {
            let error = everywhere.check_url(url).await.unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    fn settings() -> WebhookSettings {
        WebhookSettings {
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            retry_hours: 24,
            ..WebhookSettings::default()
        }
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let s = settings();
        let created = Utc::now();
        for (attempts, full) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (7, 60_000),
            (60, 60_000),
        ] {
            for _ in 0..50 {
                let at = next_retry(&s, attempts, created, created).unwrap();
                let ms = (at - created).num_milliseconds();
                assert!(
                    (full / 2..=full).contains(&ms),
                    "attempt {attempts}: {ms} ms not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn retries_go_on_for_the_whole_window_then_stop() {
        let s = settings();
        let created = Utc::now();
        let almost = created + chrono::Duration::hours(24) - chrono::Duration::seconds(5);
        let last = next_retry(&s, 40, created, almost).unwrap();
        assert_eq!(last, created + chrono::Duration::hours(24));
        assert_eq!(next_retry(&s, 41, created, last), None);
        // A day of failures with a one-hour cap is dozens of attempts, not a handful.
        let mut now = created;
        let mut attempts = 0;
        let cap = WebhookSettings {
            retry_max_ms: 3_600_000,
            ..settings()
        };
        while let Some(at) = next_retry(&cap, attempts + 1, created, now) {
            attempts += 1;
            now = at;
        }
        assert!(now >= created + chrono::Duration::hours(24));
        assert!(attempts > 24, "{attempts} attempts in a day");
    }
}
