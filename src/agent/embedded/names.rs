//! The caller's name and phone number in what they say.
//!
//! A name is taken when the caller introduces themselves ("my name is X", "name's X", "it's
//! X", "this is X", "I'm X", "I am X", "call me X", "under the name X"), or, when the last
//! question asked for the name, from the whole answer once fillers ("yes", "sure", "it's", …)
//! are dropped. A name is one to four words, stops at a pause, a number or a function word, and
//! is title-cased unless the transcript already mixed case ("McDonald"). "I'm looking …",
//! "I'm calling …" and the like are not names: a word ending in "-ing"/"-ed" or on
//! [`NOT_NAMES`] after "I'm" is refused. Limit: names that are also months, weekdays or
//! function words ("May", "April", "Will") are not recognised.

use super::text::{Utterance, Word, is_stop_word};

/// Words that follow "I'm"/"this is" without being a name, and never start one.
const NOT_NAMES: &[&str] = &[
    "able",
    "actually",
    "afraid",
    "after",
    "afternoon",
    "ah",
    "alright",
    "am",
    "an",
    "anything",
    "appointment",
    "available",
    "away",
    "back",
    "book",
    "booking",
    "busy",
    "bye",
    "calling",
    "checkup",
    "concerned",
    "correct",
    "dentist",
    "doctor",
    "done",
    "early",
    "er",
    "erm",
    "evening",
    "everything",
    "fantastic",
    "fine",
    "free",
    "glad",
    "good",
    "goodbye",
    "great",
    "happy",
    "having",
    "here",
    "hmm",
    "home",
    "hoping",
    "ill",
    "in",
    "interested",
    "late",
    "looking",
    "midday",
    "morning",
    "new",
    "night",
    "noon",
    "not",
    "nothing",
    "oclock",
    "oh",
    "okay",
    "perfect",
    "pm",
    "pleased",
    "ready",
    "really",
    "right",
    "ringing",
    "sick",
    "something",
    "sorry",
    "still",
    "sure",
    "today",
    "tomorrow",
    "tonight",
    "trying",
    "unable",
    "urgent",
    "wanting",
    "well",
    "wondering",
    "worried",
    "wrong",
    "yeah",
    "yep",
    "yes",
    "phoning",
    "only",
    "always",
    "never",
    "same",
];

/// Words that introduce a name, longest first so "my name is" wins over "name is".
const INTRODUCTIONS: &[&str] = &[
    "under the name of",
    "under the name",
    "my name is",
    "the name is",
    "my names",
    "name is",
    "names",
    "call me",
    "i am",
    "im",
];

/// Introductions that only count at the start of an utterance ("this is urgent" mid-sentence
/// is not a name).
const OPENING_INTRODUCTIONS: &[&str] = &["this is", "its", "it is"];

/// Dropped from the front of an answer to "May I have your name?".
const NAME_FILLERS: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "sure",
    "ok",
    "okay",
    "hi",
    "hello",
    "its",
    "it",
    "is",
    "my",
    "name",
    "names",
    "the",
    "this",
    "im",
    "i",
    "am",
    "call",
    "me",
    "under",
    "of",
    "for",
    "um",
    "uh",
    "er",
    "erm",
    "oh",
    "well",
    "so",
    "course",
    "certainly",
];

/// Greetings and fillers allowed before an opening introduction ("Hi, this is Sarah").
const OPENERS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "yes",
    "yeah",
    "oh",
    "um",
    "uh",
    "er",
    "good",
    "morning",
    "afternoon",
    "evening",
    "day",
    "there",
];

/// A name the caller introduced themselves with, anywhere in the utterance.
pub(crate) fn introduced(u: &Utterance) -> Option<String> {
    let norms: Vec<&str> = u.words.iter().map(|w| w.norm.as_str()).collect();
    // Opening introductions: only after greetings at the start.
    let start = norms.iter().take_while(|w| OPENERS.contains(w)).count();
    for intro in OPENING_INTRODUCTIONS {
        let intro: Vec<&str> = intro.split(' ').collect();
        if norms[start..].starts_with(&intro)
            && let Some(name) = take_name(&u.words[start + intro.len()..], false)
        {
            return Some(name);
        }
    }
    for i in 0..norms.len() {
        for intro in INTRODUCTIONS {
            let intro: Vec<&str> = intro.split(' ').collect();
            if norms[i..].starts_with(&intro) {
                // "I'm looking for…" is not a name; "my name is" always introduces one.
                let strict = matches!(intro.as_slice(), ["im"] | ["i", "am"]);
                if let Some(name) = take_name(&u.words[i + intro.len()..], strict) {
                    return Some(name);
                }
                break;
            }
        }
    }
    None
}

/// The whole answer as a name, after the last question asked for it.
pub(crate) fn answered(u: &Utterance) -> Option<String> {
    let mut words: &[Word] = &u.words;
    while let Some(first) = words.first()
        && NAME_FILLERS.contains(&first.norm.as_str())
    {
        words = &words[1..];
    }
    while let Some(last) = words.last()
        && matches!(last.norm.as_str(), "please" | "thanks" | "thank" | "you")
    {
        words = &words[..words.len() - 1];
    }
    if words.is_empty() || words.len() > 4 || !words.iter().all(name_word) {
        return None;
    }
    take_name(words, false)
}

/// Up to four name words from the start of `words`; `strict` also refuses a first word ending
/// in "-ing"/"-ed" ("I'm calling", "I'm booked").
fn take_name(words: &[Word], strict: bool) -> Option<String> {
    let first = words.first()?;
    if strict && (first.norm.ends_with("ing") || first.norm.ends_with("ed")) {
        return None;
    }
    let mut parts = Vec::new();
    for word in words.iter().take(4) {
        if !name_word(word) {
            break;
        }
        parts.push(title_case(&word.raw));
        if word.pause_after {
            break;
        }
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Letters only, and not a function word, date word or filler.
fn name_word(word: &Word) -> bool {
    let norm = word.norm.as_str();
    norm.chars().all(char::is_alphabetic)
        && norm.chars().count() > 1
        && !is_stop_word(norm)
        && !NOT_NAMES.contains(&norm)
        && !is_date_word(norm)
}

fn is_date_word(word: &str) -> bool {
    const DATE_WORDS: &[&str] = &[
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "next",
        "week",
        "month",
        "half",
        "quarter",
        "past",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "twenty",
        "thirty",
        "forty",
        "fifty",
    ];
    DATE_WORDS.contains(&word)
}

/// "sarah" → "Sarah", "SARAH" → "Sarah"; mixed case as transcribed ("McDonald", "O'Brien").
fn title_case(raw: &str) -> String {
    let mixed = raw.chars().skip(1).any(char::is_uppercase) && raw.chars().any(char::is_lowercase);
    if mixed {
        return raw.to_string();
    }
    let mut chars = raw.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// A phone number said digit by digit ("oh four one two …", "0412 345 678", "double five"),
/// optionally with a leading "plus"; 8 to 15 digits. Tens words ("forty two") are not read.
pub(crate) fn phone_number(u: &Utterance) -> Option<String> {
    const DIGITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let mut number = String::new();
    let mut repeat = 1;
    for word in &u.words {
        let norm = word.norm.as_str();
        let digits: String = match norm {
            "plus" if number.is_empty() => {
                number.push('+');
                continue;
            }
            "double" => {
                repeat = 2;
                continue;
            }
            "triple" => {
                repeat = 3;
                continue;
            }
            "oh" | "o" | "nought" => "0".into(),
            _ if norm.chars().all(|c| c.is_ascii_digit()) => norm.into(),
            _ => match DIGITS.iter().position(|d| *d == norm) {
                Some(d) => d.to_string(),
                None => {
                    repeat = 1;
                    continue;
                }
            },
        };
        for _ in 0..repeat {
            number.push_str(&digits);
        }
        repeat = 1;
    }
    let count = number.chars().filter(char::is_ascii_digit).count();
    (8..=15).contains(&count).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro(text: &str) -> Option<String> {
        introduced(&Utterance::new(text))
    }

    fn answer(text: &str) -> Option<String> {
        answered(&Utterance::new(text))
    }

    #[test]
    fn introductions() {
        let cases: &[(&str, Option<&str>)] = &[
            ("my name is Sarah Jones", Some("Sarah Jones")),
            (
                "My name's sarah jones and I'd like to book",
                Some("Sarah Jones"),
            ),
            (
                "I'd like to book for Tuesday at three pm, my name is Sarah Jones",
                Some("Sarah Jones"),
            ),
            ("Hi, this is Tom.", Some("Tom")),
            (
                "hello its mary smith i would like to book",
                Some("Mary Smith"),
            ),
            ("I'm Sarah", Some("Sarah")),
            ("i am david mcdonald", Some("David Mcdonald")),
            ("I am David McDonald", Some("David McDonald")),
            ("call me Jo", Some("Jo")),
            ("put it under the name of O'Brien", Some("O'Brien")),
            ("I'm looking for an appointment", None),
            ("I'm calling to book", None),
            ("I'm free on Tuesday", None),
            ("this is urgent", None),
            ("I need to book, this is for my son", None),
            ("it's for Tuesday", None),
            ("my name is", None),
        ];
        for (said, name) in cases {
            assert_eq!(intro(said).as_deref(), *name, "{said:?}");
        }
    }

    #[test]
    fn answers_to_the_name_question() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Sarah Jones", Some("Sarah Jones")),
            ("yes it's sarah jones", Some("Sarah Jones")),
            ("sure, SARAH JONES please", Some("Sarah Jones")),
            ("Anne Marie de Souza", Some("Anne Marie De Souza")),
            ("Mary Anne Louise de Souza", None),
            ("I don't know", None),
            ("tomorrow", None),
            ("3 pm", None),
        ];
        for (said, name) in cases {
            assert_eq!(answer(said).as_deref(), *name, "{said:?}");
        }
    }

    #[test]
    fn phone_numbers() {
        let phone = |text: &str| phone_number(&Utterance::new(text));
        assert_eq!(phone("0412 345 678").as_deref(), Some("0412345678"));
        assert_eq!(
            phone("oh four one two three four five six seven eight").as_deref(),
            Some("0412345678")
        );
        assert_eq!(
            phone("it's 04 double one 3 triple 5 9").as_deref(),
            Some("041135559")
        );
        assert_eq!(
            phone("plus 61 412 345 678").as_deref(),
            Some("+61412345678")
        );
        assert_eq!(phone("three pm"), None);
    }
}
