//! Command-line interface. Flags win over their environment variables, which win over the
//! optional config file (see [`crate::config`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "callgenius",
    version,
    about = "Self-hostable voice-call runtime"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine: REST API (and, as they land, media edge and workers).
    Serve(Box<ServeArgs>),
    /// Transcribe a WAV file (any rate, PCM, float, µ-law or A-law) with the offline model.
    Transcribe(TranscribeArgs),
    /// Speak text into a WAV file with an installed Piper voice.
    Speak(SpeakArgs),
    /// Call an agent like a carrier would (Twilio Media Streams), from a WAV file of the caller.
    Call(CallArgs),
    /// Drive many real calls at once and report voice-to-voice latency, the engine's stages and
    /// the concurrency it sustains.
    Bench(BenchArgs),
    /// Internal: read a PDF or DOCX on stdin and write its text blocks as JSON on stdout. The
    /// engine runs this in a child process, under limits, for every uploaded document.
    #[command(hide = true)]
    ExtractDocument,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The engine to call (not with --spawn).
    #[arg(long, env = "CALLGENIUS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Start an engine for the bench (this binary, a temporary SQLite data dir) and stop it after.
    #[arg(long)]
    pub spawn: bool,
    /// Concurrent calls (call slots; each starts calls back to back for --duration).
    #[arg(long, default_value_t = 1)]
    pub calls: usize,
    /// Seconds to keep starting calls (per step with --ramp); calls in progress then finish.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Raise concurrency through --steps until the p95 latency passes --slo or the audio
    /// degrades; report the highest that held.
    #[arg(long, conflicts_with = "soak")]
    pub ramp: bool,
    /// The concurrency steps of --ramp.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,6,8,12,16,24,32")]
    pub steps: Vec<usize>,
    /// The p95 voice-to-voice latency a --ramp step must stay within, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub slo: u64,
    /// Run --calls slots for this many minutes, sampling the engine's memory and open files.
    #[arg(long)]
    pub soak: Option<u64>,
    /// Directory of the caller's WAV files.
    #[arg(long, default_value = "fixtures/conversations")]
    pub audio: PathBuf,
    /// The conversation: NAME-1.wav, NAME-2.wav, … in --audio.
    #[arg(long, default_value = "booking-joe")]
    pub conversation: String,
    /// How long the caller waits after the agent stops talking before speaking again.
    #[arg(long, default_value_t = 800)]
    pub pause_ms: u64,
    /// The engine's process id, to sample its CPU and memory (automatic with --spawn).
    #[arg(long)]
    pub pid: Option<u32>,
    /// With --spawn: directory of the model files.
    #[arg(long, env = "CALLGENIUS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The bearer token the engine's `/metrics` requires, if it requires one.
    #[arg(long, env = "CALLGENIUS_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The engine's base URL.
    #[arg(long, env = "CALLGENIUS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token of the agent's business (from /api/auth/login).
    #[arg(long, env = "CALLGENIUS_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The agent to call.
    #[arg(long)]
    pub agent: i64,
    /// The caller's audio: a WAV file (any rate; PCM, float, µ-law or A-law). Repeat it for a
    /// conversation: the first plays as the call connects, each further one once the agent has
    /// answered and been quiet for --pause-ms.
    #[arg(long, required = true)]
    pub audio: Vec<PathBuf>,
    /// The caller's number the call presents (E.164); bookings default to it.
    #[arg(long)]
    pub from: Option<String>,
    /// How long the caller waits after the agent stops talking before the next --audio.
    #[arg(long, default_value_t = 800)]
    pub pause_ms: u64,
    /// Write what the agent said (8 kHz, as heard on the line) to this WAV file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stream the caller's audio this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f32,
    /// Print a machine-readable JSON report instead of the turns.
    #[arg(long)]
    pub json: bool,
    /// Which carrier's media-stream protocol to speak.
    #[arg(long, value_enum, default_value_t)]
    pub carrier: crate::simulator::SimCarrier,
}

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// The WAV file to transcribe.
    pub file: PathBuf,
    /// Directory of the model files (see scripts/fetch-models).
    #[arg(long, env = "CALLGENIUS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SpeakArgs {
    /// The text to speak.
    pub text: String,
    /// Where to write the WAV (16-bit PCM at the voice's rate).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Voice id (a directory under models/voices).
    #[arg(long, default_value = "joe")]
    pub voice: String,
    /// Directory of the model files (see scripts/fetch-models).
    #[arg(long, env = "CALLGENIUS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Optional TOML configuration file.
    #[arg(long, env = "CALLGENIUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the chosen address is logged).
    #[arg(long, env = "CALLGENIUS_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Directory for the SQLite database (and later recordings and documents).
    #[arg(long, env = "CALLGENIUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` switches to PostgreSQL; `sqlite:…` names another SQLite file.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Externally reachable base URL, used in signed URLs and carrier set-up.
    #[arg(long, env = "CALLGENIUS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Requests a minute allowed per API token.
    #[arg(long, env = "CALLGENIUS_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Login and register attempts a minute allowed per client address.
    #[arg(long, env = "CALLGENIUS_AUTH_RATE_LIMIT_PER_MINUTE")]
    pub auth_rate_limit_per_minute: Option<u32>,
    /// Requests a minute allowed per token to the webhook management routes.
    #[arg(long, env = "CALLGENIUS_WEBHOOK_RATE_LIMIT_PER_MINUTE")]
    pub webhook_rate_limit_per_minute: Option<u32>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CALLGENIUS_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest knowledge document accepted for upload, in bytes (default 20 MiB).
    #[arg(long, env = "CALLGENIUS_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Directory of the model files (see scripts/fetch-models).
    #[arg(long, env = "CALLGENIUS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Secret that signs stream tokens (the same on every node; random per process if unset).
    #[arg(long, env = "CALLGENIUS_STREAM_SECRET", hide_env_values = true)]
    pub stream_secret: Option<String>,
    /// Twilio auth token; when set, the voice webhook checks X-Twilio-Signature.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// Vonage signature secret; when set, the answer webhook checks the signed JWT.
    #[arg(long, env = "VONAGE_SIGNATURE_SECRET", hide_env_values = true)]
    pub vonage_signature_secret: Option<String>,
    /// Base URL of an OpenAI-compatible chat-completions API (e.g. http://127.0.0.1:8000/v1);
    /// when set, agents use it unless they choose the embedded responder.
    #[arg(long, env = "CALLGENIUS_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model name sent to that API.
    #[arg(long, env = "CALLGENIUS_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// The API key sent as a bearer token (never logged or returned by the API).
    #[arg(long, env = "CALLGENIUS_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Twilio account SID: with the auth token, lets agents transfer Twilio calls.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Stripe API secret key, for `billing.provider = "stripe"`.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe webhook signing secret: `Stripe-Signature` on the billing webhook is checked with it.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Take client addresses from the last X-Forwarded-For entry (only behind one trusted proxy).
    #[arg(long, env = "CALLGENIUS_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Telnyx account public key (base64 Ed25519); Telnyx's webhooks are closed without it.
    #[arg(long, env = "TELNYX_PUBLIC_KEY")]
    pub telnyx_public_key: Option<String>,
    /// Plivo auth token; Plivo's webhooks are closed without it.
    #[arg(long, env = "PLIVO_AUTH_TOKEN", hide_env_values = true)]
    pub plivo_auth_token: Option<String>,
    /// Development only: open the webhooks of carriers without credentials, unverified.
    #[arg(long, env = "CALLGENIUS_INSECURE_CARRIER_WEBHOOKS")]
    pub insecure_carrier_webhooks: bool,
    /// Answer-webhook requests a minute allowed per client address.
    #[arg(long, env = "CALLGENIUS_CARRIER_WEBHOOK_RATE_LIMIT_PER_MINUTE")]
    pub carrier_webhook_rate_limit_per_minute: Option<u32>,
    /// Bearer token that `GET /metrics` requires (open without one).
    #[arg(long, env = "CALLGENIUS_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Let webhook endpoints point at loopback, private and other internal addresses.
    #[arg(long, env = "CALLGENIUS_WEBHOOKS_ALLOW_PRIVATE_TARGETS")]
    pub webhooks_allow_private_targets: bool,
}

impl ServeArgs {
    pub fn into_overrides(self) -> Overrides {
        Overrides {
            config_file: self.config,
            addr: self.addr,
            data_dir: self.data_dir,
            database_url: self.database_url.map(SecretString::from),
            public_url: self.public_url,
            requests_per_minute: self.rate_limit_per_minute,
            auth_requests_per_minute: self.auth_rate_limit_per_minute,
            webhook_requests_per_minute: self.webhook_rate_limit_per_minute,
            max_body_bytes: self.max_body_bytes,
            max_upload_bytes: self.max_upload_bytes,
            // An absent flag leaves the config file's setting in force.
            trust_forwarded_for: self.trust_forwarded_for.then_some(true),
            models_dir: self.models_dir,
            stream_secret: self.stream_secret.map(SecretString::from),
            twilio_auth_token: self.twilio_auth_token.map(SecretString::from),
            vonage_signature_secret: self.vonage_signature_secret.map(SecretString::from),
            llm_base_url: self.llm_base_url,
            llm_model: self.llm_model,
            llm_api_key: self.llm_api_key.map(SecretString::from),
            twilio_account_sid: self.twilio_account_sid,
            stripe_secret_key: self.stripe_secret_key.map(SecretString::from),
            stripe_webhook_secret: self.stripe_webhook_secret.map(SecretString::from),
            telnyx_public_key: self.telnyx_public_key,
            plivo_auth_token: self.plivo_auth_token.map(SecretString::from),
            insecure_carrier_webhooks: self.insecure_carrier_webhooks.then_some(true),
            carrier_webhook_requests_per_minute: self.carrier_webhook_rate_limit_per_minute,
            metrics_token: self.metrics_token.map(SecretString::from),
            webhooks_allow_private_targets: self.webhooks_allow_private_targets.then_some(true),
        }
    }
}
