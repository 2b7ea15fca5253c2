//! Telling backchannels from interruptions. While the agent speaks, caller speech that lasts
//! longer than the barge-in threshold interrupts at once; shorter speech is transcribed first and
//! handed to a [`BackchannelFilter`]: an "uh-huh" or "okay" lets the agent carry on, anything else
//! interrupts and becomes the caller's turn.

/// Decides whether short caller speech during the agent's reply was only a backchannel.
pub trait BackchannelFilter: Send + Sync {
    fn is_backchannel(&self, transcript: &str) -> bool;
}

/// Backchannels by word list: every word of the transcript must be one of them.
pub struct CommonBackchannels;

const WORDS: &[&str] = &[
    "uh", "huh", "uhhuh", "mm", "hmm", "mhm", "mmhmm", "yeah", "yep", "yes", "okay", "ok", "right",
    "sure", "alright", "i", "see", "got", "it", "cool", "great",
];

impl BackchannelFilter for CommonBackchannels {
    fn is_backchannel(&self, transcript: &str) -> bool {
        let cleaned: String = transcript
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c.is_whitespace() {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let words: Vec<&str> = cleaned.split_whitespace().collect();
        // Long phrases are turns even when made of these words ("yes I see it right").
        !words.is_empty() && words.len() <= 3 && words.iter().all(|w| WORDS.contains(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_are_backchannels_and_requests_are_not() {
        for text in [
            "Uh-huh.",
            "Mm-hmm",
            "Okay.",
            "yeah",
            "Right, right.",
            "I see.",
            "Got it.",
        ] {
            assert!(CommonBackchannels.is_backchannel(text), "{text}");
        }
        for text in [
            "",
            "Wait",
            "No, Tuesday.",
            "Okay but what about Friday?",
            "Can I book?",
            "yes yes yes yes",
        ] {
            assert!(!CommonBackchannels.is_backchannel(text), "{text}");
        }
    }
}
