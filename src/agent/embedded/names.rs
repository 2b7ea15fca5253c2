//! The caller's name and phone number in what they say.
//!
//! A name is taken when the caller introduces themselves ("my name is X", "name's X", "I'm X",
//! "I am X", "call me X", "under the name X", "it's under X"), at the start of the utterance or
//! of a clause ("Hi, this is X", "Sure. It's X", "no, it's X"), or after "for" when the
//! transcript capitalised it ("a booking for Sarah Jones"); or, when the last question asked
//! for the name, from the whole answer once fillers ("yes", "sure", "it's", …) are dropped. A
//! name is one to four words, stops at a pause, a number or a function word, and is title-cased
//! unless the transcript already mixed case ("McDonald"). "I'm looking …", "I'm calling …" and
//! the like are not names: a word ending in "-ing"/"-ed" or on [`NOT_NAMES`] after "I'm" is
//! refused.
//!
//! A spelled name ("Connor, that's C O N N O R", "B-R-O-O-K-S", "double O") is what the caller
//! meant even when the word before it was misheard: [`spelled`] reads the letters and
//! [`with_spelling`] puts them in place of the name word they spell.
//!
//! Limit: names that are also months, weekdays or function words ("May", "April", "Will") are
//! not recognised.

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
    "insurance",
    "under",
    "review",
    "cover",
    "way",
    "there",
    "then",
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
    "under",
    "i am",
    "im",
];

/// Introductions that only count at the start of an utterance or of a clause ("this is urgent"
/// mid-sentence is not a name).
const OPENING_INTRODUCTIONS: &[&str] = &["this is", "its", "it is"];

/// Words between a name and its spelling ("Connor, that's C O N N O R", "spelled B R …").
const SPELLING_LEADS: &[&str] = &[
    "thats", "that", "is", "its", "it", "spelled", "spelt", "spell", "with", "as", "in", "and",
];

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
    "no",
    "nope",
    "sure",
    "ok",
    "okay",
    "sorry",
    "know",
    "actually",
    "right",
    "well",
    "so",
    "and",
    "thanks",
    "thank",
    "you",
];

/// A name the caller introduced themselves with, anywhere in the utterance.
pub(crate) fn introduced(u: &Utterance) -> Option<String> {
    let words = without_spelling(&u.words);
    let norms: Vec<&str> = words.iter().map(|w| w.norm.as_str()).collect();
    // Opening introductions: at the start of the utterance or of a clause, after greetings.
    let clause_starts = (0..norms.len()).filter(|&i| i == 0 || words[i - 1].pause_after);
    for clause in clause_starts {
        let start = clause
            + norms[clause..]
                .iter()
                .take_while(|w| OPENERS.contains(w))
                .count();
        for intro in OPENING_INTRODUCTIONS {
            let intro: Vec<&str> = intro.split(' ').collect();
            if norms[start..].starts_with(&intro)
                && let Some(name) = take_name(&words[start + intro.len()..], false)
            {
                return Some(name);
            }
        }
    }
    // "Under" names only a booking ("it's under Sarah", "the booking is under pre-rayman"),
    // not "is that under warranty?".
    let about_booking = norms.iter().any(|w| {
        matches!(
            *w,
            "booking" | "book" | "booked" | "appointment" | "reservation" | "name" | "its"
        )
    });
    for i in 0..norms.len() {
        for intro in INTRODUCTIONS {
            let intro: Vec<&str> = intro.split(' ').collect();
            if *intro == ["under"]
                && !about_booking
                && !words
                    .get(i + 1)
                    .is_some_and(|w| w.raw.starts_with(char::is_uppercase))
            {
                continue;
            }
            if norms[i..].starts_with(&intro) {
                // "I'm looking for…" is not a name; "my name is" always introduces one.
                let strict = matches!(intro.as_slice(), ["im"] | ["i", "am"]);
                if let Some(name) = take_name(&words[i + intro.len()..], strict) {
                    return Some(name);
                }
                break;
            }
        }
    }
    // "A booking for Sarah Jones": only a word the transcript capitalised mid-sentence, since
    // "for" more often leads to a day, a time or a reason.
    for i in 1..norms.len() {
        if norms[i - 1] == "for"
            && i >= 2
            && words[i].raw.starts_with(|c: char| c.is_uppercase())
            && let Some(name) = take_name(&words[i..], true)
        {
            return Some(name);
        }
    }
    None
}

/// The letters of a spelled word ("C O N N O R", "C-O-N-N-O-R", "c. o. n. n. o. r.", "B R
/// double O K S"), title-cased; the longest run of at least four letters (three are as often
/// a misheard word's pieces: "be a rover, O K S").
pub(crate) fn spelled(u: &Utterance) -> Option<String> {
    spelled_run(&u.words).map(|(_, _, word)| word)
}

/// Where the spelling starts and ends in `words`, and the word it spells.
fn spelled_run(words: &[Word]) -> Option<(usize, usize, String)> {
    let letter = |w: &Word| {
        let mut chars = w.norm.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        }
    };
    let mut best: Option<(usize, usize, String)> = None;
    let mut i = 0;
    while i < words.len() {
        let start = i;
        let mut letters = String::new();
        while i < words.len() {
            if let Some(c) = letter(&words[i]) {
                letters.push(c);
                i += 1;
            } else if words[i].norm == "double"
                && let Some(c) = words.get(i + 1).and_then(letter)
            {
                letters.push(c);
                letters.push(c);
                i += 2;
            } else {
                break;
            }
        }
        if letters.len() >= 4 && best.as_ref().is_none_or(|b| letters.len() > b.2.len()) {
            best = Some((start, i, title_case(&letters)));
        }
        if i == start {
            i += 1;
        }
    }
    best
}

/// `words` up to where a spelling and the words leading into it ("that's", "spelled") begin.
fn without_spelling(words: &[Word]) -> &[Word] {
    let Some((mut start, _, _)) = spelled_run(words) else {
        return words;
    };
    while start > 0 && SPELLING_LEADS.contains(&words[start - 1].norm.as_str()) {
        start -= 1;
    }
    &words[..start]
}

/// `name` with the word that `spelling` spells replaced by it: the most similar word (at most
/// a third of its letters different), else the last word of a name of two or more; `name` is
/// the spelling itself when there is none.
pub(crate) fn with_spelling(name: Option<&str>, spelling: &str) -> String {
    let Some(name) = name else {
        return spelling.to_string();
    };
    let mut parts: Vec<String> = name.split_whitespace().map(str::to_string).collect();
    let target = spelling.to_lowercase();
    let closest = parts
        .iter()
        .enumerate()
        .map(|(i, part)| (i, edit_distance(&part.to_lowercase(), &target)))
        .min_by_key(|&(_, d)| d);
    match closest {
        Some((i, distance)) if 3 * distance <= target.len().max(parts[i].len()) => {
            parts[i] = spelling.to_string();
        }
        Some(_) if parts.len() >= 2 => {
            let last = parts.len() - 1;
            parts[last] = spelling.to_string();
        }
        Some(_) if parts.len() == 1 => parts.push(spelling.to_string()),
        _ => return spelling.to_string(),
    }
    parts.join(" ")
}

/// Letter edit distance (Levenshtein).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(ca != cb))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The whole answer as a name, after the last question asked for it.
pub(crate) fn answered(u: &Utterance) -> Option<String> {
    let mut words: &[Word] = without_spelling(&u.words);
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
            // After "under", "it's", "this is" and "for", as speech to text writes them.
            ("The booking is under Priya Raman.", Some("Priya Raman")),
            ("it's under sarah connor", Some("Sarah Connor")),
            ("The booking is under pre-rayman.", Some("Pre Rayman")),
            ("Sure. It's Daniel Brooks.", Some("Daniel Brooks")),
            ("No, it's Sarah.", Some("Sarah")),
            (
                "Okay, this is Marcus Webb calling about a booking",
                Some("Marcus Webb"),
            ),
            (
                "I'd like a booking for Sarah Jones on Tuesday",
                Some("Sarah Jones"),
            ),
            ("Can I book for Tuesday at 3", None),
            ("I'd like to book for my son", None),
            ("book me in for a cleaning", None),
            ("For Tuesday please", None),
            ("is that covered under insurance", None),
            ("is that under warranty?", None),
            ("Put it under Sarah please", Some("Sarah")),
            ("I need a checkup, it's been a while", None),
            // The spelling is not part of the name said before it.
            (
                "My name is Sarah Connor, that's C-O-N-N-O-R.",
                Some("Sarah Connor"),
            ),
            (
                "this is Daniel Brooks that's B R O O K S",
                Some("Daniel Brooks"),
            ),
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
            ("Daniel Brooks, that's B R O O K S.", Some("Daniel Brooks")),
            ("under Priya Raman please", Some("Priya Raman")),
        ];
        for (said, name) in cases {
            assert_eq!(answer(said).as_deref(), *name, "{said:?}");
        }
    }

    #[test]
    fn spellings_and_what_they_correct() {
        let spelling = |text: &str| spelled(&Utterance::new(text));
        let cases: &[(&str, Option<&str>)] = &[
            ("that's C-O-N-N-O-R", Some("Connor")),
            (
                "My name is Sarah Connor, that's C. O. N. N. O. R.",
                Some("Connor"),
            ),
            ("B R double O K S", Some("Brooks")),
            ("b r o o k s", Some("Brooks")),
            ("Plan A or B", None),
            ("Daniel Brooks, be a rover, O K. S..", None),
            ("that's O'Brien", None),
        ];
        for (said, word) in cases {
            assert_eq!(spelling(said).as_deref(), *word, "{said:?}");
        }
        // A misheard surname gives way to its spelling; a first name it does not resemble is
        // kept.
        let cases: &[(Option<&str>, &str, &str)] = &[
            (Some("Sarah Conner"), "Connor", "Sarah Connor"),
            (Some("Daniel Brooke"), "Brooks", "Daniel Brooks"),
            (Some("Sir Econer"), "Connor", "Sir Connor"),
            (Some("Sarah Lakana"), "Connor", "Sarah Connor"),
            (Some("Sarah"), "Connor", "Sarah Connor"),
            (Some("Conner"), "Connor", "Connor"),
            (None, "Brooks", "Brooks"),
        ];
        for (heard, spelling, name) in cases {
            assert_eq!(
                with_spelling(*heard, spelling),
                *name,
                "{heard:?} {spelling}"
            );
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
