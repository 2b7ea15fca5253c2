//! What the caller wants, by keyword and phrase. The tables are the documentation: a phrase
//! matches as whole normalised words ("that's all" and "thats all" are both "thats all"), at
//! the start of the utterance for answers (yes/no) and anywhere for requests.

use super::text::Utterance;

/// Ends the call (anywhere in the utterance).
const GOODBYE: &[&str] = &[
    "thats all",
    "that is all",
    "thats it",
    "that is it",
    "thats everything",
    "that is everything",
    "goodbye",
    "good bye",
    "bye",
    "no thanks",
    "no thank you",
    "nothing else",
    "all done",
    "im done",
    "have a good day",
    "have a nice day",
];

/// Asks for a person (anywhere).
const TRANSFER: &[&str] = &[
    "transfer",
    "operator",
    "real person",
    "live person",
    "human being",
    "put me through",
    "speak to a human",
    "talk to a human",
];
/// "speak"/"talk" together with one of these also asks for a person.
const TALK: &[&str] = &["speak", "talk", "chat", "speaking", "talking"];
const PERSON: &[&str] = &[
    "person", "human", "someone", "somebody", "staff", "manager", "owner", "anyone", "anybody",
];

/// Asks for a booking (anywhere).
const BOOKING: &[&str] = &[
    "book",
    "booking",
    "booked in",
    "appointment",
    "appointments",
    "appt",
    "schedule",
    "reserve",
    "reservation",
    "make a time",
    "see the dentist",
    "see a dentist",
    "see the doctor",
    "see a doctor",
    "see someone",
    "come in",
    "get in",
    "checkup",
    "check up",
];

/// About a booking the caller already has (with [`BOOKING_NOUNS`]).
const EXISTING: &[&str] = &["cancel", "reschedule", "postpone", "move my", "change my"];
const BOOKING_NOUNS: &[&str] = &["appointment", "booking", "appt"];

/// Drops the booking being made (anywhere).
const CANCEL: &[&str] = &[
    "cancel",
    "never mind",
    "nevermind",
    "forget it",
    "forget about it",
    "dont book",
    "do not book",
    "dont bother",
    "dont worry about it",
    "leave it",
    "no thanks",
    "no thank you",
];

/// Agrees (at the start). Spoken forms and how speech-to-text spells them ("yeh", "yah").
const YES: &[&str] = &[
    "yes",
    "yeah",
    "yeh",
    "yah",
    "yas",
    "yess",
    "yep",
    "yup",
    "yea",
    "ya",
    "mhm",
    "of course",
    "certainly",
    "you bet",
    "no worries",
    "no problem",
    "no dramas",
    "exactly",
    "fine",
    "good",
    "cool",
    "excellent",
    "brilliant",
    "wonderful",
    "awesome",
    "works for me",
    "go for it",
    "do it",
    "lets do it",
    "lets do that",
    "sure",
    "correct",
    "ok",
    "okay",
    "alright",
    "absolutely",
    "definitely",
    "perfect",
    "great",
    "lovely",
    "right",
    "please",
    "thats right",
    "that is right",
    "thats correct",
    "that is correct",
    "please do",
    "go ahead",
    "sounds good",
    "that sounds good",
    "book it",
    "that works",
    "thats fine",
    "that is fine",
    "all good",
];

/// Agrees anywhere in the answer, when nothing in it disagrees ("Oh that sounds good", "OK
/// then, that works for me", "now that works" as "yeah, that works" is sometimes heard).
const YES_ANYWHERE: &[&str] = &[
    "that works",
    "sound good",
    "sound is good",
    "sounds is good",
    "works for me",
    "sounds good",
    "sounds great",
    "sounds fine",
    "sounds perfect",
    "sounds lovely",
    "go ahead",
    "book it",
    "book me in",
    "please do",
    "thatd be great",
    "that would be great",
    "that would be good",
    "thats great",
    "thats perfect",
    "thats right",
    "thats correct",
    "yes please",
];

/// Any of these makes an answer not a yes ("that doesn't work", "no, that's not right").
const NEGATIONS: &[&str] = &[
    "no", "not", "nope", "nah", "dont", "doesnt", "isnt", "wont", "cant", "wrong", "wait",
    "hold on", "actually",
];

/// Disagrees (at the start).
const NO: &[&str] = &[
    "no",
    "know",
    "nope",
    "nah",
    "negative",
    "not quite",
    "not really",
    "not at all",
    "i dont think so",
    "dont think so",
    "i dont",
    "thats not",
    "that is not",
    "hold on",
    "wait",
    "thats wrong",
    "that is wrong",
    "thats not right",
    "that is not right",
    "wrong",
    "incorrect",
];

/// Marks a correction, so that a bare number is read as the new time ("actually, make it 4").
const CORRECTION: &[&str] = &[
    "actually",
    "make it",
    "change it",
    "instead",
    "how about",
    "what about",
    "rather",
    "can we do",
    "could we do",
    "can you do",
    "could you do",
    "no",
    "not",
];

/// A question: the first word (after fillers and "ok", "and", …), or a phrase anywhere.
const WH_WORDS: &[&str] = &[
    "what", "whats", "when", "where", "wheres", "how", "hows", "who", "whos", "which", "why",
];
const QUESTION_WORDS: &[&str] = &[
    "do", "does", "are", "is", "can", "could", "will", "would", "have", "has", "did", "should",
    "may", "any",
];
const QUESTION_PHRASES: &[&str] = &["tell me", "wondering", "like to know", "want to know"];
const LEAD_INS: &[&str] = &[
    "ok", "okay", "yes", "yeah", "and", "also", "so", "hi", "hello", "sorry", "just",
];

/// The caller reports a problem: the empathy slider decides what to say about it.
const PROBLEM: &[&str] = &[
    "pain",
    "painful",
    "hurts",
    "hurt",
    "hurting",
    "ache",
    "aching",
    "toothache",
    "headache",
    "problem",
    "problems",
    "emergency",
    "urgent",
    "urgently",
    "broken",
    "broke",
    "bleeding",
    "swollen",
    "swelling",
    "worried",
    "sore",
    "injured",
    "injury",
    "accident",
    "trouble",
    "chipped",
    "cracked",
    "upset",
];

/// Only thanks ("thanks", "great, thank you very much").
const THANKS_WORDS: &[&str] = &[
    "thanks", "thank", "you", "very", "much", "cheers", "ta", "so", "a", "lot", "great", "ok",
    "okay", "lovely", "perfect", "awesome",
];

/// Only a greeting ("hello", "hi there", "good morning").
const GREETING_WORDS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "there",
    "good",
    "morning",
    "afternoon",
    "evening",
    "gday",
    "day",
];

pub(crate) fn is_goodbye(u: &Utterance) -> bool {
    u.has_any(GOODBYE)
}

pub(crate) fn wants_transfer(u: &Utterance) -> bool {
    u.has_any(TRANSFER) || (u.has_any(TALK) && u.has_any(PERSON))
}

/// Asks what is free ("What times are free tomorrow?"): a booking, though a wh-question.
const FREE: &[&str] = &[
    "free",
    "available",
    "availability",
    "slot",
    "slots",
    "space",
    "spot",
    "spots",
    "fit me in",
];

pub(crate) fn asks_free(u: &Utterance) -> bool {
    u.has_any(FREE)
}

pub(crate) fn wants_booking(u: &Utterance) -> bool {
    u.has_any(BOOKING)
}

pub(crate) fn about_existing_booking(u: &Utterance) -> bool {
    u.has("reschedule") || (u.has_any(EXISTING) && u.has_any(BOOKING_NOUNS))
}

pub(crate) fn is_cancel(u: &Utterance) -> bool {
    u.has_any(CANCEL)
}

/// Agrees: starts with a yes ("yeah that works"), or says one anywhere with nothing that
/// disagrees.
pub(crate) fn is_yes(u: &Utterance) -> bool {
    if is_no(u) {
        return false;
    }
    u.starts_with_any(YES) || (u.has_any(YES_ANYWHERE) && !u.has_any(NEGATIONS)) || murmured_yes(u)
}

/// "Uh huh", "mm hmm": made of words that are otherwise fillers, so read from all the words.
fn murmured_yes(u: &Utterance) -> bool {
    let all: Vec<&str> = u.words.iter().map(|w| w.norm.as_str()).collect();
    matches!(
        all.as_slice(),
        ["uh" | "uhuh", "huh", ..] | ["mm" | "m", "hmm" | "hm", ..] | ["mmhmm" | "mhmm", ..]
    ) && !u.text.trim_end().ends_with('?')
}

/// Only "yes" (with "please" or "thanks"): the caller has more to say but has not said it.
pub(crate) fn is_bare_yes(u: &Utterance) -> bool {
    u.is_only(&[
        "yes", "yeah", "yep", "sure", "ok", "okay", "yes i do", "i do", "there is",
    ])
}

/// "No" that agrees ("no worries, go ahead").
const NO_BUT_YES: &[&str] = &["no worries", "no problem", "no problems", "no dramas"];

pub(crate) fn is_no(u: &Utterance) -> bool {
    u.starts_with_any(NO) && !u.starts_with_any(NO_BUT_YES)
}

pub(crate) fn is_correction(u: &Utterance) -> bool {
    u.has_any(CORRECTION)
}

fn first_word(u: &Utterance) -> Option<&str> {
    u.norms().into_iter().find(|w| !LEAD_INS.contains(w))
}

/// Starts with what/when/where/how/who/which/why.
pub(crate) fn is_wh_question(u: &Utterance) -> bool {
    first_word(u).is_some_and(|w| WH_WORDS.contains(&w))
}

pub(crate) fn is_question(u: &Utterance) -> bool {
    u.text.trim_end().ends_with('?')
        || is_wh_question(u)
        || first_word(u).is_some_and(|w| QUESTION_WORDS.contains(&w))
        || u.has_any(QUESTION_PHRASES)
}

pub(crate) fn reports_problem(u: &Utterance) -> bool {
    u.norms().iter().any(|w| PROBLEM.contains(w))
}

pub(crate) fn is_thanks(u: &Utterance) -> bool {
    let norms = u.norms();
    norms
        .iter()
        .any(|w| matches!(*w, "thanks" | "thank" | "cheers" | "ta"))
        && norms.iter().all(|w| THANKS_WORDS.contains(w))
}

pub(crate) fn is_greeting(u: &Utterance) -> bool {
    let norms = u.norms();
    !norms.is_empty() && norms.iter().all(|w| GREETING_WORDS.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(text: &str) -> Utterance {
        Utterance::new(text)
    }

    #[test]
    fn intents_table() {
        for said in [
            "That's all, thanks.",
            "that is all",
            "goodbye",
            "ok bye",
            "no thanks",
            "nothing else",
        ] {
            assert!(is_goodbye(&u(said)), "{said:?}");
        }
        for said in ["thanks", "what's the address"] {
            assert!(!is_goodbye(&u(said)), "{said:?}");
        }
        for said in [
            "Can I speak to a person?",
            "let me talk to someone",
            "transfer me",
            "operator",
            "I want a real person",
        ] {
            assert!(wants_transfer(&u(said)), "{said:?}");
        }
        assert!(!wants_transfer(&u("can I book for someone else")));
        for said in [
            "I'd like to make a booking",
            "can I book an appointment",
            "I need to see the dentist",
            "could I schedule a cleaning",
        ] {
            assert!(wants_booking(&u(said)), "{said:?}");
        }
        assert!(about_existing_booking(&u(
            "I need to cancel my appointment"
        )));
        assert!(!about_existing_booking(&u("book an appointment")));
        for said in [
            "Yes",
            "yeah that's right",
            "That's right.",
            "sure",
            "please do",
            "Correct",
        ] {
            assert!(is_yes(&u(said)), "{said:?}");
            assert!(!is_no(&u(said)), "{said:?}");
        }
        for said in ["no", "No, make it Wednesday", "nope", "not quite"] {
            assert!(is_no(&u(said)), "{said:?}");
            assert!(!is_yes(&u(said)), "{said:?}");
        }
    }

    /// Yes and no in their spoken forms, and as speech to text has written them (the
    /// misheard ones are from the hearing fixtures' transcripts and the Moonshine runs of the
    /// booking fixtures).
    #[test]
    fn yes_and_no_in_their_many_forms() {
        let yes = [
            "Yeah, that works.",
            "yeah that works for me",
            "Now that works for me.",
            "Sounds good.",
            "Sound is good.",
            "Oh, that sounds good.",
            "Sure.",
            "Sure thing",
            "Yes please.",
            "Yes, please do.",
            "Yep.",
            "Yup, go ahead.",
            "Yeh.",
            "Yah, that's right.",
            "Uh huh.",
            "Mm hmm.",
            "Of course.",
            "Perfect, thanks.",
            "That'd be great.",
            "That would be great, thank you.",
            "Okay then, book it.",
            "Great.",
            "Lovely.",
            "Fine by me.",
            "Works for me.",
            "No worries, go ahead.",
            "No problem.",
            "Absolutely.",
            "That's correct.",
            "Correct.",
            "Alright.",
        ];
        for said in yes {
            assert!(is_yes(&u(said)), "{said:?} should be a yes");
            assert!(!is_no(&u(said)), "{said:?} is not a no");
        }
        let no = [
            "No.",
            "Nope.",
            "Nah.",
            "Not really.",
            "Not quite.",
            "No, that's not right.",
            "That's not right.",
            "That's wrong.",
            "I don't think so.",
            "Not at all.",
            "Hold on, that's not it.",
            "Wait.",
            "Negative.",
            "No it doesn't work.",
            "No thanks.",
        ];
        for said in no {
            assert!(is_no(&u(said)), "{said:?} should be a no");
            assert!(!is_yes(&u(said)), "{said:?} is not a yes");
        }
        // Neither: a yes-word inside something that disagrees, or nothing of either.
        for said in [
            "that doesn't work for me",
            "I can't do that, sounds good otherwise",
            "what time is it",
            "Tuesday",
        ] {
            assert!(!is_yes(&u(said)), "{said:?} is not a yes");
        }
        for said in [
            "What are your opening hours?",
            "ok and where are you",
            "do you bulk bill",
            "is there parking",
        ] {
            assert!(is_question(&u(said)), "{said:?}");
        }
        assert!(!is_question(&u("I'd like to book")));
        assert!(is_thanks(&u("Great, thank you very much")));
        assert!(!is_thanks(&u("thanks, what are your hours")));
        assert!(is_greeting(&u("Hi there")));
        assert!(reports_problem(&u("I've got a really bad toothache")));
    }
}
