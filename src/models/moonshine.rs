//! Moonshine tiny (English) speech-to-text at 16 kHz: encoder plus merged decoder with a
//! key/value cache, greedy decoding.
//!
//! Tensors:
//! - encoder: `input_values` f32 [1, N] raw audio in -1..1, `attention_mask` i64 [1, N] of ones
//!   → `last_hidden_state` f32 [1, S, 288] (S ≈ N / 384).
//! - decoder: `input_ids` i64 [1, T], `encoder_hidden_states` f32 [1, S, 288],
//!   `encoder_attention_mask` i64 [1, N] (the audio's mask, per sample, as the encoder got it:
//!   the graph downsamples it to S itself; a mask of S ones is downsampled to ⌈S/384⌉ and only
//!   broadcasts while that is 1, which is why audio over about 8.5 s used to fail),
//!   `use_cache_branch` bool [1], and per layer l in 0..6
//!   `past_key_values.l.{decoder,encoder}.{key,value}` f32 [1, 8, P, 36] → `logits`
//!   f32 [1, T, 32768] and `present.l.…` of the same shapes.
//!
//! Decoding: start token 1, stop at 2, at most ⌊6.5 tokens a second⌋ + 10. The first step runs
//! with empty caches and computes the cross-attention (encoder) cache; later steps feed one token,
//! keep that encoder cache and grow only the decoder cache.
//!
//! Caller audio reaches the model through [`crate::pipeline::speech_input`] (line noise
//! suppressed, then resampled to 16 kHz) and [`Moonshine::transcribe`] (quiet topped up at the
//! edges).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};
use tokenizers::Tokenizer;

use super::{ModelError, runtime};

/// Input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
const LAYERS: usize = 6;
const HEADS: usize = 8;
const HEAD_DIM: usize = 36;
const START: i64 = 1;
const END: i64 = 2;
/// Shortest and longest audio the model accepts, in samples.
const MIN_SAMPLES: usize = SAMPLE_RATE as usize / 10;
const MAX_SAMPLES: usize = SAMPLE_RATE as usize * 64;
/// The decoding budget, as the reference recipe sets it: ⌊6.5 tokens a second of audio⌋ + 10.
const TOKENS_PER_SECOND: f32 = 6.5;
const EXTRA_TOKENS: usize = 10;
/// Silence added before and after each utterance (0.25 s).
const PAD_SAMPLES: usize = SAMPLE_RATE as usize / 4;

pub struct Moonshine {
    // `Session::run` takes `&mut self`: one call at a time per model.
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
    /// Decoder self-attention cache tensors, then cross-attention (encoder) ones.
    self_names: Vec<CacheName>,
    cross_names: Vec<CacheName>,
}

/// The input and output names of one cache tensor.
struct CacheName {
    past: String,
    present: String,
}

impl Moonshine {
    pub fn load(env: &Environment, dir: &Path) -> Result<Self, ModelError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::Load {
            path: tokenizer_path.clone(),
            reason: e.to_string(),
        })?;
        let names = |part: &str| {
            (0..LAYERS)
                .flat_map(|layer| {
                    ["key", "value"].map(|kind| CacheName {
                        past: format!("past_key_values.{layer}.{part}.{kind}"),
                        present: format!("present.{layer}.{part}.{kind}"),
                    })
                })
                .collect::<Vec<_>>()
        };
        Ok(Self {
            encoder: Mutex::new(runtime::session(env, &dir.join("encoder_model.ort"))?),
            decoder: Mutex::new(runtime::session(
                env,
                &dir.join("decoder_model_merged.ort"),
            )?),
            tokenizer,
            self_names: names("decoder"),
            cross_names: names("encoder"),
        })
    }

    /// Transcribes 16 kHz mono audio in -1..1. Audio shorter than 0.1 s is silence to the model
    /// and yields an empty string; longer than 64 s is refused.
    pub fn transcribe(&self, audio: &[f32]) -> Result<String, ModelError> {
        self.transcribe_with(audio, &Hints::default())
    }

    /// Token sequences of `words` as written ("Thursday", "morning"), mid-sentence and at the
    /// start of one ("Morning"), for [`Moonshine::transcribe_with`]. A sequence whose first
    /// piece is under three letters ("▁T" of " Tuesday") is favoured only once begun: raising
    /// so generic a piece would pull unrelated words towards the hints.
    pub fn hints(&self, words: &[&str]) -> Hints {
        let mut sequences: Vec<Vec<u32>> = Vec::new();
        let mut openers: Vec<u32> = Vec::new();
        for word in words {
            let mut capital = word.to_string();
            if let Some(first) = capital.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            for form in [word.to_string(), format!(" {word}"), capital] {
                let Ok(encoding) = self.tokenizer.encode(form.as_str(), false) else {
                    continue;
                };
                let ids = encoding.get_ids().to_vec();
                if ids.is_empty() || sequences.contains(&ids) {
                    continue;
                }
                let first = encoding.get_tokens()[0].trim_start_matches('▁');
                if first.chars().count() >= 3 {
                    openers.push(ids[0]);
                }
                sequences.push(ids);
            }
        }
        Hints { sequences, openers }
    }

    /// [`Moonshine::transcribe`], with the words the caller is likely to say next favoured:
    /// at each step a token that starts a hint, or continues one the transcript has begun, has
    /// [`HINT_BIAS`] added to its logit (contextual biasing, as hosted recognisers offer with
    /// "hints" or "keywords"). The model still decides: a bias only tips near-ties.
    pub fn transcribe_with(&self, audio: &[f32], hints: &Hints) -> Result<String, ModelError> {
        self.check(audio)?;
        if audio.len() < MIN_SAMPLES {
            return Ok(String::new());
        }
        // Speech that starts at the very first sample loses its first word (measured on Piper
        // fixtures: "Your appointment" heard as "DuraPoint Mint"); a short silence either side,
        // as a microphone would have recorded, makes the model reliable. Audio that already
        // has that much quiet gets none: more silence costs words (measured on the hearing
        // fixtures, 8 kHz µ-law: WER 32.4 % padded regardless, 29.8 % unpadded).
        let lead = PAD_SAMPLES.saturating_sub(quiet_run(audio.iter()));
        let tail = PAD_SAMPLES.saturating_sub(quiet_run(audio.iter().rev()));
        let mut padded = Vec::with_capacity(audio.len() + lead + tail);
        padded.resize(lead, 0.0);
        padded.extend_from_slice(audio);
        padded.resize(lead + audio.len() + tail, 0.0);
        self.run(&padded, max_tokens(audio.len()), hints)
    }

    /// The reference recipe exactly (the `useful-moonshine-onnx` package's `generate`): the
    /// audio as it is, no padding, the same token budget. The parity test holds the engine's
    /// decoder to it (`fixtures/hearing/reference.py`).
    pub fn transcribe_as_reference(&self, audio: &[f32]) -> Result<String, ModelError> {
        self.check(audio)?;
        if audio.len() < MIN_SAMPLES {
            return Ok(String::new());
        }
        self.run(audio, max_tokens(audio.len()), &Hints::default())
    }

    fn check(&self, audio: &[f32]) -> Result<(), ModelError> {
        if audio.len() > MAX_SAMPLES {
            return Err(ModelError::Input {
                model: "moonshine",
                reason: format!(
                    "{:.1} s of audio is over the 64 s limit",
                    audio.len() as f32 / SAMPLE_RATE as f32
                ),
            });
        }
        Ok(())
    }

    fn run(&self, audio: &[f32], max_tokens: usize, hints: &Hints) -> Result<String, ModelError> {
        let mask = vec![1i64; audio.len()];
        let hidden = self.encode(audio, &mask)?;
        let tokens = self.decode(hidden, &mask, max_tokens, hints)?;
        self.tokenizer
            .decode(&tokens, true)
            .map(|text| text.trim().to_owned())
            .map_err(|e| ModelError::Inference {
                model: "moonshine tokenizer",
                reason: e.to_string(),
            })
    }

    fn encode(&self, audio: &[f32], mask: &[i64]) -> Result<DynValue, ModelError> {
        let err = ModelError::inference("moonshine encoder");
        let n = audio.len();
        let mut encoder = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut outputs = encoder
            .run(ort::inputs![
                "input_values" => TensorRef::from_array_view(([1usize, n], audio)).map_err(&err)?,
                "attention_mask" => TensorRef::from_array_view(([1usize, n], mask)).map_err(&err)?,
            ])
            .map_err(&err)?;
        outputs
            .remove("last_hidden_state")
            .ok_or_else(|| ModelError::Inference {
                model: "moonshine encoder",
                reason: "no last_hidden_state output".into(),
            })
    }

    fn decode(
        &self,
        hidden: DynValue,
        mask: &[i64],
        max_tokens: usize,
        hints: &Hints,
    ) -> Result<Vec<u32>, ModelError> {
        let err = ModelError::inference("moonshine decoder");
        let samples = mask.len();
        let encoder_mask = Tensor::from_array(([1usize, samples], mask.to_vec())).map_err(&err)?;
        let mut decoder = self.decoder.lock().unwrap_or_else(|p| p.into_inner());

        let empty = || {
            Tensor::from_array(([1usize, HEADS, 0, HEAD_DIM], Vec::<f32>::new()))
                .map(Tensor::into_dyn)
        };
        // Self-attention cache: grows every step. Cross-attention cache: computed at step 0 and
        // then kept (the merged model's later encoder outputs are placeholders, not the cache).
        let mut self_cache = Vec::with_capacity(self.self_names.len());
        let mut cross_cache = Vec::with_capacity(self.cross_names.len());
        for _ in 0..self.self_names.len() {
            self_cache.push(empty().map_err(&err)?);
            cross_cache.push(empty().map_err(&err)?);
        }
        let mut tokens: Vec<u32> = Vec::with_capacity(max_tokens);
        let mut last = START;
        for step in 0..max_tokens {
            let ids = Tensor::from_array(([1usize, 1], vec![last])).map_err(&err)?;
            let branch = Tensor::from_array(([1usize], vec![step > 0])).map_err(&err)?;
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
                ("input_ids".into(), ids.into()),
                ("encoder_hidden_states".into(), (&hidden).into()),
                ("encoder_attention_mask".into(), (&encoder_mask).into()),
                ("use_cache_branch".into(), branch.into()),
            ];
            for (name, value) in self.self_names.iter().zip(self_cache.drain(..)) {
                inputs.push((name.past.as_str().into(), value.into()));
            }
            for (name, value) in self.cross_names.iter().zip(&cross_cache) {
                inputs.push((name.past.as_str().into(), value.into()));
            }
            let mut outputs = decoder.run(inputs).map_err(&err)?;
            let next = {
                let (_, logits) = outputs["logits"]
                    .try_extract_tensor::<f32>()
                    .map_err(&err)?;
                if hints.is_empty() {
                    argmax(logits)
                } else {
                    let mut biased = logits.to_vec();
                    hints.bias(&tokens, &mut biased);
                    argmax(&biased)
                }
            };
            let mut take = |name: &str| {
                outputs.remove(name).ok_or_else(|| ModelError::Inference {
                    model: "moonshine decoder",
                    reason: format!("no {name} output"),
                })
            };
            for name in &self.self_names {
                self_cache.push(take(&name.present)?);
            }
            if step == 0 {
                for (slot, name) in cross_cache.iter_mut().zip(&self.cross_names) {
                    *slot = take(&name.present)?;
                }
            }
            if next == END {
                break;
            }
            tokens.push(next as u32);
            last = next;
        }
        Ok(tokens)
    }
}

/// Added to the logit of a hinted token: enough to tip near-ties, not to overrule the model.
/// Chosen on the booking fixtures (`tests/responder/booking.rs`: 0 → 18 of 36 conversations
/// booked right, 2 → 19–20, 3 and 5 → 19); checked on the hearing fixtures' day-and-time
/// sentences, which it was not chosen on (`tests/responder/hints.rs`: WER 20.8 % → 19.3 %).
pub const HINT_BIAS: f32 = 2.0;

/// Words favoured in one transcription, as token sequences ([`Moonshine::hints`]).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    sequences: Vec<Vec<u32>>,
    /// First tokens distinctive enough to favour before a hint has begun.
    openers: Vec<u32>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// Raises the logits of tokens that open a hint or continue one that `tokens` ends with a
    /// part of.
    fn bias(&self, tokens: &[u32], logits: &mut [f32]) {
        let mut next: Vec<u32> = self.openers.clone();
        for sequence in &self.sequences {
            for k in 1..sequence.len() {
                if tokens.ends_with(&sequence[..k]) {
                    next.push(sequence[k]);
                }
            }
        }
        next.sort_unstable();
        next.dedup();
        for token in next {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit += HINT_BIAS;
            }
        }
    }
}

/// How many samples from the start of `samples` are quiet (below -40 dBFS).
fn quiet_run<'a>(samples: impl Iterator<Item = &'a f32>) -> usize {
    samples.take_while(|s| s.abs() < 0.01).count()
}

/// The most tokens to decode for `samples` of speech.
fn max_tokens(samples: usize) -> usize {
    (samples as f32 / SAMPLE_RATE as f32 * TOKENS_PER_SECOND) as usize + EXTRA_TOKENS
}

fn argmax(values: &[f32]) -> i64 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_raise_the_start_of_a_hint_and_its_continuation_once() {
        // Two hints sharing their first token (as "▁T" starts " Tuesday" and " Thursday").
        let hints = Hints {
            sequences: vec![vec![5, 6, 7], vec![5, 8]],
            openers: vec![5],
        };
        let mut logits = vec![0.0; 10];
        hints.bias(&[1, 2], &mut logits);
        assert_eq!(
            logits[5], HINT_BIAS,
            "an opener shared by two hints is raised once"
        );
        assert_eq!(logits[6], 0.0, "no continuation before the hint has begun");
        let mut logits = vec![0.0; 10];
        hints.bias(&[1, 5, 6], &mut logits);
        assert_eq!(
            logits[7], HINT_BIAS,
            "continues the hint the transcript is in"
        );
        assert_eq!(logits[8], 0.0, "not the other hint's continuation");
        // A token past the vocabulary is ignored rather than written out of bounds.
        let hints = Hints {
            sequences: vec![vec![42]],
            openers: vec![42],
        };
        let mut logits = vec![0.0; 10];
        hints.bias(&[], &mut logits);
        assert!(logits.iter().all(|l| *l == 0.0));
        // A hint with a generic first piece is favoured only once begun.
        let hints = Hints {
            sequences: vec![vec![3, 4]],
            openers: vec![],
        };
        let mut logits = vec![0.0; 10];
        hints.bias(&[1], &mut logits);
        assert!(logits.iter().all(|l| *l == 0.0));
        hints.bias(&[1, 3], &mut logits);
        assert_eq!(logits[4], HINT_BIAS);
    }
}
