//! `callgenius bench`: many real calls at once against an engine, measured from the caller's
//! side the way a carrier's caller would experience them.
//!
//! Each call is a test call streamed over Twilio's Media Streams protocol by the carrier
//! simulator (a websocket per call, audio paced in real time, marks echoed as Twilio does), with
//! a scripted conversation of several utterances. **Voice-to-voice latency** is measured per
//! turn on the caller's side: from the end of the caller's speech (the start of the utterance's
//! trailing silence, known from the audio) to the arrival of the first agent frame with sound in
//! it. The engine's own per-turn reports (endpoint wait, speech-to-text, turn engine, first
//! synthesised audio) come from the calls API; the engine's CPU time, resident memory and open
//! file descriptors from `/proc` when the engine is local (`--spawn`, or `--pid`); frames the
//! engine dropped from its `/metrics`.
//!
//! Modes: a fixed number of concurrent calls for a duration; a ramp that raises concurrency step
//! by step until the p95 latency passes the SLO or the audio degrades; a soak that runs a few
//! long-lived call slots for minutes while sampling memory and descriptors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::pipeline::wav;
use crate::simulator::{self, SimCarrier, StreamPlan, StreamReport};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// The engine to call; `None` with `spawn`.
    pub url: Option<String>,
    /// Start an engine for the bench on a temporary SQLite data directory.
    pub spawn: bool,
    /// With `spawn`: where the models are.
    pub models_dir: PathBuf,
    /// The local engine's process id, to sample its CPU and memory (implied by `spawn`).
    pub pid: Option<u32>,
    pub mode: Mode,
    /// The caller's side of each call, in order.
    pub utterances: Vec<wav::Audio>,
    /// How long the caller waits after the agent stops before speaking again.
    pub pause: Duration,
    /// The bearer token the engine's `/metrics` requires, if any.
    pub metrics_token: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// `calls` concurrent call slots; each starts calls back to back until `duration` is over.
    Fixed { calls: usize, duration: Duration },
    /// Fixed steps of increasing concurrency, until the p95 passes `slo` or the audio degrades.
    Ramp {
        steps: Vec<usize>,
        duration: Duration,
        slo: Duration,
    },
    /// `calls` long calls of about `duration` each (the conversation's turns repeated, its last
    /// utterance at the end), sampling memory and descriptors every `sample`.
    Soak {
        calls: usize,
        duration: Duration,
        sample: Duration,
    },
}

/// The whole report (`--json` prints it).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub engine: String,
    pub conversation_utterances: usize,
    pub steps: Vec<StepReport>,
    /// With a ramp: the highest concurrency whose step held the SLO with sound audio.
    pub max_concurrency_held: Option<usize>,
    pub slo_ms: Option<u64>,
    /// With a soak: the samples taken.
    pub soak: Option<Vec<ResourceSample>>,
}

/// One concurrency step.
#[derive(Debug, Default, Serialize)]
pub struct StepReport {
    pub concurrency: usize,
    pub duration_secs: f64,
    pub calls: usize,
    pub failed_calls: usize,
    pub errors: Vec<String>,
    /// Caller utterances that expected an answer.
    pub turns: usize,
    /// Turns the agent never answered (no sound before the caller spoke again or hung up).
    pub missed: usize,
    /// Turns the agent started answering before the caller had finished speaking.
    pub early: usize,
    /// Voice-to-voice latency over the answered turns, milliseconds.
    pub latency_ms: Percentiles,
    /// Medians of the engine's own per-turn reports, milliseconds.
    pub stages_ms: Stages,
    /// Agent frames received, and those that arrived after the audio before them had run out
    /// mid-reply (a gap the caller heard).
    pub frames_received: usize,
    pub late_frames: usize,
    /// Caller frames the engine dropped (its `media_frames_dropped_total` over the step).
    pub dropped_frames: Option<u64>,
    /// The engine's CPU time over the step, as a share of one core (200% is both of two).
    pub cpu_percent: Option<f64>,
    pub rss_mb_max: Option<f64>,
    /// Whether the step held: p95 within the SLO, no missed turn, no dropped frame and late
    /// frames under 1% (ramp only).
    pub held: Option<bool>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Stages {
    pub endpoint_wait: Option<f64>,
    pub stt: Option<f64>,
    pub turn: Option<f64>,
    pub first_audio: Option<f64>,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResourceSample {
    pub at_secs: f64,
    pub rss_mb: f64,
    pub open_fds: usize,
    pub cpu_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("engine request failed: {0}")]
    Http(String),
}

/// Nearest-rank percentiles of `values` (sorted here).
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        if values.is_empty() {
            return None;
        }
        let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
        Some(values[index.clamp(1, values.len()) - 1])
    };
    Percentiles {
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: values.last().copied(),
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    percentiles(values).p50
}

/// The caller-side view of one call's turns: for each utterance after which the agent should
/// answer, the latency (or `None`: missed) and whether the answer started early.
pub fn turn_latencies(report: &StreamReport) -> (Vec<Option<f64>>, usize) {
    let mut latencies = Vec::with_capacity(report.utterances.len());
    let mut early = 0;
    for (i, u) in report.utterances.iter().enumerate() {
        let until = report
            .utterances
            .get(i + 1)
            .map_or(Duration::MAX, |next| next.started);
        let answer = report
            .agent_voiced
            .iter()
            .find(|&&t| t >= u.speech_end && t < until);
        latencies.push(answer.map(|t| (*t - u.speech_end).as_secs_f64() * 1000.0));
        // Sound from the agent while the caller is still speaking (after their first 300 ms,
        // which may still carry the tail of the previous reply's last frames).
        let speaking = u.started + Duration::from_millis(300)..u.speech_end;
        if report.agent_voiced.iter().any(|t| speaking.contains(t)) {
            early += 1;
        }
    }
    // An agent that hangs up after the caller's goodbye answers it with its own goodbye first;
    // one that hangs up silently does not owe the last utterance a reply.
    if report.agent_hung_up && latencies.last() == Some(&None) {
        latencies.pop();
    }
    (latencies, early)
}

/// An engine started for the bench; killed when dropped.
struct Spawned {
    child: Child,
    dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The engine under test, a business and an agent on it.
struct Target {
    base: String,
    token: String,
    agent: i64,
    pid: Option<u32>,
    http: reqwest::Client,
    metrics_token: Option<String>,
    _spawned: Option<Spawned>,
}

fn http_err(e: reqwest::Error) -> BenchError {
    BenchError::Http(e.to_string())
}

async fn spawn_engine(models_dir: &Path) -> Result<(String, Spawned), BenchError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| BenchError::Setup(format!("no free port: {e}")))?
        .port();
    let dir = std::env::temp_dir().join(format!("callgenius-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    let log = std::fs::File::create(dir.join("engine.log"))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    // Bench calls are billed like any others: give the business a trial no bench exhausts.
    let config = dir.join("bench.toml");
    std::fs::write(&config, "[billing]\ntrial_minutes = 1000000\n")
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--models-dir")
        .arg(models_dir)
        .args(["--rate-limit-per-minute", "1000000"])
        .stdout(Stdio::from(
            log.try_clone()
                .map_err(|e| BenchError::Setup(e.to_string()))?,
        ))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| BenchError::Setup(format!("cannot start the engine: {e}")))?;
    let spawned = Spawned { child, dir };
    let base = format!("http://127.0.0.1:{port}");
    // Ready means the models are loaded, so the first call does not pay for it.
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok((base, spawned));
        }
        if Instant::now() > until {
            return Err(BenchError::Setup(format!(
                "the engine did not become ready; see {}",
                spawned.dir.join("engine.log").display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn prepare(plan: &BenchPlan) -> Result<Target, BenchError> {
    let (base, spawned) = if plan.spawn {
        let (base, spawned) = spawn_engine(&plan.models_dir).await?;
        (base, Some(spawned))
    } else {
        let url = plan
            .url
            .clone()
            .ok_or_else(|| BenchError::Setup("give --url or --spawn".into()))?;
        (url.trim_end_matches('/').to_owned(), None)
    };
    let pid = plan.pid.or(spawned.as_ref().map(|s| s.child.id()));
    let http = reqwest::Client::new();
    let mut password = [0u8; 16];
    rand::fill(&mut password);
    let r = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({
            "email": format!("bench-{}@example.com", uuid::Uuid::new_v4().simple()),
            "password": hex::encode(password),
            "business_name": "CallGenius bench",
        }))
        .send()
        .await
        .map_err(http_err)?;
    let body: Value = r.json().await.map_err(http_err)?;
    let token = body["token"]
        .as_str()
        .ok_or_else(|| BenchError::Http(format!("register: {body}")))?
        .to_owned();
    let r = http
        .post(format!("{base}/api/agents"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "Bench reception",
            "voice": "joe",
            "language": "en-US",
            "turn_engine": "embedded",
            "system_prompt": "You are the receptionist for Harbour Dental. We are open Monday to Friday from 8 am to 5 pm.",
        }))
        .send()
        .await
        .map_err(http_err)?;
    let body: Value = r.json().await.map_err(http_err)?;
    let agent = body["id"]
        .as_i64()
        .ok_or_else(|| BenchError::Http(format!("create agent: {body}")))?;
    Ok(Target {
        base,
        token,
        agent,
        pid,
        http,
        metrics_token: plan.metrics_token.clone(),
        _spawned: spawned,
    })
}

/// What one call came to.
#[derive(Default)]
struct CallOutcome {
    latencies: Vec<Option<f64>>,
    early: usize,
    frames_received: usize,
    late_frames: usize,
    stages: Vec<Value>,
    error: Option<String>,
}

async fn one_call(target: &Target, plan: &BenchPlan) -> CallOutcome {
    match try_call(target, plan).await {
        Ok(outcome) => outcome,
        Err(error) => CallOutcome {
            error: Some(error.to_string()),
            ..CallOutcome::default()
        },
    }
}

async fn try_call(target: &Target, plan: &BenchPlan) -> Result<CallOutcome, BenchError> {
    let r = target
        .http
        .post(format!(
            "{}/api/agents/{}/test-call?carrier=twilio",
            target.base, target.agent
        ))
        .bearer_auth(&target.token)
        .send()
        .await
        .map_err(http_err)?;
    let status = r.status();
    let body: Value = r.json().await.map_err(http_err)?;
    if !status.is_success() {
        return Err(BenchError::Http(format!("test-call: {status} {body}")));
    }
    let call_id = body["call_id"].as_i64().unwrap_or_default();
    let report = simulator::stream(StreamPlan {
        call_id,
        stream_url: body["stream_url"].as_str().unwrap_or_default().to_owned(),
        token: body["token"].as_str().unwrap_or_default().to_owned(),
        utterances: plan.utterances.clone(),
        listen_first: true,
        await_reply: true,
        pause: plan.pause,
        speed: 1.0,
        quiet: Duration::from_secs(2),
        carrier: SimCarrier::Twilio,
    })
    .await
    .map_err(|e| BenchError::Http(e.to_string()))?;
    let (latencies, early) = turn_latencies(&report);
    // The engine's turn reports, once the call record is final.
    let mut stages = Vec::new();
    for _ in 0..100 {
        let r = target
            .http
            .get(format!("{}/api/calls/{call_id}", target.base))
            .bearer_auth(&target.token)
            .send()
            .await
            .map_err(http_err)?;
        if r.status().is_success() {
            let call: Value = r.json().await.map_err(http_err)?;
            if call["status"] == "completed" || call["status"] == "failed" {
                stages = call["turns"].as_array().cloned().unwrap_or_default();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(CallOutcome {
        latencies,
        early,
        frames_received: report.frames_received,
        late_frames: report.late_frames,
        stages,
        error: None,
    })
}

/// The engine process's CPU seconds, resident memory and open descriptors (Linux `/proc`).
fn sample_process(pid: u32) -> Option<(f64, f64, usize)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((ticks / 100.0, rss_kb / 1024.0, fds))
}

/// The engine's `media_frames_dropped_total`, if it exposes it.
async fn dropped_frames(target: &Target) -> Option<u64> {
    let mut request = target.http.get(format!("{}/metrics", target.base));
    if let Some(token) = &target.metrics_token {
        request = request.bearer_auth(token);
    }
    let text = request.send().await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("media_frames_dropped_total"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// A conversation stretched into one call of about `duration`: every utterance but the last
/// (the goodbye) repeated in order, each counted as its length plus `per_turn` for the agent's
/// answer and the pause, then the last.
pub fn long_call(
    utterances: &[wav::Audio],
    duration: Duration,
    per_turn: Duration,
) -> Vec<wav::Audio> {
    let Some((last, body)) = utterances.split_last() else {
        return Vec::new();
    };
    let mut call = Vec::new();
    let mut planned = Duration::ZERO;
    if !body.is_empty() {
        for audio in body.iter().cycle() {
            if planned >= duration {
                break;
            }
            planned += Duration::from_secs_f32(audio.seconds()) + per_turn;
            call.push(audio.clone());
        }
    }
    call.push(last.clone());
    call
}

/// Runs `concurrency` call slots, each starting calls back to back until `duration` has passed
/// (a call in progress then finishes), sampling the engine every `sample`.
async fn run_step(
    target: &Target,
    plan: &BenchPlan,
    concurrency: usize,
    duration: Duration,
    sample: Duration,
) -> (StepReport, Vec<ResourceSample>) {
    let started = Instant::now();
    let deadline = started + duration;
    let dropped_before = dropped_frames(target).await;
    let cpu_before = target.pid.and_then(sample_process);
    let mut slots = Vec::new();
    // Stagger the slots so their turns do not all line up, all within the first half.
    let stagger = Duration::from_millis(700).min(duration / (2 * concurrency.max(1) as u32));
    for slot in 0..concurrency {
        slots.push(async move {
            tokio::time::sleep(stagger * slot as u32).await;
            // Every slot makes at least one call, then more while the step lasts.
            let mut outcomes = vec![one_call(target, plan).await];
            while Instant::now() < deadline {
                outcomes.push(one_call(target, plan).await);
            }
            outcomes
        });
    }
    // The samples outlive the sampler, which is dropped when the calls are done.
    let samples = std::sync::Mutex::new(Vec::new());
    let take_sample = || {
        if let Some(pid) = target.pid
            && let Some((cpu_secs, rss_mb, open_fds)) = sample_process(pid)
        {
            samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(ResourceSample {
                    at_secs: started.elapsed().as_secs_f64(),
                    rss_mb,
                    open_fds,
                    cpu_secs,
                });
        }
    };
    let sampler = async {
        loop {
            take_sample();
            tokio::time::sleep(sample).await;
        }
    };
    let outcomes: Vec<CallOutcome> = tokio::select! {
        all = futures_util::future::join_all(slots) => all.into_iter().flatten().collect(),
        () = sampler => Vec::new(),
    };
    take_sample();
    let samples = samples
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let elapsed = started.elapsed().as_secs_f64();
    let mut report = summarise(concurrency, elapsed, &outcomes);
    report.dropped_frames = match (dropped_before, dropped_frames(target).await) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    if let (Some(before), Some(after)) = (cpu_before, target.pid.and_then(sample_process)) {
        report.cpu_percent = Some((after.0 - before.0) / elapsed * 100.0);
        let sampled = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        report.rss_mb_max = Some(after.1.max(before.1).max(sampled));
    }
    (report, samples)
}

fn summarise(concurrency: usize, elapsed: f64, outcomes: &[CallOutcome]) -> StepReport {
    let mut latencies = Vec::new();
    let mut report = StepReport {
        concurrency,
        duration_secs: elapsed,
        calls: outcomes.len(),
        ..StepReport::default()
    };
    let mut stages: [Vec<f64>; 5] = Default::default();
    for o in outcomes {
        if let Some(error) = &o.error {
            report.failed_calls += 1;
            if report.errors.len() < 5 {
                report.errors.push(error.clone());
            }
            continue;
        }
        report.turns += o.latencies.len();
        report.missed += o.latencies.iter().filter(|l| l.is_none()).count();
        latencies.extend(o.latencies.iter().flatten());
        report.early += o.early;
        report.frames_received += o.frames_received;
        report.late_frames += o.late_frames;
        for turn in &o.stages {
            for (i, key) in [
                "endpoint_wait_ms",
                "stt_ms",
                "turn_ms",
                "tts_ms",
                "total_ms",
            ]
            .iter()
            .enumerate()
            {
                if let Some(ms) = turn[key].as_f64() {
                    stages[i].push(ms);
                }
            }
        }
    }
    report.latency_ms = percentiles(&mut latencies);
    let [endpoint, stt, turn, tts, total] = &mut stages;
    report.stages_ms = Stages {
        endpoint_wait: median(endpoint),
        stt: median(stt),
        turn: median(turn),
        first_audio: median(tts),
        total: median(total),
    };
    report
}

/// Whether a ramp step held.
fn held(step: &StepReport, slo: Duration) -> bool {
    let slo_ms = slo.as_secs_f64() * 1000.0;
    step.failed_calls == 0
        && step.turns > 0
        && step.missed == 0
        && step.latency_ms.p95.is_some_and(|p| p <= slo_ms)
        && step.dropped_frames.unwrap_or(0) == 0
        && (step.late_frames as f64) <= step.frames_received as f64 * 0.01
}

/// Runs the plan; `progress` gets a line per finished step.
pub async fn run(
    plan: BenchPlan,
    mut progress: impl FnMut(&StepReport),
) -> Result<BenchReport, BenchError> {
    if plan.utterances.is_empty() {
        return Err(BenchError::Setup(
            "the conversation has no utterances".into(),
        ));
    }
    let target = prepare(&plan).await?;
    let mut report = BenchReport {
        engine: target.base.clone(),
        conversation_utterances: plan.utterances.len(),
        steps: Vec::new(),
        max_concurrency_held: None,
        slo_ms: None,
        soak: None,
    };
    match plan.mode.clone() {
        Mode::Fixed { calls, duration } => {
            let (step, _) = run_step(&target, &plan, calls, duration, Duration::from_secs(2)).await;
            progress(&step);
            report.steps.push(step);
        }
        Mode::Ramp {
            steps,
            duration,
            slo,
        } => {
            report.slo_ms = Some(slo.as_millis() as u64);
            for calls in steps {
                let (mut step, _) =
                    run_step(&target, &plan, calls, duration, Duration::from_secs(2)).await;
                let ok = held(&step, slo);
                step.held = Some(ok);
                progress(&step);
                report.steps.push(step);
                if !ok {
                    break;
                }
                report.max_concurrency_held = Some(calls);
            }
        }
        Mode::Soak {
            calls,
            duration,
            sample,
        } => {
            // One long call per slot: the slots start once, before the (zero) deadline passes.
            let long = BenchPlan {
                utterances: long_call(&plan.utterances, duration, Duration::from_secs(4)),
                ..plan.clone()
            };
            let (step, samples) = run_step(&target, &long, calls, Duration::ZERO, sample).await;
            progress(&step);
            report.steps.push(step);
            report.soak = Some(samples);
        }
    }
    Ok(report)
}

/// The caller's utterances: `NAME-1.wav`, `NAME-2.wav`, … in `dir` (in number order), or every
/// WAV file in `dir` by name when `name` is `None`.
pub fn load_conversation(dir: &Path, name: Option<&str>) -> Result<Vec<wav::Audio>, BenchError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BenchError::Setup(format!("cannot read {}: {e}", dir.display())))?;
    let mut files: Vec<(u32, String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".wav") else {
            continue;
        };
        match name {
            Some(name) => {
                if let Some(n) = stem
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    files.push((n, file, path));
                }
            }
            None => files.push((0, file, path)),
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(BenchError::Setup(format!(
            "no {} in {}",
            name.map_or_else(|| "WAV files".to_owned(), |n| format!("{n}-N.wav files")),
            dir.display()
        )));
    }
    files
        .iter()
        .map(|(_, _, path)| {
            wav::read(path).map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))
        })
        .collect()
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The report as a table.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!(
        "engine {}; {} utterances a call; latency = caller's end of speech to the agent's first sound\n\n",
        report.engine, report.conversation_utterances
    );
    out.push_str(
        "calls  done  turns  missed  early   p50    p95    p99    max  late  dropped   cpu%   rss MB  held\n",
    );
    for s in &report.steps {
        out.push_str(&format!(
            "{:>5} {:>5} {:>6} {:>7} {:>6} {:>5} {:>6} {:>6} {:>6} {:>5} {:>8} {:>6} {:>8}  {}\n",
            s.concurrency,
            s.calls,
            s.turns,
            s.missed,
            s.early,
            ms(s.latency_ms.p50),
            ms(s.latency_ms.p95),
            ms(s.latency_ms.p99),
            ms(s.latency_ms.max),
            s.late_frames,
            s.dropped_frames
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            s.cpu_percent
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}")),
            s.rss_mb_max
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
            s.held.map_or("", |h| if h { "yes" } else { "no" }),
        ));
    }
    out.push_str("\nengine stages (medians, ms): endpoint wait · speech-to-text · turn engine · first audio · total\n");
    for s in &report.steps {
        let st = &s.stages_ms;
        out.push_str(&format!(
            "{:>5} calls: {} · {} · {} · {} · {}\n",
            s.concurrency,
            ms(st.endpoint_wait),
            ms(st.stt),
            ms(st.turn),
            ms(st.first_audio),
            ms(st.total)
        ));
        for e in &s.errors {
            out.push_str(&format!("      error: {e}\n"));
        }
    }
    if let (Some(slo), true) = (report.slo_ms, report.steps.iter().any(|s| s.held.is_some())) {
        out.push_str(&format!(
            "\nhighest concurrency within a {slo} ms p95: {}\n",
            report
                .max_concurrency_held
                .map_or_else(|| "none".to_owned(), |c| c.to_string())
        ));
    }
    if let Some(samples) = &report.soak
        && let (Some(first), Some(last)) = (samples.first(), samples.last())
    {
        let max = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
        out.push_str(&format!(
            "\nsoak: {} samples over {:.0} s; resident memory {:.1} MB → {:.1} MB (max {:.1}, {:+.1}); open files {} → {}\n",
            samples.len(),
            last.at_secs,
            first.rss_mb,
            last.rss_mb,
            max,
            last.rss_mb - first.rss_mb,
            first.open_fds,
            last.open_fds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::UtteranceTiming;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max),
            (Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        let mut one = vec![7.0];
        let p = percentiles(&mut one);
        assert_eq!((p.p50, p.p95, p.max), (Some(7.0), Some(7.0), Some(7.0)));
        assert_eq!(percentiles(&mut []).p50, None);
    }

    fn report(utterances: Vec<(u64, u64, u64)>, voiced: Vec<u64>, hung_up: bool) -> StreamReport {
        StreamReport {
            agent_audio: wav::Audio {
                samples: Vec::new(),
                sample_rate: 8000,
            },
            frames_sent: 0,
            frames_received: 0,
            frames_undecodable: 0,
            marks: 0,
            clears: 0,
            agent_hung_up: hung_up,
            utterances: utterances
                .into_iter()
                .map(|(s, e, end)| UtteranceTiming {
                    started: at(s),
                    speech_end: at(e),
                    ended: at(end),
                })
                .collect(),
            agent_voiced: voiced.into_iter().map(at).collect(),
            late_frames: 0,
        }
    }

    #[test]
    fn latency_runs_from_the_end_of_speech_to_the_first_agent_sound() {
        // Greeting at 100 ms; utterance 1 speaks 3000–4500 (trailing silence to 5000), the agent
        // answers at 5200; utterance 2 at 9000–10000, never answered before utterance 3; 3 is
        // answered at 13800.
        let r = report(
            vec![
                (3000, 4500, 5000),
                (9000, 10000, 10400),
                (12000, 13000, 13300),
            ],
            vec![100, 120, 5200, 5220, 13800, 13820],
            false,
        );
        let (latencies, early) = turn_latencies(&r);
        assert_eq!(latencies, vec![Some(700.0), None, Some(800.0)]);
        assert_eq!(early, 0);
    }

    #[test]
    fn sound_while_the_caller_speaks_is_an_early_answer() {
        let r = report(vec![(3000, 4500, 5000)], vec![4000, 4700], false);
        let (latencies, early) = turn_latencies(&r);
        assert_eq!(latencies, vec![Some(200.0)]);
        assert_eq!(early, 1);
    }

    #[test]
    fn a_silent_hang_up_after_the_last_words_is_not_a_missed_turn() {
        let r = report(
            vec![(3000, 4500, 5000), (8000, 9000, 9500)],
            vec![5100],
            true,
        );
        assert_eq!(turn_latencies(&r).0, vec![Some(600.0)]);
    }

    #[test]
    fn a_step_holds_only_within_the_slo_with_sound_audio() {
        let mut step = StepReport {
            turns: 10,
            latency_ms: Percentiles {
                p95: Some(900.0),
                ..Percentiles::default()
            },
            frames_received: 1000,
            dropped_frames: Some(0),
            ..StepReport::default()
        };
        assert!(held(&step, Duration::from_secs(1)));
        step.late_frames = 11;
        assert!(!held(&step, Duration::from_secs(1)));
        step.late_frames = 0;
        step.missed = 1;
        assert!(!held(&step, Duration::from_secs(1)));
        step.missed = 0;
        step.latency_ms.p95 = Some(1001.0);
        assert!(!held(&step, Duration::from_secs(1)));
    }

    #[test]
    fn a_long_call_repeats_the_turns_and_ends_with_the_goodbye() {
        let second = |n: usize| wav::Audio {
            samples: vec![0.1; 8000 * n],
            sample_rate: 8000,
        };
        let conversation = vec![second(1), second(2), second(3)];
        // Each turn counts as its length + 4 s: 5, 6, 5, 6, … until 20 s are planned.
        let call = long_call(
            &conversation,
            Duration::from_secs(20),
            Duration::from_secs(4),
        );
        let lengths: Vec<f32> = call.iter().map(wav::Audio::seconds).collect();
        assert_eq!(lengths, vec![1.0, 2.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            long_call(&conversation[2..], Duration::from_secs(60), Duration::ZERO).len(),
            1
        );
    }

    #[test]
    fn trailing_silence_is_not_speech() {
        let rate = 8000;
        let mut samples = vec![0.3f32; 8000]; // 1 s of "speech"
        samples.extend(vec![0.0f32; 4000]); // 0.5 s of silence
        assert_eq!(
            simulator::voiced_length(&samples, rate),
            Duration::from_secs(1)
        );
        assert_eq!(simulator::voiced_length(&[0.0; 800], rate), Duration::ZERO);
    }
}
