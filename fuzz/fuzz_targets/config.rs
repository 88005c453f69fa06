//! `config::load_str`: YAML parsing, merge keys, `${VAR}` expansion and validation.
//!
//! Invariants: on arbitrary UTF-8 it never panics (nor overflows the stack), whether
//! the environment sets every variable or none; a refusal renders as text, and an
//! accepted config as its Debug form, without panicking.
//!
//! The loader reads the files a config names (`secret_files`, `hook_secret_file`). A
//! config is trusted input, and a device such as /dev/zero or /dev/stdin would make the
//! target hang or run out of memory for no fault of the gateway's, so the target skips
//! inputs with a string that contains /dev, /proc, /sys, /run or `..` (checked on the
//! parsed YAML, after escapes and merges). Other paths name ordinary files or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_norway::Value;

fn mentions_a_device(v: &Value) -> bool {
    match v {
        Value::String(s) => ["/dev", "/proc", "/sys", "/run", ".."]
            .iter()
            .any(|d| s.contains(d)),
        Value::Sequence(items) => items.iter().any(mentions_a_device),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| mentions_a_device(k) || mentions_a_device(v)),
        Value::Tagged(t) => mentions_a_device(&t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fuzz_target!(|text: &str| {
    if let Ok(tree) = hookgate::config::from_yaml(text) {
        if mentions_a_device(&tree) {
            return;
        }
    }
    let unset = |_: &str| None;
    // Every variable set, to a value that is valid as a raw and as a base64 secret.
    let set = |_: &str| Some("c2VjcmV0LXZhbHVl".to_string());
    for env in [&unset as &dyn Fn(&str) -> Option<String>, &set] {
        match hookgate::config::load_str(text, env) {
            Ok(config) => {
                let _ = format!("{config:?}");
            }
            Err(errors) => {
                let _ = errors.to_string();
            }
        }
    }
});
