//! The HTTP/1.1 request codec, without I/O: the request head (httparse, then the
//! method, target and [`Fields`] on the bytes read, without copying any), the body's
//! framing, the chunked-coding decoder, and the response head.
//!
//! Strict where RFC 9112 lets a server choose (../shared/hardening.md):
//! - a head that httparse refuses (bare CR, obsolete line folding, a bad token, a
//!   version other than 1.0/1.1) is a 400;
//! - a Content-Length that is not a plain decimal number is a 400;
//! - shapes that two parsers could frame differently (Content-Length with
//!   Transfer-Encoding, two Content-Lengths, a coding other than one `chunked`) are
//!   framed as "no body, close after the answer", and [`crate::pipeline::framing::check`]
//!   refuses them before anything else runs: the bytes after such a head are never read
//!   as a request;
//! - chunk lines and the trailer section end in CRLF, never a bare LF; chunk sizes have
//!   at most 16 hex digits; extensions and trailers are bounded and discarded; a trailer
//!   line is a field line (`name: value`), as hyper requires too.
//! - `Connection: close` ends the connection whatever else any Connection line lists.

use crate::answer::{push_line, Answer, Decimal};
use crate::fields::{Fields, Span};
use crate::pipeline::framing::Malformed;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Uri, Version};
use std::mem::MaybeUninit;

/// The most header fields a head may carry: the upper bound of `limits.max_headers`.
pub const MAX_HEADERS: usize = 1000;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding, or `Content-Length: 0`).
    Empty,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// The whole body is within `have` bytes after the head (a chunked body is never
    /// known to be whole before it is decoded).
    pub fn in_hand(self, have: usize) -> bool {
        match self {
            Framing::Empty => true,
            Framing::Length(n) => n <= have as u64,
            Framing::Chunked => false,
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub fields: Fields,
    /// Bytes of the buffer the head took (request line, fields, the empty line).
    pub len: usize,
    pub framing: Framing,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1).
    pub expect_continue: bool,
}

/// Why a head is refused (answered with `status()`, then the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x as RFC 9112 writes it.
    Invalid,
    /// A Content-Length that is not a decimal number.
    InvalidContentLength,
    /// Over `max_header_bytes`.
    TooLarge,
    /// Over `max_headers`.
    TooManyHeaders,
}

impl HeadError {
    pub fn malformed(self) -> Malformed {
        match self {
            HeadError::Invalid => Malformed::InvalidRequest,
            HeadError::InvalidContentLength => Malformed::InvalidContentLength,
            HeadError::TooLarge => Malformed::HeaderTooLarge,
            HeadError::TooManyHeaders => Malformed::TooManyHeaders,
        }
    }
}

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet, `buf` is left
/// as it was (the caller refuses it as [`HeadError::TooLarge`] once `buf` reaches
/// `max_bytes`). `Ok(Some(head))`: the head's bytes were split off the front of `buf`
/// (its field names lower-cased in place) and `buf` holds what followed them.
pub fn parse_head(
    buf: &mut BytesMut,
    max_bytes: usize,
    max_headers: usize,
) -> Result<Option<Head>, HeadError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let slots = &mut slots[..max_headers.clamp(1, MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let base = buf.as_ptr() as usize;
    let window = &buf[..buf.len().min(max_bytes)];
    let len = match req.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Invalid),
    };
    let method =
        Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| HeadError::Invalid)?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where a slice of the head is in `buf` (httparse's slices all point into it; an
    // empty one may be anywhere, and its place does not matter).
    let at = |s: &[u8]| match s.is_empty() {
        true => (0, 0),
        false => (s.as_ptr() as usize - base, s.len()),
    };
    let target = at(req.path.unwrap_or("").as_bytes());

    let mut spans = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut lengths = 0usize;
    let mut codings = 0usize;
    let mut chunked = false;
    let (mut close_option, mut keep_alive_option) = (false, false);
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            // A list (`5, 5`) is refused by the framing check; anything else that is not
            // digits is refused here.
            if !h.value.contains(&b',') {
                content_length = Some(decimal(h.value).ok_or(HeadError::InvalidContentLength)?);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings += 1;
            chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close_option |= token.eq_ignore_ascii_case(b"close");
                // Only from a line that is all ASCII: a line with obs-text is not a token
                // list, and hyper (so perhaps a proxy in front) would not persist either.
                keep_alive_option |=
                    token.eq_ignore_ascii_case(b"keep-alive") && h.value.is_ascii();
            }
        } else if name.eq_ignore_ascii_case(b"expect") && version == Version::HTTP_11 {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        spans.push(Span {
            name: at(name),
            value: at(h.value),
        });
    }
    // RFC 9112 §9.3: `close` ends the connection whatever else is listed, in any of the
    // Connection lines; HTTP/1.0 persists only with `keep-alive`.
    let mut close = close_option || (version == Version::HTTP_10 && !keep_alive_option);
    let framing = match (lengths, codings) {
        (0, 0) => Framing::Empty,
        (1, 0) => match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                close = true; // a list: refused by the framing check
                Framing::Empty
            }
        },
        // An HTTP/1.0 message with Transfer-Encoding is faulty framing (RFC 9112 §6.1):
        // read it, answer, close.
        (0, 1) if chunked => {
            close |= version == Version::HTTP_10;
            Framing::Chunked
        }
        // Ambiguous framing: refused before anything runs, and nothing after this head
        // is read from the connection.
        _ => {
            close = true;
            Framing::Empty
        }
    };
    for s in &spans {
        buf[s.name.0..s.name.0 + s.name.1].make_ascii_lowercase();
    }
    let bytes = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(bytes.slice(target.0..target.0 + target.1))
        .map_err(|_| HeadError::Invalid)?;
    Ok(Some(Head {
        method,
        uri,
        version,
        fields: Fields::from_spans(bytes, spans),
        len,
        framing,
        keep_alive: !close,
        expect_continue,
    }))
}

/// A Content-Length value: 1 to 19 ASCII digits (optional surrounding whitespace was
/// already trimmed by httparse).
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk line, chunk end or trailer that is not RFC 9112 §7.1.
    Syntax,
    /// Extensions or trailers over their limits.
    TooLong,
}

/// The most bytes of chunk extensions, and of trailer fields, one body may carry; they
/// are discarded (neither is signed or forwarded).
pub const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;
pub const MAX_TRAILERS: usize = 16 * 1024;

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    /// The buffer holds no complete next item: read more.
    NeedMore,
    /// The last chunk and the trailer section are read: the body is complete.
    End,
}

/// The chunked transfer coding's decoder (RFC 9112 §7.1), fed from the connection's
/// buffer. Framing bytes are consumed; data is split off without a copy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    extensions: usize,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After the size: whitespace before `;`, or CR.
    AfterSize,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the empty line that ends the body).
    TrailerStart,
    /// In a trailer field's name.
    TrailerName,
    /// In a trailer field's value.
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Data bytes of the current chunk not yet decoded (0 between chunks).
    pub fn chunk_left(&self) -> u64 {
        match self.state {
            ChunkState::Data => self.size,
            _ => 0,
        }
    }

    /// Decodes from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ChunkError> {
        use ChunkState::*;
        loop {
            if self.state == Done {
                return Ok(Chunk::End);
            }
            if self.state == Data {
                if buf.is_empty() {
                    return Ok(Chunk::NeedMore);
                }
                let take = self.size.min(buf.len() as u64) as usize;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                return Ok(Chunk::Data(buf.split_to(take).freeze()));
            }
            let Some(&b) = buf.first() else {
                return Ok(Chunk::NeedMore);
            };
            buf.advance(1);
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 16 {
                        return Err(ChunkError::Syntax);
                    }
                    self.size = (self.size << 4) | u64::from(hex(b));
                    Size
                }
                (Size, _) if self.digits == 0 => return Err(ChunkError::Syntax),
                (Size | AfterSize, b' ' | b'\t') => AfterSize,
                (Size | AfterSize, b';') => Extension,
                (Size | AfterSize | Extension, b'\r') => SizeLf,
                (Extension, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                    self.extensions += 1;
                    if self.extensions > MAX_CHUNK_EXTENSIONS {
                        return Err(ChunkError::TooLong);
                    }
                    Extension
                }
                (SizeLf, b'\n') => {
                    self.digits = 0;
                    match self.size {
                        0 => TrailerStart,
                        _ => Data,
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (EndLf, b'\n') => Done,
                (TrailerLine, b'\r') => TrailerLf,
                // A trailer line is a field line (RFC 9112 §7.1.2, RFC 9110 §5.5):
                // a token, `:`, then visible bytes, obs-text, spaces and tabs (obs-fold
                // is not allowed).
                (TrailerStart | TrailerName, b) if is_tchar(b) => {
                    self.count_trailer()?;
                    TrailerName
                }
                (TrailerName, b':') => {
                    self.count_trailer()?;
                    TrailerLine
                }
                (TrailerLine, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                    self.count_trailer()?;
                    TrailerLine
                }
                (TrailerLf, b'\n') => TrailerStart,
                _ => return Err(ChunkError::Syntax),
            };
        }
    }
}

impl Chunked {
    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Writes a response head: status line, the answer's fields (never framing or
/// connection ones: those are this hop's), `date` (at `unix_secs()`, asked only then) if the answer has
/// none, `content-length`, and `connection: close` when the connection ends after it.
pub fn write_response_head(
    out: &mut Vec<u8>,
    answer: &Answer,
    close: bool,
    unix_secs: impl FnOnce() -> u64,
) {
    let status = answer.status;
    let body_len = answer.body.len();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    answer.write_lines(out);
    if !answer.has_date() {
        date::with_secs(unix_secs(), |d| push_line(out, b"date", d));
    }
    // 1xx, 204 and 304 carry no body and no length (RFC 9110 §8.6).
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if !bodiless {
        push_line(
            out,
            b"content-length",
            Decimal::new(body_len as u64).as_bytes(),
        );
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Date` field's value (IMF-fixdate, RFC 9110 §5.6.7), formatted once per second
/// per thread.
pub mod date {
    use std::cell::RefCell;

    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }

    /// Seconds since the Unix epoch, now (for an answer without a request's clock).
    pub fn now_secs() -> u64 {
        crate::clock::now_unix().max(0) as u64
    }

    /// Calls `f` with the date `secs` seconds after the Unix epoch.
    pub fn with_secs<R>(secs: u64, f: impl FnOnce(&[u8]) -> R) -> R {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, format(secs));
            }
            f(&c.1)
        })
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the epoch.
    pub fn format(secs: u64) -> [u8; 29] {
        const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let (year, month, day) = civil_from_days(days as i64);
        let mut out = [0u8; 29];
        out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
        out[3..5].copy_from_slice(b", ");
        two(&mut out[5..7], day as u64);
        out[7] = b' ';
        out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
        out[11] = b' ';
        let y = year.clamp(0, 9999) as u64;
        two(&mut out[12..14], y / 100);
        two(&mut out[14..16], y % 100);
        out[16] = b' ';
        two(&mut out[17..19], h);
        out[19] = b':';
        two(&mut out[20..22], m);
        out[22] = b':';
        two(&mut out[23..25], s);
        out[25..].copy_from_slice(b" GMT");
        out
    }

    const MONTH_NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// Seconds since the epoch of an HTTP-date (RFC 9110 §5.6.7) in any of its three
    /// forms: IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the obsolete RFC 850
    /// `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`. The
    /// day name is not checked against the date (the RFC does not ask it); a two-digit
    /// year more than 50 years after `now_secs` is taken as the century before. `None`
    /// for anything else, or a date before the epoch.
    pub fn parse(s: &str, now_secs: u64) -> Option<u64> {
        let parts: Vec<&str> = s.split_ascii_whitespace().collect();
        let (day, month, year, time) = match parts.as_slice() {
            // IMF-fixdate: the day name ends in a comma, then `dd Mon yyyy hh:mm:ss GMT`.
            [name, d, m, y, t, "GMT"] if name.ends_with(',') && d.len() == 2 && y.len() == 4 => {
                (*d, *m, i64::from(digits(y)?), *t)
            }
            // RFC 850: `Weekday, dd-Mon-yy hh:mm:ss GMT`.
            [name, dmy, t, "GMT"] if name.ends_with(',') => {
                let mut it = dmy.split('-');
                let (d, m, y) = (it.next()?, it.next()?, it.next()?);
                if it.next().is_some() || d.len() != 2 || y.len() != 2 {
                    return None;
                }
                let yy = i64::from(digits(y)?);
                let (this_year, _, _) = civil_from_days((now_secs / 86_400) as i64);
                let mut year = this_year - this_year.rem_euclid(100) + yy;
                if year > this_year + 50 {
                    year -= 100;
                }
                (d, m, year, *t)
            }
            // asctime: `Wkd Mon d hh:mm:ss yyyy`, the day space-padded to two.
            [_, m, d, t, y] if (1..=2).contains(&d.len()) && y.len() == 4 => {
                (*d, *m, i64::from(digits(y)?), *t)
            }
            _ => return None,
        };
        let month = MONTH_NAMES.iter().position(|n| *n == month)? as i64 + 1;
        let day = i64::from(digits(day)?);
        let mut hms = time.split(':');
        let (h, mi, sec) = (hms.next()?, hms.next()?, hms.next()?);
        if hms.next().is_some() || [h, mi, sec].iter().any(|p| p.len() != 2) {
            return None;
        }
        let (h, mi, sec) = (digits(h)?, digits(mi)?, digits(sec)?);
        // 60 is a leap second (IMF-fixdate allows it).
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        // A day that does not exist in its month (31 Feb) does not round-trip.
        if civil_from_days(days) != (year, month, day) {
            return None;
        }
        let t = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
        u64::try_from(t).ok()
    }

    /// A run of ASCII digits (no sign, no space) as a number.
    fn digits(s: &str) -> Option<u32> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    /// days-from-civil algorithm).
    pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// `(year, month, day)` of a day counted from 1970-01-01 (Howard Hinnant's
    /// civil-from-days algorithm), for any day before or after the epoch.
    pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(month <= 2), month, day)
    }

    fn two(out: &mut [u8], n: u64) {
        out[0] = b'0' + (n / 10 % 10) as u8;
        out[1] = b'0' + (n % 10) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, HeadError> {
        parse_head(&mut BytesMut::from(raw.as_bytes()), 8192, 100)
    }

    #[test]
    fn a_post_head_is_parsed_with_its_framing() {
        let raw =
            "POST /hooks/x?a=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nX-Sig: ab\r\n\r\nhello";
        let h = head(raw).unwrap().unwrap();
        assert_eq!(h.method, Method::POST);
        assert_eq!(h.uri.path(), "/hooks/x");
        assert_eq!(h.uri.query(), Some("a=1"));
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.fields.get("x-sig").unwrap().as_bytes(), b"ab");
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(&raw[h.len..], "hello");
        assert!(h.keep_alive && !h.expect_continue);
        // Names in lower case, values as sent, in order; the buffer keeps the rest.
        let names: Vec<&[u8]> = h.fields.iter().map(|(k, _)| k).collect();
        assert_eq!(names, [&b"host"[..], b"content-length", b"x-sig"]);
        let mut buf = BytesMut::from(raw);
        let h = parse_head(&mut buf, 8192, 100).unwrap().unwrap();
        assert_eq!(&buf[..], b"hello");
        assert_eq!(h.fields.get("HOST").unwrap().as_bytes(), b"gw");
        // An incomplete head leaves the buffer as it was.
        let mut partial = BytesMut::from("POST / HTTP/1.1\r\nHost: A\r\n");
        assert!(parse_head(&mut partial, 8192, 100).unwrap().is_none());
        assert_eq!(&partial[..], b"POST / HTTP/1.1\r\nHost: A\r\n");
    }

    #[test]
    fn control_bytes_in_values_are_refused_and_obs_text_is_kept() {
        // What HeaderValue used to enforce when the head was a HeaderMap: httparse
        // refuses the same bytes, so values need no second check.
        for b in [0x00u8, 0x01, 0x0b, 0x1f, 0x7f] {
            let mut raw = b"POST / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
            raw.extend_from_slice(&[b, b'b']);
            raw.extend_from_slice(b"\r\n\r\n");
            let got = parse_head(&mut BytesMut::from(&raw[..]), 8192, 100);
            assert_eq!(got.err(), Some(HeadError::Invalid), "{b:#x}");
            assert!(http::HeaderValue::from_bytes(&[b'a', b, b'b']).is_err());
        }
        for b in [0x80u8, 0xff] {
            let mut raw = b"POST / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
            raw.extend_from_slice(&[b, b'b']);
            raw.extend_from_slice(b"\r\n\r\n");
            let h = parse_head(&mut BytesMut::from(&raw[..]), 8192, 100)
                .unwrap()
                .unwrap();
            let v = h.fields.get("x").unwrap();
            assert_eq!(v.as_bytes(), [b'a', b, b'b']);
            assert!(v.to_str().is_err(), "not visible ASCII");
            assert!(http::HeaderValue::from_bytes(v.as_bytes()).is_ok());
        }
    }

    #[test]
    fn a_body_is_in_hand_only_when_all_of_it_is() {
        assert!(Framing::Empty.in_hand(0));
        assert!(Framing::Length(5).in_hand(5) && Framing::Length(5).in_hand(9));
        assert!(!Framing::Length(5).in_hand(4));
        assert!(!Framing::Chunked.in_hand(1 << 20));
    }

    #[test]
    fn empty_values_and_odd_case_names_are_kept() {
        let h = head("POST / HTTP/1.1\r\nHOST: a\r\nX-Empty:\r\nx-TAIL:  v \r\n\r\n")
            .unwrap()
            .unwrap();
        let fields: Vec<(&[u8], &[u8])> = h.fields.iter().map(|(k, v)| (k, v.as_bytes())).collect();
        assert_eq!(
            fields,
            [
                (&b"host"[..], &b"a"[..]),
                (b"x-empty", b""),
                (b"x-tail", b"v")
            ]
        );
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_refused() {
        assert!(head("POST / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(head(&long).err(), Some(HeadError::TooLarge));
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(
            parse_head(&mut BytesMut::from(raw.as_str()), 65536, 100).err(),
            Some(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn invalid_heads_and_lengths_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            "POST / HTTP/2.0\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
            "POST /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            "P@ST / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(head(raw).err(), Some(HeadError::Invalid), "{raw:?}");
        }
        for cl in ["+5", "-1", "0x10", "5 5", "99999999999999999999", ""] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(
                head(&raw).err(),
                Some(HeadError::InvalidContentLength),
                "{cl:?}"
            );
        }
    }

    #[test]
    fn ambiguous_framing_reads_no_body_and_closes() {
        for fields in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5, 5",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n\r\n");
            let h = head(&raw).unwrap().unwrap();
            assert_eq!(h.framing, Framing::Empty, "{fields}");
            assert!(!h.keep_alive, "{fields}");
            // ...and the framing check refuses every one of them.
            assert!(crate::pipeline::framing::check(h.version, &h.uri, &h.fields).is_err());
        }
    }

    #[test]
    fn connection_and_expect_are_read() {
        let h = head("POST / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, close\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive && h.expect_continue);
        let h = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h =
            head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        // HTTP/1.0 persists only on a `keep-alive` from an all-ASCII line (found by the
        // h1_differential target).
        let h = head("GET / HTTP/1.0\r\nConnection: keep-alive, \u{80}\r\n\r\n").unwrap();
        assert!(!h.unwrap().keep_alive);
        let h = head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(h.unwrap().keep_alive);
        // `close` wins over `keep-alive`, in one line or two, in either order (RFC 9112
        // §9.3; found by the h1_differential target: HTTP/1.0 kept the connection).
        for fields in [
            "Connection: close, keep-alive",
            "Connection: keep-alive, close",
            "Connection: close\r\nConnection: keep-alive",
            "Connection: keep-alive\r\nConnection: close",
        ] {
            for version in ["1.0", "1.1"] {
                let raw = format!("GET / HTTP/{version}\r\nHost: a\r\n{fields}\r\n\r\n");
                let h = head(&raw).unwrap().unwrap();
                assert!(!h.keep_alive, "{raw:?}");
            }
        }
    }

    fn dechunk(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for part in input.chunks(piece.max(1)) {
            buf.extend_from_slice(part);
            fed += part.len();
            loop {
                match d.decode(&mut buf)? {
                    Chunk::Data(b) => out.extend_from_slice(&b),
                    Chunk::NeedMore => break,
                    // What follows the body: the rest of this piece and the unfed input.
                    Chunk::End => return Ok((out, buf.len() + input.len() - fed)),
                }
            }
        }
        Err(ChunkError::Syntax) // incomplete
    }

    #[test]
    fn chunked_bodies_decode_the_same_in_any_piece_size() {
        let input = b"5\r\nhello\r\n6;ext=\"v\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..input.len() {
            let (body, left) = dechunk(input, piece).unwrap();
            assert_eq!(body, b"hello world", "piece {piece}");
            assert_eq!(left, 4);
        }
        let (body, _) = dechunk(b"A \t;x\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(body, b"0123456789");
        // Trailer fields: empty values, obs-text, inner spaces and tabs are fine.
        let (body, left) = dechunk(b"0\r\nX:\r\nY-1!: \x80 v\t\r\n\r\n", 5).unwrap();
        assert_eq!((&body[..], left), (&b""[..], 0));
    }

    #[test]
    fn bad_chunking_is_refused() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"\r\n",
            b"g\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"11111111111111111\r\n",
            b"5 5\r\n",
            b"5;a\x01\r\n",
            // A trailer line that is not a field line (found by the h1_differential
            // target: hyper refuses these).
            b"0\r\nnot a field\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nX : v\r\n\r\n",
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"0\r\nX: a\x01\r\n\r\n",
        ] {
            assert!(
                dechunk(input, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_EXTENSIONS + 1));
        assert_eq!(
            dechunk(ext.as_bytes(), 4096).err(),
            Some(ChunkError::TooLong)
        );
    }

    #[test]
    fn the_response_head_is_written_with_its_length_and_date() {
        let mut a = Answer::new(
            http::StatusCode::NOT_ACCEPTABLE,
            Bytes::from(vec![b'x'; 19]),
        );
        a.set_request_id(crate::answer::RequestId::sent(b"abc").unwrap());
        let mut out = Vec::new();
        write_response_head(&mut out, &a, true, || 784_111_777);
        // The date is the one the caller gives (the answer's time), not a clock reading.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 406 Not Acceptable\r\nx-request-id: abc\r\n\
             date: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 19\r\nconnection: close\r\n\r\n"
        );
        // An answer with its own date keeps it; a bodiless status has no length.
        let mut a = Answer::new(http::StatusCode::NO_CONTENT, Bytes::new());
        a.push("date", b"Thu, 01 Jan 1970 00:00:00 GMT");
        let mut out = Vec::new();
        write_response_head(&mut out, &a, false, || {
            unreachable!("the answer has a date")
        });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&date::format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&date::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &date::format(1_795_000_000),
            b"Wed, 18 Nov 2026 11:06:40 GMT"
        );
        assert_eq!(&date::format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn http_dates_parse_in_all_three_forms() {
        let now = 1_795_000_000; // 2026-11-18
                                 // RFC 9110 §5.6.7's own example, in its three forms.
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            " Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(date::parse(s, now), Some(784_111_777), "{s}");
        }
        // What format() writes reads back.
        for secs in [0, 951_782_400, 1_795_000_000, 4_102_444_800] {
            let text = date::format(secs);
            assert_eq!(
                date::parse(std::str::from_utf8(&text).unwrap(), now),
                Some(secs)
            );
        }
        // RFC 850's two-digit year: more than 50 years ahead is the century before.
        assert_eq!(
            date::parse("Thursday, 01-Jan-76 00:00:00 GMT", now),
            date::parse("Thu, 01 Jan 2076 00:00:00 GMT", now)
        );
        assert_eq!(
            date::parse("Friday, 01-Jan-77 00:00:00 GMT", now),
            date::parse("Sat, 01 Jan 1977 00:00:00 GMT", now)
        );
        for bad in [
            "",
            "7",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:+7 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
        ] {
            assert_eq!(date::parse(bad, now), None, "{bad:?}");
        }
    }
}
