//! An answer to a sender as the gateway builds and writes it: a status, header lines and
//! a body. The lines are kept as the bytes they are written as (`name: value\r\n`, names
//! in lower case, in order): an upstream's end-to-end fields are copied once from its
//! response head, and the gateway's own are appended, so that a forwarded answer costs
//! no hashing and no allocation per field, as a `HeaderMap` would. HTTP/2 (hyper) gets a
//! `Response` made from it.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The field name of a request's id, which an answer keeps apart from its lines.
const X_REQUEST_ID: &[u8] = crate::forward::X_REQUEST_ID_NAME.as_bytes();

/// The response type hyper serves over HTTP/2.
pub type HttpResponse = Response<Full<Bytes>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// The lines as written; the gateway's fixed answers (rejections) borrow theirs
    /// from static text, made once at build time rather than per answer.
    lines: Cow<'static, [u8]>,
    /// The request's id, written after the lines as `x-request-id`: set on every
    /// answer, and kept apart so that setting it neither copies static lines nor
    /// searches an upstream's (whose own id the upstream client drops).
    request_id: Option<RequestId>,
    has_date: bool,
    close: bool,
    pub body: Bytes,
}

/// The length of an id the gateway makes: a 16-digit hex prefix, `-`, 12 hex digits.
pub const MADE_ID_LEN: usize = 29;

/// A request's id (`x-request-id`), as the access line, the upstream and the answer
/// carry it. One the gateway makes is kept inline, so that a request costs no
/// allocation for it; a sender's own (a visible-ASCII token) is copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(IdRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdRepr {
    Made([u8; MADE_ID_LEN]),
    Sent(Bytes),
}

impl RequestId {
    /// An id made by the gateway: `digits` are hex and `-`.
    pub fn made(digits: [u8; MADE_ID_LEN]) -> RequestId {
        debug_assert!(digits.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-'));
        RequestId(IdRepr::Made(digits))
    }

    /// The sender's id, if it is a token worth keeping: 1 to 128 visible ASCII bytes.
    pub fn sent(value: &[u8]) -> Option<RequestId> {
        let token = !value.is_empty() && value.len() <= 128;
        (token && value.iter().all(u8::is_ascii_graphic))
            .then(|| RequestId(IdRepr::Sent(Bytes::copy_from_slice(value))))
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Made(d) => d,
            IdRepr::Sent(b) => b,
        }
    }

    /// The id as text (both kinds are ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// Whether `value` may stand in a header line: the rule of `HeaderValue::from_bytes`
/// (visible ASCII, obs-text, space and tab; no other control byte, so no CR or LF that
/// would end the line early).
pub fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

impl Answer {
    pub fn new(status: StatusCode, body: Bytes) -> Answer {
        Answer::with_static_lines(status, b"", body)
    }

    /// An answer whose fields are fixed text: `lines` as [`push_line`] writes them,
    /// with no `date` (the writer adds it). No allocation until a field is added.
    pub fn with_static_lines(status: StatusCode, lines: &'static [u8], body: Bytes) -> Answer {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        debug_assert!(!lines.starts_with(b"date:") && !lines.windows(6).any(|w| w == b"\ndate:"));
        Answer {
            status,
            lines: Cow::Borrowed(lines),
            request_id: None,
            has_date: false,
            close: false,
            body,
        }
    }

    /// An answer whose header lines are `lines`, as made by [`push_line`] (the upstream
    /// client builds them while it parses a head).
    pub(crate) fn from_lines(status: StatusCode, lines: Vec<u8>, has_date: bool) -> Answer {
        Answer {
            status,
            lines: Cow::Owned(lines),
            request_id: None,
            has_date,
            close: false,
            body: Bytes::new(),
        }
    }

    /// Adds a field. `name` is a lower-case token, and not a framing or connection field
    /// (the writer adds those, for this hop); a value that could not stand in a header
    /// line is not added (the gateway's own values never are such).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()));
        debug_assert!(
            name.as_bytes() != X_REQUEST_ID,
            "the id is set_request_id's"
        );
        if valid_value(value) && !hop_owned(name.as_bytes()) {
            // The gateway's own answers carry two or three short fields: one allocation
            // for all of them, static lines included (a copy of their exact size would
            // grow again at once).
            match &mut self.lines {
                Cow::Borrowed(fixed) => {
                    let mut owned = Vec::with_capacity(fixed.len() + 128);
                    owned.extend_from_slice(fixed);
                    self.lines = Cow::Owned(owned);
                }
                Cow::Owned(lines) if lines.capacity() == 0 => lines.reserve(128),
                Cow::Owned(_) => {}
            }
            self.has_date |= name == "date";
            push_line(self.lines.to_mut(), name.as_bytes(), value);
        }
    }

    /// Replaces every field `name` with one of `value`.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        if self.line_fields().any(|(n, _)| n == name.as_bytes()) {
            let mut kept = Vec::with_capacity(self.lines.len());
            for (n, v) in self.line_fields() {
                if n != name.as_bytes() {
                    push_line(&mut kept, n, v);
                }
            }
            self.lines = Cow::Owned(kept);
        }
        self.push(name, value);
    }

    /// Sets the request's id, written after the other fields as `x-request-id`.
    pub fn set_request_id(&mut self, id: RequestId) {
        self.request_id = Some(id);
    }

    /// The request's id, if set.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// The fields in order: names (lower case) and values; the request's id last.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let id = self.request_id.as_ref();
        self.line_fields()
            .chain(id.map(|id| (X_REQUEST_ID, id.as_bytes())))
    }

    /// The fields of the lines: all but the request's id.
    fn line_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                let value = line.get(colon + 2..).unwrap_or_default();
                (&line[..colon], value)
            })
    }

    /// The first value of field `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The header lines, as written, but for the request's id.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Appends the header lines as written, the request's id last.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lines);
        if let Some(id) = &self.request_id {
            push_line(out, X_REQUEST_ID, id.as_bytes());
        }
    }

    /// Whether a `Date` field is among the lines.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The connection closes after this answer.
    pub fn close_after(&mut self) {
        self.close = true;
    }

    pub fn closes(&self) -> bool {
        self.close
    }

    /// The answer as hyper's response (HTTP/2, which has no `Connection` field).
    pub fn into_response(mut self) -> HttpResponse {
        let mut resp = Response::new(Full::new(std::mem::take(&mut self.body)));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        for (name, value) in self.fields() {
            if let (Ok(n), Ok(mut v)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                // A request id is new in every answer: HPACK indexing it would only
                // evict entries that do repeat (and cost a table search and insertion
                // per answer). Sent as a literal "never indexed".
                if n == crate::forward::X_REQUEST_ID {
                    v.set_sensitive(true);
                }
                headers.append(n, v);
            }
        }
        resp
    }
}

/// Fields the HTTP/1 writer owns: an answer never carries them.
pub(crate) fn hop_owned(name: &[u8]) -> bool {
    matches!(
        name,
        b"content-length" | b"transfer-encoding" | b"connection"
    )
}

/// A number's decimal digits, on the stack: for a header line without `format!`.
pub(crate) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: u64) -> Decimal {
        let mut d = Decimal {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Appends `name: value\r\n`.
pub(crate) fn push_line(lines: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    lines.extend_from_slice(name);
    lines.extend_from_slice(b": ");
    lines.extend_from_slice(value);
    lines.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_kept_in_order_and_read_back() {
        let mut a = Answer::new(StatusCode::OK, Bytes::from_static(b"ok"));
        a.push("content-type", b"text/plain");
        a.push("x-multi", b"a");
        a.push("x-empty", b"");
        a.push("x-multi", b"b: c");
        assert_eq!(
            a.lines(),
            b"content-type: text/plain\r\nx-multi: a\r\nx-empty: \r\nx-multi: b: c\r\n"
        );
        let fields: Vec<_> = a.fields().collect();
        assert_eq!(
            fields,
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"x-multi", b"a"),
                (b"x-empty", b""),
                (b"x-multi", b"b: c"),
            ]
        );
        assert_eq!(a.get("x-multi"), Some(&b"a"[..]));
        assert_eq!(a.get("missing"), None);
        assert!(!a.has_date());
        a.set("x-multi", b"z");
        assert_eq!(
            a.lines(),
            b"content-type: text/plain\r\nx-empty: \r\nx-multi: z\r\n"
        );
        a.push("date", b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(a.has_date());
    }

    #[test]
    fn a_value_that_would_split_the_line_is_not_added() {
        let mut a = Answer::new(StatusCode::OK, Bytes::new());
        a.push("x-bad", b"a\r\nset-cookie: x");
        a.push("x-nul", b"a\0b");
        a.push("content-length", b"5");
        assert!(a.lines().is_empty());
    }

    #[test]
    fn the_rule_for_values_is_header_values() {
        for v in [&b"plain"[..], b"tab\there", b"obs \xfe\xff", b"", b"a:b, c"] {
            assert!(valid_value(v));
            assert!(HeaderValue::from_bytes(v).is_ok());
        }
        for v in [&b"cr\r"[..], b"lf\n", b"nul\0", b"del\x7f", b"esc\x1b"] {
            assert!(!valid_value(v));
            assert!(HeaderValue::from_bytes(v).is_err());
        }
    }

    #[test]
    fn static_lines_and_the_request_id() {
        let id = RequestId::made(*b"0123456789abcdef-000000000001");
        let mut a = Answer::with_static_lines(
            StatusCode::NOT_ACCEPTABLE,
            b"content-type: text/plain\r\n",
            Bytes::from_static(b"no\n"),
        );
        assert!(matches!(a.lines, Cow::Borrowed(_)));
        a.set_request_id(id.clone());
        // Setting the id leaves the static lines borrowed; it is written last.
        assert!(matches!(a.lines, Cow::Borrowed(_)));
        let mut out = Vec::new();
        a.write_lines(&mut out);
        assert_eq!(
            out,
            b"content-type: text/plain\r\nx-request-id: 0123456789abcdef-000000000001\r\n"
        );
        assert_eq!(a.get("x-request-id"), Some(id.as_bytes()));
        assert_eq!(a.request_id(), Some(&id));
        // A field added to static lines goes on a copy, before the id.
        a.push("retry-after", b"3");
        assert_eq!(a.lines(), b"content-type: text/plain\r\nretry-after: 3\r\n");
        let names: Vec<_> = a.fields().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [&b"content-type"[..], b"retry-after", b"x-request-id"]
        );
        a.set("content-type", b"text/html");
        assert_eq!(a.get("content-type"), Some(&b"text/html"[..]));
        // Replacing a field keeps the id out of the lines: written once, last.
        let mut out = Vec::new();
        a.write_lines(&mut out);
        assert_eq!(
            out,
            b"retry-after: 3\r\ncontent-type: text/html\r\n\
              x-request-id: 0123456789abcdef-000000000001\r\n"
        );
    }

    #[test]
    fn decimal_digits() {
        for n in [0, 7, 10, 42, 1_682, 1_048_576, usize::MAX as u64, u64::MAX] {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_field_added_to_static_lines_costs_one_allocation() {
        let mut a = Answer::with_static_lines(
            StatusCode::TOO_MANY_REQUESTS,
            b"content-type: text/plain\r\n",
            Bytes::new(),
        );
        a.push("retry-after", Decimal::new(12).as_bytes());
        let Cow::Owned(lines) = &a.lines else {
            panic!("the lines were not copied")
        };
        // Room for the field was made with the copy: it did not grow again.
        assert!(lines.capacity() >= b"content-type: text/plain\r\n".len() + 128);
        assert_eq!(
            a.lines(),
            b"content-type: text/plain\r\nretry-after: 12\r\n"
        );
    }

    #[test]
    fn a_sent_request_id_is_kept_only_when_it_is_a_token() {
        let id = RequestId::sent(b"abc-123").expect("a token");
        assert_eq!((id.as_bytes(), id.as_str()), (&b"abc-123"[..], "abc-123"));
        assert_eq!(id, "abc-123");
        for bad in [&b""[..], b"a b", b"tab\t", b"caf\xc3\xa9", b"nul\0"] {
            assert_eq!(RequestId::sent(bad), None, "{bad:?}");
        }
        assert!(RequestId::sent(&[b'x'; 128]).is_some());
        assert_eq!(RequestId::sent(&[b'x'; 129]), None);
    }

    #[test]
    fn hyper_gets_the_same_fields() {
        let mut a = Answer::new(StatusCode::ACCEPTED, Bytes::from_static(b"queued\n"));
        a.push("x-a", b"1");
        a.push("x-a", b"2");
        a.push("retry-after", b"5");
        a.set_request_id(RequestId::sent(b"abc-000000000001").unwrap());
        let r = a.into_response();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let a: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(r.headers()["retry-after"], "5");
        assert!(!r.headers()["retry-after"].is_sensitive());
        // The request id, new in every answer, is never indexed by HPACK; only it.
        assert_eq!(r.headers()["x-request-id"], "abc-000000000001");
        assert!(r.headers()["x-request-id"].is_sensitive());
        assert!(!r.headers()["x-a"].is_sensitive());
    }
}
