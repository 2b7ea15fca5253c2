//! Speed of the offline models on this machine (needs `./scripts/fetch-models`):
//! - `models/stt`: Moonshine on a 3.6 s utterance (real-time factor = time / 3.6 s);
//! - `models/stt_input`: an 8 kHz telephone utterance to the model's input
//!   (`pipeline::speech_input`), on a clean line (resampling only) and a noisy one (noise
//!   suppression too), beside resampling alone; throughput in line samples, 8,000 a second;
//! - `models/tts_first_clause`: Piper's first clause of a short reply, the wait before an agent
//!   can start speaking;
//! - `models/silero`: one 32 ms VAD window at 16 kHz and at 8 kHz;
//! - `models/embedding`: one sentence through MiniLM.

use std::hint::black_box;
use std::path::Path;

use callgenius::models::silero::SileroStream;
use callgenius::models::{Models, moonshine, piper};
use callgenius::pipeline::{self, resample::resample, wav};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn load() -> Models {
    Models::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models")).expect("models installed")
}

fn stt(c: &mut Criterion) {
    let models = load();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/s2-piper-joe-8k-ulaw.wav");
    let audio = wav::read(&path).unwrap();
    let input = pipeline::speech_input(&audio.samples, audio.sample_rate).unwrap();
    let mut group = c.benchmark_group("models/stt");
    group.sample_size(20);
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function(
        format!("moonshine_{:.1}s_utterance", audio.seconds()),
        |b| b.iter(|| models.stt.transcribe(black_box(&input)).unwrap()),
    );
    group.finish();

    // Cost against utterance length: what transcribing only the tail of an utterance, after
    // transcribing its start while the caller still speaks, could save.
    let mut group = c.benchmark_group("models/stt_by_length");
    group.sample_size(10);
    for seconds in [1usize, 2, 4, 8] {
        let clip: Vec<f32> = input
            .iter()
            .copied()
            .cycle()
            .take(seconds * 16_000)
            .collect();
        group.throughput(Throughput::Elements(clip.len() as u64));
        group.bench_function(format!("{seconds}s"), |b| {
            b.iter(|| models.stt.transcribe(black_box(&clip)).unwrap())
        });
    }
    group.finish();
}

fn stt_input(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hearing");
    let mut group = c.benchmark_group("models/stt_input");
    for line in ["8k-ulaw", "8k-noisy"] {
        let audio = wav::read(&dir.join(format!("h08-festival-slt-{line}.wav"))).unwrap();
        group.throughput(Throughput::Elements(audio.samples.len() as u64));
        group.bench_function(format!("{line}_speech_input"), |b| {
            b.iter(|| pipeline::speech_input(black_box(&audio.samples), 8_000).unwrap())
        });
        group.bench_function(format!("{line}_resample_only"), |b| {
            b.iter(|| resample(black_box(&audio.samples), 8_000, moonshine::SAMPLE_RATE).unwrap())
        });
    }
    group.finish();
}

fn tts(c: &mut Criterion) {
    let models = load();
    let voice = models.voices.get("joe").unwrap();
    let reply = "Sure, I can book that for you. What name should I put it under?";
    let first = piper::clauses(reply).remove(0);
    let mut group = c.benchmark_group("models/tts_first_clause");
    group.sample_size(20);
    group.bench_function(format!("piper_{first:?}"), |b| {
        b.iter(|| voice.synthesize_clause(black_box(&first)).unwrap())
    });
    let long = piper::clauses(reply).remove(1);
    group.bench_function(format!("piper_{long:?}"), |b| {
        b.iter(|| voice.synthesize_clause(black_box(&long)).unwrap())
    });
    group.finish();
}

fn silero(c: &mut Criterion) {
    let models = load();
    let mut group = c.benchmark_group("models/silero");
    for rate in [16_000, 8_000] {
        let mut stream = SileroStream::new(rate).unwrap();
        let window: Vec<f32> = (0..stream.window())
            .map(|i| (i as f32 * 0.05).sin() * 0.3)
            .collect();
        group.throughput(Throughput::Elements(window.len() as u64));
        group.bench_function(format!("window_32ms_{}khz", rate / 1000), |b| {
            b.iter(|| {
                models
                    .vad
                    .probability(&mut stream, black_box(&window))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn embedding(c: &mut Criterion) {
    let models = load();
    let mut group = c.benchmark_group("models/embedding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("minilm_sentence", |b| {
        b.iter(|| {
            models
                .embeddings
                .embed(black_box("Do you have any availability tomorrow morning?"))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, stt, stt_input, tts, silero, embedding);
criterion_main!(benches);
