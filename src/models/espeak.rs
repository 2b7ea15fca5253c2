//! Phonemes from libespeak-ng (linked, not a process per clause): text to IPA for Piper.
//!
//! espeak-ng keeps global state (the selected voice, its dictionaries), so calls are serialised
//! through one lock; a clause takes well under a millisecond.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::Mutex;

use super::ModelError;

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const CHARS_UTF8: c_int = 1;
const PHONEMES_IPA: c_int = 0x02;

#[link(name = "espeak-ng")]
unsafe extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_TextToPhonemes(
        textptr: *mut *const c_void,
        textmode: c_int,
        phonememode: c_int,
    ) -> *const c_char;
}

/// The library's state: initialised or not, and the voice selected last.
struct Engine {
    initialised: bool,
    voice: Option<String>,
}

static ENGINE: Mutex<Engine> = Mutex::new(Engine {
    initialised: false,
    voice: None,
});

/// IPA for `text` in espeak voice `voice` (e.g. `en-us`). espeak drops punctuation; callers put
/// clause marks back themselves.
pub fn phonemize(voice: &str, text: &str) -> Result<String, ModelError> {
    let fail = |what: &str| ModelError::Phonemizer(what.to_owned());
    let c_text = CString::new(text).map_err(|_| fail("text contains a NUL character"))?;
    // A short critical section around the library's global state; no await happens here.
    let mut engine = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    if !engine.initialised {
        // SAFETY: called once, under the lock, with a null data path (the library's default).
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                std::ptr::null(),
                INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(fail(
                "libespeak-ng failed to initialise (is espeak-ng-data installed?)",
            ));
        }
        engine.initialised = true;
    }
    if engine.voice.as_deref() != Some(voice) {
        let c_voice =
            CString::new(voice).map_err(|_| fail("voice name contains a NUL character"))?;
        // SAFETY: the library is initialised; the name is a valid C string for the call.
        if unsafe { espeak_SetVoiceByName(c_voice.as_ptr()) } != 0 {
            return Err(ModelError::Phonemizer(format!(
                "espeak-ng has no voice {voice:?}"
            )));
        }
        engine.voice = Some(voice.to_owned());
    }
    let mut out = String::new();
    let mut cursor = c_text.as_ptr().cast::<c_void>();
    while !cursor.is_null() {
        // SAFETY: `cursor` points into `c_text`, which outlives the loop; the library advances it
        // or sets it to null at the end. The returned string is valid until the next call, and
        // is copied before that.
        let phonemes = unsafe { espeak_TextToPhonemes(&mut cursor, CHARS_UTF8, PHONEMES_IPA) };
        if phonemes.is_null() {
            break;
        }
        // SAFETY: non-null, NUL-terminated, owned by the library until the next call.
        let chunk = unsafe { CStr::from_ptr(phonemes) }.to_string_lossy();
        let chunk = chunk.trim();
        if !chunk.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(chunk);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_text_becomes_ipa() {
        assert_eq!(phonemize("en-us", "hello").unwrap(), "həlˈoʊ");
        let ipa = phonemize("en-us", "how can I help you today").unwrap();
        assert!(ipa.contains("hˈɛlp"), "{ipa}");
        assert!(phonemize("no-such-voice", "hello").is_err());
        assert!(phonemize("en-us", "nul\0byte").is_err());
        assert_eq!(phonemize("en-us", "").unwrap(), "");
    }
}
