//! Answers from text: the agent's system prompt, or the knowledge passages a search returned
//! for the caller's words.
//!
//! The text is split into sentences (list items under a "Heading:" line keep the heading, so
//! "Opening hours:" / "- Monday to Friday 8 am to 5 pm" still says what it is about). Sentences
//! that instruct the agent rather than state a fact are skipped: those that start with "You
//! are", "You should", "Always", "Never", "If a caller", … or mention "callers"; "Tell callers
//! (that) …" is rewritten to what follows it. Each sentence is scored against the question by
//! its content words (stop words dropped, crude stems: "hours" = "hour", "opening" = "open"),
//! where a word of a topic the sentence covers also counts (a question about "hours" or "when
//! you close" matches a sentence with weekdays or am/pm; "cost"/"how much" one with a price;
//! "where"/"address"/"parking" one with a street). The best sentence answers when it covers at
//! least half of the question's content words; ties go to the sentence with a fact of that
//! kind, then to the earlier one.
//!
//! Questions are never answers (an FAQ's "Do you bulk bill?" is followed by its answer), and a
//! line that ends in a bare price ("Margherita pizza with basil $18.50") is spoken as a sentence
//! ("… basil is $18.50."). Knowledge passages are facts addressed to customers, so the
//! instruction filter applies to the system prompt only ("Please give 24 hours notice" is a fact
//! in a clinic's FAQ).

use super::text::{self, Utterance, Word, capitalise, is_stop_word, stem};
use crate::agent::turn::KnowledgePassage;

/// Facts ready for answering.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    facts: Vec<Fact>,
    business: Option<String>,
}

#[derive(Debug)]
struct Fact {
    spoken: String,
    stems: Vec<String>,
    /// Content words as they are (unstemmed), for sound-alike matching.
    words: Vec<String>,
    topics: Topics,
}

/// Kinds of fact callers ask about.
#[derive(Debug, Clone, Copy, Default)]
struct Topics {
    hours: bool,
    price: bool,
    place: bool,
}

impl Topics {
    fn any(self) -> bool {
        self.hours || self.price || self.place
    }

    fn shared(self, other: Topics) -> usize {
        usize::from(self.hours && other.hours)
            + usize::from(self.price && other.price)
            + usize::from(self.place && other.place)
    }
}

/// Words of a question that ask about a topic, and words of a sentence that show it has one.
const HOURS_QUESTION: &[&str] = &[
    "hour", "hours", "open", "opening", "close", "closing", "closed", "shut", "trading", "time",
    "times", "when",
];
/// Words of a question that a fact about hours covers without the question being about hours
/// ("What time do you close on Wednesday evenings?").
const WHEN_WORDS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekday",
    "weekdays",
    "weekend",
    "weekends",
    "morning",
    "mornings",
    "afternoon",
    "afternoons",
    "evening",
    "evenings",
    "night",
    "nights",
    "late",
    "early",
];
const PRICE_QUESTION: &[&str] = &[
    "cost",
    "costs",
    "price",
    "prices",
    "pricing",
    "fee",
    "fees",
    "charge",
    "charges",
    "pay",
    "expensive",
    "cheap",
    "much",
];
const PLACE_QUESTION: &[&str] = &[
    "where",
    "address",
    "located",
    "location",
    "directions",
    "parking",
    "park",
    "find",
];
const HOURS_FACT: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekdays",
    "weekends",
    "weekend",
    "daily",
    "am",
    "pm",
    "noon",
    "midday",
    "open",
    "closed",
];
const PRICE_FACT: &[&str] = &[
    "dollar",
    "dollars",
    "cents",
    "price",
    "prices",
    "cost",
    "costs",
    "fee",
    "fees",
    "free",
    "charge",
    "rebate",
    "payment",
    "cash",
    "card",
    "cards",
    "eftpos",
    "insurance",
    "fund",
    "medicare",
];
const PLACE_FACT: &[&str] = &[
    "street", "st", "road", "rd", "avenue", "ave", "lane", "drive", "parade", "highway", "level",
    "suite", "floor", "located", "address", "corner", "opposite", "parking", "car", "building",
    "shop",
];

/// Sentences that tell the agent how to behave, not what is true.
const INSTRUCTION_STARTS: &[&str] = &[
    "you are",
    "youre",
    "you will",
    "youll",
    "you should",
    "you must",
    "you work",
    "you answer",
    "you help",
    "you speak",
    "you can",
    "you may",
    "your role",
    "your job",
    "your name",
    "your task",
    "your goal",
    "act as",
    "always",
    "never",
    "do not",
    "dont",
    "be",
    "please",
    "answer",
    "help",
    "keep",
    "speak",
    "use",
    "avoid",
    "make sure",
    "ensure",
    "remember",
    "greet",
    "ask",
    "offer",
    "try",
    "if",
    "when a",
    "when the",
    "when callers",
    "when someone",
];

/// "Tell callers that we open at 8" → "We open at 8".
const RELAYS: &[&str] = &[
    "tell callers that",
    "tell callers",
    "tell the caller that",
    "tell the caller",
    "let callers know that",
    "let callers know",
    "let the caller know that",
    "let the caller know",
    "inform callers that",
    "remind callers that",
    "note that",
];

/// Abbreviations whose full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "st", "rd", "ave", "no", "vs", "etc", "eg", "ie", "approx", "mt",
];

impl Facts {
    /// Facts from an agent's system prompt, and the business name its role sentence gives
    /// ("You are the receptionist for Harbour Dental.").
    pub fn from_text(text: &str) -> Self {
        Self::build(text, true)
    }

    /// Facts from knowledge passages: each passage's text under its innermost heading.
    pub fn from_passages(passages: &[KnowledgePassage]) -> Self {
        let mut text = String::new();
        for passage in passages {
            if let Some(heading) = passage
                .heading
                .as_deref()
                .and_then(|h| h.rsplit(" > ").next())
            {
                text.push_str(heading.trim_end_matches(':'));
                text.push_str(":\n");
            }
            for line in passage.text.lines().filter(|l| !l.trim().is_empty()) {
                text.push_str("- ");
                text.push_str(line.trim());
                text.push('\n');
            }
            text.push('\n');
        }
        Self::build(&text, false)
    }

    fn build(text: &str, from_prompt: bool) -> Self {
        let mut facts = Vec::new();
        let mut business = None;
        for sentence in sentences(text) {
            if sentence.ends_with('?') {
                continue;
            }
            let words = text::words(&sentence);
            let norms: Vec<&str> = words.iter().map(|w| w.norm.as_str()).collect();
            let about_callers = norms.iter().any(|w| matches!(*w, "caller" | "callers"));
            if from_prompt
                && (starts_with_any(&norms, INSTRUCTION_STARTS)
                    || (about_callers && !starts_with_any(&norms, RELAYS)))
            {
                if business.is_none() && starts_with_any(&norms, &["you", "youre", "your"]) {
                    business = business_name(&sentence);
                }
                continue;
            }
            let sentence = match RELAYS.iter().find(|r| starts_with_any(&norms, &[r])) {
                Some(relay) => {
                    let skip = relay.split(' ').count();
                    capitalise(
                        &sentence
                            .split_whitespace()
                            .skip(skip)
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                }
                None => sentence,
            };
            let words = text::words(&sentence);
            // Fewer than three words is a heading or a fragment, not an answer.
            if words.len() < 3 {
                continue;
            }
            facts.push(Fact {
                topics: fact_topics(&sentence, &words),
                stems: content_stems(&words),
                words: content_words(&words),
                spoken: sentence,
            });
        }
        Self { facts, business }
    }

    /// The business the agent answers for, if the prompt names it.
    pub fn business(&self) -> Option<&str> {
        self.business.as_deref()
    }

    /// `words` with each long word the facts do not have replaced by a word they have one
    /// letter away ("parting" → "parking"), so that its topic counts too.
    fn sounds_alike_corrected(&self, words: &[Word]) -> Vec<Word> {
        words
            .iter()
            .map(|word| {
                let known = self.facts.iter().any(|f| f.words.contains(&word.norm));
                let alike = (!known && !is_stop_word(&word.norm))
                    .then(|| {
                        self.facts
                            .iter()
                            .flat_map(|f| &f.words)
                            .find(|w| sounds_alike(&word.norm, w))
                    })
                    .flatten();
                match alike {
                    Some(w) => Word {
                        norm: w.clone(),
                        raw: w.clone(),
                        pause_after: word.pause_after,
                    },
                    None => word.clone(),
                }
            })
            .collect()
    }

    /// `question` with the long words the facts do not have but nearly do put right.
    pub fn corrected(&self, question: &Utterance) -> Utterance {
        let words = self.sounds_alike_corrected(&question.words);
        if words == question.words {
            return question.clone();
        }
        let text = words
            .iter()
            .map(|w| {
                let mut raw = w.raw.clone();
                if w.pause_after {
                    raw.push(',');
                }
                raw
            })
            .collect::<Vec<_>>()
            .join(" ");
        Utterance { text, words }
    }

    /// The facts' sentences, as they would be spoken.
    pub fn sentences(&self) -> impl Iterator<Item = &str> {
        self.facts.iter().map(|f| f.spoken.as_str())
    }

    /// The sentence that answers `question`, if one covers enough of it. A long word one
    /// letter away from a fact's word counts as that word ("parting" for "parking"): speech to
    /// text mishears that way.
    pub fn answer(&self, question: &Utterance) -> Option<String> {
        let heard = self.sounds_alike_corrected(&question.words);
        let asked = question_topics(&heard);
        let wanted: Vec<String> = content_stems(&heard);
        let wanted_words = content_words(&heard);
        let mut best: Option<(usize, bool, &Fact)> = None;
        for fact in &self.facts {
            let covered = wanted
                .iter()
                .zip(&wanted_words)
                .filter(|(stem, word)| {
                    fact.stems.contains(stem)
                        || topic_of_word(stem).shared(fact.topics) > 0
                        || fact.words.iter().any(|w| sounds_alike(word, w))
                })
                .count();
            let shared = asked.shared(fact.topics);
            let enough = if wanted.is_empty() {
                shared > 0
            } else {
                covered > 0 && covered * 2 >= wanted.len()
            };
            if !enough {
                continue;
            }
            let score = covered + shared;
            let factual = fact.topics.any();
            if best.is_none_or(|(s, f, _)| (score, factual) > (s, f)) {
                best = Some((score, factual, fact));
            }
        }
        best.map(|(_, _, fact)| fact.spoken.clone())
    }
}

/// What `fact` is about in terms the caller used: its content words that the question has
/// (or nearly has: "primate" for "private"), in the fact's order, from the first to the last
/// one found ("private health insurance"); else the kind of fact the question asks about
/// ("our opening hours"). `None` when they share nothing.
pub(crate) fn about(fact: &str, question: &Utterance) -> Option<String> {
    let fact_words = text::words(fact);
    let asked = content_words(&question.words);
    let asked_stems = content_stems(&question.words);
    let matched: Vec<usize> = fact_words
        .iter()
        .enumerate()
        .filter(|(_, w)| !is_stop_word(&w.norm) && w.norm.chars().all(char::is_alphabetic))
        .filter(|(_, w)| {
            asked_stems.contains(&stem(&w.norm)) || asked.iter().any(|a| sounds_alike(a, &w.norm))
        })
        .map(|(i, _)| i)
        .collect();
    if let (Some(&first), Some(&last)) = (matched.first(), matched.last())
        && last - first < 5
    {
        let phrase: Vec<String> = fact_words[first..=last]
            .iter()
            .map(|w| w.norm.clone())
            .collect();
        return Some(phrase.join(" "));
    }
    let asked = question_topics(&question.words);
    let topics = fact_topics(fact, &fact_words);
    if asked.hours && topics.hours {
        Some("our opening hours".into())
    } else if asked.price && topics.price {
        Some("prices".into())
    } else if asked.place && topics.place {
        Some("where to find us".into())
    } else {
        None
    }
}

fn starts_with_any(norms: &[&str], phrases: &[&str]) -> bool {
    phrases.iter().any(|p| {
        let p: Vec<&str> = p.split(' ').collect();
        norms.starts_with(&p)
    })
}

/// Content words as they are, in the same order as [`content_stems`] (one per stem).
fn content_words(words: &[Word]) -> Vec<String> {
    let mut stems: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for word in words {
        if is_stop_word(&word.norm) || word.norm.is_empty() {
            continue;
        }
        let stem = stem(&word.norm);
        if !stems.contains(&stem) {
            stems.push(stem);
            out.push(word.norm.clone());
        }
    }
    out
}

/// Two words of six letters or more, one substitution, insertion or deletion apart.
fn sounds_alike(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().min(b.len()) < 6 || a.len().abs_diff(b.len()) > 1 || a == b {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    prefix + suffix >= a.len().max(b.len()) - 1
}

/// Content words, stemmed and without repeats.
fn content_stems(words: &[Word]) -> Vec<String> {
    let mut stems: Vec<String> = Vec::new();
    for word in words {
        if is_stop_word(&word.norm) || word.norm.is_empty() {
            continue;
        }
        let stem = stem(&word.norm);
        if !stems.contains(&stem) {
            stems.push(stem);
        }
    }
    stems
}

/// The topic a (stemmed) question word asks about: "hour" → hours.
fn topic_of_word(stemmed: &str) -> Topics {
    let is = |list: &[&str]| list.iter().any(|w| stem(w) == stemmed);
    Topics {
        hours: is(HOURS_QUESTION) || is(WHEN_WORDS),
        price: is(PRICE_QUESTION),
        place: is(PLACE_QUESTION),
    }
}

fn question_topics(words: &[Word]) -> Topics {
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.norm.as_str()));
    Topics {
        hours: has(HOURS_QUESTION),
        price: has(PRICE_QUESTION),
        place: has(PLACE_QUESTION),
    }
}

fn fact_topics(sentence: &str, words: &[Word]) -> Topics {
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.norm.as_str()));
    let clock = words
        .iter()
        .any(|w| w.norm.contains(':') && w.norm.starts_with(|c: char| c.is_ascii_digit()));
    Topics {
        hours: has(HOURS_FACT) || clock,
        price: has(PRICE_FACT) || sentence.contains(['$', '£', '€']),
        place: has(PLACE_FACT),
    }
}

/// "You are the receptionist for Harbour Dental." → "Harbour Dental": the capitalised words
/// after the first "for" or "at".
fn business_name(sentence: &str) -> Option<String> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| matches!(w.to_lowercase().as_str(), "for" | "at"))?;
    let mut name: Vec<&str> = Vec::new();
    for word in &words[at + 1..] {
        let bare = word.trim_end_matches([',', '.', ';', ':', '!', '?']);
        let capitalised = bare.starts_with(|c: char| c.is_uppercase() || c.is_ascii_digit());
        if !(capitalised || matches!(bare, "&" | "and" | "of")) || bare.is_empty() {
            break;
        }
        name.push(bare);
        if bare.len() != word.len() {
            break;
        }
    }
    while name
        .last()
        .is_some_and(|w| matches!(*w, "&" | "and" | "of"))
    {
        name.pop();
    }
    (!name.is_empty()).then(|| name.join(" "))
}

/// Sentences of `text`, cleaned for speech; list items carry their heading.
fn sentences(text: &str) -> Vec<String> {
    let text = text::fold_meridiem_dots(text);
    let mut out = Vec::new();
    let mut heading: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let bullet = trimmed.starts_with(['-', '*', '•']) || numbered(trimmed);
        let body = spoken(trimmed.trim_start_matches(['-', '*', '•', '#', '>', ' ']));
        let body = if numbered(trimmed) {
            body.split_once(['.', ')'])
                .map_or(body.clone(), |(_, rest)| rest.trim().to_string())
        } else {
            body
        };
        if trimmed.starts_with('#') || body.ends_with(':') {
            heading = Some(body.trim_end_matches(':').trim().to_string());
            continue;
        }
        let body = match (&heading, bullet) {
            // "Pizza:" / "- Margherita pizza …" already says what it is about.
            (Some(heading), true) if body.to_lowercase().contains(&heading.to_lowercase()) => body,
            (Some(heading), true) => format!("{heading}: {body}"),
            _ => {
                heading = None;
                body
            }
        };
        for sentence in split_sentences(&body) {
            let mut sentence = sentence.trim().to_string();
            if sentence.is_empty() {
                continue;
            }
            if !sentence.ends_with(['.', '!', '?']) {
                sentence = priced(&sentence);
                sentence.push('.');
            }
            out.push(capitalise(&sentence));
        }
    }
    out
}

/// "Margherita pizza, basil $18.50" → "Margherita pizza, basil is $18.50": a line that ends in
/// a price with no verb or preposition before it.
fn priced(line: &str) -> String {
    let Some((before, price)) = line.trim_end().rsplit_once(' ') else {
        return line.to_owned();
    };
    let is_price = price.starts_with(['$', '£', '€'])
        && price[1..].starts_with(|c: char| c.is_ascii_digit())
        && price[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',');
    let before = before
        .trim_end()
        .trim_end_matches([',', '-', ':', '–', '—'])
        .trim_end();
    let last = before.rsplit(' ').next().unwrap_or_default().to_lowercase();
    const LINKS: &[&str] = &[
        "is", "are", "was", "costs", "cost", "from", "at", "only", "just", "of", "for", "to",
        "and", "or", "be", "by", "under", "over", "about", "around", "plus", "than",
    ];
    if !is_price || before.is_empty() || LINKS.contains(&last.as_str()) {
        return line.to_owned();
    }
    format!("{before} is {price}")
}

/// "1. Bring your card" / "2) …".
fn numbered(line: &str) -> bool {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(['.', ')'])
}

/// Markdown and dashes out, so that the synthesiser reads words.
fn spoken(text: &str) -> String {
    let text = text
        .replace(['*', '_', '`', '#'], "")
        .replace('–', " to ")
        .replace('—', ", ")
        .replace(" & ", " and ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits at `.`/`!`/`?` followed by white space and a capital or a digit, except after an
/// abbreviation ("Dr. Lee", "12 Smith St. Sydney" stays whole only for the listed ones).
fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        if !matches!(chars[i], '.' | '!' | '?') {
            continue;
        }
        let Some(next) = chars.get(i + 1) else {
            break;
        };
        if !next.is_whitespace() {
            continue;
        }
        let starts_new = chars[i + 1..]
            .iter()
            .find(|c| !c.is_whitespace())
            .is_none_or(|c| c.is_uppercase() || c.is_ascii_digit());
        let before: String = chars[start..i]
            .iter()
            .rev()
            .take_while(|c| c.is_alphabetic())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
            .to_lowercase();
        if chars[i] == '.' && (!starts_new || ABBREVIATIONS.contains(&before.as_str())) {
            continue;
        }
        out.push(chars[start..=i].iter().collect());
        start = i + 1;
    }
    if start < chars.len() {
        out.push(chars[start..].iter().collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "You are the receptionist for Harbour Dental. Be warm and brief. \
        We are open Monday to Friday from 8 a.m. to 5 p.m. and Saturdays 9 am to 1 pm. \
        A check-up and clean costs $180. Dr. Lee specialises in children's dentistry. \
        We are at 12 Harbour Street, Sydney, with parking behind the building.\n\
        If a caller has severe pain, offer the earliest appointment.\n\
        Tell callers that we bulk bill pensioners.\n\
        Payment options:\n\
        - Cash, card or health fund at the desk\n";

    fn answer(question: &str) -> Option<String> {
        Facts::from_text(PROMPT).answer(&Utterance::new(question))
    }

    #[test]
    fn prompt_is_split_into_facts() {
        let facts = Facts::from_text(PROMPT);
        assert_eq!(facts.business(), Some("Harbour Dental"));
        let spoken: Vec<&str> = facts.facts.iter().map(|f| f.spoken.as_str()).collect();
        assert_eq!(
            spoken,
            [
                "We are open Monday to Friday from 8 am to 5 pm and Saturdays 9 am to 1 pm.",
                "A check-up and clean costs $180.",
                "Dr. Lee specialises in children's dentistry.",
                "We are at 12 Harbour Street, Sydney, with parking behind the building.",
                "We bulk bill pensioners.",
                "Payment options: Cash, card or health fund at the desk.",
            ]
        );
    }

    #[test]
    fn questions_find_their_facts() {
        let open =
            Some("We are open Monday to Friday from 8 am to 5 pm and Saturdays 9 am to 1 pm.");
        let cases: &[(&str, Option<&str>)] = &[
            ("What are your opening hours?", open),
            ("what time do you close", open),
            ("are you open on saturday", open),
            (
                "How much is a check up",
                Some("A check-up and clean costs $180."),
            ),
            (
                "where are you located",
                Some("We are at 12 Harbour Street, Sydney, with parking behind the building."),
            ),
            (
                "is there parking",
                Some("We are at 12 Harbour Street, Sydney, with parking behind the building."),
            ),
            ("do you bulk bill", Some("We bulk bill pensioners.")),
            (
                "can I pay by card",
                Some("Payment options: Cash, card or health fund at the desk."),
            ),
            (
                "who looks after children",
                Some("Dr. Lee specialises in children's dentistry."),
            ),
            ("what's the weather like", None),
            ("do you sell pizza", None),
            ("what does severe pain mean", None),
        ];
        for (question, expected) in cases {
            assert_eq!(answer(question).as_deref(), *expected, "{question:?}");
        }
    }

    #[test]
    fn business_names() {
        assert_eq!(
            business_name("You answer calls for Smith & Co, a law firm."),
            Some("Smith & Co".into())
        );
        assert_eq!(
            business_name("You work at Bright Smiles Dental in Newtown."),
            Some("Bright Smiles Dental".into())
        );
        assert_eq!(business_name("You are friendly."), None);
    }
}
