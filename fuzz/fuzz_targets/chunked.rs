//! The upstream client's chunked-coding decoder (`upstream::Chunked`).
//!
//! Invariants:
//! - on arbitrary bytes it never panics and never produces more body than it consumed;
//!   what it leaves in the buffer is the unconsumed tail of the input;
//! - the outcome does not depend on how the bytes arrive: fed in pieces (as reads
//!   deliver them) it completes with the same body and the same leftover as when fed
//!   whole, or refuses both ways;
//! - round trip: the input's bytes, chunk-encoded here (chunk sizes, hex case, chunk
//!   extensions and trailer fields chosen by the input), decode back to exactly those
//!   bytes, with whatever followed the message left in the buffer, fed whole or in pieces;
//!   or, when the extensions written come to more than `MAX_CHUNK_EXTENSIONS` bytes,
//!   is refused however it is fed.
#![no_main]

use bytes::BytesMut;
use hookgate::fuzzing::{Chunked, MAX_CHUNK_EXTENSIONS};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Complete: the body, and what is left behind the message.
    Done(Vec<u8>, Vec<u8>),
    /// Needs more bytes.
    More,
    Refused,
}

/// Feeds `wire` to a fresh decoder in pieces of the given sizes (cycled), as reads would.
fn decode(wire: &[u8], pieces: &[usize]) -> Outcome {
    let mut dec = Chunked::default();
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    for &size in pieces.iter().cycle() {
        let take = size.max(1).min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + take]);
        fed += take;
        let before = buf.len();
        let result = dec.decode(&mut buf, &mut out);
        assert!(buf.len() <= before, "the decoder grew its input");
        consumed += before - buf.len();
        assert!(
            out.len() <= consumed,
            "{} body bytes from {consumed} consumed",
            out.len()
        );
        assert_eq!(
            &buf[..],
            &wire[consumed..fed],
            "leftover is not the input's tail"
        );
        match result {
            Err(_) => return Outcome::Refused,
            Ok(true) => {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(&wire[fed..]);
                return Outcome::Done(out.to_vec(), rest);
            }
            Ok(false) if fed == wire.len() => return Outcome::More,
            Ok(false) => {}
        }
    }
    unreachable!()
}

/// Piece sizes derived from `seed`: 1-byte reads, small reads, and whole.
fn piece_plans(seed: u8) -> [Vec<usize>; 3] {
    let small: Vec<usize> = (0..7)
        .map(|i| 1 + ((seed as usize >> i) & 0x7) * 3)
        .collect();
    [vec![1], small, vec![usize::MAX]]
}

/// The chunked coding of `payload` followed by `tail`, and how many bytes of chunk
/// extensions (after each `;`) it carries.
fn encode(payload: &[u8], ctl: u8, tail: &[u8]) -> (Vec<u8>, usize) {
    let upper = ctl & 1 != 0;
    let extensions = ctl & 2 != 0;
    let trailers = ctl & 4 != 0;
    let max_chunk = 1 + (ctl >> 3) as usize * 8;
    let mut wire = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    let mut extension_bytes = 0;
    while !rest.is_empty() {
        let n = (1 + rest[0] as usize % max_chunk).min(rest.len());
        let size = if upper {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        wire.extend_from_slice(size.as_bytes());
        if extensions {
            let ext = format!("ext{i}=\"v\"");
            extension_bytes += ext.len();
            wire.push(b';');
            wire.extend_from_slice(ext.as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    wire.extend_from_slice(b"0\r\n");
    if trailers {
        wire.extend_from_slice(b"x-checksum: 1\r\nx-other: two\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(tail);
    (wire, extension_bytes)
}

fuzz_target!(|data: &[u8]| {
    let seed = data.first().copied().unwrap_or(0);
    let plans = piece_plans(seed);

    // Arbitrary bytes: fed whole and in pieces, the outcome must agree.
    let whole = decode(data, &plans[2]);
    for plan in &plans[..2] {
        let split = decode(data, plan);
        match (&whole, &split) {
            (Outcome::Done(..), _) | (_, Outcome::Done(..)) | (Outcome::Refused, _) => {
                assert_eq!(whole, split, "fed whole vs in pieces of {plan:?}: {data:?}")
            }
            // Fed in pieces it may refuse earlier (an over-long line is refused before its
            // end arrives) only if whole it was not complete either.
            (Outcome::More, _) => {}
        }
    }

    // Round trip.
    let (payload, tail) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[1.min(at)..at], &data[at..]),
        None => (data.get(1..).unwrap_or(&[]), &[][..]),
    };
    let (wire, extension_bytes) = encode(payload, seed, tail);
    let want = if extension_bytes > MAX_CHUNK_EXTENSIONS {
        Outcome::Refused
    } else {
        Outcome::Done(payload.to_vec(), tail.to_vec())
    };
    for plan in &plans {
        assert_eq!(
            decode(&wire, plan),
            want,
            "round trip of {payload:?} in pieces of {plan:?}: {:?}",
            String::from_utf8_lossy(&wire)
        );
    }
});
