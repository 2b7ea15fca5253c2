//! Per-frame cost of the caller's side of a call: µ-law decode + voice activity + endpointing,
//! for one 20 ms frame at 8 kHz, with each detector. A call receives 50 frames a second, so the
//! share of one core a call takes is (time per frame) / 20 ms.
//!
//! - `media/frame/*_speech`: a frame of a spoken fixture (cycled) through the whole caller path,
//!   with WebRTC's detector, gated Silero (the default) and Silero on every window;
//! - `media/frame/silero_gated_quiet`: the same on a quiet line, where the gate spares Silero;
//! - `media/decode`: µ-law decode alone.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use callgenius::models::Models;
use callgenius::pipeline::endpoint::{EndpointConfig, Endpointer};
use callgenius::pipeline::vad::{Aggressiveness, SileroVad, VoiceActivity, WebrtcVad};
use callgenius::pipeline::{g711, resample::resample, wav};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The fixture as 20 ms µ-law frames at 8 kHz.
fn frames() -> Vec<[u8; 160]> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/s1-piper-joe-16k.wav");
    let audio = wav::read(&path).unwrap();
    let line = resample(&audio.samples, audio.sample_rate, 8_000).unwrap();
    let mut padded: Vec<u8> = vec![0xFF; 8_000];
    padded.extend(line.iter().map(|&s| g711::linear_to_ulaw(wav::to_i16(s))));
    padded.extend(vec![0xFF; 8_000]);
    padded
        .chunks_exact(160)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// 20 ms frames of a quiet line (faint hiss, as a phone line has between words).
fn quiet_frames() -> Vec<[u8; 160]> {
    let mut seed = 7u32;
    (0..200)
        .map(|_| {
            std::array::from_fn(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let hiss = ((seed >> 16) as f32 / 65_536.0 - 0.5) * 0.002;
                g711::linear_to_ulaw(wav::to_i16(hiss))
            })
        })
        .collect()
}

fn caller_path<V: VoiceActivity>(c: &mut Criterion, name: &str, frames: Vec<[u8; 160]>, vad: V) {
    let mut endpointer = Endpointer::new(vad, 8_000, EndpointConfig::default());
    let mut samples = vec![0.0f32; 160];
    let mut events = Vec::with_capacity(4);
    let mut group = c.benchmark_group("media/frame");
    group.throughput(Throughput::Elements(1));
    let mut next = frames.iter().cycle();
    group.bench_function(name, |b| {
        b.iter(|| {
            let frame = next.next().unwrap();
            for (out, &code) in samples.iter_mut().zip(frame.iter()) {
                *out = f32::from(g711::ulaw_to_linear(code)) / 32_768.0;
            }
            endpointer.push(black_box(&samples), &mut events).unwrap();
            events.clear();
        })
    });
    group.finish();
}

fn frame_cost(c: &mut Criterion) {
    let webrtc = WebrtcVad::new(8_000, Aggressiveness::default()).unwrap();
    caller_path(c, "webrtc_speech", frames(), webrtc);
    let models = Models::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models")).unwrap();
    let silero = || SileroVad::new(Arc::clone(&models.vad), 8_000).unwrap();
    caller_path(c, "silero_gated_speech", frames(), silero());
    caller_path(c, "silero_gated_quiet", quiet_frames(), silero());
    let ungated = SileroVad::ungated(Arc::clone(&models.vad), 8_000).unwrap();
    caller_path(c, "silero_ungated_speech", frames(), ungated);
}

fn decode(c: &mut Criterion) {
    let frames = frames();
    let mut samples = vec![0.0f32; 160];
    let mut group = c.benchmark_group("media/decode");
    group.throughput(Throughput::Elements(160));
    group.bench_function("ulaw_frame", |b| {
        b.iter(|| {
            for (out, &code) in samples.iter_mut().zip(black_box(&frames[100]).iter()) {
                *out = f32::from(g711::ulaw_to_linear(code)) / 32_768.0;
            }
        })
    });
    group.finish();
}

criterion_group!(benches, frame_cost, decode);
criterion_main!(benches);
