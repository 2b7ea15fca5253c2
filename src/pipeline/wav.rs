//! WAV files: read any common WAV (8/16/24/32-bit PCM, 32-bit float, µ-law, A-law; any rate;
//! channels mixed down to mono) into samples in -1..1, and write 16-bit PCM.

use std::path::Path;

use super::g711;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a WAV file this engine reads: {reason}")]
    Format { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Mono audio in -1..1 and its sample rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    pub fn seconds(&self) -> f32 {
        self.samples.len() as f32 / self.sample_rate as f32
    }
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Reads a WAV file and mixes it down to mono.
pub fn read(path: &Path) -> Result<Audio, WavError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: name.clone(),
        source,
    })?;
    parse(&bytes).map_err(|reason| WavError::Format { path: name, reason })
}

/// Parses WAV bytes (RIFF chunks `fmt ` and `data`).
pub fn parse(bytes: &[u8]) -> Result<Audio, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE header".into());
    }
    let mut format = None;
    let mut data = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => format = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    let format = format.ok_or("no fmt chunk")?;
    let data = data.ok_or("no data chunk")?;
    let u16_at = |i: usize| u16::from_le_bytes([format[i], format[i + 1]]);
    let mut tag = u16_at(0);
    let channels = usize::from(u16_at(2));
    let sample_rate = u32::from_le_bytes([format[4], format[5], format[6], format[7]]);
    let bits = u16_at(14);
    if tag == FORMAT_EXTENSIBLE && format.len() >= 26 {
        tag = u16_at(24);
    }
    if channels == 0 || sample_rate == 0 {
        return Err("zero channels or sample rate".into());
    }
    let decoded: Vec<f32> = match (tag, bits) {
        (FORMAT_PCM, 8) => data
            .iter()
            .map(|&b| (f32::from(b) - 128.0) / 128.0)
            .collect(),
        (FORMAT_PCM, 16) => data
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32_768.0)
            .collect(),
        (FORMAT_PCM, 24) => data
            .chunks_exact(3)
            .map(|c| (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f32 / 8_388_608.0)
            .collect(),
        (FORMAT_PCM, 32) => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 / 2_147_483_648.0)
            .collect(),
        (FORMAT_FLOAT, 32) => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        (FORMAT_ULAW, 8) => data
            .iter()
            .map(|&b| f32::from(g711::ulaw_to_linear(b)) / 32_768.0)
            .collect(),
        (FORMAT_ALAW, 8) => data
            .iter()
            .map(|&b| f32::from(g711::alaw_to_linear(b)) / 32_768.0)
            .collect(),
        (tag, bits) => return Err(format!("unsupported encoding (format {tag}, {bits} bits)")),
    };
    let samples = decoded
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// Writes mono 16-bit PCM.
pub fn write(path: &Path, audio: &Audio) -> Result<(), WavError> {
    let name = path.display().to_string();
    let fail = |e: hound::Error| WavError::Write {
        path: name.clone(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(fail)?;
    for &sample in &audio.samples {
        writer.write_sample(to_i16(sample)).map_err(fail)?;
    }
    writer.finalize().map_err(fail)
}

/// A sample in -1..1 as 16-bit PCM (clipped).
pub fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * 32_767.0).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend(16u32.to_le_bytes());
        out.extend(tag.to_le_bytes());
        out.extend(channels.to_le_bytes());
        out.extend(rate.to_le_bytes());
        out.extend((rate * u32::from(channels) * u32::from(bits) / 8).to_le_bytes());
        out.extend((channels * bits / 8).to_le_bytes());
        out.extend(bits.to_le_bytes());
        out.extend(b"LIST");
        out.extend(4u32.to_le_bytes());
        out.extend(b"INFO");
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_pcm_stereo_ulaw_and_alaw() {
        let pcm: Vec<u8> = [16_384i16, -16_384, 0, 32_767]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mono = parse(&wav(1, 1, 16_000, 16, &pcm)).unwrap();
        assert_eq!(mono.sample_rate, 16_000);
        assert_eq!(mono.samples, vec![0.5, -0.5, 0.0, 32_767.0 / 32_768.0]);
        let stereo = parse(&wav(1, 2, 8_000, 16, &pcm)).unwrap();
        assert_eq!(stereo.samples, vec![0.0, 32_767.0 / 65_536.0]);
        let ulaw = parse(&wav(7, 1, 8_000, 8, &[0xFF, 0x80])).unwrap();
        assert_eq!(ulaw.samples, vec![0.0, 32_124.0 / 32_768.0]);
        let alaw = parse(&wav(6, 1, 8_000, 8, &[0xD5])).unwrap();
        assert_eq!(alaw.samples, vec![8.0 / 32_768.0]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse(b"not a wav").is_err());
        assert!(
            parse(&wav(2, 1, 8_000, 4, &[0, 1]))
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(parse(&wav(1, 0, 8_000, 16, &[0, 1])).is_err());
    }

    #[test]
    fn writes_what_it_reads() {
        let dir = std::env::temp_dir().join(format!("cg-wav-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.wav");
        let audio = Audio {
            samples: vec![0.0, 0.25, -0.25, 1.5],
            sample_rate: 22_050,
        };
        write(&path, &audio).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.sample_rate, 22_050);
        let expected = [
            0.0,
            8_192.0 / 32_768.0,
            -8_192.0 / 32_768.0,
            32_767.0 / 32_768.0,
        ];
        for (a, b) in back.samples.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
