//! The sandbox carrier: the embedded default, needing no network. Numbers come from the
//! numbering-plan inventory ([`super::numbers`]) and are provisioned at once. An outbound call
//! really happens on this machine: after ringing, a simulated callee decides by the configured
//! rules on the dialled number to be busy, not answer, fail, or answer (as a person or an
//! answering machine), and an answered call joins the engine's media websocket over Twilio's
//! Media Streams protocol, as Twilio would, speaking its script (synthesised with the engine's
//! Piper voice) one utterance per agent turn, then hanging up.
//!
//! Every dial is appended to `dial_log` (one line: call id, to, from, unix milliseconds) before
//! anything else happens, so tests can count dials independently of the database.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::numbers;
use super::{
    AvailableNumber, CallProgress, Carrier, CarrierError, Dial, NumberQuery, Placed, Provisioned,
};
use crate::config::SandboxSettings;
use crate::models::SpeechModels;
use crate::pipeline::wav;
use crate::simulator::{self, SimCarrier, StreamPlan};
use crate::store::Db;

/// How a dialled number behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxOutcome {
    Answer,
    Busy,
    NoAnswer,
    Voicemail,
    Fail,
}

/// A rule on dialled numbers: `number` exactly, or as a prefix when it ends in `*`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRule {
    pub number: String,
    pub outcome: SandboxOutcome,
}

impl SandboxRule {
    fn matches(&self, dialled: &str) -> bool {
        match self.number.strip_suffix('*') {
            Some(prefix) => dialled.starts_with(prefix),
            None => dialled == self.number,
        }
    }
}

/// What the callee of `dialled` does under `rules`.
pub fn outcome_for(rules: &[SandboxRule], dialled: &str) -> SandboxOutcome {
    rules
        .iter()
        .find(|r| r.matches(dialled))
        .map_or(SandboxOutcome::Answer, |r| r.outcome)
}

pub struct Sandbox {
    settings: SandboxSettings,
    db: Db,
    speech: Arc<SpeechModels>,
    dial_log: PathBuf,
    /// Synthesised callee utterances, by text.
    clips: Mutex<HashMap<String, wav::Audio>>,
    /// Callees on the line, by call id, to hang up.
    live: Mutex<HashMap<i64, tokio::task::AbortHandle>>,
}

impl Sandbox {
    pub fn new(
        settings: SandboxSettings,
        db: Db,
        speech: Arc<SpeechModels>,
        dial_log: PathBuf,
    ) -> Self {
        Self {
            settings,
            db,
            speech,
            dial_log,
            clips: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn log_dial(&self, dial: &Dial) -> Result<(), CarrierError> {
        let line = format!(
            "{} {} {} {}\n",
            dial.call_id,
            dial.to,
            dial.from,
            chrono::Utc::now().timestamp_millis()
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dial_log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| CarrierError::Unreachable(format!("the sandbox dial log: {e}")))
    }

    /// `text` spoken by the engine's first voice.
    async fn clip(&self, text: &str) -> Result<wav::Audio, String> {
        if let Some(clip) = self
            .clips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(text)
        {
            return Ok(clip.clone());
        }
        let models = self.speech.get().await.map_err(|e| e.to_string())?;
        let owned = text.to_owned();
        let audio = self
            .speech
            .pool()
            .run(move || {
                let voice = models
                    .voices
                    .voices()
                    .first()
                    .cloned()
                    .ok_or_else(|| "no voice is installed".to_string())?;
                let samples = voice.synthesize(&owned).map_err(|e| e.to_string())?;
                Ok::<_, String>(wav::Audio {
                    samples,
                    sample_rate: voice.sample_rate,
                })
            })
            .await
            .map_err(|e| e.to_string())??;
        self.clips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(text.to_owned(), audio.clone());
        Ok(audio)
    }

    /// The callee's side of one call, from ringing to hang-up.
    async fn callee(self: Arc<Self>, dial: Dial) {
        let ring = Duration::from_millis(self.settings.ring_ms);
        let report =
            |progress| crate::calls::outbound::apply_progress(&self.db, dial.call_id, progress);
        let _ = report(CallProgress::Ringing).await;
        let outcome = outcome_for(&self.settings.rules, &dial.to);
        let result = match outcome {
            SandboxOutcome::Busy => report(CallProgress::Busy).await,
            SandboxOutcome::Fail => report(CallProgress::Failed).await,
            SandboxOutcome::NoAnswer => {
                let wait = ring.min(Duration::from_secs(dial.ring_timeout_secs.into()));
                tokio::time::sleep(wait).await;
                report(CallProgress::NoAnswer).await
            }
            SandboxOutcome::Answer | SandboxOutcome::Voicemail => {
                tokio::time::sleep(ring / 2).await;
                let machine = outcome == SandboxOutcome::Voicemail;
                let _ = report(CallProgress::Answered { machine }).await;
                let started = std::time::Instant::now();
                let lines = if machine {
                    vec![self.settings.voicemail_says.clone()]
                } else {
                    self.settings.callee_says.clone()
                };
                let mut utterances = Vec::with_capacity(lines.len());
                for line in &lines {
                    match self.clip(line).await {
                        Ok(clip) => utterances.push(clip),
                        Err(error) => {
                            tracing::warn!(%error, "sandbox: cannot synthesise the callee");
                        }
                    }
                }
                let streamed = simulator::stream(StreamPlan {
                    call_id: dial.call_id,
                    stream_url: dial.stream_url.clone(),
                    token: dial.token.clone(),
                    utterances,
                    listen_first: !machine,
                    await_reply: !machine,
                    pause: Duration::from_millis(600),
                    speed: 1.0,
                    quiet: Duration::from_millis(1_500),
                    carrier: SimCarrier::Twilio,
                })
                .await;
                if let Err(error) = &streamed {
                    tracing::warn!(call_id = dial.call_id, %error, "sandbox: the callee's stream failed");
                }
                report(CallProgress::Completed {
                    duration_secs: started.elapsed().as_secs() as u32,
                })
                .await
            }
        };
        if let Err(error) = result {
            tracing::warn!(call_id = dial.call_id, %error, "sandbox: cannot record progress");
        }
    }
}

/// The sandbox's call id for an engine call.
fn call_sid(call_id: i64) -> String {
    format!("SBCA{call_id}")
}

/// The carrier with its callees: [`Carrier`] is implemented on the `Arc` so that a dial can
/// spawn the callee with a handle on it.
pub struct SandboxCarrier(pub Arc<Sandbox>);

impl Carrier for SandboxCarrier {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn available(
        &self,
        query: NumberQuery,
    ) -> BoxFuture<'_, Result<Vec<AvailableNumber>, CarrierError>> {
        Box::pin(async move {
            let prefix = format!("+{}", query.country.calling_code());
            let taken = crate::store::telephony::provisioned_with_prefix(&self.0.db, &prefix)
                .await
                .map_err(|e| CarrierError::Unreachable(e.to_string()))?;
            numbers::inventory(&query, &|n| taken.iter().any(|t| t == n))
                .map_err(|e| CarrierError::Invalid(e.to_string()))
        })
    }

    fn provision<'a>(
        &'a self,
        _phone_number: &'a str,
        _voice_url: &'a str,
    ) -> BoxFuture<'a, Result<Provisioned, CarrierError>> {
        Box::pin(async move {
            Ok(Provisioned {
                carrier_sid: format!("SBPN{}", uuid::Uuid::new_v4().simple()),
            })
        })
    }

    fn release<'a>(&'a self, _carrier_sid: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async { Ok(()) })
    }

    fn dial(&self, dial: Dial) -> BoxFuture<'_, Result<Placed, CarrierError>> {
        Box::pin(async move {
            self.0.log_dial(&dial)?;
            let call_id = dial.call_id;
            let sandbox = Arc::clone(&self.0);
            let task = tokio::spawn(Arc::clone(&self.0).callee(dial));
            sandbox
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(call_id, task.abort_handle());
            // Forget the handle once the callee is done.
            tokio::spawn(async move {
                let _ = task.await;
                sandbox
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&call_id);
            });
            Ok(Placed {
                carrier_call_id: call_sid(call_id),
            })
        })
    }

    fn hang_up<'a>(&'a self, carrier_call_id: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            let call_id = carrier_call_id
                .strip_prefix("SBCA")
                .and_then(|id| id.parse::<i64>().ok())
                .ok_or_else(|| {
                    CarrierError::Invalid(format!("no sandbox call {carrier_call_id}"))
                })?;
            if let Some(task) = self
                .0
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&call_id)
            {
                task.abort();
            }
            Ok(())
        })
    }

    fn transfer<'a>(
        &'a self,
        _carrier_call_id: &'a str,
        _number: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async {
            Err(CarrierError::Invalid(
                "the sandbox carrier cannot transfer calls".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_decides_and_answer_is_the_default() {
        let rules = vec![
            SandboxRule {
                number: "+61491570159".into(),
                outcome: SandboxOutcome::Voicemail,
            },
            SandboxRule {
                number: "+614915701*".into(),
                outcome: SandboxOutcome::Busy,
            },
            SandboxRule {
                number: "+61491570*".into(),
                outcome: SandboxOutcome::NoAnswer,
            },
        ];
        assert_eq!(
            outcome_for(&rules, "+61491570159"),
            SandboxOutcome::Voicemail
        );
        assert_eq!(outcome_for(&rules, "+61491570150"), SandboxOutcome::Busy);
        assert_eq!(
            outcome_for(&rules, "+61491570999"),
            SandboxOutcome::NoAnswer
        );
        assert_eq!(outcome_for(&rules, "+61255501234"), SandboxOutcome::Answer);
        assert_eq!(outcome_for(&[], "+61255501234"), SandboxOutcome::Answer);
        let parsed: Vec<SandboxRule> = toml::from_str::<toml::Table>(
            "rules = [{ number = \"+1415*\", outcome = \"no-answer\" }]",
        )
        .unwrap()["rules"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(parsed[0].outcome, SandboxOutcome::NoAnswer);
    }
}
