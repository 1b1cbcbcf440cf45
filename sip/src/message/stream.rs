//! Cutting a byte stream (TCP) into SIP messages (RFC 3261 18.3, RFC 5626 3.5.1).
//!
//! Over a stream the headers end at the first empty line and Content-Length says where the
//! body ends; without it the receiver cannot find the next message, so the connection is
//! unusable and must be closed. Between messages, a double CRLF is a keep-alive ping
//! (answered with one CRLF, the pong) and a lone CRLF is a pong or stray line break.
//!
//! The framer owns no socket: bytes go in as they arrive ([`StreamFramer::push`]), whole
//! messages come out ([`StreamFramer::next`]). It never holds more than `max_message` bytes
//! of one message.

/// What the framer found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// One whole message: start line, headers, empty line and exactly Content-Length octets
    /// of body. Hand it to [`Endpoint::handle_message`](crate::Endpoint::handle_message).
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive: send [`PONG`] back on the connection.
    Ping,
}

/// The keep-alive answer to a [`StreamItem::Ping`] (RFC 5626 3.5.1).
pub const PONG: &[u8] = b"\r\n";

/// Why the stream cannot be read further; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A message (or its header section so far) is larger than the limit.
    #[error("message larger than {limit} bytes")]
    Oversized {
        /// The limit, [`EndpointConfig::max_message`](crate::EndpointConfig::max_message).
        limit: usize,
    },
    /// A message without Content-Length: its end cannot be found (RFC 3261 18.3).
    #[error("message without Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length is not a number, or appears twice with different values.
    #[error("Content-Length is not a single number")]
    BadContentLength,
}

/// A sans-IO framer for one stream connection.
#[derive(Debug)]
pub struct StreamFramer {
    buffer: Vec<u8>,
    max_message: usize,
    /// Set once an error was reported: the stream is unusable from there on.
    failed: Option<StreamError>,
    /// The header section of the message whose Content-Length was missing or bad.
    rejected: Option<Vec<u8>>,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            buffer: Vec::new(),
            max_message,
            failed: None,
            rejected: None,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buffer.extend_from_slice(data);
        }
    }

    /// Bytes received that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole message or keep-alive, `Ok(None)` when more bytes are needed, or the
    /// error that makes the connection unusable (reported again on every later call).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<StreamItem>, StreamError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        self.next_item().inspect_err(|&e| {
            if matches!(e, StreamError::MissingContentLength | StreamError::BadContentLength) {
                self.rejected = find(&self.buffer, b"\r\n\r\n").map(|end| self.buffer[..end + 4].to_vec());
            }
            self.failed = Some(e);
            self.buffer = Vec::new();
        })
    }

    /// After a [`StreamError::MissingContentLength`] or [`StreamError::BadContentLength`]:
    /// the header section of the message that caused it, for
    /// [`Endpoint::reject_unframed`](crate::Endpoint::reject_unframed) to answer.
    pub fn take_rejected(&mut self) -> Option<Vec<u8>> {
        self.rejected.take()
    }

    fn next_item(&mut self) -> Result<Option<StreamItem>, StreamError> {
        // Line breaks between messages: a ping (CRLFCRLF) or a pong / stray CRLF.
        while self.buffer.starts_with(b"\r\n") || self.buffer.starts_with(b"\n") {
            if self.buffer.starts_with(b"\r\n\r\n") {
                self.buffer.drain(..4);
                return Ok(Some(StreamItem::Ping));
            }
            if b"\r\n\r\n".starts_with(&self.buffer) {
                return Ok(None); // maybe the start of a ping: wait
            }
            let n = if self.buffer.starts_with(b"\r\n") { 2 } else { 1 };
            self.buffer.drain(..n);
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let Some(header_end) = find(&self.buffer, b"\r\n\r\n") else {
            if self.buffer.len() > self.max_message {
                return Err(self.oversized());
            }
            return Ok(None);
        };
        let body_start = header_end + 4;
        let length = content_length(&self.buffer[..header_end])?;
        let total = body_start
            .checked_add(length)
            .filter(|&t| t <= self.max_message)
            .ok_or(self.oversized())?;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let rest = self.buffer.split_off(total);
        let message = std::mem::replace(&mut self.buffer, rest);
        Ok(Some(StreamItem::Message(message)))
    }

    fn oversized(&self) -> StreamError {
        StreamError::Oversized {
            limit: self.max_message,
        }
    }
}

/// The Content-Length of a header section (`Content-Length` or its compact form `l`).
fn content_length(head: &[u8]) -> Result<usize, StreamError> {
    let text = String::from_utf8_lossy(head);
    let mut found: Option<usize> = None;
    // The first line is the start line; folded continuation lines start with white space.
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !(name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")) {
            continue;
        }
        let value: usize = value
            .trim()
            .parse()
            .map_err(|_| StreamError::BadContentLength)?;
        if found.is_some_and(|f| f != value) {
            return Err(StreamError::BadContentLength);
        }
        found = Some(value);
    }
    found.ok_or(StreamError::MissingContentLength)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
        Content-Length: 5\r\n\r\nhello";
    const BYE: &[u8] = b"BYE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";

    fn drain(framer: &mut StreamFramer) -> Result<Vec<StreamItem>, StreamError> {
        let mut items = Vec::new();
        while let Some(item) = framer.next()? {
            items.push(item);
        }
        Ok(items)
    }

    #[test]
    fn a_message_split_at_every_byte_boundary_comes_out_whole() {
        let stream = [OPTIONS, BYE].concat();
        for cut in 0..=stream.len() {
            let mut framer = StreamFramer::new(1024);
            framer.push(&stream[..cut]);
            let mut items = drain(&mut framer).unwrap();
            framer.push(&stream[cut..]);
            items.extend(drain(&mut framer).unwrap());
            assert_eq!(
                items,
                [
                    StreamItem::Message(OPTIONS.to_vec()),
                    StreamItem::Message(BYE.to_vec())
                ],
                "cut at {cut}"
            );
            assert_eq!(framer.pending(), 0);
        }
    }

    #[test]
    fn byte_by_byte_feeding_yields_the_same_messages() {
        let stream = [OPTIONS, b"\r\n\r\n", BYE].concat();
        let mut framer = StreamFramer::new(1024);
        let mut items = Vec::new();
        for b in &stream {
            framer.push(std::slice::from_ref(b));
            items.extend(drain(&mut framer).unwrap());
        }
        assert_eq!(
            items,
            [
                StreamItem::Message(OPTIONS.to_vec()),
                StreamItem::Ping,
                StreamItem::Message(BYE.to_vec())
            ]
        );
    }

    #[test]
    fn two_messages_in_one_read() {
        let mut framer = StreamFramer::new(1024);
        framer.push(&[BYE, OPTIONS].concat());
        assert_eq!(
            drain(&mut framer).unwrap(),
            [
                StreamItem::Message(BYE.to_vec()),
                StreamItem::Message(OPTIONS.to_vec())
            ]
        );
    }

    #[test]
    fn double_crlf_is_a_ping_and_a_lone_crlf_is_skipped() {
        let mut framer = StreamFramer::new(1024);
        framer.push(b"\r\n\r\n\r\n\r\n");
        assert_eq!(
            drain(&mut framer).unwrap(),
            [StreamItem::Ping, StreamItem::Ping]
        );
        // A pong (one CRLF) waits until it is clearly not the start of a ping.
        framer.push(b"\r\n");
        assert_eq!(drain(&mut framer).unwrap(), []);
        framer.push(BYE);
        assert_eq!(
            drain(&mut framer).unwrap(),
            [StreamItem::Message(BYE.to_vec())]
        );
    }

    #[test]
    fn a_message_over_the_limit_is_an_error_and_the_stream_stays_failed() {
        let mut framer = StreamFramer::new(OPTIONS.len() - 1);
        framer.push(OPTIONS);
        let oversized = StreamError::Oversized {
            limit: OPTIONS.len() - 1,
        };
        assert_eq!(framer.next(), Err(oversized));
        framer.push(BYE);
        assert_eq!(framer.next(), Err(oversized));
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn headers_that_never_end_are_cut_at_the_limit() {
        let mut framer = StreamFramer::new(64);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\n");
        assert_eq!(framer.next(), Ok(None));
        framer.push(&[b'X'; 64]);
        assert_eq!(framer.next(), Err(StreamError::Oversized { limit: 64 }));
    }

    #[test]
    fn a_content_length_past_the_limit_fails_before_the_body_arrives() {
        let mut framer = StreamFramer::new(1024);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n");
        assert_eq!(framer.next(), Err(StreamError::Oversized { limit: 1024 }));
    }

    #[test]
    fn missing_or_bad_content_length_makes_the_stream_unusable() {
        let mut framer = StreamFramer::new(1024);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\nv=0\r\n");
        assert_eq!(framer.next(), Err(StreamError::MissingContentLength));
        let mut framer = StreamFramer::new(1024);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n");
        assert_eq!(framer.next(), Err(StreamError::BadContentLength));
        let mut framer = StreamFramer::new(1024);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab");
        assert_eq!(framer.next(), Err(StreamError::BadContentLength));
    }

    #[test]
    fn a_body_shorter_than_its_content_length_waits_for_more() {
        let mut framer = StreamFramer::new(1024);
        framer.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(framer.next(), Ok(None));
        assert!(framer.pending() > 0);
    }
}
