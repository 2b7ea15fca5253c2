//! Hints checked where they were not tuned: the hearing fixtures' sentences about days and
//! times (`fixtures/hearing`, other voices and sentences than the booking set the bias was
//! chosen on), transcribed as a call would after "which day?", with and without the hints the
//! conversation then gives.

use std::path::Path;
use std::sync::Arc;

use callgenius::agent::embedded::EmbeddedResponder;
use callgenius::agent::turn::TurnEngine;
use callgenius::models::Models;
use callgenius::pipeline;

use super::booking::{context, read_audio, reply};

/// Word error rate of `heard` against `said`, over lower-case words without punctuation.
fn wer(said: &str, heard: &str) -> f32 {
    let words = |text: &str| -> Vec<String> {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (said, heard) = (words(said), words(heard));
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, s) in said.iter().enumerate() {
        let mut current = vec![i + 1; heard.len() + 1];
        for (j, h) in heard.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(s != h))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[heard.len()] as f32 / said.len().max(1) as f32
}

#[tokio::test]
async fn day_and_time_hints_do_not_make_day_and_time_answers_worse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = Models::load(&root.join("models")).expect("models installed");
    // The hints a conversation gives once it has asked for the day.
    let mut conversation = EmbeddedResponder::new().open(
        Arc::new(context()),
        Arc::new(super::booking::MemoryBookings::default()),
    );
    let asked = reply(&mut conversation, "I'd like to make a booking".into()).await;
    let words = conversation.hints();
    assert!(
        words.contains(&"Thursday"),
        "{asked:?} gave hints {words:?}"
    );
    let hints = models.stt.hints(&words);

    let dir = root.join("fixtures/hearing");
    let transcripts = std::fs::read_to_string(dir.join("transcripts.tsv")).unwrap();
    let (mut plain, mut hinted, mut clips) = (0.0, 0.0, 0);
    for line in transcripts.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (file, said) = (fields[0], fields[3]);
        // The sentences about days and times: h01, h02, h06, h09, h10.
        if !["h01-", "h02-", "h06-", "h09-", "h10-"]
            .iter()
            .any(|p| file.starts_with(p))
        {
            continue;
        }
        let (samples, rate) = read_audio(&dir.join(format!("{file}.wav")));
        let input = pipeline::speech_input(&samples, rate).unwrap();
        let without = models.stt.transcribe(&input).unwrap();
        let with = models.stt.transcribe_with(&input, &hints).unwrap();
        if with != without {
            eprintln!("{file}: {without:?} → {with:?}");
        }
        plain += wer(said, &without);
        hinted += wer(said, &with);
        clips += 1;
    }
    assert_eq!(clips, 90);
    let (plain, hinted) = (plain / clips as f32, hinted / clips as f32);
    eprintln!(
        "day-and-time sentences, {clips} clips: WER {:.1} % without hints, {:.1} % with",
        100.0 * plain,
        100.0 * hinted
    );
    assert!(
        hinted <= plain + 0.005,
        "hints made day-and-time answers worse: {plain:.3} → {hinted:.3}"
    );
}
