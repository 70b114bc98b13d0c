//! Server-sent events, reduced to what OpenAI streams use: `data:` lines, one JSON object per
//! event, ended by `data: [DONE]`. Bytes arrive in arbitrary pieces (a JSON object can be split
//! across TCP reads, or several events can share one), so lines are reassembled here before
//! anyone parses them.

/// One complete event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The payload of a `data:` event (several `data:` lines of one event joined by `\n`).
    Data(String),
    /// `data: [DONE]`: the server says the stream is complete.
    Done,
}

/// Splits a byte stream into events. Feed it chunks as they arrive; it returns the events that
/// each chunk completed.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes after the last newline seen: the start of a line still arriving. Kept as bytes so a
    /// multi-byte UTF-8 character split between two reads is reassembled, not garbled.
    pending: Vec<u8>,
    /// `data:` lines of the event being read (an event ends at a blank line).
    data: Vec<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes one chunk of the body; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if let Some(event) = self.line(line) {
                events.push(event);
            }
        }
        events
    }

    /// Ends the body: an event whose closing blank line never came is still delivered, since
    /// some servers close the connection right after the last `data:` line.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let line = String::from_utf8_lossy(&rest).into_owned();
            if let Some(event) = self.line(line.trim_end_matches('\r')) {
                events.push(event);
            }
        }
        events.extend(self.dispatch());
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // a comment, used by servers as a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            self.data.push(value.to_owned());
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        if data.trim() == "[DONE]" {
            Some(SseEvent::Done)
        } else {
            Some(SseEvent::Data(data))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(s.to_owned())
    }

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            d.push(b"1}\n\ndata: {\"b\":2}\n\n"),
            vec![data("{\"a\":1}"), data("{\"b\":2}")]
        );
        assert_eq!(d.push(b"data: [DONE]\n\n"), vec![SseEvent::Done]);
    }

    #[test]
    fn crlf_comments_and_other_fields_are_handled() {
        let mut d = SseDecoder::new();
        let events = d.push(b": ping\r\n\r\nevent: message\r\nid: 3\r\ndata:{\"x\":1}\r\n\r\n");
        assert_eq!(events, vec![data("{\"x\":1}")]);
    }

    #[test]
    fn a_utf8_character_split_between_reads_survives() {
        let text = "data: 你好\n\n".as_bytes();
        let mut d = SseDecoder::new();
        assert!(d.push(&text[..8]).is_empty());
        assert_eq!(d.push(&text[8..]), vec![data("你好")]);
    }

    #[test]
    fn a_last_event_without_blank_line_is_delivered_at_the_end() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: {\"z\":0}").is_empty());
        assert_eq!(d.finish(), vec![data("{\"z\":0}")]);
    }
}
