//! The signed-content template (`"{id}.{timestamp}.{body}"`), compiled once at load time
//! into a list of parts so that a request only feeds slices to the MAC, never builds a
//! string. `{{` and `}}` stand for literal braces.

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Box<[u8]>),
    Body,
    Timestamp,
    Id,
    Method,
    Url,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a template may refer to, for one request.
pub struct Inputs<'a> {
    pub body: &'a [u8],
    pub timestamp: &'a [u8],
    pub id: &'a [u8],
    pub method: &'a [u8],
    pub url: &'a [u8],
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = src;
        while let Some(c) = rest.chars().next() {
            if let Some(r) = rest.strip_prefix("{{") {
                literal.push(b'{');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("}}") {
                literal.push(b'}');
                rest = r;
            } else if c == '{' {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unterminated placeholder in template {src:?}"))?;
                let part = match &rest[1..end] {
                    "body" => Part::Body,
                    "timestamp" => Part::Timestamp,
                    "id" => Part::Id,
                    "method" => Part::Method,
                    "url" => Part::Url,
                    "sorted_params" => {
                        return Err("placeholder {sorted_params} belongs to the twilio scheme, not to hmac templates".to_string())
                    }
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} (supported: {{body}}, {{timestamp}}, {{id}}, {{method}}, {{url}}; write {{{{ for a literal brace)"
                        ))
                    }
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(
                        std::mem::take(&mut literal).into_boxed_slice(),
                    ));
                }
                parts.push(part);
                rest = &rest[end + 1..];
            } else if c == '}' {
                return Err(format!(
                    "unmatched '}}' in template {src:?} (write }}}} for a literal brace)"
                ));
            } else {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into_boxed_slice()));
        }
        if !parts.contains(&Part::Body) {
            return Err(format!(
                "template {src:?} does not sign the body: it must contain {{body}}"
            ));
        }
        Ok(Template { parts })
    }

    pub fn uses(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }

    /// Feeds the signed content, piece by piece, to `sink`.
    pub fn feed(&self, inputs: &Inputs<'_>, mut sink: impl FnMut(&[u8])) {
        for part in &self.parts {
            sink(match part {
                Part::Literal(bytes) => bytes,
                Part::Body => inputs.body,
                Part::Timestamp => inputs.timestamp,
                Part::Id => inputs.id,
                Part::Method => inputs.method,
                Part::Url => inputs.url,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let inputs = Inputs {
            body: b"BODY",
            timestamp: b"123",
            id: b"msg_1",
            method: b"POST",
            url: b"https://h.example/x",
        };
        Template::compile(t)
            .unwrap()
            .feed(&inputs, |s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn renders_the_catalogue_shapes() {
        assert_eq!(render("{body}"), b"BODY");
        assert_eq!(render("{id}.{timestamp}.{body}"), b"msg_1.123.BODY");
        assert_eq!(render("v0:{timestamp}:{body}"), b"v0:123:BODY");
        assert_eq!(render("{id}{timestamp}{body}"), b"msg_1123BODY");
        assert_eq!(render("{{lit}}|{body}"), b"{lit}|BODY");
        assert_eq!(render("é{body}"), "éBODY".as_bytes());
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::compile("{timestamp}")
            .unwrap_err()
            .contains("must contain {body}"));
        assert!(Template::compile("{bdy}")
            .unwrap_err()
            .contains("unknown placeholder {bdy}"));
        assert!(Template::compile("{body")
            .unwrap_err()
            .contains("unterminated"));
        assert!(Template::compile("}{body}")
            .unwrap_err()
            .contains("unmatched"));
        assert!(Template::compile("{sorted_params}{body}").is_err());
        assert_eq!(
            render("{method}{url}{body}"),
            b"POSThttps://h.example/xBODY"
        );
    }

    #[test]
    fn reports_what_it_uses() {
        let t = Template::compile("{timestamp}.{body}").unwrap();
        assert!(t.uses(&Part::Timestamp));
        assert!(!t.uses(&Part::Id));
    }
}
