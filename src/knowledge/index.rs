//! The in-process search index: every ready chunk's embedding, per tenant, in one contiguous
//! matrix, searched exhaustively (exact cosine similarity: the embeddings are L2-normalised, so
//! it is a dot product).
//!
//! The database is the truth and the index a cache of it. Before each search the tenant's entry
//! is reconciled with the list of ready documents (one indexed query): documents that became
//! ready, here or in another engine process on the same PostgreSQL, are loaded, and deleted ones
//! dropped. So the index needs no rebuild step and is never stale, and a fresh process fills it
//! on first use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::domain::TenantId;
use crate::models::minilm::DIMENSIONS;
use crate::store::knowledge as store;
use crate::store::{Db, StoreResult};

/// A search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub chunk: i64,
    pub document: i64,
    pub score: f32,
}

/// One tenant's chunks.
#[derive(Debug, Default)]
pub struct Matrix {
    /// `DIMENSIONS` floats a chunk.
    vectors: Vec<f32>,
    chunks: Vec<i64>,
    documents: Vec<i64>,
    /// Each document's rows: they are contiguous (a document is added whole and removals keep
    /// the order), so a search of a few documents scans only theirs.
    spans: HashMap<i64, std::ops::Range<usize>>,
    /// The version (`updated_at`) of each document held.
    versions: BTreeMap<i64, String>,
}

impl Matrix {
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Adds a document's chunks.
    pub fn add(&mut self, document: i64, chunks: &[(i64, Vec<f32>)]) {
        debug_assert!(!self.spans.contains_key(&document));
        let start = self.chunks.len();
        self.spans.insert(document, start..start + chunks.len());
        for (id, vector) in chunks {
            debug_assert_eq!(vector.len(), DIMENSIONS);
            self.vectors.extend_from_slice(vector);
            self.chunks.push(*id);
            self.documents.push(document);
        }
    }

    /// Removes documents' chunks (one pass over the matrix).
    pub fn remove(&mut self, gone: &HashSet<i64>) {
        if gone.is_empty() {
            return;
        }
        let mut write = 0;
        for read in 0..self.chunks.len() {
            if gone.contains(&self.documents[read]) {
                continue;
            }
            if read != write {
                self.chunks[write] = self.chunks[read];
                self.documents[write] = self.documents[read];
                self.vectors.copy_within(
                    read * DIMENSIONS..(read + 1) * DIMENSIONS,
                    write * DIMENSIONS,
                );
            }
            write += 1;
        }
        self.chunks.truncate(write);
        self.documents.truncate(write);
        self.vectors.truncate(write * DIMENSIONS);
        for id in gone {
            self.versions.remove(id);
        }
        self.spans.clear();
        let mut start = 0;
        for row in 1..=self.documents.len() {
            if row == self.documents.len() || self.documents[row] != self.documents[start] {
                self.spans.insert(self.documents[start], start..row);
                start = row;
            }
        }
    }

    /// The `top_k` chunks most similar to `query`, best first, among `documents` (all when
    /// `None`).
    pub fn search(
        &self,
        query: &[f32],
        documents: Option<&HashSet<i64>>,
        top_k: usize,
    ) -> Vec<Hit> {
        if top_k == 0 || query.len() != DIMENSIONS {
            return Vec::new();
        }
        let everything = std::iter::once(0..self.chunks.len());
        let rows: Vec<std::ops::Range<usize>> = match documents {
            None => everything.collect(),
            Some(wanted) => wanted
                .iter()
                .filter_map(|d| self.spans.get(d).cloned())
                .collect(),
        };
        // The best `top_k` so far, worst first: a small sorted buffer beats a heap at these sizes.
        let mut best: Vec<Hit> = Vec::with_capacity(top_k + 1);
        for row in rows.into_iter().flatten() {
            let document = self.documents[row];
            let vector = &self.vectors[row * DIMENSIONS..(row + 1) * DIMENSIONS];
            let score = dot(query, vector);
            if best.len() == top_k && score <= best[0].score {
                continue;
            }
            let at = best.partition_point(|h| h.score < score);
            best.insert(
                at,
                Hit {
                    chunk: self.chunks[row],
                    document,
                    score,
                },
            );
            if best.len() > top_k {
                best.remove(0);
            }
        }
        best.reverse();
        best
    }
}

/// The dot product, in eight independent lanes so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len().min(b.len()));
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Every tenant's matrix.
#[derive(Default)]
pub struct KnowledgeIndex {
    tenants: RwLock<HashMap<TenantId, Arc<RwLock<Matrix>>>>,
}

impl KnowledgeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn matrix(&self, tenant: TenantId) -> Arc<RwLock<Matrix>> {
        if let Some(m) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
        {
            return Arc::clone(m);
        }
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(tenants.entry(tenant).or_default())
    }

    /// Brings the tenant's matrix in line with its ready documents in the database.
    pub async fn refresh(&self, db: &Db, tenant: TenantId) -> StoreResult<()> {
        let ready: BTreeMap<i64, String> = store::ready(db, tenant).await?.into_iter().collect();
        let matrix = self.matrix(tenant);
        let (gone, missing) = {
            let m = matrix.read().unwrap_or_else(|p| p.into_inner());
            let gone: HashSet<i64> = m
                .versions
                .iter()
                .filter(|(id, version)| ready.get(id) != Some(version))
                .map(|(id, _)| *id)
                .collect();
            let missing: Vec<(i64, String)> = ready
                .iter()
                .filter(|(id, version)| m.versions.get(id) != Some(version))
                .map(|(id, v)| (*id, v.clone()))
                .collect();
            (gone, missing)
        };
        if gone.is_empty() && missing.is_empty() {
            return Ok(());
        }
        let mut loaded = Vec::with_capacity(missing.len());
        for (id, version) in missing {
            loaded.push((id, version, store::vectors(db, id).await?));
        }
        let mut m = matrix.write().unwrap_or_else(|p| p.into_inner());
        m.remove(&gone);
        for (id, version, chunks) in loaded {
            // Another refresh may have loaded it meanwhile.
            if m.versions.get(&id) == Some(&version) {
                continue;
            }
            m.remove(&HashSet::from([id]));
            m.add(id, &chunks);
            m.versions.insert(id, version);
        }
        Ok(())
    }

    /// Searches the tenant's chunks as they are in memory (call [`KnowledgeIndex::refresh`]
    /// first).
    pub fn search(
        &self,
        tenant: TenantId,
        query: &[f32],
        documents: Option<&HashSet<i64>>,
        top_k: usize,
    ) -> Vec<Hit> {
        let matrix = self.matrix(tenant);
        let m = matrix.read().unwrap_or_else(|p| p.into_inner());
        m.search(query, documents, top_k)
    }

    /// How many chunks the tenant has in memory.
    pub fn len(&self, tenant: TenantId) -> usize {
        self.matrix(tenant)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut v: Vec<f32> = (0..DIMENSIONS)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn naive(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn dot_matches_the_naive_sum() {
        let (a, b) = (unit(1), unit(2));
        assert!((dot(&a, &b) - naive(&a, &b)).abs() < 1e-5);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
    }

    #[test]
    fn search_ranks_by_cosine_and_filters_documents() {
        let mut m = Matrix::default();
        let chunks: Vec<(i64, Vec<f32>)> = (0..50).map(|i| (i, unit(i as u64))).collect();
        m.add(1, &chunks[..25]);
        m.add(2, &chunks[25..]);
        let query = unit(30);
        let hits = m.search(&query, None, 5);
        assert_eq!(hits.len(), 5);
        assert_eq!((hits[0].chunk, hits[0].document), (30, 2));
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        // The same order as sorting every score.
        let mut all: Vec<(f32, i64)> = chunks
            .iter()
            .map(|(id, v)| (naive(&query, v), *id))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let expected: Vec<i64> = all.iter().take(5).map(|(_, id)| *id).collect();
        assert_eq!(hits.iter().map(|h| h.chunk).collect::<Vec<_>>(), expected);

        let only_first = HashSet::from([1]);
        let hits = m.search(&query, Some(&only_first), 3);
        assert!(hits.iter().all(|h| h.document == 1 && h.chunk < 25));

        m.remove(&HashSet::from([1]));
        assert_eq!(m.len(), 25);
        let hits = m.search(&unit(40), None, 1);
        assert_eq!(
            (hits[0].chunk, hits[0].document),
            (40, 2),
            "rows moved by a removal keep their vectors"
        );
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        assert!(m.search(&query, None, 0).is_empty());
    }
}
