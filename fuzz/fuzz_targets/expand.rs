//! `config::expand::expand` (`${VAR}`, `${VAR:-fallback}`, `$$`).
//!
//! Invariants: it never panics, and
//! - text without `$` is returned unchanged;
//! - any text with every `$` doubled expands to the text itself;
//! - `${NAME}` is the variable's value, `${UNSET:-fallback}` the fallback (verbatim),
//!   for any fallback without `}`;
//! - an error names only a variable written in the input.
#![no_main]

use hookgate::config::expand::ExpandError;
use hookgate::fuzzing::expand;
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("<{name}>")),
    }
}

fuzz_target!(|text: &str| {
    match expand(text, &env) {
        Ok(out) => {
            if !text.contains('$') {
                assert_eq!(out, text);
            }
        }
        Err(ExpandError::Unset(name) | ExpandError::BadName(name)) => {
            assert!(text.contains(&name), "{name:?} is not in {text:?}");
        }
        Err(ExpandError::Unterminated) => assert!(text.contains("${")),
    }

    let escaped = text.replace('$', "$$");
    assert_eq!(expand(&escaped, &env).as_deref(), Ok(text), "{escaped:?}");

    if !text.contains('}') {
        let src = format!("a${{UNSET:-{text}}}b");
        assert_eq!(expand(&src, &|_| None), Ok(format!("a{text}b")), "{src:?}");
        let src = "${NAME_IS_SET}";
        assert_eq!(
            expand(src, &|_| Some(text.to_string())).as_deref(),
            Ok(text)
        );
    }
});
