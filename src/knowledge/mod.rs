//! The knowledge base: uploaded PDF and DOCX documents become passages with embeddings that
//! agents search during calls.
//!
//! Upload stores the file and a `pending` document; the [`worker`] extracts its text
//! ([`extract`], in a child process under limits: [`sandbox`], with [`guard`]'s checks of PDFs
//! inside), cuts it into passages ([`chunk`]), embeds them with MiniLM on the inference
//! pool and stores them; [`index`] searches them in memory. [`KnowledgeBase`] ties these to the
//! database and the models for the API and for calls.

pub mod chunk;
pub mod extract;
pub mod guard;
pub mod index;
pub mod sandbox;
pub mod worker;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::domain::TenantId;
use crate::models::{ModelError, SpeechModels};
use crate::store::knowledge::{self as store, ChunkRow};
use crate::store::{Db, StoreError};
use index::KnowledgeIndex;

/// The most passages a search returns.
pub const MAX_TOP_K: usize = 20;

/// How many passages a caller's turn is given.
pub const CALL_TOP_K: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the knowledge search failed: {0}")]
    Search(String),
}

/// A passage found by a search.
#[derive(Debug, Clone)]
pub struct Passage {
    pub chunk: ChunkRow,
    pub score: f32,
}

/// The knowledge base's shared handle: cheap to clone.
#[derive(Clone)]
pub struct KnowledgeBase {
    db: Db,
    speech: Arc<SpeechModels>,
    index: Arc<KnowledgeIndex>,
    /// Wakes the worker when a document is uploaded.
    wake: Arc<Notify>,
    /// Reads documents in child processes.
    sandbox: Arc<sandbox::Sandbox>,
}

impl KnowledgeBase {
    pub fn new(
        db: Db,
        speech: Arc<SpeechModels>,
        extraction: &crate::config::ExtractionSettings,
    ) -> Self {
        Self {
            db,
            speech,
            index: Arc::new(KnowledgeIndex::new()),
            wake: Arc::new(Notify::new()),
            sandbox: Arc::new(sandbox::Sandbox::new(extraction)),
        }
    }

    /// Tells the worker there is a document to process.
    pub fn notify_upload(&self) {
        self.wake.notify_one();
    }

    /// Brings the tenant's passages into memory (before a call's first question).
    pub async fn warm(&self, tenant: TenantId) -> Result<(), KnowledgeError> {
        self.index.refresh(&self.db, tenant).await?;
        Ok(())
    }

    /// The embeddings of `texts`, in order (the model the passages are indexed with).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let models = self.speech.get().await?;
        let vectors = self
            .speech
            .pool()
            .run(move || {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                models.embeddings.embed_batch(&texts)
            })
            .await??;
        Ok(vectors)
    }

    /// The `top_k` passages of the tenant's ready documents (only `documents`, when given) most
    /// similar to `query`, best first.
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        documents: Option<&[i64]>,
        top_k: usize,
    ) -> Result<Vec<Passage>, KnowledgeError> {
        let top_k = top_k.min(MAX_TOP_K);
        if top_k == 0 || documents.is_some_and(|d| d.is_empty()) || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.index.refresh(&self.db, tenant).await?;
        if self.index.len(tenant) == 0 {
            return Ok(Vec::new());
        }
        let models = self.speech.get().await?;
        let text = query.to_owned();
        let vector = self
            .speech
            .pool()
            .run(move || models.embeddings.embed(&text))
            .await??;
        let filter: Option<HashSet<i64>> = documents.map(|d| d.iter().copied().collect());
        let index = Arc::clone(&self.index);
        // An exhaustive scan takes milliseconds at 100k passages: off the async workers.
        let hits = tokio::task::spawn_blocking(move || {
            index.search(tenant, &vector, filter.as_ref(), top_k)
        })
        .await
        .map_err(|e| KnowledgeError::Search(e.to_string()))?;
        let ids: Vec<i64> = hits.iter().map(|h| h.chunk).collect();
        let rows = store::chunks(&self.db, tenant, &ids).await?;
        // A document deleted between the search and the read simply drops out.
        Ok(rows
            .into_iter()
            .filter_map(|chunk| {
                let score = hits.iter().find(|h| h.chunk == chunk.id)?.score;
                Some(Passage { chunk, score })
            })
            .collect())
    }
}
