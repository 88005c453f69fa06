//! Entry points for the cargo-fuzz targets in `fuzz/`: thin public wrappers around the
//! parsers in the request path that are private to their modules, and re-exports of the
//! ones that are already public, so that every target reaches its code through one
//! place. Not an API: no logic of its own (the wrappers only translate crate-private
//! types into the mirror types below) and no stability promise. Hidden from the docs
//! here rather than on the `mod` line in lib.rs, which rustfmt would split in two.
#![doc(hidden)]

use bytes::BytesMut;
use http::Response;

pub use crate::config::expand::expand;
pub use crate::config::units::{format_duration, format_size, parse_duration, parse_size};
pub use crate::forward::{is_hop_by_hop, upstream_path, write_upstream_head, ForwardInfo};
pub use crate::h1::codec::MAX_CHUNK_EXTENSIONS;
pub use crate::handshake::{percent_decode, query_param};
pub use crate::pipeline::client_ip::client_ip;
pub use crate::verify::hmac::parse_rfc3339;
pub use crate::verify::template::Template;

/// An upstream response head or chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// How an upstream response's body is delimited (mirror of the upstream client's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// What the upstream response-head parser made of a buffer.
#[derive(Debug)]
pub enum Head {
    /// More bytes are needed.
    Partial,
    /// A 1xx head of `len` bytes, to be skipped.
    Informational(usize),
    /// A final head of `len` bytes.
    Done {
        len: usize,
        resp: Response<()>,
        framing: Framing,
        keep_alive: bool,
    },
}

/// `crate::upstream::parse_head`.
pub fn parse_head(buf: &[u8]) -> Result<Head, Malformed> {
    use crate::upstream::{Framing as F, Parsed};
    Ok(
        match crate::upstream::parse_head(buf).map_err(|_| Malformed)? {
            Parsed::Partial => Head::Partial,
            Parsed::Informational(len) => Head::Informational(len),
            Parsed::Done {
                len,
                resp,
                framing,
                keep_alive,
            } => Head::Done {
                len,
                resp: resp.into_response().map(|_| ()),
                framing: match framing {
                    F::None => Framing::None,
                    F::Length(n) => Framing::Length(n),
                    F::Chunked => Framing::Chunked,
                    F::Close => Framing::Close,
                },
                keep_alive,
            },
        },
    )
}

/// The upstream client's incremental chunked-coding decoder.
#[derive(Debug, Default)]
pub struct Chunked(crate::upstream::Chunked);

impl Chunked {
    /// `crate::upstream::Chunked::decode`: consumes what it can of `buf` into `out`;
    /// `Ok(true)` once the message is complete.
    pub fn decode(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<bool, Malformed> {
        self.0.decode(buf, out).map_err(|_| Malformed)
    }
}

/// `crate::verify::hmac::pairs`: a pairs-shaped signature header's `(key, value)` entries.
pub fn hmac_pairs(value: &[u8], separator: char, assign: char) -> Vec<(&[u8], &[u8])> {
    crate::verify::hmac::pairs(value, separator, assign).collect()
}

/// `crate::verify::hmac::decode_encoded`: one encoded signature of `want` bytes.
pub fn hmac_decode_encoded(
    v: &[u8],
    encoding: crate::verify::hmac::Encoding,
    want: usize,
) -> Option<Vec<u8>> {
    crate::verify::hmac::decode_encoded(v, encoding, want).map(|c| c.bytes[..c.len].to_vec())
}

/// `crate::verify::hmac::decode_bare`: a bare signature header value after its prefix.
pub fn hmac_decode_bare(
    value: &[u8],
    spec: &crate::verify::hmac::HmacSpec,
    want: usize,
) -> Option<Vec<u8>> {
    crate::verify::hmac::decode_bare(value, spec, want).map(|c| c.bytes[..c.len].to_vec())
}
