//! The offline models on real audio: transcription accuracy over the speech fixtures, a Piper →
//! phone line → Moonshine round trip, Silero VAD and MiniLM embeddings. Needs the model files
//! (`./scripts/fetch-models`, run by `./scripts/setup`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use callgenius::models::minilm::cosine;
use callgenius::models::silero::SileroStream;
use callgenius::models::{Models, moonshine};
use callgenius::pipeline::{self, g711, resample::resample, wav};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        Models::load(&root().join("models")).expect("models installed (./scripts/fetch-models)")
    })
}

/// Lower case, letters and digits only, and "p m" / "p.m." folded into "pm".
fn words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for word in cleaned.split_whitespace() {
        if word == "m" && out.last().is_some_and(|w| w == "p" || w == "a") {
            let first = out.pop().unwrap_or_default();
            out.push(format!("{first}m"));
        } else {
            out.push(word.to_owned());
        }
    }
    out
}

/// Word error rate: word-level edit distance over the reference length.
fn wer(reference: &str, hypothesis: &str) -> f32 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut current = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[h.len()] as f32 / r.len().max(1) as f32
}

struct Fixture {
    file: PathBuf,
    voice: String,
    text: String,
}

fn fixtures() -> Vec<Fixture> {
    let dir = root().join("fixtures/speech");
    let table = std::fs::read_to_string(dir.join("transcripts.tsv"))
        .expect("fixtures/speech/transcripts.tsv");
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let mut fields = line.split('\t');
        let (Some(base), Some(voice), Some(text)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        for suffix in ["16k", "8k-ulaw"] {
            out.push(Fixture {
                file: dir.join(format!("{base}-{suffix}.wav")),
                voice: voice.to_owned(),
                text: text.to_owned(),
            });
        }
    }
    out
}

/// A WAV file through the engine's own path, as a call's turn takes it.
fn transcribe_file(path: &Path) -> String {
    let audio = wav::read(path).unwrap();
    let input = pipeline::speech_input(&audio.samples, audio.sample_rate).unwrap();
    models().stt.transcribe(&input).unwrap()
}

#[test]
fn word_error_rate_stays_under_the_measured_bounds() {
    // Bounds set from measurement (see the README's Models section), with headroom: Piper speech
    // is transcribed almost perfectly; espeak-ng's formant voices are far from what Moonshine was
    // trained on and fare much worse, which is why the bound is per voice family.
    let mut by_family: std::collections::BTreeMap<&str, Vec<f32>> = Default::default();
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 24);
    for fixture in &fixtures {
        let heard = transcribe_file(&fixture.file);
        let rate = wer(&fixture.text, &heard);
        eprintln!(
            "{:.2}  {}  {heard:?}",
            rate,
            fixture.file.file_name().unwrap().to_string_lossy()
        );
        let family = if fixture.voice.starts_with("piper") {
            "piper"
        } else {
            "espeak"
        };
        by_family.entry(family).or_default().push(rate);
    }
    let mean = |rates: &Vec<f32>| rates.iter().sum::<f32>() / rates.len() as f32;
    let piper = mean(&by_family["piper"]);
    let espeak = mean(&by_family["espeak"]);
    eprintln!("mean WER: piper {piper:.3}, espeak {espeak:.3}");
    assert!(piper <= 0.15, "piper mean WER {piper:.3}");
    assert!(espeak <= 0.75, "espeak mean WER {espeak:.3}");
}

#[test]
fn piper_speech_survives_a_phone_line_round_trip() {
    let voice = models().voices.get("joe").unwrap();
    let mut rates = Vec::new();
    for text in [
        "Hello, thanks for calling Harbour Dental.",
        "Your appointment is booked for Friday at ten in the morning.",
        "Could you spell your last name for me, please?",
    ] {
        let speech = voice.synthesize(text).unwrap();
        let line = resample(&speech, voice.sample_rate, 8_000).unwrap();
        let decoded: Vec<f32> = line
            .iter()
            .map(|&s| {
                f32::from(g711::ulaw_to_linear(g711::linear_to_ulaw(wav::to_i16(s)))) / 32_768.0
            })
            .collect();
        let heard = models()
            .stt
            .transcribe(&pipeline::speech_input(&decoded, 8_000).unwrap())
            .unwrap();
        let rate = wer(text, &heard);
        eprintln!("{rate:.2} {text:?} → {heard:?}");
        // Piper's sampling noise varies each run; "Harbour" heard as "Harbor" and "ten" as
        // "10" are the usual slips, so allow two words of a sentence and a low mean.
        assert!(rate <= 0.34, "{text:?} was heard as {heard:?}");
        rates.push(rate);
    }
    let mean = rates.iter().sum::<f32>() / rates.len() as f32;
    assert!(mean <= 0.15, "mean round-trip WER {mean:.3}");
}

#[test]
fn silero_tells_speech_from_silence_at_8_and_16_khz() {
    let audio = wav::read(&root().join("fixtures/speech/s1-piper-joe-16k.wav")).unwrap();
    for rate in [16_000, 8_000] {
        let samples = resample(&audio.samples, audio.sample_rate, rate).unwrap();
        let mut stream = SileroStream::new(rate).unwrap();
        let window = stream.window();
        let speech: Vec<f32> = samples
            .chunks_exact(window)
            .map(|w| models().vad.probability(&mut stream, w).unwrap())
            .collect();
        let mut stream = SileroStream::new(rate).unwrap();
        let quiet = vec![0.0f32; window];
        let silence: Vec<f32> = (0..30)
            .map(|_| models().vad.probability(&mut stream, &quiet).unwrap())
            .collect();
        let voiced = speech.iter().filter(|p| **p > 0.5).count() as f32 / speech.len() as f32;
        eprintln!(
            "{rate} Hz: {:.0}% of windows voiced, silence max {:.3}",
            voiced * 100.0,
            silence.iter().cloned().fold(0.0, f32::max)
        );
        assert!(
            voiced > 0.6,
            "{rate} Hz: only {voiced:.2} of a spoken sentence voiced"
        );
        assert!(
            silence.iter().all(|p| *p < 0.1),
            "{rate} Hz: silence scored {silence:?}"
        );
    }
    assert!(SileroStream::new(44_100).is_err());
    let mut stream = SileroStream::new(16_000).unwrap();
    assert!(
        models().vad.probability(&mut stream, &[0.0; 100]).is_err(),
        "wrong window size"
    );
}

#[test]
fn a_paraphrase_is_closer_than_an_unrelated_sentence() {
    let e = &models().embeddings;
    let question = e.embed("What time do you open on Saturday?").unwrap();
    let paraphrase = e.embed("When are you open on Saturdays?").unwrap();
    let unrelated = e
        .embed("A large margherita pizza costs eighteen dollars.")
        .unwrap();
    assert_eq!(question.len(), 384);
    let norm: f32 = question.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "normalised, got {norm}");
    let close = cosine(&question, &paraphrase);
    let far = cosine(&question, &unrelated);
    eprintln!("paraphrase {close:.3}, unrelated {far:.3}");
    assert!(
        close > far + 0.2,
        "paraphrase {close:.3} vs unrelated {far:.3}"
    );

    // A batch (padded to its longest text) gives the same vectors as one at a time.
    let batch = e
        .embed_batch(&[
            "What time do you open on Saturday?",
            "A large margherita pizza costs eighteen dollars.",
        ])
        .unwrap();
    assert!(cosine(&batch[0], &question) > 0.999);
    assert!(cosine(&batch[1], &unrelated) > 0.999);
}

#[test]
fn short_silence_transcribes_to_nothing_and_overlong_audio_is_refused() {
    assert_eq!(models().stt.transcribe(&[0.0; 800]).unwrap(), "");
    assert!(models().stt.transcribe(&vec![0.0; 16_000 * 65]).is_err());
}

/// The Piper fixture sentences one after another with `gap` seconds of silence between them,
/// repeated until the audio lasts at least `seconds`; with what was said.
fn long_utterance(seconds: f32, gap: f32) -> (Vec<f32>, String) {
    let sentences: Vec<(Vec<f32>, String)> = fixtures()
        .into_iter()
        .filter(|f| f.voice == "piper joe" && f.file.to_string_lossy().ends_with("-16k.wav"))
        .map(|f| (wav::read(&f.file).unwrap().samples, f.text))
        .collect();
    assert_eq!(sentences.len(), 4);
    let target = (seconds * moonshine::SAMPLE_RATE as f32) as usize;
    let (mut audio, mut said) = (Vec::new(), Vec::new());
    for (samples, text) in sentences.iter().cycle() {
        audio.extend_from_slice(samples);
        said.push(text.as_str());
        if audio.len() >= target {
            break;
        }
        audio.extend(std::iter::repeat_n(
            0.0,
            (gap * moonshine::SAMPLE_RATE as f32) as usize,
        ));
    }
    (audio, said.join(" "))
}

#[test]
fn long_utterances_are_heard_whole() {
    // A caller's turn may last up to the endpointer's 15 s cut, and the model takes up to 64 s.
    // Up to 8.5 s, the decoder used to be given a mask of encoder frames instead of samples (which
    // only broadcast while ⌈frames/384⌉ was 1); longer turns failed outright.
    for seconds in [12.0, 15.0, 20.0, 30.0] {
        let (audio, said) = long_utterance(seconds, 0.3);
        let heard = models().stt.transcribe(&audio).unwrap();
        let rate = wer(&said, &heard);
        eprintln!("{seconds} s: WER {rate:.2} {heard:?}");
        assert!(rate <= 0.2, "{seconds} s of speech heard as {heard:?}");
    }
}

/// One clip of `fixtures/hearing` (voices no other test or tuning uses) with what was said and
/// what the reference recipe heard.
struct Hearing {
    file: String,
    voice: String,
    line: String,
    text: String,
    reference: String,
}

/// The clips of `fixtures/hearing` on `lines`, with the reference recipe's transcripts made
/// now, on this machine: `fixtures/hearing/reference.py` in the environment `./scripts/test`
/// makes. Not kept in the repository: ONNX Runtime picks its kernels by processor, and a
/// near-tie can fall either way on another one (seen: 4 of the 72 16 kHz clips).
fn hearing_fixtures(lines: &[&str]) -> Vec<Hearing> {
    let dir = root().join("fixtures/hearing");
    let venv = std::env::var_os("CALLGENIUS_REFERENCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("callgenius/reference-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "the reference recipe's environment is not at {}: run ./scripts/test (it makes it)",
        venv.display()
    );
    let run = std::process::Command::new(&python)
        .arg(dir.join("reference.py"))
        .args(["--lines", &lines.join(",")])
        .output()
        .expect("the reference recipe runs");
    assert!(
        run.status.success(),
        "the reference recipe failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let references: std::collections::HashMap<String, String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, t)| (f.to_owned(), t.to_owned()))
        .collect();
    std::fs::read_to_string(dir.join("transcripts.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split('\t').collect::<Vec<&str>>())
        .filter(|fields| lines.contains(&fields[2]))
        .map(|fields| Hearing {
            file: fields[0].to_owned(),
            voice: fields[1].to_owned(),
            line: fields[2].to_owned(),
            text: fields[3].to_owned(),
            reference: references[fields[0]].clone(),
        })
        .collect()
}

/// Character edit distance.
fn char_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(ca != cb))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[test]
fn the_decoder_matches_the_reference_recipe() {
    // Same model files, same 16 kHz input, the reference's own decoding loop in Python, run on
    // this machine: the engine's transcripts must be the same text. Floating-point order could
    // differ between the two runtimes' bindings in the last bits and flip a near-tie in the
    // argmax; a few characters over the whole set are allowed for that, and none so far were
    // needed on either machine it ran on.
    let clips = hearing_fixtures(&["16k"]);
    assert_eq!(clips.len(), 72);
    let mut differing = Vec::new();
    let mut distance = 0;
    for clip in &clips {
        let audio = wav::read(&root().join(format!("fixtures/hearing/{}.wav", clip.file))).unwrap();
        assert_eq!(audio.sample_rate, moonshine::SAMPLE_RATE);
        let heard = models()
            .stt
            .transcribe_as_reference(&audio.samples)
            .unwrap();
        if heard != clip.reference {
            distance += char_distance(&heard, &clip.reference);
            differing.push(format!("{}: {heard:?} vs {:?}", clip.file, clip.reference));
        }
    }
    eprintln!(
        "{} of {} differ: {differing:#?}",
        differing.len(),
        clips.len()
    );
    assert!(
        differing.len() <= 2 && distance <= 6,
        "the engine's decoder strays from the reference: {differing:#?}"
    );
}

#[test]
fn the_engine_hears_new_voices_at_least_as_well_as_the_reference_recipe() {
    // The engine's whole path (any WAV → `pipeline::speech_input`: line-noise suppression, its
    // resampler → padding → decoder) against the reference recipe (sox's
    // resampler, no padding) over voices and sentences it was not tuned on, by voice and line.
    let mut table: std::collections::BTreeMap<(String, String), (Vec<f32>, Vec<f32>)> =
        Default::default();
    for clip in hearing_fixtures(&["16k", "8k-ulaw", "8k-noisy"]) {
        let heard = transcribe_file(&root().join(format!("fixtures/hearing/{}.wav", clip.file)));
        let entry = table
            .entry((clip.line.clone(), clip.voice.clone()))
            .or_default();
        entry.0.push(wer(&clip.text, &heard));
        entry.1.push(wer(&clip.text, &clip.reference));
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let mut by_line: std::collections::BTreeMap<String, (Vec<f32>, Vec<f32>)> = Default::default();
    eprintln!("| line | voice | engine WER | reference WER |\n|---|---|---|---|");
    for ((line, voice), (engine, reference)) in &table {
        eprintln!(
            "| {line} | {voice} | {:.1} % | {:.1} % |",
            100.0 * mean(engine),
            100.0 * mean(reference)
        );
        let all = by_line.entry(line.clone()).or_default();
        all.0.extend(engine);
        all.1.extend(reference);
    }
    for (line, (engine, reference)) in &by_line {
        let (engine, reference) = (mean(engine), mean(reference));
        eprintln!(
            "| {line} | all | {:.1} % | {:.1} % |",
            100.0 * engine,
            100.0 * reference
        );
        // At least as good on the clean lines (half a point for rounding over 72 clips).
        // Measured here: 16 kHz 25.2 % against 25.2 %, 8 kHz µ-law 29.7 % against 29.4 % (clean
        // lines are only resampled). The noisy line is held within a point and a half: 41.6 %
        // against 40.5 % (43.2 % before the noise suppression). Greedy decoding is chaotic: a
        // 1-sample shift or -70 dBFS dither moves a line's figure by 1 to 3 points for either
        // path, and over 12 such draws the noisy line averages 40.8 % suppressed, 43.5 %
        // resampled only, about 43 % through sox's resampler (README, speech models): one draw of
        // the reference is not a bar the engine can be held to more tightly there.
        let allowed = if line == "8k-noisy" { 0.015 } else { 0.005 };
        assert!(
            engine <= reference + allowed,
            "{line}: engine WER {engine:.3} against the reference recipe's {reference:.3}"
        );
    }
}
