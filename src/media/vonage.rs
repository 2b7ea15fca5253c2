//! Vonage voice websockets: the first message is JSON text, `websocket:connected` with the
//! audio's content type (`audio/l16;rate=16000` or `rate=8000`); after it, audio travels as
//! binary frames of 16-bit little-endian PCM both ways (640 bytes per 20 ms at 16 kHz). Keypad
//! digits arrive as `websocket:dtmf` text. `{"action":"clear"}` drops queued playback. Vonage has
//! no marks: the engine tracks playback by time. The stream token travels in the URL.

use axum::extract::ws::Message;
use serde::Deserialize;
use serde_json::json;

use super::protocol::{self, Codec, Event, LineFormat, ProtocolError, StreamStart};

/// Vonage's inbound side.
#[derive(Default)]
pub struct Vonage;

/// Vonage's outbound side.
pub struct VonageOut;

#[derive(Deserialize)]
struct Envelope {
    event: Option<String>,
    #[serde(rename = "content-type")]
    content_type: Option<String>,
    digit: Option<serde_json::Value>,
    uuid: Option<String>,
}

/// The line format of a content type such as `audio/l16;rate=16000`.
fn line_format(content_type: Option<&str>) -> Result<LineFormat, ProtocolError> {
    let content_type = content_type
        .unwrap_or("audio/l16;rate=16000")
        .to_ascii_lowercase();
    let mut parts = content_type.split(';').map(str::trim);
    if parts.next() != Some("audio/l16") {
        return Err(ProtocolError::Format(content_type));
    }
    let rate = parts
        .find_map(|p| p.strip_prefix("rate="))
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(16_000);
    match rate {
        8_000 | 16_000 => Ok(LineFormat {
            codec: Codec::L16LittleEndian,
            sample_rate: rate,
        }),
        _ => Err(ProtocolError::Format(content_type)),
    }
}

impl protocol::Inbound for Vonage {
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError> {
        match message {
            Message::Binary(bytes) => Ok(vec![Event::Media(bytes.to_vec())]),
            Message::Text(text) => {
                let envelope: Envelope =
                    serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
                match envelope.event.as_deref() {
                    Some("websocket:connected") => Ok(vec![Event::Start(StreamStart {
                        stream_id: envelope.uuid.clone().unwrap_or_else(|| "vonage".into()),
                        carrier_call_id: envelope.uuid,
                        token: None,
                        format: line_format(envelope.content_type.as_deref())?,
                    })]),
                    Some("websocket:dtmf") => protocol::digit(envelope.digit)
                        .map(|d| vec![Event::Dtmf(d)])
                        .ok_or(ProtocolError::Missing("dtmf")),
                    Some(other) => Err(ProtocolError::UnknownEvent(
                        other.chars().take(32).collect(),
                    )),
                    None => Err(ProtocolError::Missing("event")),
                }
            }
            _ => Ok(Vec::new()),
        }
    }
}

impl protocol::Outbound for VonageOut {
    fn media(&self, _stream_id: &str, payload: &[u8]) -> Message {
        Message::Binary(payload.to_vec().into())
    }

    fn mark(&self, _stream_id: &str, _name: &str) -> Option<Message> {
        None
    }

    fn clear(&self, _stream_id: &str) -> Message {
        Message::Text(json!({ "action": "clear" }).to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use protocol::Inbound as _;
    use protocol::Outbound as _;

    use super::*;

    #[test]
    fn parses_the_connected_message_audio_and_digits() {
        let connected = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","uuid":"abc-123","token":"x"}"#;
        let events = Vonage.parse(&Message::Text(connected.into())).unwrap();
        let [Event::Start(start)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(
            start.format,
            LineFormat {
                codec: Codec::L16LittleEndian,
                sample_rate: 16_000
            }
        );
        assert_eq!(start.carrier_call_id.as_deref(), Some("abc-123"));
        let eight = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}"#;
        let [Event::Start(start)] = &Vonage.parse(&Message::Text(eight.into())).unwrap()[..] else {
            panic!()
        };
        assert_eq!(start.format.sample_rate, 8_000);
        assert_eq!(
            Vonage.parse(&Message::Binary(vec![1, 2].into())).unwrap(),
            [Event::Media(vec![1, 2])]
        );
        let dtmf = r#"{"event":"websocket:dtmf","digit":"7","duration":260}"#;
        assert_eq!(
            Vonage.parse(&Message::Text(dtmf.into())).unwrap(),
            [Event::Dtmf('7')]
        );
        let opus = r#"{"event":"websocket:connected","content-type":"audio/opus"}"#;
        assert!(matches!(
            Vonage.parse(&Message::Text(opus.into())),
            Err(ProtocolError::Format(_))
        ));
        assert_eq!(
            Vonage.parse(&Message::Text("nope".into())),
            Err(ProtocolError::Json)
        );
    }

    #[test]
    fn audio_goes_out_binary_and_clear_as_an_action() {
        assert_eq!(
            VonageOut.media("s", &[1, 2, 3]),
            Message::Binary(vec![1, 2, 3].into())
        );
        assert!(VonageOut.mark("s", "m").is_none());
        let Message::Text(clear) = VonageOut.clear("s") else {
            panic!()
        };
        assert_eq!(clear.as_str(), r#"{"action":"clear"}"#);
    }
}
