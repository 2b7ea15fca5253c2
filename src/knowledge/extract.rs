//! Text extraction for the knowledge base: an uploaded PDF or DOCX becomes ordered [`Block`]s
//! (headings, paragraphs, list items, table rows), each with the page it starts on.
//!
//! The format is sniffed from the bytes, never the file name. A PDF is loaded by `lopdf` (through
//! `pdf-extract`'s re-export, so the two agree on the version), which also reports encryption
//! and the page tree; `pdf-extract` interprets each page's content stream and hands every glyph,
//! with its position and size, to a [`PageLayout`]. Glyphs become lines, lines become blocks
//! where the vertical gap, the font size or a bullet says so, and lines set clearly larger than
//! the body text (the most common size) become headings, the largest size first.
//!
//! A DOCX is a zip whose `word/document.xml` is walked once with `quick-xml`: paragraph styles
//! (resolved through `word/styles.xml`) and outline levels give headings, numbering gives list
//! items, a table's first row names the values of each later row, and page breaks count pages.
//!
//! Everything here is blocking and CPU-bound. The engine runs it only in a child process under
//! limits ([`super::sandbox`]), since a stack overflow or a failed allocation aborts a process
//! whatever `catch_unwind` does. Inside, the parser crates run under `catch_unwind`, so a
//! malformed file is an error, never a panic (the panic hook still logs it), and a PDF is
//! first checked by [`super::guard`] for streams that unpack without bound and drawings that
//! recurse; a DOCX part is read through `take`, so a zip bomb stops at 64 MiB.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek};
use std::panic::{self, AssertUnwindSafe};

use pdf_extract::{Document, LoadOptions, MediaBox, OutputDev, OutputError, Transform};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};
use zip::ZipArchive;
use zip::result::ZipError;

/// `%PDF-` must start within this many bytes; some producers put junk before the header.
const PDF_HEADER_WINDOW: usize = 1024;
/// A DOCX part that unpacks to more than this is refused: a zip bomb, not a document.
const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
const DOCUMENT_PART: &str = "word/document.xml";
const STYLES_PART: &str = "word/styles.xml";
const APP_PART: &str = "docProps/app.xml";
/// A line at least this much larger than the body text can be a heading...
const HEADING_SIZE_RATIO: f64 = 1.15;
/// ...if it is no longer than this (a large-print paragraph is not a heading).
const MAX_HEADING_CHARS: usize = 200;
/// A vertical gap larger than this many font sizes between two lines starts a new block.
const PARAGRAPH_GAP: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Pdf,
    Docx,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// 1 (top) to 6.
    Heading(u8),
    Paragraph,
    ListItem,
    /// One row of a table, as "Header: value, Header: value".
    TableRow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// 1-based page the block starts on.
    pub page: u32,
    pub kind: BlockKind,
    /// Whitespace-normalised, never empty.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extracted {
    pub format: Format,
    pub pages: u32,
    pub blocks: Vec<Block>,
}

/// Why a document gave no text. `Display` is a sentence for the person who uploaded it.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    #[error("only PDF and DOCX files are supported")]
    Unsupported,
    #[error("the document is password-protected: remove the password and upload it again")]
    Encrypted,
    #[error("the file is damaged and could not be read ({0})")]
    Damaged(String),
    #[error("the file could not be read safely: part of it unpacks to more than 64 MiB")]
    TooLarge,
    /// Built to exhaust the reader: unbounded unpacking, drawings that recurse.
    #[error("the file could not be read safely: {0}")]
    Unsafe(String),
    #[error(
        "no text was found: the document may be scanned images, and text recognition is not supported"
    )]
    NoText,
}

/// The format of `bytes`, by content: `%PDF-` within the first 1024 bytes, or a zip whose
/// central directory has `word/document.xml`.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") {
        let is_docx = panic::catch_unwind(|| {
            ZipArchive::new(Cursor::new(bytes))
                .is_ok_and(|archive| archive.index_for_name(DOCUMENT_PART).is_some())
        });
        if is_docx.unwrap_or(false) {
            return Some(Format::Docx);
        }
    }
    let head = &bytes[..bytes.len().min(PDF_HEADER_WINDOW)];
    head.windows(5)
        .any(|w| w == b"%PDF-")
        .then_some(Format::Pdf)
}

/// The text of a PDF or DOCX, in reading order. Blocking and CPU-bound; never panics.
pub fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    if is_encrypted_office_file(bytes) {
        return Err(ExtractError::Encrypted);
    }
    let format = sniff(bytes).ok_or(ExtractError::Unsupported)?;
    let extracted = panic::catch_unwind(AssertUnwindSafe(|| match format {
        Format::Pdf => extract_pdf(bytes),
        Format::Docx => extract_docx(bytes),
    }))
    .unwrap_or_else(|payload| Err(ExtractError::Damaged(panic_reason(payload))))?;
    if extracted.blocks.is_empty() {
        return Err(ExtractError::NoText);
    }
    Ok(extracted)
}

/// Word, Excel and PowerPoint save a password-protected file as an OLE compound file holding an
/// `EncryptedPackage` stream instead of a zip.
fn is_encrypted_office_file(bytes: &[u8]) -> bool {
    const OLE_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
    const STREAM_NAME: &[u8] = b"E\0n\0c\0r\0y\0p\0t\0e\0d\0P\0a\0c\0k\0a\0g\0e\0";
    bytes.starts_with(OLE_MAGIC) && bytes.windows(STREAM_NAME.len()).any(|w| w == STREAM_NAME)
}

fn panic_reason(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown error".to_string());
    format!("the reader stopped: {message}")
}

/// Collapses whitespace runs to one space, drops soft hyphens and zero-width characters,
/// spells out typographic ligatures, and trims.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let expanded = match c {
            '\u{AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{FEFF}' => continue,
            '\u{FB00}' => "ff",
            '\u{FB01}' => "fi",
            '\u{FB02}' => "fl",
            '\u{FB03}' => "ffi",
            '\u{FB04}' => "ffl",
            '\u{FB05}' | '\u{FB06}' => "st",
            c if c.is_whitespace() || c.is_control() => {
                space = !out.is_empty();
                continue;
            }
            _ => "",
        };
        if space {
            out.push(' ');
            space = false;
        }
        if expanded.is_empty() {
            out.push(c);
        } else {
            out.push_str(expanded);
        }
    }
    out
}

/// Appends a line to a block: a word hyphenated across the break is joined ("tradi-" +
/// "tional"), anything else gets a space.
fn join_line(block: &mut String, line: &str) {
    let mut tail = block.chars().rev();
    let hyphenated = tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic);
    if hyphenated && line.chars().next().is_some_and(char::is_lowercase) {
        block.pop();
    } else if !block.is_empty() {
        block.push(' ');
    }
    block.push_str(line);
}

// --- PDF ------------------------------------------------------------------------------------

fn extract_pdf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    use pdf_extract::Error as PdfError;
    let options = LoadOptions {
        filter: Some(super::guard::load_filter),
        ..LoadOptions::default()
    };
    let doc = match Document::load_mem_with_options(bytes, options) {
        Ok(doc) => doc,
        Err(
            PdfError::Decryption(_)
            | PdfError::InvalidPassword
            | PdfError::UnsupportedSecurityHandler(_),
        ) => return Err(ExtractError::Encrypted),
        Err(e) => return Err(ExtractError::Damaged(e.to_string())),
    };
    // lopdf decrypts a file whose user password is empty and drops `/Encrypt` from the trailer;
    // one still there needs a password.
    if doc.trailer.get(b"Encrypt").is_ok() {
        return Err(ExtractError::Encrypted);
    }
    let page_numbers: Vec<u32> = doc.get_pages().into_keys().collect();
    if page_numbers.is_empty() {
        return Err(ExtractError::Damaged("it has no pages".to_string()));
    }
    super::guard::check(&doc)?;

    let mut pages = Vec::with_capacity(page_numbers.len());
    let mut failure = None;
    for number in page_numbers.iter().copied() {
        let mut layout = PageLayout::new(number);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            pdf_extract::output_doc_page(&doc, &mut layout, number)
        }));
        match outcome {
            Ok(Ok(())) => pages.push(layout.finish()),
            Ok(Err(e)) => {
                failure.get_or_insert_with(|| e.to_string());
            }
            Err(payload) => {
                failure.get_or_insert_with(|| panic_reason(payload));
            }
        }
    }
    let blocks = pdf_blocks(&pages);
    if let Some(reason) = failure
        && blocks.is_empty()
    {
        return Err(ExtractError::Damaged(reason));
    }
    Ok(Extracted {
        format: Format::Pdf,
        pages: u32::try_from(page_numbers.len()).unwrap_or(u32::MAX),
        blocks,
    })
}

/// Font sizes are compared in half points, so 11.0 and 11.02 are the same size.
type SizeKey = u32;

fn size_key(size: f64) -> SizeKey {
    (size * 2.0).round().clamp(0.0, f64::from(u32::MAX)) as SizeKey
}

/// One line of glyphs on a shared baseline, in content-stream order.
#[derive(Debug, Default)]
struct Line {
    text: String,
    /// In PDF user space: y grows up the page.
    baseline: f64,
    /// Glyphs (not spaces) per size.
    sizes: Vec<(SizeKey, usize)>,
}

impl Line {
    fn dominant_size(&self) -> Option<SizeKey> {
        self.sizes
            .iter()
            .max_by_key(|&&(size, count)| (count, size))
            .map(|&(size, _)| size)
    }
}

/// A line as the block builder sees it: normalised text and one size.
#[derive(Debug)]
struct LaidLine {
    text: String,
    baseline: f64,
    size: SizeKey,
}

/// Collects one page's glyphs into lines, the way `pdf-extract`'s plain-text output does
/// (a baseline moved by more than half the font size starts a line; a gap wider than a tenth
/// of it is a space), but keeping each line's position and font sizes.
struct PageLayout {
    page: u32,
    lines: Vec<Line>,
    /// Where the last glyph ended on the x axis.
    last_end: f64,
}

impl PageLayout {
    fn new(page: u32) -> Self {
        Self {
            page,
            lines: Vec::new(),
            last_end: 0.0,
        }
    }

    fn finish(self) -> (u32, Vec<LaidLine>) {
        let lines = self
            .lines
            .into_iter()
            .filter_map(|line| {
                let size = line.dominant_size()?;
                let text = normalize(&line.text);
                (!text.is_empty()).then_some(LaidLine {
                    text,
                    baseline: line.baseline,
                    size,
                })
            })
            .collect();
        (self.page, lines)
    }
}

impl OutputDev for PageLayout {
    fn begin_page(
        &mut self,
        _page_num: u32,
        _media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        // The rendered size: the font size scaled by the text rendering matrix (a PDF may
        // set `1 Tf` and scale the matrix instead).
        let size = font_size * (trm.m11 * trm.m22 - trm.m12 * trm.m21).abs().sqrt();
        let (x, y) = (trm.m31, trm.m32);
        if !(size.is_finite() && size > 0.0 && x.is_finite() && y.is_finite()) {
            return Ok(());
        }
        let same_line = self
            .lines
            .last()
            .is_some_and(|line| (y - line.baseline).abs() <= size * 0.5);
        if !same_line {
            self.lines.push(Line {
                baseline: y,
                ..Line::default()
            });
        }
        let Some(line) = self.lines.last_mut() else {
            return Ok(());
        };
        if same_line && x > self.last_end + size * 0.1 {
            line.text.push(' ');
        }
        if char.chars().all(char::is_whitespace) {
            line.text.push(' ');
        } else {
            line.text.push_str(char);
            let key = size_key(size);
            match line.sizes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, count)) => *count += 1,
                None => line.sizes.push((key, 1)),
            }
        }
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Heading levels by size: sizes clearly larger than the body text (the size most glyphs in the
/// document are set in), largest first.
fn heading_levels(pages: &[(u32, Vec<LaidLine>)]) -> HashMap<SizeKey, u8> {
    let mut glyphs: HashMap<SizeKey, usize> = HashMap::new();
    for line in pages.iter().flat_map(|(_, lines)| lines) {
        *glyphs.entry(line.size).or_default() += line.text.chars().count();
    }
    let Some(body) = glyphs
        .iter()
        .max_by_key(|&(&size, &count)| (count, std::cmp::Reverse(size)))
        .map(|(&size, _)| size)
    else {
        return HashMap::new();
    };
    let mut sizes: Vec<SizeKey> = pages
        .iter()
        .flat_map(|(_, lines)| lines)
        .filter(|line| {
            f64::from(line.size) >= f64::from(body) * HEADING_SIZE_RATIO
                && line.size >= body + 2
                && line.text.chars().count() <= MAX_HEADING_CHARS
        })
        .map(|line| line.size)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, size)| (size, u8::try_from(i + 1).unwrap_or(6).min(6)))
        .collect()
}

/// A line that starts a list item: a bullet glyph (dropped) or a short number or letter with
/// `.` or `)` (kept), then a space.
fn list_item(text: &str) -> Option<&str> {
    const BULLETS: &[char] = &['•', '◦', '▪', '▫', '‣', '∙', '●', '○', '■', '□', '\u{F0B7}'];
    const DASHES: &[char] = &['-', '–', '*', '·'];
    let mut chars = text.chars();
    let first = chars.next()?;
    if BULLETS.contains(&first) {
        return Some(chars.as_str().trim_start()).filter(|rest| !rest.is_empty());
    }
    let (marker, rest) = text.split_once(' ')?;
    if marker.len() == first.len_utf8() && DASHES.contains(&first) {
        return Some(rest);
    }
    let label = marker.strip_suffix(['.', ')'])?;
    let numbered = !label.is_empty()
        && label.len() <= 3
        && (label.chars().all(|c| c.is_ascii_digit())
            || (label.len() == 1 && label.chars().all(|c| c.is_ascii_lowercase())));
    numbered.then_some(text)
}

fn pdf_blocks(pages: &[(u32, Vec<LaidLine>)]) -> Vec<Block> {
    let levels = heading_levels(pages);
    let mut blocks: Vec<Block> = Vec::new();
    for (page, lines) in pages {
        let mut previous: Option<&LaidLine> = None;
        for line in lines {
            let level = levels
                .get(&line.size)
                .filter(|_| line.text.chars().count() <= MAX_HEADING_CHARS);
            let (kind, text) = match (level, list_item(&line.text)) {
                (Some(&level), _) => (BlockKind::Heading(level), line.text.as_str()),
                (None, Some(rest)) => (BlockKind::ListItem, rest),
                (None, None) => (BlockKind::Paragraph, line.text.as_str()),
            };
            let continues = previous.is_some_and(|prev| {
                let size = f64::from(prev.size.max(line.size)) / 2.0;
                let gap = prev.baseline - line.baseline;
                let close = gap > -size * 0.5 && gap <= size * PARAGRAPH_GAP;
                let current = blocks.last().map(|b| &b.kind);
                close
                    && prev.size == line.size
                    && match kind {
                        // A heading wrapped over two lines.
                        BlockKind::Heading(level) => current == Some(&BlockKind::Heading(level)),
                        // A wrapped paragraph or list item.
                        BlockKind::Paragraph => {
                            matches!(current, Some(BlockKind::Paragraph | BlockKind::ListItem))
                        }
                        BlockKind::ListItem | BlockKind::TableRow => false,
                    }
            });
            match blocks.last_mut() {
                Some(block) if continues => join_line(&mut block.text, text),
                _ => blocks.push(Block {
                    page: *page,
                    kind,
                    text: text.to_string(),
                }),
            }
            previous = Some(line);
        }
    }
    blocks.retain(|b| !b.text.is_empty());
    blocks
}

// --- DOCX -----------------------------------------------------------------------------------

fn extract_docx(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| ExtractError::Damaged(e.to_string()))?;
    let document = read_part(&mut archive, DOCUMENT_PART, MAX_PART_BYTES)?
        .ok_or_else(|| ExtractError::Damaged(format!("{DOCUMENT_PART} is missing")))?;
    let styles = match read_part(&mut archive, STYLES_PART, MAX_PART_BYTES)? {
        Some(xml) => Styles::parse(&xml)?,
        None => Styles::default(),
    };
    let rendered_pages = read_part(&mut archive, APP_PART, MAX_PART_BYTES)?
        .as_deref()
        .and_then(app_pages);

    let mut walker = DocxWalker::new(&styles);
    walker.walk(&document)?;
    Ok(Extracted {
        format: Format::Docx,
        pages: walker.page.max(rendered_pages.unwrap_or(0)),
        blocks: walker.blocks,
    })
}

/// One part of the package as text, or `None` if the package has no such part. The size the
/// zip declares is checked first, then the read itself is capped with `take`, since the
/// declaration can lie (the zip reader also stops at the declared size).
fn read_part<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Option<String>, ExtractError> {
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ExtractError::Damaged(format!("{name}: {e}"))),
    };
    if file.size() > limit {
        return Err(ExtractError::TooLarge);
    }
    let mut data = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut data).map_err(|e| {
        // The zip reader stops a part at the size its headers declare: one that unpacks to
        // more is a bomb hiding its size, not an accident.
        if e.to_string().contains("larger than its declared") {
            ExtractError::Unsafe("part of it unpacks to more than its headers declare".into())
        } else {
            ExtractError::Damaged(format!("{name}: {e}"))
        }
    })?;
    if data.len() as u64 > limit {
        return Err(ExtractError::TooLarge);
    }
    let text = String::from_utf8(data)
        .map_err(|_| ExtractError::Damaged(format!("{name} is not UTF-8")))?;
    Ok(Some(text.trim_start_matches('\u{FEFF}').to_string()))
}

fn xml_error(part: &str) -> impl Fn(quick_xml::Error) -> ExtractError {
    move |e| ExtractError::Damaged(format!("{part}: {e}"))
}

/// The value of an attribute by local name (`w:val` → `val`), prefixes ignored.
fn attribute(element: &BytesStart, name: &str) -> Option<String> {
    element
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| a.value.into_owned())
}

/// An on/off property (`<w:b/>`, `<w:b w:val="false"/>`).
fn is_on(element: &BytesStart) -> bool {
    !matches!(
        attribute(element, "val").as_deref(),
        Some("0" | "false" | "off")
    )
}

/// `<Pages>` from `docProps/app.xml`: the page count when the document was last rendered.
fn app_pages(xml: &str) -> Option<u32> {
    let mut reader = Reader::from_str(xml);
    let mut in_pages = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => in_pages = e.local_name().as_ref() == "Pages",
            Event::Text(t) if in_pages => return t.xml10_content().trim().parse().ok(),
            Event::End(_) => in_pages = false,
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct Style {
    /// Lowercase, as Word names its built-in styles whatever the language ("heading 1").
    name: String,
    based_on: Option<String>,
    outline_level: Option<u8>,
    numbered: bool,
}

/// Paragraph styles by id, from `word/styles.xml`.
#[derive(Debug, Default)]
struct Styles(HashMap<String, Style>);

impl Styles {
    fn parse(xml: &str) -> Result<Self, ExtractError> {
        let mut styles = HashMap::new();
        let mut reader = Reader::from_str(xml);
        let mut current: Option<(String, Style)> = None;
        loop {
            let event = reader.read_event().map_err(xml_error(STYLES_PART))?;
            let (element, empty) = match &event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(e) if e.local_name().as_ref() == "style" => {
                    styles.extend(current.take());
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            let local = element.local_name();
            match local.as_ref() {
                "style" => {
                    let paragraph = attribute(element, "type").as_deref() == Some("paragraph");
                    current = attribute(element, "styleId")
                        .filter(|_| paragraph)
                        .map(|id| (id, Style::default()));
                    if empty {
                        styles.extend(current.take());
                    }
                }
                _ => {
                    let Some((_, style)) = current.as_mut() else {
                        continue;
                    };
                    let value = attribute(element, "val");
                    match local.as_ref() {
                        "name" => style.name = value.unwrap_or_default().to_lowercase(),
                        "basedOn" => style.based_on = value,
                        "outlineLvl" => {
                            style.outline_level = value.and_then(|v| v.parse().ok());
                        }
                        "numPr" => style.numbered = true,
                        "numId" => style.numbered = value.as_deref() != Some("0"),
                        _ => {}
                    }
                }
            }
        }
        Ok(Styles(styles))
    }

    /// The heading level of a style, following `basedOn`: "Title" is 1, "heading n" is n,
    /// otherwise an outline level.
    fn heading_level(&self, id: &str) -> Option<u8> {
        let mut id = id;
        for _ in 0..8 {
            let Some(style) = self.0.get(id) else {
                return heading_level_from_name(&id.to_lowercase());
            };
            if let Some(level) = heading_level_from_name(&style.name) {
                return Some(level);
            }
            if let Some(level) = style.outline_level {
                return outline_heading(level);
            }
            id = style.based_on.as_deref()?;
        }
        None
    }

    fn is_list(&self, id: &str) -> bool {
        let mut id = id;
        for _ in 0..8 {
            let Some(style) = self.0.get(id) else {
                return false;
            };
            if style.numbered {
                return true;
            }
            let Some(parent) = style.based_on.as_deref() else {
                return false;
            };
            id = parent;
        }
        false
    }
}

/// "title" → 1, "heading 2" or "heading2" → 2 (levels 7 to 9 are 6).
fn heading_level_from_name(name: &str) -> Option<u8> {
    if name == "title" {
        return Some(1);
    }
    let level: u8 = name.strip_prefix("heading")?.trim().parse().ok()?;
    (1..=9).contains(&level).then(|| level.min(6))
}

/// Outline levels 0 to 8 are headings; 9 is body text.
fn outline_heading(level: u8) -> Option<u8> {
    (level <= 8).then(|| (level + 1).min(6))
}

#[derive(Debug, Default)]
struct Paragraph {
    style: Option<String>,
    numbered: bool,
    outline_level: Option<u8>,
    /// A section break in this paragraph's properties starts a new page after it.
    section_break: bool,
    text: String,
    /// The page of the first visible character.
    page: Option<u32>,
}

#[derive(Debug, Default)]
struct Table {
    rows: Vec<Row>,
    row: Option<Row>,
    cell: Option<String>,
}

#[derive(Debug, Default)]
struct Row {
    cells: Vec<String>,
    page: Option<u32>,
}

/// Walks `word/document.xml` once. Paragraphs are a stack because a text box nests whole
/// paragraphs inside a run of another; nested tables pour their text into the outer cell.
struct DocxWalker<'a> {
    styles: &'a Styles,
    blocks: Vec<Block>,
    page: u32,
    /// An explicit page break with no text after it yet: the `lastRenderedPageBreak` Word writes
    /// right after one is the same break.
    hard_break_pending: bool,
    paragraphs: Vec<Paragraph>,
    table: Option<Table>,
    table_depth: u32,
    properties_depth: u32,
    section_properties_depth: u32,
    in_text: bool,
    /// Inside content that is not the document's text: tracked-change history, the VML copy of
    /// a drawing, field codes.
    skip_depth: u32,
}

impl<'a> DocxWalker<'a> {
    fn new(styles: &'a Styles) -> Self {
        Self {
            styles,
            blocks: Vec::new(),
            page: 1,
            hard_break_pending: false,
            paragraphs: Vec::new(),
            table: None,
            table_depth: 0,
            properties_depth: 0,
            section_properties_depth: 0,
            in_text: false,
            skip_depth: 0,
        }
    }

    fn walk(&mut self, xml: &str) -> Result<(), ExtractError> {
        let mut reader = Reader::from_str(xml);
        loop {
            match reader.read_event().map_err(xml_error(DOCUMENT_PART))? {
                Event::Start(e) => self.open(&e),
                Event::Empty(e) => {
                    self.open(&e);
                    self.close(e.local_name().as_ref());
                }
                Event::End(e) => self.close(e.local_name().as_ref()),
                Event::Text(t) if self.in_text => self.push_text(&t.xml10_content()),
                Event::CData(t) if self.in_text => self.push_text(&t.xml10_content()),
                Event::GeneralRef(r) if self.in_text => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        _ => quick_xml::escape::resolve_predefined_entity(&r).map(str::to_string),
                    };
                    if let Some(text) = resolved {
                        self.push_text(&text);
                    }
                }
                Event::Eof => return Ok(()),
                _ => {}
            }
        }
    }

    fn open(&mut self, e: &BytesStart) {
        let local = e.local_name();
        let name = local.as_ref();
        if self.skip_depth > 0 || is_skipped(name) {
            self.skip_depth += 1;
            return;
        }
        match name {
            "p" => self.paragraphs.push(Paragraph::default()),
            "pPr" => self.properties_depth += 1,
            "tbl" => {
                self.table_depth += 1;
                if self.table_depth == 1 {
                    self.table = Some(Table::default());
                }
            }
            "tr" if self.table_depth == 1 => {
                if let Some(table) = self.table.as_mut() {
                    table.row = Some(Row::default());
                }
            }
            "tc" if self.table_depth == 1 => {
                if let Some(table) = self.table.as_mut() {
                    table.cell = Some(String::new());
                }
            }
            "t" => self.in_text = true,
            _ if self.properties_depth > 0 => self.paragraph_property(name, e),
            "tab" | "ptab" | "cr" => self.push_text(" "),
            "br" => match attribute(e, "type").as_deref() {
                Some("page") => self.hard_page_break(),
                _ => self.push_text(" "),
            },
            "noBreakHyphen" => self.push_text("-"),
            "lastRenderedPageBreak" => self.rendered_page_break(),
            _ => {}
        }
    }

    /// An element inside `w:pPr`.
    fn paragraph_property(&mut self, name: &str, e: &BytesStart) {
        if name == "sectPr" {
            self.section_properties_depth += 1;
        }
        let in_section = self.section_properties_depth > 0;
        let started = !self.blocks.is_empty();
        let Some(paragraph) = self.paragraphs.last_mut() else {
            return;
        };
        match name {
            "sectPr" => paragraph.section_break = true,
            // A continuous section break stays on the page.
            "type" if in_section => {
                paragraph.section_break = attribute(e, "val").as_deref() != Some("continuous");
            }
            _ if in_section => {}
            "pStyle" => paragraph.style = attribute(e, "val"),
            "numPr" => paragraph.numbered = true,
            "numId" => paragraph.numbered = attribute(e, "val").as_deref() != Some("0"),
            "outlineLvl" => {
                paragraph.outline_level = attribute(e, "val").and_then(|v| v.parse().ok());
            }
            "pageBreakBefore" if is_on(e) && started => self.hard_page_break(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if self.skip_depth > 0 {
            self.skip_depth -= 1;
            return;
        }
        match name {
            "t" => self.in_text = false,
            "pPr" => self.properties_depth = self.properties_depth.saturating_sub(1),
            "sectPr" => {
                self.section_properties_depth = self.section_properties_depth.saturating_sub(1);
            }
            "p" => self.finish_paragraph(),
            "tc" if self.table_depth == 1 => {
                if let Some(table) = self.table.as_mut()
                    && let Some(cell) = table.cell.take()
                    && let Some(row) = table.row.as_mut()
                {
                    row.cells.push(cell);
                }
            }
            "tr" if self.table_depth == 1 => {
                if let Some(table) = self.table.as_mut() {
                    table.rows.extend(table.row.take());
                }
            }
            "tbl" => {
                self.table_depth = self.table_depth.saturating_sub(1);
                if self.table_depth == 0
                    && let Some(table) = self.table.take()
                {
                    self.blocks.extend(table_blocks(table.rows, self.page));
                }
            }
            _ => {}
        }
    }

    fn hard_page_break(&mut self) {
        self.page += 1;
        self.hard_break_pending = true;
        self.push_text(" ");
    }

    /// Where Word last laid out a page break; right after an explicit one it is that break.
    fn rendered_page_break(&mut self) {
        if !std::mem::take(&mut self.hard_break_pending) {
            self.page += 1;
        }
    }

    fn push_text(&mut self, text: &str) {
        let page = self.page;
        let Some(paragraph) = self.paragraphs.last_mut() else {
            return;
        };
        paragraph.text.push_str(text);
        if !text.trim().is_empty() {
            self.hard_break_pending = false;
            paragraph.page.get_or_insert(page);
        }
    }

    fn finish_paragraph(&mut self) {
        let Some(paragraph) = self.paragraphs.pop() else {
            return;
        };
        let text = normalize(&paragraph.text);
        let page = paragraph.page.unwrap_or(self.page);
        if paragraph.section_break {
            self.hard_page_break();
        }
        if text.is_empty() {
            return;
        }
        if let Some(table) = self.table.as_mut()
            && let Some(cell) = table.cell.as_mut()
        {
            join_line(cell, &text);
            if let Some(row) = table.row.as_mut() {
                row.page.get_or_insert(page);
            }
            return;
        }
        let style = paragraph.style.as_deref();
        let level = paragraph
            .outline_level
            .and_then(outline_heading)
            .or_else(|| style.and_then(|s| self.styles.heading_level(s)));
        let kind = match level {
            Some(level) => BlockKind::Heading(level),
            None if paragraph.numbered || style.is_some_and(|s| self.styles.is_list(s)) => {
                BlockKind::ListItem
            }
            None => BlockKind::Paragraph,
        };
        self.blocks.push(Block { page, kind, text });
    }
}

/// Subtrees whose text is not the document's current text.
fn is_skipped(name: &str) -> bool {
    matches!(
        name,
        "Fallback" | "del" | "moveFrom" | "delText" | "instrText" | "delInstrText"
    ) || name.ends_with("Change")
}

/// A table's rows as blocks: the first row names the values of each later row ("Price: $220");
/// a table of one row is its cells in order.
fn table_blocks(rows: Vec<Row>, page: u32) -> Vec<Block> {
    let block = |row: &Row, text: String| Block {
        page: row.page.unwrap_or(page),
        kind: BlockKind::TableRow,
        text,
    };
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    let mut blocks = Vec::new();
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        let text = join_cells(header.cells.iter().cloned());
        if !text.is_empty() {
            blocks.push(block(&header, text));
        }
        return blocks;
    }
    for row in rows {
        let text = join_cells(row.cells.iter().enumerate().map(|(i, cell)| {
            match header
                .cells
                .get(i)
                .filter(|h| !h.is_empty() && !cell.is_empty())
            {
                Some(name) => format!("{name}: {cell}"),
                None => cell.clone(),
            }
        }));
        if !text.is_empty() {
            blocks.push(block(&row, text));
        }
    }
    blocks
}

fn join_cells(cells: impl Iterator<Item = String>) -> String {
    cells
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const MENU: &[u8] = include_bytes!("../../fixtures/knowledge/menu.pdf");
    const CLINIC: &[u8] = include_bytes!("../../fixtures/knowledge/clinic-faq.docx");
    const BROKEN: &[u8] = include_bytes!("../../fixtures/knowledge/broken.pdf");
    const NOTES: &[u8] = include_bytes!("../../fixtures/knowledge/notes.pdf");
    const ENCRYPTED: &[u8] = include_bytes!("../../fixtures/knowledge/encrypted.pdf");
    const SCANNED: &[u8] = include_bytes!("../../fixtures/knowledge/scanned.pdf");
    const SELF_DRAWING: &[u8] = include_bytes!("../../fixtures/knowledge/self-drawing.pdf");
    const NESTED_FORMS: &[u8] = include_bytes!("../../fixtures/knowledge/nested-forms.pdf");
    const FLATE_BOMB: &[u8] = include_bytes!("../../fixtures/knowledge/flate-bomb.pdf");
    const ZIP_BOMB: &[u8] = include_bytes!("../../fixtures/knowledge/zip-bomb.docx");
    // xref-bomb.pdf is not read here: lopdf unpacks its 4 GiB before any check can run, so only
    // the child process's memory limit stops it (tests/api/knowledge.rs).

    fn block<'a>(extracted: &'a Extracted, text: &str) -> &'a Block {
        extracted
            .blocks
            .iter()
            .find(|b| b.text == text)
            .unwrap_or_else(|| panic!("no block {text:?} in {:#?}", extracted.blocks))
    }

    fn block_containing<'a>(extracted: &'a Extracted, text: &str) -> &'a Block {
        extracted
            .blocks
            .iter()
            .find(|b| b.text.contains(text))
            .unwrap_or_else(|| panic!("no block with {text:?} in {:#?}", extracted.blocks))
    }

    fn assert_block(extracted: &Extracted, text: &str, page: u32, kind: BlockKind) {
        let found = block(extracted, text);
        assert_eq!((found.page, &found.kind), (page, &kind), "{text:?}");
    }

    /// A DOCX package of the given parts, stored uncompressed.
    fn package(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, text) in parts {
            writer.start_file(*name, options).unwrap();
            writer.write_all(text.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn docx(body: &str) -> Vec<u8> {
        let document = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="urn:w" xmlns:mc="urn:mc" xmlns:wps="urn:wps" xmlns:v="urn:v"><w:body>{body}</w:body></w:document>"#
        );
        package(&[("word/document.xml", &document)])
    }

    /// Deterministic noise.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::Pdf.content_type(), "application/pdf");
        assert_eq!(
            Format::Docx.content_type(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        );
    }

    #[test]
    fn menu_pdf_has_headings_items_and_pages() {
        let menu = extract(MENU).unwrap();
        assert_eq!(menu.format, Format::Pdf);
        assert_eq!(menu.pages, 2);

        assert_block(&menu, "Harbour Trattoria Menu", 1, BlockKind::Heading(1));
        assert_block(&menu, "Starters", 1, BlockKind::Heading(2));
        assert_block(&menu, "Pizza", 1, BlockKind::Heading(2));
        assert_block(&menu, "Pasta", 2, BlockKind::Heading(2));
        assert_block(&menu, "Desserts", 2, BlockKind::Heading(2));
        assert_block(&menu, "Drinks", 2, BlockKind::Heading(2));

        // Each item is its own block, its bold name and price on the line with the description.
        let margherita = "Margherita pizza with tomato, fior di latte and basil $18.50";
        assert_block(&menu, margherita, 1, BlockKind::Paragraph);
        assert_block(
            &menu,
            "Prosciutto pizza with San Daniele prosciutto, rocket and parmesan $24.00",
            1,
            BlockKind::Paragraph,
        );
        let tiramisu = "Tiramisu with espresso-soaked savoiardi and mascarpone $12.50";
        assert_block(&menu, tiramisu, 2, BlockKind::Paragraph);
        assert_block(
            &menu,
            "Crème brûlée with orange zest $13.00",
            2,
            BlockKind::Paragraph,
        );
        // An item wrapped over two lines is one block.
        assert_block(
            &menu,
            "Antipasto board with cured meats, marinated olives, pecorino and grilled sourdough $26.00",
            1,
            BlockKind::Paragraph,
        );

        // The intro: three lines, one paragraph, the hyphenated "tradi-tional" joined.
        let intro = block_containing(&menu, "Family-run Italian cooking");
        assert_eq!(intro.page, 1);
        assert!(
            intro
                .text
                .ends_with("following traditional recipes from Naples and Liguria."),
            "{intro:?}"
        );

        assert_block(
            &menu,
            "Friday to Sunday: 12pm to 11pm",
            2,
            BlockKind::ListItem,
        );
        assert_block(
            &menu,
            "Closed on Mondays and public holidays",
            2,
            BlockKind::ListItem,
        );
        let corkage = block_containing(&menu, "Corkage is $5 per person.");
        assert_eq!((corkage.page, &corkage.kind), (2, &BlockKind::Paragraph));
        assert!(
            corkage.text.ends_with("set menu at $65 per person."),
            "{corkage:?}"
        );

        // Reading order: the title first, then the intro, the first heading, its first item.
        let order: Vec<&str> = menu
            .blocks
            .iter()
            .take(4)
            .map(|b| b.text.as_str())
            .collect();
        assert_eq!(order[0], "Harbour Trattoria Menu");
        assert_eq!(order[2], "Starters");
        assert_eq!(order[3], "Garlic focaccia with rosemary and sea salt $9.50");
        assert!(
            menu.blocks
                .iter()
                .all(|b| !b.text.is_empty() && b.text == normalize(&b.text))
        );
    }

    #[test]
    fn clinic_docx_has_headings_lists_tables_and_pages() {
        let faq = extract(CLINIC).unwrap();
        assert_eq!(faq.format, Format::Docx);
        assert_eq!(faq.pages, 2);

        assert_block(&faq, "Harbour Dental", 1, BlockKind::Heading(1));
        assert_block(&faq, "Frequently asked questions", 1, BlockKind::Heading(1));
        assert_block(&faq, "Appointments", 1, BlockKind::Heading(2));
        // After the page break (and Word's rendered-break marker, which is the same break).
        assert_block(&faq, "Fees and payment", 2, BlockKind::Heading(2));
        // Style id "ClinicHeading", named "heading 2" in styles.xml.
        assert_block(&faq, "Parking", 2, BlockKind::Heading(2));

        assert_block(
            &faq,
            "A list of the medicines you take",
            1,
            BlockKind::ListItem,
        );
        assert_block(
            &faq,
            "Do you bulk bill children? Yes, children eligible for the Child Dental Benefits Schedule are bulk billed.",
            1,
            BlockKind::Paragraph,
        );
        assert_block(
            &faq,
            "Opening hours: Monday to Friday 8am to 6pm Saturday 9am to 1pm",
            1,
            BlockKind::Paragraph,
        );
        assert_block(
            &faq,
            "Do you offer payment plans? Yes: ask us about Afterpay & Zip for treatment over $500.",
            2,
            BlockKind::Paragraph,
        );
        assert_block(
            &faq,
            "Where can I park? There is free parking behind the clinic on Bay Street.",
            2,
            BlockKind::Paragraph,
        );
        assert!(block_containing(&faq, "Please give us 24 hours notice to cancel").page == 1);

        let rows: Vec<&str> = faq
            .blocks
            .iter()
            .filter(|b| b.kind == BlockKind::TableRow)
            .map(|b| b.text.as_str())
            .collect();
        assert_eq!(
            rows,
            [
                "Service: Check-up and clean, Duration: 45 minutes, Price: $180",
                "Service: Filling, Duration: 30 minutes, Price: $220",
                "Service: Whitening, Duration: 60 minutes, Price: $450",
                "Service: Emergency appointment, Duration: 30 minutes, Price: $150",
                "Service: Mouthguard fitting, Price: $250",
                "Harbour Dental, 12 Bay Street, Harbour Town, 02 9555 0123",
            ]
        );
        assert_block(
            &faq,
            "Service: Filling, Duration: 30 minutes, Price: $220",
            2,
            BlockKind::TableRow,
        );
    }

    #[test]
    fn broken_pdf_is_damaged() {
        assert_eq!(sniff(BROKEN), Some(Format::Pdf));
        let error = extract(BROKEN).unwrap_err();
        assert!(matches!(error, ExtractError::Damaged(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("the file is damaged and could not be read ("),
            "{error}"
        );
    }

    #[test]
    fn truncated_pdfs_are_errors_not_panics() {
        for len in (0..MENU.len()).step_by(97) {
            if let Ok(extracted) = extract(&MENU[..len]) {
                assert!(!extracted.blocks.is_empty());
            }
        }
    }

    #[test]
    fn corrupted_pdfs_are_errors_not_panics() {
        // Flip bytes all through the file, the cross-reference table left intact so the
        // damage reaches the object parser and the content-stream interpreter.
        let xref = MENU.windows(4).rposition(|w| w == b"xref").unwrap();
        for at in (0..xref).step_by(13) {
            let mut bytes = MENU.to_vec();
            bytes[at] ^= 0x5a;
            if let Ok(extracted) = extract(&bytes) {
                assert!(!extracted.blocks.is_empty());
            }
        }
    }

    #[test]
    fn encrypted_pdf_needs_its_password() {
        let error = extract(ENCRYPTED).unwrap_err();
        assert!(matches!(error, ExtractError::Encrypted), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the document is password-protected: remove the password and upload it again"
        );
        // The fixture is genuinely encrypted: with its password the text is there.
        let options = pdf_extract::LoadOptions::with_password("secret");
        let doc = Document::load_mem_with_options(ENCRYPTED, options).unwrap();
        assert!(doc.was_encrypted());
        let mut layout = PageLayout::new(1);
        pdf_extract::output_doc_page(&doc, &mut layout, 1).unwrap();
        let (_, lines) = layout.finish();
        assert_eq!(lines[0].text, "Harbour Trattoria staff rota");
    }

    #[test]
    fn encrypted_office_file_is_encrypted() {
        let mut bytes = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
        bytes.extend(noise(512));
        bytes.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(sniff(&bytes), None);
        assert!(matches!(extract(&bytes), Err(ExtractError::Encrypted)));
    }

    #[test]
    fn scanned_pdf_has_no_text() {
        assert_eq!(sniff(SCANNED), Some(Format::Pdf));
        let error = extract(SCANNED).unwrap_err();
        assert!(matches!(error, ExtractError::NoText), "{error:?}");
    }

    #[test]
    fn text_named_pdf_is_unsupported() {
        assert_eq!(sniff(NOTES), None);
        let error = extract(NOTES).unwrap_err();
        assert!(matches!(error, ExtractError::Unsupported), "{error:?}");
        assert_eq!(error.to_string(), "only PDF and DOCX files are supported");
    }

    #[test]
    fn noise_and_empty_input_are_unsupported() {
        for bytes in [Vec::new(), noise(4096), b"PK\x03\x04".to_vec()] {
            assert_eq!(sniff(&bytes), None);
            assert!(matches!(extract(&bytes), Err(ExtractError::Unsupported)));
        }
    }

    #[test]
    fn pdf_header_is_sniffed_within_the_first_kilobyte() {
        let mut late = vec![b' '; 1000];
        late.extend_from_slice(b"%PDF-1.4");
        assert_eq!(sniff(&late), Some(Format::Pdf));
        let mut too_late = vec![b' '; 1020];
        too_late.extend_from_slice(b"%PDF-1.4");
        assert_eq!(sniff(&too_late), None);
    }

    #[test]
    fn zip_without_a_document_is_not_docx() {
        let zip = package(&[("xl/workbook.xml", "<workbook/>"), ("notes.txt", "hello")]);
        assert_eq!(sniff(&zip), None);
        assert!(matches!(extract(&zip), Err(ExtractError::Unsupported)));
        assert_eq!(sniff(CLINIC), Some(Format::Docx));
    }

    #[test]
    fn docx_nested_tables_and_text_boxes_keep_their_text() {
        let body = r#"
            <w:p><w:r><w:t>Before the box</w:t></w:r><w:r><mc:AlternateContent>
              <mc:Choice><w:drawing><wps:txbx><w:txbxContent>
                <w:p><w:r><w:t>Inside the box</w:t></w:r></w:p>
              </w:txbxContent></wps:txbx></w:drawing></mc:Choice>
              <mc:Fallback><v:textbox><w:txbxContent>
                <w:p><w:r><w:t>Inside the box</w:t></w:r></w:p>
              </w:txbxContent></v:textbox></mc:Fallback>
            </mc:AlternateContent></w:r><w:r><w:t xml:space="preserve"> and after</w:t></w:r></w:p>
            <w:tbl>
              <w:tr><w:tc><w:p><w:r><w:t>Room</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Equipment</w:t></w:r></w:p></w:tc></w:tr>
              <w:tr><w:tc><w:p><w:r><w:t>Surgery 1</w:t></w:r></w:p></w:tc><w:tc>
                <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Chair</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>X-ray</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
                <w:p/>
              </w:tc></w:tr>
            </w:tbl>
            <w:p><w:r><w:delText>deleted</w:delText></w:r><w:r><w:instrText>HYPERLINK "x"</w:instrText></w:r><w:r><w:t>Kept &amp; shown &#x2013; once</w:t></w:r></w:p>
        "#;
        let extracted = extract(&docx(body)).unwrap();
        let texts: Vec<(&BlockKind, &str)> = extracted
            .blocks
            .iter()
            .map(|b| (&b.kind, b.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (&BlockKind::Paragraph, "Inside the box"),
                (&BlockKind::Paragraph, "Before the box and after"),
                (
                    &BlockKind::TableRow,
                    "Room: Surgery 1, Equipment: Chair X-ray"
                ),
                (&BlockKind::Paragraph, "Kept & shown – once"),
            ]
        );
        assert_eq!(extracted.pages, 1);
    }

    #[test]
    fn docx_styles_without_styles_part_and_page_breaks() {
        let body = r#"
            <w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Price list</w:t></w:r></w:p>
            <w:p><w:pPr><w:pStyle w:val="Heading3"/></w:pPr><w:r><w:t>Cleaning</w:t></w:r></w:p>
            <w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Outlined</w:t></w:r></w:p>
            <w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="0"/></w:numPr></w:pPr><w:r><w:t>Numbering removed</w:t></w:r></w:p>
            <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Page one</w:t><w:br w:type="page"/><w:t>page two</w:t></w:r></w:p>
            <w:p><w:r><w:lastRenderedPageBreak/><w:t>Page three, as Word last laid it out</w:t></w:r></w:p>
            <w:p><w:pPr><w:pageBreakBefore/></w:pPr><w:r><w:t>Page four</w:t></w:r></w:p>
            <w:p><w:pPr><w:sectPr><w:type w:val="continuous"/></w:sectPr></w:pPr><w:r><w:t>Still four</w:t></w:r></w:p>
            <w:p><w:pPr><w:sectPr/></w:pPr><w:r><w:t>Section ends</w:t></w:r></w:p>
            <w:p><w:r><w:t>Page five</w:t></w:r></w:p>
        "#;
        let extracted = extract(&docx(body)).unwrap();
        assert_block(&extracted, "Price list", 1, BlockKind::Heading(1));
        assert_block(&extracted, "Cleaning", 1, BlockKind::Heading(3));
        assert_block(&extracted, "Outlined", 1, BlockKind::Heading(2));
        assert_block(&extracted, "Numbering removed", 1, BlockKind::Paragraph);
        // A paragraph is on the page where its text starts.
        assert_block(&extracted, "Page one page two", 1, BlockKind::Paragraph);
        assert_block(
            &extracted,
            "Page three, as Word last laid it out",
            3,
            BlockKind::Paragraph,
        );
        assert_block(&extracted, "Page four", 4, BlockKind::Paragraph);
        assert_block(&extracted, "Still four", 4, BlockKind::Paragraph);
        assert_block(&extracted, "Section ends", 4, BlockKind::Paragraph);
        assert_block(&extracted, "Page five", 5, BlockKind::Paragraph);
        assert_eq!(extracted.pages, 5);
    }

    #[test]
    fn docx_without_text_or_with_broken_xml() {
        let empty = extract(&docx("<w:p/><w:p><w:r><w:t> </w:t></w:r></w:p>")).unwrap_err();
        assert!(matches!(empty, ExtractError::NoText), "{empty:?}");
        let broken = extract(&docx("<w:p><w:r><w:t>unclosed</w:r></w:p>")).unwrap_err();
        assert!(matches!(broken, ExtractError::Damaged(_)), "{broken:?}");
    }

    #[test]
    fn oversized_parts_are_refused() {
        let zip = package(&[("word/document.xml", &"x".repeat(4096))]);
        let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
        assert!(matches!(
            read_part(&mut archive, DOCUMENT_PART, 1024),
            Err(ExtractError::TooLarge)
        ));
        assert_eq!(
            read_part(&mut archive, DOCUMENT_PART, 4096)
                .unwrap()
                .map(|t| t.len()),
            Some(4096)
        );
        assert_eq!(read_part(&mut archive, STYLES_PART, 4096).unwrap(), None);
    }

    fn unsafe_reason(bytes: &[u8]) -> String {
        match extract(bytes) {
            Err(ExtractError::Unsafe(reason)) => reason,
            other => panic!("not refused as unsafe: {other:?}"),
        }
    }

    #[test]
    fn a_form_that_draws_itself_is_refused_not_followed() {
        assert_eq!(unsafe_reason(SELF_DRAWING), "a drawing in it draws itself");
        assert_eq!(
            extract(SELF_DRAWING).unwrap_err().to_string(),
            "the file could not be read safely: a drawing in it draws itself"
        );
    }

    #[test]
    fn ten_thousand_nested_forms_are_refused_at_32() {
        assert_eq!(
            unsafe_reason(NESTED_FORMS),
            "its drawings (form XObjects) are nested more than 32 deep"
        );
    }

    #[test]
    fn a_stream_inflating_to_gigabytes_is_refused_at_64_mib() {
        assert_eq!(
            unsafe_reason(FLATE_BOMB),
            "part of it unpacks to more than 64 MiB"
        );
    }

    #[test]
    fn a_docx_part_that_lies_about_its_size_is_refused() {
        // Its headers claim 4 KiB; the reader stops just past that.
        assert_eq!(
            extract(ZIP_BOMB).unwrap_err().to_string(),
            "the file could not be read safely: part of it unpacks to more than its headers \
             declare"
        );
    }

    #[test]
    fn guard_limits_hold_at_their_edges() {
        use super::super::guard::{MAX_FORM_DEPTH, MAX_STREAM_BYTES, unpack};
        use pdf_extract::{Dictionary, Object, Stream};

        // A chain of exactly MAX_FORM_DEPTH forms is read; one more is refused.
        for (depth, readable) in [(MAX_FORM_DEPTH, true), (MAX_FORM_DEPTH + 1, false)] {
            let result = extract(&form_chain(depth));
            assert_eq!(result.is_ok(), readable, "{depth}: {result:?}");
        }
        // Flate output is capped, and a stream within the cap unpacks whole.
        let deflate = |len: usize| {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&vec![b' '; len]).unwrap();
            let mut dict = Dictionary::new();
            dict.set("Filter", Object::Name(b"FlateDecode".to_vec()));
            Stream::new(dict, encoder.finish().unwrap())
        };
        assert_eq!(unpack(&deflate(1000), 1000).unwrap().len(), 1000);
        assert!(unpack(&deflate(1001), 1000).is_err());
        assert_eq!(
            unpack(&deflate(70 << 20), MAX_STREAM_BYTES)
                .unwrap_err()
                .to_string(),
            "the file could not be read safely: part of it unpacks to more than 64 MiB"
        );
    }

    /// A one-page PDF whose text is drawn by the innermost of `depth` nested forms.
    fn form_chain(depth: usize) -> Vec<u8> {
        let mut objects: Vec<String> = vec![
            "<</Type /Catalog /Pages 2 0 R>>".into(),
            "<</Type /Pages /Kids [3 0 R] /Count 1>>".into(),
            "<</Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R \
             /Resources <</Font <</F1 5 0 R>> /XObject <</X 6 0 R>>>>>>"
                .into(),
            stream_object("", "/X Do"),
            "<</Type /Font /Subtype /Type1 /BaseFont /Helvetica>>".into(),
        ];
        for level in 0..depth {
            let id = 6 + level;
            objects.push(if level + 1 < depth {
                stream_object(
                    &format!(
                        "/Subtype /Form /Resources <</XObject <</X {} 0 R>>>>",
                        id + 1
                    ),
                    "/X Do",
                )
            } else {
                stream_object(
                    "/Subtype /Form /Resources <</Font <</F1 5 0 R>>>>",
                    "BT /F1 12 Tf 72 700 Td (Deep inside) Tj ET",
                )
            });
        }
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).bytes());
        }
        let xref = pdf.len();
        pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
        for offset in offsets {
            pdf.extend(format!("{offset:010} 00000 n \n").bytes());
        }
        pdf.extend(
            format!(
                "trailer\n<</Size {} /Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .bytes(),
        );
        pdf
    }

    fn stream_object(entries: &str, content: &str) -> String {
        format!(
            "<<{entries} /Length {}>>\nstream\n{content}\nendstream",
            content.len()
        )
    }

    #[test]
    fn lines_join_across_hyphenated_breaks() {
        let mut text = "following tradi-".to_string();
        join_line(&mut text, "tional recipes");
        assert_eq!(text, "following traditional recipes");
        let mut text = "a wood-".to_string();
        join_line(&mut text, "Fired oven");
        assert_eq!(text, "a wood- Fired oven");
        let mut text = "costs $5 -".to_string();
        join_line(&mut text, "per person");
        assert_eq!(text, "costs $5 - per person");
        assert_eq!(normalize("  a\u{AD}b \t\n ﬁsh\u{A0} "), "ab fish");
        assert_eq!(list_item("• Tuesday"), Some("Tuesday"));
        assert_eq!(list_item("2. Call us"), Some("2. Call us"));
        assert_eq!(list_item("- dash"), Some("dash"));
        assert_eq!(list_item("-5 degrees"), None);
        assert_eq!(list_item("1998. A year"), None);
    }
}
