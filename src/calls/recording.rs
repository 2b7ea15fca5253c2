//! Call recordings: caller and agent mixed on one track with their real timing, written to disk
//! as the call goes (raw 16-bit PCM at the line's rate, so memory stays flat however long the
//! call), then encoded to MP3 with LAME once the call is over.
//!
//! Timing: the caller's audio is continuous (carriers send silence too), so the caller's sample
//! count is the recording's clock. Agent audio is placed where the writer scheduled it to play
//! (its pacing clock, up to a second ahead of real time); a `clear` (barge-in) removes agent
//! audio scheduled after it, since the caller never heard that.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, Mode, MonoPcm, Quality};

use crate::domain::CallId;

/// Agent audio scheduled further ahead than this is dropped (it is never more than a second).
const MAX_AHEAD_SECS: u64 = 10;

/// Where a call's raw recording is written: its name carries the sample rate, so a file left
/// by a stop can still be encoded at the next start.
pub fn pcm_path(dir: &Path, call: CallId, rate: u32) -> PathBuf {
    dir.join(format!("{call}-{rate}.pcm"))
}

/// The raw recordings left in `dir` (calls whose encoding a stop cut short), by call, with
/// their rates.
pub fn leftover_pcm(dir: &Path) -> HashMap<CallId, u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (call, rate) = name.strip_suffix(".pcm")?.split_once('-')?;
            Some((CallId(call.parse().ok()?), rate.parse().ok()?))
        })
        .collect()
}

pub fn mp3_path(dir: &Path, call: CallId) -> PathBuf {
    dir.join(format!("{call}.mp3"))
}

/// What the writer tells the recorder about agent audio.
#[derive(Debug)]
pub enum AgentAudio {
    /// Samples at the line rate, scheduled to start playing at sample `at` of the call.
    Frame { at: u64, samples: Vec<f32> },
    /// Playback was cleared at sample `at`: nothing scheduled from there on was heard.
    Clear { at: u64 },
}

/// Mixes and writes a call's audio; lives on the call's DSP thread.
pub struct Recorder {
    out: BufWriter<File>,
    rate: u32,
    /// Samples written so far: the recording's clock.
    written: u64,
    /// Agent samples from `written` on, waiting for the caller's clock to reach them.
    agent: VecDeque<f32>,
    bytes: Vec<u8>,
}

impl Recorder {
    pub fn create(path: &Path, rate: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, File::create(path)?),
            rate,
            written: 0,
            agent: VecDeque::with_capacity(rate as usize * 2),
            bytes: Vec::with_capacity(rate as usize / 25),
        })
    }

    pub fn agent(&mut self, audio: AgentAudio) {
        match audio {
            AgentAudio::Frame { at, samples } => {
                let skip = self.written.saturating_sub(at) as usize;
                if skip >= samples.len() {
                    return;
                }
                let offset = (at + skip as u64 - self.written) as usize;
                if offset as u64 > MAX_AHEAD_SECS * u64::from(self.rate) {
                    return;
                }
                let end = offset + samples.len() - skip;
                if self.agent.len() < end {
                    self.agent.resize(end, 0.0);
                }
                for (slot, sample) in self.agent.range_mut(offset..end).zip(&samples[skip..]) {
                    *slot += sample;
                }
            }
            AgentAudio::Clear { at } => {
                let keep = at.saturating_sub(self.written) as usize;
                self.agent.truncate(keep);
            }
        }
    }

    /// The caller's next samples: mixed with the agent's and written.
    pub fn caller(&mut self, samples: &[f32]) -> io::Result<()> {
        self.bytes.clear();
        for &sample in samples {
            let agent = self.agent.pop_front().unwrap_or(0.0);
            push_sample(&mut self.bytes, sample + agent);
        }
        self.written += samples.len() as u64;
        self.out.write_all(&self.bytes)
    }

    /// Writes the agent audio still pending (its last words after the caller's audio stopped)
    /// and closes the file; returns the duration in samples.
    pub fn finish(mut self) -> io::Result<u64> {
        self.bytes.clear();
        let rest = self.agent.len() as u64;
        for sample in self.agent.drain(..) {
            push_sample(&mut self.bytes, sample);
        }
        self.out.write_all(&self.bytes)?;
        self.out.flush()?;
        Ok(self.written + rest)
    }
}

fn push_sample(bytes: &mut Vec<u8>, sample: f32) {
    let value = (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
    bytes.extend_from_slice(&value.to_le_bytes());
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("recording file: {0}")]
    Io(#[from] io::Error),
    #[error("MP3 encoder: {0}")]
    Lame(String),
}

/// Encodes raw 16-bit little-endian mono PCM at `rate` into an MP3 at `mp3`, a second at a time
/// (memory stays flat), through a temporary file renamed into place. Returns the MP3's size.
pub fn encode_mp3(pcm: &Path, mp3: &Path, rate: u32) -> Result<u64, EncodeError> {
    let lame = |e: &dyn std::fmt::Display| EncodeError::Lame(e.to_string());
    let mut builder = Builder::new().ok_or_else(|| EncodeError::Lame("out of memory".into()))?;
    builder.set_num_channels(1).map_err(|e| lame(&e))?;
    builder.set_sample_rate(rate).map_err(|e| lame(&e))?;
    builder.set_mode(Mode::Mono).map_err(|e| lame(&e))?;
    // Telephone audio: 8 kHz lines need 16 kbit/s, wideband 32 kbit/s.
    let bitrate = if rate <= 8_000 {
        Bitrate::Kbps16
    } else {
        Bitrate::Kbps32
    };
    builder.set_brate(bitrate).map_err(|e| lame(&e))?;
    builder.set_quality(Quality::Good).map_err(|e| lame(&e))?;
    let mut encoder = builder.build().map_err(|e| lame(&e))?;

    let partial = mp3.with_extension("mp3.partial");
    let mut out = BufWriter::new(File::create(&partial)?);
    let mut input = BufReader::new(File::open(pcm)?);
    let chunk = rate as usize;
    let mut raw = vec![0u8; chunk * 2];
    let mut samples = Vec::with_capacity(chunk);
    let mut encoded = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(chunk));
    loop {
        let filled = read_full(&mut input, &mut raw)?;
        if filled < 2 {
            break;
        }
        samples.clear();
        samples.extend(
            raw[..filled - filled % 2]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        encoded.clear();
        encoded.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
        encoder
            .encode_to_vec(MonoPcm(&samples[..]), &mut encoded)
            .map_err(|e| lame(&e))?;
        out.write_all(&encoded)?;
        if filled < raw.len() {
            break;
        }
    }
    encoded.clear();
    encoded.reserve(7200);
    encoder
        .flush_to_vec::<FlushNoGap>(&mut encoded)
        .map_err(|e| lame(&e))?;
    out.write_all(&encoded)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, mp3)?;
    Ok(std::fs::metadata(mp3)?.len())
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_pcm(path: &Path) -> Vec<i16> {
        std::fs::read(path)
            .unwrap()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn mixes_agent_audio_at_its_scheduled_time_and_drops_cleared_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.pcm");
        let mut recorder = Recorder::create(&path, 8_000).unwrap();
        // Agent audio scheduled at 100..200 and 300..400; a clear at 350 cuts the second.
        recorder.agent(AgentAudio::Frame {
            at: 100,
            samples: vec![0.5; 100],
        });
        recorder.agent(AgentAudio::Frame {
            at: 300,
            samples: vec![0.25; 100],
        });
        recorder.agent(AgentAudio::Clear { at: 350 });
        recorder.caller(&[0.1; 250]).unwrap();
        // Late agent audio (before the clock) keeps only its future part.
        recorder.agent(AgentAudio::Frame {
            at: 240,
            samples: vec![0.5; 20],
        });
        recorder.caller(&[0.0; 150]).unwrap();
        // After the caller stops, pending agent audio is still written.
        recorder.agent(AgentAudio::Frame {
            at: 450,
            samples: vec![-0.5; 10],
        });
        assert_eq!(recorder.finish().unwrap(), 460);
        let pcm = read_pcm(&path);
        assert_eq!(pcm.len(), 460);
        let at = |i: usize| f32::from(pcm[i]) / f32::from(i16::MAX);
        assert!((at(50) - 0.1).abs() < 0.01);
        assert!((at(150) - 0.6).abs() < 0.01);
        assert!((at(255) - 0.5).abs() < 0.01);
        assert!((at(320) - 0.25).abs() < 0.01);
        assert!(at(360).abs() < 0.01, "cleared audio was recorded");
        assert!((at(455) + 0.5).abs() < 0.01);
    }

    #[test]
    fn raw_recordings_left_behind_are_found_with_their_rates() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["7-16000.pcm", "9-8000.pcm", "8.mp3", "junk.pcm", "x-1.pcm"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            pcm_path(dir.path(), CallId(7), 16_000),
            dir.path().join("7-16000.pcm")
        );
        let found = leftover_pcm(dir.path());
        assert_eq!(
            found,
            HashMap::from([(CallId(7), 16_000), (CallId(9), 8_000)])
        );
        assert!(leftover_pcm(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn encodes_an_mp3_with_frame_headers() {
        let dir = tempfile::tempdir().unwrap();
        let pcm = dir.path().join("2.pcm");
        let mut recorder = Recorder::create(&pcm, 8_000).unwrap();
        let tone: Vec<f32> = (0..24_000)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 8_000.0).sin() * 0.3)
            .collect();
        recorder.caller(&tone).unwrap();
        recorder.finish().unwrap();
        let mp3 = dir.path().join("2.mp3");
        let size = encode_mp3(&pcm, &mp3, 8_000).unwrap();
        let bytes = std::fs::read(&mp3).unwrap();
        assert_eq!(bytes.len() as u64, size);
        // 3 s at 16 kbit/s is about 6 kB; every MPEG audio frame starts with an 11-bit sync.
        assert!((4_000..12_000).contains(&bytes.len()), "{}", bytes.len());
        let sync = bytes
            .iter()
            .position(|&b| b == 0xFF)
            .expect("an MPEG frame sync");
        assert_eq!(bytes[sync + 1] & 0xE0, 0xE0);
        assert!(!dir.path().join("2.mp3.partial").exists());
    }
}
