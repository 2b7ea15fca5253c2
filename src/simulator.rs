//! The carrier simulator behind `callgenius call`: behaves exactly like Twilio (or Telnyx,
//! Plivo, Vonage, a browser) on a bidirectional media stream. It obtains a stream (`test-call`
//! for an agent), connects over websocket, streams a WAV file's audio coded as that carrier
//! codes it (µ-law 8 kHz, L16 16 kHz, Opus) in 20 ms frames paced in real time (or faster with
//! `speed`), plays the agent's audio into a buffer in real time and echoes each
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

use crate::media::codec::{LineDecoder, LineEncoder, OPUS_RATE};
use crate::media::protocol::{Codec, LineFormat};
use crate::pipeline::{resample::resample, wav};

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
    #[error(transparent)]
    Codec(#[from] crate::media::codec::CodecError),
}

/// What to call and with what.
pub struct CallPlan {
    /// The engine's base URL (`http://127.0.0.1:8080`).
    pub base_url: String,
    /// An API token of the agent's business.
    pub api_token: String,
    pub agent_id: i64,
    /// The caller's audio (any WAV the engine reads), played from the moment the call connects,
    /// or, when `then` is not empty, once the agent's greeting is over.
    pub caller: wav::Audio,
    /// Further utterances, each spoken once the agent has answered the previous one and been
    /// quiet for `pause` (a caller taking turns, as people do).
    pub then: Vec<wav::Audio>,
    /// How long the caller waits after the agent stops before speaking again.
    pub pause: Duration,
    /// 1.0 streams in real time; 4.0 four times faster.
    pub speed: f32,
    /// Hang up after the agent has been quiet this long once the caller's audio is over.
    pub quiet: Duration,
    /// Which carrier's protocol to speak.
    pub carrier: SimCarrier,
    /// The caller's number (E.164) the call presents, if any.
    pub from: Option<String>,
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
    /// Agent frames the simulator's codec could not read (should be none).
    pub frames_undecodable: usize,
    pub marks: usize,
    pub clears: usize,
    /// The engine ended the call (the agent hung up) rather than the simulator.
    pub agent_hung_up: bool,
}

const FRAME_MS: u64 = 20;

/// The protocol the simulator speaks, as the carrier of that name would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SimCarrier {
    /// Twilio Media Streams: JSON, µ-law 8 kHz, marks.
    #[default]
    Twilio,
    /// Telnyx media streaming: JSON in snake_case, PCMU 8 kHz, sequence numbers, marks.
    Telnyx,
    /// Plivo audio streams: JSON, µ-law 8 kHz, checkpoints.
    Plivo,
    /// Vonage: binary L16 at 16 kHz, no marks, hang up by closing.
    Vonage,
    /// The browser protocol (`/media/web`): binary Opus packets, JSON control, marks.
    Web,
}

/// What the engine sent, as the simulator cares about it.
enum Incoming {
    Media(Vec<u8>),
    Mark(String),
    Clear,
}

impl SimCarrier {
    fn name(self) -> &'static str {
        match self {
            SimCarrier::Twilio => "twilio",
            SimCarrier::Telnyx => "telnyx",
            SimCarrier::Plivo => "plivo",
            SimCarrier::Vonage => "vonage",
            SimCarrier::Web => "web",
        }
    }

    fn format(self) -> LineFormat {
        match self {
            SimCarrier::Twilio | SimCarrier::Telnyx | SimCarrier::Plivo => LineFormat::MULAW_8K,
            SimCarrier::Vonage => LineFormat {
                codec: Codec::L16LittleEndian,
                sample_rate: 16_000,
            },
            SimCarrier::Web => LineFormat {
                codec: Codec::Opus,
                sample_rate: OPUS_RATE,
            },
        }
    }

    fn opening(self, call_id: i64, token: &str) -> Vec<Message> {
        let text = |v: Value| Message::text(v.to_string());
        let sid = format!("MZsim{call_id}");
        match self {
            SimCarrier::Twilio => vec![
                text(json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" })),
                text(
                    json!({ "event": "start", "sequenceNumber": "1", "streamSid": sid,
                    "start": { "streamSid": sid, "callSid": format!("CAsim{call_id}"), "accountSid": "ACsimulator",
                               "tracks": ["inbound"], "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                               "customParameters": { "token": token } } }),
                ),
            ],
            SimCarrier::Telnyx => vec![
                text(json!({ "event": "connected", "version": "1.0.0" })),
                text(
                    json!({ "event": "start", "sequence_number": "1", "stream_id": sid,
                    "start": { "call_control_id": format!("v3:sim{call_id}"),
                               "media_format": { "encoding": "PCMU", "sample_rate": 8000, "channels": 1 } } }),
                ),
            ],
            SimCarrier::Plivo => vec![text(
                json!({ "sequenceNumber": 0, "event": "start", "extra_headers": "{}",
                "start": { "callId": format!("sim-{call_id}"), "streamId": sid, "accountId": "MAsimulator",
                           "tracks": ["inbound"], "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000 } } }),
            )],
            SimCarrier::Vonage => vec![text(json!({ "event": "websocket:connected",
                "content-type": "audio/l16;rate=16000", "uuid": format!("sim-{call_id}") }))],
            SimCarrier::Web => vec![text(json!({ "type": "start", "encoding": "opus" }))],
        }
    }

    fn media(self, call_id: i64, number: usize, frame: &[u8]) -> Message {
        let payload = STANDARD.encode(frame);
        let sid = format!("MZsim{call_id}");
        match self {
            SimCarrier::Twilio => Message::text(json!({ "event": "media", "streamSid": sid,
                "media": { "track": "inbound", "chunk": (number + 1).to_string(),
                           "timestamp": (number as u64 * FRAME_MS).to_string(), "payload": payload } }).to_string()),
            SimCarrier::Telnyx => Message::text(json!({ "event": "media", "sequence_number": (number + 2).to_string(),
                "stream_id": sid, "media": { "track": "inbound", "chunk": (number + 1).to_string(),
                "timestamp": (number as u64 * FRAME_MS).to_string(), "payload": payload } }).to_string()),
            SimCarrier::Plivo => Message::text(json!({ "event": "media", "sequenceNumber": number + 1,
                "streamId": sid, "media": { "track": "inbound", "chunk": number + 1,
                "timestamp": (number as u64 * FRAME_MS).to_string(), "payload": payload } }).to_string()),
            SimCarrier::Vonage | SimCarrier::Web => Message::binary(frame.to_vec()),
        }
    }

    /// The hang-up message; Vonage hangs up by closing the socket.
    fn stop(self, call_id: i64) -> Message {
        let sid = format!("MZsim{call_id}");
        match self {
            SimCarrier::Twilio => {
                Message::text(json!({ "event": "stop", "streamSid": sid }).to_string())
            }
            SimCarrier::Telnyx => {
                Message::text(json!({ "event": "stop", "stream_id": sid }).to_string())
            }
            SimCarrier::Plivo => {
                Message::text(json!({ "event": "stop", "streamId": sid }).to_string())
            }
            SimCarrier::Vonage => Message::Close(None),
            SimCarrier::Web => Message::text(json!({ "type": "stop" }).to_string()),
        }
    }

    /// Tells the engine playback reached the mark of this name.
    fn mark_echo(self, call_id: i64, name: &str) -> Message {
        let sid = format!("MZsim{call_id}");
        let message = match self {
            SimCarrier::Telnyx => {
                json!({ "event": "mark", "stream_id": sid, "mark": { "name": name } })
            }
            SimCarrier::Plivo => json!({ "event": "playedStream", "streamId": sid, "name": name }),
            SimCarrier::Web => json!({ "type": "mark", "name": name }),
            SimCarrier::Twilio | SimCarrier::Vonage => {
                json!({ "event": "mark", "streamSid": sid, "mark": { "name": name } })
            }
        };
        Message::text(message.to_string())
    }

    fn parse(self, message: Message) -> Option<Incoming> {
        match message {
            Message::Binary(bytes) => Some(Incoming::Media(bytes.to_vec())),
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).ok()?;
                let name = |v: &Value| v.as_str().map(|n| Incoming::Mark(n.to_owned()));
                match (value["event"].as_str(), value["type"].as_str()) {
                    (Some("media" | "playAudio"), _) => {
                        let payload = value["media"]["payload"].as_str().unwrap_or_default();
                        Some(Incoming::Media(
                            STANDARD.decode(payload).unwrap_or_default(),
                        ))
                    }
                    (Some("mark"), _) => name(&value["mark"]["name"]),
                    (Some("checkpoint"), _) | (_, Some("mark")) => name(&value["name"]),
                    (Some("clear" | "clearAudio"), _) | (_, Some("clear")) => Some(Incoming::Clear),
                    _ => (value["action"] == "clear").then_some(Incoming::Clear),
                }
            }
            _ => None,
        }
    }
}

pub async fn run(plan: CallPlan) -> Result<CallReport, SimulatorError> {
    let carrier = plan.carrier;
    let http = reqwest::Client::new();
    let http_err = |e: reqwest::Error| SimulatorError::Http(e.to_string());
    let base = plan.base_url.trim_end_matches('/');
    let mut query = vec![("carrier", carrier.name().to_owned())];
    if let Some(from) = &plan.from {
        query.push(("from", from.clone()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let response = http
        .post(format!(
            "{base}/api/agents/{}/test-call?{query}",
            plan.agent_id
        ))
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

    let streamed = stream(StreamPlan {
        call_id,
        stream_url,
        token,
        utterances: std::iter::once(plan.caller).chain(plan.then).collect(),
        listen_first: false,
        await_reply: true,
        pause: plan.pause,
        speed: plan.speed,
        quiet: plan.quiet,
        carrier,
    })
    .await?;

    // The call record is final once the engine has processed the hang-up.
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
    Ok(CallReport {
        call_id,
        call,
        agent_audio: streamed.agent_audio,
        frames_sent: streamed.frames_sent,
        frames_received: streamed.frames_received,
        frames_undecodable: streamed.frames_undecodable,
        marks: streamed.marks,
        clears: streamed.clears,
        agent_hung_up: streamed.agent_hung_up,
    })
}

/// One media stream, as a carrier runs it once a call is connected.
pub struct StreamPlan {
    pub call_id: i64,
    /// The media websocket and the stream token that admits it.
    pub stream_url: String,
    pub token: String,
    /// What the far end says: the first from the start of the call (or, when there are more,
    /// once the agent's greeting is over), each further one once the agent has answered the one
    /// before and been quiet for `pause`.
    pub utterances: Vec<wav::Audio>,
    /// Listen to the agent's greeting before the first utterance even when there is only one
    /// (a person who picks up; an answering machine starts at once).
    pub listen_first: bool,
    /// After the last utterance, wait for the agent to begin answering (up to 10 s) before
    /// hanging up once it is quiet: a caller who asked something waits for the answer. A
    /// conversation always does; an answering machine does not.
    pub await_reply: bool,
    pub pause: Duration,
    pub speed: f32,
    pub quiet: Duration,
    pub carrier: SimCarrier,
}

/// What the far end of a stream heard and did.
#[derive(Debug)]
pub struct StreamReport {
    pub agent_audio: wav::Audio,
    pub frames_sent: usize,
    pub frames_received: usize,
    pub frames_undecodable: usize,
    pub marks: usize,
    pub clears: usize,
    /// The engine closed the stream.
    pub agent_hung_up: bool,
    /// When each utterance was played, from the moment the stream opened.
    pub utterances: Vec<UtteranceTiming>,
    /// When each agent frame with sound in it (not silence) arrived, from the same moment.
    pub agent_voiced: Vec<Duration>,
    /// Agent frames that arrived after the audio before them had finished playing, in the
    /// middle of a reply: the caller heard a gap.
    pub late_frames: usize,
}

/// When the far end played one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtteranceTiming {
    /// Its first frame was sent.
    pub started: Duration,
    /// Its speech ended: the start of its trailing silence, as known from the audio.
    pub speech_end: Duration,
    /// Its last frame (trailing silence included) was sent.
    pub ended: Duration,
}

/// A frame's level above which it counts as sound: -40 dBFS RMS.
const VOICED_RMS: f32 = 0.01;

fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32).sqrt()
}

/// How much of `samples` comes before its trailing silence (20 ms windows at `rate`).
pub fn voiced_length(samples: &[f32], rate: u32) -> Duration {
    let window = (rate as usize / 50).max(1);
    let voiced_windows = samples
        .chunks(window)
        .rposition(|w| rms(w) > VOICED_RMS)
        .map_or(0, |i| i + 1);
    Duration::from_secs_f64((voiced_windows * window).min(samples.len()) as f64 / f64::from(rate))
}

/// Connects to a media stream and plays `plan`'s side of the call in real time (see the module
/// documentation), until the far end has said everything and the agent has been quiet for
/// `quiet`, or the engine hangs up.
pub async fn stream(plan: StreamPlan) -> Result<StreamReport, SimulatorError> {
    let StreamPlan {
        call_id,
        stream_url,
        token,
        carrier,
        ..
    } = &plan;
    let (call_id, carrier) = (*call_id, *carrier);
    let format = carrier.format();
    let mut encoder = LineEncoder::new(format)?;
    let mut utterances = Vec::with_capacity(plan.utterances.len());
    let speed = f64::from(plan.speed.max(0.1));
    let voiced: Vec<Duration> = plan
        .utterances
        .iter()
        .map(|a| voiced_length(&a.samples, a.sample_rate).div_f64(speed))
        .collect();
    for audio in &plan.utterances {
        let line = resample(&audio.samples, audio.sample_rate, format.sample_rate)
            .map_err(|e| SimulatorError::Resample(e.to_string()))?;
        let mut frames = Vec::with_capacity(line.len() / 160 + 1);
        encoder.encode(&line, &mut frames)?;
        utterances.push(frames);
    }
    let mut decoder = LineDecoder::new(format)?;

    let stream_err =
        |e: tokio_tungstenite::tungstenite::Error| SimulatorError::Stream(e.to_string());
    let (socket, _) = tokio_tungstenite::connect_async(stream_url.as_str())
        .await
        .map_err(stream_err)?;
    let (tx, mut rx) = socket.split();
    let tx = Arc::new(Mutex::new(tx));
    for message in carrier.opening(call_id, token) {
        tx.lock().await.send(message).await.map_err(stream_err)?;
    }

    // The receiving side: agent audio into a timeline, marks echoed when playback reaches them.
    let started = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let reader = {
        let received = Arc::clone(&received);
        let tx = Arc::clone(&tx);
        tokio::spawn(async move {
            let mut played_until = Instant::now();
            let samples_per_ms = format.sample_rate as usize / 1000;
            while let Some(Ok(message)) = rx.next().await {
                if let Message::Close(_) = message {
                    break;
                }
                let Some(incoming) = carrier.parse(message) else {
                    continue;
                };
                let mut got = received.lock().await;
                got.last_message = Instant::now();
                match incoming {
                    Incoming::Media(bytes) => {
                        let now = Instant::now();
                        // Mid-reply (a frame came in the last half second) yet the audio before
                        // it already ran out: the caller heard a gap.
                        if got.frames > 0
                            && now > played_until + Duration::from_millis(60)
                            && now.duration_since(got.last_media) < Duration::from_millis(500)
                        {
                            got.late += 1;
                        }
                        got.last_media = now;
                        played_until = played_until.max(now);
                        let at = (played_until - started).as_millis() as usize * samples_per_ms;
                        let mut samples = Vec::with_capacity(format.sample_rate as usize / 50);
                        if decoder.decode(&bytes, &mut samples).is_err() {
                            got.undecodable += 1;
                            continue;
                        }
                        if rms(&samples) > VOICED_RMS {
                            got.voiced.push(now.duration_since(started));
                        }
                        got.place(at, &samples);
                        played_until += Duration::from_micros(
                            samples.len() as u64 * 1_000_000 / u64::from(format.sample_rate),
                        );
                        got.frames += 1;
                        got.playing_until = played_until;
                    }
                    Incoming::Clear => {
                        got.clears += 1;
                        got.truncate(
                            (Instant::now() - started).as_millis() as usize * samples_per_ms,
                        );
                        played_until = Instant::now();
                        got.playing_until = played_until;
                    }
                    Incoming::Mark(mark) => {
                        got.marks += 1;
                        let (tx, at) = (Arc::clone(&tx), played_until);
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            let _ = tx
                                .lock()
                                .await
                                .send(carrier.mark_echo(call_id, &mark))
                                .await;
                        });
                    }
                }
            }
            // The engine hung up (or the stream broke).
            received.lock().await.closed = true;
        })
    };

    // The caller: real-time frames (silence is sent too, as a phone line does).
    let frame_interval =
        Duration::from_secs_f64(FRAME_MS as f64 / 1000.0 / f64::from(plan.speed.max(0.1)));
    let mut next = Instant::now();
    let mut frames_sent = 0;
    let silence = vec![0.0; format.sample_rate as usize / 50];
    let mut frame = Vec::with_capacity(1);
    // A conversation (several utterances) starts by listening to the greeting.
    let conversation = utterances.len() > 1 || plan.listen_first;
    let mut timings = Vec::with_capacity(utterances.len());
    for (index, frames) in utterances.iter().enumerate() {
        if index > 0 || conversation {
            // Silence until the agent has started answering (or 10 s pass) and has then been
            // quiet for the pause.
            let heard_before = received.lock().await.frames;
            let asked = Instant::now();
            loop {
                let (count, quiet_since, playing_until) = {
                    let got = received.lock().await;
                    (got.frames, got.last_message, got.playing_until)
                };
                let now = Instant::now();
                let answered = count > heard_before || now.duration_since(asked).as_secs() >= 10;
                if answered && now >= playing_until && now.duration_since(quiet_since) >= plan.pause
                {
                    break;
                }
                frame.clear();
                encoder.encode(&silence, &mut frame)?;
                tx.lock()
                    .await
                    .send(carrier.media(call_id, frames_sent, &frame[0]))
                    .await
                    .map_err(stream_err)?;
                frames_sent += 1;
                next += frame_interval;
                tokio::time::sleep_until(next).await;
            }
        }
        let first = Instant::now().duration_since(started);
        for frame in frames {
            tx.lock()
                .await
                .send(carrier.media(call_id, frames_sent, frame))
                .await
                .map_err(stream_err)?;
            frames_sent += 1;
            next += frame_interval;
            tokio::time::sleep_until(next).await;
        }
        timings.push(UtteranceTiming {
            started: first,
            speech_end: first + voiced[index],
            ended: Instant::now().duration_since(started),
        });
    }
    // Then silence until the agent has answered (a conversation's last words get a reply; up
    // to 10 s) and been quiet, or has hung up.
    let mut hung_up = false;
    let heard_before = received.lock().await.frames;
    let asked = Instant::now();
    loop {
        let (quiet_since, playing_until, closed) = {
            let got = received.lock().await;
            (got.last_message, got.playing_until, got.closed)
        };
        let now = Instant::now();
        if closed {
            hung_up = true;
            break;
        }
        let answered = !(conversation || plan.await_reply)
            || received.lock().await.frames > heard_before
            || now.duration_since(asked).as_secs() >= 10;
        if answered && now >= playing_until && now.duration_since(quiet_since) >= plan.quiet {
            break;
        }
        frame.clear();
        encoder.encode(&silence, &mut frame)?;
        let sent = tx
            .lock()
            .await
            .send(carrier.media(call_id, frames_sent, &frame[0]))
            .await;
        if sent.is_err() {
            hung_up = true;
            break;
        }
        frames_sent += 1;
        next += frame_interval;
        tokio::time::sleep_until(next).await;
    }
    if !hung_up {
        tx.lock()
            .await
            .send(carrier.stop(call_id))
            .await
            .map_err(stream_err)?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;

    let got = received.lock().await;
    let agent_audio = wav::Audio {
        samples: got.audio.clone(),
        sample_rate: format.sample_rate,
    };
    Ok(StreamReport {
        agent_audio,
        frames_sent,
        frames_received: got.frames,
        frames_undecodable: got.undecodable,
        marks: got.marks,
        clears: got.clears,
        agent_hung_up: hung_up,
        utterances: timings,
        agent_voiced: got.voiced.clone(),
        late_frames: got.late,
    })
}

struct Received {
    /// The agent's audio on the call's timeline; silence where the agent said nothing.
    audio: Vec<f32>,
    frames: usize,
    /// Agent frames the codec could not read.
    undecodable: usize,
    marks: usize,
    clears: usize,
    last_message: Instant,
    last_media: Instant,
    playing_until: Instant,
    /// The engine closed the stream (the agent hung up).
    closed: bool,
    voiced: Vec<Duration>,
    late: usize,
}

impl Default for Received {
    fn default() -> Self {
        Self {
            audio: Vec::new(),
            frames: 0,
            undecodable: 0,
            marks: 0,
            clears: 0,
            last_message: Instant::now(),
            last_media: Instant::now(),
            playing_until: Instant::now(),
            closed: false,
            voiced: Vec::new(),
            late: 0,
        }
    }
}

impl Received {
    fn place(&mut self, at: usize, samples: &[f32]) {
        if self.audio.len() < at + samples.len() {
            self.audio.resize(at + samples.len(), 0.0);
        }
        self.audio[at..at + samples.len()].copy_from_slice(samples);
    }

    /// `clear`: audio queued beyond now is never played.
    fn truncate(&mut self, at: usize) {
        self.audio.truncate(at.min(self.audio.len()));
    }
}
