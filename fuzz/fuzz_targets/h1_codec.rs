//! The HTTP/1.1 request codec (`h1::codec`): the head parser and the chunked decoder
//! that frame every request the gateway reads.
//!
//! Invariants, on arbitrary bytes (the first byte picks the split points):
//! - `parse_head` never panics. A complete head of `n` bytes is reported only with the
//!   same `n` and the same method, target, version, fields (names in lower case) and
//!   framing whatever follows it, and leaves exactly what follows in the buffer; every
//!   strict prefix of it is "not complete yet" and left untouched (incremental reading
//!   never refuses what the whole head accepts).
//! - Framing is consistent with the framing check: a head framed as having no body but
//!   not keep-alive for ambiguity (Content-Length with Transfer-Encoding, two lengths,
//!   a coding other than one `chunked`) is always refused by `framing::check`; a head
//!   that passes the check and declares `Content-Length: n > 0` is framed as `Length(n)`.
//! - The chunked decoder, fed the bytes after the head (or the whole input) whole, byte
//!   by byte (under 4 KiB) and in input-chosen pieces, yields the same data, the same
//!   end (body complete, with the same bytes left after it) or the same error.
#![no_main]

use bytes::BytesMut;
use hookgate::h1::codec::{parse_head, Chunk, ChunkError, Chunked, Framing};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Data decoded, bytes left after the body.
    End(Vec<u8>, usize),
    /// Data decoded before the input ran out.
    Incomplete(Vec<u8>),
    Error(Vec<u8>, ChunkError),
}

fn dechunk(input: &[u8], sizes: &[usize]) -> Outcome {
    let mut d = Chunked::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    loop {
        loop {
            match d.decode(&mut buf) {
                Ok(Chunk::Data(b)) => {
                    assert!(!b.is_empty(), "empty data chunk");
                    out.extend_from_slice(&b)
                }
                Ok(Chunk::NeedMore) => break,
                Ok(Chunk::End) => {
                    assert!(d.is_done());
                    return Outcome::End(out, buf.len() + input.len() - fed);
                }
                Err(e) => return Outcome::Error(out, e),
            }
        }
        if fed == input.len() {
            return Outcome::Incomplete(out);
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        i += 1;
        let take = size.min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + take]);
        fed += take;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&steer, input)) = data.split_first() else {
        return;
    };
    let max = 8192;
    let mut buf = BytesMut::from(input);
    if let Ok(Some(head)) = parse_head(&mut buf, max, 64) {
        let n = head.len;
        assert!(n <= input.len());
        assert_eq!(
            &buf[..],
            &input[n..],
            "what follows the head is left in the buffer"
        );
        let fields = |f: &hookgate::fields::Fields| -> Vec<(Vec<u8>, Vec<u8>)> {
            f.iter()
                .map(|(k, v)| (k.to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        // Names in lower case, and tokens (so ASCII: the request path never checks).
        for (name, _) in head.fields.iter() {
            assert!(!name.iter().any(|b| b.is_ascii_uppercase()), "{name:?}");
            assert!(name.is_ascii() && !name.is_empty(), "{name:?}");
        }
        // The same head with nothing after it, and every strict prefix.
        let alone = parse_head(&mut BytesMut::from(&input[..n]), max, 64)
            .expect("the head alone parses")
            .expect("the head alone is complete");
        assert_eq!(alone.len, n);
        assert_eq!(alone.method, head.method);
        assert_eq!(alone.uri, head.uri);
        assert_eq!(alone.version, head.version);
        assert_eq!(fields(&alone.fields), fields(&head.fields));
        assert_eq!(alone.framing, head.framing);
        assert_eq!(alone.keep_alive, head.keep_alive);
        let step = 1 + steer as usize % 7;
        for k in (0..n).step_by(step) {
            let mut prefix = BytesMut::from(&input[..k]);
            match parse_head(&mut prefix, max, 64) {
                Ok(None) => {
                    assert_eq!(&prefix[..], &input[..k], "a partial head is left as it was")
                }
                other => panic!("prefix {k}/{n}: {other:?}"),
            }
        }
        let check = hookgate::pipeline::framing::check(head.version, &head.uri, &head.fields);
        let lengths = head.fields.get_all("content-length").count();
        let codings = head.fields.get_all("transfer-encoding").count();
        if lengths + codings > 1 || (codings == 1 && head.framing != Framing::Chunked) {
            assert!(check.is_err(), "ambiguous framing passed the check");
            assert!(!head.keep_alive);
            assert_eq!(head.framing, Framing::Empty);
        }
        if check.is_ok() && lengths == 1 {
            let v: u64 = head
                .fields
                .get("content-length")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let want = if v == 0 {
                Framing::Empty
            } else {
                Framing::Length(v)
            };
            assert_eq!(head.framing, want);
        }
    }
    // The chunked decoder: whole, byte by byte, and in input-chosen pieces.
    let body = match input.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) if steer & 1 == 1 => &input[i + 4..],
        _ => input,
    };
    let whole = dechunk(body, &[body.len().max(1)]);
    if body.len() < 4096 {
        assert_eq!(dechunk(body, &[1]), whole, "byte by byte");
    }
    let sizes: Vec<usize> = input
        .iter()
        .take(16)
        .map(|&b| b as usize % 97 + 1)
        .collect();
    assert_eq!(dechunk(body, &sizes), whole, "pieces {sizes:?}");
});
