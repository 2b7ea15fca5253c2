//! Compiles an [`AgentSpec`] into the agent's instructions: deterministic plain text (same
//! snapshot, same bytes) that the turn engine hands to a language model as its system message and
//! that the embedded responder reads for its facts and phrasing.
//!
//! Sections, in order: role (the system prompt), personality (one line per slider, from the
//! documented bands below), language, telephone conduct, tools, knowledge.

use sha2::{Digest, Sha256};

use super::{AgentSpec, HUMOUR_MAX, Personality, SLIDER_MAX};
use crate::domain::Language;

/// The compiled text and its SHA-256 (hex), stored with each version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub text: String,
    pub hash: String,
}

/// Used when an agent has no system prompt of its own.
const DEFAULT_PROMPT: &str = "Help each caller with their enquiry politely and accurately.";

/// Humour bands (0–30), by lower edge: 0–7, 8–15, 16–23, 24–30.
const HUMOUR_BANDS: &[(u8, &str)] = &[
    (0, "Stay entirely serious; make no jokes."),
    (
        8,
        "Allow a rare, gentle light touch when the caller is relaxed.",
    ),
    (
        16,
        "Be warm and lightly playful; a brief friendly quip is fine.",
    ),
    (
        24,
        "Be openly good-humoured and witty, never at the caller's expense.",
    ),
];

/// Bands for the 0–100 sliders: 0–20, 21–40, 41–60, 61–80, 81–100.
const EMPATHY_BANDS: [&str; 5] = [
    "Be matter-of-fact; focus on the task rather than feelings.",
    "Acknowledge feelings briefly, then move on to the task.",
    "Show understanding when the caller expresses a concern.",
    "Be warm; acknowledge the caller's feelings before solving the problem.",
    "Be deeply compassionate and patient; reassure the caller and never rush them.",
];
const FORMALITY_BANDS: [&str; 5] = [
    "Be casual and relaxed, as with a friend; contractions and everyday words.",
    "Be friendly and informal.",
    "Be polite and neutral, neither stiff nor chatty.",
    "Be professional and courteous.",
    "Be formal: full sentences, courtesy titles, no slang.",
];
const ENERGY_BANDS: [&str; 5] = [
    "Be calm and unhurried, with a low-key tone.",
    "Be relaxed and steady.",
    "Be engaged, with a natural even energy.",
    "Be upbeat and lively.",
    "Be highly enthusiastic and energetic.",
];
const DIRECTNESS_BANDS: [&str; 5] = [
    "Be gentle and indirect; soften requests and suggestions.",
    "Be tactful; lead into answers with a little context.",
    "Balance context with getting to the point.",
    "Be direct; give the answer first, then any detail.",
    "Be blunt and brief; answer in as few words as possible.",
];

const TELEPHONE_CONDUCT: &[&str] = &[
    "This is a telephone call: everything you say is spoken aloud by a synthetic voice. Use plain spoken sentences with no lists, headings, markdown, emoji or web addresses.",
    "Keep each reply short: one to three sentences.",
    "Ask one question at a time, then wait for the answer.",
    "Confirm names, dates, times, phone numbers and spellings back to the caller before acting on them.",
    "Say numbers, dates, times and prices the way people speak them.",
    "If you do not know something, say so; never invent facts, prices or availability.",
    "If the caller interrupts, stop and listen.",
];

/// Compiles a snapshot. Pure: depends on nothing but `spec`.
pub fn compile(spec: &AgentSpec) -> Compiled {
    let mut text = String::with_capacity(2048);
    let prompt = spec
        .system_prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());

    text.push_str("# Role\n");
    text.push_str(&format!(
        "You are {}, a voice agent answering telephone calls.\n",
        spec.name.trim()
    ));
    text.push_str(prompt.unwrap_or(DEFAULT_PROMPT));
    text.push_str("\n\n# Personality\n");
    personality(&mut text, &spec.personality);
    text.push_str("\n# Language\n");
    language(&mut text, &spec.language);
    text.push_str("\n# Telephone conduct\n");
    for line in TELEPHONE_CONDUCT {
        text.push_str("- ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("\n# Tools\n");
    tools(&mut text, spec);
    text.push_str("\n# Knowledge\n");
    knowledge(&mut text, spec);

    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    Compiled { text, hash }
}

/// The linked documents, and how to use the excerpts each turn brings.
fn knowledge(text: &mut String, spec: &AgentSpec) {
    if spec.knowledge.is_empty() {
        text.push_str("No knowledge documents are linked to this agent.\n");
        return;
    }
    text.push_str("You answer from the business's documents:\n");
    for link in &spec.knowledge {
        text.push_str("- ");
        text.push_str(link.filename.trim());
        text.push('\n');
    }
    text.push_str("Each caller turn comes with the excerpts of these documents that best match it. When an excerpt answers the question, answer from it in one or two sentences and give figures (prices, times, numbers) exactly as written. When no excerpt answers it, say you don't have that information; never guess.\n");
}

/// One line per tool the agent has, saying when to use it.
fn tools(text: &mut String, spec: &AgentSpec) {
    use super::turn::{BOOK_APPOINTMENT, END_CALL, TRANSFER_CALL};
    let has = |tool: &str| spec.tools.iter().any(|t| t == tool);
    let mut any = false;
    if has(BOOK_APPOINTMENT) {
        any = true;
        text.push_str("- book_appointment: books an appointment once you have the caller's name, the day and the time, and the caller has confirmed them. The caller's number is used unless they give another.\n");
    }
    if has(END_CALL) {
        any = true;
        text.push_str("- end_call: hangs up after your reply. Use it when the caller says goodbye or has nothing more to ask; say goodbye first.\n");
    }
    if has(TRANSFER_CALL)
        && let Some(number) = &spec.transfer_number
    {
        any = true;
        text.push_str(&format!("- transfer_call: transfers the caller to a person at {number}. Use it when the caller asks for a person or for something you cannot do; tell them first.\n"));
    }
    if !any {
        text.push_str("No tools are available on this call.\n");
    }
}

fn personality(text: &mut String, p: &Personality) {
    let humour = HUMOUR_BANDS
        .iter()
        .rev()
        .find(|(from, _)| p.humour >= *from)
        .map_or(HUMOUR_BANDS[0].1, |(_, band)| band);
    let lines = [
        ("Humour", p.humour, HUMOUR_MAX, humour),
        (
            "Empathy",
            p.empathy,
            SLIDER_MAX,
            band(&EMPATHY_BANDS, p.empathy),
        ),
        (
            "Formality",
            p.formality,
            SLIDER_MAX,
            band(&FORMALITY_BANDS, p.formality),
        ),
        (
            "Energy",
            p.energy,
            SLIDER_MAX,
            band(&ENERGY_BANDS, p.energy),
        ),
        (
            "Directness",
            p.directness,
            SLIDER_MAX,
            band(&DIRECTNESS_BANDS, p.directness),
        ),
    ];
    for (label, value, max, description) in lines {
        text.push_str(&format!("- {label} {value}/{max}: {description}\n"));
    }
}

/// The band of a 0–100 slider: 0–20, 21–40, 41–60, 61–80, 81–100.
fn band(bands: &[&'static str; 5], value: u8) -> &'static str {
    let index = usize::from(value.saturating_sub(1) / 20).min(4);
    bands[index]
}

fn language(text: &mut String, language: &Language) {
    let tag = language.as_str();
    let name = language_name(language.primary());
    let region = language.region().and_then(region_name);
    match (name, region) {
        (Some(name), Some(region)) => text.push_str(&format!(
            "Speak {name} as spoken in {region} (BCP-47 {tag}) for the whole call, with that region's usual vocabulary and its conventions for dates, times and money.\n"
        )),
        (Some(name), None) => {
            text.push_str(&format!("Speak {name} (BCP-47 {tag}) for the whole call.\n"))
        }
        _ => text.push_str(&format!("Speak the language with BCP-47 tag {tag} for the whole call.\n")),
    }
    text.push_str(
        "If the caller speaks another language, say briefly in that language that you can only help in this one.\n",
    );
}

fn language_name(primary: &str) -> Option<&'static str> {
    Some(match primary {
        "ar" => "Arabic",
        "da" => "Danish",
        "de" => "German",
        "el" => "Greek",
        "en" => "English",
        "es" => "Spanish",
        "fi" => "Finnish",
        "fr" => "French",
        "he" => "Hebrew",
        "hi" => "Hindi",
        "id" => "Indonesian",
        "it" => "Italian",
        "ja" => "Japanese",
        "ko" => "Korean",
        "ms" => "Malay",
        "nb" | "no" => "Norwegian",
        "nl" => "Dutch",
        "pl" => "Polish",
        "pt" => "Portuguese",
        "ru" => "Russian",
        "sv" => "Swedish",
        "th" => "Thai",
        "tr" => "Turkish",
        "uk" => "Ukrainian",
        "vi" => "Vietnamese",
        "zh" => "Chinese",
        _ => return None,
    })
}

fn region_name(region: &str) -> Option<&'static str> {
    Some(match region {
        "AR" => "Argentina",
        "AU" => "Australia",
        "BR" => "Brazil",
        "CA" => "Canada",
        "CH" => "Switzerland",
        "CN" => "China",
        "CO" => "Colombia",
        "DE" => "Germany",
        "ES" => "Spain",
        "FR" => "France",
        "GB" => "the United Kingdom",
        "HK" => "Hong Kong",
        "IE" => "Ireland",
        "IN" => "India",
        "IT" => "Italy",
        "JP" => "Japan",
        "MX" => "Mexico",
        "NZ" => "New Zealand",
        "PT" => "Portugal",
        "SG" => "Singapore",
        "TW" => "Taiwan",
        "US" => "the United States",
        "ZA" => "South Africa",
        "419" => "Latin America",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reception() -> AgentSpec {
        AgentSpec {
            name: "Reception Bot".into(),
            voice: "aria".into(),
            language: Language::parse("en-AU").unwrap(),
            system_prompt: Some("You are a friendly receptionist for Harbour Dental.".into()),
            personality: Personality::default(),
            turn_engine: None,
            tools: crate::agent::default_tools(),
            transfer_number: None,
            max_call_seconds: crate::agent::MAX_CALL_SECONDS_DEFAULT,
            knowledge: Vec::new(),
        }
    }

    #[test]
    fn compiles_the_default_personality() {
        insta::assert_snapshot!(compile(&reception()).text);
    }

    #[test]
    fn compiles_extreme_sliders_and_an_unlisted_language() {
        let spec = AgentSpec {
            name: "Ventas".into(),
            voice: "leo".into(),
            language: Language::parse("mi-NZ").unwrap(),
            system_prompt: None,
            personality: Personality {
                humour: 30,
                empathy: 0,
                formality: 100,
                energy: 81,
                directness: 20,
            },
            turn_engine: None,
            tools: Vec::new(),
            transfer_number: None,
            max_call_seconds: crate::agent::MAX_CALL_SECONDS_DEFAULT,
            knowledge: Vec::new(),
        };
        insta::assert_snapshot!(compile(&spec).text);
    }

    #[test]
    fn lists_linked_documents_and_how_to_use_their_excerpts() {
        let mut spec = reception();
        spec.knowledge = vec![
            crate::agent::KnowledgeLink {
                id: 3,
                filename: "menu.pdf".into(),
            },
            crate::agent::KnowledgeLink {
                id: 9,
                filename: "clinic-faq.docx".into(),
            },
        ];
        let text = compile(&spec).text;
        let section = text.split("# Knowledge\n").nth(1).unwrap();
        assert!(section.starts_with(
            "You answer from the business's documents:\n- menu.pdf\n- clinic-faq.docx\n"
        ));
        assert!(section.contains("figures (prices, times, numbers) exactly as written"));
        assert!(!text.contains("No knowledge documents"));
        assert_ne!(compile(&spec).hash, compile(&reception()).hash);
    }

    #[test]
    fn names_regions_by_their_conventions() {
        let mut spec = reception();
        spec.language = Language::parse("es-419").unwrap();
        assert!(
            compile(&spec)
                .text
                .contains("Speak Spanish as spoken in Latin America (BCP-47 es-419)")
        );
        spec.language = Language::parse("fr").unwrap();
        assert!(
            compile(&spec)
                .text
                .contains("Speak French (BCP-47 fr) for the whole call.")
        );
    }

    #[test]
    fn same_snapshot_same_bytes_and_hash() {
        let a = compile(&reception());
        let b = compile(&reception());
        assert_eq!(a, b);
        assert_eq!(a.hash, hex::encode(Sha256::digest(a.text.as_bytes())));
        let mut other = reception();
        other.personality.formality = 90;
        assert_ne!(compile(&other).hash, a.hash);
    }

    #[test]
    fn slider_bands_have_the_documented_edges() {
        assert_eq!(band(&FORMALITY_BANDS, 0), FORMALITY_BANDS[0]);
        assert_eq!(band(&FORMALITY_BANDS, 20), FORMALITY_BANDS[0]);
        assert_eq!(band(&FORMALITY_BANDS, 21), FORMALITY_BANDS[1]);
        assert_eq!(band(&FORMALITY_BANDS, 60), FORMALITY_BANDS[2]);
        assert_eq!(band(&FORMALITY_BANDS, 61), FORMALITY_BANDS[3]);
        assert_eq!(band(&FORMALITY_BANDS, 81), FORMALITY_BANDS[4]);
        assert_eq!(band(&FORMALITY_BANDS, 100), FORMALITY_BANDS[4]);
    }
}
