//! What every carrier's media stream has in common: events in, audio/mark/clear out, and the
//! line format of the audio. Each carrier module turns its own wire messages into these.

use axum::extract::ws::Message;

use crate::pipeline::{g711, wav};

/// How audio is coded on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Mulaw,
    Alaw,
    L16BigEndian,
    L16LittleEndian,
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

    fn bytes_per_sample(self) -> usize {
        match self.codec {
            Codec::Mulaw | Codec::Alaw => 1,
            Codec::L16BigEndian | Codec::L16LittleEndian => 2,
        }
    }

    /// Bytes in 20 ms of audio.
    pub fn frame_bytes(self) -> usize {
        self.sample_rate as usize / 50 * self.bytes_per_sample()
    }

    /// Milliseconds of audio in `bytes`.
    pub fn duration_ms(self, bytes: usize) -> u64 {
        (bytes / self.bytes_per_sample()) as u64 * 1000 / u64::from(self.sample_rate)
    }

    /// Decodes line bytes into samples in -1..1, appending to `out` (no allocation when `out` has
    /// room).
    pub fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        let scale = |s: i16| f32::from(s) / 32_768.0;
        match self.codec {
            Codec::Mulaw => out.extend(bytes.iter().map(|&b| scale(g711::ulaw_to_linear(b)))),
            Codec::Alaw => out.extend(bytes.iter().map(|&b| scale(g711::alaw_to_linear(b)))),
            Codec::L16BigEndian => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| scale(i16::from_be_bytes([c[0], c[1]]))),
            ),
            Codec::L16LittleEndian => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| scale(i16::from_le_bytes([c[0], c[1]]))),
            ),
        }
    }

    /// Encodes samples in -1..1 onto the line, appending to `out`.
    pub fn encode(self, samples: &[f32], out: &mut Vec<u8>) {
        for &sample in samples {
            let pcm = wav::to_i16(sample);
            match self.codec {
                Codec::Mulaw => out.push(g711::linear_to_ulaw(pcm)),
                Codec::Alaw => out.push(g711::linear_to_alaw(pcm)),
                Codec::L16BigEndian => out.extend(pcm.to_be_bytes()),
                Codec::L16LittleEndian => out.extend(pcm.to_le_bytes()),
            }
        }
    }

    /// The byte that fills out a short last frame with silence.
    pub fn silence_byte(self) -> u8 {
        match self.codec {
            Codec::Mulaw => 0xFF,
            Codec::Alaw => 0xD5,
            Codec::L16BigEndian | Codec::L16LittleEndian => 0,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_frames_are_20_ms() {
        let samples = [0.0f32, 0.25, -0.5, 0.999];
        for codec in [
            Codec::Mulaw,
            Codec::Alaw,
            Codec::L16BigEndian,
            Codec::L16LittleEndian,
        ] {
            let format = LineFormat {
                codec,
                sample_rate: 16_000,
            };
            let mut bytes = Vec::new();
            format.encode(&samples, &mut bytes);
            let mut back = Vec::new();
            format.decode(&bytes, &mut back);
            for (a, b) in samples.iter().zip(&back) {
                assert!((a - b).abs() < 0.02, "{codec:?}: {a} → {b}");
            }
            let mut silence = Vec::new();
            format.decode(&[format.silence_byte(); 4], &mut silence);
            assert!(silence.iter().all(|s| s.abs() < 0.001), "{codec:?}");
        }
        assert_eq!(LineFormat::MULAW_8K.frame_bytes(), 160);
        assert_eq!(
            LineFormat {
                codec: Codec::L16LittleEndian,
                sample_rate: 16_000
            }
            .frame_bytes(),
            640
        );
        assert_eq!(LineFormat::MULAW_8K.duration_ms(160), 20);
        let mut bytes = Vec::new();
        LineFormat {
            codec: Codec::L16BigEndian,
            sample_rate: 8_000,
        }
        .encode(&[0.5], &mut bytes);
        assert_eq!(bytes, 16_384i16.to_be_bytes());
    }
}
