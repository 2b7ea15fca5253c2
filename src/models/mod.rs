//! The offline models: the ONNX Runtime environment (one per process) and one session per model,
//! loaded once and shared by every call.
//!
//! Files come from `models/manifest.toml` (compiled in here, fetched by `scripts/fetch-models`).
//! [`check`] reports the first missing file with the command that fetches it; [`Models::load`]
//! opens everything. Inference is synchronous; callers run it on the [`pool::InferencePool`],
//! never on the async runtime's workers.

pub mod espeak;
pub mod hub;
pub mod manifest;
pub mod minilm;
pub mod moonshine;
pub mod piper;
pub mod pool;
pub mod runtime;
pub mod silero;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use hub::{ModelStatus, SpeechModels, VoiceEntry};
pub use manifest::check;

/// The command that installs the model files.
pub const FETCH_COMMAND: &str = "./scripts/fetch-models";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path} is missing; run {FETCH_COMMAND}")]
    Missing { path: PathBuf },
    #[error("cannot load the ONNX Runtime library {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("inference failed in {model}: {reason}")]
    Inference { model: &'static str, reason: String },
    #[error("invalid input for {model}: {reason}")]
    Input { model: &'static str, reason: String },
    #[error("phonemizer failed: {0}")]
    Phonemizer(String),
    #[error("the inference pool is shut down")]
    PoolClosed,
}

impl ModelError {
    pub(crate) fn inference(model: &'static str) -> impl Fn(ort::Error) -> ModelError {
        move |error| ModelError::Inference {
            model,
            reason: error.to_string(),
        }
    }
}

/// Every model the engine uses, loaded.
pub struct Models {
    pub stt: Arc<moonshine::Moonshine>,
    pub voices: Arc<piper::VoiceCatalogue>,
    pub vad: Arc<silero::SileroModel>,
    pub embeddings: Arc<minilm::MiniLm>,
}

impl Models {
    /// Checks and loads every model under `dir`.
    pub fn load(dir: &Path) -> Result<Models, ModelError> {
        check(dir)?;
        let env = runtime::environment(dir)?;
        Ok(Models {
            stt: Arc::new(moonshine::Moonshine::load(
                &env,
                &dir.join("moonshine-tiny-en"),
            )?),
            voices: Arc::new(piper::VoiceCatalogue::load(&env, &dir.join("voices"))?),
            vad: Arc::new(silero::SileroModel::load(
                &env,
                &dir.join("silero-vad/silero_vad.onnx"),
            )?),
            embeddings: Arc::new(minilm::MiniLm::load(&env, &dir.join("minilm"))?),
        })
    }
}
