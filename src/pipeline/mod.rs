//! Synchronous audio processing and the speech seams. Nothing here knows HTTP or SQL.
//!
//! - [`denoise`]: stationary line-noise suppression of an utterance before speech to text.
//! - [`g711`]: µ-law and A-law, the telephone codecs.
//! - [`resample`]: fixed-ratio sample-rate conversion of clips (rubato FFT).
//! - [`wav`]: reading and writing WAV files (PCM, float, µ-law and A-law).
//! - [`SpeechToText`] and [`TextToSpeech`]: what the call pipeline needs from models; the
//!   Moonshine and Piper models implement them, tests may substitute their own.
//! - [`speech_input`]: caller audio at the line rate to what [`SpeechToText`] takes.

pub mod denoise;
pub mod endpoint;
pub mod g711;
pub mod resample;
pub mod speakable;
pub mod tts_cache;
pub mod vad;
pub mod wav;

use crate::models::{ModelError, moonshine};

/// Turns one utterance into text.
pub trait SpeechToText: Send + Sync {
    /// Transcribes 16 kHz mono audio in -1..1.
    fn transcribe(&self, audio: &[f32]) -> Result<String, ModelError>;
}

/// Caller audio at the line rate (8 kHz on a telephone line; any rate) as the speech-to-text
/// model takes it: stationary line noise suppressed at the line rate
/// ([`denoise::suppress_noise`], which leaves a clean line untouched), then resampled to 16 kHz.
/// A call's turns, `callgenius transcribe` and the tests that measure hearing all come this way.
pub fn speech_input(audio: &[f32], line_rate: u32) -> Result<Vec<f32>, resample::ResampleError> {
    resample::resample(
        &denoise::suppress_noise(audio, line_rate),
        line_rate,
        moonshine::SAMPLE_RATE,
    )
}

/// Speaks text, one clause at a time so that playback can start before the rest is synthesised.
pub trait TextToSpeech: Send + Sync {
    /// The sample rate of the audio it returns.
    fn sample_rate(&self) -> u32;
    /// Synthesises one clause (see [`crate::models::piper::clauses`]) to mono audio in -1..1.
    fn synthesize_clause(&self, clause: &str) -> Result<Vec<f32>, ModelError>;
}

impl SpeechToText for crate::models::moonshine::Moonshine {
    fn transcribe(&self, audio: &[f32]) -> Result<String, ModelError> {
        crate::models::moonshine::Moonshine::transcribe(self, audio)
    }
}

impl TextToSpeech for crate::models::piper::Voice {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn synthesize_clause(&self, clause: &str) -> Result<Vec<f32>, ModelError> {
        crate::models::piper::Voice::synthesize_clause(self, clause)
    }
}
