//! A request's header fields as the gateway reads them: in the order received, names in
//! lower case, values as sent. Over HTTP/1 they are offsets into the request's own
//! buffer (no copy and no allocation per field, unlike a `HeaderMap`, which hashes every
//! name and copies every name it does not know); HTTP/2 heads, stored deliveries and
//! tests convert from a `HeaderMap` or from pairs.
//!
//! Lookups scan the list, comparing names without regard to case: a delivery carries a
//! handful of fields, and the gateway looks up a handful.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

/// One field: where its name and value are in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

/// The header fields of a request.
#[derive(Clone, Default)]
pub struct Fields {
    buf: Bytes,
    list: Vec<Span>,
}

/// A field's value, borrowed from its [`Fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a>(&'a [u8]);

/// The value holds a byte that is not visible ASCII (see [`Value::to_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotVisibleAscii;

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Value<'a> {
        Value(v)
    }
}

impl<'a> Value<'a> {
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The value as text if every byte is visible ASCII, a space or a tab: the same
    /// rule as `http::HeaderValue::to_str`.
    pub fn to_str(self) -> Result<&'a str, NotVisibleAscii> {
        if !self.0.iter().all(|&b| (32..127).contains(&b) || b == b'\t') {
            return Err(NotVisibleAscii);
        }
        std::str::from_utf8(self.0).map_err(|_| NotVisibleAscii)
    }

    /// The value for an answer that echoes it (a handshake).
    pub fn to_header_value(self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.0).ok()
    }
}

impl Fields {
    /// Fields parsed from `buf` (the HTTP/1 codec): names already in lower case.
    pub(crate) fn from_spans(buf: Bytes, list: Vec<Span>) -> Fields {
        debug_assert!(list.iter().all(|s| {
            let name = &buf[s.name.0..s.name.0 + s.name.1];
            value_end(s) <= buf.len() && !name.iter().any(u8::is_ascii_uppercase)
        }));
        Fields { buf, list }
    }

    /// Fields from names and values (names are lower-cased).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Fields {
        let mut buf = BytesMut::new();
        let mut list = Vec::new();
        for (name, value) in pairs {
            let n = buf.len();
            buf.extend_from_slice(name.as_bytes());
            buf[n..].make_ascii_lowercase();
            let v = buf.len();
            buf.extend_from_slice(value);
            list.push(Span {
                name: (n, name.len()),
                value: (v, value.len()),
            });
        }
        Fields {
            buf: buf.freeze(),
            list,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn name(&self, s: &Span) -> &[u8] {
        &self.buf[s.name.0..s.name.0 + s.name.1]
    }

    fn value(&self, s: &Span) -> Value<'_> {
        Value(&self.buf[s.value.0..value_end(s)])
    }

    /// The first value of field `name`.
    pub fn get(&self, name: impl AsRef<str>) -> Option<Value<'_>> {
        let name = name.as_ref().as_bytes();
        self.list
            .iter()
            .find(|s| self.name(s).eq_ignore_ascii_case(name))
            .map(|s| self.value(s))
    }

    /// Every value of field `name`, in order.
    pub fn get_all<'a>(
        &'a self,
        name: &'a (impl AsRef<str> + ?Sized),
    ) -> impl DoubleEndedIterator<Item = Value<'a>> + 'a {
        let name = name.as_ref().as_bytes();
        self.list
            .iter()
            .filter(move |s| self.name(s).eq_ignore_ascii_case(name))
            .map(|s| self.value(s))
    }

    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        self.get(name).is_some()
    }

    /// Every field in order: the name (lower case; a token, so ASCII, by construction
    /// in httparse or `HeaderName`) and the value. Names are bytes: the request path
    /// compares and copies them and never needs them as text.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Value<'_>)> {
        self.list.iter().map(|s| (self.name(s), self.value(s)))
    }
}

fn value_end(s: &Span) -> usize {
    s.value.0 + s.value.1
}

impl From<&HeaderMap> for Fields {
    fn from(map: &HeaderMap) -> Fields {
        Fields::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
    }
}

/// Names only: values can be credentials.
impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(k, _)| String::from_utf8_lossy(k)))
            .finish()
    }
}

/// A request's head as the gateway handles it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub fields: Fields,
}

impl From<http::request::Parts> for RequestHead {
    fn from(parts: http::request::Parts) -> RequestHead {
        RequestHead {
            fields: Fields::from(&parts.headers),
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_order_and_duplicates() {
        let f = Fields::from_pairs([
            ("Host", &b"a.example"[..]),
            ("X-Forwarded-For", b"1.1.1.1"),
            ("x-forwarded-for", b"2.2.2.2, 3.3.3.3"),
        ]);
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("host").map(Value::as_bytes), Some(&b"a.example"[..]));
        assert_eq!(f.get(http::header::HOST).unwrap().to_str(), Ok("a.example"));
        assert_eq!(f.get("HOST").unwrap().as_bytes(), b"a.example");
        let xff: Vec<&[u8]> = f.get_all("x-forwarded-for").map(Value::as_bytes).collect();
        assert_eq!(xff, [&b"1.1.1.1"[..], b"2.2.2.2, 3.3.3.3"]);
        assert_eq!(
            f.get_all("x-forwarded-for").next_back().unwrap().as_bytes(),
            b"2.2.2.2, 3.3.3.3"
        );
        assert!(f.get("missing").is_none());
        assert!(!f.contains_key("x-forwarded"));
        let names: Vec<&[u8]> = f.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [&b"host"[..], b"x-forwarded-for", b"x-forwarded-for"]
        );
    }

    #[test]
    fn to_str_follows_header_value() {
        for raw in [
            &b"plain"[..],
            b"with space\tand tab",
            b"caf\xc3\xa9",
            b"del\x7f",
            b"",
        ] {
            let ours = Value(raw).to_str().ok();
            let theirs = HeaderValue::from_bytes(raw)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            assert_eq!(ours.map(str::to_owned), theirs, "{raw:?}");
        }
    }

    #[test]
    fn debug_shows_names_not_values() {
        let f = Fields::from_pairs([("authorization", &b"Bearer s3cret"[..])]);
        let shown = format!("{f:?}");
        assert!(shown.contains("authorization"));
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn from_a_header_map_keeps_every_value() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("content-type", HeaderValue::from_static("text/plain"));
        let f = Fields::from(&map);
        assert_eq!(f.len(), 3);
        assert_eq!(f.get_all("x-a").count(), 2);
        assert_eq!(f.get("content-type").unwrap().as_bytes(), b"text/plain");
    }
}
