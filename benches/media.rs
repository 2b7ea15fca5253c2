//! Per-frame cost of the caller's side of a call: µ-law decode + voice activity + endpointing,
//! for one 20 ms frame at 8 kHz, with each detector. A call receives 50 frames a second, so the
//! share of one core a call takes is (time per frame) / 20 ms.
//!
//! - `media/frame/*_speech`: a frame of a spoken fixture (cycled) through the whole caller path,
//!   with WebRTC's detector, gated Silero (the default) and Silero on every window;
//! - `media/frame/silero_gated_quiet`: the same on a quiet line, where the gate spares Silero;
//! - `media/decode`: decoding one frame alone: µ-law (8 kHz) and Opus (16 kHz, the browser
//!   protocol);
//! - `media/encode/opus_frame`: coding 20 ms of the agent's speech as Opus for a browser.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use callgenius::media::codec::{LineDecoder, LineEncoder, OPUS_RATE};
use callgenius::media::protocol::{Codec, LineFormat};
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
    let mut samples = Vec::with_capacity(320);
    let mut group = c.benchmark_group("media/decode");
    group.throughput(Throughput::Elements(1));
    let mut ulaw = LineDecoder::new(LineFormat::MULAW_8K).unwrap();
    group.bench_function("ulaw_frame", |b| {
        b.iter(|| {
            samples.clear();
            ulaw.decode(black_box(&frames[100]), &mut samples).unwrap();
        })
    });
    // The browser path: the same speech as 20 ms Opus packets at 16 kHz, decoded in order.
    let opus = LineFormat {
        codec: Codec::Opus,
        sample_rate: OPUS_RATE,
    };
    let speech: Vec<f32> = frames
        .iter()
        .flatten()
        .map(|&code| f32::from(g711::ulaw_to_linear(code)) / 32_768.0)
        .collect();
    let speech = resample(&speech, 8_000, OPUS_RATE).unwrap();
    let mut packets = Vec::new();
    LineEncoder::new(opus)
        .unwrap()
        .encode(&speech, &mut packets)
        .unwrap();
    let mut decoder = LineDecoder::new(opus).unwrap();
    let mut next = 0;
    group.bench_function("opus_frame", |b| {
        b.iter(|| {
            samples.clear();
            decoder.decode(&packets[next], &mut samples).unwrap();
            next = (next + 1) % packets.len();
        })
    });
    group.finish();

    // The agent's side for the browser: 20 ms of speech to one Opus packet.
    let mut group = c.benchmark_group("media/encode");
    group.throughput(Throughput::Elements(1));
    let mut encoder = LineEncoder::new(opus).unwrap();
    let mut out = Vec::with_capacity(1);
    let mut next = 0;
    group.bench_function("opus_frame", |b| {
        b.iter(|| {
            out.clear();
            let frame = &speech[next * 320..(next + 1) * 320];
            encoder.encode(black_box(frame), &mut out).unwrap();
            next = (next + 1) % (speech.len() / 320);
        })
    });
    group.finish();
}

criterion_group!(benches, frame_cost, decode);
criterion_main!(benches);
