//! The embedded responder with the real embedding model: questions heard with words wrong are
//! matched to the agent's facts by meaning, and asked about when the match is not sure. Needs
//! the model files (`./scripts/fetch-models`, run by `./scripts/setup`).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use callgenius::agent::embedded::EmbeddedResponder;
use callgenius::agent::turn::{
    Booking, BookingRequest, KnowledgePassage, ToolError, ToolRunner, Tools, TurnContext,
    TurnEngine, TurnInput, TurnOutput,
};
use callgenius::agent::{EngineChoice, Personality};
use callgenius::domain::{AgentId, CallId, Language, TenantId};
use callgenius::models::Models;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        Models::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
            .expect("models installed (./scripts/fetch-models)")
    })
}

/// A clinic's system prompt: the facts the questions below are about.
const PROMPT: &str = "You are the receptionist for Harbour Dental. \
    We are open Monday to Friday from 8 am to 6 pm, and on Saturday from 9 am to 1 pm. \
    We are at 12 Wharf Street, Pyrmont, on the first floor above the pharmacy. \
    Free parking for patients is available behind the building. \
    We accept all major private health insurance funds and you can claim on the spot. \
    A check-up and clean costs $180. \
    Dr Mei Chen and Dr Tom Walsh are our dentists.";

/// Tools with no bookings and no documents, and the real embedding model.
struct Embedding;

impl ToolRunner for Embedding {
    fn book_appointment(
        &self,
        _request: BookingRequest,
    ) -> BoxFuture<'_, Result<Booking, ToolError>> {
        Box::pin(async { Err(ToolError::Failed("no bookings in this test".into())) })
    }

    fn search_knowledge(&self, _query: &str) -> BoxFuture<'_, Vec<KnowledgePassage>> {
        Box::pin(async { Vec::new() })
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Vec<Vec<f32>>> {
        Box::pin(async move {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            models().embeddings.embed_batch(&texts).unwrap()
        })
    }
}

fn context() -> TurnContext {
    TurnContext {
        call: CallId(1),
        tenant: TenantId(1),
        agent: AgentId(1),
        agent_name: "Reception".into(),
        instructions: String::new(),
        system_prompt: Some(PROMPT.into()),
        personality: Personality::default(),
        language: Language::parse("en-AU").unwrap(),
        caller_number: Some("+61255501234".into()),
        timezone: chrono_tz::Australia::Sydney,
        started_at: "2026-11-30T01:00:00Z".parse().unwrap(),
        tools: Tools {
            book_appointment: true,
            end_call: true,
            transfer_to: None,
        },
        engine: EngineChoice::Embedded,
    }
}

/// The replies to `turns`, in one conversation.
async fn converse(turns: &[&str]) -> Vec<String> {
    let mut conversation = EmbeddedResponder::new().open(Arc::new(context()), Arc::new(Embedding));
    let mut replies = Vec::new();
    for said in turns {
        let (tx, mut rx) = mpsc::channel(32);
        conversation
            .respond(TurnInput::Utterance((*said).into()), tx)
            .await
            .unwrap();
        let mut text = String::new();
        while let Some(output) = rx.recv().await {
            if let TurnOutput::Text(piece) = output {
                text.push_str(&piece);
            }
        }
        replies.push(text);
    }
    replies
}

/// Questions as speech to text heard them (the misheard ones are Moonshine's transcripts of
/// the hearing fixtures, voices the engine was not tuned on, or mishearings of the same kind),
/// each with words its answer must contain: answered outright, or after a clarifying question
/// the caller says yes to.
#[tokio::test]
async fn misheard_questions_are_answered_by_meaning_or_asked_about() {
    let cases: &[(&str, &str)] = &[
        ("Do you take private health insurance?", "insurance funds"),
        ("Do you take prime a telf insurance?", "insurance funds"),
        ("Do you date private health insurance?", "insurance funds"),
        (
            "Will you bake primer's health insurance?",
            "insurance funds",
        ),
        ("You take private health and children.", "insurance funds"),
        ("Is there parking near the clinic?", "parking"),
        ("Is there parting near the clinic?", "parking"),
        ("Is there parting nearly clinic?", "parking"),
        ("If they're parking near the clinic.", "parking"),
        ("Is their parking near McLydick.", "parking"),
        (
            "What time do you close on Wednesday evenings?",
            "8 am to 6 pm",
        ),
        (
            "What time do you clone on Wednesday, England?",
            "8 am to 6 pm",
        ),
        (
            "What time do you pull from Wednesday evening?",
            "8 am to 6 pm",
        ),
        ("Are you often on Saturdays?", "Saturday from 9 am"),
        ("How much is a checkup and clan?", "$180"),
        ("What's your address?", "Wharf Street"),
        ("Where abouts are you locked in?", "Wharf Street"),
        ("Who are the dentists there?", "Mei Chen"),
        ("Which dentist works their?", "Mei Chen"),
        // Statements, not questions, heard the same way.
        (
            "I was wondering about primate health insurance",
            "insurance funds",
        ),
        ("Tell me about parting for patients", "parking"),
    ];
    let mut failures = Vec::new();
    for (question, answer) in cases {
        let replies = converse(&[question, "Yes."]).await;
        let answered = replies[0].contains(answer)
            || (replies[0].contains("did you ask about") && replies[1].contains(answer));
        eprintln!("{question:?} → {replies:?}");
        if !answered {
            failures.push(format!("{question:?} → {replies:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Questions about nothing the agent knows are not given a wrong fact: the caller hears that
/// the agent does not have that information (never a made-up match).
#[tokio::test]
async fn questions_about_nothing_it_knows_get_no_wrong_fact() {
    for question in [
        "Do you sell second hand cars?",
        "What's the weather going to be like tomorrow?",
        "Can you recommend a good plumber?",
        "Do you do tattoo removal?",
    ] {
        let replies = converse(&[question]).await;
        eprintln!("{question:?} → {replies:?}");
        assert!(
            replies[0].starts_with("I'm sorry, I don't have that information."),
            "{question:?} → {replies:?}"
        );
    }
}

/// A clarifying question answered "no" does not read out the fact it offered.
#[tokio::test]
async fn a_clarifying_question_answered_no_asks_again() {
    let replies = converse(&["Do you take prime a telf insurance?", "No."]).await;
    eprintln!("{replies:?}");
    if replies[0].contains("did you ask about") {
        assert!(!replies[1].contains("insurance"), "{replies:?}");
        assert!(
            replies[1].contains("What would you like to know?"),
            "{replies:?}"
        );
    } else {
        panic!("expected a clarifying question: {replies:?}");
    }
}
