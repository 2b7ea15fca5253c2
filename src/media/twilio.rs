//! Twilio Media Streams, bidirectional (`<Connect><Stream>`): JSON text frames.
//!
//! In: `connected`; `start` (streamSid, callSid, customParameters, mediaFormat); `media`
//! (track, chunk, timestamp, payload: base64 µ-law 8 kHz, 20 ms); `dtmf` {digit}; `mark` {name}
//! (echoed when playback reaches it, or when `clear` drops it); `stop`. Numeric fields arrive
//! as strings. Out: `media` {payload}, `mark` {name}, `clear`.

use axum::extract::ws::Message;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use super::protocol::{self, Event, LineFormat, ProtocolError, StreamStart, number};

#[derive(Deserialize)]
struct Envelope {
    event: String,
    start: Option<StartBody>,
    media: Option<MediaBody>,
    dtmf: Option<DtmfBody>,
    mark: Option<MarkBody>,
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
    #[serde(rename = "callSid")]
    call_sid: Option<String>,
    #[serde(rename = "customParameters", default)]
    custom_parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "mediaFormat")]
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: Option<String>,
    #[serde(rename = "sampleRate")]
    sample_rate: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MediaBody {
    track: Option<String>,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct DtmfBody {
    digit: Option<String>,
}

#[derive(Deserialize)]
struct MarkBody {
    name: Option<String>,
}

/// Twilio Media Streams, both directions.
pub struct Twilio;

impl protocol::Inbound for Twilio {
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError> {
        match message {
            Message::Text(text) => parse(text).map(|event| vec![event]),
            Message::Binary(_) => Err(ProtocolError::Binary),
            _ => Ok(Vec::new()),
        }
    }
}

impl protocol::Outbound for Twilio {
    fn media(&self, stream_id: &str, payload: &[u8]) -> Message {
        Message::Text(media(stream_id, payload).into())
    }

    fn mark(&self, stream_id: &str, name: &str) -> Option<Message> {
        Some(Message::Text(mark(stream_id, name).into()))
    }

    fn clear(&self, stream_id: &str) -> Message {
        Message::Text(clear(stream_id).into())
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Event, ProtocolError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
    match envelope.event.as_str() {
        "connected" => Ok(Event::Connected),
        "start" => {
            let start = envelope.start.ok_or(ProtocolError::Missing("start"))?;
            let stream_sid = start
                .stream_sid
                .or(envelope.stream_sid)
                .ok_or(ProtocolError::Missing("start"))?;
            let token = start
                .custom_parameters
                .get("token")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            // Twilio streams µ-law at 8 kHz; anything else is not Twilio's protocol.
            if let Some(format) = start.media_format {
                let encoding = format.encoding.unwrap_or_else(|| "audio/x-mulaw".into());
                let rate = number(format.sample_rate.as_ref()).unwrap_or(8_000);
                if encoding != "audio/x-mulaw" || rate != 8_000 {
                    return Err(ProtocolError::Format(format!("{encoding} at {rate} Hz")));
                }
            }
            Ok(Event::Start(StreamStart {
                stream_id: stream_sid,
                carrier_call_id: start.call_sid,
                token,
                format: LineFormat::MULAW_8K,
            }))
        }
        "media" => {
            let media = envelope.media.ok_or(ProtocolError::Missing("media"))?;
            // Only the caller's track is the inbound audio (a bidirectional stream sends only it).
            if media
                .track
                .as_deref()
                .is_some_and(|t| t != "inbound" && t != "inbound_track")
            {
                return Ok(Event::Media(Vec::new()));
            }
            let payload = media.payload.ok_or(ProtocolError::Missing("media"))?;
            STANDARD
                .decode(payload)
                .map(Event::Media)
                .map_err(|_| ProtocolError::Base64)
        }
        "dtmf" => {
            let digit = envelope
                .dtmf
                .and_then(|d| d.digit)
                .and_then(|d| d.chars().next());
            digit.map(Event::Dtmf).ok_or(ProtocolError::Missing("dtmf"))
        }
        "mark" => envelope
            .mark
            .and_then(|m| m.name)
            .map(Event::Mark)
            .ok_or(ProtocolError::Missing("mark")),
        "stop" => Ok(Event::Stop),
        other => Err(ProtocolError::UnknownEvent(
            other.chars().take(32).collect(),
        )),
    }
}

/// Outbound `media` carrying µ-law bytes.
pub fn media(stream_sid: &str, ulaw: &[u8]) -> String {
    json!({ "event": "media", "streamSid": stream_sid, "media": { "payload": STANDARD.encode(ulaw) } }).to_string()
}

pub fn mark(stream_sid: &str, name: &str) -> String {
    json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } }).to_string()
}

pub fn clear(stream_sid: &str) -> String {
    json!({ "event": "clear", "streamSid": stream_sid }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_twilio_session() {
        assert_eq!(
            parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Ok(Event::Connected)
        );
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"token":"v1.abc.def","call_id":"7"}},"streamSid":"MZ1"}"#;
        assert_eq!(
            parse(start),
            Ok(Event::Start(StreamStart {
                stream_id: "MZ1".into(),
                carrier_call_id: Some("CA1".into()),
                token: Some("v1.abc.def".into()),
                format: LineFormat::MULAW_8K,
            }))
        );
        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/38A"},"streamSid":"MZ1"}"#;
        assert_eq!(parse(media), Ok(Event::Media(vec![0xFF, 0x7F, 0x00])));
        assert_eq!(
            parse(r#"{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"5"}}"#),
            Ok(Event::Dtmf('5'))
        );
        assert_eq!(
            parse(r#"{"event":"mark","mark":{"name":"clause-1"}}"#),
            Ok(Event::Mark("clause-1".into()))
        );
        assert_eq!(
            parse(r#"{"event":"stop","stop":{"callSid":"CA1"}}"#),
            Ok(Event::Stop)
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse("{\"event\":"), Err(ProtocolError::Json));
        assert_eq!(parse("[]"), Err(ProtocolError::Json));
        assert!(matches!(
            parse(r#"{"event":"party"}"#),
            Err(ProtocolError::UnknownEvent(_))
        ));
        assert_eq!(
            parse(r#"{"event":"media","media":{"payload":"***"}}"#),
            Err(ProtocolError::Base64)
        );
        assert_eq!(
            parse(r#"{"event":"media"}"#),
            Err(ProtocolError::Missing("media"))
        );
        assert_eq!(
            parse(r#"{"event":"start"}"#),
            Err(ProtocolError::Missing("start"))
        );
        assert_eq!(
            parse(r#"{"event":"mark","mark":{}}"#),
            Err(ProtocolError::Missing("mark"))
        );
    }

    #[test]
    fn outbound_messages_are_twilios_shapes() {
        let m: serde_json::Value =
            serde_json::from_str(&media("MZ1", &[0xFF, 0x7F, 0x00])).unwrap();
        assert_eq!(
            m,
            json!({ "event": "media", "streamSid": "MZ1", "media": { "payload": "/38A" } })
        );
        let m: serde_json::Value = serde_json::from_str(&mark("MZ1", "c1")).unwrap();
        assert_eq!(m["mark"]["name"], "c1");
        let m: serde_json::Value = serde_json::from_str(&clear("MZ1")).unwrap();
        assert_eq!(m, json!({ "event": "clear", "streamSid": "MZ1" }));
    }
}
