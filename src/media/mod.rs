//! The media edge: carrier websockets in, the per-call session, agent audio out.
//!
//! `GET /media/twilio`, `/media/telnyx`, `/media/plivo` and `/media/vonage` upgrade to each
//! carrier's media websocket, `/media/web` to the engine's own protocol for browsers ([`web`]).
//! [`session`] runs the call whatever the carrier: caller audio goes through a bounded queue to
//! a per-call DSP thread (decode, voice activity, endpointing), utterances to speech-to-text and
//! the turn engine on the inference pool, the reply back clause by clause through
//! text-to-speech, paced to real time, with marks and barge-in.

pub mod backchannel;
pub mod codec;
pub mod plivo;
pub mod protocol;
pub mod session;
pub mod telnyx;
pub mod twilio;
pub mod vonage;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State, WebSocketUpgrade};
use axum::routing::{MethodRouter, get};

use crate::agent::turn::TurnEngine;
use crate::api::AppState;
use crate::pipeline::endpoint::EndpointConfig;
use crate::pipeline::vad::{Aggressiveness, VadKind};

/// Largest websocket message accepted from a carrier.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How calls are run.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub vad: VadKind,
    pub aggressiveness: Aggressiveness,
    pub endpoint: EndpointConfig,
    /// How long a new stream may take to send its `start`.
    pub start_timeout: Duration,
    /// Where call recordings are written; `None`: calls are not recorded.
    pub recordings: Option<std::path::PathBuf>,
}

impl MediaConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            vad: config.vad,
            aggressiveness: config.vad_aggressiveness,
            // Caller speech that lasts `barge_in_ms` over the agent interrupts it at once;
            // shorter speech goes to the backchannel filter first.
            endpoint: EndpointConfig {
                sustained_ms: config.barge_in_ms.into(),
                ..EndpointConfig::default()
            },
            start_timeout: Duration::from_secs(10),
            recordings: config
                .record_calls
                .then(|| config.data_dir.join("recordings")),
        }
    }
}

/// What the media edge shares across calls.
#[derive(Clone)]
pub struct MediaState {
    pub config: Arc<MediaConfig>,
    /// The embedded responder: the engine when no LLM is configured or an agent chooses it.
    pub turns: Arc<dyn TurnEngine>,
    /// The OpenAI-compatible chat engine, when configured.
    pub llm: Option<Arc<crate::agent::llm::LlmEngine>>,
    pub backchannels: Arc<dyn backchannel::BackchannelFilter>,
}

impl MediaState {
    /// The engines and settings the configuration asks for; fails on unusable LLM settings.
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Self, crate::agent::turn::TurnError> {
        let llm = match &config.llm {
            None => None,
            Some(llm) => Some(Arc::new(crate::agent::llm::LlmEngine::new(
                crate::agent::llm::LlmConfig {
                    base_url: llm.base_url.clone(),
                    model: llm.model.clone(),
                    api_key: llm.api_key.clone(),
                    timeout: Duration::from_millis(llm.timeout_ms),
                    retries: llm.retries,
                    temperature: None,
                },
            )?)),
        };
        Ok(Self {
            config: Arc::new(MediaConfig::from_config(config)),
            turns: Arc::new(crate::agent::embedded::EmbeddedResponder::new()),
            llm,
            backchannels: Arc::new(backchannel::CommonBackchannels),
        })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/media/twilio",
            stream(|| (Box::new(twilio::Twilio), Arc::new(twilio::Twilio))),
        )
        .route(
            "/media/telnyx",
            stream(|| {
                (
                    Box::<telnyx::Telnyx>::default(),
                    Arc::new(telnyx::TelnyxOut),
                )
            }),
        )
        .route(
            "/media/plivo",
            stream(|| {
                let (inbound, outbound) = plivo::sides();
                (Box::new(inbound), Arc::new(outbound))
            }),
        )
        .route(
            "/media/vonage",
            stream(|| (Box::new(vonage::Vonage), Arc::new(vonage::VonageOut))),
        )
        .route(
            "/media/web",
            stream(|| (Box::new(web::Web), Arc::new(web::Web))),
        )
}

/// A carrier's reader and writer, fresh for each stream.
type CarrierSides = fn() -> (Box<dyn protocol::Inbound>, Arc<dyn protocol::Outbound>);

/// The websocket route of one carrier: upgrades with the message size limit and runs the call.
/// A stream token in the URL (`?token=…`) serves carriers that cannot carry it in their first
/// message.
fn stream(sides: CarrierSides) -> MethodRouter<AppState> {
    get(
        move |State(state): State<AppState>,
              RawQuery(query): RawQuery,
              upgrade: WebSocketUpgrade| async move {
            let url_token = crate::api::extract::query_value(query.as_deref(), "token");
            upgrade
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_MESSAGE_BYTES)
                .on_upgrade(move |socket| {
                    let (inbound, outbound) = sides();
                    session::run(
                        socket,
                        state,
                        session::Carrier {
                            inbound,
                            outbound,
                            url_token,
                        },
                    )
                })
        },
    )
}
