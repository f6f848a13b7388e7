//! Field paths and field errors, printed exactly as k8s.io/apimachinery's `field` package
//! prints them (spec `k8s-apiserver-semantics.md` §3.2): `spec.tags[0].from.name: Required value`.

use std::fmt;

/// A path to a field: `metadata.name`, `spec.tags[2].from`, `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at a top-level field.
    pub fn new(name: &str) -> Self {
        FieldPath(name.to_string())
    }

    /// The path of a child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return FieldPath::new(name);
        }
        FieldPath(format!("{}.{name}", self.0))
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The offending value of a field error, printed as Go's `field.Error` prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// Printed quoted (`%q`).
    Str(String),
    Int(i64),
    Bool(bool),
    /// Printed as JSON.
    Json(serde_json::Value),
    /// Not printed at all (Go's `field.OmitValueType`).
    Omitted,
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}

impl From<i64> for BadValue {
    fn from(n: i64) -> Self {
        BadValue::Int(n)
    }
}

impl From<bool> for BadValue {
    fn from(b: bool) -> Self {
        BadValue::Bool(b)
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Str(s) => write!(f, "{}", go_quote(s)),
            BadValue::Int(n) => write!(f, "{n}"),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::Json(v) => write!(f, "{v}"),
            BadValue::Omitted => Ok(()),
        }
    }
}

/// What is wrong with a field; each kind has its Status cause reason.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    Required,
    Invalid(BadValue),
    NotSupported {
        value: BadValue,
        supported: Vec<String>,
    },
    Forbidden,
    Duplicate(BadValue),
    NotFound(BadValue),
    TooLong,
    TooMany,
    Internal,
}

impl ErrorKind {
    /// The `StatusCause.reason` of this kind.
    pub fn cause_reason(&self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid(_) => "FieldValueInvalid",
            ErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Duplicate(_) => "FieldValueDuplicate",
            ErrorKind::NotFound(_) => "FieldValueNotFound",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Internal => "InternalError",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid(_) => "Invalid value",
            ErrorKind::NotSupported { .. } => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Duplicate(_) => "Duplicate value",
            ErrorKind::NotFound(_) => "Not found",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Internal => "Internal error",
        }
    }
}

/// One field error.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: FieldPath,
    pub kind: ErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Required, detail)
    }

    pub fn invalid(
        field: &FieldPath,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(field, ErrorKind::Invalid(value.into()), detail)
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(
        field: &FieldPath,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| s.to_string()).collect();
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            field,
            ErrorKind::NotSupported {
                value: value.into(),
                supported,
            },
            detail,
        )
    }

    pub fn forbidden(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Forbidden, detail)
    }

    pub fn duplicate(field: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(field, ErrorKind::Duplicate(value.into()), "")
    }

    pub fn not_found(field: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(field, ErrorKind::NotFound(value.into()), "")
    }

    pub fn too_long(field: &FieldPath, max_bytes: usize) -> Self {
        Self::new(
            field,
            ErrorKind::TooLong,
            format!("may not be more than {max_bytes} bytes"),
        )
    }

    pub fn internal(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Internal, detail)
    }

    fn new(field: &FieldPath, kind: ErrorKind, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.clone(),
            kind,
            detail: detail.into(),
        }
    }

    /// The message without the field (Go's `ErrorBody`), used as a Status cause's message.
    pub fn body(&self) -> String {
        let mut s = self.kind.title().to_string();
        match &self.kind {
            ErrorKind::Invalid(v)
            | ErrorKind::NotSupported { value: v, .. }
            | ErrorKind::Duplicate(v)
            | ErrorKind::NotFound(v)
                if *v != BadValue::Omitted =>
            {
                s.push_str(&format!(": {v}"));
            }
            _ => {}
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(": {}", self.detail));
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// The message of several field errors, as Go's aggregate prints it: one error alone, or
/// `[e1, e2]` with duplicates removed.
pub fn aggregate_message(errors: &[FieldError]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// Go's `%q`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_go() {
        let spec = FieldPath::new("spec");
        assert_eq!(
            spec.child("tags")
                .index(0)
                .child("from")
                .child("name")
                .as_str(),
            "spec.tags[0].from.name"
        );
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .as_str(),
            "metadata.labels[app]"
        );
        assert_eq!(FieldPath::default().child("kind").as_str(), "kind");
    }

    #[test]
    fn errors_print_like_go() {
        let p = FieldPath::new("metadata").child("resourceVersion");
        let cases = [
            (FieldError::required(&FieldPath::new("metadata").child("name"), ""), "metadata.name: Required value"),
            (
                FieldError::required(&FieldPath::new("metadata").child("name"), "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::invalid(&p, 0i64, "must be specified for an update"),
                "metadata.resourceVersion: Invalid value: 0: must be specified for an update",
            ),
            (FieldError::invalid(&p, "abc", ""), "metadata.resourceVersion: Invalid value: \"abc\""),
            (
                FieldError::not_supported(&FieldPath::new("dryRun"), BadValue::Json(serde_json::json!(["Bogus"])), &["All"]),
                "dryRun: Unsupported value: [\"Bogus\"]: supported values: \"All\"",
            ),
            (
                FieldError::forbidden(&FieldPath::new("resourceVersionMatch"), "resourceVersionMatch is forbidden unless resourceVersion is provided"),
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ),
            (FieldError::duplicate(&FieldPath::new("spec").child("tags").index(1).child("name"), "latest"), "spec.tags[1].name: Duplicate value: \"latest\""),
            (FieldError::not_found(&FieldPath::new("x"), true), "x: Not found: true"),
            (FieldError::too_long(&FieldPath::new("x"), 10), "x: Too long: may not be more than 10 bytes"),
            (FieldError::invalid(&FieldPath::new("x"), BadValue::Omitted, "bad"), "x: Invalid value: bad"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn cause_reasons() {
        let p = FieldPath::new("x");
        assert_eq!(
            FieldError::required(&p, "").kind.cause_reason(),
            "FieldValueRequired"
        );
        assert_eq!(
            FieldError::invalid(&p, 1i64, "").kind.cause_reason(),
            "FieldValueInvalid"
        );
        assert_eq!(
            FieldError::not_supported(&p, "a", &["b"])
                .kind
                .cause_reason(),
            "FieldValueNotSupported"
        );
        assert_eq!(
            FieldError::forbidden(&p, "").kind.cause_reason(),
            "FieldValueForbidden"
        );
        assert_eq!(
            FieldError::internal(&p, "").kind.cause_reason(),
            "InternalError"
        );
    }

    #[test]
    fn aggregates_dedupe_and_bracket() {
        let a = FieldError::required(&FieldPath::new("a"), "");
        let b = FieldError::required(&FieldPath::new("b"), "");
        assert_eq!(aggregate_message(&[]), None);
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)).as_deref(),
            Some("a: Required value")
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b, a]).as_deref(),
            Some("[a: Required value, b: Required value]")
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
