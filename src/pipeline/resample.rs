//! Sample-rate conversion of whole clips (an utterance, a synthesised clause) with rubato's
//! synchronous FFT resampler, which is both fast and high quality for fixed ratios.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

#[derive(Debug, thiserror::Error)]
#[error("cannot resample from {from} Hz to {to} Hz: {reason}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// Frames per FFT chunk.
const CHUNK: usize = 1024;

/// Resamples mono `input` from `from` Hz to `to` Hz, trimming the resampler's delay so that the
/// output lines up with the input.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let fail = |reason: String| ResampleError { from, to, reason };
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, CHUNK, 1, FixedSync::Input)
        .map_err(|e| fail(e.to_string()))?;
    let adapter = InterleavedSlice::new(input, 1, input.len()).map_err(|e| fail(e.to_string()))?;
    let output = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| fail(e.to_string()))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| (i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect()
    }

    /// The dominant frequency by counting rising zero crossings.
    fn frequency(samples: &[f32], rate: u32) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f32 * rate as f32 / samples.len() as f32
    }

    #[test]
    fn keeps_length_and_pitch_across_rates() {
        for (from, to) in [
            (8_000, 16_000),
            (22_050, 8_000),
            (44_100, 16_000),
            (16_000, 8_000),
        ] {
            let input = tone(from, 440.0, 1.0);
            let output = resample(&input, from, to).unwrap();
            let expected = (input.len() as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert!(
                output.len().abs_diff(expected) <= 2,
                "{from}→{to}: {} vs {expected}",
                output.len()
            );
            let hz = frequency(&output, to);
            assert!((hz - 440.0).abs() < 5.0, "{from}→{to}: {hz} Hz");
        }
    }

    #[test]
    fn same_rate_and_empty_input_pass_through() {
        assert_eq!(resample(&[0.1, 0.2], 8_000, 8_000).unwrap(), vec![0.1, 0.2]);
        assert!(resample(&[], 8_000, 16_000).unwrap().is_empty());
    }
}
