//! Voice activity detection behind one trait, with two detectors: WebRTC's (a GMM over band
//! energies, microseconds a frame) and Silero (a small neural network, a fraction of a
//! millisecond a window on the inference thread). The endpointer feeds either frame by frame.

use std::sync::Arc;

use webrtc_vad::{SampleRate, Vad, VadMode};

use crate::models::ModelError;
use crate::models::silero::{SileroModel, SileroStream};

/// Decides, frame by frame, whether a stream holds speech.
pub trait VoiceActivity: Send {
    /// Samples in each frame the detector takes (at the stream's rate).
    fn frame_len(&self) -> usize;
    /// Whether `frame` (exactly [`VoiceActivity::frame_len`] samples in -1..1) is speech.
    fn is_speech(&mut self, frame: &[f32]) -> Result<bool, ModelError>;
    /// How long, on average, the detector keeps reporting speech after speech has ended
    /// (measured on the speech fixtures); the endpointer takes it off its silence wait.
    fn hangover_ms(&self) -> u32 {
        0
    }
    /// Samples just before the current run of speech frames that a quicker, less certain test
    /// already heard as sound (a soft onset the detector was slow to call speech); the
    /// endpointer starts the utterance there.
    fn onset_lead(&self) -> usize {
        0
    }
}

/// Which detector to use; configurable (`vad` in the config file).
///
/// Silero is the default: on the endpointing fixtures both find utterance ends within 100 ms on
/// a clean or lightly noisy line, but with loud line hiss WebRTC's detector hears speech
/// everywhere while Silero still finds every utterance (tests/endpointing.rs). Silero runs behind
/// a WebRTC gate (see [`SileroVad`]), so it costs little more than WebRTC while the caller is
/// quiet; `benches/media.rs` has the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VadKind {
    Webrtc,
    #[default]
    Silero,
}

/// Builds the configured detector for one stream.
pub fn detector(
    kind: VadKind,
    sample_rate: u32,
    aggressiveness: Aggressiveness,
    silero: &Arc<SileroModel>,
) -> Result<Box<dyn VoiceActivity>, ModelError> {
    Ok(match kind {
        VadKind::Webrtc => Box::new(WebrtcVad::new(sample_rate, aggressiveness)?),
        VadKind::Silero => Box::new(SileroVad::new(Arc::clone(silero), sample_rate)?),
    })
}

impl VoiceActivity for Box<dyn VoiceActivity> {
    fn frame_len(&self) -> usize {
        (**self).frame_len()
    }

    fn is_speech(&mut self, frame: &[f32]) -> Result<bool, ModelError> {
        (**self).is_speech(frame)
    }

    fn hangover_ms(&self) -> u32 {
        (**self).hangover_ms()
    }

    fn onset_lead(&self) -> usize {
        (**self).onset_lead()
    }
}

/// WebRTC VAD aggressiveness, 0 (lets most through as speech) to 3 (strictest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggressiveness(u8);

impl Aggressiveness {
    pub fn new(level: u8) -> Option<Self> {
        (level <= 3).then_some(Self(level))
    }
}

impl Default for Aggressiveness {
    fn default() -> Self {
        Self(2)
    }
}

/// WebRTC's detector on 20 ms frames.
pub struct WebrtcVad {
    vad: SendVad,
    frame: Vec<i16>,
}

/// `webrtc_vad::Vad` holds a raw pointer to its C state, so it is not `Send` by default.
struct SendVad(Vad);

// SAFETY: the C state (fvad) has no thread affinity and no shared global state; each instance is
// owned by one call's pipeline and used from one thread at a time (`&mut self` only, not `Sync`).
unsafe impl Send for SendVad {}

impl WebrtcVad {
    /// A detector at 8, 16, 32 or 48 kHz on 20 ms frames.
    pub fn new(sample_rate: u32, aggressiveness: Aggressiveness) -> Result<Self, ModelError> {
        Self::with_frame_ms(sample_rate, aggressiveness, 20)
    }

    /// A detector on 10, 20 or 30 ms frames.
    fn with_frame_ms(
        sample_rate: u32,
        aggressiveness: Aggressiveness,
        frame_ms: u32,
    ) -> Result<Self, ModelError> {
        let rate = SampleRate::try_from(sample_rate as i32).map_err(|_| ModelError::Input {
            model: "webrtc-vad",
            reason: format!("sample rate {sample_rate} Hz; 8, 16, 32 or 48 kHz needed"),
        })?;
        let mode = match aggressiveness.0 {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            _ => VadMode::VeryAggressive,
        };
        let frame_len = (sample_rate * frame_ms / 1000) as usize;
        Ok(Self {
            vad: SendVad(Vad::new_with_rate_and_mode(rate, mode)),
            frame: vec![0; frame_len],
        })
    }
}

impl VoiceActivity for WebrtcVad {
    fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Measured: utterance ends reported 100–120 ms after the speech's last 10 ms above -35 dB.
    fn hangover_ms(&self) -> u32 {
        100
    }

    fn is_speech(&mut self, frame: &[f32]) -> Result<bool, ModelError> {
        if frame.len() != self.frame.len() {
            return Err(ModelError::Input {
                model: "webrtc-vad",
                reason: format!("frame of {} samples", frame.len()),
            });
        }
        for (out, &sample) in self.frame.iter_mut().zip(frame) {
            *out = crate::pipeline::wav::to_i16(sample);
        }
        self.vad
            .0
            .is_voice_segment(&self.frame)
            .map_err(|()| ModelError::Inference {
                model: "webrtc-vad",
                reason: "frame refused".into(),
            })
    }
}

/// Silero on 32 ms windows; speech when the probability passes a threshold.
///
/// A cheap gate runs first: WebRTC's detector in its least aggressive mode on the window's first
/// 30 ms. Only when it hears something does Silero decide, so silence (most of a call, for the
/// caller's side) costs microseconds, and on a noisy line, where the gate lets everything
/// through, Silero's judgement still rules.
pub struct SileroVad {
    model: Arc<SileroModel>,
    stream: SileroStream,
    threshold: f32,
    gate: Option<WebrtcVad>,
    /// Samples since the gate started hearing sound that Silero has not yet called speech.
    heard: usize,
    /// `heard` when the current run of speech began.
    lead: usize,
    speaking: bool,
}

impl SileroVad {
    /// Silero's recommended speech threshold.
    pub const THRESHOLD: f32 = 0.5;
    /// Without a gate, a window this probable counts as sound before speech.
    const SOUND: f32 = 0.15;
    /// The longest onset lead reported (a noisy line keeps the gate open all the time).
    const MAX_LEAD_MS: usize = 150;

    /// Silero behind the WebRTC gate.
    pub fn new(model: Arc<SileroModel>, sample_rate: u32) -> Result<Self, ModelError> {
        let gate = WebrtcVad::with_frame_ms(sample_rate, Aggressiveness(0), 30)?;
        Ok(Self {
            gate: Some(gate),
            ..Self::ungated(model, sample_rate)?
        })
    }

    /// Silero on every window (for comparison).
    pub fn ungated(model: Arc<SileroModel>, sample_rate: u32) -> Result<Self, ModelError> {
        Ok(Self {
            model,
            stream: SileroStream::new(sample_rate)?,
            threshold: Self::THRESHOLD,
            gate: None,
            heard: 0,
            lead: 0,
            speaking: false,
        })
    }
}

impl VoiceActivity for SileroVad {
    fn frame_len(&self) -> usize {
        self.stream.window()
    }

    /// Measured: utterance ends reported 0–110 ms (mean 70) after the speech's last 10 ms above
    /// -35 dB.
    fn hangover_ms(&self) -> u32 {
        60
    }

    /// Measured on the endpointing fixtures: Silero calls a soft onset speech 10–130 ms late
    /// (its state is cold after the gate kept it idle); the gate hears it at once.
    fn onset_lead(&self) -> usize {
        self.lead
    }

    fn is_speech(&mut self, frame: &[f32]) -> Result<bool, ModelError> {
        let gated = match &mut self.gate {
            Some(gate) => {
                let head = gate.frame_len().min(frame.len());
                if !gate.is_speech(&frame[..head])? {
                    self.heard = 0;
                    self.speaking = false;
                    return Ok(false);
                }
                true
            }
            None => false,
        };
        let probability = self.model.probability(&mut self.stream, frame)?;
        if probability >= self.threshold {
            if !self.speaking {
                let max_lead = self.stream.sample_rate() as usize * Self::MAX_LEAD_MS / 1000;
                self.lead = self.heard.min(max_lead);
                self.speaking = true;
            }
            self.heard = 0;
            return Ok(true);
        }
        self.speaking = false;
        self.heard = if gated || probability >= Self::SOUND {
            self.heard + frame.len()
        } else {
            0
        };
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webrtc_hears_a_voiced_tone_and_not_silence() {
        let mut vad = WebrtcVad::new(8_000, Aggressiveness::default()).unwrap();
        assert_eq!(vad.frame_len(), 160);
        let silence = vec![0.0; 160];
        assert!(!vad.is_speech(&silence).unwrap());
        // A buzzy 150 Hz tone with harmonics, loud enough, reads as voice.
        let mut voiced = 0;
        for n in 0..50 {
            let frame: Vec<f32> = (0..160)
                .map(|i| {
                    let t = (n * 160 + i) as f32 / 8_000.0;
                    (1..8)
                        .map(|h| (t * 150.0 * h as f32 * std::f32::consts::TAU).sin() / h as f32)
                        .sum::<f32>()
                        * 0.2
                })
                .collect();
            voiced += usize::from(vad.is_speech(&frame).unwrap());
        }
        assert!(voiced > 25, "{voiced} of 50 frames");
        assert!(vad.is_speech(&[0.0; 100]).is_err());
        assert!(WebrtcVad::new(11_025, Aggressiveness::default()).is_err());
        assert!(Aggressiveness::new(4).is_none());
    }
}
