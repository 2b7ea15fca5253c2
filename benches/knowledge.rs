//! The knowledge base's speed on this machine (needs `./scripts/fetch-models`):
//! - `knowledge/ingest`: a fixture document extracted, cut into passages (token counts with the
//!   MiniLM tokenizer) and embedded in batches of 8, as the worker does; throughput in pages;
//! - `knowledge/extract`: text extraction alone, in this process;
//! - `knowledge/extract-in-child`: the same through the engine's child process
//!   (`callgenius extract-document` under its limits), as the worker runs it: the difference is
//!   what reading uploads in a child costs per document;
//! - `knowledge/search`: one query against 10k and 100k passages (exhaustive cosine over the
//!   in-memory matrix, top 5), over all of a tenant's documents and over one agent's two.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;

use callgenius::config::ExtractionSettings;
use callgenius::knowledge::chunk::{self, ChunkParams};
use callgenius::knowledge::extract;
use callgenius::knowledge::index::Matrix;
use callgenius::knowledge::sandbox::Sandbox;
use callgenius::models::Models;
use callgenius::models::minilm::{DIMENSIONS, MiniLm};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/knowledge")
            .join(name),
    )
    .expect("fixtures/knowledge (fixtures/make-knowledge-fixtures)")
}

/// What the worker does to a document, synchronously.
fn ingest(bytes: &[u8], embedder: &MiniLm) -> usize {
    let extracted = extract::extract(bytes).expect("extractable fixture");
    let chunks = chunk::chunk(&extracted.blocks, ChunkParams::default(), |t| {
        embedder.count_tokens(t).unwrap_or(0)
    });
    let mut vectors = 0;
    for batch in chunks.chunks(8) {
        let texts: Vec<String> = batch.iter().map(chunk::Chunk::embedding_text).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        vectors += embedder.embed_batch(&refs).unwrap().len();
    }
    vectors
}

fn ingestion(c: &mut Criterion) {
    let models = Models::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .expect("models installed");
    let mut group = c.benchmark_group("knowledge/ingest");
    group.sample_size(10);
    for name in ["menu.pdf", "clinic-faq.docx"] {
        let bytes = fixture(name);
        let pages = extract::extract(&bytes).unwrap().pages;
        group.throughput(Throughput::Elements(u64::from(pages)));
        group.bench_function(name, |b| {
            b.iter(|| ingest(black_box(&bytes), &models.embeddings))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("knowledge/extract");
    for name in ["menu.pdf", "clinic-faq.docx"] {
        let bytes = fixture(name);
        let pages = extract::extract(&bytes).unwrap().pages;
        group.throughput(Throughput::Elements(u64::from(pages)));
        group.bench_function(name, |b| b.iter(|| extract::extract(black_box(&bytes))));
    }
    group.finish();

    let sandbox = Sandbox::new(&ExtractionSettings {
        program: Some(env!("CARGO_BIN_EXE_callgenius").into()),
        ..ExtractionSettings::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("knowledge/extract-in-child");
    group.sample_size(20);
    for name in ["menu.pdf", "clinic-faq.docx"] {
        let bytes = fixture(name);
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter_batched(
                || bytes.clone(),
                |bytes| runtime.block_on(sandbox.extract(bytes)).expect("extracted"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A unit vector from a seed (a cheap LCG: the search cost does not depend on the values).
fn unit(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..DIMENSIONS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn search(c: &mut Criterion) {
    let mut group = c.benchmark_group("knowledge/search");
    for size in [10_000usize, 100_000] {
        // Documents of 100 passages each.
        let mut matrix = Matrix::default();
        for doc in 0..(size / 100) as i64 {
            let chunks: Vec<(i64, Vec<f32>)> = (0..100)
                .map(|i| (doc * 100 + i, unit((doc * 100 + i) as u64)))
                .collect();
            matrix.add(doc, &chunks);
        }
        let query = unit(u64::MAX / 3);
        group.bench_function(format!("{size}_passages_all"), |b| {
            b.iter(|| matrix.search(black_box(&query), None, 5))
        });
        let agent = HashSet::from([3, 7]);
        group.bench_function(format!("{size}_passages_two_documents"), |b| {
            b.iter(|| matrix.search(black_box(&query), Some(&agent), 5))
        });
    }
    group.finish();
}

criterion_group!(benches, ingestion, search);
criterion_main!(benches);
