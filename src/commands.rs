//! The offline speech commands: `callgenius transcribe` and `callgenius speak`. Results go to
//! stdout (or the output file), timings to stderr.

use std::time::Instant;

use anyhow::Context;

use crate::cli::{BenchArgs, CallArgs, SpeakArgs, TranscribeArgs};
use crate::models::{self, moonshine::Moonshine, piper::Voice};
use crate::pipeline::{self, wav};
use crate::simulator::{self, CallPlan};

pub fn transcribe(args: TranscribeArgs) -> anyhow::Result<()> {
    let audio = wav::read(&args.file)?;
    models::check(&args.models_dir)?;
    let env = models::runtime::environment(&args.models_dir)?;
    let stt = Moonshine::load(&env, &args.models_dir.join("moonshine-tiny-en"))?;
    let started = Instant::now();
    let input = pipeline::speech_input(&audio.samples, audio.sample_rate)?;
    let text = stt.transcribe(&input).context("transcribing")?;
    let took = started.elapsed().as_secs_f32();
    println!("{text}");
    eprintln!(
        "{:.2} s of audio transcribed in {:.0} ms (real-time factor {:.3})",
        audio.seconds(),
        took * 1000.0,
        took / audio.seconds().max(1e-3)
    );
    Ok(())
}

pub fn speak(args: SpeakArgs) -> anyhow::Result<()> {
    models::check(&args.models_dir)?;
    let env = models::runtime::environment(&args.models_dir)?;
    let dir = args.models_dir.join("voices").join(&args.voice);
    let voice = Voice::load(&env, &args.voice, &dir)
        .with_context(|| format!("loading voice {}", args.voice))?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut first_clause = None;
    for clause in models::piper::clauses(&args.text) {
        samples.extend(voice.synthesize_clause(&clause)?);
        first_clause.get_or_insert_with(|| started.elapsed());
    }
    let took = started.elapsed();
    let audio = wav::Audio {
        samples,
        sample_rate: voice.sample_rate,
    };
    wav::write(&args.output, &audio)?;
    eprintln!(
        "{:.2} s of audio in {:.0} ms (first clause after {:.0} ms, real-time factor {:.2}); wrote {}",
        audio.seconds(),
        took.as_secs_f32() * 1000.0,
        first_clause.unwrap_or_default().as_secs_f32() * 1000.0,
        took.as_secs_f32() / audio.seconds().max(1e-3),
        args.output.display()
    );
    Ok(())
}

pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let mut audio = args.audio.iter().map(|path| wav::read(path));
    let caller = audio.next().context("no --audio given")??;
    let then = audio.collect::<Result<Vec<_>, _>>()?;
    let report = simulator::run(CallPlan {
        base_url: args.url,
        api_token: args.token,
        agent_id: args.agent,
        caller,
        then,
        pause: std::time::Duration::from_millis(args.pause_ms),
        speed: args.speed,
        quiet: std::time::Duration::from_secs(2),
        carrier: args.carrier,
        from: args.from,
    })
    .await?;
    if let Some(out) = &args.out {
        wav::write(out, &report.agent_audio)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let call = &report.call;
    println!(
        "call {} {} after {} s",
        report.call_id,
        call["status"].as_str().unwrap_or("?"),
        call["duration_sec"]
    );
    for turn in call["turns"].as_array().into_iter().flatten() {
        if let Some(text) = turn["caller_text"].as_str() {
            println!("  caller: {text}");
        }
        let cut = if turn["interrupted"] == 1 {
            " (interrupted)"
        } else {
            ""
        };
        println!(
            "  agent:  {}{cut}",
            turn["agent_text"].as_str().unwrap_or("-")
        );
        if turn["total_ms"].is_number() && turn["caller_text"].is_string() {
            println!(
                "          latency {} ms = endpoint {} + stt {} + turn {} + first audio {} (+ queueing)",
                turn["total_ms"],
                turn["endpoint_wait_ms"],
                turn["stt_ms"],
                turn["turn_ms"],
                turn["tts_ms"]
            );
        }
    }
    println!(
        "  frames sent {}, received {}, marks {}, clears {}",
        report.frames_sent, report.frames_received, report.marks, report.clears
    );
    Ok(())
}

/// `callgenius bench`: see [`crate::bench`].
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    use crate::bench::{self, BenchPlan, Mode};
    use std::time::Duration;
    let utterances = bench::load_conversation(&args.audio, Some(&args.conversation))?;
    let duration = Duration::from_secs(args.duration.max(1));
    let mode = if args.ramp {
        Mode::Ramp {
            steps: args.steps.clone(),
            duration,
            slo: Duration::from_millis(args.slo),
        }
    } else if let Some(minutes) = args.soak {
        Mode::Soak {
            calls: args.calls.max(1),
            duration: Duration::from_secs(minutes.max(1) * 60),
            sample: Duration::from_secs(5),
        }
    } else {
        Mode::Fixed {
            calls: args.calls.max(1),
            duration,
        }
    };
    let plan = BenchPlan {
        url: (!args.spawn).then(|| args.url.clone()),
        spawn: args.spawn,
        models_dir: args.models_dir.clone(),
        pid: args.pid,
        mode,
        utterances,
        pause: Duration::from_millis(args.pause_ms),
        metrics_token: args.metrics_token.clone(),
    };
    let run = bench::run(plan, |step| {
        eprintln!(
            "bench: {} calls: {} calls done, {} turns, p50 {} ms, p95 {} ms{}",
            step.concurrency,
            step.calls,
            step.turns,
            step.latency_ms.p50.map_or(-1.0, |v| v.round()),
            step.latency_ms.p95.map_or(-1.0, |v| v.round()),
            match step.held {
                Some(true) => ", held",
                Some(false) => ", did not hold",
                None => "",
            }
        );
    });
    // Ctrl-C or SIGTERM drops the run, and with it the engine it spawned.
    let report = tokio::select! {
        report = run => report?,
        () = crate::telemetry::shutdown_signal() => anyhow::bail!("interrupted"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::table(&report));
    }
    Ok(())
}
