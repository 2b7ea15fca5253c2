//! What every carrier's media stream has in common: events in, audio/mark/clear out, and the
//! line format of the audio. Each carrier module turns its own wire messages into these.

use axum::extract::ws::Message;

/// How audio is coded on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Mulaw,
    Alaw,
    L16BigEndian,
    L16LittleEndian,
    /// One Opus packet a message, decoded and encoded at 16 kHz mono (see [`super::codec`]).
    Opus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineFormat {
    pub codec: Codec,
    pub sample_rate: u32,
}

impl LineFormat {
    /// G.711 µ-law at 8 kHz: what Twilio and most phone lines carry.
    pub const MULAW_8K: LineFormat = LineFormat {
        codec: Codec::Mulaw,
        sample_rate: 8_000,
    };
}

/// A carrier message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    Start(StreamStart),
    /// The caller's audio, in the stream's line format.
    Media(Vec<u8>),
    Dtmf(char),
    /// Playback reached the mark of this name.
    Mark(String),
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub stream_id: String,
    pub carrier_call_id: Option<String>,
    /// The stream token, when the carrier passes it in the start message.
    pub token: Option<String>,
    pub format: LineFormat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("not valid JSON")]
    Json,
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("{0} is missing a field")]
    Missing(&'static str),
    #[error("media payload is not base64")]
    Base64,
    #[error("unsupported media format {0:?}")]
    Format(String),
    #[error("binary frame on a JSON protocol")]
    Binary,
}

/// A number that carriers send as a JSON number or as a string.
pub fn number(value: Option<&serde_json::Value>) -> Option<u32> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A keypad digit, sent as a string (`"5"`) or a number (`5`).
pub fn digit(value: Option<serde_json::Value>) -> Option<char> {
    match value? {
        serde_json::Value::String(s) => s.chars().next(),
        serde_json::Value::Number(n) => n.to_string().chars().next(),
        _ => None,
    }
}

/// Reads a carrier's messages. Stateful: a carrier whose frames may arrive out of order
/// reorders them here.
pub trait Inbound: Send {
    /// The events in `message`, in order (none while reordering holds a frame back).
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError>;
}

/// Writes a carrier's messages.
pub trait Outbound: Send + Sync {
    fn media(&self, stream_id: &str, payload: &[u8]) -> Message;
    /// The carrier's mark message; `None` for carriers without marks, whose playback the engine
    /// then tracks by time.
    fn mark(&self, stream_id: &str, name: &str) -> Option<Message>;
    fn clear(&self, stream_id: &str) -> Message;
}
