//! The engine's handle on its speech models: what is installed (checked and scanned at start-up,
//! cheaply) and the loaded sessions (loaded once, on the inference pool, either in the background
//! right after start-up or on first use).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::pool::InferencePool;
use super::{ModelError, Models, check, piper};

/// A voice agents may name: an installed Piper voice, or an alias of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceEntry {
    pub id: String,
    pub language: String,
    pub sample_rate: u32,
    /// The installed voice an alias speaks with.
    pub alias_of: Option<String>,
}

/// Whether the models are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    /// Installed and checked, not loaded yet.
    Installed,
    Loading,
    Ready,
    Failed(String),
}

pub struct SpeechModels {
    dir: PathBuf,
    voices: Vec<VoiceEntry>,
    pool: InferencePool,
    loaded: OnceCell<Arc<Models>>,
    // Short critical sections only: status reads and writes, never held across an await.
    status: Mutex<ModelStatus>,
}

impl SpeechModels {
    /// Checks that every model file is installed and lists the voices. `aliases` maps extra voice
    /// ids to installed voices; an alias of a voice that is not installed is an error.
    pub fn open(
        dir: &Path,
        aliases: &BTreeMap<String, String>,
        pool: InferencePool,
    ) -> Result<Self, ModelError> {
        check(dir)?;
        let installed = piper::scan(&dir.join("voices"))?;
        let mut voices: Vec<VoiceEntry> = installed
            .iter()
            .map(|v| VoiceEntry {
                id: v.id.clone(),
                language: v.language.clone(),
                sample_rate: v.sample_rate,
                alias_of: None,
            })
            .collect();
        for (alias, target) in aliases {
            let Some(voice) = installed.iter().find(|v| &v.id == target) else {
                return Err(ModelError::Missing {
                    path: dir.join("voices").join(target),
                });
            };
            if installed.iter().any(|v| &v.id == alias) {
                continue;
            }
            voices.push(VoiceEntry {
                id: alias.clone(),
                language: voice.language.clone(),
                sample_rate: voice.sample_rate,
                alias_of: Some(target.clone()),
            });
        }
        voices.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Self {
            dir: dir.to_owned(),
            voices,
            pool,
            loaded: OnceCell::new(),
            status: Mutex::new(ModelStatus::Installed),
        })
    }

    pub fn voices(&self) -> &[VoiceEntry] {
        &self.voices
    }

    /// The installed voice that speaks for `id` (itself, or the voice an alias names).
    pub fn resolve_voice(&self, id: &str) -> Option<&str> {
        let entry = self.voices.iter().find(|v| v.id == id)?;
        Some(entry.alias_of.as_deref().unwrap_or(&entry.id))
    }

    pub fn voice_ids(&self) -> Vec<String> {
        self.voices.iter().map(|v| v.id.clone()).collect()
    }

    pub fn status(&self) -> ModelStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }

    fn set_status(&self, status: ModelStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// The loaded models, loading them on the inference pool the first time. A failed load is
    /// reported and tried again on the next call.
    pub async fn get(&self) -> Result<Arc<Models>, ModelError> {
        self.loaded
            .get_or_try_init(|| async {
                self.set_status(ModelStatus::Loading);
                let dir = self.dir.clone();
                let result = self
                    .pool
                    .run(move || Models::load(&dir))
                    .await
                    .and_then(|r| r);
                match &result {
                    Ok(_) => self.set_status(ModelStatus::Ready),
                    Err(error) => self.set_status(ModelStatus::Failed(error.to_string())),
                }
                result.map(Arc::new)
            })
            .await
            .cloned()
    }
}
