//! One call on a carrier's media stream, from its start to its end. The carrier's protocol
//! (Twilio, Telnyx, Plivo, Vonage, the browser protocol) is behind [`Inbound`] and [`Outbound`];
//! the audio's line format comes with the start message and is coded by a [`LineDecoder`] and a
//! [`LineEncoder`] made for the call.
//!
//! Tasks and threads of a call:
//! - this task reads the websocket and owns the call's state (turns, marks, barge-in);
//! - a DSP thread (blocking pool) decodes the line's audio and runs voice activity and
//!   endpointing; frames reach it through a bounded queue (overflow: the frame is dropped and
//!   counted);
//! - a writer task owns the socket's sending half and paces agent audio to real time, never more
//!   than [`AHEAD`] ahead, so that a `clear` takes effect at once; for carriers without marks it
//!   reports each clause played when its audio has had time to play;
//! - a turn task per reply: speech-to-text, the turn engine, text-to-speech clause by clause.
//!   Barge-in aborts it and bumps the audio generation, so queued frames are dropped.
//!
//! Keypad digits are gathered into one caller turn: `#` ends the entry, as does a pause of
//! [`DTMF_GAP`]. A call ends by the agent's goodbye ([`Call::say_goodbye`], not interruptible,
//! closed after [`GOODBYE_LIMIT`] at the latest) when it reaches its agent's `max_call_seconds`
//! (disposition `max-duration`), or when the business's trial, included minutes and wallet ran
//! out during the call and `[billing] grace_secs` have passed (`out-of-minutes`; checked every
//! `[billing] balance_check_secs` by a watcher task).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::codec::{LineDecoder, LineEncoder};
use super::protocol::{Event, Inbound, LineFormat, Outbound, StreamStart};
use crate::agent::EngineChoice;
use crate::agent::turn::{Conversation, TurnContext, TurnInput, TurnOutput};
use crate::api::AppState;
use crate::calls::recording::{self, AgentAudio, Recorder};
use crate::calls::registry::LiveCall;
use crate::domain::{CallId, CallStatus, TenantId};
use crate::models::Models;
use crate::models::piper::ClauseStream;
use crate::pipeline::endpoint::{EndpointEvent, Endpointer};
use crate::pipeline::{resample::resample, vad};
use crate::store::calls::{self as call_store, TurnRow};
use crate::store::{Db, StoreError, agents as agent_store};

/// Caller frames that may wait for the DSP thread (2 s); more are dropped and counted.
const FRAME_QUEUE: usize = 100;
/// How far agent audio may run ahead of real time.
const AHEAD: Duration = Duration::from_millis(1000);
const FRAME: Duration = Duration::from_millis(20);
/// Close codes.
const NORMAL: u16 = 1000;
const POLICY_VIOLATION: u16 = 1008;
const MESSAGE_TOO_BIG: u16 = 1009;
const INTERNAL_ERROR: u16 = 1011;
/// Keypad digits are one entry until `#`, or this long without another digit.
const DTMF_GAP: Duration = Duration::from_secs(2);
/// The longest keypad entry; a longer one is answered as it stands.
const DTMF_MAX: usize = 32;
/// How long the agent's goodbye may take before the line is closed regardless.
const GOODBYE_LIMIT: Duration = Duration::from_secs(20);
/// Said when a call reaches its agent's `max_call_seconds`.
pub const MAX_DURATION_GOODBYE: &str =
    "We've reached the time limit for this call. Thank you for calling. Goodbye.";
/// Said when the business's minutes and wallet ran out during the call and the grace passed.
pub const OUT_OF_MINUTES_GOODBYE: &str =
    "I'm sorry, I have to end the call here. Thank you for calling. Goodbye.";

enum DspEvent {
    SpeechStarted,
    SpeechSustained,
    Utterance {
        audio: Vec<f32>,
        endpoint_wait: Duration,
        start_ms: u64,
    },
    Failed(String),
}

enum Out {
    Media {
        generation: u64,
        bytes: Vec<u8>,
        /// The frame's audio at the line rate, for the recording.
        pcm: Vec<f32>,
        written: Option<oneshot::Sender<Instant>>,
    },
    Mark {
        generation: u64,
        name: String,
    },
    Clear,
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// Progress a turn task reports to the call (notes of a turn that was replaced are ignored).
enum TurnNote {
    /// The turn's report so far (after speech-to-text, after the first audio).
    Progress(TurnRow),
    ClauseQueued {
        turn: i64,
        mark: String,
        text: String,
    },
    Done(TurnRow, Option<LineAction>),
}

/// What the agent asked the line to do once its reply has been heard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LineAction {
    /// Hang up, with this disposition.
    Hangup(&'static str),
    Transfer(String),
}

type Sink = SplitSink<WebSocket, Message>;

/// A carrier's side of a stream: how its messages are read and written, and the stream token
/// given in the websocket URL (`?token=…`) for carriers that cannot carry it in their start
/// message.
pub struct Carrier {
    pub inbound: Box<dyn Inbound>,
    pub outbound: Arc<dyn Outbound>,
    pub url_token: Option<String>,
}

pub async fn run(socket: WebSocket, state: AppState, carrier: Carrier) {
    let Carrier {
        mut inbound,
        outbound,
        url_token,
    } = carrier;
    let (sink, mut stream) = socket.split();
    let mut sink = sink;
    let timeout = state.media.config.start_timeout;
    let start =
        match tokio::time::timeout(timeout, wait_for_start(&mut stream, inbound.as_mut())).await {
            Ok(Some(start)) => start,
            Ok(None) => return,
            Err(_) => return close(&mut sink, POLICY_VIOLATION, "no start message").await,
        };
    let now = chrono::Utc::now().timestamp();
    let token = start.token.clone().or(url_token);
    let claims = match token
        .as_deref()
        .map(|t| state.telephony.tokens.verify(t, now))
    {
        Some(Ok(claims)) => claims,
        _ => {
            tracing::warn!(stream_id = %start.stream_id, "media stream refused: missing or invalid token");
            return close(&mut sink, POLICY_VIOLATION, "invalid stream token").await;
        }
    };
    let call_row = match call_store::start_on(
        &state.db,
        claims.tenant,
        claims.call,
        start.carrier_call_id.as_deref(),
        state.telephony.live.node(),
    )
    .await
    {
        Ok(row) => row,
        Err(StoreError::Conflict | StoreError::NotFound) => {
            return close(&mut sink, POLICY_VIOLATION, "stream token already used").await;
        }
        Err(error) => {
            tracing::error!(call_id = %claims.call, %error, "could not start the call");
            return close(&mut sink, INTERNAL_ERROR, "internal error").await;
        }
    };
    let live = state.telephony.live.register(
        claims.call,
        LiveCall {
            tenant: claims.tenant,
            agent: claims.agent,
            started: Instant::now(),
        },
    );
    let started = Instant::now();
    let rate = start.format.sample_rate;
    let span = tracing::info_span!("call", call_id = %claims.call, tenant_id = %claims.tenant);
    let CallOutcome { result, recording } = Call::run(
        &state,
        &call_row,
        Line {
            stream_id: start.stream_id,
            format: start.format,
            inbound,
            outbound,
        },
        sink,
        stream,
        started,
    )
    .instrument(span)
    .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status, disposition) = match &result {
        Ok(disposition) => (CallStatus::Completed, *disposition),
        Err(reason) => {
            tracing::error!(call_id = %claims.call, %reason, "call failed");
            (CallStatus::Failed, "error")
        }
    };
    if let Err(error) = call_store::finish(
        &state.db,
        claims.tenant,
        claims.call,
        status,
        disposition,
        duration_ms,
    )
    .await
    {
        tracing::error!(call_id = %claims.call, %error, "could not finalise the call record");
    }
    // Recording, summary and sentiment are worked out after the call, off this task.
    crate::calls::aftercall::spawn(
        state.clone(),
        claims.tenant,
        claims.call,
        recording.map(|r| r.map(|_| rate)),
    );
    drop(live);
    let still_live = state.telephony.live.count_for_agent(claims.agent);
    if let Err(error) =
        crate::agent::service::delete_if_idle(&state.db, claims.tenant, claims.agent, still_live)
            .await
    {
        tracing::error!(%error, "could not complete the agent's deferred deletion");
    }
    tracing::info!(call_id = %claims.call, duration_ms, status = status.as_str(), "call ended");
}

async fn wait_for_start(
    stream: &mut SplitStream<WebSocket>,
    inbound: &mut dyn Inbound,
) -> Option<StreamStart> {
    while let Some(message) = stream.next().await {
        let message = message.ok()?;
        if let Message::Close(_) = message {
            return None;
        }
        for event in inbound.parse(&message).unwrap_or_default() {
            match event {
                Event::Start(start) => return Some(start),
                Event::Connected => {}
                // Media before start, or junk: not a call yet; keep waiting for start.
                _ => metrics::counter!("media_bad_frames_total", "reason" => "before_start")
                    .increment(1),
            }
        }
    }
    None
}

/// The close code for a broken stream: 1009 for a message over the size limit, else 1011.
fn close_code_for(error: axum::Error) -> u16 {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match error.into_inner().downcast::<WsError>() {
        Ok(error) if matches!(*error, WsError::Capacity(_)) => MESSAGE_TOO_BIG,
        _ => INTERNAL_ERROR,
    }
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// The stream a call runs on: its id, audio format and the carrier's reader and writer.
struct Line {
    stream_id: String,
    format: LineFormat,
    inbound: Box<dyn Inbound>,
    outbound: Arc<dyn Outbound>,
}

/// What a call loads before it can listen.
struct Prepared {
    models: Arc<Models>,
    ctx: TurnContext,
    /// The knowledge documents the agent's version links.
    knowledge_ids: Vec<i64>,
    /// The installed voice that speaks for the agent.
    voice_id: String,
    endpointer: Endpointer<Box<dyn vad::VoiceActivity>>,
    decoder: LineDecoder,
    encoder: LineEncoder,
    /// The agent's `max_call_seconds`.
    max_call: Duration,
}

/// How a call ended, and how its recording went (`None`: not recorded).
struct CallOutcome {
    result: Result<&'static str, String>,
    /// The recording's length in samples, or why it failed.
    recording: Option<Result<u64, String>>,
}

/// Opens the call's recording file when recording is on; a failure is logged and the call goes
/// on unrecorded.
async fn start_recording(
    state: &AppState,
    call: CallId,
    rate: u32,
    started: Instant,
) -> Option<(Recorder, std::sync::mpsc::Receiver<AgentAudio>, RecordTap)> {
    let dir = state.media.config.recordings.as_ref()?;
    let path = recording::pcm_path(dir, call, rate);
    let recorder = match tokio::task::spawn_blocking(move || Recorder::create(&path, rate)).await {
        Ok(Ok(recorder)) => recorder,
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot open the recording file; the call goes on unrecorded");
            return None;
        }
        Err(_) => return None,
    };
    let (agent_tx, agent_rx) = std::sync::mpsc::channel();
    let tap = RecordTap {
        agent: agent_tx,
        started,
        rate,
    };
    Some((recorder, agent_rx, tap))
}

/// The state of a live call, owned by its websocket task.
struct Call {
    db: Db,
    tenant: TenantId,
    call: CallId,
    out: mpsc::Sender<Out>,
    generation: Arc<AtomicU64>,
    /// Wakes the writer when a barge-in bumps the generation.
    barged: Arc<Notify>,
    notes_tx: mpsc::Sender<TurnNote>,
    turn: Option<JoinHandle<()>>,
    turns: i64,
    /// Marks sent for clauses not yet played, with their text.
    pending_marks: Vec<(String, String)>,
    /// Clauses the caller has heard in the current turn.
    heard: Vec<String>,
    /// The running turn's report so far.
    current: Option<TurnRow>,
    /// Whether the running turn's task has finished (its audio may still be playing).
    turn_done: bool,
    /// What the running turn asked the line to do once it has been heard.
    action: Option<LineAction>,
    /// An action whose reply has been heard: the call loop carries it out.
    due: Option<LineAction>,
    conversation: Arc<tokio::sync::Mutex<Box<dyn Conversation>>>,
    telephony: crate::api::Telephony,
    /// The carrier's id of the call (Twilio's CallSid), for transfers.
    carrier_call_id: Option<String>,
    /// The agent is saying goodbye: the disposition, and when the line closes regardless.
    closing: Option<(&'static str, tokio::time::Instant)>,
}

impl Call {
    async fn run(
        state: &AppState,
        call_row: &call_store::CallRow,
        line: Line,
        sink: Sink,
        mut stream: SplitStream<WebSocket>,
        started: Instant,
    ) -> CallOutcome {
        let Line {
            stream_id,
            format,
            mut inbound,
            outbound,
        } = line;
        let (call, tenant) = (CallId(call_row.id), TenantId(call_row.tenant_id));
        // The recording: created before anything is said, so it starts at the stream's start.
        let (recorder, tap) = match start_recording(state, call, format.sample_rate, started).await
        {
            Some((recorder, agent_rx, tap)) => (Some((recorder, agent_rx)), Some(tap)),
            None => (None, None),
        };
        let recorded = tap.is_some();
        let generation = Arc::new(AtomicU64::new(0));
        let barged = Arc::new(Notify::new());
        let (out_tx, out_rx) = mpsc::channel::<Out>(256);
        // Marks the engine tracks itself, for carriers without marks.
        let (played_tx, mut played_rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(writer_loop(
            sink,
            out_rx,
            Arc::clone(&generation),
            Arc::clone(&barged),
            WriterLine {
                stream_id,
                outbound,
                played: played_tx,
                recording: tap,
            },
        ));
        let prepared = Self::prepare(state, call_row, format).await;
        let Prepared {
            models,
            ctx,
            knowledge_ids,
            voice_id,
            endpointer,
            decoder,
            encoder,
            max_call,
        } = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => {
                let _ = out_tx
                    .send(Out::Close {
                        code: INTERNAL_ERROR,
                        reason: "the call could not start",
                    })
                    .await;
                drop(out_tx);
                let _ = writer.await;
                let recording =
                    recorder.map(|(recorder, _)| recorder.finish().map_err(|e| e.to_string()));
                return CallOutcome {
                    result: Err(reason),
                    recording,
                };
            }
        };
        let ctx = Arc::new(ctx);

        let (frames_tx, frames_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(FRAME_QUEUE);
        let (dsp_tx, mut dsp_rx) = mpsc::channel::<DspEvent>(16);
        let dsp = tokio::task::spawn_blocking(move || {
            dsp_loop(frames_rx, dsp_tx, endpointer, decoder, recorder)
        });

        let (notes_tx, mut notes_rx) = mpsc::channel::<TurnNote>(64);

        let engine = engine_for(state, &ctx);
        let tools = Arc::new(crate::calls::tools::CallTools {
            db: state.db.clone(),
            tenant,
            call,
            agent: ctx.agent,
            caller_number: ctx.caller_number.clone(),
            timezone: ctx.timezone,
            knowledge: state.knowledge.clone(),
            documents: knowledge_ids,
        });
        let conversation = engine.open(Arc::clone(&ctx), tools);
        let speaker = Arc::new(Speaker {
            state: state.clone(),
            models,
            voice_id,
            conversation: Arc::new(tokio::sync::Mutex::new(conversation)),
            format,
            encoder: Arc::new(std::sync::Mutex::new(encoder)),
            call_started: started,
            recorded,
        });
        let mut call_state = Call {
            db: state.db.clone(),
            tenant,
            call,
            out: out_tx,
            generation,
            barged,
            notes_tx,
            turn: None,
            turns: 0,
            pending_marks: Vec::new(),
            heard: Vec::new(),
            current: None,
            turn_done: false,
            action: None,
            due: None,
            conversation: Arc::clone(&speaker.conversation),
            telephony: state.telephony.clone(),
            carrier_call_id: call_row.carrier_call_id.clone(),
            closing: None,
        };
        let greeting = speaker.conversation.lock().await.greeting();
        if let Some(greeting) = greeting {
            call_state
                .start_turn(&speaker, TurnStart::Greeting(greeting))
                .await;
        }

        // The call's limits: its agent's longest call, and its business's money.
        let max_at = tokio::time::Instant::from_std(started) + max_call;
        let (money_tx, mut money_rx) = mpsc::channel::<()>(1);
        let money = tokio::spawn(
            watch_money(
                state.db.clone(),
                tenant,
                state.billing.balance_check(),
                state.billing.grace(),
                money_tx,
            )
            .in_current_span(),
        );
        // Keypad digits of the entry being typed, and when it ends without a `#`.
        let mut digits = String::new();
        let mut digits_end: Option<tokio::time::Instant> = None;
        let mut dropped = 0u64;
        let mut bad = 0u64;
        let mut close_code = NORMAL;
        // Caller speech began while the agent spoke and has not yet lasted the threshold.
        let mut interjecting = false;
        let outcome = loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Close(_))) | None => break Ok("disconnected"),
                    Some(Ok(message)) => match inbound.parse(&message) {
                        Ok(events) => {
                            let mut stop = false;
                            for event in events {
                                match event {
                                    Event::Media(bytes) if !bytes.is_empty() => {
                                        if frames_tx.try_send(bytes).is_err() {
                                            dropped += 1;
                                        }
                                    }
                                    Event::Media(_) | Event::Connected | Event::Start(_) => {}
                                    Event::Mark(name) => call_state.mark_played(&name).await,
                                    // The agent is saying goodbye: keys are not answered.
                                    Event::Dtmf(_) if call_state.closing.is_some() => {}
                                    Event::Dtmf(digit) => {
                                        if digit != '#' || digits.is_empty() {
                                            digits.push(digit);
                                        }
                                        if digit == '#' || digits.len() >= DTMF_MAX {
                                            digits_end = None;
                                            let entry = TurnInput::Dtmf(std::mem::take(&mut digits));
                                            let input = TurnStart::Input(entry, None);
                                            call_state.start_turn(&speaker, input).await;
                                        } else {
                                            digits_end = Some(tokio::time::Instant::now() + DTMF_GAP);
                                        }
                                    }
                                    Event::Stop => stop = true,
                                }
                            }
                            if stop {
                                break Ok("hangup");
                            }
                        }
                        Err(error) => {
                            bad += 1;
                            if bad == 1 || bad.is_power_of_two() {
                                tracing::warn!(%error, bad, "ignoring a malformed media-stream message");
                            }
                        }
                    },
                    Some(Err(error)) => {
                        close_code = close_code_for(error);
                        break Err(format!("broken media stream (close code {close_code})"));
                    }
                },
                event = dsp_rx.recv() => match event {
                    // Nothing the caller says stops the agent's goodbye.
                    Some(DspEvent::SpeechStarted | DspEvent::SpeechSustained | DspEvent::Utterance { .. })
                        if call_state.closing.is_some() => {}
                    // Caller speech over the agent interrupts once it lasts the barge-in threshold.
                    Some(DspEvent::SpeechStarted) => interjecting = call_state.speaking(),
                    Some(DspEvent::SpeechSustained) => {
                        if std::mem::take(&mut interjecting) {
                            call_state.barge_in_if_speaking().await;
                        }
                    }
                    Some(DspEvent::Utterance { audio, endpoint_wait, start_ms }) => {
                        if std::mem::take(&mut interjecting) {
                            // Short speech over the agent: a backchannel, or an interruption?
                            call_state
                                .short_interjection(&speaker, audio, endpoint_wait, start_ms)
                                .await;
                        } else {
                            let start = TurnStart::Audio(audio, endpoint_wait, start_ms);
                            call_state.start_turn(&speaker, start).await;
                        }
                    }
                    Some(DspEvent::Failed(reason)) => break Err(reason),
                    None => break Err("the DSP thread stopped".into()),
                },
                Some(note) = notes_rx.recv() => call_state.note(note).await,
                Some(name) = played_rx.recv() => call_state.mark_played(&name).await,
                () = tokio::time::sleep_until(digits_end.unwrap_or(max_at)), if digits_end.is_some() => {
                    digits_end = None;
                    let entry = TurnInput::Dtmf(std::mem::take(&mut digits));
                    call_state.start_turn(&speaker, TurnStart::Input(entry, None)).await;
                }
                () = tokio::time::sleep_until(max_at), if call_state.closing.is_none() => {
                    call_state
                        .say_goodbye(&speaker, MAX_DURATION_GOODBYE, "max-duration")
                        .await;
                }
                Some(()) = money_rx.recv(), if call_state.closing.is_none() => {
                    call_state
                        .say_goodbye(&speaker, OUT_OF_MINUTES_GOODBYE, "out-of-minutes")
                        .await;
                }
                () = tokio::time::sleep_until(call_state.closing.map_or(max_at, |c| c.1)),
                    if call_state.closing.is_some() =>
                {
                    let (disposition, _) = call_state.closing.unwrap_or(("agent-hangup", max_at));
                    tracing::warn!(disposition, "the goodbye did not finish in time; hanging up");
                    break Ok(disposition);
                }
            }
            if let Some(action) = call_state.due.take()
                && let Some(disposition) = call_state.carry_out(action).await
            {
                break Ok(disposition);
            }
        };
        money.abort();
        metrics::counter!("media_frames_dropped_total").increment(dropped);
        metrics::counter!("media_bad_frames_total", "reason" => "malformed").increment(bad);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "caller frames dropped: they arrived faster than real time"
            );
        }
        if let Some(turn) = call_state.turn.take() {
            turn.abort();
        }
        call_state.finish_turn(true).await;
        drop(frames_tx);
        let recording = dsp.await.unwrap_or_else(|e| Some(Err(e.to_string())));
        let _ = call_state
            .out
            .send(Out::Close {
                code: close_code,
                reason: if close_code == NORMAL {
                    "call ended"
                } else {
                    "message too big or broken stream"
                },
            })
            .await;
        drop(call_state);
        let _ = writer.await;
        CallOutcome {
            result: outcome,
            recording,
        }
    }

    /// Loads what the call needs: models, the agent, its voice, an endpointer.
    async fn prepare(
        state: &AppState,
        call: &call_store::CallRow,
        format: LineFormat,
    ) -> Result<Prepared, String> {
        let tenant = TenantId(call.tenant_id);
        let agent = crate::domain::AgentId(call.agent_id.ok_or("the call has no agent")?);
        let line_rate = format.sample_rate;
        let decoder = LineDecoder::new(format).map_err(|e| e.to_string())?;
        let encoder = LineEncoder::new(format).map_err(|e| e.to_string())?;
        let models = state.speech.get().await.map_err(|e| e.to_string())?;
        let agent_row = agent_store::get(&state.db, tenant, agent)
            .await
            .map_err(|e| e.to_string())?;
        let voice_id = state
            .speech
            .resolve_voice(&agent_row.snapshot.voice)
            .ok_or_else(|| format!("voice {} is not installed", agent_row.snapshot.voice))?
            .to_owned();
        let config = &state.media.config;
        let detector = vad::detector(config.vad, line_rate, config.aggressiveness, &models.vad)
            .map_err(|e| e.to_string())?;
        let endpointer = Endpointer::new(detector, line_rate, config.endpoint);
        let ctx = turn_context(state, call, &agent_row).await?;
        tracing::info!(engine = ctx.engine.as_str(), "turn engine chosen");
        let knowledge_ids: Vec<i64> = agent_row
            .snapshot
            .knowledge_links()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|l| l.id)
            .collect();
        if !knowledge_ids.is_empty() {
            // Loads the business's passages now rather than on the caller's first question.
            if let Err(error) = state.knowledge.warm(tenant).await {
                tracing::warn!(%error, "could not load the knowledge index");
            }
        }
        let max_call = Duration::from_secs(agent_row.snapshot.max_call_seconds.max(1) as u64);
        Ok(Prepared {
            models,
            ctx,
            knowledge_ids,
            voice_id,
            endpointer,
            decoder,
            encoder,
            max_call,
        })
    }

    /// Speech shorter than the barge-in threshold arrived while the agent spoke: transcribe it;
    /// a backchannel ("uh-huh") lets the agent carry on, anything else interrupts and is answered.
    async fn short_interjection(
        &mut self,
        speaker: &Arc<Speaker>,
        audio: Vec<f32>,
        endpoint_wait: Duration,
        offset_ms: u64,
    ) {
        let started = Instant::now();
        let Some(text) = speaker.transcribe(audio).await else {
            return;
        };
        let stt = started.elapsed();
        if text.trim().is_empty() || speaker.state.media.backchannels.is_backchannel(&text) {
            metrics::counter!("backchannels_total").increment(1);
            tracing::debug!(%text, "backchannel: the agent carries on");
            return;
        }
        self.barge_in_if_speaking().await;
        self.start_turn(
            speaker,
            TurnStart::Heard {
                text,
                endpoint_wait,
                stt,
                offset_ms,
            },
        )
        .await;
    }

    /// Hangs up or transfers once the agent's last words have been heard; returns the
    /// disposition when the call is over (a failed transfer leaves the caller on the line).
    async fn carry_out(&mut self, action: LineAction) -> Option<&'static str> {
        Some(match action {
            LineAction::Hangup(disposition) => disposition,
            LineAction::Transfer(number) => {
                let sid = self.carrier_call_id.as_deref();
                match crate::calls::transfer::twilio(&self.telephony, sid, &number).await {
                    Ok(()) => {
                        tracing::info!(%number, "call transferred");
                        "transferred"
                    }
                    Err(error) => {
                        tracing::error!(%error, %number, "the transfer failed; the call goes on");
                        return None;
                    }
                }
            }
        })
    }

    /// Ends the call by the agent's goodbye: whatever it was saying stops, `text` is said, and
    /// the line hangs up with `disposition` once it has been heard (or after [`GOODBYE_LIMIT`]).
    /// Nothing the caller says or presses interrupts it.
    async fn say_goodbye(
        &mut self,
        speaker: &Arc<Speaker>,
        text: &'static str,
        disposition: &'static str,
    ) {
        if self.closing.is_some() {
            return;
        }
        tracing::info!(disposition, "the agent ends the call");
        self.barge_in_if_speaking().await;
        self.closing = Some((disposition, tokio::time::Instant::now() + GOODBYE_LIMIT));
        self.start_turn(speaker, TurnStart::Farewell(text, disposition))
            .await;
    }

    fn speaking(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| !t.is_finished()) || !self.pending_marks.is_empty()
    }

    /// Caller speech while the agent talks: stop playback at once and cancel the turn.
    async fn barge_in_if_speaking(&mut self) {
        if !self.speaking() || self.closing.is_some() {
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.barged.notify_one();
        let _ = self.out.send(Out::Clear).await;
        if let Some(turn) = self.turn.take() {
            turn.abort();
        }
        // Marks sent before the clear may still be echoed; those clauses were not heard.
        self.pending_marks.clear();
        metrics::counter!("barge_ins_total").increment(1);
        self.finish_turn(true).await;
    }

    /// The carrier played up to `name`; once a finished turn's last mark is back, it is stored.
    async fn mark_played(&mut self, name: &str) {
        if let Some(at) = self.pending_marks.iter().position(|(mark, _)| mark == name) {
            let (_, text) = self.pending_marks.remove(at);
            self.heard.push(text);
            if self.pending_marks.is_empty() && self.turn_done {
                self.finish_turn(false).await;
            }
        }
    }

    async fn note(&mut self, note: TurnNote) {
        let current = self.current.as_ref().map(|row| row.turn);
        match note {
            TurnNote::Progress(row) if Some(row.turn) == current => self.current = Some(row),
            TurnNote::ClauseQueued { turn, mark, text } if Some(turn) == current => {
                self.pending_marks.push((mark, text))
            }
            TurnNote::Done(row, action) if Some(row.turn) == current => {
                self.current = Some(row);
                self.action = action;
                self.turn_done = true;
                if self.pending_marks.is_empty() {
                    self.finish_turn(false).await;
                }
            }
            _ => {}
        }
    }

    /// Stores the turn's report with what the caller heard.
    async fn finish_turn(&mut self, interrupted: bool) {
        self.turn_done = false;
        let action = self.action.take();
        let Some(mut row) = self.current.take() else {
            return;
        };
        row.agent_text = (!self.heard.is_empty()).then(|| self.heard.join(" "));
        row.interrupted = i64::from(interrupted);
        self.heard.clear();
        if let Some((disposition, _)) = self.closing {
            // The goodbye ends the call however it went.
            self.due = Some(LineAction::Hangup(disposition));
        } else if interrupted {
            // The conversation remembers only what the caller heard; a hang-up or transfer the
            // caller talked over is not carried out.
            let heard = row.agent_text.clone().unwrap_or_default();
            self.conversation.lock().await.interrupted(&heard);
        } else {
            self.due = action;
        }
        for (stage, ms) in [
            ("endpoint_wait", row.endpoint_wait_ms),
            ("stt", row.stt_ms),
            ("turn", row.turn_ms),
            ("tts_first_audio", row.tts_ms),
            ("total", row.total_ms),
        ] {
            if let Some(ms) = ms {
                metrics::histogram!("turn_latency_seconds", "stage" => stage)
                    .record(ms as f64 / 1000.0);
            }
        }
        if let Err(error) = call_store::insert_turn(&self.db, self.tenant, self.call, &row).await {
            tracing::error!(%error, "could not store a turn");
        }
    }

    async fn start_turn(&mut self, speaker: &Arc<Speaker>, start: TurnStart) {
        // A new turn replaces one still running (the caller spoke again).
        if let Some(turn) = self.turn.take() {
            turn.abort();
        }
        // A finished turn whose last marks never came back is stored as it stands.
        if !self.pending_marks.is_empty() {
            self.pending_marks.clear();
        }
        self.finish_turn(false).await;
        self.turns += 1;
        self.current = Some(TurnRow {
            turn: self.turns,
            ..TurnRow::default()
        });
        let job = TurnJob {
            number: self.turns,
            generation: self.generation.load(Ordering::SeqCst),
            out: self.out.clone(),
            notes: self.notes_tx.clone(),
        };
        let speaker = Arc::clone(speaker);
        self.turn = Some(tokio::spawn(async move { speaker.turn(job, start).await }));
    }
}

enum TurnStart {
    Greeting(String),
    /// The agent's goodbye before it hangs up with this disposition.
    Farewell(&'static str, &'static str),
    /// Caller audio at the line rate, how long endpointing waited after the speech ended, and
    /// when the speech began (ms from the start of the stream).
    Audio(Vec<f32>, Duration, u64),
    /// An utterance already transcribed (a short interjection), with its timings.
    Heard {
        text: String,
        endpoint_wait: Duration,
        stt: Duration,
        offset_ms: u64,
    },
    Input(TurnInput, Option<Duration>),
}

struct TurnJob {
    number: i64,
    generation: u64,
    out: mpsc::Sender<Out>,
    notes: mpsc::Sender<TurnNote>,
}

/// What a turn task needs: the models, the agent's voice and the call's conversation.
struct Speaker {
    state: AppState,
    /// The line's audio format: what the caller's audio arrives in and the agent's must go out in.
    format: LineFormat,
    /// Codes the agent's audio for the line (Opus keeps state between clauses).
    encoder: Arc<std::sync::Mutex<LineEncoder>>,
    models: Arc<Models>,
    voice_id: String,
    conversation: Arc<tokio::sync::Mutex<Box<dyn Conversation>>>,
    /// When the call's stream started: transcript offsets count from here.
    call_started: Instant,
    /// Whether the call is recorded (the writer then needs each frame's samples).
    recorded: bool,
}

impl Speaker {
    /// Caller audio at the line rate to text, on the inference pool; `None` after logging a
    /// failure.
    async fn transcribe(&self, audio: Vec<f32>) -> Option<String> {
        let models = Arc::clone(&self.models);
        let line_rate = self.format.sample_rate;
        // What the conversation expects next ("which day?" → weekdays): none while a turn
        // holds it (an interjection over the agent's reply).
        let hints = self
            .conversation
            .try_lock()
            .map(|c| c.hints())
            .unwrap_or_default();
        let heard = self
            .state
            .speech
            .pool()
            .run(move || {
                let input =
                    crate::pipeline::speech_input(&audio, line_rate).map_err(|e| e.to_string())?;
                let hints = models.stt.hints(&hints);
                models
                    .stt
                    .transcribe_with(&input, &hints)
                    .map_err(|e| e.to_string())
            })
            .await;
        match heard {
            Ok(Ok(text)) => Some(text),
            Ok(Err(error)) => {
                tracing::error!(%error, "speech to text failed");
                None
            }
            Err(error) => {
                tracing::error!(%error, "speech to text failed");
                None
            }
        }
    }

    async fn turn(&self, job: TurnJob, start: TurnStart) {
        // The caller's speech ended `endpoint_wait` before now.
        let began = Instant::now();
        let mut row = TurnRow {
            turn: job.number,
            ..TurnRow::default()
        };
        let input = match start {
            TurnStart::Greeting(text) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.send(TurnOutput::Text(text)).await;
                drop(tx);
                let action = self.speak_stream(&job, &mut row, began, None, rx).await;
                let _ = job.notes.send(TurnNote::Done(row, action)).await;
                return;
            }
            TurnStart::Farewell(text, disposition) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.send(TurnOutput::Text(text.to_owned())).await;
                drop(tx);
                self.speak_stream(&job, &mut row, began, None, rx).await;
                let hangup = Some(LineAction::Hangup(disposition));
                let _ = job.notes.send(TurnNote::Done(row, hangup)).await;
                return;
            }
            TurnStart::Input(input, wait) => {
                row.endpoint_wait_ms = wait.map(|w| w.as_millis() as i64);
                row.caller_offset_ms = Some(self.call_started.elapsed().as_millis() as i64);
                if let TurnInput::Dtmf(digits) = &input {
                    row.caller_text = Some(format!("[pressed {digits}]"));
                }
                input
            }
            TurnStart::Heard {
                text,
                endpoint_wait,
                stt,
                offset_ms,
            } => {
                row.endpoint_wait_ms = Some(endpoint_wait.as_millis() as i64);
                row.stt_ms = Some(stt.as_millis() as i64);
                row.caller_text = Some(text.clone());
                row.caller_offset_ms = Some(offset_ms as i64);
                TurnInput::Utterance(text)
            }
            TurnStart::Audio(audio, wait, offset_ms) => {
                row.endpoint_wait_ms = Some(wait.as_millis() as i64);
                row.caller_offset_ms = Some(offset_ms as i64);
                let Some(text) = self.transcribe(audio).await else {
                    return;
                };
                row.stt_ms = Some(began.elapsed().as_millis() as i64);
                if text.trim().is_empty() {
                    return;
                }
                row.caller_text = Some(text.clone());
                let _ = job.notes.send(TurnNote::Progress(row.clone())).await;
                TurnInput::Utterance(text)
            }
        };
        let (tx, rx) = mpsc::channel::<TurnOutput>(32);
        let conversation = Arc::clone(&self.conversation);
        // The engine and the voice run together: each clause is spoken as soon as it is complete.
        // Both live in this task, so aborting the turn (barge-in) cancels the engine too.
        let engine = async move {
            let mut conversation = conversation.lock().await;
            conversation.respond(input, tx).await
        };
        let wait = row
            .endpoint_wait_ms
            .map(|ms| Duration::from_millis(ms as u64));
        let turn_started = Instant::now();
        let speak = self.speak_stream(&job, &mut row, turn_started, wait, rx);
        let (outcome, action) = tokio::join!(engine, speak);
        if let Err(error) = outcome {
            tracing::error!(%error, "turn engine failed");
        }
        let _ = job.notes.send(TurnNote::Done(row, action)).await;
    }

    /// Speaks the engine's output as it arrives, clause by clause, each clause followed by a
    /// mark; returns what the engine asked the line to do afterwards.
    async fn speak_stream(
        &self,
        job: &TurnJob,
        row: &mut TurnRow,
        turn_started: Instant,
        wait: Option<Duration>,
        mut outputs: mpsc::Receiver<TurnOutput>,
    ) -> Option<LineAction> {
        let mut splitter = ClauseStream::default();
        let mut action = None;
        let mut index = 0usize;
        let mut speaking = true;
        loop {
            let (clauses, done) = match outputs.recv().await {
                Some(TurnOutput::Text(chunk)) => {
                    if row.turn_ms.is_none() && !chunk.trim().is_empty() {
                        row.turn_ms = Some(turn_started.elapsed().as_millis() as i64);
                    }
                    (splitter.push(&chunk), false)
                }
                Some(TurnOutput::EndCall) => {
                    action = Some(LineAction::Hangup("agent-hangup"));
                    (Vec::new(), false)
                }
                Some(TurnOutput::Transfer(number)) => {
                    action = Some(LineAction::Transfer(number));
                    (Vec::new(), false)
                }
                None => (splitter.finish(), true),
            };
            for clause in clauses {
                // After a failure nothing more is said, but the engine's output is still drained.
                if speaking {
                    speaking = self
                        .speak_clause(job, row, turn_started, wait, index, clause)
                        .await;
                }
                index += 1;
            }
            if done {
                return action;
            }
        }
    }

    /// Synthesises one clause and queues it for the caller with its mark; `false` if the call
    /// can take no more audio.
    async fn speak_clause(
        &self,
        job: &TurnJob,
        row: &mut TurnRow,
        turn_started: Instant,
        wait: Option<Duration>,
        index: usize,
        clause: String,
    ) -> bool {
        let Some(voice) = self.models.voices.get(&self.voice_id) else {
            return false;
        };
        let synth_started = Instant::now();
        let to_say = clause.clone();
        let line_rate = self.format.sample_rate;
        let encoder = Arc::clone(&self.encoder);
        let audio = self
            .state
            .speech
            .pool()
            .run(move || {
                let speech = voice
                    .synthesize_clause(&to_say)
                    .map_err(|e| e.to_string())?;
                let line =
                    resample(&speech, voice.sample_rate, line_rate).map_err(|e| e.to_string())?;
                let mut frames = Vec::with_capacity(line.len() / 160 + 1);
                let mut encoder = encoder.lock().map_err(|_| "the encoder failed")?;
                encoder
                    .encode(&line, &mut frames)
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((frames, line))
            })
            .await;
        let (frames, line) = match audio {
            Ok(Ok(audio)) => audio,
            Ok(Err(error)) => {
                tracing::error!(%error, "text to speech failed");
                return false;
            }
            Err(error) => {
                tracing::error!(%error, "text to speech failed");
                return false;
            }
        };
        if index == 0 {
            row.tts_ms = Some(synth_started.elapsed().as_millis() as i64);
        }
        let mut first_written = None;
        let mut pcm = line.chunks(crate::media::codec::frame_samples(self.format));
        for (n, frame) in frames.into_iter().enumerate() {
            let written = if index == 0 && n == 0 {
                let (tx, rx) = oneshot::channel();
                first_written = Some(rx);
                Some(tx)
            } else {
                None
            };
            let media = Out::Media {
                generation: job.generation,
                bytes: frame,
                // An unrecorded call copies nothing (an empty Vec does not allocate).
                pcm: match pcm.next() {
                    Some(samples) if self.recorded => samples.to_vec(),
                    _ => Vec::new(),
                },
                written,
            };
            if job.out.send(media).await.is_err() {
                return false;
            }
        }
        let mark = format!("turn-{}-clause-{}", job.number, index + 1);
        let note = TurnNote::ClauseQueued {
            turn: job.number,
            mark: mark.clone(),
            text: clause,
        };
        let _ = job.notes.send(note).await;
        let _ = job
            .out
            .send(Out::Mark {
                generation: job.generation,
                name: mark,
            })
            .await;
        if let Some(first) = first_written
            && let Ok(at) = first.await
        {
            // Total: from the end of the caller's speech (endpoint wait + speech-to-text before
            // the turn started) to the first agent frame on the wire.
            let before_turn =
                wait.unwrap_or_default() + Duration::from_millis(row.stt_ms.unwrap_or(0) as u64);
            row.total_ms = Some((at.duration_since(turn_started) + before_turn).as_millis() as i64);
            row.agent_offset_ms = Some(at.duration_since(self.call_started).as_millis() as i64);
            let _ = job.notes.send(TurnNote::Progress(row.clone())).await;
        }
        true
    }
}

/// Checks every `every` whether the business can still pay for its calls (its trial, included
/// minutes and wallet, less what its calls in progress have used so far, on every process); once
/// it has been unable to for `grace`, says so on `out` and stops.
async fn watch_money(
    db: Db,
    tenant: TenantId,
    every: Duration,
    grace: Duration,
    out: mpsc::Sender<()>,
) {
    let mut out_since: Option<Instant> = None;
    loop {
        let wait = match out_since {
            Some(since) => every.min(grace.saturating_sub(since.elapsed())),
            None => every,
        };
        tokio::time::sleep(wait).await;
        match crate::billing::seconds_left(&db, tenant).await {
            Ok(left) if left > 0 => out_since = None,
            Ok(left) => {
                let since = *out_since.get_or_insert_with(|| {
                    tracing::warn!(
                        left,
                        grace_secs = grace.as_secs(),
                        "the business's minutes and wallet ran out during the call"
                    );
                    Instant::now()
                });
                if since.elapsed() >= grace {
                    let _ = out.send(()).await;
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, "could not check the business's balance"),
        }
    }
}

/// What the turn engine is told about the call: the agent's version, the tenant's time zone, the
/// caller and the tools on offer.
async fn turn_context(
    state: &AppState,
    call: &call_store::CallRow,
    agent: &agent_store::AgentRow,
) -> Result<TurnContext, String> {
    let tenant = TenantId(call.tenant_id);
    let settings = crate::store::accounts::tenant_settings(&state.db, tenant)
        .await
        .map_err(|e| e.to_string())?;
    let spec = agent.snapshot.spec().map_err(|e| e.to_string())?;
    let timezone = settings.timezone.parse().unwrap_or(chrono_tz::UTC);
    let choice = spec
        .turn_engine
        .or_else(|| EngineChoice::parse(&settings.turn_engine))
        .unwrap_or(EngineChoice::Auto);
    let engine = match (choice, state.media.llm.is_some()) {
        (EngineChoice::Auto | EngineChoice::Llm, true) => EngineChoice::Llm,
        (EngineChoice::Llm, false) => {
            tracing::warn!(
                "the agent asks for the LLM but none is configured; the embedded responder answers"
            );
            EngineChoice::Embedded
        }
        _ => EngineChoice::Embedded,
    };
    let has = |tool: &str| spec.tools.iter().any(|t| t == tool);
    // Transfers need a carrier that can redirect a live call.
    let transfer_to = spec
        .transfer_number
        .clone()
        .filter(|_| has(crate::agent::turn::TRANSFER_CALL))
        .filter(|_| state.telephony.can_transfer(&call.carrier));
    // The caller is the other party: who called in, or whom an outbound call reached.
    let caller_number = if call.direction == "outbound" {
        call.to_number.clone()
    } else {
        call.from_number.clone()
    };
    Ok(TurnContext {
        call: CallId(call.id),
        tenant,
        agent: crate::domain::AgentId(agent.id),
        agent_name: spec.name.clone(),
        instructions: agent.compiled_instructions.clone(),
        system_prompt: spec.system_prompt.clone(),
        personality: spec.personality,
        language: spec.language.clone(),
        caller_number,
        timezone,
        started_at: chrono::Utc::now(),
        tools: crate::agent::turn::Tools {
            book_appointment: has(crate::agent::turn::BOOK_APPOINTMENT),
            end_call: has(crate::agent::turn::END_CALL),
            transfer_to,
        },
        engine,
    })
}

/// The engine chosen for the call ([`TurnContext::engine`]).
fn engine_for(state: &AppState, ctx: &TurnContext) -> Arc<dyn crate::agent::turn::TurnEngine> {
    match (&state.media.llm, ctx.engine) {
        (Some(llm), EngineChoice::Llm) => {
            Arc::clone(llm) as Arc<dyn crate::agent::turn::TurnEngine>
        }
        _ => Arc::clone(&state.media.turns),
    }
}

/// The DSP thread: decode, detect, endpoint. Runs until the frame queue closes.
fn dsp_loop(
    frames: std::sync::mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<DspEvent>,
    mut endpointer: Endpointer<Box<dyn vad::VoiceActivity>>,
    mut decoder: LineDecoder,
    mut recording: Option<(Recorder, std::sync::mpsc::Receiver<AgentAudio>)>,
) -> Option<Result<u64, String>> {
    let failed = dsp_frames(
        &frames,
        &events,
        &mut endpointer,
        &mut decoder,
        &mut recording,
    );
    match (recording, failed) {
        (_, Some(error)) => Some(Err(error)),
        (Some((mut recorder, agent)), None) => {
            while let Ok(audio) = agent.try_recv() {
                recorder.agent(audio);
            }
            Some(recorder.finish().map_err(|e| e.to_string()))
        }
        (None, None) => None,
    }
}

/// Runs until the frame queue closes or the call side goes away; returns why the recording
/// failed, if it did (the call carries on unrecorded).
fn dsp_frames(
    frames: &std::sync::mpsc::Receiver<Vec<u8>>,
    events: &mpsc::Sender<DspEvent>,
    endpointer: &mut Endpointer<Box<dyn vad::VoiceActivity>>,
    decoder: &mut LineDecoder,
    recording: &mut Option<(Recorder, std::sync::mpsc::Receiver<AgentAudio>)>,
) -> Option<String> {
    let rate = u64::from(decoder.sample_rate());
    let mut recording_failed = None;
    // Room for the longest packet a carrier sends (Opus: 120 ms).
    let mut samples = Vec::with_capacity(rate as usize / 8);
    let mut found = Vec::with_capacity(4);
    let mut position = 0u64;
    let mut undecodable = 0u64;
    while let Ok(bytes) = frames.recv() {
        samples.clear();
        if let Err(error) = decoder.decode(&bytes, &mut samples) {
            undecodable += 1;
            metrics::counter!("media_bad_frames_total", "reason" => "undecodable").increment(1);
            if undecodable.is_power_of_two() {
                tracing::warn!(%error, undecodable, "ignoring audio the codec cannot read");
            }
            continue;
        }
        position += samples.len() as u64;
        let position_ms = position * 1000 / rate;
        if let Some((recorder, agent)) = recording.as_mut() {
            while let Ok(audio) = agent.try_recv() {
                recorder.agent(audio);
            }
            if let Err(error) = recorder.caller(&samples) {
                tracing::error!(%error, "recording failed; the call goes on unrecorded");
                recording_failed = Some(error.to_string());
                *recording = None;
            }
        }
        if let Err(error) = endpointer.push(&samples, &mut found) {
            let _ = events.blocking_send(DspEvent::Failed(error.to_string()));
            return recording_failed;
        }
        for event in found.drain(..) {
            let event = match event {
                EndpointEvent::SpeechStarted { .. } => DspEvent::SpeechStarted,
                EndpointEvent::SpeechSustained { .. } => DspEvent::SpeechSustained,
                EndpointEvent::UtteranceEnded {
                    speech_end_ms,
                    start_ms,
                    ..
                } => DspEvent::Utterance {
                    audio: endpointer.utterance().to_vec(),
                    start_ms,
                    endpoint_wait: Duration::from_millis(position_ms.saturating_sub(speech_end_ms)),
                },
            };
            if events.blocking_send(event).is_err() {
                return recording_failed;
            }
        }
    }
    recording_failed
}

/// What the writer writes to: the carrier's stream, where it reports clauses played (carriers
/// without marks) and where agent audio goes for the recording.
struct WriterLine {
    stream_id: String,
    outbound: Arc<dyn Outbound>,
    played: mpsc::Sender<String>,
    recording: Option<RecordTap>,
}

/// Where the writer sends the agent's audio for the call's recording.
struct RecordTap {
    agent: std::sync::mpsc::Sender<AgentAudio>,
    /// The recording's time zero (the stream's start) and sample rate.
    started: Instant,
    rate: u32,
}

impl RecordTap {
    fn sample_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.started);
        (since.as_secs_f64() * f64::from(self.rate)) as u64
    }
}

/// Sends agent audio paced to real time (at most [`AHEAD`] early), marks and clears.
async fn writer_loop(
    mut sink: Sink,
    mut commands: mpsc::Receiver<Out>,
    generation: Arc<AtomicU64>,
    barged: Arc<Notify>,
    line: WriterLine,
) {
    let WriterLine {
        stream_id,
        outbound,
        played,
        recording,
    } = line;
    // Playback clock: when the current run of audio started, and how much of it was sent.
    let mut clock: Option<(Instant, u32)> = None;
    while let Some(command) = commands.recv().await {
        let current = generation.load(Ordering::SeqCst);
        let message = match command {
            Out::Media {
                generation: g,
                bytes,
                pcm,
                written,
            } => {
                if g != current {
                    continue;
                }
                let now = Instant::now();
                let (start, sent) = match clock {
                    // The queue ran dry: a new run of audio starts now.
                    Some((start, sent)) if now < start + FRAME * sent + FRAME * 5 => (start, sent),
                    _ => (now, 0),
                };
                let due = start + FRAME * sent;
                if due > now + AHEAD {
                    // Wait for the frame's turn, unless a barge-in drops it first: the clear
                    // behind it must not wait for pacing.
                    let wake = tokio::time::Instant::from_std(due - AHEAD);
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(wake) => break,
                            () = barged.notified() => {
                                if generation.load(Ordering::SeqCst) != g {
                                    break;
                                }
                            }
                        }
                    }
                    if generation.load(Ordering::SeqCst) != g {
                        continue;
                    }
                }
                clock = Some((start, sent + 1));
                if let Some(tap) = &recording {
                    let at = tap.sample_at(start + FRAME * sent);
                    let _ = tap.agent.send(AgentAudio::Frame { at, samples: pcm });
                }
                let sent = sink.send(outbound.media(&stream_id, &bytes)).await;
                if let Some(written) = written {
                    let _ = written.send(Instant::now());
                }
                if sent.is_err() {
                    return;
                }
                continue;
            }
            Out::Mark {
                generation: g,
                name,
            } => {
                if g != current {
                    continue;
                }
                match outbound.mark(&stream_id, &name) {
                    Some(message) => message,
                    None => {
                        // No marks on this carrier: report the clause played when the audio sent
                        // so far has had time to play, unless a clear comes first.
                        let played_at =
                            clock.map_or_else(Instant::now, |(start, sent)| start + FRAME * sent);
                        let (played, generation) = (played.clone(), Arc::clone(&generation));
                        tokio::spawn(async move {
                            tokio::time::sleep_until(played_at.into()).await;
                            if generation.load(Ordering::SeqCst) == g {
                                let _ = played.send(name).await;
                            }
                        });
                        continue;
                    }
                }
            }
            Out::Clear => {
                clock = None;
                if let Some(tap) = &recording {
                    let at = tap.sample_at(Instant::now());
                    let _ = tap.agent.send(AgentAudio::Clear { at });
                }
                outbound.clear(&stream_id)
            }
            Out::Close { code, reason } => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                return;
            }
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}
