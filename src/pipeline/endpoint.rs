//! Endpointing: turns a stream of audio into utterances, frame by frame, with a voice activity
//! detector.
//!
//! Speech starts after `min_speech_ms` of consecutive voiced frames (so a click or a cough does not
//! open an utterance); the utterance keeps `pre_roll_ms` of audio from before that point so the
//! first syllable is not lost; it ends once `end_silence_ms` of unvoiced frames follow the last
//! voiced one, or is cut at `max_utterance_ms`. All buffers are allocated when the endpointer is
//! built; `push` allocates nothing.

use std::collections::VecDeque;

use super::vad::VoiceActivity;
use crate::models::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    pub min_speech_ms: u32,
    pub end_silence_ms: u32,
    pub pre_roll_ms: u32,
    pub max_utterance_ms: u32,
    /// An utterance whose speech has lasted this long is reported as sustained (the barge-in
    /// threshold: shorter speech over the agent may be only a backchannel).
    pub sustained_ms: u32,
}

impl Default for EndpointConfig {
    /// `end_silence_ms`: over the 12 fixture sentences at 8 kHz µ-law (Piper and espeak-ng, with
    /// commas and full stops inside), 250 ms split 3 of them, 300 ms 2, 350 ms 1, 400 ms none;
    /// 500 ms keeps a margin for people, who pause longer than speech synthesisers.
    fn default() -> Self {
        Self {
            min_speech_ms: 100,
            end_silence_ms: 500,
            pre_roll_ms: 300,
            max_utterance_ms: 15_000,
            sustained_ms: 400,
        }
    }
}

/// What the endpointer saw, with times in milliseconds of stream audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Speech began at `at_ms` (the start of the voiced run that opened the utterance).
    SpeechStarted { at_ms: u64 },
    /// The utterance's speech has lasted `sustained_ms` (reported once per utterance).
    SpeechSustained { at_ms: u64 },
    /// The utterance is complete: its audio is [`Endpointer::utterance`]. `speech_end_ms` is the
    /// end of its last voiced frame; `detected_at_ms` when the endpointer decided (the end of the
    /// trailing silence, or the forced cut).
    UtteranceEnded {
        start_ms: u64,
        speech_end_ms: u64,
        detected_at_ms: u64,
        forced: bool,
    },
}

enum State {
    Idle {
        voiced_run: usize,
    },
    Speaking {
        start: u64,
        silence_run: usize,
        last_voiced_end: u64,
        sustained: bool,
    },
}

pub struct Endpointer<V> {
    vad: V,
    config: EndpointConfig,
    sample_rate: u32,
    frame: Vec<f32>,
    filled: usize,
    /// The most recent audio while idle: pre-roll plus the voiced run that may open speech.
    history: VecDeque<f32>,
    history_cap: usize,
    utterance: Vec<f32>,
    utterance_len: usize,
    /// Samples consumed so far (at the end of the last complete frame).
    position: u64,
    /// Unvoiced samples that end an utterance: the configured silence less the detector's
    /// hangover (which already counted as voice), at least one frame.
    silence_needed: usize,
    /// The detector's hangover, in samples.
    hangover: u64,
    state: State,
}

impl<V: VoiceActivity> Endpointer<V> {
    pub fn new(vad: V, sample_rate: u32, config: EndpointConfig) -> Self {
        let samples = |ms: u32| (u64::from(ms) * u64::from(sample_rate) / 1000) as usize;
        let frame_len = vad.frame_len();
        let history_cap = samples(config.pre_roll_ms) + samples(config.min_speech_ms) + frame_len;
        let utterance_cap = samples(config.max_utterance_ms) + history_cap;
        let hangover = samples(vad.hangover_ms().min(config.end_silence_ms));
        let silence_needed = samples(config.end_silence_ms)
            .saturating_sub(hangover)
            .max(frame_len);
        Self {
            vad,
            config,
            sample_rate,
            frame: vec![0.0; frame_len],
            filled: 0,
            history: VecDeque::with_capacity(history_cap),
            history_cap,
            utterance: Vec::with_capacity(utterance_cap),
            utterance_len: 0,
            position: 0,
            silence_needed,
            hangover: hangover as u64,
            state: State::Idle { voiced_run: 0 },
        }
    }

    fn samples(&self, ms: u32) -> usize {
        (u64::from(ms) * u64::from(self.sample_rate) / 1000) as usize
    }

    fn ms(&self, samples: u64) -> u64 {
        samples * 1000 / u64::from(self.sample_rate)
    }

    /// Whether an utterance is open.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// The audio of the utterance that ended last: pre-roll, speech, and up to 200 ms after it.
    pub fn utterance(&self) -> &[f32] {
        &self.utterance[..self.utterance_len]
    }

    /// Feeds audio; events are appended to `events`.
    pub fn push(
        &mut self,
        mut samples: &[f32],
        events: &mut Vec<EndpointEvent>,
    ) -> Result<(), ModelError> {
        while !samples.is_empty() {
            let take = (self.frame.len() - self.filled).min(samples.len());
            self.frame[self.filled..self.filled + take].copy_from_slice(&samples[..take]);
            self.filled += take;
            samples = &samples[take..];
            if self.filled == self.frame.len() {
                self.filled = 0;
                self.step(events)?;
            }
        }
        Ok(())
    }

    fn step(&mut self, events: &mut Vec<EndpointEvent>) -> Result<(), ModelError> {
        let voiced = self.vad.is_speech(&self.frame)?;
        let frame_len = self.frame.len();
        let end = self.position + frame_len as u64;
        match self.state {
            State::Idle { voiced_run } => {
                while self.history.len() + frame_len > self.history_cap {
                    self.history.pop_front();
                }
                self.history.extend(self.frame.iter().copied());
                let voiced_run = if voiced { voiced_run + frame_len } else { 0 };
                if voiced && voiced_run >= self.samples(self.config.min_speech_ms).max(1) {
                    // Speech began where the detector first heard it, or a little before.
                    let heard = self.history.len().saturating_sub(voiced_run);
                    let lead = self.vad.onset_lead().min(heard);
                    let start = end.saturating_sub((voiced_run + lead) as u64);
                    let keep = self.samples(self.config.pre_roll_ms) + voiced_run + lead;
                    let skip = self.history.len().saturating_sub(keep);
                    self.utterance.clear();
                    self.utterance.extend(self.history.drain(..).skip(skip));
                    self.state = State::Speaking {
                        start,
                        silence_run: 0,
                        last_voiced_end: end,
                        sustained: false,
                    };
                    events.push(EndpointEvent::SpeechStarted {
                        at_ms: self.ms(start),
                    });
                } else {
                    self.state = State::Idle { voiced_run };
                }
            }
            State::Speaking {
                start,
                silence_run,
                last_voiced_end,
                mut sustained,
            } => {
                if self.utterance.len() + frame_len <= self.utterance.capacity() {
                    self.utterance.extend_from_slice(&self.frame);
                }
                let (silence_run, last_voiced_end) = if voiced {
                    (0, end)
                } else {
                    (silence_run + frame_len, last_voiced_end)
                };
                let sustained_for = self.samples(self.config.sustained_ms) as u64;
                if !sustained && last_voiced_end - start >= sustained_for {
                    sustained = true;
                    events.push(EndpointEvent::SpeechSustained {
                        at_ms: self.ms(end),
                    });
                }
                let ended = silence_run >= self.silence_needed;
                let forced = end - start >= self.samples(self.config.max_utterance_ms) as u64;
                if ended || forced {
                    // Keep a little of the trailing silence: words fade out below the VAD.
                    let tail = (silence_run.min(self.samples(200))) as u64;
                    let keep = self.utterance.len() as u64 - (end - last_voiced_end) + tail;
                    self.utterance_len = (keep as usize).min(self.utterance.len());
                    let speech_end = last_voiced_end.saturating_sub(self.hangover).max(start);
                    events.push(EndpointEvent::UtteranceEnded {
                        start_ms: self.ms(start),
                        speech_end_ms: self.ms(speech_end),
                        detected_at_ms: self.ms(end),
                        forced: forced && !ended,
                    });
                    self.history.clear();
                    self.state = State::Idle { voiced_run: 0 };
                } else {
                    self.state = State::Speaking {
                        start,
                        silence_run,
                        last_voiced_end,
                        sustained,
                    };
                }
            }
        }
        self.position = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voiced where the sample is non-zero: lets the state machine be tested exactly.
    struct Threshold(usize);

    impl VoiceActivity for Threshold {
        fn frame_len(&self) -> usize {
            self.0
        }
        fn is_speech(&mut self, frame: &[f32]) -> Result<bool, ModelError> {
            Ok(frame.iter().any(|s| *s != 0.0))
        }
    }

    fn endpointer(config: EndpointConfig) -> Endpointer<Threshold> {
        Endpointer::new(Threshold(160), 8_000, config)
    }

    fn audio(parts: &[(bool, u32)]) -> Vec<f32> {
        parts
            .iter()
            .flat_map(|&(voiced, ms)| vec![if voiced { 0.5 } else { 0.0 }; ms as usize * 8])
            .collect()
    }

    #[test]
    fn finds_start_and_end_with_pre_roll_and_a_short_tail() {
        let mut ep = endpointer(EndpointConfig::default());
        let mut events = Vec::new();
        let stream = audio(&[
            (false, 1000),
            (true, 800),
            (false, 100),
            (true, 400),
            (false, 1000),
        ]);
        // Feed in odd-sized pieces, as a network would deliver them.
        for piece in stream.chunks(333) {
            ep.push(piece, &mut events).unwrap();
        }
        assert_eq!(
            events,
            [
                EndpointEvent::SpeechStarted { at_ms: 1000 },
                EndpointEvent::SpeechSustained { at_ms: 1400 },
                EndpointEvent::UtteranceEnded {
                    start_ms: 1000,
                    speech_end_ms: 2300,
                    detected_at_ms: 2800,
                    forced: false
                },
            ]
        );
        // 300 ms pre-roll + 1300 ms speech + 200 ms tail.
        assert_eq!(ep.utterance().len(), (300 + 1300 + 200) * 8);
        assert!(ep.utterance()[..300 * 8].iter().all(|s| *s == 0.0));
        assert!(!ep.is_speaking());
    }

    #[test]
    fn speech_is_reported_sustained_once_it_lasts_the_threshold() {
        let mut ep = endpointer(EndpointConfig::default());
        let mut events = Vec::new();
        // 300 ms of speech never sustains; 600 ms does, once, 400 ms after it began.
        ep.push(
            &audio(&[(true, 300), (false, 700), (true, 600), (false, 700)]),
            &mut events,
        )
        .unwrap();
        let sustained: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, EndpointEvent::SpeechSustained { .. }))
            .collect();
        assert_eq!(sustained, [&EndpointEvent::SpeechSustained { at_ms: 1400 }]);
    }

    #[test]
    fn a_click_shorter_than_min_speech_opens_nothing() {
        let mut ep = endpointer(EndpointConfig::default());
        let mut events = Vec::new();
        ep.push(
            &audio(&[(false, 200), (true, 60), (false, 800)]),
            &mut events,
        )
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum() {
        let config = EndpointConfig {
            max_utterance_ms: 1000,
            ..EndpointConfig::default()
        };
        let mut ep = endpointer(config);
        let mut events = Vec::new();
        ep.push(&audio(&[(true, 2500)]), &mut events).unwrap();
        let forced: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, EndpointEvent::UtteranceEnded { forced: true, .. }))
            .collect();
        assert_eq!(forced.len(), 2, "{events:?}");
        assert_eq!(
            *forced[0],
            EndpointEvent::UtteranceEnded {
                start_ms: 0,
                speech_end_ms: 1000,
                detected_at_ms: 1000,
                forced: true
            }
        );
    }
}
