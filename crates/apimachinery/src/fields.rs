//! Field selectors with the grammar of Go's `fields.ParseSelector` (spec §4.2): terms `f=v`,
//! `f==v`, `f!=v` joined by `,`, with `\,`, `\=` and `\\` escapes in values.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object whose selectable fields are given by `lookup` matches. A field the
    /// object lacks reads as the empty string.
    pub fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| {
            let have = lookup(&r.field).unwrap_or("");
            (have == r.value) != r.negated
        })
    }

    /// The value an equality term pins `field` to (e.g. `metadata.name`).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Checks every field against the ones a resource supports; the message is kube's for
    /// resources that only add their own fields to the object-meta ones.
    pub fn check_fields(&self, supported: &[&str]) -> Result<(), ParseError> {
        for r in &self.requirements {
            if !supported.contains(&r.field.as_str()) {
                return Err(ParseError(format!(
                    "{:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                    r.field
                )));
            }
        }
        Ok(())
    }
}

/// Splits on separators that are not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// The first unescaped operator in a term: `!=`, `==` or `=`.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], "!=", &term[i + 2..]))
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], "==", &term[i + 2..]))
            }
            b'=' => return Some((&term[..i], "=", &term[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

fn unescape(value: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == ',' || c == '=' {
                return Err(ParseError(format!(
                    "invalid field selector: unescaped character {c:?} in value {value:?}"
                )));
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => {
                return Err(ParseError(format!(
                    "invalid field selector: invalid escape sequence: \\{e}"
                )))
            }
            None => {
                return Err(ParseError(
                    "invalid field selector: unterminated escape sequence".to_string(),
                ))
            }
        }
    }
    Ok(out)
}

/// Parses a `fieldSelector` query value.
pub fn parse(selector: &str) -> Result<FieldSelector, ParseError> {
    let mut requirements = Vec::new();
    if selector.is_empty() {
        return Ok(FieldSelector { requirements });
    }
    for term in split_unescaped(selector, ',') {
        if term.is_empty() {
            continue;
        }
        let Some((field, op, value)) = split_term(term) else {
            return Err(ParseError(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            )));
        };
        requirements.push(FieldRequirement {
            field: field.trim().to_string(),
            value: unescape(value)?,
            negated: op == "!=",
        });
    }
    Ok(FieldSelector { requirements })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terms_and_escapes() {
        let s = parse(r"metadata.name=a\,b,metadata.namespace!=x,spec.r==c\=d\\").expect("parse");
        assert_eq!(
            s.requirements,
            vec![
                FieldRequirement {
                    field: "metadata.name".into(),
                    value: "a,b".into(),
                    negated: false
                },
                FieldRequirement {
                    field: "metadata.namespace".into(),
                    value: "x".into(),
                    negated: true
                },
                FieldRequirement {
                    field: "spec.r".into(),
                    value: r"c=d\".into(),
                    negated: false
                },
            ]
        );
        assert_eq!(s.required_value("metadata.name"), Some("a,b"));
        assert_eq!(s.required_value("metadata.namespace"), None);
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(
            parse("metadata.name").expect_err("no op").0,
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert!(parse(r"a=b\x").is_err());
        assert!(parse("a=b=c").is_err());
        let s = parse("spec.foo=x").expect("parse");
        assert_eq!(
            s.check_fields(&["metadata.name", "metadata.namespace"])
                .expect_err("unknown")
                .0,
            "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }

    #[test]
    fn matching_treats_missing_fields_as_empty() {
        let s = parse("a=1,b!=2").expect("parse");
        let fields = |f: &str| match f {
            "a" => Some("1"),
            _ => None,
        };
        assert!(s.matches(fields));
        assert!(!parse("a=2").expect("p").matches(fields));
        assert!(parse("c=").expect("p").matches(fields));
        assert!(parse("").expect("p").matches(fields));
    }
}
