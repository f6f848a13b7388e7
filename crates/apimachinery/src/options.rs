//! Query parameters of API requests (spec §0, §4.1, §5.2, §6.6, §6.7): parsed with Go's rules
//! and validated with `ValidateListOptions`' messages.

use crate::errors::ApiError;
use crate::field::{FieldError, FieldPath};
use crate::fields::{self, FieldSelector};
use crate::labels::{self, LabelSelector};
use crate::GroupKind;

/// A decoded query string: every value of every key, in order (Go's `url.Values`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `Convert_Slice_string_To_bool`: absent, `0` and `false` (any case) are false; anything
    /// else, the empty string included, is true.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(go_slice_bool)
    }

    /// A flag that distinguishes absent from false (`sendInitialEvents`).
    pub fn optional_flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(go_slice_bool)
    }

    /// A base-10 int64; a bad value is a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::BadRequest(format!(
                    "strconv.ParseInt: parsing {}: invalid syntax",
                    crate::field::go_quote(v)
                ))
            }),
        }
    }

    /// `?pretty` uses Go's `strconv.ParseBool`.
    pub fn pretty(&self) -> bool {
        matches!(
            self.get("pretty"),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True")
        )
    }
}

fn go_slice_bool(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    NotOlderThan,
    Exact,
}

/// What revision a read is pinned to, after validation (spec §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// resourceVersion unset: the latest state.
    Latest,
    /// resourceVersion "0": any state the server has.
    Any,
    NotOlderThan(u64),
    Exact(u64),
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<ResourceVersionMatch>,
    pub timeout_seconds: Option<i64>,
    pub limit: i64,
    pub continue_token: Option<String>,
    pub send_initial_events: Option<bool>,
}

fn list_options_invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(GroupKind::new("meta.k8s.io", "ListOptions"), "", errors)
}

impl ListOptions {
    /// Parses and validates list/watch parameters. `watch_path` is true for the legacy
    /// `/watch/` URLs.
    pub fn parse(query: &Query, watch_path: bool) -> Result<Self, ApiError> {
        let label_selector = labels::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let field_selector = fields::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let rvm_raw = query.get("resourceVersionMatch").unwrap_or("");
        let opts = ListOptions {
            label_selector,
            field_selector,
            watch: watch_path || query.flag("watch"),
            allow_watch_bookmarks: query.flag("allowWatchBookmarks"),
            resource_version: query
                .get("resourceVersion")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            resource_version_match: match rvm_raw {
                "NotOlderThan" => Some(ResourceVersionMatch::NotOlderThan),
                "Exact" => Some(ResourceVersionMatch::Exact),
                _ => None,
            },
            timeout_seconds: query.int("timeoutSeconds")?,
            limit: query.int("limit")?.unwrap_or(0).max(0),
            continue_token: query
                .get("continue")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            send_initial_events: query.optional_flag("sendInitialEvents"),
        };
        let errors = if opts.watch {
            opts.watch_errors(rvm_raw)
        } else {
            opts.list_errors(rvm_raw)
        };
        if !errors.is_empty() {
            return Err(list_options_invalid(errors));
        }
        Ok(opts)
    }

    fn list_errors(&self, rvm_raw: &str) -> Vec<FieldError> {
        let path = FieldPath::new("resourceVersionMatch");
        let mut errs = Vec::new();
        if !rvm_raw.is_empty() {
            if self.resource_version.is_none() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if self.continue_token.is_some() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if self.resource_version_match.is_none() {
                errs.push(FieldError::not_supported(
                    &path,
                    rvm_raw,
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if self.resource_version_match == Some(ResourceVersionMatch::Exact)
                && self.resource_version.as_deref() == Some("0")
            {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if self.send_initial_events.is_some() {
            errs.push(FieldError::forbidden(
                &FieldPath::new("sendInitialEvents"),
                "sendInitialEvents is forbidden for list",
            ));
        }
        errs
    }

    fn watch_errors(&self, rvm_raw: &str) -> Vec<FieldError> {
        let path = FieldPath::new("resourceVersionMatch");
        let mut errs = Vec::new();
        if self.send_initial_events.is_some()
            && self.resource_version_match != Some(ResourceVersionMatch::NotOlderThan)
        {
            errs.push(FieldError::forbidden(
                &path,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !rvm_raw.is_empty() {
            if self.send_initial_events.is_none() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if self.resource_version_match != Some(ResourceVersionMatch::NotOlderThan) {
                errs.push(FieldError::not_supported(&path, rvm_raw, &["NotOlderThan"]));
            }
            if self.continue_token.is_some() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        errs
    }

    /// The numeric resourceVersion, if one was given (400 when it is not a number).
    pub fn revision(&self) -> Result<Option<u64>, ApiError> {
        self.resource_version
            .as_deref()
            .map(parse_resource_version)
            .transpose()
    }

    /// Where a list reads (spec §4.1's table).
    pub fn list_read_at(&self) -> Result<ReadAt, ApiError> {
        let rv = self.revision()?;
        Ok(match (rv, self.resource_version_match) {
            (None, _) => ReadAt::Latest,
            (Some(0), _) => ReadAt::Any,
            (Some(n), Some(ResourceVersionMatch::Exact)) => ReadAt::Exact(n),
            (Some(n), Some(ResourceVersionMatch::NotOlderThan)) => ReadAt::NotOlderThan(n),
            (Some(n), None) if self.limit > 0 => ReadAt::Exact(n),
            (Some(n), None) => ReadAt::NotOlderThan(n),
        })
    }
}

/// Parses a resourceVersion as kube's versioner does (`strconv.ParseUint`: ASCII digits only,
/// no sign), and refuses one that a revision (etcd's int64) cannot hold instead of letting it
/// wrap to a negative revision.
pub fn parse_resource_version(rv: &str) -> Result<u64, ApiError> {
    let problem = if rv.is_empty() || !rv.bytes().all(|b| b.is_ascii_digit()) {
        "invalid syntax"
    } else {
        match rv.parse::<i64>().ok().and_then(|n| u64::try_from(n).ok()) {
            Some(n) => return Ok(n),
            None => "value out of range",
        }
    };
    let quoted = crate::field::go_quote(rv);
    Err(ApiError::BadRequest(format!(
        "invalid resource version: resourceVersion: Invalid value: {quoted}: strconv.ParseUint: parsing {quoted}: {problem}"
    )))
}

/// `fieldValidation` (spec §6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// The options every write takes: `dryRun`, `fieldManager`, `fieldValidation`, `force`.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: Option<bool>,
}

impl WriteOptions {
    /// The options of a write made on behalf of a delete (virtual resources).
    pub fn for_delete(dry_run: bool) -> Self {
        WriteOptions {
            dry_run,
            field_manager: None,
            field_validation: FieldValidation::Ignore,
            force: None,
        }
    }

    /// `kind` is the options kind named in errors (`CreateOptions`, `UpdateOptions`,
    /// `PatchOptions`).
    pub fn parse(query: &Query, kind: &str) -> Result<Self, ApiError> {
        let mut errs = Vec::new();
        let dry_run = query.all("dryRun");
        let bad: Vec<&str> = dry_run.iter().copied().filter(|v| *v != "All").collect();
        if !bad.is_empty() {
            errs.push(FieldError::not_supported(
                &FieldPath::new("dryRun"),
                crate::field::BadValue::Json(serde_json::json!(dry_run)),
                &["All"],
            ));
        }
        let field_validation = match query.get("fieldValidation").unwrap_or("") {
            "" | "Warn" => FieldValidation::Warn,
            "Ignore" => FieldValidation::Ignore,
            "Strict" => FieldValidation::Strict,
            other => {
                errs.push(FieldError::not_supported(
                    &FieldPath::new("fieldValidation"),
                    other,
                    &["Ignore", "Warn", "Strict"],
                ));
                FieldValidation::Warn
            }
        };
        let field_manager = query.get("fieldManager").map(str::to_string);
        if let Some(m) = &field_manager {
            if m.len() > 128 {
                errs.push(FieldError::too_long(&FieldPath::new("fieldManager"), 128));
            }
            if let Some((i, c)) = m.chars().enumerate().find(|(_, c)| c.is_control()) {
                errs.push(FieldError::invalid(
                    &FieldPath::new("fieldManager"),
                    m.as_str(),
                    format!("invalid character U+{:04X} (at position {i})", c as u32),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                GroupKind::new("meta.k8s.io", kind),
                "",
                errs,
            ));
        }
        Ok(WriteOptions {
            dry_run: !dry_run.is_empty(),
            field_manager,
            field_validation,
            force: query.optional_flag("force"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn go_booleans() {
        for (raw, want) in [
            ("watch", true),
            ("watch=", true),
            ("watch=1", true),
            ("watch=True", true),
            ("watch=yes", true),
            ("watch=0", false),
            ("watch=false", false),
            ("watch=FALSE", false),
            ("other=1", false),
        ] {
            assert_eq!(q(raw).flag("watch"), want, "{raw}");
        }
        assert!(q("pretty=t").pretty());
        assert!(!q("pretty=yes").pretty());
    }

    #[test]
    fn list_options_validation_messages() {
        let err = ListOptions::parse(&q("resourceVersionMatch=Exact"), false).expect_err("no rv");
        assert_eq!(err.to_string(), "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided");
        let err = ListOptions::parse(&q("resourceVersion=1&resourceVersionMatch=foo"), false)
            .expect_err("bad rvm");
        assert_eq!(err.to_string(), "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"foo\": supported values: \"Exact\", \"NotOlderThan\", \"\"");
        let err =
            ListOptions::parse(&q("sendInitialEvents=true"), false).expect_err("list with sie");
        assert!(err
            .to_string()
            .ends_with("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"));
        let err = ListOptions::parse(&q("watch=1&sendInitialEvents=true"), false)
            .expect_err("watch without rvm");
        assert!(err.to_string().ends_with("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
        let err = ListOptions::parse(
            &q("watch=1&resourceVersion=0&resourceVersionMatch=NotOlderThan"),
            false,
        )
        .expect_err("rvm without sie");
        assert!(err.to_string().ends_with(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
        ));
        let err = ListOptions::parse(&q("resourceVersion=0&resourceVersionMatch=Exact"), false)
            .expect_err("exact 0");
        assert!(
            err.to_string()
                .contains("resourceVersionMatch \\\"exact\\\" is forbidden")
                || err
                    .to_string()
                    .contains("resourceVersionMatch \"exact\" is forbidden")
        );
        assert!(ListOptions::parse(&q("limit=x"), false).is_err());
        assert!(ListOptions::parse(&q("labelSelector=a%20IN%20(b)"), false).is_err());
    }

    #[test]
    fn read_revision_table() {
        let at = |s: &str| {
            ListOptions::parse(&q(s), false)
                .expect(s)
                .list_read_at()
                .expect(s)
        };
        assert_eq!(at(""), ReadAt::Latest);
        assert_eq!(at("resourceVersion=0"), ReadAt::Any);
        assert_eq!(at("resourceVersion=0&limit=5"), ReadAt::Any);
        assert_eq!(at("resourceVersion=7"), ReadAt::NotOlderThan(7));
        assert_eq!(at("resourceVersion=7&limit=5"), ReadAt::Exact(7));
        assert_eq!(
            at("resourceVersion=7&resourceVersionMatch=NotOlderThan&limit=5"),
            ReadAt::NotOlderThan(7)
        );
        assert_eq!(
            at("resourceVersion=7&resourceVersionMatch=Exact"),
            ReadAt::Exact(7)
        );
        let err = ListOptions::parse(&q("resourceVersion=abc"), false)
            .expect("parse")
            .list_read_at()
            .expect_err("abc");
        assert_eq!(err.to_string(), "invalid resource version: resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax");
    }

    #[test]
    fn resource_versions_parse_as_go_and_fit_a_revision() {
        assert_eq!(parse_resource_version("0"), Ok(0));
        assert_eq!(parse_resource_version("007"), Ok(7));
        assert_eq!(
            parse_resource_version("9223372036854775807"),
            Ok(i64::MAX as u64)
        );
        let message = |rv: &str| parse_resource_version(rv).expect_err(rv).to_string();
        for rv in [
            "9223372036854775808",
            "18446744073709551615",
            "99999999999999999999",
        ] {
            assert_eq!(
                message(rv),
                format!("invalid resource version: resourceVersion: Invalid value: \"{rv}\": strconv.ParseUint: parsing \"{rv}\": value out of range")
            );
        }
        for rv in ["+5", "-1", " 5", "5 ", "", "1e3"] {
            assert!(message(rv).ends_with(": invalid syntax"), "{rv:?}");
        }
        let err = parse_resource_version("9223372036854775808").expect_err("too large");
        assert_eq!(err.code(), 400);
        assert_eq!(err.reason(), Some("BadRequest"));
    }

    #[test]
    fn a_list_at_a_revision_beyond_int64_is_refused() {
        let opts = ListOptions::parse(
            &q("resourceVersion=9223372036854775808&resourceVersionMatch=Exact"),
            false,
        )
        .expect("parse");
        assert_eq!(opts.list_read_at().expect_err("too large").code(), 400);
    }

    #[test]
    fn write_options() {
        let o = WriteOptions::parse(
            &q("dryRun=All&fieldValidation=Strict&fieldManager=me"),
            "CreateOptions",
        )
        .expect("ok");
        assert!(o.dry_run);
        assert_eq!(o.field_validation, FieldValidation::Strict);
        let err = WriteOptions::parse(&q("dryRun=Bogus"), "CreateOptions").expect_err("bogus");
        assert_eq!(err.to_string(), "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Bogus\"]: supported values: \"All\"");
        let err =
            WriteOptions::parse(&q("fieldValidation=Bogus"), "CreateOptions").expect_err("bogus");
        assert!(err
            .to_string()
            .contains("fieldValidation: Unsupported value: \"Bogus\""));
    }
}
