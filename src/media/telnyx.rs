//! Telnyx media streaming (bidirectional, RTP mode): JSON text frames in snake_case.
//!
//! In: `connected`; `start` (stream_id, call_control_id, media_format {encoding PCMU, PCMA or
//! L16 (big-endian), sample_rate}); `media` (sequence_number, media {track, chunk, timestamp,
//! payload base64}); `dtmf` {digit}; `mark` {name}; `stop`. Frame order is not guaranteed, so
//! media is reordered by `sequence_number` within a small window. Out: `media` {payload},
//! `mark` {name}, `clear`. The stream token travels in the stream URL (`?token=…`).

use std::collections::BTreeMap;

use axum::extract::ws::Message;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use super::protocol::{self, Codec, Event, LineFormat, ProtocolError, StreamStart};

/// Media frames held back waiting for a missing one; past this, the gap is skipped.
const REORDER_WINDOW: usize = 5;

#[derive(Default)]
pub struct Telnyx {
    /// The next media sequence number due, once known.
    next: Option<u64>,
    held: BTreeMap<u64, Vec<u8>>,
}

/// Telnyx's outbound messages.
pub struct TelnyxOut;

#[derive(Deserialize)]
struct Envelope {
    event: String,
    sequence_number: Option<String>,
    stream_id: Option<String>,
    start: Option<StartBody>,
    media: Option<MediaBody>,
    dtmf: Option<DtmfBody>,
    mark: Option<MarkBody>,
}

#[derive(Deserialize)]
struct StartBody {
    call_control_id: Option<String>,
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: Option<String>,
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

fn line_format(format: Option<MediaFormat>) -> Result<LineFormat, ProtocolError> {
    let Some(format) = format else {
        return Ok(LineFormat::MULAW_8K);
    };
    let rate = match format.sample_rate {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(8_000),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(8_000),
        _ => 8_000,
    };
    let encoding = format.encoding.unwrap_or_else(|| "PCMU".into());
    let codec = match encoding.to_ascii_uppercase().as_str() {
        "PCMU" => Codec::Mulaw,
        "PCMA" => Codec::Alaw,
        "L16" => Codec::L16BigEndian,
        _ => return Err(ProtocolError::Format(encoding)),
    };
    match rate {
        8_000 | 16_000 => Ok(LineFormat {
            codec,
            sample_rate: rate as u32,
        }),
        _ => Err(ProtocolError::Format(format!("{encoding} at {rate} Hz"))),
    }
}

impl Telnyx {
    /// Takes media frame `sequence` and returns the frames now due, in order.
    fn reorder(&mut self, sequence: Option<u64>, bytes: Vec<u8>) -> Vec<Event> {
        let Some(sequence) = sequence else {
            return vec![Event::Media(bytes)];
        };
        let next = *self.next.get_or_insert(sequence);
        if sequence < next {
            return Vec::new(); // late duplicate or already skipped
        }
        self.held.insert(sequence, bytes);
        let mut out = Vec::new();
        loop {
            let due = self.next.unwrap_or(sequence);
            if let Some(frame) = self.held.remove(&due) {
                out.push(Event::Media(frame));
                self.next = Some(due + 1);
            } else if self.held.len() > REORDER_WINDOW {
                // The missing frame is not coming: skip to the oldest held one.
                self.next = self.held.keys().next().copied();
            } else {
                break;
            }
        }
        out
    }

    /// Everything still held, in order (at the end of the stream).
    fn flush(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.held)
            .into_values()
            .map(Event::Media)
            .collect()
    }
}

impl protocol::Inbound for Telnyx {
    fn parse(&mut self, message: &Message) -> Result<Vec<Event>, ProtocolError> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(_) => return Err(ProtocolError::Binary),
            _ => return Ok(Vec::new()),
        };
        let envelope: Envelope = serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
        let sequence = envelope
            .sequence_number
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok());
        match envelope.event.as_str() {
            "connected" => Ok(vec![Event::Connected]),
            "start" => {
                let start = envelope.start.ok_or(ProtocolError::Missing("start"))?;
                let stream_id = envelope.stream_id.ok_or(ProtocolError::Missing("start"))?;
                // Media numbering continues from the start message's.
                self.next = sequence.map(|s| s + 1);
                Ok(vec![Event::Start(StreamStart {
                    stream_id,
                    carrier_call_id: start.call_control_id,
                    token: None,
                    format: line_format(start.media_format)?,
                })])
            }
            "media" => {
                let media = envelope.media.ok_or(ProtocolError::Missing("media"))?;
                let payload = media.payload.ok_or(ProtocolError::Missing("media"))?;
                let bytes = STANDARD
                    .decode(payload)
                    .map_err(|_| ProtocolError::Base64)?;
                if media
                    .track
                    .as_deref()
                    .is_some_and(|t| t != "inbound" && t != "inbound_track")
                {
                    return Ok(Vec::new());
                }
                Ok(self.reorder(sequence, bytes))
            }
            "dtmf" => {
                let digit = envelope
                    .dtmf
                    .and_then(|d| d.digit)
                    .and_then(|d| d.chars().next());
                digit
                    .map(|d| vec![Event::Dtmf(d)])
                    .ok_or(ProtocolError::Missing("dtmf"))
            }
            "mark" => {
                let name = envelope
                    .mark
                    .and_then(|m| m.name)
                    .ok_or(ProtocolError::Missing("mark"))?;
                Ok(vec![Event::Mark(name)])
            }
            "stop" => {
                let mut events = self.flush();
                events.push(Event::Stop);
                Ok(events)
            }
            "error" => Ok(Vec::new()),
            other => Err(ProtocolError::UnknownEvent(
                other.chars().take(32).collect(),
            )),
        }
    }
}

impl protocol::Outbound for TelnyxOut {
    fn media(&self, _stream_id: &str, payload: &[u8]) -> Message {
        Message::Text(
            json!({ "event": "media", "media": { "payload": STANDARD.encode(payload) } })
                .to_string()
                .into(),
        )
    }

    fn mark(&self, _stream_id: &str, name: &str) -> Option<Message> {
        Some(Message::Text(
            json!({ "event": "mark", "mark": { "name": name } })
                .to_string()
                .into(),
        ))
    }

    fn clear(&self, _stream_id: &str) -> Message {
        Message::Text(json!({ "event": "clear" }).to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use protocol::Inbound as _;

    use super::*;

    fn text(value: serde_json::Value) -> Message {
        Message::Text(value.to_string().into())
    }

    fn media(sequence: u64, byte: u8) -> Message {
        text(
            json!({ "event": "media", "sequence_number": sequence.to_string(), "stream_id": "S1",
            "media": { "track": "inbound", "chunk": "1", "timestamp": "0", "payload": STANDARD.encode([byte]) } }),
        )
    }

    fn start_message(encoding: &str, rate: u32) -> Message {
        text(
            json!({ "event": "start", "sequence_number": "1", "stream_id": "S1",
            "start": { "call_control_id": "v2:abc", "media_format": { "encoding": encoding, "sample_rate": rate, "channels": 1 } } }),
        )
    }

    #[test]
    fn parses_a_session_and_its_formats() {
        let mut telnyx = Telnyx::default();
        assert_eq!(
            telnyx
                .parse(&text(json!({ "event": "connected", "version": "1.0.0" })))
                .unwrap(),
            [Event::Connected]
        );
        let Event::Start(start) = telnyx
            .parse(&start_message("L16", 16_000))
            .unwrap()
            .remove(0)
        else {
            panic!()
        };
        assert_eq!(start.stream_id, "S1");
        assert_eq!(start.carrier_call_id.as_deref(), Some("v2:abc"));
        assert_eq!(
            start.format,
            LineFormat {
                codec: Codec::L16BigEndian,
                sample_rate: 16_000
            }
        );
        assert_eq!(telnyx.parse(&media(2, 7)).unwrap(), [Event::Media(vec![7])]);
        let dtmf = text(json!({ "event": "dtmf", "dtmf": { "digit": "9" } }));
        assert_eq!(telnyx.parse(&dtmf).unwrap(), [Event::Dtmf('9')]);
        let mark = text(json!({ "event": "mark", "mark": { "name": "m1" } }));
        assert_eq!(telnyx.parse(&mark).unwrap(), [Event::Mark("m1".into())]);
        assert_eq!(
            telnyx.parse(&text(json!({ "event": "stop" }))).unwrap(),
            [Event::Stop]
        );
        for (encoding, rate) in [("PCMU", 8_000), ("PCMA", 8_000)] {
            assert!(
                Telnyx::default()
                    .parse(&start_message(encoding, rate))
                    .is_ok()
            );
        }
        assert!(matches!(
            Telnyx::default().parse(&start_message("OPUS", 48_000)),
            Err(ProtocolError::Format(_))
        ));
        assert_eq!(
            Telnyx::default().parse(&Message::Binary(vec![1].into())),
            Err(ProtocolError::Binary)
        );
    }

    #[test]
    fn media_is_put_back_in_sequence_order() {
        let mut telnyx = Telnyx::default();
        telnyx.parse(&start_message("PCMU", 8_000)).unwrap();
        let mut out = Vec::new();
        for (sequence, byte) in [(3, 3), (2, 2), (5, 5), (4, 4), (6, 6)] {
            out.extend(telnyx.parse(&media(sequence, byte)).unwrap());
        }
        assert_eq!(
            out,
            (2..=6).map(|b| Event::Media(vec![b])).collect::<Vec<_>>()
        );
        // A late duplicate is dropped.
        assert!(telnyx.parse(&media(4, 4)).unwrap().is_empty());
    }

    #[test]
    fn a_lost_frame_is_skipped_once_the_window_fills() {
        let mut telnyx = Telnyx::default();
        telnyx.parse(&start_message("PCMU", 8_000)).unwrap();
        let mut out = Vec::new();
        // Frame 2 never arrives.
        for sequence in 3..=9u64 {
            out.extend(telnyx.parse(&media(sequence, sequence as u8)).unwrap());
        }
        // Once six frames wait, the gap is skipped and everything after it flows in order.
        assert_eq!(
            out,
            (3..=9).map(|b| Event::Media(vec![b])).collect::<Vec<_>>()
        );
        assert_eq!(
            telnyx.parse(&text(json!({ "event": "stop" }))).unwrap(),
            [Event::Stop]
        );
    }
}
