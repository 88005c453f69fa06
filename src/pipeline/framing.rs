//! Stage: the request head's framing and Host, checked before anything else. hyper
//! parses HTTP/1.1 leniently where RFC 9112 lets a server choose, and a proxy must choose
//! strictly (../shared/hardening.md): a message that two parsers could frame differently
//! is refused with 400 and never forwarded, and the connection is closed after the answer.
//!
//! - Content-Length together with Transfer-Encoding (RFC 9112 §6.1: "ought to be
//!   handled as an error"; HAProxy and Envoy refuse it);
//! - Content-Length sent twice, or as a list (`5, 5`), even with equal values;
//! - any Transfer-Encoding other than exactly one `chunked`;
//! - `_` in a header name (nginx and Envoy's edge profile drop or refuse them: a back
//!   end that maps `_` to `-` would see a header we never checked);
//! - HTTP/1.1 without exactly one valid Host (RFC 9112 §3.2), or a Host that disagrees
//!   with an absolute-form request target.
//!
//! hyper resolves two of these shapes before a handler can see them: it drops
//! Content-Length when Transfer-Encoding is present, and keeps one of several equal
//! Content-Lengths. [`HeadScanner`] therefore watches the raw bytes of an HTTP/1
//! connection as hyper reads them, and gives one verdict per request head, in order.

use http::header::{self, HeaderMap};
use http::{Uri, Version};

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
    UnsupportedTransferEncoding,
    UnderscoreInHeaderName,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    /// The raw-byte scanner and hyper disagree about where a request starts (a parser
    /// differential, or more pipelined requests than the scanner keeps verdicts for).
    FramingMismatch,
}

impl Malformed {
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Malformed::DuplicateContentLength => "duplicate_content_length",
            Malformed::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Malformed::UnderscoreInHeaderName => "underscore_in_header_name",
            Malformed::MissingHost => "missing_host",
            Malformed::DuplicateHost => "duplicate_host",
            Malformed::InvalidHost => "invalid_host",
            Malformed::FramingMismatch => "framing_mismatch",
        }
    }
}

/// Checks a request head. `version` is the request's HTTP version (HTTP/2 carries no
/// Transfer-Encoding and its authority in the URI).
pub fn check(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), Malformed> {
    let mut content_lengths = 0usize;
    let mut transfer_encodings = 0usize;
    let mut hosts = 0usize;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            content_lengths += 1;
            if value.as_bytes().contains(&b',') {
                return Err(Malformed::DuplicateContentLength);
            }
        } else if name == header::TRANSFER_ENCODING {
            transfer_encodings += 1;
            if !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
            {
                return Err(Malformed::UnsupportedTransferEncoding);
            }
        } else if name == header::HOST {
            hosts += 1;
            if !valid_host(value.as_bytes()) {
                return Err(Malformed::InvalidHost);
            }
        } else if name.as_str().as_bytes().contains(&b'_') {
            return Err(Malformed::UnderscoreInHeaderName);
        }
    }
    if content_lengths > 1 {
        return Err(Malformed::DuplicateContentLength);
    }
    if transfer_encodings > 1 {
        return Err(Malformed::UnsupportedTransferEncoding);
    }
    if transfer_encodings > 0 && content_lengths > 0 {
        return Err(Malformed::ContentLengthWithTransferEncoding);
    }
    if hosts > 1 {
        return Err(Malformed::DuplicateHost);
    }
    if version == Version::HTTP_11 {
        match (hosts, uri.authority()) {
            (0, _) => return Err(Malformed::MissingHost),
            // An absolute-form target wins over Host (RFC 9112 §3.2.2); a proxy that
            // routed on one and forwarded the other would be confused, so they must agree.
            (_, Some(authority)) => {
                let host = headers.get(header::HOST).map(|h| h.as_bytes());
                if host.map(|h| !h.eq_ignore_ascii_case(authority.as_str().as_bytes()))
                    == Some(true)
                {
                    return Err(Malformed::InvalidHost);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `host [ ":" port ]` with a reg-name, an IPv4 address or a bracketed IPv6 literal
/// (RFC 3986 §3.2.2, without percent-encoding, which no real sender uses in a Host).
fn valid_host(h: &[u8]) -> bool {
    if h.is_empty() || h.len() > 255 {
        return false;
    }
    let (host, port) = if h[0] == b'[' {
        let Some(end) = h.iter().position(|&c| c == b']') else {
            return false;
        };
        let literal = &h[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|c| c.is_ascii_hexdigit() || b":.".contains(c))
        {
            return false;
        }
        match &h[end + 1..] {
            [] => (&h[..0], None),
            [b':', port @ ..] => (&h[..0], Some(port)),
            _ => return false,
        }
    } else {
        match h.iter().rposition(|&c| c == b':') {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        }
    };
    let host_ok = host
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c))
        && (h[0] == b'[' || !host.is_empty());
    let port_ok = port.map_or(true, |p| {
        !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)
    });
    host_ok && port_ok
}

/// Verdicts kept for pipelined heads not yet handled; a client that pipelines more is
/// refused (no real webhook sender pipelines at all).
const MAX_PENDING_VERDICTS: usize = 32;

/// Follows the framing of HTTP/1 requests in a byte stream: request line, header lines
/// (counting Content-Length and Transfer-Encoding fields), then the body by
/// Content-Length or chunked coding, then the next request. Bodies are skipped, not
/// read; only names and the Content-Length value are looked at, so the cost is a pass
/// over each head. Pure: fed slices, it yields one verdict per complete head.
pub struct HeadScanner {
    state: Scan,
    name: [u8; 18],
    name_len: usize,
    content_lengths: u32,
    transfer_encodings: u32,
    length: u64,
    verdicts: std::collections::VecDeque<Result<(), Malformed>>,
    lost: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Before a request line (empty lines are skipped, as httparse does).
    Start,
    RequestLine,
    LineStart,
    /// After a CR at a line start: the head ends at the LF.
    HeadEndCr,
    Name,
    Value(Field),
    /// The rest of a line that does not matter.
    SkipLine,
    Body(u64),
    ChunkSize(u64),
    ChunkExt(u64),
    ChunkData(u64),
    ChunkDataEnd,
    TrailerStart,
    TrailerLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
}

/// The scanner's state as it matters: the name bytes read so far only while a name is
/// being read, and nothing but `lost` once lost (the fuzz target compares the states of
/// scanners fed in different pieces).
impl std::fmt::Debug for HeadScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("HeadScanner");
        if self.lost {
            // Nothing else matters any more.
            return d.field("lost", &true).finish();
        }
        d.field("state", &self.state);
        if self.state == Scan::Name {
            d.field("name", &&self.name[..self.name_len]);
        }
        d.field("content_lengths", &self.content_lengths)
            .field("transfer_encodings", &self.transfer_encodings)
            .field("length", &self.length)
            .field("verdicts", &self.verdicts)
            .field("lost", &self.lost)
            .finish()
    }
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            state: Scan::Start,
            name: [0; 18],
            name_len: 0,
            content_lengths: 0,
            transfer_encodings: 0,
            length: 0,
            verdicts: std::collections::VecDeque::new(),
            lost: false,
        }
    }
}

impl HeadScanner {
    // `lost`: framing the scanner cannot follow. Every later request on the connection
    // is refused (hyper refuses most such input itself).

    /// The verdict for the next request hyper dispatches. A request hyper saw but the
    /// scanner did not is a framing mismatch.
    pub fn next_verdict(&mut self) -> Result<(), Malformed> {
        if self.lost {
            return Err(Malformed::FramingMismatch);
        }
        self.verdicts
            .pop_front()
            .unwrap_or(Err(Malformed::FramingMismatch))
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            match self.state {
                Scan::Body(n) | Scan::ChunkData(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (Scan::Body(_), 0) => Scan::Start,
                        (Scan::Body(_), l) => Scan::Body(l),
                        (_, 0) => Scan::ChunkDataEnd,
                        (_, l) => Scan::ChunkData(l),
                    };
                }
                Scan::SkipLine | Scan::RequestLine | Scan::ChunkDataEnd | Scan::TrailerLine => {
                    match data.iter().position(|&b| b == b'\n') {
                        None => data = &[],
                        Some(i) => {
                            data = &data[i + 1..];
                            self.state = match self.state {
                                Scan::ChunkDataEnd => Scan::ChunkSize(0),
                                Scan::TrailerLine => Scan::TrailerStart,
                                _ => Scan::LineStart,
                            };
                        }
                    }
                }
                Scan::LineStart => match data.iter().position(|&b| b == b'\n') {
                    // A whole header line in hand (the usual case): no byte steps.
                    Some(end) => {
                        self.line(&data[..end]);
                        data = &data[end + 1..];
                    }
                    None => {
                        self.byte(data[0]);
                        data = &data[1..];
                    }
                },
                _ => {
                    self.byte(data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    /// A complete line at a line start (`raw` without its LF), with exactly the outcome
    /// of feeding it byte by byte.
    fn line(&mut self, raw: &[u8]) {
        match raw {
            [] | [b'\r'] => {
                self.state = self.head_end();
                return;
            }
            [b'\r', ..] => {
                self.lost = true; // a CR not followed by LF where a field could start
                return;
            }
            _ => {}
        }
        self.state = Scan::LineStart;
        let Some(colon) = raw.iter().position(|&b| b == b':') else {
            return;
        };
        let name = &raw[..colon];
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths += 1;
            self.length = 0;
            for &b in raw[colon + 1..].iter().filter(|b| b.is_ascii_digit()) {
                match self
                    .length
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(u64::from(b - b'0')))
                {
                    Some(l) => self.length = l,
                    None => {
                        self.lost = true;
                        return;
                    }
                }
            }
        }
    }

    fn byte(&mut self, b: u8) {
        self.state = match self.state {
            Scan::Start if b == b'\r' || b == b'\n' => Scan::Start,
            Scan::Start => {
                self.content_lengths = 0;
                self.transfer_encodings = 0;
                self.length = 0;
                Scan::RequestLine
            }
            Scan::LineStart if b == b'\r' => Scan::HeadEndCr,
            Scan::LineStart | Scan::HeadEndCr if b == b'\n' => self.head_end(),
            Scan::HeadEndCr => {
                self.lost = true;
                return;
            }
            Scan::LineStart => {
                self.name_len = 0;
                self.name_byte(b)
            }
            Scan::Name if b == b':' => self.field(),
            Scan::Name if b == b'\n' => Scan::LineStart,
            Scan::Name => self.name_byte(b),
            Scan::Value(_) if b == b'\n' => Scan::LineStart,
            Scan::Value(Field::ContentLength) if b.is_ascii_digit() => {
                self.length = match self
                    .length
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(u64::from(b - b'0')))
                {
                    Some(l) => l,
                    None => {
                        self.lost = true;
                        return;
                    }
                };
                Scan::Value(Field::ContentLength)
            }
            Scan::Value(f) => Scan::Value(f),
            Scan::ChunkSize(n) if b.is_ascii_hexdigit() => {
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                match n.checked_mul(16).and_then(|v| v.checked_add(d)) {
                    Some(v) => Scan::ChunkSize(v),
                    None => {
                        self.lost = true;
                        return;
                    }
                }
            }
            Scan::ChunkSize(n) | Scan::ChunkExt(n) if b == b'\n' => match n {
                0 => Scan::TrailerStart,
                n => Scan::ChunkData(n),
            },
            Scan::ChunkSize(n) | Scan::ChunkExt(n) => Scan::ChunkExt(n),
            Scan::TrailerStart if b == b'\n' => Scan::Start,
            Scan::TrailerStart if b == b'\r' => Scan::TrailerStart,
            Scan::TrailerStart => Scan::TrailerLine,
            // Handled in `feed`.
            Scan::Body(_)
            | Scan::ChunkData(_)
            | Scan::SkipLine
            | Scan::RequestLine
            | Scan::ChunkDataEnd
            | Scan::TrailerLine => self.state,
        };
    }

    fn name_byte(&mut self, b: u8) -> Scan {
        if self.name_len == self.name.len() {
            return Scan::SkipLine; // longer than any name we look for
        }
        self.name[self.name_len] = b.to_ascii_lowercase();
        self.name_len += 1;
        Scan::Name
    }

    fn field(&mut self) -> Scan {
        match &self.name[..self.name_len] {
            b"content-length" => {
                self.content_lengths += 1;
                self.length = 0;
                Scan::Value(Field::ContentLength)
            }
            b"transfer-encoding" => {
                self.transfer_encodings += 1;
                Scan::Value(Field::TransferEncoding)
            }
            _ => Scan::SkipLine,
        }
    }

    fn head_end(&mut self) -> Scan {
        let verdict = if self.content_lengths > 0 && self.transfer_encodings > 0 {
            Err(Malformed::ContentLengthWithTransferEncoding)
        } else if self.content_lengths > 1 {
            Err(Malformed::DuplicateContentLength)
        } else {
            Ok(())
        };
        if self.verdicts.len() >= MAX_PENDING_VERDICTS {
            self.lost = true;
        }
        self.verdicts.push_back(verdict);
        if self.transfer_encodings > 0 {
            Scan::ChunkSize(0)
        } else if self.content_lengths > 0 && self.length > 0 {
            Scan::Body(self.length)
        } else {
            Scan::Start
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn check11(fields: &[(&str, &str)]) -> Result<(), Malformed> {
        check(Version::HTTP_11, &Uri::from_static("/hook"), &head(fields))
    }

    #[test]
    fn ordinary_heads_pass() {
        assert_eq!(
            check11(&[("host", "hooks.example.com"), ("content-length", "5")]),
            Ok(())
        );
        assert_eq!(
            check11(&[("host", "127.0.0.1:8080"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
        assert_eq!(
            check11(&[("host", "[::1]:8443"), ("transfer-encoding", " Chunked ")]),
            Ok(())
        );
        assert_eq!(check11(&[("host", "[::1]")]), Ok(()));
        // HTTP/1.0 may omit Host; HTTP/2 carries the authority in the URI.
        let uri = Uri::from_static("/hook");
        assert_eq!(check(Version::HTTP_10, &uri, &head(&[])), Ok(()));
        let uri = Uri::from_static("https://hooks.example.com/hook");
        assert_eq!(check(Version::HTTP_2, &uri, &head(&[])), Ok(()));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        use Malformed::*;
        let host = ("host", "h");
        let cases: &[(&[(&str, &str)], Malformed)] = &[
            (
                &[
                    host,
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked"),
                ],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("content-length", "5"),
                ],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[host, ("content-length", "5"), ("content-length", "5")],
                DuplicateContentLength,
            ),
            (&[host, ("content-length", "5, 5")], DuplicateContentLength),
            (
                &[host, ("transfer-encoding", "gzip, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("transfer-encoding", "chunked, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("transfer-encoding", "identity")],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("x_forwarded_for", "1.2.3.4")],
                UnderscoreInHeaderName,
            ),
            (&[], MissingHost),
            (&[host, host], DuplicateHost),
            (&[("host", "a b")], InvalidHost),
            (&[("host", "a:")], InvalidHost),
            (&[("host", "a:123456")], InvalidHost),
            (&[("host", "a@b")], InvalidHost),
            (&[("host", ":80")], InvalidHost),
            (&[("host", "[::1")], InvalidHost),
            (&[("host", "[::1]x")], InvalidHost),
            (&[("host", "")], InvalidHost),
        ];
        for (fields, want) in cases {
            assert_eq!(check11(fields), Err(*want), "{fields:?}");
        }
    }

    fn scan(input: &[u8], piece: usize) -> HeadScanner {
        let mut s = HeadScanner::default();
        for chunk in input.chunks(piece.max(1)) {
            s.feed(chunk);
        }
        s
    }

    #[test]
    fn the_scanner_gives_one_verdict_per_head_in_any_piece_size() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n\
\r\nPOST /c HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nTRANSFER-ENCODING: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi\
GET /e HTTP/1.1\nHost: h\nX-Content-Length-Ish: 9\n\n\
POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 19\r\n\r\nContent-Length: 1\r\n";
        for piece in [1, 2, 3, 7, 64, stream.len()] {
            let mut s = scan(stream, piece);
            assert_eq!(s.next_verdict(), Ok(()), "piece {piece}");
            assert_eq!(s.next_verdict(), Ok(()), "piece {piece}");
            assert_eq!(
                s.next_verdict(),
                Err(Malformed::ContentLengthWithTransferEncoding)
            );
            assert_eq!(s.next_verdict(), Err(Malformed::DuplicateContentLength));
            assert_eq!(s.next_verdict(), Ok(()), "piece {piece}");
            // /f: its body looks like a header line and is skipped as a body.
            assert_eq!(s.next_verdict(), Ok(()), "piece {piece}");
            assert_eq!(s.state, Scan::Start, "piece {piece}");
            // More requests than heads seen: the scanner and hyper disagree.
            assert_eq!(s.next_verdict(), Err(Malformed::FramingMismatch));
        }
    }

    #[test]
    fn the_scanner_gives_up_on_framing_it_cannot_follow() {
        let mut s = scan(
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            5,
        );
        assert_eq!(s.next_verdict(), Err(Malformed::FramingMismatch));
        let mut s = scan(b"POST / HTTP/1.1\r\nHost: h\r\n\rX", 5);
        assert_eq!(s.next_verdict(), Err(Malformed::FramingMismatch));
        // A flood of pipelined heads: verdicts are bounded.
        let one = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut s = scan(&one.repeat(MAX_PENDING_VERDICTS + 1), 100);
        assert_eq!(s.next_verdict(), Err(Malformed::FramingMismatch));
    }

    #[test]
    fn an_absolute_target_must_agree_with_host() {
        let uri = Uri::from_static("http://a.example/hook");
        let h = head(&[("host", "a.example")]);
        assert_eq!(check(Version::HTTP_11, &uri, &h), Ok(()));
        let h = head(&[("host", "b.example")]);
        assert_eq!(
            check(Version::HTTP_11, &uri, &h),
            Err(Malformed::InvalidHost)
        );
    }
}
