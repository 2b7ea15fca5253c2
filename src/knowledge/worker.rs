//! The background worker that turns pending documents into searchable passages.
//!
//! It claims one document at a time with a lease (see [`crate::store::knowledge`]) and keeps the
//! lease alive while it works. A document whose worker died (a crash, a kill, a power cut) is
//! claimed again once the lease runs out, by this process after a restart or by another engine
//! on the same PostgreSQL; after [`MAX_ATTEMPTS`] claims that never finished it is marked
//! `failed`, so no document stays `processing` for ever. Every way a file can be unreadable ends
//! in `failed` with a sentence that says why. Text is extracted in a child process
//! ([`super::sandbox`]); a file that crashes it or breaks its limits fails at once and for good
//! (it would do the same again), while a child that cannot be started leaves the document to
//! be claimed again, like an engine that stopped.

use std::time::Duration;

use super::KnowledgeBase;
use super::chunk::{self, ChunkParams};
use super::extract;
use super::sandbox::SandboxError;
use crate::store::knowledge::{self as store, Claim, NewChunk};

/// How long a claim holds without a heartbeat.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often the lease is renewed while a document is processed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// How often the queue is checked when nothing wakes the worker (documents uploaded through
/// another process, leases that ran out).
const POLL: Duration = Duration::from_secs(5);

/// Claims of one document that may end without a result before it is given up.
pub const MAX_ATTEMPTS: i64 = 3;

/// Passages embedded per inference job: small, so that calls' speech jobs queued behind a
/// document wait for one short batch at most.
const EMBED_BATCH: usize = 8;

/// Runs until the application stops.
pub async fn run(kb: KnowledgeBase) {
    loop {
        match store::claim(&kb.db, LEASE).await {
            Ok(Some(claim)) => process(&kb, claim).await,
            Ok(None) => {
                tokio::select! {
                    () = kb.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "knowledge worker: cannot claim a document");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(document_id = claim.id, attempt = claim.attempts))]
async fn process(kb: &KnowledgeBase, claim: Claim) {
    if claim.attempts > MAX_ATTEMPTS {
        let reason = format!(
            "processing was interrupted {MAX_ATTEMPTS} times before it finished (the engine \
             stopped or crashed while working on this file); upload it again to retry"
        );
        if let Err(error) = store::fail(&kb.db, &claim, &reason).await {
            tracing::warn!(%error, "knowledge worker: cannot mark the document failed");
        }
        return;
    }
    let started = std::time::Instant::now();
    let work = passages(kb, &claim);
    let heartbeat = async {
        let mut ticker = tokio::time::interval(HEARTBEAT);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match store::renew(&kb.db, &claim, LEASE).await {
                Ok(true) => {}
                // Deleted, or claimed again by another worker: stop.
                Ok(false) => return,
                Err(error) => tracing::warn!(%error, "knowledge worker: cannot renew the lease"),
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = heartbeat => {
            tracing::info!("document deleted or taken over while processing; stopped");
            return;
        }
    };
    let outcome = match outcome {
        Ok(done) => Ok(done),
        Err(Failure::Final(reason)) => Err(reason),
        Err(Failure::Retry(reason)) => {
            tracing::warn!(%reason, "knowledge worker: left for another attempt");
            return;
        }
    };
    let stored = match outcome {
        Ok((pages, chunks)) => {
            let count = chunks.len();
            let stored = store::complete(&kb.db, &claim, pages, &chunks).await;
            if matches!(stored, Ok(true)) {
                tracing::info!(
                    pages,
                    chunks = count,
                    ms = started.elapsed().as_millis() as u64,
                    "document indexed"
                );
            }
            stored
        }
        Err(reason) => {
            tracing::info!(%reason, "document failed");
            store::fail(&kb.db, &claim, &reason).await
        }
    };
    match stored {
        Ok(true) => {}
        Ok(false) => tracing::info!("document deleted or taken over while processing"),
        // The lease runs out and the document is claimed again.
        Err(error) => tracing::warn!(%error, "knowledge worker: cannot store the result"),
    }
}

/// Why a document was not processed.
enum Failure {
    /// The document fails with this sentence.
    Final(String),
    /// Not the document's fault (this machine could not start the reader): its lease lapses
    /// and it is claimed again, counting towards [`MAX_ATTEMPTS`].
    Retry(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Final(reason)
    }
}

/// Extracts, chunks and embeds a document: its page count and passages, or why it failed.
async fn passages(kb: &KnowledgeBase, claim: &Claim) -> Result<(i64, Vec<NewChunk>), Failure> {
    let bytes = store::bytes(&kb.db, claim.id)
        .await
        .map_err(|e| format!("the stored file could not be read: {e}"))?;
    // Untrusted files are parsed only in a child process under limits.
    let extracted = match kb.sandbox.extract(bytes).await {
        Ok(extracted) => extracted,
        Err(error @ SandboxError::Document(_)) => return Err(Failure::Final(error.to_string())),
        Err(SandboxError::Unsafe { reason }) => {
            tracing::warn!(%reason, "document could not be read safely");
            let error = SandboxError::Unsafe { reason };
            return Err(Failure::Final(error.to_string()));
        }
        Err(error @ SandboxError::Spawn(_)) => return Err(Failure::Retry(error.to_string())),
    };
    let models = kb
        .speech
        .get()
        .await
        .map_err(|e| format!("the embedding model is unavailable: {e}"))?;
    let embeddings = std::sync::Arc::clone(&models.embeddings);
    let pages = i64::from(extracted.pages);
    let chunks = tokio::task::spawn_blocking(move || {
        chunk::chunk(&extracted.blocks, ChunkParams::default(), |text| {
            embeddings
                .count_tokens(text)
                .unwrap_or_else(|_| text.split_whitespace().count() * 2)
        })
    })
    .await
    .map_err(|_| "the document's text could not be divided into passages".to_string())?;
    if chunks.is_empty() {
        return Err(extract::ExtractError::NoText.to_string().into());
    }
    let mut out = Vec::with_capacity(chunks.len());
    for batch in chunks.chunks(EMBED_BATCH) {
        let texts: Vec<String> = batch.iter().map(chunk::Chunk::embedding_text).collect();
        let embeddings = std::sync::Arc::clone(&models.embeddings);
        let vectors = kb
            .speech
            .pool()
            .run(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                embeddings.embed_batch(&refs)
            })
            .await
            .and_then(|r| r)
            .map_err(|e| format!("the passages could not be embedded: {e}"))?;
        for (chunk, embedding) in batch.iter().zip(vectors) {
            out.push(NewChunk {
                page: Some(i64::from(chunk.page)),
                heading: chunk.heading.clone(),
                text: chunk.text.clone(),
                tokens: chunk.tokens as i64,
                embedding,
            });
        }
    }
    Ok((pages, out))
}
