//! `${VAR}` expansion in config strings. `${VAR:-fallback}` uses the fallback when the
//! variable is unset or empty, and `$$` is a literal `$`. The environment is passed in
//! as a lookup function so that tests need not touch the process environment.

/// Why a string could not be expanded. The variable's *value* is never part of it, since
/// it may be a secret.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    Unset(String),
    Unterminated,
    BadName(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(f, "environment variable {name} is not set"),
            ExpandError::Unterminated => {
                write!(f, "unterminated \"${{\" (write \"$$\" for a literal \"$\")")
            }
            ExpandError::BadName(name) => write!(f, "invalid environment variable name {name:?}"),
        }
    }
}

/// Where a value came from, for `check` output (which never shows secret values).
pub fn describe_source(raw: &str) -> String {
    match raw.find("${") {
        Some(start) => {
            let rest = &raw[start + 2..];
            let end = rest.find(['}', ':']).unwrap_or(rest.len());
            format!("env:{}", &rest[..end])
        }
        None => "inline".to_string(),
    }
}

pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or(ExpandError::Unterminated)?;
            let spec = &inner[..end];
            let (name, fallback) = match spec.find(":-") {
                Some(i) => (&spec[..i], Some(&spec[i + 2..])),
                None => (spec, None),
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::BadName(name.to_string()));
            }
            match (
                lookup(name).filter(|v| !v.is_empty() || fallback.is_none()),
                fallback,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(fallback)) => out.push_str(fallback),
                (None, None) => return Err(ExpandError::Unset(name.to_string())),
            }
            rest = &inner[end + 1..];
        } else {
            // A lone `$` followed by anything else is literal: secrets may contain it.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands() {
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(expand("${A}", &env).unwrap(), "alpha");
        assert_eq!(expand("x-${A}-y", &env).unwrap(), "x-alpha-y");
        assert_eq!(expand("${B:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fb}", &env).unwrap(), "fb");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("$${A}", &env).unwrap(), "${A}");
        assert_eq!(expand("a$b", &env).unwrap(), "a$b");
        assert_eq!(expand("cost$", &env).unwrap(), "cost$");
    }

    #[test]
    fn errors_name_the_variable_never_a_value() {
        assert_eq!(
            expand("${MISSING}", &env),
            Err(ExpandError::Unset("MISSING".into()))
        );
        assert_eq!(
            ExpandError::Unset("EXPEL_SECRET".into()).to_string(),
            "environment variable EXPEL_SECRET is not set"
        );
        assert_eq!(expand("${A", &env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(expand("${}", &env), Err(ExpandError::BadName("".into())));
    }

    #[test]
    fn sources() {
        assert_eq!(describe_source("${EXPEL_SECRET}"), "env:EXPEL_SECRET");
        assert_eq!(describe_source("${X:-y}"), "env:X");
        assert_eq!(describe_source("literal"), "inline");
    }
}
