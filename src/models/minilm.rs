//! all-MiniLM-L6-v2 (int8) sentence embeddings: 384 dimensions, mean-pooled over the attention
//! mask, then L2-normalised, so the dot product of two embeddings is their cosine similarity.
//!
//! Tensors: `input_ids`, `attention_mask`, `token_type_ids` i64 [B, S] → `last_hidden_state` f32
//! [B, S, 384]. The shipped tokenizer pads and truncates to 128 tokens; here padding is off for
//! one text and to the longest text for a batch, and texts are truncated at [`MAX_TOKENS`] (the
//! window sentence-transformers uses for this model), so a knowledge chunk of that size is
//! embedded whole.

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{ModelError, runtime};

pub const DIMENSIONS: usize = 384;

/// The longest input embedded, special tokens included; longer texts are truncated.
pub const MAX_TOKENS: usize = 256;

pub struct MiniLm {
    session: Mutex<Session>,
    single: Tokenizer,
    batch: Tokenizer,
    /// Neither pads nor truncates: measures texts.
    counter: Tokenizer,
}

impl MiniLm {
    pub fn load(env: &Environment, dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        let load = |padding: Option<PaddingParams>, truncation: Option<TruncationParams>| {
            let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| ModelError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            tokenizer.with_padding(padding);
            tokenizer
                .with_truncation(truncation)
                .map_err(|e| ModelError::Load {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok::<_, ModelError>(tokenizer)
        };
        let truncate = || {
            Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            })
        };
        let longest = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        };
        Ok(Self {
            session: Mutex::new(runtime::session(env, &dir.join("model.onnx"))?),
            single: load(None, truncate())?,
            batch: load(Some(longest), truncate())?,
            counter: load(None, None)?,
        })
    }

    /// The embedding of one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let encoding = self.single.encode(text, true).map_err(tokenizer_error)?;
        let mut out = self.run(&[encoding])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// How many tokens `text` is, without the special tokens the model adds around it.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        let encoding = self.counter.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.len())
    }

    /// The embeddings of several texts, in order.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .batch
            .encode_batch(texts.to_vec(), true)
            .map_err(tokenizer_error)?;
        self.run(&encodings)
    }

    fn run(&self, encodings: &[tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, ModelError> {
        let err = ModelError::inference("minilm");
        let batch = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch * len);
        let mut mask = Vec::with_capacity(batch * len);
        let mut types = Vec::with_capacity(batch * len);
        for e in encodings {
            ids.extend(e.get_ids().iter().map(|&v| i64::from(v)));
            mask.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)));
            types.extend(e.get_type_ids().iter().map(|&v| i64::from(v)));
        }
        let shape = [batch, len];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, &ids[..])).map_err(&err)?,
                "attention_mask" => TensorRef::from_array_view((shape, &mask[..])).map_err(&err)?,
                "token_type_ids" => TensorRef::from_array_view((shape, &types[..])).map_err(&err)?,
            ])
            .map_err(&err)?;
        let (_, hidden) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(&err)?;
        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            // Mean pooling then L2 normalisation equals normalising the masked sum.
            let mut pooled = vec![0.0f32; DIMENSIONS];
            for t in (0..len).filter(|t| mask[b * len + t] != 0) {
                let row = &hidden[(b * len + t) * DIMENSIONS..][..DIMENSIONS];
                pooled.iter_mut().zip(row).for_each(|(p, h)| *p += h);
            }
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|v| *v /= norm);
            out.push(pooled);
        }
        Ok(out)
    }
}

fn tokenizer_error(error: impl std::fmt::Display) -> ModelError {
    ModelError::Inference {
        model: "minilm tokenizer",
        reason: error.to_string(),
    }
}

/// Cosine similarity of two L2-normalised embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
