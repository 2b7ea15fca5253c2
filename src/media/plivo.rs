//! Plivo audio streams, bidirectional (`<Stream bidirectional="true">`): JSON text frames.
//!
//! In: `start` {start: {streamId, callId, mediaFormat {encoding, sampleRate}}, extra_headers};
//! `media` {media: {track, timestamp, chunk, payload}} with base64 audio (`audio/x-mulaw` at
//! 8 kHz, or `audio/x-l16`, 16-bit little-endian, at 8 or 16 kHz), 20 ms a frame; `dtmf`
//! {dtmf: {digit}}; `playedStream` {name} when playback reaches a checkpoint; `clearedAudio`
//! after a `clearAudio`; `stop`. Out: `playAudio` {media: {contentType, sampleRate, payload}},
//! `checkpoint` {streamId, name}, `clearAudio` {streamId}.
//!
//! The stream token travels in the stream URL (`/media/plivo?token=…`); a `token` in the start
//! message's `extra_headers` is accepted too.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Message;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::{self, Codec, Event, LineFormat, ProtocolError, StreamStart, digit, number};

#[derive(Deserialize)]
struct Envelope {
    event: String,
    start: Option<StartBody>,
    media: Option<MediaBody>,
    dtmf: Option<DtmfBody>,
    name: Option<String>,
    #[serde(rename = "streamId")]
    stream_id: Option<String>,
    extra_headers: Option<Value>,
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(rename = "streamId")]
    stream_id: Option<String>,
    #[serde(rename = "callId")]
    call_id: Option<String>,
    #[serde(rename = "mediaFormat")]
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: Option<String>,
    #[serde(rename = "sampleRate")]
    sample_rate: Option<Value>,
}

#[derive(Deserialize)]
struct MediaBody {
    track: Option<String>,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct DtmfBody {
    digit: Option<Value>,
}

/// Plivo's inbound side. It shares the stream's line format with [`PlivoOut`], which has to
/// name the content type in every `playAudio`.
#[derive(Default)]
pub struct Plivo {
    format: Arc<OnceLock<LineFormat>>,
}

/// Plivo's outbound side.
pub struct PlivoOut {
    format: Arc<OnceLock<LineFormat>>,
}

/// A reader and a writer for one Plivo stream.
pub fn sides() -> (Plivo, PlivoOut) {
    let format = Arc::new(OnceLock::new());
    (
        Plivo {
            format: Arc::clone(&format),
        },
        PlivoOut { format },
    )
}

/// The line format Plivo names `encoding` at `rate`.
fn line_format(encoding: &str, rate: u32) -> Result<LineFormat, ProtocolError> {
    let codec = match encoding.split(';').next().unwrap_or_default().trim() {
        "audio/x-mulaw" | "audio/mulaw" if rate == 8_000 => Codec::Mulaw,
        "audio/x-l16" | "audio/l16" if rate == 8_000 || rate == 16_000 => Codec::L16LittleEndian,
        _ => return Err(ProtocolError::Format(format!("{encoding} at {rate} Hz"))),
    };
    Ok(LineFormat {
        codec,
        sample_rate: rate,
    })
}

/// The content type Plivo expects for audio in `format`.
fn content_type(format: LineFormat) -> &'static str {
    match format.codec {
        Codec::L16LittleEndian | Codec::L16BigEndian => "audio/x-l16",
        _ => "audio/x-mulaw",
    }
}

/// The `token` among the start message's extra headers: an object, a JSON object in a string,
/// or `key=value` pairs separated by `;` or `,`.
fn header_token(extra: Option<&Value>) -> Option<String> {
    match extra? {
        Value::Object(map) => map.get("token")?.as_str().map(str::to_owned),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => header_token(Some(&value)),
            _ => text
                .split([';', ','])
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim() == "token")
                .map(|(_, value)| value.trim().to_owned()),
        },
        _ => None,
    }
}

impl Plivo {
    fn parse_text(&mut self, text: &str) -> Result<Vec<Event>, ProtocolError> {
        let envelope: Envelope = serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
        let event = match envelope.event.as_str() {
            "start" => {
                let start = envelope.start.ok_or(ProtocolError::Missing("start"))?;
                let stream_id = start
                    .stream_id
                    .or(envelope.stream_id)
                    .ok_or(ProtocolError::Missing("start"))?;
                let format = match start.media_format {
                    Some(format) => line_format(
                        format.encoding.as_deref().unwrap_or("audio/x-mulaw"),
                        number(format.sample_rate.as_ref()).unwrap_or(8_000),
                    )?,
                    None => LineFormat::MULAW_8K,
                };
                // The first start fixes the format; a repeated start cannot change it.
                let format = *self.format.get_or_init(|| format);
                Event::Start(StreamStart {
                    stream_id,
                    carrier_call_id: start.call_id,
                    token: header_token(envelope.extra_headers.as_ref()),
                    format,
                })
            }
            "media" => {
                let media = envelope.media.ok_or(ProtocolError::Missing("media"))?;
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(Vec::new());
                }
                let payload = media.payload.ok_or(ProtocolError::Missing("media"))?;
                let bytes = STANDARD
                    .decode(payload)
                    .map_err(|_| ProtocolError::Base64)?;
                Event::Media(bytes)
            }
            "dtmf" => {
                let digit = digit(envelope.dtmf.and_then(|d| d.digit));
                Event::Dtmf(digit.ok_or(ProtocolError::Missing("dtmf"))?)
            }
            "playedStream" => Event::Mark(envelope.name.ok_or(ProtocolError::Missing("name"))?),
            // The acknowledgement of a clearAudio: dropped checkpoints are never reported.
            "clearedAudio" => return Ok(Vec::new()),
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

impl protocol::Inbound for Plivo {
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError> {
        match message {
            Message::Text(text) => self.parse_text(text),
            Message::Binary(_) => Err(ProtocolError::Binary),
            _ => Ok(Vec::new()),
        }
    }
}

impl protocol::Outbound for PlivoOut {
    fn media(&self, _stream_id: &str, payload: &[u8]) -> Message {
        let format = self.format.get().copied().unwrap_or(LineFormat::MULAW_8K);
        let message = json!({
            "event": "playAudio",
            "media": {
                "contentType": content_type(format),
                "sampleRate": format.sample_rate,
                "payload": STANDARD.encode(payload),
            }
        });
        Message::Text(message.to_string().into())
    }

    fn mark(&self, stream_id: &str, name: &str) -> Option<Message> {
        let message = json!({ "event": "checkpoint", "streamId": stream_id, "name": name });
        Some(Message::Text(message.to_string().into()))
    }

    fn clear(&self, stream_id: &str) -> Message {
        let message = json!({ "event": "clearAudio", "streamId": stream_id });
        Message::Text(message.to_string().into())
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
    fn parses_a_plivo_session() {
        let (mut inbound, outbound) = sides();
        let start = r#"{"sequenceNumber":0,"event":"start","start":{"callId":"c-1","streamId":"s-1","accountId":"MA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-l16","sampleRate":16000}},"extra_headers":"{\"token\":\"v1.t\"}"}"#;
        let events = inbound.parse(&text(start)).unwrap();
        assert_eq!(
            events,
            [Event::Start(StreamStart {
                stream_id: "s-1".into(),
                carrier_call_id: Some("c-1".into()),
                token: Some("v1.t".into()),
                format: LineFormat {
                    codec: Codec::L16LittleEndian,
                    sample_rate: 16_000
                },
            })]
        );
        let media = r#"{"sequenceNumber":1,"streamId":"s-1","event":"media","media":{"track":"inbound","timestamp":"20","chunk":1,"payload":"AQI="}}"#;
        assert_eq!(
            inbound.parse(&text(media)).unwrap(),
            [Event::Media(vec![1, 2])]
        );
        let dtmf = r#"{"event":"dtmf","streamId":"s-1","dtmf":{"digit":"9","track":"inbound"}}"#;
        assert_eq!(inbound.parse(&text(dtmf)).unwrap(), [Event::Dtmf('9')]);
        let played = r#"{"event":"playedStream","streamId":"s-1","name":"turn-1-clause-1"}"#;
        assert_eq!(
            inbound.parse(&text(played)).unwrap(),
            [Event::Mark("turn-1-clause-1".into())]
        );
        let cleared = r#"{"event":"clearedAudio","streamId":"s-1"}"#;
        assert!(inbound.parse(&text(cleared)).unwrap().is_empty());
        assert_eq!(
            inbound.parse(&text(r#"{"event":"stop"}"#)).unwrap(),
            [Event::Stop]
        );

        // Replies name the stream's format.
        let Message::Text(play) = outbound.media("s-1", &[1, 2]) else {
            panic!()
        };
        let play: Value = serde_json::from_str(&play).unwrap();
        assert_eq!(play["event"], "playAudio");
        assert_eq!(play["media"]["contentType"], "audio/x-l16");
        assert_eq!(play["media"]["sampleRate"], 16_000);
        assert_eq!(play["media"]["payload"], "AQI=");
        let Some(Message::Text(checkpoint)) = outbound.mark("s-1", "m-1") else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&checkpoint).unwrap(),
            json!({"event": "checkpoint", "streamId": "s-1", "name": "m-1"})
        );
        let Message::Text(clear) = outbound.clear("s-1") else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&clear).unwrap(),
            json!({"event": "clearAudio", "streamId": "s-1"})
        );
    }

    #[test]
    fn defaults_to_mulaw_and_refuses_what_it_cannot_play() {
        let (mut inbound, outbound) = sides();
        let start = r#"{"event":"start","start":{"streamId":"s","callId":"c"}}"#;
        let [Event::Start(start)] = &inbound.parse(&text(start)).unwrap()[..] else {
            panic!()
        };
        assert_eq!(start.format, LineFormat::MULAW_8K);
        assert_eq!(start.token, None);
        let Message::Text(play) = outbound.media("s", &[0xFF]) else {
            panic!()
        };
        assert!(play.contains("audio/x-mulaw"));

        let (mut inbound, _) = sides();
        let opus = r#"{"event":"start","start":{"streamId":"s","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":16000}}}"#;
        assert!(matches!(
            inbound.parse(&text(opus)),
            Err(ProtocolError::Format(_))
        ));
        assert_eq!(
            inbound.parse(&text(r#"{"event":"media","media":{"payload":"%%"}}"#)),
            Err(ProtocolError::Base64)
        );
        assert!(matches!(
            inbound.parse(&text(r#"{"event":"wat"}"#)),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert_eq!(
            inbound.parse(&Message::Binary(vec![1].into())),
            Err(ProtocolError::Binary)
        );
        // Outbound-track audio (a stream of both tracks) is not the caller.
        let echo = r#"{"event":"media","media":{"track":"outbound","payload":"AQI="}}"#;
        assert!(inbound.parse(&text(echo)).unwrap().is_empty());
    }

    #[test]
    fn finds_the_token_in_extra_headers_of_any_shape() {
        assert_eq!(header_token(Some(&json!({"token": "a"}))), Some("a".into()));
        assert_eq!(
            header_token(Some(&json!("{\"token\":\"b\"}"))),
            Some("b".into())
        );
        assert_eq!(header_token(Some(&json!("x=1;token=c"))), Some("c".into()));
        assert_eq!(header_token(Some(&json!("{}"))), None);
        assert_eq!(header_token(None), None);
    }
}
