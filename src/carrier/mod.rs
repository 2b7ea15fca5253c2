//! Carriers: the telephone networks the engine buys numbers from and places calls through.
//!
//! [`Carrier`] is what the numbers API and the dialler need of one: search its inventory,
//! provision and release numbers, place an outbound call whose audio connects to the engine's
//! media websocket, hang up, and redirect a live call. Progress of a placed call (ringing,
//! answered, busy, …) comes back as [`CallProgress`]: Twilio through its status callbacks, the
//! sandbox directly.
//!
//! - [`numbers`]: numbering-plan validation and the inventory of valid numbers (libphonenumber).
//! - [`twilio`]: Twilio's REST API.
//! - [`sandbox`]: the embedded carrier: instant numbers, outbound calls to simulated callees on
//!   this machine.

pub mod numbers;
pub mod sandbox;
pub mod twilio;

use futures_util::future::BoxFuture;

/// The countries the engine sells numbers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Country {
    Au,
    Us,
    Gb,
    Ca,
    Nz,
    Ie,
}

impl Country {
    pub const ALL: [Country; 6] = [
        Country::Au,
        Country::Us,
        Country::Gb,
        Country::Ca,
        Country::Nz,
        Country::Ie,
    ];

    /// The ISO 3166 code: `AU`, `US`, `GB`, `CA`, `NZ`, `IE`.
    pub fn code(self) -> &'static str {
        match self {
            Country::Au => "AU",
            Country::Us => "US",
            Country::Gb => "GB",
            Country::Ca => "CA",
            Country::Nz => "NZ",
            Country::Ie => "IE",
        }
    }

    /// The international calling code: 61, 1, 44, 1, 64, 353.
    pub fn calling_code(self) -> u16 {
        match self {
            Country::Au => 61,
            Country::Us | Country::Ca => 1,
            Country::Gb => 44,
            Country::Nz => 64,
            Country::Ie => 353,
        }
    }

    /// From an ISO code, any case.
    pub fn parse(raw: &str) -> Option<Country> {
        Country::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(raw.trim()))
    }
}

/// The kinds of number sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberKind {
    Local,
    Mobile,
    TollFree,
}

impl NumberKind {
    /// `local`, `mobile`, `tollfree`.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::Local => "local",
            NumberKind::Mobile => "mobile",
            NumberKind::TollFree => "tollfree",
        }
    }

    pub fn parse(raw: &str) -> Option<NumberKind> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "local" => Some(NumberKind::Local),
            "mobile" => Some(NumberKind::Mobile),
            "tollfree" => Some(NumberKind::TollFree),
            _ => None,
        }
    }
}

/// An inventory search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberQuery {
    pub country: Country,
    pub kind: NumberKind,
    /// Digits of an area code (national, without the trunk prefix: `2` for Sydney, `415` for
    /// San Francisco, `20` for London).
    pub area_code: Option<String>,
    /// How many numbers at most.
    pub limit: usize,
}

/// A number the carrier offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableNumber {
    /// E.164.
    pub phone_number: String,
    /// The national format (`(02) 5550 1234`).
    pub friendly_name: String,
    pub country: Country,
    pub kind: NumberKind,
}

/// A number provisioned at the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The carrier's id for it (Twilio's `PN…` sid), needed to release it.
    pub carrier_sid: String,
}

/// An outbound call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The engine's call record.
    pub call_id: i64,
    /// E.164 numbers.
    pub to: String,
    pub from: String,
    /// The media websocket the answered call streams to (`wss://…/media/twilio`) and the stream
    /// token that admits it (sent as the stream's `token` custom parameter).
    pub stream_url: String,
    pub token: String,
    /// Where the carrier reports progress (`https://…/carrier/twilio/status?call_id=N`).
    pub status_callback: String,
    /// How long to ring before giving up as no answer.
    pub ring_timeout_secs: u32,
    /// Ask the carrier to tell a person from an answering machine.
    pub detect_machine: bool,
}

/// A call the carrier accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The carrier's id for the call (Twilio's `CA…` sid).
    pub carrier_call_id: String,
}

/// How a placed call is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallProgress {
    Initiated,
    Ringing,
    /// Picked up; `machine` when an answering machine answered.
    Answered {
        machine: bool,
    },
    /// Ended after being answered.
    Completed {
        duration_secs: u32,
    },
    Busy,
    NoAnswer,
    /// The carrier could not connect it (or it was cancelled before answer).
    Failed,
}

impl CallProgress {
    /// Whether the call is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallProgress::Completed { .. }
                | CallProgress::Busy
                | CallProgress::NoAnswer
                | CallProgress::Failed
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The carrier answered with an error.
    #[error("the carrier refused: {status} {message}")]
    Refused { status: u16, message: String },
    #[error("the carrier could not be reached: {0}")]
    Unreachable(String),
    #[error("the carrier is not configured: {0}")]
    NotConfigured(&'static str),
    /// Our request was wrong before it was sent (an invalid number, say).
    #[error("{0}")]
    Invalid(String),
}

/// The carrier the configuration names: the sandbox (its dial log in the data directory), or
/// Twilio with the configured account.
pub fn from_config(
    config: &crate::config::Config,
    db: &crate::store::Db,
    speech: &std::sync::Arc<crate::models::SpeechModels>,
    http: &reqwest::Client,
) -> std::sync::Arc<dyn Carrier> {
    use secrecy::ExposeSecret;
    match (
        config.carrier,
        &config.twilio_account_sid,
        &config.twilio_auth_token,
    ) {
        (crate::config::CarrierChoice::Twilio, Some(sid), Some(token)) => {
            std::sync::Arc::new(twilio::TwilioCarrier::new(
                http.clone(),
                &config.twilio_api_url,
                sid,
                secrecy::SecretString::from(token.expose_secret().to_owned()),
            ))
        }
        // Validation refuses Twilio without its credentials.
        _ => std::sync::Arc::new(sandbox::SandboxCarrier(std::sync::Arc::new(
            sandbox::Sandbox::new(
                config.sandbox.clone(),
                db.clone(),
                std::sync::Arc::clone(speech),
                config.data_dir.join("sandbox-dials.log"),
            ),
        ))),
    }
}

/// One carrier.
pub trait Carrier: Send + Sync {
    /// `twilio` or `sandbox`.
    fn name(&self) -> &'static str;

    /// Numbers on offer; never one that is already provisioned through this engine (the caller
    /// filters those out as well).
    fn available(
        &self,
        query: NumberQuery,
    ) -> BoxFuture<'_, Result<Vec<AvailableNumber>, CarrierError>>;

    /// Buys `phone_number` (E.164) and points its inbound calls at `voice_url`.
    fn provision<'a>(
        &'a self,
        phone_number: &'a str,
        voice_url: &'a str,
    ) -> BoxFuture<'a, Result<Provisioned, CarrierError>>;

    /// Releases a provisioned number.
    fn release<'a>(&'a self, carrier_sid: &'a str) -> BoxFuture<'a, Result<(), CarrierError>>;

    /// Places an outbound call; progress arrives later as [`CallProgress`].
    fn dial(&self, dial: Dial) -> BoxFuture<'_, Result<Placed, CarrierError>>;

    /// Ends a call (ringing or answered).
    fn hang_up<'a>(&'a self, carrier_call_id: &'a str) -> BoxFuture<'a, Result<(), CarrierError>>;

    /// Redirects a live call to dial `number` (a transfer).
    fn transfer<'a>(
        &'a self,
        carrier_call_id: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>>;
}
