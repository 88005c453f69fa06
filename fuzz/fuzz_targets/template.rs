//! `Template::compile` (the signed-content template of the hmac scheme).
//!
//! Invariants:
//! - it never panics, and accepts exactly the templates of the documented language: text,
//!   `{{`/`}}` for literal braces, and the placeholders `{body}`, `{timestamp}`, `{id}`,
//!   `{method}`, `{url}`, with `{body}` at least once (checked against a reference reader);
//! - a compiled template uses exactly the placeholders written in it, and renders, with
//!   each placeholder standing for its own spelling, to the source with `{{`/`}}` collapsed;
//! - any text with its braces doubled, followed by `{body}`, compiles and renders to the
//!   text followed by the body.
#![no_main]

use hookgate::fuzzing::Template;
use hookgate::verify::template::{Inputs, Part};
use libfuzzer_sys::fuzz_target;

const PLACEHOLDERS: [(&str, Part); 5] = [
    ("body", Part::Body),
    ("timestamp", Part::Timestamp),
    ("id", Part::Id),
    ("method", Part::Method),
    ("url", Part::Url),
];

fn render(t: &Template, inputs: &Inputs<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    t.feed(inputs, |s| out.extend_from_slice(s));
    out
}

/// The reference reading of a template: `Some((rendering with placeholders spelled out,
/// placeholder names used))` if it is valid, `None` if not.
fn reference(src: &str) -> Option<(Vec<u8>, Vec<&str>)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut used = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{{") {
            out.push(b'{');
            i += 2;
        } else if b[i..].starts_with(b"}}") {
            out.push(b'}');
            i += 2;
        } else if b[i] == b'{' {
            let close = i + b[i..].iter().position(|&c| c == b'}')?;
            let name = &src[i + 1..close];
            if !PLACEHOLDERS.iter().any(|(n, _)| *n == name) {
                return None;
            }
            used.push(name);
            out.extend_from_slice(&b[i..=close]);
            i = close + 1;
        } else if b[i] == b'}' {
            return None;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    used.contains(&"body").then_some((out, used))
}

fuzz_target!(|src: &str| {
    let spelled = Inputs {
        body: b"{body}",
        timestamp: b"{timestamp}",
        id: b"{id}",
        method: b"{method}",
        url: b"{url}",
    };
    match (Template::compile(src), reference(src)) {
        (Ok(t), Some((rendered, used))) => {
            assert!(t.uses(&Part::Body), "{src:?} compiled without {{body}}");
            for (name, part) in PLACEHOLDERS {
                assert_eq!(t.uses(&part), used.contains(&name), "{src:?}: uses({name})");
            }
            assert_eq!(render(&t, &spelled), rendered, "{src:?}");
        }
        (Err(e), None) => assert!(!e.is_empty()),
        (Ok(t), None) => panic!("{src:?} is not a valid template but compiled to {t:?}"),
        (Err(e), Some(_)) => panic!("{src:?} is a valid template but was refused: {e}"),
    }

    let escaped = src.replace('{', "{{").replace('}', "}}") + "{body}";
    let t = Template::compile(&escaped).unwrap_or_else(|e| panic!("{escaped:?}: {e}"));
    let mut want = src.as_bytes().to_vec();
    want.extend_from_slice(b"BODY");
    let inputs = Inputs {
        body: b"BODY",
        ..spelled
    };
    assert_eq!(render(&t, &inputs), want, "{escaped:?}");
});
