//! The voice catalogue: the Piper voices installed under `models/voices/`, plus configured
//! aliases. Agents' `voice` must be one of these ids.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::ErrorBody;
use super::extract::Auth;
use super::{AppState, JsonResult};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_voices))
}

/// Licence caveat of the voice the engine ships (from its model card).
const JOE_LICENCE: &str = "Piper voice fine-tuned from the lessac voice, whose dataset licence may restrict commercial use";

#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceView {
    pub id: String,
    /// Language the voice speaks (`en-US`).
    pub language: String,
    /// Sample rate of its audio, in Hz.
    pub sample_rate: u32,
    /// For an alias, the installed voice it speaks with.
    pub alias_of: Option<String>,
    pub licence_note: String,
}

/// The voices agents can use.
#[utoipa::path(
    get, path = "/api/voices", tag = "voices", security(("bearer" = [])),
    responses((status = 200, body = Vec<VoiceView>), (status = 403, body = ErrorBody))
)]
async fn list_voices(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<VoiceView>> {
    auth.tenant()?;
    let views = state
        .speech
        .voices()
        .iter()
        .map(|v| {
            let speaker = v.alias_of.as_deref().unwrap_or(&v.id);
            VoiceView {
                id: v.id.clone(),
                language: v.language.clone(),
                sample_rate: v.sample_rate,
                alias_of: v.alias_of.clone(),
                licence_note: if speaker == "joe" {
                    JOE_LICENCE.to_owned()
                } else {
                    "see the voice's model card".to_owned()
                },
            }
        })
        .collect();
    Ok(Json(views))
}
