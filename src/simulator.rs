//! The carrier simulator behind `callgenius call`: behaves exactly like Twilio on a
//! bidirectional media stream. It obtains a stream (`test-call` for an agent), connects over
//! websocket, streams a WAV file's audio as 8 kHz µ-law in 20 ms frames paced in real time (or
//! faster with `speed`), plays the agent's audio into a buffer in real time and echoes each
//! mark when playback reaches it, honours `clear`, then hangs up once the caller's audio is over
//! and the agent has been quiet for a while. The report holds the call record with every turn.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::pipeline::{g711, resample::resample, wav};

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("engine request failed: {0}")]
    Http(String),
    #[error("media stream failed: {0}")]
    Stream(String),
    #[error(transparent)]
    Audio(#[from] wav::WavError),
    #[error("audio conversion failed: {0}")]
    Resample(String),
}

/// What to call and with what.
pub struct CallPlan {
    /// The engine's base URL (`http://127.0.0.1:8080`).
    pub base_url: String,
    /// An API token of the agent's business.
    pub api_token: String,
    pub agent_id: i64,
    /// The caller's audio (any WAV the engine reads).
    pub caller: wav::Audio,
    /// 1.0 streams in real time; 4.0 four times faster.
    pub speed: f32,
    /// Hang up after the agent has been quiet this long once the caller's audio is over.
    pub quiet: Duration,
}

/// The outcome: the engine's call record and the agent's audio as heard on the line.
#[derive(Debug, Serialize)]
pub struct CallReport {
    pub call_id: i64,
    pub call: Value,
    #[serde(skip)]
    pub agent_audio: wav::Audio,
    pub frames_sent: usize,
    pub frames_received: usize,
    pub marks: usize,
    pub clears: usize,
}

const FRAME_MS: u64 = 20;

pub async fn run(plan: CallPlan) -> Result<CallReport, SimulatorError> {
    let http = reqwest::Client::new();
    let http_err = |e: reqwest::Error| SimulatorError::Http(e.to_string());
    let base = plan.base_url.trim_end_matches('/');
    let response = http
        .post(format!("{base}/api/agents/{}/test-call", plan.agent_id))
        .bearer_auth(&plan.api_token)
        .send()
        .await
        .map_err(http_err)?;
    let status = response.status();
    let body: Value = response.json().await.map_err(http_err)?;
    if !status.is_success() {
        return Err(SimulatorError::Http(format!("test-call: {status} {body}")));
    }
    let call_id = body["call_id"].as_i64().unwrap_or_default();
    let stream_url = body["stream_url"].as_str().unwrap_or_default().to_owned();
    let token = body["token"].as_str().unwrap_or_default().to_owned();

    let line = resample(&plan.caller.samples, plan.caller.sample_rate, 8_000)
        .map_err(|e| SimulatorError::Resample(e.to_string()))?;
    let ulaw: Vec<u8> = line
        .iter()
        .map(|&s| g711::linear_to_ulaw(wav::to_i16(s)))
        .collect();

    let stream_err =
        |e: tokio_tungstenite::tungstenite::Error| SimulatorError::Stream(e.to_string());
    let (socket, _) = tokio_tungstenite::connect_async(stream_url.as_str())
        .await
        .map_err(stream_err)?;
    let (tx, mut rx) = socket.split();
    let tx = Arc::new(Mutex::new(tx));
    let send = |message: Value| {
        let tx = Arc::clone(&tx);
        async move {
            tx.lock()
                .await
                .send(Message::text(message.to_string()))
                .await
        }
    };
    send(json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }))
        .await
        .map_err(stream_err)?;
    let stream_sid = format!("MZsim{call_id}");
    send(json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": { "streamSid": stream_sid, "callSid": format!("CAsim{call_id}"), "accountSid": "ACsimulator",
                   "tracks": ["inbound"], "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                   "customParameters": { "token": token } }
    }))
    .await
    .map_err(stream_err)?;

    // The receiving side: agent audio into a timeline (one slot per 20 ms of the call), marks
    // echoed when playback reaches them.
    let started = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let reader = {
        let received = Arc::clone(&received);
        let tx = Arc::clone(&tx);
        let stream_sid = stream_sid.clone();
        tokio::spawn(async move {
            let mut played_until = Instant::now();
            while let Some(Ok(message)) = rx.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let mut got = received.lock().await;
                got.last_message = Instant::now();
                match value["event"].as_str() {
                    Some("media") => {
                        let payload = value["media"]["payload"].as_str().unwrap_or_default();
                        let bytes = STANDARD.decode(payload).unwrap_or_default();
                        played_until = played_until.max(Instant::now());
                        let at = (played_until - started).as_millis() as usize * 8;
                        got.place(at, &bytes);
                        played_until += Duration::from_millis(FRAME_MS);
                        got.frames += 1;
                        got.playing_until = played_until;
                    }
                    Some("clear") => {
                        got.clears += 1;
                        got.truncate((Instant::now() - started).as_millis() as usize * 8);
                        played_until = Instant::now();
                        got.playing_until = played_until;
                    }
                    Some("mark") => {
                        got.marks += 1;
                        let (tx, mark, at, sid) = (
                            Arc::clone(&tx),
                            value["mark"].clone(),
                            played_until,
                            stream_sid.clone(),
                        );
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            let echo = json!({ "event": "mark", "streamSid": sid, "mark": mark });
                            let _ = tx.lock().await.send(Message::text(echo.to_string())).await;
                        });
                    }
                    _ => {}
                }
            }
        })
    };

    // The caller: real-time frames (silence is sent too, as a phone line does).
    let frame_interval =
        Duration::from_secs_f64(FRAME_MS as f64 / 1000.0 / f64::from(plan.speed.max(0.1)));
    let mut next = Instant::now();
    let mut frames_sent = 0;
    for frame in ulaw.chunks(160) {
        let mut frame = frame.to_vec();
        frame.resize(160, 0xFF);
        let media = json!({ "event": "media", "streamSid": stream_sid,
            "media": { "track": "inbound", "chunk": (frames_sent + 1).to_string(),
                       "timestamp": (frames_sent as u64 * FRAME_MS).to_string(), "payload": STANDARD.encode(&frame) } });
        send(media).await.map_err(stream_err)?;
        frames_sent += 1;
        next += frame_interval;
        tokio::time::sleep_until(next).await;
    }
    // Then silence until the agent has finished and been quiet.
    let silence = STANDARD.encode([0xFFu8; 160]);
    loop {
        let (quiet_since, playing_until) = {
            let got = received.lock().await;
            (got.last_message, got.playing_until)
        };
        let now = Instant::now();
        if now >= playing_until && now.duration_since(quiet_since) >= plan.quiet {
            break;
        }
        let media = json!({ "event": "media", "streamSid": stream_sid, "media": { "track": "inbound", "payload": silence } });
        send(media).await.map_err(stream_err)?;
        frames_sent += 1;
        next += frame_interval;
        tokio::time::sleep_until(next).await;
    }
    send(json!({ "event": "stop", "streamSid": stream_sid, "stop": { "callSid": format!("CAsim{call_id}") } }))
        .await
        .map_err(stream_err)?;
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;

    // The call record is final once the engine has processed the stop.
    let mut call = Value::Null;
    for _ in 0..100 {
        call = http
            .get(format!("{base}/api/calls/{call_id}"))
            .bearer_auth(&plan.api_token)
            .send()
            .await
            .map_err(http_err)?
            .json()
            .await
            .map_err(http_err)?;
        if call["status"] == "completed" || call["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().await;
    let agent_audio = wav::Audio {
        samples: got
            .audio
            .iter()
            .map(|&b| f32::from(g711::ulaw_to_linear(b)) / 32_768.0)
            .collect(),
        sample_rate: 8_000,
    };
    Ok(CallReport {
        call_id,
        call,
        agent_audio,
        frames_sent,
        frames_received: got.frames,
        marks: got.marks,
        clears: got.clears,
    })
}

struct Received {
    /// µ-law on the call's timeline; silence where the agent said nothing.
    audio: Vec<u8>,
    frames: usize,
    marks: usize,
    clears: usize,
    last_message: Instant,
    playing_until: Instant,
}

impl Default for Received {
    fn default() -> Self {
        Self {
            audio: Vec::new(),
            frames: 0,
            marks: 0,
            clears: 0,
            last_message: Instant::now(),
            playing_until: Instant::now(),
        }
    }
}

impl Received {
    fn place(&mut self, at: usize, bytes: &[u8]) {
        if self.audio.len() < at + bytes.len() {
            self.audio.resize(at + bytes.len(), 0xFF);
        }
        self.audio[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// `clear`: audio queued beyond now is never played.
    fn truncate(&mut self, at: usize) {
        self.audio.truncate(at.min(self.audio.len()));
    }
}
