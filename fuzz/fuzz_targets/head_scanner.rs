//! The HTTP/1 request-framing scanner (`pipeline::framing::HeadScanner`), which follows
//! the raw bytes of a connection and gives one verdict per request head.
//!
//! Invariants:
//! - split invariance, on arbitrary bytes: fed whole, byte by byte (inputs under 2 KiB),
//!   in two pieces at a point chosen by the input, and in pieces of sizes chosen by the
//!   input (empty feeds included), the scanner ends in the same state and yields exactly
//!   the same sequence of verdicts (drained until `FramingMismatch`, which is also what
//!   an empty queue answers, at most 64 calls);
//! - a reference model, on a stream built from the input of 1–5 well-formed pipelined
//!   requests (POST or GET, optional empty lines before the request line, CRLF or bare
//!   LF head lines, field names in random case, Content-Length 0–2 times with optional
//!   leading zeros and OWS, Transfer-Encoding: chunked 0–1 times, other fields whose
//!   names resemble the framing ones and whose values may contain `content-length:`;
//!   bodies that contain CRLFs, header-like lines and request-like text, framed by
//!   Content-Length or by chunked coding with random chunk sizes, hex case, leading
//!   zeros, extensions and trailer fields; with both fields the body is chunked), then
//!   optionally a truncated further request: the verdicts are exactly the model's, in
//!   order (ContentLengthWithTransferEncoding if both fields, else
//!   DuplicateContentLength if Content-Length twice, else Ok; the truncated request has
//!   one only if its head is complete), followed by `FramingMismatch`, however the
//!   stream is split.
#![no_main]

use hookgate::pipeline::framing::{HeadScanner, Malformed};
use libfuzzer_sys::fuzz_target;

type Verdict = Result<(), Malformed>;

/// Drains the verdict queue: everything up to and including the first `FramingMismatch`
/// (never part of a head's verdict: it means "lost" or "no verdict left").
fn drain(s: &mut HeadScanner) -> Vec<Verdict> {
    let mut out = Vec::new();
    for _ in 0..64 {
        let v = s.next_verdict();
        out.push(v);
        if v == Err(Malformed::FramingMismatch) {
            // Once empty or lost it stays so.
            assert_eq!(s.next_verdict(), Err(Malformed::FramingMismatch));
            return out;
        }
    }
    panic!("more than 63 verdicts: {out:?}");
}

/// Feeds `stream` in pieces of the given sizes, cycled (0: an empty feed); returns the
/// scanner's state (`Debug`) and its verdicts.
fn scan(stream: &[u8], sizes: &[usize]) -> (String, Vec<Verdict>) {
    let mut s = HeadScanner::default();
    let mut fed = 0;
    let mut idle = 0;
    for &size in sizes.iter().cycle() {
        if fed == stream.len() {
            break;
        }
        // A plan of only empty feeds still makes progress.
        let take = if idle == sizes.len() { 1 } else { size };
        let take = take.min(stream.len() - fed);
        idle = if take == 0 { idle + 1 } else { 0 };
        s.feed(&stream[fed..fed + take]);
        fed += take;
    }
    let state = format!("{s:?}");
    (state, drain(&mut s))
}

/// Piece plans for `stream`: whole, byte by byte (under 2 KiB), two pieces at `cut`, and
/// the given sizes.
fn plans(stream: &[u8], cut: usize, sizes: Vec<usize>) -> Vec<Vec<usize>> {
    let cut = if stream.is_empty() {
        0
    } else {
        cut % stream.len()
    };
    let mut plans = vec![vec![usize::MAX], vec![cut, usize::MAX], sizes];
    if stream.len() < 2048 {
        plans.push(vec![1]);
    }
    plans
}

/// Asserts that every plan gives the same state and verdicts; returns the verdicts.
fn split_invariant(stream: &[u8], plans: &[Vec<usize>]) -> Vec<Verdict> {
    let (state, verdicts) = scan(stream, &plans[0]);
    for plan in &plans[1..] {
        let (s, v) = scan(stream, plan);
        assert_eq!(
            (&state, &verdicts),
            (&s, &v),
            "fed whole vs in pieces of {plan:?}: {:?}",
            String::from_utf8_lossy(stream)
        );
    }
    verdicts
}

/// The fuzz input read as a sequence of choices; zeros once it is exhausted.
struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Src<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// `0..n`, for `n` ≤ 256.
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.below(from.len())]
    }

    /// `0..n` for any `n` ≥ 1.
    fn below_wide(&mut self, n: usize) -> usize {
        (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n
    }
}

/// Names that are neither Content-Length nor Transfer-Encoding, some close to them.
const OTHER_NAMES: &[&str] = &[
    "Host",
    "Content-Type",
    "X-Request-Id",
    "X-Content-Length",
    "Content-Length-X",
    "Content-Lengths",
    "Content-Lengt",
    "Content_Length",
    "ContentLength",
    "Transfer-Encodings",
    "Transfer-Encodin",
    "X-Transfer-Encoding",
    "TE",
    "Trailer",
    "X-A-Header-Name-Longer-Than-Any-Framing-One",
];

/// Pieces of field values: framing look-alikes, separators, quoted strings.
const VALUE_PARTS: &[&str] = &[
    "content-length:",
    "Content-Length: 5",
    "transfer-encoding: chunked",
    "chunked",
    "0",
    "12",
    " ",
    "\t",
    ":",
    ";",
    ",",
    "=",
    "\"q:\\\"s\"",
    "a",
];

/// Pieces of bodies: line breaks, header lines, chunk lines, request heads.
const BODY_PARTS: &[&str] = &[
    "\r\n",
    "\n",
    "\r\n\r\n",
    "Content-Length: 1\r\n",
    "Transfer-Encoding: chunked\r\n",
    "0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    "GET / HTTP/1.1\n\n",
];

fn random_case(name: &str, src: &mut Src) -> String {
    let mask = src.byte();
    name.chars()
        .enumerate()
        .map(|(i, c)| match (mask >> (i % 8)) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect()
}

fn eol(src: &mut Src) -> &'static str {
    match src.below(4) {
        0 => "\n",
        _ => "\r\n",
    }
}

fn value(src: &mut Src) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..src.below(6) {
        match src.below(3) {
            0 => {
                // Any byte a field value may hold (VCHAR, SP, HTAB, obs-text).
                let b = src.byte();
                v.push(match b {
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => b,
                    _ => b'x',
                });
            }
            _ => v.extend_from_slice(src.pick(VALUE_PARTS).as_bytes()),
        }
    }
    v
}

/// `name:` OWS value OWS EOL.
fn field(out: &mut Vec<u8>, name: &str, val: &[u8], src: &mut Src) {
    out.extend_from_slice(random_case(name, src).as_bytes());
    out.push(b':');
    out.extend_from_slice(src.pick(&["", " ", " ", "  ", "\t"]).as_bytes());
    out.extend_from_slice(val);
    out.extend_from_slice(src.pick(&["", "", " ", "\t"]).as_bytes());
    out.extend_from_slice(eol(src).as_bytes());
}

fn body(src: &mut Src) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..src.below(16) {
        match src.below(3) {
            0 => b.extend_from_slice(src.pick(BODY_PARTS).as_bytes()),
            _ => {
                for _ in 0..1 + src.below(16) {
                    b.push(src.byte());
                }
            }
        }
    }
    b
}

fn chunk_size(n: usize, src: &mut Src) -> String {
    let zeros = "0".repeat(src.below(3));
    match src.below(2) {
        0 => format!("{zeros}{n:x}"),
        _ => format!("{zeros}{n:X}"),
    }
}

fn chunk_ext(out: &mut Vec<u8>, src: &mut Src) {
    for _ in 0..src.below(3) {
        let ext = src.pick(&[
            ";ext",
            ";ext=1",
            ";a=b;c",
            " ; ext = v",
            ";q=\"quoted;still \\\" ext\"",
            ";DEADBEEF=cafe",
            ";content-length: 5",
        ]);
        out.extend_from_slice(ext.as_bytes());
    }
}

fn chunked(out: &mut Vec<u8>, payload: &[u8], src: &mut Src) {
    let mut rest = payload;
    while !rest.is_empty() {
        let n = 1 + src.below_wide(rest.len());
        out.extend_from_slice(chunk_size(n, src).as_bytes());
        chunk_ext(out, src);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(chunk_size(0, src).as_bytes());
    chunk_ext(out, src);
    out.extend_from_slice(b"\r\n");
    for _ in 0..src.below(3) {
        let name = src.pick(&[
            "Content-Length",
            "Transfer-Encoding",
            "X-Checksum",
            "Expires",
        ]);
        let val = value(src);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&val);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[derive(Clone, Copy)]
enum Line {
    ContentLength,
    TransferEncoding,
    Other,
}

/// One well-formed request: its bytes, where its head ends, and the model's verdict.
fn request(src: &mut Src, i: usize) -> (Vec<u8>, usize, Verdict) {
    let mut out = Vec::new();
    for _ in 0..src.below(6) / 2 {
        out.extend_from_slice(b"\r\n"); // empty lines before the request line
    }
    let method = src.pick(&["POST", "GET"]);
    out.extend_from_slice(format!("{method} /hook/{i}?q=a:b HTTP/1.1").as_bytes());
    out.extend_from_slice(eol(src).as_bytes());

    let (mut cls, mut tes) = (0, 0);
    let mut lines = Vec::new();
    for _ in 0..src.below(8) {
        lines.push(match src.below(4) {
            0 if cls < 2 => {
                cls += 1;
                Line::ContentLength
            }
            1 if tes < 1 => {
                tes += 1;
                Line::TransferEncoding
            }
            _ => Line::Other,
        });
    }
    let payload = if cls + tes > 0 { body(src) } else { Vec::new() };
    for line in lines {
        match line {
            Line::ContentLength => {
                // Chunked coding wins: the value is then any number.
                let n = match tes {
                    0 => payload.len(),
                    _ => src.below_wide(100_000),
                };
                let zeros = "0".repeat(src.below(4) / 3);
                field(
                    &mut out,
                    "Content-Length",
                    format!("{zeros}{n}").as_bytes(),
                    src,
                );
            }
            Line::TransferEncoding => {
                let coding = src.pick(&["chunked", "Chunked", "CHUNKED"]);
                field(&mut out, "Transfer-Encoding", coding.as_bytes(), src)
            }
            Line::Other => {
                let name = src.pick(OTHER_NAMES);
                let val = value(src);
                field(&mut out, name, &val, src);
            }
        }
    }
    out.extend_from_slice(eol(src).as_bytes());
    let head_len = out.len();

    if tes > 0 {
        chunked(&mut out, &payload, src);
    } else {
        out.extend_from_slice(&payload);
    }
    let verdict = if cls > 0 && tes > 0 {
        Err(Malformed::ContentLengthWithTransferEncoding)
    } else if cls > 1 {
        Err(Malformed::DuplicateContentLength)
    } else {
        Ok(())
    };
    (out, head_len, verdict)
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes, split where the input says.
    let cut = data.iter().take(2).fold(0, |a, &b| a << 8 | usize::from(b));
    let sizes = data.iter().rev().take(8).map(|&b| usize::from(b) % 67);
    split_invariant(data, &plans(data, cut, sizes.collect()));

    // Well-formed pipelined requests, against the model.
    let mut src = Src { data, pos: 0 };
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1 + src.below(5) {
        let (bytes, _, verdict) = request(&mut src, i);
        stream.extend_from_slice(&bytes);
        expected.push(verdict);
    }
    if src.below(2) == 1 {
        // A request cut short: a verdict only if its head is complete.
        let (bytes, head_len, verdict) = request(&mut src, 9);
        let at = src.below_wide(bytes.len());
        stream.extend_from_slice(&bytes[..at]);
        if at >= head_len {
            expected.push(verdict);
        }
    }
    expected.push(Err(Malformed::FramingMismatch));
    let cut = src.below_wide(stream.len().max(1));
    let sizes = (0..1 + src.below(8)).map(|_| src.below(97)).collect();
    let verdicts = split_invariant(&stream, &plans(&stream, cut, sizes));
    assert_eq!(
        verdicts,
        expected,
        "stream: {:?}",
        String::from_utf8_lossy(&stream)
    );
});
