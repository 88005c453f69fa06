//! A path-aware reader over the parsed YAML tree. Every accessor records what it could
//! not accept in [`Errors`] with the key path (`routes[1].verify.secrets[0]`) and carries
//! on, so that one `check` run lists every problem, not just the first; maps report the
//! keys nobody asked for as unknown.

use super::expand::{expand, ExpandError};
use serde_norway::{Mapping, Value};

/// One problem in a config file, located by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

pub type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// A node of the YAML tree together with its path and the environment used to expand it.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub env: Env<'a>,
    path: &'a str,
}

/// The same, owning its path (children's paths are built as the tree is walked).
pub struct Owned<'a> {
    pub value: &'a Value,
    pub env: Env<'a>,
    pub path: String,
}

impl<'a> Owned<'a> {
    pub fn node(&self) -> Node<'_> {
        Node {
            value: self.value,
            env: self.env,
            path: &self.path,
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value, env: Env<'a>) -> Self {
        Node {
            value,
            env,
            path: "",
        }
    }

    pub fn path(&self) -> &str {
        self.path
    }

    pub fn err(&self, errs: &mut Errors, msg: impl Into<String>) {
        errs.push(self.path, msg);
    }

    pub fn is_null(&self) -> bool {
        self.value.is_null()
    }

    /// A map, to be read key by key; `None` (with an error) if this is not a map.
    pub fn map(&self, errs: &mut Errors) -> Option<MapReader<'a>> {
        match self.value {
            Value::Mapping(m) => Some(MapReader {
                map: m,
                env: self.env,
                path: self.path.to_string(),
                asked: Vec::new(),
            }),
            other => {
                self.err(errs, format!("expected a map, found {}", kind(other)));
                None
            }
        }
    }

    /// The elements of a list, each with its `[i]` path.
    pub fn list(&self, errs: &mut Errors) -> Option<Vec<Owned<'a>>> {
        match self.value {
            Value::Sequence(seq) => Some(
                seq.iter()
                    .enumerate()
                    .map(|(i, value)| Owned {
                        value,
                        env: self.env,
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect(),
            ),
            other => {
                self.err(errs, format!("expected a list, found {}", kind(other)));
                None
            }
        }
    }

    /// The unexpanded text of a scalar (numbers and booleans in their YAML spelling).
    pub fn raw_str(&self, errs: &mut Errors) -> Option<String> {
        match self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.err(errs, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// A string with `${VAR}` expanded. Errors name the variable, never its value.
    pub fn string(&self, errs: &mut Errors) -> Option<String> {
        let raw = self.raw_str(errs)?;
        match expand(&raw, self.env) {
            Ok(s) => Some(s),
            Err(
                e @ (ExpandError::Unset(_) | ExpandError::Unterminated | ExpandError::BadName(_)),
            ) => {
                self.err(errs, e.to_string());
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn non_empty(&self, errs: &mut Errors) -> Option<String> {
        let s = self.string(errs)?;
        if s.trim().is_empty() {
            self.err(errs, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A string parsed by `parse`, whose error message is reported at this path. A value
    /// that came from the environment may be a secret, so the message shows the `${VAR}`
    /// it was written as, never what it expanded to.
    pub fn parsed<T>(
        &self,
        errs: &mut Errors,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(errs)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(mut msg) => {
                let raw = self.raw_str(errs).unwrap_or_default();
                if raw != s && !s.is_empty() {
                    msg = msg
                        .replace(&format!("{s:?}"), &format!("{raw:?}"))
                        .replace(&s, &raw);
                }
                self.err(errs, msg);
                None
            }
        }
    }

    pub fn u64(&self, errs: &mut Errors) -> Option<u64> {
        match self.value {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::String(_) => self.parsed(errs, |s| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("expected a whole number, found {s:?}"))
            }),
            other => {
                self.err(
                    errs,
                    format!("expected a whole number, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn f64(&self, errs: &mut Errors) -> Option<f64> {
        match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(_) => self.parsed(errs, |s| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("expected a number, found {s:?}"))
            }),
            other => {
                self.err(errs, format!("expected a number, found {}", kind(other)));
                None
            }
        }
    }

    pub fn bool(&self, errs: &mut Errors) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            Value::String(_) => self.parsed(errs, |s| match s.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("expected true or false, found {s:?}")),
            }),
            other => {
                self.err(
                    errs,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list whose elements are each read by `read`; `None` only if this is not a list.
    pub fn each<T>(
        &self,
        errs: &mut Errors,
        mut read: impl FnMut(Node<'_>, &mut Errors) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.list(errs)?;
        Some(
            items
                .iter()
                .filter_map(|item| read(item.node(), errs))
                .collect(),
        )
    }
}

/// Reads a map key by key; [`MapReader::finish`] reports the keys that were not asked for.
pub struct MapReader<'a> {
    map: &'a Mapping,
    env: Env<'a>,
    path: String,
    asked: Vec<&'static str>,
}

impl<'a> MapReader<'a> {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value under `key`, if present. A key set to null counts as absent.
    pub fn get(&mut self, key: &'static str) -> Option<Owned<'a>> {
        self.asked.push(key);
        let value = self.map.get(key)?;
        if value.is_null() {
            return None;
        }
        Some(Owned {
            value,
            env: self.env,
            path: self.child_path(key),
        })
    }

    /// The value under `key`, or an error saying it is required.
    pub fn require(&mut self, key: &'static str, errs: &mut Errors) -> Option<Owned<'a>> {
        let v = self.get(key);
        if v.is_none() {
            errs.push(&self.child_path(key), "is required");
        }
        v
    }

    /// Marks a key as known but not supported by this build: present → error.
    pub fn not_yet(&mut self, key: &'static str, what: &str, errs: &mut Errors) {
        if self.map.contains_key(key) {
            self.asked.push(key);
            errs.push(
                &self.child_path(key),
                format!("{what} is not supported yet by this version of hookgate; remove the key"),
            );
        } else {
            self.asked.push(key);
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// Reports every key that was not asked for, with the keys that are allowed here.
    pub fn finish(self, errs: &mut Errors) {
        for key in self.map.keys() {
            match key.as_str() {
                Some(k) if self.asked.contains(&k) => {}
                Some(k) => {
                    let mut known: Vec<&str> = self.asked.clone();
                    known.sort_unstable();
                    known.dedup();
                    errs.push(
                        &self.child_path(k),
                        format!("unknown key (expected one of: {})", known.join(", ")),
                    );
                }
                None => errs.push(
                    &self.path,
                    format!("map keys must be strings, found {}", kind(key)),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn collects_every_error_with_its_path() {
        let v: Value =
            serde_norway::from_str("a: 1\nb: [x, \"${NOPE}\"]\nc: {d: true}\nzz: 3\n").unwrap();
        let mut errs = Errors::default();
        let root = Node::root(&v, &no_env);
        let mut m = root.map(&mut errs).unwrap();
        let b = m.get("b").unwrap();
        let items = b.node().each(&mut errs, |n, e| n.string(e)).unwrap();
        assert_eq!(items, vec!["x".to_string()]);
        let c = m.get("c").unwrap();
        let mut cm = c.node().map(&mut errs).unwrap();
        assert_eq!(cm.get("d").unwrap().node().u64(&mut errs), None);
        cm.finish(&mut errs);
        m.require("missing", &mut errs);
        m.finish(&mut errs);
        let text: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "b[1]: environment variable NOPE is not set",
                "c.d: expected a whole number, found a boolean",
                "missing: is required",
                "a: unknown key (expected one of: b, c, missing)",
                "zz: unknown key (expected one of: b, c, missing)",
            ]
        );
    }

    #[test]
    fn numbers_may_come_from_strings() {
        let v: Value = serde_norway::from_str("n: \"42\"\nf: 0.5\nbad: \"x\"").unwrap();
        let mut errs = Errors::default();
        let root = Node::root(&v, &no_env);
        let mut m = root.map(&mut errs).unwrap();
        assert_eq!(m.get("n").unwrap().node().u64(&mut errs), Some(42));
        assert_eq!(m.get("f").unwrap().node().f64(&mut errs), Some(0.5));
        assert_eq!(m.get("bad").unwrap().node().u64(&mut errs), None);
        assert_eq!(
            errs.0[0].to_string(),
            "bad: expected a whole number, found \"x\""
        );
    }
}
