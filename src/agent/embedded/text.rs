//! Word-level normalisation of speech-to-text output. Transcripts vary in case and punctuation
//! ("3 p.m.", "3pm", "That's all." or "thats all"), so everything downstream matches on
//! [`Word::norm`]: lower case, apostrophes dropped, "a.m."/"p.m." folded to "am"/"pm", and digits
//! split from a trailing unit ("3pm" → "3" "pm") unless it is an ordinal suffix ("14th"). Names
//! are taken from [`Word::raw`], which keeps the caller's spelling.

/// One word of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// Lower case, no punctuation except `:`/`-`/`.` between digits ("15:30", "2026-12-14").
    pub norm: String,
    /// As transcribed, apostrophes kept, other punctuation dropped.
    pub raw: String,
    /// A clause mark (`, . ; : ! ?`) followed the word: a name ends there.
    pub pause_after: bool,
}

/// Splits `text` into [`Word`]s.
pub(crate) fn words(text: &str) -> Vec<Word> {
    let text = fold_meridiem_dots(text);
    let mut out: Vec<Word> = Vec::new();
    for chunk in text.split_whitespace() {
        let chars: Vec<char> = chunk
            .chars()
            .map(|c| {
                if matches!(c, '’' | '‘' | '`') {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let between_digits = i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if c.is_alphanumeric() || c == '\'' || (matches!(c, ':' | '-' | '.') && between_digits)
            {
                current.push(c);
                continue;
            }
            let pause = matches!(c, ',' | '.' | ';' | ':' | '!' | '?');
            if !current.is_empty() {
                push_segment(&mut out, &std::mem::take(&mut current));
            }
            if pause && let Some(last) = out.last_mut() {
                last.pause_after = true;
            }
        }
        if !current.is_empty() {
            push_segment(&mut out, &current);
        }
    }
    out
}

/// Adds one run of word characters, splitting "3pm" into "3" "pm" (but not "14th").
fn push_segment(out: &mut Vec<Word>, segment: &str) {
    let raw = segment.trim_matches('\'');
    if raw.is_empty() {
        return;
    }
    let norm: String = raw
        .chars()
        .filter(|&c| c != '\'')
        .flat_map(char::to_lowercase)
        .collect();
    if norm.starts_with(|c: char| c.is_ascii_digit())
        && let Some(at) = norm.find(|c: char| c.is_alphabetic())
    {
        let (number, unit) = norm.split_at(at);
        if !matches!(unit, "st" | "nd" | "rd" | "th")
            && !unit.contains(|c: char| c.is_ascii_digit())
        {
            for part in [number, unit] {
                out.push(Word {
                    norm: part.to_string(),
                    raw: part.to_string(),
                    pause_after: false,
                });
            }
            return;
        }
    }
    out.push(Word {
        norm,
        raw: raw.to_string(),
        pause_after: false,
    });
}

/// "a.m." / "P.M." → "am" / "pm", so that the dots read neither as sentence ends nor as two
/// words.
pub(crate) fn fold_meridiem_dots(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_word = i == 0 || !chars[i - 1].is_alphabetic();
        // "p.m." and, as speech to text also writes it, "p. M.".
        let spaces = chars[(i + 2).min(chars.len())..]
            .iter()
            .take_while(|c| **c == ' ')
            .count()
            .min(1);
        let m = i + 2 + spaces;
        if starts_word
            && matches!(c, 'a' | 'A' | 'p' | 'P')
            && chars.get(i + 1) == Some(&'.')
            && chars.get(m).is_some_and(|m| matches!(m, 'm' | 'M'))
            && !chars.get(m + 1).is_some_and(|n| n.is_alphabetic())
        {
            out.push(c.to_ascii_lowercase());
            out.push('m');
            i = m + 1;
            if chars.get(i) == Some(&'.') {
                i += 1;
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// An utterance split into words, with the phrase tests the intents need.
#[derive(Debug, Clone)]
pub(crate) struct Utterance {
    pub text: String,
    pub words: Vec<Word>,
}

/// Words that carry nothing at the start of an answer ("um, yes, …").
const FILLERS: &[&str] = &[
    "um", "umm", "uh", "uhh", "er", "erm", "ah", "oh", "hmm", "mm", "well", "so",
];

impl Utterance {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.trim().to_string(),
            words: words(text),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The normalised words, fillers at the start skipped.
    pub fn norms(&self) -> Vec<&str> {
        let all: Vec<&str> = self.words.iter().map(|w| w.norm.as_str()).collect();
        let skip = all.iter().take_while(|w| FILLERS.contains(w)).count();
        all[skip..].to_vec()
    }

    /// `phrase` (space-separated normalised words) occurs anywhere.
    pub fn has(&self, phrase: &str) -> bool {
        let norms = self.norms();
        let phrase: Vec<&str> = phrase.split(' ').collect();
        norms.windows(phrase.len()).any(|w| w == phrase.as_slice())
    }

    pub fn has_any(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| self.has(p))
    }

    /// The utterance begins (after fillers) with `phrase`.
    pub fn starts_with(&self, phrase: &str) -> bool {
        let norms = self.norms();
        let phrase: Vec<&str> = phrase.split(' ').collect();
        norms.starts_with(&phrase)
    }

    pub fn starts_with_any(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| self.starts_with(p))
    }

    /// The whole utterance (fillers and a closing "please"/"thanks" aside) is one of `phrases`.
    pub fn is_only(&self, phrases: &[&str]) -> bool {
        let mut norms = self.norms();
        while let Some(last) = norms.last() {
            if matches!(*last, "please" | "thanks" | "then" | "again") {
                norms.pop();
            } else if norms.ends_with(&["thank", "you"]) {
                norms.truncate(norms.len() - 2);
            } else {
                break;
            }
        }
        let joined = norms.join(" ");
        phrases.contains(&joined.as_str())
    }
}

/// The normalised words of `needle` occur, in order and adjacent, in `haystack`: used to tell
/// whether the caller heard a question before cutting it short.
pub(crate) fn contains_words(haystack: &str, needle: &str) -> bool {
    let hay: Vec<String> = words(haystack).into_iter().map(|w| w.norm).collect();
    let needle: Vec<String> = words(needle).into_iter().map(|w| w.norm).collect();
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_slice())
}

/// Function words: no help telling one fact from another, and never part of a name.
pub(crate) const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anything",
    "are",
    "as",
    "at",
    "be",
    "been",
    "being",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "dont",
    "for",
    "from",
    "get",
    "got",
    "had",
    "has",
    "have",
    "hello",
    "hey",
    "hi",
    "how",
    "hows",
    "i",
    "id",
    "if",
    "ill",
    "im",
    "in",
    "into",
    "is",
    "it",
    "its",
    "ive",
    "just",
    "know",
    "let",
    "like",
    "me",
    "mine",
    "much",
    "my",
    "need",
    "no",
    "not",
    "of",
    "off",
    "ok",
    "okay",
    "on",
    "or",
    "our",
    "ours",
    "please",
    "so",
    "some",
    "tell",
    "than",
    "thank",
    "thanks",
    "that",
    "thats",
    "the",
    "their",
    "them",
    "then",
    "there",
    "theres",
    "these",
    "they",
    "this",
    "those",
    "to",
    "too",
    "uh",
    "um",
    "up",
    "us",
    "very",
    "want",
    "was",
    "we",
    "were",
    "what",
    "whats",
    "when",
    "where",
    "wheres",
    "which",
    "who",
    "whos",
    "why",
    "will",
    "with",
    "would",
    "yes",
    "you",
    "your",
    "youre",
    "yours",
    "may",
    "might",
    "should",
    "shall",
    "must",
    "wondering",
    "wonder",
    "there",
    "here",
    "one",
    "guys",
    "question",
];

pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// A crude stem, enough to match "hours"/"hour", "opening"/"open", "closed"/"closes"/"close":
/// one trailing "s" (not "ss"), then "ing"/"ed", then a final "e".
pub(crate) fn stem(word: &str) -> String {
    let mut w = word.to_string();
    if w.len() > 3 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        w.pop();
    }
    if w.len() > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
    } else if w.len() > 4 && w.ends_with("ed") {
        w.truncate(w.len() - 2);
    }
    if w.len() > 3 && w.ends_with('e') {
        w.pop();
    }
    w
}

/// Capitalises the first letter.
pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(text: &str) -> Vec<String> {
        words(text).into_iter().map(|w| w.norm).collect()
    }

    #[test]
    fn transcripts_are_normalised() {
        assert_eq!(norms("That's all, thanks!"), ["thats", "all", "thanks"]);
        assert_eq!(norms("3pm"), ["3", "pm"]);
        assert_eq!(norms("3:30PM tomorrow"), ["3:30", "pm", "tomorrow"]);
        assert_eq!(
            norms("at 3 p.m. on the 14th"),
            ["at", "3", "pm", "on", "the", "14th"]
        );
        assert_eq!(norms("10 o’clock"), ["10", "oclock"]);
        assert_eq!(norms("on 2026-12-14."), ["on", "2026-12-14"]);
        assert_eq!(norms("twenty-one"), ["twenty", "one"]);
        let w = words("My name is Sarah O'Brien, thanks");
        assert_eq!(w[4].raw, "O'Brien");
        assert!(w[4].pause_after);
        assert!(!w[3].pause_after);
    }

    #[test]
    fn phrases_and_stems() {
        let u = Utterance::new("Um, that's all thank you");
        assert!(u.starts_with("thats all"));
        assert!(u.is_only(&["thats all"]));
        assert!(u.has("all thank"));
        assert_eq!(stem("hours"), "hour");
        assert_eq!(stem("opening"), "open");
        assert_eq!(stem("closes"), stem("closed"));
        assert_eq!(stem("prices"), stem("price"));
        assert!(contains_words(
            "Just to confirm: an appointment. Shall I book it?",
            "Shall I book it?"
        ));
        assert!(!contains_words(
            "Just to confirm: an appointment",
            "Shall I book it?"
        ));
    }
}
