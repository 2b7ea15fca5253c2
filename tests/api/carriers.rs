//! Plivo audio streams and the browser protocol (`/media/web`, Opus) over real websockets, and
//! the answer webhooks of Telnyx (TeXML) and Plivo (Plivo XML).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callgenius::media::codec::{LineDecoder, LineEncoder, OPUS_RATE};
use callgenius::media::protocol::{Codec, LineFormat};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::carrier_signing as signing;
use crate::helpers::{TestApp, spawn_ready_app_with};
use crate::media::settled_call;

/// A speech fixture at 16 kHz between `lead_s` and `tail_s` seconds of silence.
fn caller_16k(lead_s: f32, tail_s: f32) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/s3-piper-joe-16k.wav");
    let audio = callgenius::pipeline::wav::read(&path).unwrap();
    assert_eq!(audio.sample_rate, 16_000);
    let mut samples = vec![0.0f32; (16_000.0 * lead_s) as usize];
    samples.extend(&audio.samples);
    samples.extend(vec![0.0f32; (16_000.0 * tail_s) as usize]);
    samples
}

/// A test-call stream for `agent` in `carrier`'s protocol: (call id, stream URL with the token).
async fn stream(app: &TestApp, token: &str, agent: i64, carrier: &str) -> (i64, String) {
    let r = app
        .post(
            &format!("/api/agents/{agent}/test-call?carrier={carrier}"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let url = r.body["stream_url"].as_str().unwrap().to_owned();
    assert!(
        url.contains(&format!("/media/{carrier}?token=v1.")),
        "{url}"
    );
    (r.body["call_id"].as_i64().unwrap(), url)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to a `/media/web` stream and sends its `start` message.
async fn open_web(url: &str, start: Value) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text(start.to_string())).await.unwrap();
    socket
}

const OPUS: LineFormat = LineFormat {
    codec: Codec::Opus,
    sample_rate: OPUS_RATE,
};

#[tokio::test]
async fn a_plivo_stream_in_l16_is_heard_and_answered_with_play_audio_and_checkpoints() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("plivo@example.com", "Plivo").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (call_id, url) = stream(&app, &s.token, agent, "plivo").await;

    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = socket.split();
    let send = |value: Value| Message::text(value.to_string());
    tx.send(send(json!({ "sequenceNumber": 0, "event": "start", "extra_headers": "{}",
        "start": { "callId": "plivo-call-1", "streamId": "S1", "accountId": "MA1", "tracks": ["inbound"],
                   "mediaFormat": { "encoding": "audio/x-l16", "sampleRate": 16000 } } })))
        .await
        .unwrap();

    // Reads what the engine sends until it has been quiet, answering checkpoints as Plivo does
    // once playback reaches them.
    async fn listen(
        tx: &mut (impl SinkExt<Message, Error = impl std::fmt::Debug> + Unpin),
        rx: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    ) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(2500), rx.next()).await
        {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["event"] == "checkpoint" {
                let played =
                    json!({ "event": "playedStream", "streamId": "S1", "name": value["name"] });
                tx.send(Message::text(played.to_string())).await.unwrap();
            }
            seen.push(value);
        }
        seen
    }

    let greeting = listen(&mut tx, &mut rx).await;
    let plays: Vec<_> = greeting
        .iter()
        .filter(|m| m["event"] == "playAudio")
        .collect();
    assert!(plays.len() > 50, "{} frames", plays.len());
    assert_eq!(plays[0]["media"]["contentType"], "audio/x-l16");
    assert_eq!(plays[0]["media"]["sampleRate"], 16_000);
    let payload = STANDARD
        .decode(plays[0]["media"]["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload.len(), 640, "20 ms of 16-bit audio at 16 kHz");
    let checkpoint = greeting
        .iter()
        .find(|m| m["event"] == "checkpoint")
        .expect("a checkpoint after each clause");
    assert_eq!(checkpoint["streamId"], "S1");

    // The caller: little-endian L16 at 16 kHz, then a keypad press.
    let bytes: Vec<u8> = caller_16k(0.5, 1.2)
        .iter()
        .flat_map(|&s| callgenius::pipeline::wav::to_i16(s).to_le_bytes())
        .collect();
    for (n, frame) in bytes.chunks(640).enumerate() {
        let message = json!({ "sequenceNumber": n + 1, "streamId": "S1", "event": "media",
            "media": { "track": "inbound", "timestamp": (n * 20).to_string(), "chunk": n + 1,
                       "payload": STANDARD.encode(frame) } });
        tx.send(send(message)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reply = listen(&mut tx, &mut rx).await;
    assert!(reply.iter().filter(|m| m["event"] == "playAudio").count() > 50);
    tx.send(send(
        json!({ "event": "dtmf", "streamId": "S1", "dtmf": { "digit": "7", "track": "inbound" } }),
    ))
    .await
    .unwrap();
    let after_digit = listen(&mut tx, &mut rx).await;
    assert!(after_digit.iter().any(|m| m["event"] == "playAudio"));
    tx.send(send(json!({ "event": "stop", "streamId": "S1" })))
        .await
        .unwrap();

    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["carrier"], "plivo", "{call}");
    // A test call's stream is opened by whoever asked for it: the call id its start message
    // claims is not recorded (transfers would act on it).
    assert!(call["carrier_call_id"].is_null(), "{call}");
    let turns = call["turns"].as_array().unwrap();
    assert!(
        turns[0]["agent_text"]
            .as_str()
            .unwrap()
            .starts_with("Hello, you've reached Reception."),
        "heard, from the checkpoints: {call}"
    );
    let heard = turns[1]["caller_text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(heard.contains("pizza"), "{call}");
    assert!(
        turns[1]["agent_text"]
            .as_str()
            .unwrap()
            .contains("I don't have that information"),
        "{call}"
    );
    assert_eq!(
        turns[2]["agent_text"], "You pressed 7.",
        "the digit: {call}"
    );
}

#[tokio::test]
async fn a_browser_speaking_opus_interrupts_the_greeting_and_is_answered_in_opus() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("web@example.com", "Web").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let (call_id, url) = stream(&app, &s.token, agent, "web").await;

    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut tx, mut rx) = socket.split();
    // Audio before the start message is ignored, not fatal.
    tx.send(Message::binary(vec![0xF8, 0xFF, 0xFE]))
        .await
        .unwrap();
    tx.send(Message::text(
        json!({ "type": "start", "encoding": "opus" }).to_string(),
    ))
    .await
    .unwrap();

    // The greeting's first clause arrives as 20 ms Opus packets, then its mark.
    let mut decoder = LineDecoder::new(OPUS).unwrap();
    let mut decoded = Vec::new();
    let mut packets = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), rx.next())
            .await
            .expect("the greeting in time")
            .unwrap()
            .unwrap();
        match message {
            Message::Binary(packet) => {
                let before = decoded.len();
                decoder.decode(&packet, &mut decoded).expect("valid Opus");
                assert_eq!(decoded.len() - before, 320, "20 ms at 16 kHz");
                packets += 1;
            }
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["type"], "mark", "{value}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(packets > 10, "{packets} packets");
    let level = decoded.iter().map(|s| s * s).sum::<f32>() / decoded.len() as f32;
    assert!(level > 1e-4, "the greeting is audible: {level}");

    // The caller talks over the rest of the greeting, in Opus packets, without echoing marks.
    let mut encoder = LineEncoder::new(OPUS).unwrap();
    let mut frames = Vec::new();
    encoder.encode(&caller_16k(0.0, 1.2), &mut frames).unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(3000), rx.next()).await
        {
            seen.push(message);
        }
        (seen, rx)
    });
    for frame in frames {
        tx.send(Message::binary(frame)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (seen, _rx) = reader.await.unwrap();
    let texts: Vec<Value> = seen
        .iter()
        .filter_map(|m| match m {
            Message::Text(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect();
    let clear = texts
        .iter()
        .position(|m| m["type"] == "clear")
        .expect("the greeting is cleared");
    assert!(texts[clear + 1..].iter().any(|m| m["type"] == "mark"));
    assert!(
        seen.iter().filter(|m| m.is_binary()).count() > 50,
        "the reply"
    );
    tx.send(Message::text(json!({ "type": "stop" }).to_string()))
        .await
        .unwrap();

    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["carrier"], "web", "{call}");
    let turns = call["turns"].as_array().unwrap();
    assert_eq!(turns[0]["interrupted"], 1, "{call}");
    let heard = turns[1]["caller_text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(heard.contains("pizza"), "{call}");
}

#[tokio::test]
async fn a_browser_may_send_pcm16_and_a_bad_format_or_opus_packet_is_survived() {
    let app = spawn_ready_app_with(|_| {}).await;
    let s = app.register("pcm@example.com", "Pcm").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    // PCM16 at 8 kHz: 320-byte frames come back.
    let (call_id, url) = stream(&app, &s.token, agent, "web").await;
    let mut socket = open_web(
        &url,
        json!({ "type": "start", "encoding": "pcm16", "sample_rate": 8000 }),
    )
    .await;
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Binary(bytes) => break bytes,
            _ => continue,
        }
    };
    assert_eq!(first.len(), 320);
    // Garbage where Opus or PCM is expected, unknown control: ignored, the call goes on.
    socket
        .send(Message::text(r#"{"type":"wave"}"#))
        .await
        .unwrap();
    socket.send(Message::binary(vec![1u8])).await.unwrap();
    socket
        .send(Message::text(json!({ "type": "stop" }).to_string()))
        .await
        .unwrap();
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");

    // An Opus call that sends garbage packets survives them.
    let (call_id, url) = stream(&app, &s.token, agent, "web").await;
    let mut socket = open_web(&url, json!({ "type": "start" })).await;
    for _ in 0..20 {
        socket.send(Message::binary(vec![0xFF; 7])).await.unwrap();
    }
    socket
        .send(Message::text(json!({ "type": "stop" }).to_string()))
        .await
        .unwrap();
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");

    // A format the engine cannot run: the stream never starts and the call stays unstarted.
    let (call_id, url) = stream(&app, &s.token, agent, "web").await;
    let mut socket = open_web(
        &url,
        json!({ "type": "start", "encoding": "pcm16", "sample_rate": 44100 }),
    )
    .await;
    socket.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let call = app
        .get(&format!("/api/calls/{call_id}"), &s.token)
        .await
        .body;
    assert_eq!(call["status"], "initiated", "{call}");
}

#[tokio::test]
async fn telnyx_and_plivo_answer_webhooks_stream_the_call_to_the_agent() {
    let app = crate::carrier_signing::spawn_signed_app().await;
    let s = app.register("answers@example.com", "Answers").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let ws = app.base.replacen("http", "ws", 1);

    // Telnyx TeXML: form POST, <Connect><Stream url=…> with the token in the URL.
    let response = signing::telnyx_post(
        &app,
        &format!("/carrier/telnyx/voice?agent_id={agent}"),
        &[
            ("CallSid", "v3:telnyx-1"),
            ("From", "+15550001"),
            ("To", "+15550002"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let texml = response.text().await.unwrap();
    let prefix = format!("<Connect><Stream url=\"{ws}/media/telnyx?token=v1.");
    assert!(texml.contains(&prefix), "{texml}");
    assert!(texml.contains("bidirectionalMode=\"rtp\""), "{texml}");

    // Plivo XML: a bidirectional <Stream> whose body is the URL; POST and GET both answer.
    let response = signing::plivo_post(
        &app,
        &format!("/carrier/plivo/answer?agent_id={agent}"),
        &[
            ("CallUUID", "plivo-uuid-1"),
            ("From", "15550003"),
            ("To", "15550004"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let plivo = response.text().await.unwrap();
    assert!(
        plivo.contains("<Stream bidirectional=\"true\" keepCallAlive=\"true\" contentType=\"audio/x-mulaw;rate=8000\">"),
        "{plivo}"
    );
    assert!(
        plivo.contains(&format!(">{ws}/media/plivo?token=v1.")),
        "{plivo}"
    );
    let get = signing::plivo_get(
        &app,
        &format!("/carrier/plivo/answer?agent_id={agent}&CallUUID=plivo-uuid-2&From=1&To=2"),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(get.contains("<Stream bidirectional=\"true\""), "{get}");

    // The calls exist, inbound, with the carriers' ids (the call id is the token's first field).
    for (document, carrier_call_id, carrier) in [
        (&texml, "v3:telnyx-1", "telnyx"),
        (&plivo, "plivo-uuid-1", "plivo"),
        (&get, "plivo-uuid-2", "plivo"),
    ] {
        let token = document
            .split("token=")
            .nth(1)
            .and_then(|rest| rest.split(['"', '<']).next())
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let call_id = String::from_utf8(payload).unwrap();
        let call_id = call_id.split('.').next().unwrap();
        let call = app
            .get(&format!("/api/calls/{call_id}"), &s.token)
            .await
            .body;
        assert_eq!(call["carrier"], carrier, "{call}");
        assert_eq!(call["direction"], "inbound", "{call}");
        assert_eq!(call["carrier_call_id"], carrier_call_id, "{call}");
        assert_eq!(call["status"], "initiated", "{call}");
    }

    // No agent: a spoken refusal, in each carrier's markup.
    for (request, verb) in [
        (
            signing::telnyx_post(&app, "/carrier/telnyx/voice", &[("From", "1")]),
            "<Say>",
        ),
        (
            signing::plivo_post(
                &app,
                "/carrier/plivo/answer?agent_id=99999",
                &[("From", "1")],
            ),
            "<Speak>",
        ),
    ] {
        let refusal = request.send().await.unwrap().text().await.unwrap();
        assert!(
            refusal.contains(verb) && refusal.contains("<Hangup/>"),
            "{refusal}"
        );
    }
}

#[tokio::test]
async fn with_a_signature_secret_the_vonage_answer_webhook_requires_a_signed_jwt() {
    use hmac::{Hmac, KeyInit, Mac};
    let app = crate::helpers::spawn_app_with(|c| {
        c.vonage_signature_secret = Some("vn-secret".to_owned().into())
    })
    .await;
    let s = app.register("vsig@example.com", "Vsig").await;
    let agent = app.create_agent(&s.token, "Reception").await;
    let url = format!(
        "{}/carrier/vonage/answer?agent_id={agent}&uuid=u-1",
        app.base
    );
    let jwt = |secret: &str, iat: i64| {
        let encode =
            |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!(
            "{}.{}",
            encode(json!({ "alg": "HS256", "typ": "JWT" })),
            encode(
                json!({ "iat": iat, "jti": "jti-1", "iss": "Vonage", "application_id": "app-1" })
            )
        );
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let signature =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{input}.{signature}")
    };
    let now = chrono::Utc::now().timestamp();

    let signed = app
        .client
        .get(&url)
        .bearer_auth(jwt("vn-secret", now))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::OK);
    let ncco: Value = signed.json().await.unwrap();
    assert_eq!(ncco[0]["action"], "connect", "{ncco}");

    for (label, request) in [
        ("unsigned", app.client.get(&url)),
        (
            "wrong secret",
            app.client.get(&url).bearer_auth(jwt("other", now)),
        ),
        (
            "stale",
            app.client
                .get(&url)
                .bearer_auth(jwt("vn-secret", now - 3600)),
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{label}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "invalid Vonage signature", "{label}");
    }
}
