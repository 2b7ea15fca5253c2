//! Checks a PDF against the ways a file can make the text reader exhaust its process, before
//! `pdf-extract` walks it. A second line of defence: the reader runs in a child process under
//! limits anyway (see [`super::sandbox`]); these checks turn the known attacks into a clear
//! error at once instead of a crash or a kill after seconds.
//!
//! - **Streams that unpack to an enormous size** ("Flate bombs": a few KB that inflate to
//!   gigabytes, often through two `FlateDecode` filters in a row). lopdf inflates without a
//!   limit and offers no setting for one, so every stream the reader may unpack is first
//!   unpacked here with a cap ([`MAX_STREAM_BYTES`] a stream, [`MAX_TOTAL_BYTES`] in all).
//!   Object streams are unpacked by lopdf while the file loads, so they are checked by
//!   [`load_filter`], lopdf's only hook into loading; the rest once the file is loaded.
//!   Images are left to the child's memory limit: the reader never looks inside them unless a
//!   page draws one with `Do`, and a legitimate scan can unpack to more than the cap.
//! - **Drawings that draw themselves**: `pdf-extract` interprets a form XObject named by `Do`
//!   by recursing into its content, with no depth limit, so `/X1 Do` inside X1 recursed until
//!   the stack overflowed, and a chain of 10,000 nested forms did the same. Each page's graph of
//!   form XObjects is walked here without recursion: a cycle, nesting deeper than
//!   [`MAX_FORM_DEPTH`], more than [`MAX_DRAWS_PER_PAGE`] form draws or more than
//!   [`MAX_PAGE_BYTES`] of content interpreted for one page refuse the file.
//! - **A page whose `/Parent` chain loops** (`pdf-extract` follows it recursively to find
//!   inherited resources).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use flate2::read::{DeflateDecoder, ZlibDecoder};
use pdf_extract::content::Content;
use pdf_extract::{Dictionary, Document, Object, ObjectId, Stream};

use super::extract::ExtractError;

/// The most one stream may unpack to.
pub const MAX_STREAM_BYTES: u64 = 64 * 1024 * 1024;
/// The most all checked streams together may unpack to.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
/// The deepest nesting of form XObjects a page may use (real documents use a handful).
pub const MAX_FORM_DEPTH: usize = 32;
/// The most form XObjects one page may draw, counting every draw of every nested form.
pub const MAX_DRAWS_PER_PAGE: u64 = 10_000;
/// The most content (page and forms, each counted as often as it is drawn) one page may
/// have interpreted.
pub const MAX_PAGE_BYTES: u64 = 256 * 1024 * 1024;
/// Distinct (form, resources) pairs walked in one document.
const MAX_FORMS: usize = 100_000;
/// Set by [`load_filter`] on an object stream it emptied.
const OVERSIZED_MARK: &[u8] = b"CallGeniusOversized";

fn unsafe_file(reason: &str) -> ExtractError {
    ExtractError::Unsafe(reason.to_string())
}

fn oversized() -> ExtractError {
    unsafe_file("part of it unpacks to more than 64 MiB")
}

/// lopdf's load filter: an object stream (which lopdf unpacks as it loads) that would unpack to
/// more than [`MAX_STREAM_BYTES`] is emptied and marked, and [`check`] refuses the file.
///
/// lopdf keeps the object it passed in for top-level objects and the returned one for objects
/// inside object streams, so both carry the same value.
pub fn load_filter(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    if let Ok(stream) = object.as_stream_mut()
        && stream.dict.has_type(b"ObjStm")
        && unpack(stream, MAX_STREAM_BYTES).is_err()
    {
        stream.dict.remove(b"Filter");
        stream.dict.set(OVERSIZED_MARK, true);
        stream.set_content(Vec::new());
    }
    Some((id, object.clone()))
}

/// Refuses a loaded PDF that would make the reader unpack, recurse or draw without bound.
pub fn check(doc: &Document) -> Result<(), ExtractError> {
    let sizes = stream_sizes(doc)?;
    let mut forms = FormWalk::new(doc, &sizes);
    for page in doc.get_pages().into_values() {
        parent_chain(doc, page)?;
        let content: u64 = doc
            .get_page_contents(page)
            .iter()
            .map(|id| sizes.get(id).copied().unwrap_or(0))
            .fold(0, u64::saturating_add);
        if content > MAX_STREAM_BYTES {
            return Err(oversized());
        }
        // Bounded now: every content stream was unpacked within the cap above.
        let data = doc.get_page_content(page).unwrap_or_default();
        let cost = forms.page(page, &data)?;
        if cost.draws > MAX_DRAWS_PER_PAGE {
            return Err(unsafe_file(
                "one page draws more than 10,000 drawings (form XObjects)",
            ));
        }
        if cost.bytes.saturating_add(content) > MAX_PAGE_BYTES {
            return Err(unsafe_file(
                "one page draws more than 256 MiB of content through its drawings",
            ));
        }
    }
    Ok(())
}

/// The unpacked size of every stream the reader may unpack (all but images, embedded files,
/// metadata and cross-reference streams), each within [`MAX_STREAM_BYTES`].
fn stream_sizes(doc: &Document) -> Result<HashMap<ObjectId, u64>, ExtractError> {
    let mut sizes = HashMap::new();
    let mut total = 0u64;
    for (&id, object) in &doc.objects {
        let Ok(stream) = object.as_stream() else {
            continue;
        };
        if stream.dict.get(OVERSIZED_MARK).is_ok() {
            return Err(oversized());
        }
        let skipped = is_image(stream)
            || ["EmbeddedFile", "Metadata", "XRef", "ObjStm"]
                .iter()
                .any(|kind| stream.dict.has_type(kind.as_bytes()));
        if skipped {
            continue;
        }
        let size = unpack(stream, MAX_STREAM_BYTES)?.len() as u64;
        total = total.saturating_add(size);
        if total > MAX_TOTAL_BYTES {
            return Err(unsafe_file("its parts unpack to more than 512 MiB in all"));
        }
        sizes.insert(id, size);
    }
    Ok(sizes)
}

fn is_image(stream: &Stream) -> bool {
    stream
        .dict
        .get(b"Subtype")
        .and_then(Object::as_name)
        .is_ok_and(|name| name == b"Image")
}

/// A stream's content as lopdf would unpack it (the raw bytes where lopdf gives up, as
/// `pdf-extract` then uses them), refusing it once any filter's output passes `limit`.
pub fn unpack(stream: &Stream, limit: u64) -> Result<Vec<u8>, ExtractError> {
    let Ok(filters) = stream.filters() else {
        return Ok(stream.content.clone());
    };
    let mut data = stream.content.clone();
    for filter in filters {
        let next = match filter {
            b"FlateDecode" => inflate(&data, limit)?,
            b"LZWDecode" => unlzw(&data, stream.dict.get(b"DecodeParms").ok(), limit)?,
            b"ASCII85Decode" => {
                // At most four bytes out for each byte in ("z").
                let mut dict = Dictionary::new();
                dict.set("Filter", Object::Name(b"ASCII85Decode".to_vec()));
                let single = Stream::new(dict, data);
                match single.decompressed_content() {
                    Ok(decoded) => decoded,
                    Err(_) => return Ok(stream.content.clone()),
                }
            }
            // lopdf unpacks nothing else: the reader gets the stored bytes.
            _ => return Ok(stream.content.clone()),
        };
        if next.len() as u64 > limit {
            return Err(oversized());
        }
        data = next;
    }
    Ok(data)
}

/// zlib, or raw deflate after the two-byte header when zlib fails at once (as lopdf does).
fn inflate(input: &[u8], limit: u64) -> Result<Vec<u8>, ExtractError> {
    let mut out = Vec::new();
    let zlib = ZlibDecoder::new(input)
        .take(limit + 1)
        .read_to_end(&mut out);
    if zlib.is_err() && out.is_empty() && input.len() > 2 {
        let _ = DeflateDecoder::new(&input[2..])
            .take(limit + 1)
            .read_to_end(&mut out);
    }
    if out.len() as u64 > limit {
        return Err(oversized());
    }
    Ok(out)
}

fn unlzw(input: &[u8], params: Option<&Object>, limit: u64) -> Result<Vec<u8>, ExtractError> {
    use weezl::{BitOrder, decode::Decoder};
    let early_change = params
        .and_then(|p| p.as_dict().ok())
        .and_then(|p| p.get(b"EarlyChange").ok())
        .and_then(|v| v.as_i64().ok())
        .is_none_or(|v| v != 0);
    let mut decoder = if early_change {
        Decoder::with_tiff_size_switch(BitOrder::Msb, 8)
    } else {
        Decoder::new(BitOrder::Msb, 8)
    };
    let mut out = Capped {
        data: Vec::new(),
        limit,
    };
    let status = decoder.into_stream(&mut out).decode_all(input).status;
    if status.is_err() && out.data.len() as u64 > limit {
        return Err(oversized());
    }
    Ok(out.data)
}

/// A writer that fails once more than `limit` bytes were written to it.
struct Capped {
    data: Vec<u8>,
    limit: u64,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.extend_from_slice(buf);
        if self.data.len() as u64 > self.limit {
            return Err(io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A page's `/Parent` chain must end (`pdf-extract` follows it recursively).
fn parent_chain(doc: &Document, page: ObjectId) -> Result<(), ExtractError> {
    let mut seen = HashSet::from([page]);
    let mut current = page;
    while let Ok(parent) = doc
        .get_dictionary(current)
        .and_then(|d| d.get(b"Parent"))
        .and_then(Object::as_reference)
    {
        if !seen.insert(parent) {
            return Err(unsafe_file("its page tree loops back on itself"));
        }
        current = parent;
    }
    Ok(())
}

/// Where a form's names are looked up: its own `/Resources`, else those of whatever drew it
/// (as `pdf-extract` does), so the same form can mean different things in two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Page(ObjectId),
    Form(ObjectId),
}

/// A form XObject as drawn in a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Node {
    form: ObjectId,
    scope: Scope,
}

/// What drawing a page or form costs, its nested forms included.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Forms drawn, every draw of every nested form counted.
    draws: u64,
    /// Content bytes interpreted for those draws.
    bytes: u64,
    /// Deepest nesting below.
    depth: usize,
}

impl Cost {
    /// One more draw of a form costing `child` that is `size` bytes itself.
    fn add_draw(&mut self, child: Cost, size: u64) {
        self.draws = self.draws.saturating_add(child.draws).saturating_add(1);
        self.bytes = self.bytes.saturating_add(child.bytes).saturating_add(size);
        self.depth = self.depth.max(child.depth + 1);
    }
}

enum State {
    /// On the walk's stack: reaching it again is a cycle.
    Open,
    Done(Cost),
}

/// Walks form XObject graphs depth-first with an explicit stack, remembering each form's cost,
/// so that shared forms are walked once and no recursion depends on the file.
struct FormWalk<'a> {
    doc: &'a Document,
    sizes: &'a HashMap<ObjectId, u64>,
    states: HashMap<Node, State>,
}

/// A form being walked: the forms its content draws, one entry per `Do`, and the next to visit.
struct Frame {
    node: Option<Node>,
    children: Vec<Node>,
    next: usize,
    cost: Cost,
}

impl<'a> FormWalk<'a> {
    fn new(doc: &'a Document, sizes: &'a HashMap<ObjectId, u64>) -> Self {
        Self {
            doc,
            sizes,
            states: HashMap::new(),
        }
    }

    /// The cost of drawing a page whose (unpacked) content is `content`.
    fn page(&mut self, page: ObjectId, content: &[u8]) -> Result<Cost, ExtractError> {
        let scope = Scope::Page(page);
        let mut stack = vec![Frame {
            node: None,
            children: self.draws(content, scope),
            next: 0,
            cost: Cost::default(),
        }];
        while let Some(frame) = stack.last_mut() {
            if let Some(&child) = frame.children.get(frame.next) {
                frame.next += 1;
                match self.states.get(&child) {
                    Some(State::Done(cost)) => {
                        let (cost, size) = (*cost, self.size(child.form));
                        frame.cost.add_draw(cost, size);
                    }
                    Some(State::Open) => {
                        return Err(unsafe_file("a drawing in it draws itself"));
                    }
                    None => {
                        if stack.len() > MAX_FORM_DEPTH {
                            return Err(unsafe_file(
                                "its drawings (form XObjects) are nested more than 32 deep",
                            ));
                        }
                        if self.states.len() >= MAX_FORMS {
                            return Err(unsafe_file("it has more than 100,000 drawings"));
                        }
                        self.states.insert(child, State::Open);
                        let children = self.form_draws(child);
                        stack.push(Frame {
                            node: Some(child),
                            children,
                            next: 0,
                            cost: Cost::default(),
                        });
                    }
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            let Some(node) = done.node else {
                // The page itself: the walk is over.
                return Ok(done.cost);
            };
            self.states.insert(node, State::Done(done.cost));
            if let Some(parent) = stack.last_mut() {
                parent.cost.add_draw(done.cost, self.size(node.form));
            }
        }
        Ok(Cost::default())
    }

    fn size(&self, form: ObjectId) -> u64 {
        self.sizes.get(&form).copied().unwrap_or(0)
    }

    /// The forms a form's content draws.
    fn form_draws(&self, node: Node) -> Vec<Node> {
        let Ok(stream) = self.doc.get_object(node.form).and_then(Object::as_stream) else {
            return Vec::new();
        };
        // Sizes were checked for every stream but images, and images are not followed.
        match unpack(stream, MAX_STREAM_BYTES) {
            Ok(content) => self.draws(&content, node.scope),
            Err(_) => Vec::new(),
        }
    }

    /// The form XObjects that `Do` operators in `content` draw, looked up in `scope`'s
    /// resources; images are drawn without interpreting anything and are left out.
    fn draws(&self, content: &[u8], scope: Scope) -> Vec<Node> {
        let Ok(content) = Content::decode(content) else {
            return Vec::new();
        };
        let Some(xobjects) = self
            .resources(scope)
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|x| self.doc.dereference(x).ok())
            .and_then(|(_, x)| x.as_dict().ok())
        else {
            return Vec::new();
        };
        content
            .operations
            .iter()
            .filter(|op| op.operator == "Do")
            .filter_map(|op| op.operands.first()?.as_name().ok())
            .filter_map(|name| xobjects.get(name).ok()?.as_reference().ok())
            .filter_map(|form| {
                let stream = self.doc.get_object(form).ok()?.as_stream().ok()?;
                if is_image(stream) {
                    return None;
                }
                let own = self
                    .dictionary(stream.dict.get(b"Resources").ok())
                    .is_some();
                Some(Node {
                    form,
                    scope: if own { Scope::Form(form) } else { scope },
                })
            })
            .collect()
    }

    fn resources(&self, scope: Scope) -> Option<&'a Dictionary> {
        match scope {
            Scope::Page(page) => {
                // Inherited through the page tree, as the reader looks them up.
                let mut current = page;
                let mut seen = HashSet::new();
                loop {
                    let dict = self.doc.get_dictionary(current).ok()?;
                    if let Some(resources) = self.dictionary(dict.get(b"Resources").ok()) {
                        return Some(resources);
                    }
                    current = dict.get(b"Parent").ok()?.as_reference().ok()?;
                    if !seen.insert(current) {
                        return None;
                    }
                }
            }
            Scope::Form(form) => {
                let stream = self.doc.get_object(form).ok()?.as_stream().ok()?;
                self.dictionary(stream.dict.get(b"Resources").ok())
            }
        }
    }

    fn dictionary(&self, object: Option<&'a Object>) -> Option<&'a Dictionary> {
        let (_, object) = self.doc.dereference(object?).ok()?;
        object.as_dict().ok()
    }
}
