//! Piper text-to-speech. A voice is a directory holding `<name>.onnx` and `<name>.onnx.json`; the
//! catalogue is whatever voices are installed under `models/voices/` (the directory name is the
//! voice id).
//!
//! Tensors: `input` i64 [1, P] phoneme ids, `input_lengths` i64 [1], `scales` f32 [3] =
//! [noise_scale, length_scale, noise_w] → `output` f32 [1, 1, 1, S] at the voice's sample rate.
//!
//! Phonemes come from libespeak-ng (IPA, the voice's espeak voice; see [`super::espeak`]).
//! espeak-ng drops punctuation, and with it the pauses, so text is split into clauses at
//! `.,;:!?`, each clause is phonemised and its mark put back. Ids: `^` then `_`, then each code
//! point of the NFD IPA string followed by `_`, then `$`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use super::{ModelError, espeak, runtime};

/// The marks that end a clause (kept, and given to the model, for their pauses).
const CLAUSE_MARKS: &[char] = &['.', ',', ';', ':', '!', '?'];

/// A voice's `.onnx.json`, the parts used here.
#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    language: Option<LanguageConfig>,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

#[derive(Debug, Deserialize)]
struct LanguageConfig {
    code: String,
}

/// One installed voice.
pub struct Voice {
    pub id: String,
    /// BCP-47 style language of the voice (`en-US`).
    pub language: String,
    pub sample_rate: u32,
    espeak_voice: String,
    scales: [f32; 3],
    phoneme_ids: HashMap<char, Vec<i64>>,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("id", &self.id)
            .field("language", &self.language)
            .finish()
    }
}

/// What a voice directory declares, read without loading the model.
#[derive(Debug, Clone)]
pub struct VoiceInfo {
    pub id: String,
    /// BCP-47 style language (`en-US`).
    pub language: String,
    pub sample_rate: u32,
    pub model: PathBuf,
}

/// Reads the voice in `dir`: its first `.onnx` file and the `.onnx.json` beside it.
fn read_voice(id: &str, dir: &Path) -> Result<(VoiceInfo, VoiceConfig), ModelError> {
    let mut models: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Load {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    let model = models
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::Missing {
            path: dir.join("<voice>.onnx"),
        })?;
    let config_path = PathBuf::from(format!("{}.json", model.display()));
    let text = std::fs::read_to_string(&config_path).map_err(|_| ModelError::Missing {
        path: config_path.clone(),
    })?;
    let config: VoiceConfig = serde_json::from_str(&text).map_err(|e| ModelError::Load {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    let language = config
        .language
        .as_ref()
        .map(|l| l.code.replace('_', "-"))
        .unwrap_or_else(|| config.espeak.voice.clone());
    let info = VoiceInfo {
        id: id.to_owned(),
        language,
        sample_rate: config.audio.sample_rate,
        model,
    };
    Ok((info, config))
}

/// Lists the voice directories under `dir` (the directory name is the voice id), in id order.
pub fn scan(dir: &Path) -> Result<Vec<VoiceInfo>, ModelError> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .map_err(|_| ModelError::Missing {
            path: dir.to_owned(),
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|path| {
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            read_voice(id, path).map(|(info, _)| info)
        })
        .collect()
}

impl Voice {
    /// Loads the voice in `dir` (the first `.onnx` file with its `.onnx.json`).
    pub fn load(env: &Environment, id: &str, dir: &Path) -> Result<Voice, ModelError> {
        let (info, config) = read_voice(id, dir)?;
        let phoneme_ids = config
            .phoneme_id_map
            .into_iter()
            .filter_map(|(symbol, ids)| {
                let mut chars = symbol.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, ids)),
                    _ => None,
                }
            })
            .collect();
        Ok(Voice {
            id: info.id,
            language: info.language,
            sample_rate: info.sample_rate,
            espeak_voice: config.espeak.voice,
            scales: [
                config.inference.noise_scale,
                config.inference.length_scale,
                config.inference.noise_w,
            ],
            phoneme_ids,
            session: Mutex::new(runtime::session(env, &info.model)?),
        })
    }

    /// Synthesises one clause (as split by [`clauses`]) to mono samples in -1..1 at
    /// [`Voice::sample_rate`].
    pub fn synthesize_clause(&self, clause: &str) -> Result<Vec<f32>, ModelError> {
        let clause = crate::pipeline::speakable::speakable(clause);
        let phonemes = phonemize(&self.espeak_voice, &clause)?;
        let ids = self.phoneme_ids(&phonemes);
        if ids.len() <= 3 {
            return Ok(Vec::new());
        }
        let err = ModelError::inference("piper");
        let lengths = [ids.len() as i64];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![
                "input" => TensorRef::from_array_view(([1usize, ids.len()], &ids[..])).map_err(&err)?,
                "input_lengths" => TensorRef::from_array_view(([1usize], &lengths[..])).map_err(&err)?,
                "scales" => TensorRef::from_array_view(([3usize], &self.scales[..])).map_err(&err)?,
            ])
            .map_err(&err)?;
        let (_, audio) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(&err)?;
        Ok(audio.iter().map(|s| s.clamp(-1.0, 1.0)).collect())
    }

    /// Synthesises a whole text, clause by clause.
    pub fn synthesize(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let mut audio = Vec::new();
        for clause in clauses(text) {
            audio.extend(self.synthesize_clause(&clause)?);
        }
        Ok(audio)
    }

    fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let id = |c: char| self.phoneme_ids.get(&c).cloned().unwrap_or_default();
        let pad = id('_');
        let mut ids = id('^');
        ids.extend(&pad);
        for c in phonemes.nfd() {
            // Symbols the voice does not know are skipped, as Piper does.
            if let Some(symbol) = self.phoneme_ids.get(&c) {
                ids.extend(symbol);
                ids.extend(&pad);
            }
        }
        ids.extend(id('$'));
        ids
    }
}

/// Splits text into clauses, each ending with its mark (the last may have none). A mark between
/// digits (`4.50`, `1,000`) is part of the number.
pub fn clauses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        current.push(c);
        let in_number = previous.is_ascii_digit() && chars.peek().is_some_and(char::is_ascii_digit);
        previous = c;
        if CLAUSE_MARKS.contains(&c) && !in_number {
            let clause = current.trim();
            if clause.chars().any(char::is_alphanumeric) {
                out.push(clause.to_owned());
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if rest.chars().any(char::is_alphanumeric) {
        out.push(rest.to_owned());
    }
    out
}

/// Splits text that arrives in pieces (a streamed reply) into clauses as soon as each is
/// complete: a clause mark followed by white space. The rest waits for more text or
/// [`ClauseStream::finish`].
#[derive(Debug, Default)]
pub struct ClauseStream {
    pending: String,
}

impl ClauseStream {
    /// Adds `text`; returns the clauses it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let bytes = self.pending.as_bytes();
        // The end of the last mark that is followed by white space.
        let mut cut = None;
        for (at, c) in self.pending.char_indices() {
            let next = at + c.len_utf8();
            if CLAUSE_MARKS.contains(&c) && bytes.get(next).is_some_and(u8::is_ascii_whitespace) {
                cut = Some(next);
            }
        }
        let Some(cut) = cut else {
            return Vec::new();
        };
        let rest = self.pending.split_off(cut);
        let complete = std::mem::replace(&mut self.pending, rest);
        clauses(&complete)
    }

    /// The clauses left when the text is over.
    pub fn finish(&mut self) -> Vec<String> {
        clauses(&std::mem::take(&mut self.pending))
    }
}

/// IPA for one clause from espeak-ng, with the clause's final mark put back.
fn phonemize(espeak_voice: &str, clause: &str) -> Result<String, ModelError> {
    let mark = clause.chars().last().filter(|c| CLAUSE_MARKS.contains(c));
    let words = clause.trim_end_matches(CLAUSE_MARKS);
    let mut phonemes = espeak::phonemize(espeak_voice, words)?;
    if let Some(mark) = mark {
        phonemes.push(mark);
    }
    Ok(phonemes)
}

/// The installed voices.
#[derive(Debug, Default)]
pub struct VoiceCatalogue {
    voices: Vec<Arc<Voice>>,
}

impl VoiceCatalogue {
    /// Loads every voice directory under `dir`, in id order.
    pub fn load(env: &Environment, dir: &Path) -> Result<Self, ModelError> {
        let voices = scan(dir)?
            .iter()
            .map(|info| {
                let voice_dir = info.model.parent().unwrap_or(dir);
                Voice::load(env, &info.id, voice_dir).map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { voices })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Voice>> {
        self.voices.iter().find(|v| v.id == id).cloned()
    }

    pub fn voices(&self) -> &[Arc<Voice>] {
        &self.voices
    }

    pub fn ids(&self) -> Vec<String> {
        self.voices.iter().map(|v| v.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clause_stream_cuts_only_complete_clauses() {
        let mut stream = super::ClauseStream::default();
        assert!(stream.push("Sure, ").len() == 1);
        assert!(stream.push("it costs 3").is_empty());
        assert!(stream.push(".50 a").is_empty());
        assert_eq!(stream.push(" slice. Any"), vec!["it costs 3.50 a slice."]);
        assert_eq!(stream.push("thing else?"), Vec::<String>::new());
        assert_eq!(stream.finish(), vec!["Anything else?"]);
        assert!(stream.finish().is_empty());
    }

    use super::*;

    #[test]
    fn clauses_keep_their_marks_and_drop_empty_ones() {
        assert_eq!(
            clauses("Hello, how can I help you today? Thanks!  Bye"),
            ["Hello,", "how can I help you today?", "Thanks!", "Bye"]
        );
        assert_eq!(clauses("...  ?!"), Vec::<String>::new());
        assert_eq!(
            clauses("It costs $4.50, or 1,000 points."),
            ["It costs $4.50,", "or 1,000 points."]
        );
    }
}
