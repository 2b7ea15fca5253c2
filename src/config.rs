//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables and command-line flags (clap resolves those two, flags winning).
//!
//! Secrets (the database URL may carry a password) are wrapped in [`SecretString`] so that
//! `Debug` output and logs never print them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::pipeline::vad::{Aggressiveness, VadKind};
use serde::Deserialize;

/// Default voice aliases: the seed's example voice ids, spoken by the one voice the engine ships.
pub const DEFAULT_VOICE_ALIASES: &[(&str, &str)] = &[("aria", "joe"), ("leo", "joe")];

/// Everything the engine needs to start, after layering.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite:…`; `None` means the SQLite file under `data_dir`.
    pub database_url: Option<SecretString>,
    /// Externally reachable base URL; `None` means `http://<bound address>`.
    pub public_url: Option<String>,
    pub limits: Limits,
    /// Directory of the model files (`scripts/fetch-models` fills it).
    pub models_dir: PathBuf,
    /// Extra voice ids, each spoken by an installed voice.
    pub voice_aliases: BTreeMap<String, String>,
    /// Load the models in the background at start-up (otherwise on first use).
    pub preload_models: bool,
    /// Signs stream tokens; every node of one deployment needs the same. `None`: a random secret
    /// per process (fine for one node).
    pub stream_secret: Option<SecretString>,
    /// Twilio's auth token: Twilio's webhooks require a valid `X-Twilio-Signature` made with it;
    /// without it they are closed ([`CarrierWebhookSettings`]).
    pub twilio_auth_token: Option<SecretString>,
    /// Vonage's signature secret: Vonage's answer webhook requires a signed JWT made with it;
    /// without it the webhook is closed.
    pub vonage_signature_secret: Option<SecretString>,
    /// The other carriers' webhook credentials, the development switch and the rate limit.
    pub carrier_webhooks: CarrierWebhookSettings,
    /// The voice activity detector calls use, and WebRTC's aggressiveness when it is chosen.
    pub vad: VadKind,
    pub vad_aggressiveness: Aggressiveness,
    /// Caller speech longer than this (ms) while the agent speaks interrupts it.
    pub barge_in_ms: u16,
    pub db_max_connections: u32,
    /// Record calls (MP3 under `data_dir/recordings`).
    pub record_calls: bool,
    /// The OpenAI-compatible chat-completions API agents may use; `None`: the embedded
    /// responder answers every call.
    pub llm: Option<LlmSettings>,
    /// Twilio's REST API, for transferring calls: account SID and base URL.
    pub twilio_account_sid: Option<String>,
    pub twilio_api_url: String,
    /// Which carrier provisions numbers and places outbound calls.
    pub carrier: CarrierChoice,
    pub sandbox: SandboxSettings,
    pub dialler: DiallerSettings,
    pub webhooks: WebhookSettings,
    /// Plans, the trial, and the payment provider.
    pub billing: BillingSettings,
    /// The node registry: heartbeats, and when a silent node's calls are closed and billed.
    pub nodes: NodeSettings,
    /// Calls one engine process carries at once (streaming, over every business); more are
    /// refused like a business over its plan's limit.
    pub max_calls_per_node: u32,
    /// The child process that reads uploaded documents, and its limits.
    pub extraction: ExtractionSettings,
    /// Connection and request time limits of the HTTP server.
    pub http: HttpSettings,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
}

/// The HTTP server's limits against slow or idle clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// How long a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    pub header_read_timeout_ms: u64,
    /// How long a request may take to be answered, its body included.
    pub request_timeout_ms: u64,
    /// The same for knowledge document uploads.
    pub upload_timeout_ms: u64,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            upload_timeout_ms: 300_000,
            max_connections: 1_024,
        }
    }
}

/// Uploaded documents are read by a child process of the engine's own binary
/// (`callgenius extract-document`), held to these limits; a file that breaks one fails.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionSettings {
    /// The program to run as `PROGRAM extract-document`; `None`: this process's executable.
    pub program: Option<PathBuf>,
    /// Address space the child may use (RLIMIT_AS and RLIMIT_DATA), in MiB.
    pub memory_mib: u64,
    /// CPU time the child may use (RLIMIT_CPU), in seconds.
    pub cpu_secs: u64,
    /// Wall-clock time before the engine kills the child, in seconds.
    pub timeout_secs: u64,
    /// The most extracted text (as JSON) read back from the child, in MiB.
    pub max_output_mib: u64,
}

impl Default for ExtractionSettings {
    fn default() -> Self {
        Self {
            program: None,
            memory_mib: 1024,
            cpu_secs: 30,
            timeout_secs: 60,
            max_output_mib: 64,
        }
    }
}

/// Engine processes sharing a database: each heartbeats; the calls of one silent for
/// `timeout_secs` (a crash) are closed with their last known duration and billed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// How often a node records that it is alive, and how live its calls' durations are.
    pub heartbeat_secs: u64,
    /// A node silent this long is gone; any node then ends its calls.
    pub timeout_secs: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 5,
            timeout_secs: 30,
        }
    }
}

/// Carrier webhooks (besides Twilio's and Vonage's secrets above): each carrier's webhooks are
/// closed (403) until its credential is configured.
#[derive(Debug, Clone)]
pub struct CarrierWebhookSettings {
    /// Telnyx's account public key (base64 Ed25519): verifies `telnyx-signature-ed25519`.
    pub telnyx_public_key: Option<[u8; 32]>,
    /// Plivo's auth token: verifies `X-Plivo-Signature-V3`.
    pub plivo_auth_token: Option<SecretString>,
    /// Development only: a carrier without credentials has its webhooks open, unverified.
    pub insecure: bool,
    /// Answer-webhook requests a minute per client address.
    pub requests_per_minute: u32,
}

impl Default for CarrierWebhookSettings {
    fn default() -> Self {
        Self {
            telnyx_public_key: None,
            plivo_auth_token: None,
            insecure: false,
            requests_per_minute: 60,
        }
    }
}

/// Reads a Telnyx public key: base64 of the raw 32-byte Ed25519 key, or of its DER
/// SubjectPublicKeyInfo (the raw key after a fixed 12-byte prefix).
pub fn parse_ed25519_public_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    const SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let raw = match bytes.len() {
        32 => &bytes[..],
        44 if bytes[..12] == SPKI_PREFIX => &bytes[12..],
        _ => return None,
    };
    raw.try_into().ok()
}

/// The carrier numbers and outbound calls go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierChoice {
    /// The embedded sandbox: numbers and calls on this machine, no network.
    #[default]
    Sandbox,
    /// Twilio's REST API (needs the account SID and auth token).
    Twilio,
}

/// How the sandbox carrier's simulated callees behave.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// The first rule whose `number` matches the dialled number decides the outcome; a number
    /// ending in `*` matches as a prefix. No match: the callee answers.
    pub rules: Vec<crate::carrier::sandbox::SandboxRule>,
    /// How long a call rings before it is answered, or given up as no answer.
    pub ring_ms: u64,
    /// What an answering callee says, one utterance after each of the agent's turns.
    pub callee_says: Vec<String>,
    /// What an answering machine says.
    pub voicemail_says: String,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            ring_ms: 2_000,
            callee_says: vec!["No thanks, that's all, goodbye.".into()],
            voicemail_says: "Hi, you've reached my voicemail. Please leave a message after the \
                             tone."
                .into(),
        }
    }
}

/// The outbound dialler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiallerSettings {
    /// How long a claimed target stays with its dialler without a heartbeat.
    pub lease_secs: u64,
    /// Calls one business may have ringing or connected at once, over all its campaigns.
    pub tenant_concurrency: u32,
    /// How long an outbound call rings before it counts as no answer.
    pub ring_timeout_secs: u32,
    /// The longest an outbound call may last before the dialler hangs up.
    pub max_call_secs: u64,
}

impl Default for DiallerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            tenant_concurrency: 10,
            ring_timeout_secs: 30,
            max_call_secs: 3_600,
        }
    }
}

/// Billing: the trial new businesses get, the plans on offer, and who takes the payments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSettings {
    /// Minutes of calls a new business may make before it needs a plan or a wallet balance.
    pub trial_minutes: u32,
    /// `builtin` (the engine's own checkout page; no payment is taken) or `stripe`.
    pub provider: PaymentProviderChoice,
    /// ISO 4217 code, lower case: what prices and the wallet are in.
    pub currency: String,
    pub plans: Plans,
    pub stripe: StripeSettings,
    /// Calls a business on the trial (no plan) may have connecting or in progress at once.
    pub trial_max_concurrent_calls: u32,
    /// How long a call goes on after the trial, included minutes and wallet run out during it,
    /// before the agent says goodbye and hangs up.
    pub grace_secs: u64,
    /// How often a live call checks that its business still has minutes or money.
    pub balance_check_secs: u64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            trial_minutes: 30,
            provider: PaymentProviderChoice::default(),
            currency: "usd".into(),
            plans: Plans::default(),
            stripe: StripeSettings::default(),
            trial_max_concurrent_calls: 2,
            grace_secs: 60,
            balance_check_secs: 15,
        }
    }
}

/// Who hosts checkout sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProviderChoice {
    /// The engine serves the checkout page itself; confirming it activates the plan.
    #[default]
    Builtin,
    /// Stripe Checkout; its signed webhook activates the plan.
    Stripe,
}

/// The three plans' terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plans {
    pub starter: PlanTerms,
    pub pro: PlanTerms,
    pub enterprise: PlanTerms,
}

impl Default for Plans {
    fn default() -> Self {
        Self {
            starter: PlanTerms {
                included_minutes: 100,
                max_concurrent_calls: Some(5),
                price_cents: 4_900,
                overage_cents_per_minute: 15,
            },
            pro: PlanTerms {
                included_minutes: 350,
                max_concurrent_calls: Some(20),
                price_cents: 14_900,
                overage_cents_per_minute: 12,
            },
            enterprise: PlanTerms {
                included_minutes: 2_000,
                max_concurrent_calls: Some(100),
                price_cents: 69_900,
                overage_cents_per_minute: 9,
            },
        }
    }
}

/// One plan: minutes included each calendar month, its monthly price, and what a minute past
/// the included ones costs from the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTerms {
    pub included_minutes: u32,
    pub price_cents: u32,
    pub overage_cents_per_minute: u32,
    /// Calls a business on the plan may have connecting or in progress at once; absent: the
    /// built-in plan's (starter 5, pro 20, enterprise 100).
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

/// Stripe Checkout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeSettings {
    /// The API secret key (`sk_…`).
    #[serde(deserialize_with = "secret")]
    pub secret_key: Option<SecretString>,
    /// The webhook endpoint's signing secret (`whsec_…`).
    #[serde(deserialize_with = "secret")]
    pub webhook_secret: Option<SecretString>,
    pub api_url: String,
    /// The recurring Price of each plan.
    pub prices: StripePrices,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self {
            secret_key: None,
            webhook_secret: None,
            api_url: STRIPE_API_URL.to_owned(),
            prices: StripePrices::default(),
        }
    }
}

/// Stripe Price ids (`price_…`), one per plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripePrices {
    pub starter: Option<String>,
    pub pro: Option<String>,
    pub enterprise: Option<String>,
}

/// Stripe's REST API base.
pub const STRIPE_API_URL: &str = "https://api.stripe.com";

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

/// An OpenAI-compatible chat-completions API.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<SecretString>,
    /// How long a request may take to produce its first token.
    pub timeout_ms: u64,
    /// Retries before the first token (connection errors, timeouts, 429, 5xx).
    pub retries: u32,
}

/// Twilio's REST API base.
pub const TWILIO_API_URL: &str = "https://api.twilio.com";
/// Webhook delivery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// How long a receiver has to answer one delivery.
    pub timeout_ms: u64,
    /// The first retry's delay; each further one doubles it, up to `retry_max_ms`, with jitter.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long an event is retried before its delivery is given up (at least 24).
    pub retry_hours: u64,
    /// How long a claimed delivery stays with its worker (longer than the timeout).
    pub lease_secs: u64,
    /// Deliveries a worker sends at once.
    pub batch: u32,
    /// How often an idle worker looks for due deliveries.
    pub poll_ms: u64,
    /// Deliveries one endpoint may have in flight at once (per worker).
    pub endpoint_concurrency: u32,
    /// Allow endpoints on loopback, private, link-local and other internal addresses (for
    /// self-hosted set-ups); the engine's own address stays refused.
    pub allow_private_targets: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            retry_base_ms: 5_000,
            retry_max_ms: 3_600_000,
            retry_hours: 72,
            lease_secs: 60,
            batch: 32,
            poll_ms: 500,
            endpoint_concurrency: 8,
            allow_private_targets: false,
        }
    }
}

/// Request limits enforced by the API.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests a minute per token.
    pub requests_per_minute: u32,
    /// Login and register attempts a minute per client address.
    pub auth_requests_per_minute: u32,
    /// Requests a minute per token to the webhook management routes (on top of the general
    /// limit: "webhook endpoints have stricter limits").
    pub webhook_requests_per_minute: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest knowledge document accepted (`POST /api/knowledge`), in bytes.
    pub max_upload_bytes: usize,
    /// Where a client's address (for the per-address limits) comes from.
    pub client_address: ClientAddressSource,
}

/// How the engine learns a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddressSource {
    /// The TCP peer: right when clients connect directly.
    #[default]
    Socket,
    /// The last `X-Forwarded-For` entry, as appended by one trusted reverse proxy in front.
    ForwardedFor,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_minute: 120,
            auth_requests_per_minute: 20,
            webhook_requests_per_minute: 30,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 20 * 1024 * 1024,
            client_address: ClientAddressSource::Socket,
        }
    }
}

impl Config {
    /// The configuration a test or an embedder starts from: loopback, port 0, SQLite in `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            public_url: None,
            limits: Limits::default(),
            models_dir: PathBuf::from("models"),
            voice_aliases: DEFAULT_VOICE_ALIASES
                .iter()
                .map(|(alias, voice)| (alias.to_string(), voice.to_string()))
                .collect(),
            preload_models: true,
            stream_secret: None,
            twilio_auth_token: None,
            vonage_signature_secret: None,
            carrier_webhooks: CarrierWebhookSettings::default(),
            vad: VadKind::default(),
            vad_aggressiveness: Aggressiveness::default(),
            barge_in_ms: 400,
            db_max_connections: 10,
            record_calls: true,
            llm: None,
            twilio_account_sid: None,
            twilio_api_url: TWILIO_API_URL.to_owned(),
            carrier: CarrierChoice::default(),
            sandbox: SandboxSettings::default(),
            dialler: DiallerSettings::default(),
            webhooks: WebhookSettings::default(),
            billing: BillingSettings::default(),
            nodes: NodeSettings::default(),
            max_calls_per_node: 16,
            extraction: ExtractionSettings::default(),
            http: HttpSettings::default(),
            metrics_token: None,
        }
    }

    /// The database URL to connect to: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let path = self.data_dir.join("callgenius.db");
                SecretString::from(format!("sqlite://{}?mode=rwc", path.display()))
            }
        }
    }
}

/// Values that flags or environment variables may set; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<SecretString>,
    pub public_url: Option<String>,
    pub requests_per_minute: Option<u32>,
    pub auth_requests_per_minute: Option<u32>,
    pub webhook_requests_per_minute: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub max_upload_bytes: Option<usize>,
    pub trust_forwarded_for: Option<bool>,
    pub models_dir: Option<PathBuf>,
    pub stream_secret: Option<SecretString>,
    pub twilio_auth_token: Option<SecretString>,
    pub vonage_signature_secret: Option<SecretString>,
    pub llm_base_url: Option<String>,
    pub llm_model: Option<String>,
    pub llm_api_key: Option<SecretString>,
    pub twilio_account_sid: Option<String>,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_webhook_secret: Option<SecretString>,
    pub telnyx_public_key: Option<String>,
    pub plivo_auth_token: Option<SecretString>,
    pub insecure_carrier_webhooks: Option<bool>,
    pub carrier_webhook_requests_per_minute: Option<u32>,
    pub metrics_token: Option<SecretString>,
    pub webhooks_allow_private_targets: Option<bool>,
}

/// The optional TOML file. Every key is optional; unknown keys are an error so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    requests_per_minute: Option<u32>,
    auth_requests_per_minute: Option<u32>,
    webhook_requests_per_minute: Option<u32>,
    max_body_bytes: Option<usize>,
    max_upload_bytes: Option<usize>,
    trust_forwarded_for: Option<bool>,
    models_dir: Option<PathBuf>,
    voice_aliases: Option<BTreeMap<String, String>>,
    preload_models: Option<bool>,
    stream_secret: Option<String>,
    twilio_auth_token: Option<String>,
    vonage_signature_secret: Option<String>,
    telnyx_public_key: Option<String>,
    plivo_auth_token: Option<String>,
    insecure_carrier_webhooks: Option<bool>,
    carrier_webhook_requests_per_minute: Option<u32>,
    vad: Option<VadKind>,
    vad_aggressiveness: Option<u8>,
    barge_in_ms: Option<u16>,
    db_max_connections: Option<u32>,
    record_calls: Option<bool>,
    llm_base_url: Option<String>,
    llm_model: Option<String>,
    llm_api_key: Option<String>,
    llm_timeout_ms: Option<u64>,
    llm_retries: Option<u32>,
    twilio_account_sid: Option<String>,
    twilio_api_url: Option<String>,
    carrier: Option<CarrierChoice>,
    sandbox: Option<SandboxSettings>,
    dialler: Option<DiallerSettings>,
    webhooks: Option<WebhookSettings>,
    billing: Option<BillingSettings>,
    nodes: Option<NodeSettings>,
    max_calls_per_node: Option<u32>,
    extraction: Option<ExtractionSettings>,
    http: Option<HttpSettings>,
    metrics_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

impl Config {
    /// Layers defaults, the optional file and the overrides, then validates the result.
    pub fn load(overrides: Overrides) -> Result<Self, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = Config::with_data_dir("./data");
        let limits = Limits {
            requests_per_minute: overrides
                .requests_per_minute
                .or(file.requests_per_minute)
                .unwrap_or(defaults.limits.requests_per_minute),
            auth_requests_per_minute: overrides
                .auth_requests_per_minute
                .or(file.auth_requests_per_minute)
                .unwrap_or(defaults.limits.auth_requests_per_minute),
            webhook_requests_per_minute: overrides
                .webhook_requests_per_minute
                .or(file.webhook_requests_per_minute)
                .unwrap_or(defaults.limits.webhook_requests_per_minute),
            max_body_bytes: overrides
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(defaults.limits.max_body_bytes),
            max_upload_bytes: overrides
                .max_upload_bytes
                .or(file.max_upload_bytes)
                .unwrap_or(defaults.limits.max_upload_bytes),
            client_address: if overrides
                .trust_forwarded_for
                .or(file.trust_forwarded_for)
                .unwrap_or(false)
            {
                ClientAddressSource::ForwardedFor
            } else {
                ClientAddressSource::Socket
            },
        };
        let config = Config {
            addr: overrides
                .addr
                .or(file.addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: overrides
                .data_dir
                .or(file.data_dir)
                .unwrap_or(defaults.data_dir),
            database_url: overrides
                .database_url
                .or(file.database_url.map(SecretString::from)),
            public_url: overrides.public_url.or(file.public_url),
            limits,
            models_dir: overrides
                .models_dir
                .or(file.models_dir)
                .unwrap_or(defaults.models_dir),
            voice_aliases: file.voice_aliases.unwrap_or(defaults.voice_aliases),
            preload_models: file.preload_models.unwrap_or(defaults.preload_models),
            stream_secret: overrides
                .stream_secret
                .or(file.stream_secret.map(SecretString::from)),
            twilio_auth_token: overrides
                .twilio_auth_token
                .or(file.twilio_auth_token.map(SecretString::from)),
            vonage_signature_secret: overrides
                .vonage_signature_secret
                .or(file.vonage_signature_secret.map(SecretString::from)),
            carrier_webhooks: CarrierWebhookSettings {
                telnyx_public_key: match overrides.telnyx_public_key.or(file.telnyx_public_key) {
                    None => None,
                    Some(key) => {
                        Some(parse_ed25519_public_key(&key).ok_or(ConfigError::Invalid {
                            setting: "telnyx_public_key",
                            reason: "must be the base64 Ed25519 public key from Telnyx".into(),
                        })?)
                    }
                },
                plivo_auth_token: overrides
                    .plivo_auth_token
                    .or(file.plivo_auth_token.map(SecretString::from)),
                insecure: overrides
                    .insecure_carrier_webhooks
                    .or(file.insecure_carrier_webhooks)
                    .unwrap_or(defaults.carrier_webhooks.insecure),
                requests_per_minute: overrides
                    .carrier_webhook_requests_per_minute
                    .or(file.carrier_webhook_requests_per_minute)
                    .unwrap_or(defaults.carrier_webhooks.requests_per_minute),
            },
            vad: file.vad.unwrap_or(defaults.vad),
            barge_in_ms: file.barge_in_ms.unwrap_or(defaults.barge_in_ms),
            vad_aggressiveness: match file.vad_aggressiveness {
                None => defaults.vad_aggressiveness,
                Some(level) => Aggressiveness::new(level).ok_or(ConfigError::Invalid {
                    setting: "vad_aggressiveness",
                    reason: "must be 0, 1, 2 or 3".into(),
                })?,
            },
            db_max_connections: file
                .db_max_connections
                .unwrap_or(defaults.db_max_connections),
            record_calls: file.record_calls.unwrap_or(defaults.record_calls),
            llm: match overrides.llm_base_url.or(file.llm_base_url) {
                None => None,
                Some(base_url) => Some(LlmSettings {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    model: overrides
                        .llm_model
                        .or(file.llm_model)
                        .ok_or(ConfigError::Invalid {
                            setting: "llm_model",
                            reason: "is required with llm_base_url".into(),
                        })?,
                    api_key: overrides
                        .llm_api_key
                        .or(file.llm_api_key.map(SecretString::from)),
                    timeout_ms: file.llm_timeout_ms.unwrap_or(8_000),
                    retries: file.llm_retries.unwrap_or(2),
                }),
            },
            twilio_account_sid: overrides.twilio_account_sid.or(file.twilio_account_sid),
            twilio_api_url: file
                .twilio_api_url
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or(defaults.twilio_api_url),
            carrier: file.carrier.unwrap_or(defaults.carrier),
            sandbox: file.sandbox.unwrap_or(defaults.sandbox),
            dialler: file.dialler.unwrap_or(defaults.dialler),
            webhooks: {
                let mut webhooks = file.webhooks.unwrap_or(defaults.webhooks);
                if let Some(allow) = overrides.webhooks_allow_private_targets {
                    webhooks.allow_private_targets = allow;
                }
                webhooks
            },
            http: file.http.unwrap_or(defaults.http),
            metrics_token: overrides
                .metrics_token
                .or(file.metrics_token.map(SecretString::from))
                .filter(|t| !t.expose_secret().is_empty()),
            billing: {
                let mut billing = file.billing.unwrap_or(defaults.billing);
                billing.stripe.api_url = billing.stripe.api_url.trim_end_matches('/').to_owned();
                if let Some(key) = overrides.stripe_secret_key {
                    billing.stripe.secret_key = Some(key);
                }
                if let Some(secret) = overrides.stripe_webhook_secret {
                    billing.stripe.webhook_secret = Some(secret);
                }
                billing
            },
            nodes: file.nodes.unwrap_or(defaults.nodes),
            max_calls_per_node: file
                .max_calls_per_node
                .unwrap_or(defaults.max_calls_per_node),
            extraction: file.extraction.unwrap_or(defaults.extraction),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.into(),
        };
        if let Some(url) = &self.database_url {
            let url = url.expose_secret();
            let known = ["postgres://", "postgresql://", "sqlite:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                return Err(invalid(
                    "database_url",
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("public_url", "must be an http:// or https:// URL"));
        }
        if self.limits.requests_per_minute == 0
            || self.limits.auth_requests_per_minute == 0
            || self.limits.webhook_requests_per_minute == 0
            || self.carrier_webhooks.requests_per_minute == 0
        {
            return Err(invalid("requests_per_minute", "must be at least 1"));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        if self.limits.max_upload_bytes < 1024 {
            return Err(invalid("max_upload_bytes", "must be at least 1024"));
        }
        if let Some(llm) = &self.llm
            && !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://"))
        {
            return Err(invalid(
                "llm_base_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.carrier == CarrierChoice::Twilio
            && (self.twilio_account_sid.is_none() || self.twilio_auth_token.is_none())
        {
            return Err(invalid(
                "carrier",
                "twilio needs twilio_account_sid and twilio_auth_token",
            ));
        }
        if self.dialler.lease_secs < 3 || self.dialler.tenant_concurrency == 0 {
            return Err(invalid(
                "dialler",
                "lease_secs must be at least 3 and tenant_concurrency at least 1",
            ));
        }
        let w = &self.webhooks;
        if w.retry_hours < 24 {
            return Err(invalid("webhooks.retry_hours", "must be at least 24"));
        }
        if w.timeout_ms == 0
            || w.batch == 0
            || w.poll_ms == 0
            || w.retry_base_ms == 0
            || w.endpoint_concurrency == 0
        {
            return Err(invalid(
                "webhooks",
                "timeout_ms, batch, poll_ms, retry_base_ms and endpoint_concurrency must be at \
                 least 1",
            ));
        }
        let h = &self.http;
        if h.header_read_timeout_ms == 0
            || h.request_timeout_ms == 0
            || h.upload_timeout_ms == 0
            || h.max_connections == 0
        {
            return Err(invalid("http", "every limit must be at least 1"));
        }
        if w.lease_secs * 1000 <= w.timeout_ms || w.retry_max_ms < w.retry_base_ms {
            return Err(invalid(
                "webhooks",
                "lease_secs must outlast timeout_ms, and retry_max_ms be at least retry_base_ms",
            ));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("db_max_connections", "must be at least 1"));
        }
        let n = &self.nodes;
        if n.heartbeat_secs == 0 || n.timeout_secs < 2 * n.heartbeat_secs {
            return Err(invalid(
                "nodes",
                "heartbeat_secs must be at least 1 and timeout_secs at least twice it",
            ));
        }
        if self.max_calls_per_node == 0 {
            return Err(invalid("max_calls_per_node", "must be at least 1"));
        }
        let x = &self.extraction;
        if x.memory_mib < 64 || x.cpu_secs == 0 || x.timeout_secs == 0 || x.max_output_mib == 0 {
            return Err(invalid(
                "extraction",
                "memory_mib must be at least 64, cpu_secs, timeout_secs and max_output_mib at least 1",
            ));
        }
        self.billing.validate()?;
        Ok(())
    }
}

impl BillingSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.into(),
        };
        let currency = &self.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid(
                "billing.currency",
                "must be a three-letter ISO 4217 code in lower case, such as usd",
            ));
        }
        let plans = &self.plans;
        if [plans.starter, plans.pro, plans.enterprise]
            .iter()
            .any(|p| p.overage_cents_per_minute == 0)
        {
            return Err(invalid(
                "billing.plans",
                "overage_cents_per_minute must be at least 1",
            ));
        }
        if self.trial_max_concurrent_calls == 0
            || [plans.starter, plans.pro, plans.enterprise]
                .iter()
                .any(|p| p.max_concurrent_calls == Some(0))
        {
            return Err(invalid(
                "billing.plans",
                "trial_max_concurrent_calls and max_concurrent_calls must be at least 1",
            ));
        }
        if self.balance_check_secs == 0 {
            return Err(invalid("billing.balance_check_secs", "must be at least 1"));
        }
        if !(self.stripe.api_url.starts_with("http://")
            || self.stripe.api_url.starts_with("https://"))
        {
            return Err(invalid(
                "billing.stripe.api_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.provider == PaymentProviderChoice::Stripe {
            let prices = &self.stripe.prices;
            if self.stripe.secret_key.is_none()
                || self.stripe.webhook_secret.is_none()
                || prices.starter.is_none()
                || prices.pro.is_none()
                || prices.enterprise.is_none()
            {
                return Err(invalid(
                    "billing.provider",
                    "stripe needs billing.stripe.secret_key, billing.stripe.webhook_secret and \
                     a price id for each plan in [billing.stripe.prices]",
                ));
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_beat_the_file_and_the_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("callgenius.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:9000\"\nrequests_per_minute = 60\nvad = \"webrtc\"\nvad_aggressiveness = 3\n[voice_aliases]\nbob = \"joe\"\n",
        )
        .unwrap();
        let config = Config::load(Overrides {
            config_file: Some(file),
            requests_per_minute: Some(30),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.addr.port(), 9000);
        assert_eq!(config.limits.requests_per_minute, 30);
        assert_eq!(config.limits.auth_requests_per_minute, 20);
        assert_eq!(
            config.voice_aliases,
            BTreeMap::from([("bob".to_string(), "joe".to_string())])
        );
        assert_eq!(config.vad, VadKind::Webrtc);
        assert_eq!(config.vad_aggressiveness, Aggressiveness::new(3).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let config = Config::load(Overrides {
            database_url: Some(SecretString::from("postgres://u:hunter2@db/cg")),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn billing_is_read_from_its_section_with_stripe_secrets_from_overrides() {
        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("billing.toml");
        std::fs::write(
            &file,
            "[billing]\ntrial_minutes = 5\nprovider = \"stripe\"\n\
             [billing.plans.pro]\nincluded_minutes = 500\nprice_cents = 19900\n\
             overage_cents_per_minute = 10\n\
             [billing.stripe]\nsecret_key = \"sk_file\"\napi_url = \"http://127.0.0.1:9/\"\n\
             [billing.stripe.prices]\nstarter = \"price_s\"\npro = \"price_p\"\n\
             enterprise = \"price_e\"\n",
        )
        .unwrap();
        let config = Config::load(Overrides {
            config_file: Some(file.clone()),
            stripe_secret_key: Some(SecretString::from("sk_flag")),
            stripe_webhook_secret: Some(SecretString::from("whsec_flag")),
            ..Default::default()
        })
        .unwrap();
        let billing = &config.billing;
        assert_eq!(billing.trial_minutes, 5);
        assert_eq!(billing.provider, PaymentProviderChoice::Stripe);
        assert_eq!(billing.plans.pro.included_minutes, 500);
        assert_eq!(
            billing.plans.starter,
            Plans::default().starter,
            "untouched plans keep defaults"
        );
        assert_eq!(billing.stripe.api_url, "http://127.0.0.1:9");
        let key = billing.stripe.secret_key.as_ref().unwrap();
        assert_eq!(key.expose_secret(), "sk_flag");
        assert!(!format!("{config:?}").contains("sk_flag"));
        assert!(!format!("{config:?}").contains("whsec_flag"));
        // Stripe without its webhook secret is refused.
        let missing = Config::load(Overrides {
            config_file: Some(file),
            ..Default::default()
        });
        assert!(matches!(
            missing,
            Err(ConfigError::Invalid {
                setting: "billing.provider",
                ..
            })
        ));
        let defaults = Config::load(Overrides::default()).unwrap().billing;
        assert_eq!(defaults.trial_minutes, 30);
        assert_eq!(defaults.provider, PaymentProviderChoice::Builtin);
        assert_eq!(defaults.plans.pro.included_minutes, 350);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn call_limits_have_defaults_and_are_read_from_the_file() {
        let defaults = Config::load(Overrides::default()).unwrap();
        assert_eq!(defaults.max_calls_per_node, 16);
        let caps = crate::billing::CallCaps::from_settings(&defaults.billing);
        assert_eq!(
            (caps.trial, caps.starter, caps.pro, caps.enterprise),
            (2, 5, 20, 100)
        );
        assert_eq!(defaults.billing.grace_secs, 60);
        assert_eq!(defaults.billing.balance_check_secs, 15);

        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("limits.toml");
        std::fs::write(
            &file,
            "max_calls_per_node = 4
[billing]
trial_max_concurrent_calls = 1
grace_secs = 5
             [billing.plans.pro]
included_minutes = 350
price_cents = 14900
             overage_cents_per_minute = 12
max_concurrent_calls = 7
             [billing.plans.enterprise]
included_minutes = 2000
price_cents = 69900
             overage_cents_per_minute = 9
",
        )
        .unwrap();
        let config = Config::load(Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.max_calls_per_node, 4);
        let caps = crate::billing::CallCaps::from_settings(&config.billing);
        // A plan table without the key keeps the built-in plan's limit.
        assert_eq!(
            (caps.trial, caps.starter, caps.pro, caps.enterprise),
            (1, 5, 7, 100)
        );
        assert_eq!(config.billing.grace_secs, 5);
        std::fs::write(&file, "max_calls_per_node = 0\n").unwrap();
        let zero = Config::load(Overrides {
            config_file: Some(file),
            ..Default::default()
        });
        assert!(matches!(
            zero,
            Err(ConfigError::Invalid {
                setting: "max_calls_per_node",
                ..
            })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn extraction_limits_are_read_from_their_section_and_checked() {
        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("extraction.toml");
        std::fs::write(&file, "[extraction]\nmemory_mib = 512\ntimeout_secs = 20\n").unwrap();
        let load = |file: &PathBuf| {
            Config::load(Overrides {
                config_file: Some(file.clone()),
                ..Default::default()
            })
        };
        let extraction = load(&file).unwrap().extraction;
        assert_eq!((extraction.memory_mib, extraction.timeout_secs), (512, 20));
        assert_eq!((extraction.cpu_secs, extraction.max_output_mib), (30, 64));
        assert_eq!(extraction.program, None);
        std::fs::write(&file, "[extraction]\nmemory_mib = 16\n").unwrap();
        assert!(matches!(
            load(&file),
            Err(ConfigError::Invalid {
                setting: "extraction",
                ..
            })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_database_schemes_and_typos_are_refused() {
        let bad = Config::load(Overrides {
            database_url: Some(SecretString::from("mysql://x")),
            ..Default::default()
        });
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                setting: "database_url",
                ..
            })
        ));
        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "adr = \"127.0.0.1:1\"\n").unwrap();
        let typo = Config::load(Overrides {
            config_file: Some(file),
            ..Default::default()
        });
        assert!(matches!(typo, Err(ConfigError::Parse { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_node_settings_are_read_from_their_section_and_checked() {
        let dir = std::env::temp_dir().join(format!("cg-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |toml: &str| {
            let file = dir.join("nodes.toml");
            std::fs::write(&file, toml).unwrap();
            Config::load(Overrides {
                config_file: Some(file),
                ..Default::default()
            })
        };
        let defaults = load("").unwrap().nodes;
        assert_eq!((defaults.heartbeat_secs, defaults.timeout_secs), (5, 30));
        let fast = load("[nodes]\nheartbeat_secs = 1\ntimeout_secs = 3\n").unwrap();
        assert_eq!((fast.nodes.heartbeat_secs, fast.nodes.timeout_secs), (1, 3));
        for bad in [
            "[nodes]\nheartbeat_secs = 0\n",
            "[nodes]\nheartbeat_secs = 10\ntimeout_secs = 15\n",
        ] {
            assert!(
                matches!(
                    load(bad),
                    Err(ConfigError::Invalid {
                        setting: "nodes",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
