//! Coding audio for the line, with whatever state a codec keeps between frames: G.711 and L16
//! are stateless, Opus is not. A call builds one [`LineDecoder`] for the caller's audio and one
//! [`LineEncoder`] for the agent's, at set-up, and reuses their buffers for every frame.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Channels, MutSignals, SampleRate};

use super::protocol::{Codec, LineFormat};
use crate::pipeline::{g711, wav};

/// Opus is decoded and encoded at the pipeline's rate: whatever rate the far end encodes at,
/// libopus hands out 16 kHz and the resampler has nothing to do.
pub const OPUS_RATE: u32 = 16_000;
/// The longest Opus packet: 120 ms.
const OPUS_MAX_SAMPLES: usize = OPUS_RATE as usize * 120 / 1000;
/// Encoder effort, 0–10. Measured (`benches/media.rs`, one 20 ms frame of speech): libopus's
/// default 10 costs 240 µs (1.2 % of a core while the agent speaks), 5 costs 116 µs, 2 costs
/// 74 µs. Synthesis costs far more than any of them; 5 keeps most of the quality.
const OPUS_COMPLEXITY: u8 = 5;
/// Opus bit rate for the engine's (and the simulator's) audio.
const OPUS_BITRATE: i32 = 32_000;
/// Room for one encoded 20 ms Opus packet (libopus never needs more than 1275 bytes a frame).
const OPUS_MAX_PACKET: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(String),
}

fn opus_error(error: audiopus::Error) -> CodecError {
    CodecError::Opus(error.to_string())
}

/// Samples in 20 ms of audio in `format`.
pub fn frame_samples(format: LineFormat) -> usize {
    format.sample_rate as usize / 50
}

/// Decodes the line's audio into samples in -1..1.
pub struct LineDecoder {
    format: LineFormat,
    opus: Option<(Decoder, Vec<f32>)>,
}

impl LineDecoder {
    pub fn new(format: LineFormat) -> Result<Self, CodecError> {
        let opus = match format.codec {
            Codec::Opus => Some((
                Decoder::new(SampleRate::Hz16000, Channels::Mono).map_err(opus_error)?,
                vec![0.0; OPUS_MAX_SAMPLES],
            )),
            _ => None,
        };
        Ok(Self { format, opus })
    }

    /// The rate of the samples it produces.
    pub fn sample_rate(&self) -> u32 {
        self.format.sample_rate
    }

    /// Appends the samples in `bytes` to `out` (no allocation when `out` has room). A packet the
    /// codec cannot read is an error and appends nothing.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), CodecError> {
        let scale = |s: i16| f32::from(s) / 32_768.0;
        match (self.format.codec, &mut self.opus) {
            (Codec::Opus, Some((decoder, buffer))) => {
                let packet = Packet::try_from(bytes).map_err(opus_error)?;
                let signals = MutSignals::try_from(&mut buffer[..]).map_err(opus_error)?;
                let decoded = decoder
                    .decode_float(Some(packet), signals, false)
                    .map_err(opus_error)?;
                out.extend_from_slice(&buffer[..decoded]);
            }
            (Codec::Opus, None) => return Err(CodecError::Opus("no decoder".into())),
            (Codec::Mulaw, _) => {
                out.extend(bytes.iter().map(|&b| scale(g711::ulaw_to_linear(b))));
            }
            (Codec::Alaw, _) => {
                out.extend(bytes.iter().map(|&b| scale(g711::alaw_to_linear(b))));
            }
            (Codec::L16BigEndian, _) => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| scale(i16::from_be_bytes([c[0], c[1]]))),
            ),
            (Codec::L16LittleEndian, _) => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| scale(i16::from_le_bytes([c[0], c[1]]))),
            ),
        }
        Ok(())
    }
}

/// Codes samples in -1..1 as 20 ms frames for the line.
pub struct LineEncoder {
    format: LineFormat,
    opus: Option<(Encoder, Vec<u8>)>,
    /// One frame of samples, for filling out the last.
    frame: Vec<f32>,
}

impl LineEncoder {
    pub fn new(format: LineFormat) -> Result<Self, CodecError> {
        let opus = match format.codec {
            Codec::Opus => {
                let mut encoder =
                    Encoder::new(SampleRate::Hz16000, Channels::Mono, Application::Voip)
                        .map_err(opus_error)?;
                encoder
                    .set_complexity(OPUS_COMPLEXITY)
                    .map_err(opus_error)?;
                // Wideband speech at 32 kbit/s, what browsers send for voice; libopus's own
                // default for 16 kHz VoIP is lower and blurs words speech-to-text needs.
                encoder
                    .set_bitrate(audiopus::Bitrate::BitsPerSecond(OPUS_BITRATE))
                    .map_err(opus_error)?;
                Some((encoder, vec![0; OPUS_MAX_PACKET]))
            }
            _ => None,
        };
        Ok(Self {
            format,
            opus,
            frame: Vec::with_capacity(frame_samples(format)),
        })
    }

    /// Codes `samples` (at the line's rate) as 20 ms frames, appended to `frames`; a short last
    /// frame is filled out with silence.
    pub fn encode(&mut self, samples: &[f32], frames: &mut Vec<Vec<u8>>) -> Result<(), CodecError> {
        let per_frame = frame_samples(self.format);
        for chunk in samples.chunks(per_frame) {
            self.frame.clear();
            self.frame.extend_from_slice(chunk);
            self.frame.resize(per_frame, 0.0);
            let frame = match &mut self.opus {
                Some((encoder, packet)) => {
                    let len = encoder
                        .encode_float(&self.frame, packet)
                        .map_err(opus_error)?;
                    packet[..len].to_vec()
                }
                None => {
                    let mut bytes = Vec::with_capacity(per_frame * 2);
                    encode_pcm(self.format.codec, &self.frame, &mut bytes);
                    bytes
                }
            };
            frames.push(frame);
        }
        Ok(())
    }
}

/// Codes samples with a stateless codec (G.711 or L16), appending to `out`.
fn encode_pcm(codec: Codec, samples: &[f32], out: &mut Vec<u8>) {
    for &sample in samples {
        let pcm = wav::to_i16(sample);
        match codec {
            Codec::Mulaw => out.push(g711::linear_to_ulaw(pcm)),
            Codec::Alaw => out.push(g711::linear_to_alaw(pcm)),
            Codec::L16BigEndian => out.extend(pcm.to_be_bytes()),
            Codec::L16LittleEndian => out.extend(pcm.to_le_bytes()),
            Codec::Opus => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: usize) -> Vec<f32> {
        let n = rate as usize * ms / 1000;
        (0..n)
            .map(|i| 0.4 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    #[test]
    fn pcm_codecs_round_trip_in_20_ms_frames() {
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
            let mut frames = Vec::new();
            LineEncoder::new(format)
                .unwrap()
                .encode(&samples, &mut frames)
                .unwrap();
            // Four samples make one frame, filled out with silence.
            assert_eq!(frames.len(), 1);
            let per_sample = if matches!(codec, Codec::Mulaw | Codec::Alaw) {
                1
            } else {
                2
            };
            assert_eq!(frames[0].len(), 320 * per_sample, "{codec:?}");
            let mut back = Vec::new();
            LineDecoder::new(format)
                .unwrap()
                .decode(&frames[0], &mut back)
                .unwrap();
            assert_eq!(back.len(), 320);
            for (a, b) in samples.iter().zip(&back) {
                assert!((a - b).abs() < 0.02, "{codec:?}: {a} → {b}");
            }
            assert!(back[4..].iter().all(|s| s.abs() < 0.001), "{codec:?}");
        }
        let mut bytes = Vec::new();
        encode_pcm(Codec::L16BigEndian, &[0.5], &mut bytes);
        assert_eq!(bytes, 16_384i16.to_be_bytes());
        assert_eq!(frame_samples(LineFormat::MULAW_8K), 160);
    }

    #[test]
    fn opus_round_trips_speech_band_audio() {
        let format = LineFormat {
            codec: Codec::Opus,
            sample_rate: OPUS_RATE,
        };
        let input = tone(OPUS_RATE, 400);
        let mut frames = Vec::new();
        let mut encoder = LineEncoder::new(format).unwrap();
        encoder.encode(&input, &mut frames).unwrap();
        assert_eq!(frames.len(), 20);
        assert!(frames.iter().all(|f| !f.is_empty() && f.len() < 400));
        let mut decoder = LineDecoder::new(format).unwrap();
        let mut output = Vec::new();
        for frame in &frames {
            decoder.decode(frame, &mut output).unwrap();
        }
        assert_eq!(output.len(), input.len());
        // The codec delays the signal slightly; compare energy after the first frames.
        let energy = |s: &[f32]| s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32;
        let (sent, heard) = (energy(&input[1600..]), energy(&output[1600..]));
        assert!((heard / sent - 1.0).abs() < 0.3, "{sent} vs {heard}");
        // Garbage is an error, not a panic, and the decoder carries on.
        assert!(decoder.decode(&[], &mut output).is_err());
        let before = output.len();
        decoder.decode(&frames[0], &mut output).unwrap();
        assert_eq!(output.len(), before + 320);
    }
}
