//! Silero voice activity detection at 8 or 16 kHz.
//!
//! Tensors: `input` f32 [1, C + W] where W is 512 samples at 16 kHz (256 at 8 kHz) and C the 64
//! (32) samples that ended the previous window, `state` f32 [2, 1, 128] (zeros at start), `sr`
//! i64 scalar → `output` f32 [1, 1] speech probability and `stateN` (the next state).

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Tensor, TensorRef};

use super::{ModelError, runtime};

const STATE_LEN: usize = 2 * 128;

pub struct SileroModel {
    session: Mutex<Session>,
}

/// One stream's recurrent state; allocated once per call.
#[derive(Debug, Clone)]
pub struct SileroStream {
    sample_rate: u32,
    state: Vec<f32>,
    /// Context samples followed by the current window.
    input: Vec<f32>,
    context: usize,
}

impl SileroStream {
    /// A stream at 8000 or 16000 Hz.
    pub fn new(sample_rate: u32) -> Result<Self, ModelError> {
        let (context, window) = match sample_rate {
            16_000 => (64, 512),
            8_000 => (32, 256),
            other => {
                return Err(ModelError::Input {
                    model: "silero",
                    reason: format!("sample rate {other} Hz; 8000 or 16000 needed"),
                });
            }
        };
        Ok(Self {
            sample_rate,
            state: vec![0.0; STATE_LEN],
            input: vec![0.0; context + window],
            context,
        })
    }

    /// Samples in one window (32 ms).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn window(&self) -> usize {
        self.input.len() - self.context
    }
}

impl SileroModel {
    pub fn load(env: &Environment, path: &Path) -> Result<Self, ModelError> {
        Ok(Self {
            session: Mutex::new(runtime::session(env, path)?),
        })
    }

    /// The speech probability of one window (exactly [`SileroStream::window`] samples).
    pub fn probability(
        &self,
        stream: &mut SileroStream,
        window: &[f32],
    ) -> Result<f32, ModelError> {
        if window.len() != stream.window() {
            return Err(ModelError::Input {
                model: "silero",
                reason: format!(
                    "window of {} samples; {} needed",
                    window.len(),
                    stream.window()
                ),
            });
        }
        let err = ModelError::inference("silero");
        let context = stream.context;
        stream.input[context..].copy_from_slice(window);
        let sr = Tensor::from_array(((), vec![i64::from(stream.sample_rate)])).map_err(&err)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![
                "input" => TensorRef::from_array_view(([1usize, stream.input.len()], &stream.input[..])).map_err(&err)?,
                "state" => TensorRef::from_array_view(([2usize, 1, 128], &stream.state[..])).map_err(&err)?,
                "sr" => sr,
            ])
            .map_err(&err)?;
        let (_, probability) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(&err)?;
        let probability = probability.first().copied().unwrap_or(0.0);
        let (_, state) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(&err)?;
        if state.len() == STATE_LEN {
            stream.state.copy_from_slice(state);
        }
        // The window's tail is the next window's context.
        let len = stream.input.len();
        stream.input.copy_within(len - context.., 0);
        Ok(probability)
    }
}
