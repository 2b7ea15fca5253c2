//! `/media/web`: the engine's own media protocol, for a browser or any WebRTC-style client
//! (a softphone, a gateway) that speaks to an agent without a carrier. Audio travels as binary
//! websocket messages, control as small JSON text messages with a `type`.
//!
//! Client to engine:
//! - `{"type":"start","encoding":"opus"|"pcm16","sample_rate":16000}` first (the stream token
//!   goes in the URL, `/media/web?token=…`, or as `"token"` here). `opus`: one Opus packet a
//!   binary message, mono or stereo, any frame size Opus allows (20 ms is best), encoded at any
//!   rate; the engine decodes it at 16 kHz. `pcm16`: 16-bit little-endian mono PCM at 8000 or
//!   16000 Hz (`sample_rate`, default 16000), 20 ms a message is best.
//! - binary messages: the caller's audio as above.
//! - `{"type":"dtmf","digit":"5"}`: a keypad press.
//! - `{"type":"mark","name":"…"}`: playback reached the engine's mark of that name.
//! - `{"type":"stop"}`: hang up (closing the socket does too).
//!
//! Engine to client:
//! - binary messages: the agent's audio in the client's encoding, 20 ms each (Opus at 16 kHz
//!   mono, or PCM16 at the client's rate), paced about a second ahead of real time.
//! - `{"type":"mark","name":"…"}` after each clause: echo it when playback reaches it, so the
//!   transcript records what the caller heard.
//! - `{"type":"clear"}`: the caller interrupted; drop any audio queued for playback.

use axum::extract::ws::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use super::codec::OPUS_RATE;
use super::protocol::{self, Codec, Event, LineFormat, ProtocolError, StreamStart, digit};

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    encoding: Option<String>,
    sample_rate: Option<Value>,
    token: Option<String>,
    digit: Option<Value>,
    name: Option<String>,
}

/// The browser protocol, both directions.
pub struct Web;

/// The line format a client asks for.
fn line_format(encoding: Option<&str>, rate: Option<&Value>) -> Result<LineFormat, ProtocolError> {
    let rate = match rate {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|r| u32::try_from(r).ok())
                .ok_or_else(|| ProtocolError::Format(format!("sample_rate {value}")))?,
        ),
    };
    match encoding.unwrap_or("opus") {
        "opus" => Ok(LineFormat {
            codec: Codec::Opus,
            sample_rate: OPUS_RATE,
        }),
        "pcm16" => match rate.unwrap_or(16_000) {
            rate @ (8_000 | 16_000) => Ok(LineFormat {
                codec: Codec::L16LittleEndian,
                sample_rate: rate,
            }),
            other => Err(ProtocolError::Format(format!(
                "pcm16 at {other} Hz (8000 or 16000 needed)"
            ))),
        },
        other => Err(ProtocolError::Format(other.chars().take(32).collect())),
    }
}

impl protocol::Inbound for Web {
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError> {
        let text = match message {
            Message::Binary(bytes) => return Ok(vec![Event::Media(bytes.to_vec())]),
            Message::Text(text) => text,
            _ => return Ok(Vec::new()),
        };
        let envelope: Envelope = serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
        let event = match envelope.kind.as_str() {
            "start" => Event::Start(StreamStart {
                stream_id: "web".into(),
                carrier_call_id: None,
                token: envelope.token,
                format: line_format(envelope.encoding.as_deref(), envelope.sample_rate.as_ref())?,
            }),
            "dtmf" => Event::Dtmf(digit(envelope.digit).ok_or(ProtocolError::Missing("dtmf"))?),
            "mark" => Event::Mark(envelope.name.ok_or(ProtocolError::Missing("mark"))?),
            "stop" => Event::Stop,
            other => {
                return Err(ProtocolError::UnknownEvent(
                    other.chars().take(32).collect(),
                ));
            }
        };
        Ok(vec![event])
    }
}

impl protocol::Outbound for Web {
    fn media(&self, _stream_id: &str, payload: &[u8]) -> Message {
        Message::Binary(payload.to_vec().into())
    }

    fn mark(&self, _stream_id: &str, name: &str) -> Option<Message> {
        let message = json!({ "type": "mark", "name": name });
        Some(Message::Text(message.to_string().into()))
    }

    fn clear(&self, _stream_id: &str) -> Message {
        Message::Text(json!({ "type": "clear" }).to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use protocol::Inbound as _;
    use protocol::Outbound as _;

    use super::*;

    fn text(json: &str) -> Message {
        Message::Text(json.into())
    }

    #[test]
    fn parses_the_control_messages() {
        let [Event::Start(start)] = &Web
            .parse(&text(
                r#"{"type":"start","encoding":"opus","token":"v1.x"}"#,
            ))
            .unwrap()[..]
        else {
            panic!()
        };
        assert_eq!(start.format.codec, Codec::Opus);
        assert_eq!(start.format.sample_rate, 16_000);
        assert_eq!(start.token.as_deref(), Some("v1.x"));
        let [Event::Start(start)] = &Web
            .parse(&text(
                r#"{"type":"start","encoding":"pcm16","sample_rate":8000}"#,
            ))
            .unwrap()[..]
        else {
            panic!()
        };
        assert_eq!(
            start.format,
            LineFormat {
                codec: Codec::L16LittleEndian,
                sample_rate: 8_000
            }
        );
        assert_eq!(
            Web.parse(&text(r#"{"type":"dtmf","digit":3}"#)).unwrap(),
            [Event::Dtmf('3')]
        );
        assert_eq!(
            Web.parse(&text(r#"{"type":"mark","name":"m"}"#)).unwrap(),
            [Event::Mark("m".into())]
        );
        assert_eq!(
            Web.parse(&text(r#"{"type":"stop"}"#)).unwrap(),
            [Event::Stop]
        );
        assert_eq!(
            Web.parse(&Message::Binary(vec![9, 9].into())).unwrap(),
            [Event::Media(vec![9, 9])]
        );
    }

    #[test]
    fn refuses_formats_it_cannot_run() {
        for bad in [
            r#"{"type":"start","encoding":"pcm16","sample_rate":44100}"#,
            r#"{"type":"start","encoding":"pcm16","sample_rate":"fast"}"#,
            r#"{"type":"start","encoding":"mp3"}"#,
        ] {
            assert!(
                matches!(Web.parse(&text(bad)), Err(ProtocolError::Format(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Web.parse(&text(r#"{"type":"hello"}"#)),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert_eq!(Web.parse(&text("{")), Err(ProtocolError::Json));
        assert_eq!(
            Web.parse(&text(r#"{"type":"dtmf"}"#)),
            Err(ProtocolError::Missing("dtmf"))
        );
    }

    #[test]
    fn writes_audio_binary_and_control_as_json() {
        assert_eq!(
            Web.media("web", &[1, 2]),
            Message::Binary(vec![1, 2].into())
        );
        let Some(Message::Text(mark)) = Web.mark("web", "turn-1-clause-1") else {
            panic!()
        };
        assert_eq!(mark.as_str(), r#"{"name":"turn-1-clause-1","type":"mark"}"#);
        let Message::Text(clear) = Web.clear("web") else {
            panic!()
        };
        assert_eq!(clear.as_str(), r#"{"type":"clear"}"#);
    }
}
