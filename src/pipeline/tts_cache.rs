//! A bounded cache of synthesised clauses keyed by voice and text, for phrases that repeat across
//! calls (greetings, confirmations, "one moment please"). Least recently used entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::TextToSpeech;
use crate::models::ModelError;

/// Clauses longer than this are rarely repeated word for word and are not cached.
const MAX_CACHED_CHARS: usize = 120;

type Key = (String, String);

pub struct PhraseCache {
    capacity: usize,
    // Short critical sections only (lookups and inserts); synthesis happens outside the lock.
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    audio: HashMap<Key, Arc<[f32]>>,
    /// Keys from least to most recently used.
    order: VecDeque<Key>,
}

impl PhraseCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .audio
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &Key) -> Option<Arc<[f32]>> {
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let audio = entries.audio.get(key).cloned()?;
        if let Some(at) = entries.order.iter().position(|k| k == key) {
            let key = entries.order.remove(at).expect("position is in range");
            entries.order.push_back(key);
        }
        Some(audio)
    }

    fn insert(&self, key: Key, audio: Arc<[f32]>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if entries.audio.insert(key.clone(), audio).is_none() {
            entries.order.push_back(key);
        }
        while entries.audio.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            entries.audio.remove(&oldest);
        }
    }
}

/// A voice whose short clauses are served from a [`PhraseCache`] when they repeat.
pub struct CachedVoice {
    voice_id: String,
    voice: Arc<dyn TextToSpeech>,
    cache: Arc<PhraseCache>,
}

impl CachedVoice {
    pub fn new(
        voice_id: impl Into<String>,
        voice: Arc<dyn TextToSpeech>,
        cache: Arc<PhraseCache>,
    ) -> Self {
        Self {
            voice_id: voice_id.into(),
            voice,
            cache,
        }
    }
}

impl TextToSpeech for CachedVoice {
    fn sample_rate(&self) -> u32 {
        self.voice.sample_rate()
    }

    fn synthesize_clause(&self, clause: &str) -> Result<Vec<f32>, ModelError> {
        if clause.chars().count() > MAX_CACHED_CHARS {
            return self.voice.synthesize_clause(clause);
        }
        let key = (self.voice_id.clone(), clause.trim().to_owned());
        if let Some(audio) = self.cache.get(&key) {
            return Ok(audio.to_vec());
        }
        let audio = self.voice.synthesize_clause(clause)?;
        self.cache.insert(key, Arc::from(audio.as_slice()));
        Ok(audio)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts syntheses; the "audio" is the clause's length.
    struct Counting(AtomicUsize);

    impl TextToSpeech for Counting {
        fn sample_rate(&self) -> u32 {
            8_000
        }
        fn synthesize_clause(&self, clause: &str) -> Result<Vec<f32>, ModelError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![clause.len() as f32])
        }
    }

    #[test]
    fn repeats_are_served_from_the_cache_and_the_oldest_entry_is_evicted() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = Arc::new(PhraseCache::new(2));
        let voice = CachedVoice::new("joe", inner.clone(), cache.clone());
        assert_eq!(voice.synthesize_clause("Hello!").unwrap(), vec![6.0]);
        assert_eq!(voice.synthesize_clause("Hello!").unwrap(), vec![6.0]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        voice.synthesize_clause("Thanks.").unwrap();
        voice.synthesize_clause("Hello!").unwrap(); // refreshes "Hello!"
        voice.synthesize_clause("Bye.").unwrap(); // evicts "Thanks."
        assert_eq!(cache.len(), 2);
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
        voice.synthesize_clause("Hello!").unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 3, "still cached");
        voice.synthesize_clause("Thanks.").unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 4, "was evicted");
        let other = CachedVoice::new("amy", inner.clone(), cache);
        other.synthesize_clause("Thanks.").unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 5, "keyed by voice too");
    }
}
