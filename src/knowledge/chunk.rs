//! Chunking: extracted blocks into passages of a few hundred tokens that keep to the document's
//! structure.
//!
//! - A heading closes the passage being built: passages never span two sections. Each passage
//!   carries its heading path ("Menu > Pizza"), which is embedded with it and shown in search
//!   results.
//! - Paragraphs, list items and table rows are kept whole when they fit; a longer one is split at
//!   sentence ends, and a sentence longer than a passage at word boundaries.
//! - A passage holds at most `max_tokens` (measured with the embedding model's tokenizer, heading
//!   included); the next passage of the same section starts with the last units of the previous
//!   one, up to `overlap_tokens`, so an answer that straddles the cut is whole in one of them.

use super::extract::{Block, BlockKind};

/// How big passages are.
#[derive(Debug, Clone, Copy)]
pub struct ChunkParams {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkParams {
    /// 230 tokens (MiniLM embeds 256 with its two special tokens; the rest is margin for the
    /// joins between units) with 40 tokens of overlap.
    fn default() -> Self {
        Self {
            max_tokens: 230,
            overlap_tokens: 40,
        }
    }
}

/// One passage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The page its first new text is on (1-based).
    pub page: u32,
    /// The heading path, outermost first, joined with " > "; `None` before the first heading.
    pub heading: Option<String>,
    pub text: String,
    /// Tokens of [`Chunk::embedding_text`].
    pub tokens: usize,
}

impl Chunk {
    /// What is embedded: the heading path, then the text.
    pub fn embedding_text(&self) -> String {
        embedding_text(self.heading.as_deref(), &self.text)
    }
}

fn embedding_text(heading: Option<&str>, text: &str) -> String {
    match heading {
        Some(heading) => format!("{heading}\n{text}"),
        None => text.to_owned(),
    }
}

/// A piece of text that goes into a passage whole.
#[derive(Debug, Clone)]
struct Unit {
    page: u32,
    text: String,
    tokens: usize,
}

/// Splits `blocks` into passages; `count` measures a text in tokens.
pub fn chunk(blocks: &[Block], params: ChunkParams, count: impl Fn(&str) -> usize) -> Vec<Chunk> {
    let mut builder = Builder {
        params,
        count: &count,
        headings: Vec::new(),
        units: Vec::new(),
        overlap: 0,
        out: Vec::new(),
    };
    for block in blocks {
        let text = block.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            continue;
        }
        match block.kind {
            BlockKind::Heading(level) => builder.heading(level, text),
            BlockKind::Paragraph | BlockKind::ListItem | BlockKind::TableRow => {
                builder.content(block.page, &text)
            }
        }
    }
    builder.flush();
    builder.out
}

struct Builder<'a, F: Fn(&str) -> usize> {
    params: ChunkParams,
    count: &'a F,
    /// The open headings: (level, text).
    headings: Vec<(u8, String)>,
    /// The passage being built; its first `overlap` units repeat the previous passage.
    units: Vec<Unit>,
    overlap: usize,
    out: Vec<Chunk>,
}

impl<F: Fn(&str) -> usize> Builder<'_, F> {
    fn heading_path(&self) -> Option<String> {
        (!self.headings.is_empty()).then(|| {
            self.headings
                .iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" > ")
        })
    }

    fn heading(&mut self, level: u8, text: String) {
        self.flush();
        self.units.clear();
        self.overlap = 0;
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, text));
    }

    /// Room for text in a passage under the current headings.
    fn budget(&self) -> usize {
        let heading = self.heading_path().map_or(0, |h| (self.count)(&h) + 1);
        // A heading path longer than a passage still leaves room for some text.
        self.params
            .max_tokens
            .saturating_sub(heading)
            .max(self.params.max_tokens / 4)
    }

    fn content(&mut self, page: u32, text: &str) {
        let budget = self.budget();
        for piece in split_to_fit(text, budget, self.count) {
            let tokens = (self.count)(&piece);
            let used: usize = self.units.iter().map(|u| u.tokens + 1).sum();
            if self.units.len() > self.overlap && used + tokens > budget {
                self.flush();
                self.carry_overlap(budget - tokens.min(budget));
            }
            self.units.push(Unit {
                page,
                text: piece,
                tokens,
            });
        }
    }

    /// Emits the passage being built, if it has text of its own.
    fn flush(&mut self) {
        if self.units.len() <= self.overlap {
            return;
        }
        let heading = self.heading_path();
        let text = self
            .units
            .iter()
            .map(|u| u.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let tokens = (self.count)(&embedding_text(heading.as_deref(), &text));
        self.out.push(Chunk {
            page: self.units[self.overlap].page,
            heading,
            text,
            tokens,
        });
    }

    /// Starts the next passage with the previous one's last units, up to the overlap and within
    /// `room`.
    fn carry_overlap(&mut self, room: usize) {
        let limit = self.params.overlap_tokens.min(room);
        let mut kept = 0;
        let mut total = 0;
        for unit in self.units.iter().rev() {
            if total + unit.tokens + 1 > limit {
                break;
            }
            total += unit.tokens + 1;
            kept += 1;
        }
        let start = self.units.len() - kept;
        self.units.drain(..start);
        self.overlap = self.units.len();
    }
}

/// `text` as pieces of at most `budget` tokens: whole if it fits, else by sentences, else by
/// words.
fn split_to_fit(text: &str, budget: usize, count: &impl Fn(&str) -> usize) -> Vec<String> {
    if count(text) <= budget {
        return vec![text.to_owned()];
    }
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    for sentence in sentences(text) {
        let candidate = if current.is_empty() {
            sentence.to_owned()
        } else {
            format!("{current} {sentence}")
        };
        if count(&candidate) <= budget {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
        if count(sentence) <= budget {
            current = sentence.to_owned();
        } else {
            let mut words = by_words(sentence, budget, count);
            current = words.pop().unwrap_or_default();
            pieces.extend(words);
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Sentences: cut after `.`, `!` or `?` followed by a space.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1) == Some(&b' ') {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Word windows of at most `budget` tokens (a single word longer than that stands alone).
fn by_words(sentence: &str, budget: usize, count: &impl Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in sentence.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if count(&candidate) > budget && !current.is_empty() {
            out.push(std::mem::replace(&mut current, word.to_owned()));
        } else {
            current = candidate;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token a word: easy to reason about.
    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn block(page: u32, kind: BlockKind, text: &str) -> Block {
        Block {
            page,
            kind,
            text: text.to_owned(),
        }
    }

    fn para(page: u32, text: &str) -> Block {
        block(page, BlockKind::Paragraph, text)
    }

    fn lorem(n: usize, tag: &str) -> String {
        (0..n)
            .map(|i| format!("{tag}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            + "."
    }

    const SMALL: ChunkParams = ChunkParams {
        max_tokens: 30,
        overlap_tokens: 8,
    };

    #[test]
    fn headings_start_new_passages_and_label_them() {
        let blocks = [
            block(1, BlockKind::Heading(1), "Menu"),
            para(1, "Welcome to the trattoria."),
            block(1, BlockKind::Heading(2), "Pizza"),
            block(1, BlockKind::ListItem, "Margherita $18.50"),
            block(2, BlockKind::Heading(2), "Desserts"),
            para(2, "Tiramisu $12.50"),
            block(2, BlockKind::Heading(1), "Drinks list"),
            para(2, "Espresso $4"),
        ];
        let chunks = chunk(&blocks, SMALL, words);
        let got: Vec<(u32, Option<&str>, &str)> = chunks
            .iter()
            .map(|c| (c.page, c.heading.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, Some("Menu"), "Welcome to the trattoria."),
                (1, Some("Menu > Pizza"), "Margherita $18.50"),
                (2, Some("Menu > Desserts"), "Tiramisu $12.50"),
                (2, Some("Drinks list"), "Espresso $4"),
            ]
        );
        assert_eq!(chunks[1].tokens, words("Menu > Pizza\nMargherita $18.50"));
        assert_eq!(
            chunks[1].embedding_text(),
            "Menu > Pizza\nMargherita $18.50"
        );
    }

    #[test]
    fn long_sections_are_cut_within_the_limit_with_overlap() {
        let blocks: Vec<Block> = (0..12)
            .map(|i| para(1 + i / 6, &lorem(6, &format!("p{i}w"))))
            .collect();
        let chunks = chunk(&blocks, SMALL, words);
        assert!(chunks.len() >= 3, "{chunks:#?}");
        for c in &chunks {
            assert!(c.tokens <= SMALL.max_tokens, "{c:?}");
        }
        // Every paragraph is in some passage; consecutive passages share their boundary.
        for i in 0..12 {
            let tag = format!("p{i}w0");
            assert!(chunks.iter().any(|c| c.text.contains(&tag)), "{tag} lost");
        }
        for pair in chunks.windows(2) {
            let last_of_first = pair[0].text.lines().last().unwrap();
            assert!(
                pair[1].text.starts_with(last_of_first),
                "no overlap between {:?} and {:?}",
                pair[0].text,
                pair[1].text
            );
        }
        // The page is where the passage's own text starts.
        assert_eq!(chunks[0].page, 1);
        assert_eq!(chunks.last().unwrap().page, 2);
    }

    #[test]
    fn an_oversized_paragraph_is_split_at_sentences_then_words() {
        let long_sentence = lorem(70, "w");
        let text = format!("First short one. {long_sentence} Last one here.");
        let chunks = chunk(&[para(3, &text)], SMALL, words);
        assert!(chunks.iter().all(|c| c.tokens <= SMALL.max_tokens));
        let all: String = chunks
            .iter()
            .map(|c| c.text.clone())
            .collect::<Vec<_>>()
            .join(" ");
        for w in ["First", "w0", "w35", "w69.", "Last"] {
            assert!(all.contains(w), "{w} lost: {all}");
        }
        assert!(chunks.iter().all(|c| c.page == 3));
    }

    #[test]
    fn empty_blocks_and_bare_headings_make_no_passages() {
        let blocks = [
            block(1, BlockKind::Heading(1), "Title"),
            para(1, "   "),
            block(1, BlockKind::Heading(2), "Empty section"),
        ];
        assert!(chunk(&blocks, SMALL, words).is_empty());
    }
}
