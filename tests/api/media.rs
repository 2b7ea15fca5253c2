//! Twilio Media Streams over a real websocket: the engine answers like a bidirectional stream.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Session, TestApp, spawn_app, spawn_ready_app_with};

/// Caller audio as 20 ms µ-law frames: a fixture between stretches of silence.
pub fn caller_frames(fixture: &str, lead_ms: usize, tail_ms: usize) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/speech")
        .join(fixture);
    let audio = callgenius::pipeline::wav::read(&path).unwrap();
    assert_eq!(audio.sample_rate, 8_000);
    let mut ulaw = vec![0xFFu8; lead_ms * 8];
    ulaw.extend(audio.samples.iter().map(|&s| {
        callgenius::pipeline::g711::linear_to_ulaw(callgenius::pipeline::wav::to_i16(s))
    }));
    ulaw.extend(vec![0xFFu8; tail_ms * 8]);
    ulaw.chunks(160).map(<[u8]>::to_vec).collect()
}

fn media(frame: &[u8]) -> Message {
    Message::text(json!({ "event": "media", "streamSid": "MZ1", "media": { "track": "inbound", "payload": STANDARD.encode(frame) } }).to_string())
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

pub(crate) struct Twilio {
    tx: Arc<Mutex<WsSink>>,
    /// Everything the engine sent, in order (close frames as `{"event":"close","code":…}`).
    pub(crate) rx: mpsc::UnboundedReceiver<Value>,
}

pub async fn test_call(app: &TestApp, s: &Session) -> (i64, String, String) {
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["call_id"].as_i64().unwrap(),
        r.body["stream_url"].as_str().unwrap().to_owned(),
        r.body["token"].as_str().unwrap().to_owned(),
    )
}

/// Connects like Twilio: `connected`, then `start` with the token. Plays the engine's audio in
/// real time and echoes each mark when playback reaches it, as Twilio does.
pub(crate) async fn connect(url: &str, token: &str) -> Twilio {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    let (mut tx, mut stream) = socket.split();
    tx.send(Message::text(
        json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" }).to_string(),
    ))
    .await
    .unwrap();
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": { "streamSid": "MZ1", "callSid": "CAtest", "accountSid": "AC1", "tracks": ["inbound"],
                   "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
                   "customParameters": { "token": token } }
    });
    tx.send(Message::text(start.to_string())).await.unwrap();
    let tx = Arc::new(Mutex::new(tx));
    let (seen_tx, rx) = mpsc::unbounded_channel();
    let echo = Arc::clone(&tx);
    tokio::spawn(async move {
        // When the audio received so far finishes playing.
        let mut played_until = Instant::now();
        while let Some(Ok(message)) = stream.next().await {
            let value: Value = match message {
                Message::Text(text) => serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => {
                    json!({ "event": "close", "code": frame.map(|f| u16::from(f.code)) })
                }
                _ => continue,
            };
            match value["event"].as_str() {
                Some("media") => {
                    played_until = played_until.max(Instant::now()) + Duration::from_millis(20)
                }
                Some("clear") => played_until = Instant::now(),
                Some("mark") => {
                    let (echo, at, mark) = (Arc::clone(&echo), played_until, value["mark"].clone());
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let reply = json!({ "event": "mark", "streamSid": "MZ1", "mark": mark });
                        let _ = echo
                            .lock()
                            .await
                            .send(Message::text(reply.to_string()))
                            .await;
                    });
                }
                _ => {}
            }
            if seen_tx.send(value).is_err() {
                break;
            }
        }
        // The connection ended without a close frame (tests that check close codes see `null`).
        let _ = seen_tx.send(json!({ "event": "close", "code": null }));
    });
    Twilio { tx, rx }
}

impl Twilio {
    pub(crate) async fn send(&self, message: Value) {
        self.tx
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// Messages until `until` matches one; panics after `limit`.
    pub(crate) async fn read_until(
        &mut self,
        limit: Duration,
        until: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let value = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("engine answered in time")
                .expect("socket open");
            let done = until(&value);
            seen.push(value);
            if done {
                return seen;
            }
        }
    }

    /// Messages until the engine has been quiet for `quiet`.
    pub(crate) async fn read_while_talking(
        &mut self,
        quiet: Duration,
        limit: Duration,
    ) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(quiet, self.rx.recv()).await {
                Ok(Some(value)) => seen.push(value),
                Ok(None) | Err(_) => break,
            }
        }
        seen
    }

    /// Streams frames faster than real time (a frame every 5 ms) so tests stay short.
    pub async fn send_audio(&mut self, frames: &[Vec<u8>]) {
        for frame in frames {
            self.tx.lock().await.send(media(frame)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The call record once `done` holds (the engine finalises a call just after its stream ends).
pub async fn settled_call(
    app: &TestApp,
    s: &Session,
    call_id: i64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut call = Value::Null;
    // Generous: on a loaded two-core machine the engine may take seconds to finalise.
    for _ in 0..150 {
        call = app
            .get(&format!("/api/calls/{call_id}"), &s.token)
            .await
            .body;
        if done(&call) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call
}

pub fn count(messages: &[Value], event: &str) -> usize {
    messages.iter().filter(|m| m["event"] == event).count()
}

#[tokio::test]
async fn a_stream_without_a_valid_token_is_closed_with_1008_and_no_call_starts() {
    let app = spawn_app().await;
    let s = app.register("ws@example.com", "WS").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    for bad in ["", "v1.nope.nope", forged.as_str()] {
        let mut twilio = connect(&url, bad).await;
        let closed = twilio
            .read_until(Duration::from_secs(10), |m| m["event"] == "close")
            .await;
        assert_eq!(closed.last().unwrap()["code"], 1008, "{bad:?}");
    }
    let call = app.get(&format!("/api/calls/{call_id}"), &s.token).await;
    assert_eq!(call.body["status"], "initiated");

    // The real token works once; a replay of it is refused.
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "media")
        .await;
    let mut replay = connect(&url, &token).await;
    let closed = replay
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;
    assert_eq!(closed.last().unwrap()["code"], 1008);
}

#[tokio::test]
async fn the_agent_greets_hears_the_caller_and_answers_with_marks() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("talk@example.com", "Talk").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;

    // The greeting: paced media frames, a mark after each clause; wait until it has played.
    let greeting = twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    assert!(
        count(&greeting, "media") > 50,
        "greeting audio: {} frames",
        count(&greeting, "media")
    );
    assert!(count(&greeting, "mark") >= 2, "a mark per clause");
    for m in greeting.iter().filter(|m| m["event"] == "media") {
        assert_eq!(m["streamSid"], "MZ1");
        assert_eq!(
            STANDARD
                .decode(m["media"]["payload"].as_str().unwrap())
                .unwrap()
                .len(),
            160
        );
    }

    // The caller speaks; the engine answers with what it heard.
    twilio
        .send_audio(&caller_frames("s3-piper-joe-8k-ulaw.wav", 500, 1200))
        .await;
    let reply = twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    assert!(
        count(&reply, "media") > 50,
        "reply audio: {} frames",
        count(&reply, "media")
    );
    assert_eq!(count(&reply, "clear"), 0);

    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1", "stop": { "callSid": "CAtest" } }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;

    // The call record: completed, with both turns and their latency reports.
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");
    // A test call's stream is opened by whoever asked for it: the call id its start message
    // claims is not recorded (transfers would act on it).
    assert!(call["carrier_call_id"].is_null(), "{call}");
    assert!(call["duration_sec"].as_f64().unwrap() > 1.0);
    let turns = call["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{call}");
    assert!(
        turns[0]["agent_text"]
            .as_str()
            .unwrap()
            .starts_with("Hello, you've reached Reception.")
    );
    let heard = turns[1]["caller_text"].as_str().unwrap().to_lowercase();
    assert!(heard.contains("pizza"), "{heard}");
    assert!(
        turns[1]["agent_text"]
            .as_str()
            .unwrap()
            .contains("I don't have that information")
    );
    for stage in [
        "endpoint_wait_ms",
        "stt_ms",
        "turn_ms",
        "tts_ms",
        "total_ms",
    ] {
        assert!(
            turns[1][stage].as_i64().is_some(),
            "{stage} in {}",
            turns[1]
        );
    }
    assert_eq!(turns[1]["interrupted"], 0);
}

#[tokio::test]
async fn caller_speech_during_the_greeting_clears_playback_and_keeps_only_what_was_heard() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("barge@example.com", "Barge").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;
    // Wait for the greeting's first audio and first mark (its first clause was played).
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "mark")
        .await;
    twilio
        .send_audio(&caller_frames("s1-piper-joe-8k-ulaw.wav", 0, 1200))
        .await;
    let after = twilio
        .read_while_talking(Duration::from_millis(1500), Duration::from_secs(60))
        .await;
    assert!(count(&after, "clear") >= 1, "playback cleared on barge-in");
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;

    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    let greeting = &call["turns"][0];
    assert_eq!(greeting["interrupted"], 1, "{call}");
    let heard = greeting["agent_text"].as_str().unwrap_or_default();
    assert!(
        !heard.contains("help you today"),
        "the cut clauses are not in the transcript: {heard:?}"
    );
}

#[tokio::test]
async fn malformed_messages_and_floods_are_ignored_and_the_call_survives() {
    let app = spawn_app().await;
    let s = app.register("junk@example.com", "Junk").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    // Media before start is ignored; so is everything malformed after it.
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut raw, mut incoming) = socket.split();
    raw.send(media(&[0xFF; 160])).await.unwrap();
    let start = json!({ "event": "start", "streamSid": "MZ1", "start": { "streamSid": "MZ1", "customParameters": { "token": token } } });
    raw.send(Message::text(start.to_string())).await.unwrap();
    for junk in [
        r#"{"event":"media","media":{"payload":"***not base64***"}}"#,
        r#"{"event":"party","streamSid":"MZ1"}"#,
        r#"{"event":"media","media":{"payl"#,
        "not json at all",
        r#"{"event":"mark","mark":{"name":"never-sent"}}"#,
        r#"{"event":"dtmf","dtmf":{}}"#,
    ] {
        raw.send(Message::text(junk)).await.unwrap();
    }
    raw.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    // A flood far faster than real time: two minutes of audio at once.
    for _ in 0..6_000 {
        raw.send(media(&[0xFF; 160])).await.unwrap();
    }
    raw.send(Message::text(
        json!({ "event": "stop", "streamSid": "MZ1" }).to_string(),
    ))
    .await
    .unwrap();
    let mut close_code = None;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(30), incoming.next()).await
    {
        if let Message::Close(frame) = message {
            close_code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(close_code, Some(1000));
    // The record is finalised just after the socket closes.
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");
    let metrics = app
        .request(reqwest::Method::GET, "/metrics", None, None)
        .await
        .body;
    assert!(
        metrics.as_str().unwrap().contains("media_bad_frames_total"),
        "bad frames are counted"
    );
}

#[tokio::test]
async fn a_message_over_64_kib_closes_the_stream_with_1009_and_the_call_is_finalised() {
    let app = spawn_app().await;
    let s = app.register("big@example.com", "Big").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "media")
        .await;
    let huge = "x".repeat(70 * 1024);
    let _ = twilio
        .tx
        .lock()
        .await
        .send(Message::text(
            json!({ "event": "media", "media": { "payload": huge } }).to_string(),
        ))
        .await;
    let closed = twilio
        .read_until(Duration::from_secs(30), |m| m["event"] == "close")
        .await;
    assert_eq!(closed.last().unwrap()["code"], 1009);
    let call = settled_call(&app, &s, call_id, |c| c["status"] != "in-progress").await;
    assert_eq!(call["status"], "failed", "{call}");
    assert!(call["ended_at"].is_string());
}

#[tokio::test]
async fn shutdown_lets_a_live_call_finish_before_stopping() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(data_dir.path()).await;
    let database_url = config.effective_database_url();
    let engine = callgenius::app::Application::build(config).await.unwrap();
    let app = TestApp::at(format!("http://{}", engine.local_addr()), database_url);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(engine.run_until_stopped(async {
        stopped.await.ok();
    }));
    let s = app.register("drain@example.com", "Drain").await;
    let (_, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "media")
        .await;

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!server.is_finished(), "the engine waits for the live call");
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("stops once the call ended")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn deleting_an_agent_in_a_call_waits_for_the_call_to_end() {
    let app = spawn_app().await;
    let s = app.register("del@example.com", "Del").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let agent = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body["agent_id"]
        .as_i64()
        .unwrap();
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "media")
        .await;

    let deleting = app.delete(&format!("/api/agents/{agent}"), &s.token).await;
    assert_eq!(deleting.status, StatusCode::ACCEPTED, "{}", deleting.body);
    assert_eq!(deleting.body["status"], "deleting");
    let refused = app
        .post(
            &format!("/api/agents/{agent}/test-call"),
            &s.token,
            json!({}),
        )
        .await;
    crate::helpers::assert_error(&refused, StatusCode::CONFLICT);
    // Nor does it take changes, and its history stays as it was.
    let path = format!("/api/agents/{agent}");
    let changed = app.patch(&path, &s.token, json!({ "name": "Late" })).await;
    crate::helpers::assert_error(&changed, StatusCode::CONFLICT);
    let rolled = app
        .post(&format!("{path}/versions/1/rollback"), &s.token, json!({}))
        .await;
    crate::helpers::assert_error(&rolled, StatusCode::CONFLICT);
    let still = app.get(&path, &s.token).await;
    assert_eq!(still.body["name"], "Reception", "{}", still.body);
    assert_eq!(still.body["current_version"], 1, "{}", still.body);

    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;
    let mut status = StatusCode::OK;
    for _ in 0..150 {
        status = app
            .get(&format!("/api/agents/{agent}"), &s.token)
            .await
            .status;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted once the call ended");
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed");
    assert_eq!(
        call["agent_id"],
        Value::Null,
        "the call record stays, without its agent"
    );
}

/// `text` spoken by the Piper voice, as 20 ms µ-law frames with a little silence after it.
fn spoken(text: &str) -> Vec<Vec<u8>> {
    use callgenius::pipeline::{g711, resample::resample, wav};
    static MODELS: std::sync::OnceLock<callgenius::models::Models> = std::sync::OnceLock::new();
    let models = MODELS.get_or_init(|| {
        callgenius::models::Models::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
            .unwrap()
    });
    let voice = models.voices.get("joe").unwrap();
    let speech = resample(&voice.synthesize(text).unwrap(), voice.sample_rate, 8_000).unwrap();
    let mut ulaw: Vec<u8> = speech
        .iter()
        .map(|&s| g711::linear_to_ulaw(wav::to_i16(s)))
        .collect();
    ulaw.extend(vec![0xFFu8; 8 * 900]);
    ulaw.chunks(160).map(<[u8]>::to_vec).collect()
}

/// Says `text` over the agent's greeting, hangs up once the agent is quiet, and returns what
/// the engine sent after the interjection and the final call record.
async fn interject(app: &TestApp, s: &Session, text: &str) -> (Vec<Value>, Value) {
    let (call_id, url, token) = test_call(app, s).await;
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_until(Duration::from_secs(60), |m| m["event"] == "media")
        .await;
    twilio.send_audio(&spoken(text)).await;
    let rest = twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;
    (
        rest,
        settled_call(app, s, call_id, |c| c["status"] == "completed").await,
    )
}

#[tokio::test]
async fn a_backchannel_lets_the_agent_carry_on_but_a_short_objection_interrupts() {
    // A threshold well above these one-word replies (about 0.25 s of speech each), so that both
    // go through the backchannel filter whatever Piper's timing this run.
    let app = crate::helpers::spawn_ready_app_with(|c| c.barge_in_ms = 700).await;
    let s = app.register("uhhuh@example.com", "Uhhuh").await;

    // "Yeah." during the greeting: no clear; the whole greeting is heard; no turn for it.
    let (rest, call) = interject(&app, &s, "Yeah.").await;
    assert_eq!(count(&rest, "clear"), 0, "a backchannel does not interrupt");
    let turns = call["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "{call}");
    assert_eq!(turns[0]["interrupted"], 0);
    assert!(
        turns[0]["agent_text"]
            .as_str()
            .unwrap()
            .ends_with("How can I help you today?"),
        "{call}"
    );

    // "Stop." during the greeting: cleared, and answered.
    let (rest, call) = interject(&app, &s, "Stop.").await;
    assert!(count(&rest, "clear") >= 1, "a short objection interrupts");
    let turns = call["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{call}");
    assert_eq!(turns[0]["interrupted"], 1);
    assert!(
        turns[1]["caller_text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("stop"),
        "{call}"
    );
    assert!(!turns[1]["agent_text"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn keypad_digits_reach_the_turn_engine() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("dtmf@example.com", "Dtmf").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;
    twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    twilio.send(json!({ "event": "dtmf", "streamSid": "MZ1", "dtmf": { "track": "inbound_track", "digit": "5" } })).await;
    // `#` ends the keypad entry (digits are gathered into one turn).
    twilio.send(json!({ "event": "dtmf", "streamSid": "MZ1", "dtmf": { "track": "inbound_track", "digit": "#" } })).await;
    twilio
        .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
        .await;
    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1" }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["turns"][1]["agent_text"], "You pressed 5.", "{call}");
}

#[tokio::test]
async fn a_telnyx_stream_in_l16_with_frames_out_of_order_is_heard_and_answered_in_kind() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("telnyx@example.com", "Telnyx").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call?carrier=telnyx"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call_id = r.body["call_id"].as_i64().unwrap();
    let url = r.body["stream_url"].as_str().unwrap().to_owned();
    assert!(url.contains("/media/telnyx?token=v1."), "{url}");

    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = socket.split();
    let send = |value: Value| Message::text(value.to_string());
    tx.send(send(json!({ "event": "connected", "version": "1.0.0" })))
        .await
        .unwrap();
    tx.send(send(json!({ "event": "start", "sequence_number": "1", "stream_id": "S1",
        "start": { "call_control_id": "v2:test", "media_format": { "encoding": "L16", "sample_rate": 16000, "channels": 1 } } })))
        .await
        .unwrap();

    // The greeting comes back as Telnyx media: L16 at 16 kHz, 640 bytes a frame.
    let mut greeting = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(2500), rx.next()).await
    {
        greeting.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let media: Vec<_> = greeting.iter().filter(|m| m["event"] == "media").collect();
    assert!(media.len() > 50, "{} frames", media.len());
    assert_eq!(
        STANDARD
            .decode(media[0]["media"]["payload"].as_str().unwrap())
            .unwrap()
            .len(),
        640
    );
    assert!(
        greeting
            .iter()
            .any(|m| m["event"] == "mark" && m["mark"]["name"].is_string())
    );
    for mark in greeting.iter().filter(|m| m["event"] == "mark") {
        tx.send(send(
            json!({ "event": "mark", "stream_id": "S1", "mark": mark["mark"] }),
        ))
        .await
        .unwrap();
    }

    // The caller, in big-endian L16 at 16 kHz, with every pair of frames swapped in transit.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/s3-piper-joe-16k.wav");
    let audio = callgenius::pipeline::wav::read(&path).unwrap();
    let mut samples = vec![0.0f32; 16_000 / 2];
    samples.extend(&audio.samples);
    samples.extend(vec![0.0f32; 16_000 * 12 / 10]);
    let mut bytes = Vec::new();
    for &sample in &samples {
        bytes.extend(callgenius::pipeline::wav::to_i16(sample).to_be_bytes());
    }
    let frames: Vec<&[u8]> = bytes.chunks(640).collect();
    let mut order: Vec<usize> = (0..frames.len()).collect();
    for pair in order.chunks_mut(2) {
        pair.reverse();
    }
    for index in order {
        let message = json!({ "event": "media", "sequence_number": (index + 2).to_string(), "stream_id": "S1",
            "media": { "track": "inbound", "chunk": (index + 1).to_string(), "timestamp": (index * 20).to_string(),
                       "payload": STANDARD.encode(frames[index]) } });
        tx.send(send(message)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reply = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(2500), rx.next()).await
    {
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["event"] == "mark" {
            tx.send(send(
                json!({ "event": "mark", "stream_id": "S1", "mark": value["mark"] }),
            ))
            .await
            .unwrap();
        }
        reply.push(value);
    }
    assert!(reply.iter().filter(|m| m["event"] == "media").count() > 50);
    tx.send(send(json!({ "event": "stop", "sequence_number": "9999", "stream_id": "S1", "stop": { "call_control_id": "v2:test" } })))
        .await
        .unwrap();

    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["carrier"], "telnyx", "{call}");
    // A test call's stream is opened by whoever asked for it: the call id its start message
    // claims is not recorded (transfers would act on it).
    assert!(call["carrier_call_id"].is_null(), "{call}");
    let heard = call["turns"][1]["caller_text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(heard.contains("pizza"), "{call}");
    assert!(
        call["turns"][1]["agent_text"]
            .as_str()
            .unwrap()
            .contains("I don't have that information")
    );
}

#[tokio::test]
async fn a_vonage_stream_of_binary_l16_is_heard_and_answered_with_playback_tracked_by_time() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("vonage@example.com", "Vonage").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call?carrier=vonage"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let call_id = r.body["call_id"].as_i64().unwrap();
    let url = r.body["stream_url"].as_str().unwrap().to_owned();
    assert!(url.contains("/media/vonage?token=v1."), "{url}");

    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = socket.split();
    let connected = json!({ "event": "websocket:connected", "content-type": "audio/l16;rate=16000", "uuid": "vonage-call-1" });
    tx.send(Message::text(connected.to_string())).await.unwrap();

    // The greeting: binary L16 frames of 640 bytes (20 ms at 16 kHz), no marks.
    let mut frames = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(2500), rx.next()).await
    {
        match message {
            Message::Binary(bytes) => {
                assert_eq!(bytes.len(), 640);
                frames += 1;
            }
            Message::Text(text) => panic!("unexpected text from the engine: {text}"),
            _ => {}
        }
    }
    assert!(frames > 50, "{frames} greeting frames");

    // The caller, as binary little-endian L16 at 16 kHz.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/s3-piper-joe-16k.wav");
    let audio = callgenius::pipeline::wav::read(&path).unwrap();
    let mut samples = vec![0.0f32; 8_000];
    samples.extend(&audio.samples);
    samples.extend(vec![0.0f32; 19_200]);
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|&s| callgenius::pipeline::wav::to_i16(s).to_le_bytes())
        .collect();
    for frame in bytes.chunks(640) {
        tx.send(Message::binary(frame.to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reply = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(2500), rx.next()).await
    {
        if let Message::Binary(_) = message {
            reply += 1;
        }
    }
    assert!(reply > 50, "{reply} reply frames");
    // Vonage ends a call by closing the socket.
    tx.send(Message::Close(None)).await.unwrap();

    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["carrier"], "vonage", "{call}");
    // A test call's stream is opened by whoever asked for it: the call id its start message
    // claims is not recorded (transfers would act on it).
    assert!(call["carrier_call_id"].is_null(), "{call}");
    let turns = call["turns"].as_array().unwrap();
    assert!(
        turns[0]["agent_text"]
            .as_str()
            .unwrap()
            .starts_with("Hello, you've reached Reception."),
        "played by time: {call}"
    );
    assert!(
        turns[1]["caller_text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("pizza"),
        "{call}"
    );
    assert!(
        turns[1]["agent_text"]
            .as_str()
            .unwrap()
            .contains("I don't have that information"),
        "{call}"
    );
}
