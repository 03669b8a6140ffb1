//! An incremental Server-Sent Events parser (WHATWG HTML §9.2.6), fed
//! whatever chunks the connection gives, with bounded lines and events.

use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field, `message` when there was none.
    pub(crate) kind: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The last event ID as of this event (the stream's, not only this
    /// event's own `id:`).
    pub(crate) id: String,
}

/// What one complete line or block gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Event(Event),
    /// A valid `retry:` field, in milliseconds.
    Retry(u64),
    /// A comment line (the server's heartbeat).
    Comment,
}

/// The stream broke the bounds: the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseError {
    LineTooLong(usize),
    EventTooLarge(usize),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong(limit) => {
                write!(f, "a line of the feed is longer than {limit} bytes")
            }
            Self::EventTooLarge(limit) => {
                write!(
                    f,
                    "an event of the feed has more than {limit} bytes of data"
                )
            }
        }
    }
}

/// The parser's state between chunks.
#[derive(Debug)]
pub(crate) struct Parser {
    max_line: usize,
    line: Vec<u8>,
    /// The last chunk ended in CR: an LF starting the next one belongs to it.
    after_cr: bool,
    /// Before the first byte: a UTF-8 BOM there is dropped.
    at_start: bool,
    kind: String,
    data: String,
    id_buffer: String,
    last_id: String,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Parser {
    /// A parser for a stream resumed from `last_id` (empty for none), with
    /// lines (and each event's data) of at most `max_line` bytes.
    pub(crate) fn new(last_id: &str, max_line: usize) -> Self {
        Self {
            max_line,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            kind: String::new(),
            data: String::new(),
            id_buffer: last_id.to_owned(),
            last_id: last_id.to_owned(),
        }
    }

    /// The last event ID as of the last dispatched block.
    pub(crate) fn last_id(&self) -> &str {
        &self.last_id
    }

    /// Parses `chunk`, appending what its complete lines gave to `out`.
    pub(crate) fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        if self.at_start {
            // The BOM may itself be split across chunks: wait for 3 bytes.
            let have = self.line.len() + chunk.len();
            if have < BOM.len() && BOM.starts_with(&[&self.line[..], chunk].concat()) {
                self.line.extend_from_slice(chunk);
                return Ok(());
            }
            self.at_start = false;
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            let rest = head.strip_prefix(BOM).unwrap_or(&head).to_vec();
            return self.push_bytes(&rest, out);
        }
        // An empty chunk leaves a pending CR pending.
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.push_bytes(chunk, out)
    }

    fn push_bytes(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&chunk[..end])?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out)?;
            self.line = line;
            self.line.clear();
            let cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.extend_line(chunk)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Item>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            out.push(Item::Comment);
            return Ok(());
        }
        // Terminators are ASCII, so a line holds whole UTF-8 sequences:
        // decoding line by line is decoding the stream.
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.kind),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    return Err(SseError::EventTooLarge(self.max_line));
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // All digits: only an overflow can fail.
                out.push(Item::Retry(value.parse().unwrap_or(u64::MAX)));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.last_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.kind.clear();
            return;
        }
        self.data.pop();
        let kind = if self.kind.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.kind)
        };
        out.push(Item::Event(Event {
            kind,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(chunks: &[&[u8]], max_line: usize) -> Result<Vec<Item>, SseError> {
        let mut parser = Parser::new("", max_line);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn parse(text: &str) -> Vec<Item> {
        parse_chunks(&[text.as_bytes()], 1024).unwrap()
    }

    fn event(kind: &str, data: &str, id: &str) -> Item {
        Item::Event(Event {
            kind: kind.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    #[test]
    fn the_whatwg_rules() {
        // The examples of WHATWG HTML §9.2.6, and the edges around them.
        assert_eq!(
            parse("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [event("message", "YHOO\n+2\n10", "")]
        );
        assert_eq!(
            parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
            [
                Item::Comment,
                event("message", "first event", "1"),
                event("message", "second event", ""),
                event("message", " third event", ""),
            ]
        );
        assert_eq!(
            parse("data\n\ndata\ndata\n\ndata:"),
            [event("message", "", ""), event("message", "\n", "")]
        );
        assert_eq!(
            parse("event: revoked\ndata: {}\nid: 7\n\nevent: ready\ndata: {}\n\n"),
            [event("revoked", "{}", "7"), event("ready", "{}", "7")]
        );
        // An id with NUL is ignored; unknown fields too; the event type
        // does not outlive its block.
        assert_eq!(
            parse("id: a\0b\nfoo: bar\nevent: x\n\ndata: d\n\n"),
            [event("message", "d", "")]
        );
        // An id-only block moves the last event ID without an event.
        let mut p = Parser::new("3", 64);
        let mut out = Vec::new();
        p.push(b"id: 4\n\n", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(p.last_id(), "4");
        // Without a blank line, nothing is dispatched.
        let mut p = Parser::new("3", 64);
        p.push(b"data: x\nid: 5\n", &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(p.last_id(), "3");
    }

    #[test]
    fn an_empty_chunk_keeps_a_pending_cr() {
        let chunks: [&[u8]; 4] = [b"event: x\r", b"", b"\ndata: y\r", b"\n\n"];
        assert_eq!(parse_chunks(&chunks, 64).unwrap(), [event("x", "y", "")]);
    }

    #[test]
    fn retry_is_digits_only() {
        assert_eq!(parse("retry: 1500\n"), [Item::Retry(1500)]);
        assert!(parse("retry: 15s\nretry:\nretry: -1\n").is_empty());
    }

    #[test]
    fn a_bom_is_dropped_once_even_split() {
        let bom = "\u{feff}".as_bytes();
        let chunks: [&[u8]; 3] = [&bom[..1], &bom[1..], b"data: x\n\n"];
        assert_eq!(
            parse_chunks(&chunks, 64).unwrap(),
            [event("message", "x", "")]
        );
        let twice = [bom, bom, b"data: x\n\n"].concat();
        // The second BOM is part of a field name: an unknown field.
        assert!(parse_chunks(&[&twice], 64).unwrap().is_empty());
    }

    #[test]
    fn lines_and_events_are_bounded() {
        let long = format!("data: {}\n\n", "x".repeat(100));
        assert_eq!(
            parse_chunks(&[long.as_bytes()], 64),
            Err(SseError::LineTooLong(64))
        );
        // A long line split over many chunks, without a terminator yet.
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&b"xxxxxxxxxx"[..], 7).collect();
        assert_eq!(parse_chunks(&chunks, 64), Err(SseError::LineTooLong(64)));
        let many = "data: xxxxxxxxxx\n".repeat(10);
        assert_eq!(
            parse_chunks(&[many.as_bytes()], 64),
            Err(SseError::EventTooLarge(64))
        );
        // At the bound exactly, fine.
        let exact = format!("data: {}\n\n", "x".repeat(58));
        assert_eq!(parse_chunks(&[exact.as_bytes()], 64).unwrap().len(), 1);
    }

    /// One field line of a block, as the generator makes them.
    #[derive(Debug, Clone)]
    enum Line {
        Event(String),
        Data(String),
        Id(String),
        Retry(u32),
        Comment(String),
        Unknown(String),
    }

    fn value() -> impl Strategy<Value = String> {
        // No terminators (they end a line), otherwise anything: colons,
        // leading spaces, NUL, non-ASCII.
        proptest::string::string_regex("[ -~\u{0}é€😀:]{0,12}").unwrap()
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            value().prop_map(Line::Event),
            value().prop_map(Line::Data),
            value().prop_map(Line::Data),
            value().prop_map(Line::Id),
            any::<u32>().prop_map(Line::Retry),
            value().prop_map(Line::Comment),
            value().prop_map(Line::Unknown),
        ]
    }

    fn render(blocks: &[Vec<Line>], endings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = 0;
        let mut end = |out: &mut Vec<u8>, empty: bool| {
            let ending: &[u8] = match endings[n % endings.len()] % 3 {
                // After a CR, an empty line ended by LF would read as the
                // CR's own CRLF: a different stream, not a different
                // chunking.
                0 if empty && out.last() == Some(&b'\r') => b"\r\n",
                0 => b"\n",
                1 => b"\r",
                _ => b"\r\n",
            };
            out.extend_from_slice(ending);
            n += 1;
        };
        for block in blocks {
            for line in block {
                let text = match line {
                    Line::Event(v) => format!("event: {v}"),
                    Line::Data(v) => format!("data:{v}"),
                    Line::Id(v) => format!("id: {v}"),
                    Line::Retry(v) => format!("retry: {v}"),
                    Line::Comment(v) => format!(":{v}"),
                    // `x-` keeps it from being a known field.
                    Line::Unknown(v) => format!("x-{}", v.replace(':', "")),
                };
                out.extend_from_slice(text.as_bytes());
                end(&mut out, false);
            }
            end(&mut out, true);
        }
        out
    }

    /// What the blocks mean, by the rules, independently of the parser.
    fn expected(blocks: &[Vec<Line>]) -> Vec<Item> {
        let mut items = Vec::new();
        let mut id = String::new();
        for block in blocks {
            let (mut kind, mut data): (String, Option<String>) = (String::new(), None);
            for line in block {
                match line {
                    // Rendered `event: {v}` and `id: {v}`: one space stripped.
                    Line::Event(v) => v.clone_into(&mut kind),
                    Line::Data(v) => {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        data = Some(match data {
                            Some(d) => format!("{d}\n{v}"),
                            None => v.to_owned(),
                        });
                    }
                    Line::Id(v) if !v.contains('\0') => v.clone_into(&mut id),
                    Line::Retry(v) => items.push(Item::Retry(u64::from(*v))),
                    Line::Comment(_) => items.push(Item::Comment),
                    Line::Id(_) | Line::Unknown(_) => {}
                }
            }
            if let Some(data) = data {
                let kind = if kind.is_empty() {
                    "message".into()
                } else {
                    kind
                };
                items.push(event(&kind, &data, &id));
            }
        }
        items
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_chunking_and_any_line_endings_give_the_same_events(
            blocks in prop::collection::vec(prop::collection::vec(line(), 0..5), 0..8),
            endings in prop::collection::vec(any::<u8>(), 1..16),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let bytes = render(&blocks, &endings);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            let chunks: Vec<&[u8]> = at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let whole = parse_chunks(&[&bytes], 1 << 16).unwrap();
            let chunked = parse_chunks(&chunks, 1 << 16).unwrap();
            prop_assert_eq!(&chunked, &whole);
            prop_assert_eq!(&whole, &expected(&blocks));
            // Byte by byte, the worst chunking.
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(&parse_chunks(&bytewise, 1 << 16).unwrap(), &whole);
        }
    }
}
