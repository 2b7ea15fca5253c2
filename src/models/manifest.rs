//! The model manifest (`models/manifest.toml`), compiled into the binary so that the engine knows
//! which files it needs without reading anything but the files themselves.

use std::path::Path;

use serde::Deserialize;

use super::ModelError;

const MANIFEST: &str = include_str!("../../models/manifest.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub slot: String,
    pub package: String,
    pub version: String,
    pub dest: String,
    pub sha256: String,
    pub licence: String,
    pub purpose: String,
}

#[derive(Deserialize)]
struct Manifest {
    file: Vec<Entry>,
}

/// The manifest's entries.
pub fn entries() -> Vec<Entry> {
    toml::from_str::<Manifest>(MANIFEST)
        .map(|m| m.file)
        .unwrap_or_default()
}

/// Fails with the first listed file that is missing under `dir`.
pub fn check(dir: &Path) -> Result<(), ModelError> {
    for entry in entries() {
        let path = dir.join(&entry.dest);
        if !path.is_file() {
            return Err(ModelError::Missing { path });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_manifest_parses_and_pins_every_file() {
        let entries = entries();
        assert_eq!(entries.len(), 9);
        for entry in &entries {
            assert_eq!(entry.sha256.len(), 64, "{}", entry.dest);
            assert!(
                !entry.version.is_empty() && !entry.licence.is_empty() && !entry.purpose.is_empty()
            );
        }
        for slot in ["runtime", "stt", "tts", "vad", "embeddings"] {
            assert!(entries.iter().any(|e| e.slot == slot), "{slot}");
        }
        assert!(entries.iter().all(|e| !e.package.is_empty()));
    }

    #[test]
    fn a_missing_file_is_named_with_the_fetch_command() {
        let dir = std::env::temp_dir().join(format!("cg-models-{}", uuid::Uuid::new_v4()));
        let error = check(&dir).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("libonnxruntime.so"), "{message}");
        assert!(message.contains("./scripts/fetch-models"), "{message}");
    }
}
