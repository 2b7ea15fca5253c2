//! Stationary line-noise suppression for a whole utterance before speech to text.
//!
//! The clip is cut into 32 ms frames overlapping by half, each weighted by a square-root Hann
//! window, and taken to the frequency domain. The noise spectrum is the mean power of the
//! quietest tenth of the frames (an utterance from the endpointer has its pre-roll and trailing
//! quiet, where only the line is heard). Each bin then gets a Wiener gain from the
//! decision-directed a-priori signal-to-noise ratio (Ephraim and Malah, 1984), which follows speech
//! onsets at once but smooths the gain over time where there is only noise, so the residue stays
//! a low steady hiss rather than warbling tones; the gain never goes below [`GAIN_FLOOR_DB`].
//! The frames are windowed again and overlap-added (the two square-root Hann windows sum to one
//! at this overlap, so a gain of one everywhere gives the input back).
//!
//! A clip whose quietest frame is below [`NOISE_GATE_DBFS`] is on a line with no noise worth
//! removing and is returned untouched, bit for bit.

use std::borrow::Cow;
use std::f32::consts::PI;

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;

/// Frame length: 32 ms, long enough to resolve the harmonics of a voice.
const FRAME_MS: u32 = 32;
/// The share of frames, quietest first, that estimate the noise spectrum.
const NOISE_SHARE: f32 = 0.1;
/// A clip with a frame quieter than this is on a clean line (a telephone channel's idle noise
/// is about -70 dBFS): nothing is done.
pub const NOISE_GATE_DBFS: f32 = -60.0;
/// The most a bin is attenuated. Deeper suppression distorts the speech it leaves; on the
/// hearing fixtures' noisy line -20, -25 and -30 dB did equally well, -10 and -15 dB worse.
pub const GAIN_FLOOR_DB: f32 = -20.0;
/// Weight of the previous frame's speech estimate in the a-priori SNR (the usual 0.98).
const SMOOTHING: f32 = 0.98;

/// Suppresses stationary noise in mono `audio` at `sample_rate` Hz. Returns the input itself
/// when the line is quiet between words or the clip is shorter than two frames.
pub fn suppress_noise(audio: &[f32], sample_rate: u32) -> Cow<'_, [f32]> {
    let frame = ((sample_rate * FRAME_MS / 1000) as usize).next_multiple_of(2);
    let hop = frame / 2;
    if frame < 4 || audio.len() < 2 * frame {
        return Cow::Borrowed(audio);
    }
    // Half a frame of zeros before and enough after, so that every sample lies under two frames.
    let padded_len = (audio.len() + frame).next_multiple_of(hop);
    let mut padded = vec![0.0f32; padded_len];
    padded[hop..hop + audio.len()].copy_from_slice(audio);
    let frames = (padded_len - frame) / hop + 1;

    // Quietest frames by their mean power (of the samples, unwindowed), of those wholly inside
    // the clip: the first and last frames are half padding.
    let mut powers: Vec<(f32, usize)> = (1..frames)
        .take_while(|f| f * hop + frame <= hop + audio.len())
        .map(|f| {
            let s = &padded[f * hop..f * hop + frame];
            (s.iter().map(|x| x * x).sum::<f32>() / frame as f32, f)
        })
        .collect();
    powers.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Stationary noise is under every frame, so the quietest frame bounds it (as in minimum
    // statistics): one frame of true silence means a clean line, even in a clip that is speech
    // almost throughout, whose quietest tenth would be weak speech, not noise.
    if 10.0 * powers[0].0.max(1e-20).log10() < NOISE_GATE_DBFS {
        return Cow::Borrowed(audio);
    }
    let quiet = &powers[..((powers.len() as f32 * NOISE_SHARE).ceil() as usize).max(1)];

    let mut planner = RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(frame);
    let inverse = planner.plan_fft_inverse(frame);
    let mut scratch = forward.make_scratch_vec();
    scratch.resize(
        scratch.len().max(inverse.get_scratch_len()),
        Complex::default(),
    );
    // Periodic square-root Hann: analysis and synthesis windows multiply to a Hann window, whose
    // copies a half frame apart add up to one.
    let window: Vec<f32> = (0..frame)
        .map(|i| (PI * i as f32 / frame as f32).sin())
        .collect();
    let bins = frame / 2 + 1;
    let mut spectra = vec![Complex::<f32>::default(); frames * bins];
    let mut buffer = forward.make_input_vec();
    for (f, spectrum) in spectra.chunks_exact_mut(bins).enumerate() {
        for ((b, x), w) in buffer.iter_mut().zip(&padded[f * hop..]).zip(&window) {
            *b = x * w;
        }
        forward
            .process_with_scratch(&mut buffer, spectrum, &mut scratch)
            .expect("buffers sized by the plan");
    }

    let mut noise = vec![0.0f32; bins];
    for &(_, f) in quiet {
        for (n, x) in noise.iter_mut().zip(&spectra[f * bins..(f + 1) * bins]) {
            *n += x.norm_sqr();
        }
    }
    for n in &mut noise {
        *n = (*n / quiet.len() as f32).max(1e-20);
    }

    let floor = 10f32.powf(GAIN_FLOOR_DB / 20.0);
    let mut previous = vec![0.0f32; bins];
    let mut output = vec![0.0f32; padded_len];
    for (f, spectrum) in spectra.chunks_exact_mut(bins).enumerate() {
        for ((x, n), prev) in spectrum.iter_mut().zip(&noise).zip(&mut previous) {
            let posterior = x.norm_sqr() / n;
            let prior = SMOOTHING * *prev + (1.0 - SMOOTHING) * (posterior - 1.0).max(0.0);
            let gain = (prior / (1.0 + prior)).max(floor);
            *prev = gain * gain * posterior;
            *x *= gain;
        }
        inverse
            .process_with_scratch(spectrum, &mut buffer, &mut scratch)
            .expect("buffers sized by the plan");
        for ((o, b), w) in output[f * hop..].iter_mut().zip(&buffer).zip(&window) {
            *o += b * w / frame as f32;
        }
    }
    output.truncate(hop + audio.len());
    output.drain(..hop);
    Cow::Owned(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stand-in for white noise (a linear congruential generator), -1..1.
    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn power(samples: &[f32]) -> f32 {
        samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32
    }

    /// One second of quiet, one of a 440 Hz tone, one of quiet, at 8 kHz, with `hiss` of noise.
    fn tone_in_noise(hiss: f32) -> (Vec<f32>, Vec<f32>) {
        let rate = 8_000.0;
        let tone: Vec<f32> = (0..24_000)
            .map(|i| {
                if (8_000..16_000).contains(&i) {
                    0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / rate).sin()
                } else {
                    0.0
                }
            })
            .collect();
        let noisy = tone
            .iter()
            .zip(noise(tone.len(), 7))
            .map(|(t, n)| t + hiss * n)
            .collect();
        (tone, noisy)
    }

    #[test]
    fn a_clean_line_comes_back_untouched() {
        let (_, clean) = tone_in_noise(0.0001);
        let out = suppress_noise(&clean, 8_000);
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, &clean[..]);
        let short = noise(300, 1);
        assert!(matches!(suppress_noise(&short, 8_000), Cow::Borrowed(_)));
    }

    #[test]
    fn a_clip_that_is_sound_throughout_but_for_a_moment_of_silence_is_untouched() {
        // Loud everywhere (its quietest tenth is far above the gate) but with 50 ms of silence:
        // that silence shows a clean line.
        let mut clip: Vec<f32> = noise(16_000, 3).iter().map(|n| 0.2 * n).collect();
        clip[8_000..8_400].fill(0.0);
        assert!(matches!(suppress_noise(&clip, 8_000), Cow::Borrowed(_)));
    }

    #[test]
    fn hiss_is_lowered_and_the_speech_band_kept() {
        let (tone, noisy) = tone_in_noise(0.05);
        let out = suppress_noise(&noisy, 8_000);
        assert_eq!(out.len(), noisy.len());
        // The quiet second before the tone: the hiss is down by well over 10 dB.
        let before = power(&noisy[1_000..7_000]);
        let after = power(&out[1_000..7_000]);
        assert!(
            after < before / 10.0,
            "hiss {before:.2e} → {after:.2e} (power)"
        );
        // The tone itself: its error against the clean tone is smaller than the noise was.
        let error_before: Vec<f32> = noisy[9_000..15_000]
            .iter()
            .zip(&tone[9_000..15_000])
            .map(|(a, b)| a - b)
            .collect();
        let error_after: Vec<f32> = out[9_000..15_000]
            .iter()
            .zip(&tone[9_000..15_000])
            .map(|(a, b)| a - b)
            .collect();
        assert!(
            power(&error_after) < power(&error_before) / 2.0,
            "error {:.2e} → {:.2e}",
            power(&error_before),
            power(&error_after)
        );
        let kept = power(&out[9_000..15_000]) / power(&tone[9_000..15_000]);
        assert!((0.8..1.25).contains(&kept), "tone power kept {kept:.2}");
    }
}
