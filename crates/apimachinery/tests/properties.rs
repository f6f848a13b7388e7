//! Property tests of every apimachinery parser that reads network input (issue 13, item 6):
//! label and field selectors, continue tokens, query strings and list options,
//! resourceVersions, Go durations, `Accept` headers, names and field paths.
//!
//! Each parser gets arbitrary input (it must not panic, and its errors must be client errors)
//! and input generated from its grammar (so the deep paths run), with a round trip or an
//! invariant where one exists. The normal suite runs 256 cases per property; `hack/fuzz` raises
//! that through `PROPTEST_CASES`.

use std::collections::BTreeMap;

use apimachinery::continue_token::ContinueToken;
use apimachinery::duration::parse_go_duration;
use apimachinery::errors::ApiError;
use apimachinery::field::{aggregate_message, go_quote, FieldError, FieldPath};
use apimachinery::fields::{self, FieldSelector};
use apimachinery::labels::{self, LabelSelector, Operator, Requirement};
use apimachinery::meta::ObjectMeta;
use apimachinery::negotiate::{
    negotiate, wants_aggregated_discovery, Encoding, IncludeObject, Shape,
};
use apimachinery::options::{parse_resource_version, ListOptions, Query, ReadAt, WriteOptions};
use apimachinery::request;
use apimachinery::validation::{
    dns1123_label_errors, dns1123_subdomain_errors, label_value_errors, path_segment_name_errors,
    qualified_name_errors, validate_object_meta, validate_object_meta_update,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Cases per property: 256 in the normal suite, `PROPTEST_CASES` when set (`hack/fuzz`).
/// `ProptestConfig::with_cases` would otherwise override the environment.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut config = ProptestConfig::with_cases(cases);
    // Integration tests have no lib.rs beside them, where proptest looks by default.
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    config
}

/// Hostile input is the client's fault: a 4xx, never a 500.
fn check_client_error(err: &ApiError) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&err.code()),
        "{:?} answers {}",
        err,
        err.code()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Label selectors

/// A qualified name: an optional DNS-subdomain prefix, then a name part.
const LABEL_KEY: &str = concat!(
    r"([a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}/)?",
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?"
);
/// A label value (possibly empty), including the words that are keywords elsewhere.
const LABEL_VALUE: &str = r"(in|notin|[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?";
/// A label value that is not empty (Go's set grammar refuses some runs of empty values,
/// such as `(a,,)`).
const SET_VALUE: &str = r"in|notin|[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?";

/// One requirement in selector syntax, built from the grammar with random spacing.
fn requirement_text() -> impl Strategy<Value = String> {
    let space = || prop::sample::select(vec!["", " ", "  ", "\t"]);
    let values = prop::collection::vec(SET_VALUE, 1..4).prop_map(|v| v.join(","));
    prop_oneof![
        (
            LABEL_KEY,
            prop::sample::select(vec!["=", "==", "!="]),
            LABEL_VALUE,
            space()
        )
            .prop_map(|(k, op, v, s)| format!("{k}{s}{op}{s}{v}")),
        (
            LABEL_KEY,
            prop::sample::select(vec!["in", "notin"]),
            values,
            space()
        )
            .prop_map(|(k, op, v, s)| format!("{k} {op}{s}({s}{v}{s})")),
        (
            LABEL_KEY,
            prop::sample::select(vec![">", "<"]),
            any::<i64>(),
            space()
        )
            .prop_map(|(k, op, n, s)| format!("{k}{s}{op}{s}{n}")),
        (LABEL_KEY, prop::bool::ANY).prop_map(|(k, bang)| if bang { format!("!{k}") } else { k }),
    ]
}

fn valid_selector_text() -> impl Strategy<Value = String> {
    prop::collection::vec(requirement_text(), 0..5).prop_map(|r| r.join(","))
}

/// Selector-shaped noise: the grammar's alphabet in any order.
const SELECTOR_NOISE: &str = r"[a-z0-9=!<>,() ./_-]{0,40}|(in|notin|[a-z]|[=!<>(),]| ){0,16}";

/// Prints a selector in Go's syntax; a parsed selector must read back the same.
fn render_label_selector(selector: &LabelSelector) -> String {
    selector
        .requirements
        .iter()
        .map(render_requirement)
        .collect::<Vec<_>>()
        .join(",")
}

fn render_requirement(r: &Requirement) -> String {
    let first = r.values.first().map(String::as_str).unwrap_or("");
    let set = r.values.join(",");
    let key = &r.key;
    match r.operator {
        Operator::Equals => format!("{key}={first}"),
        Operator::DoubleEquals => format!("{key}=={first}"),
        Operator::NotEquals => format!("{key}!={first}"),
        Operator::In => format!("{key} in ({set})"),
        Operator::NotIn => format!("{key} notin ({set})"),
        Operator::Exists => key.clone(),
        Operator::DoesNotExist => format!("!{key}"),
        Operator::GreaterThan => format!("{key}>{first}"),
        Operator::LessThan => format!("{key}<{first}"),
    }
}

fn check_label_round_trip(text: &str) -> Result<(), TestCaseError> {
    let Ok(selector) = labels::parse(text) else {
        return Ok(());
    };
    let rendered = render_label_selector(&selector);
    let reparsed = labels::parse(&rendered);
    prop_assert_eq!(
        reparsed.as_ref(),
        Ok(&selector),
        "{:?} printed as {:?}",
        text,
        rendered
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn label_selectors_never_panic(text in any::<String>(), present in label_map()) {
        if let Ok(selector) = labels::parse(&text) {
            selector.matches(&present);
            check_label_round_trip(&text)?;
        }
    }

    #[test]
    fn label_selector_noise_round_trips(text in SELECTOR_NOISE) {
        check_label_round_trip(&text)?;
    }

    #[test]
    fn grammatical_label_selectors_parse_and_round_trip(text in valid_selector_text()) {
        let parsed = labels::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        check_label_round_trip(&text)?;
    }

    #[test]
    fn an_equality_selector_matches_its_own_label(key in LABEL_KEY, value in LABEL_VALUE) {
        let selector = labels::parse(&format!("{key}={value}")).expect("a valid requirement");
        let mut present = BTreeMap::new();
        present.insert(key.clone(), value.clone());
        prop_assert!(selector.matches(&present));
        prop_assert_eq!(selector.required_value(&key), Some(value.as_str()));
        present.insert(key, format!("{value}x"));
        prop_assert!(!selector.matches(&present));
    }
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = prop_oneof![Just("5".to_string()), LABEL_VALUE.prop_map(String::from)];
    prop::collection::btree_map(LABEL_KEY, value, 0..4)
}

// ---------------------------------------------------------------------------------------------
// Field selectors

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn render_field_selector(selector: &FieldSelector) -> String {
    selector
        .requirements
        .iter()
        .map(|r| {
            let op = if r.negated { "!=" } else { "=" };
            format!("{}{op}{}", r.field, escape_field_value(&r.value))
        })
        .collect::<Vec<_>>()
        .join(",")
}

const FIELD_NAME: &str = r"[a-z][a-zA-Z.]{0,15}";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn field_selectors_never_panic_and_round_trip(
        text in prop_oneof![any::<String>(), r"[a-z.=!,\\ é]{0,30}".prop_map(String::from)],
    ) {
        if let Ok(selector) = fields::parse(&text) {
            selector.matches(|_| Some("x"));
            // Fields are kept raw; one ending in an escaped space loses it to trimming, and
            // no field with a backslash is ever a known one. A field ending in '!' (from
            // "! =v") reads back as the operator "!=", as kube's String() does too.
            if !selector
                .requirements
                .iter()
                .any(|r| r.field.contains('\\') || r.field.ends_with('!'))
            {
                let rendered = render_field_selector(&selector);
                prop_assert_eq!(fields::parse(&rendered), Ok(selector), "{:?}", text);
            }
        }
    }

    #[test]
    fn escaped_field_values_read_back_exactly(
        terms in prop::collection::vec((FIELD_NAME, prop::bool::ANY, any::<String>()), 1..4),
    ) {
        let text = terms
            .iter()
            .map(|(field, negated, value)| {
                let op = if *negated { "!=" } else { "==" };
                format!("{field}{op}{}", escape_field_value(value))
            })
            .collect::<Vec<_>>()
            .join(",");
        let selector = fields::parse(&text).expect("escaped terms parse");
        prop_assert_eq!(selector.requirements.len(), terms.len());
        for (r, (field, negated, value)) in selector.requirements.iter().zip(&terms) {
            prop_assert_eq!(&r.field, field);
            prop_assert_eq!(r.negated, *negated);
            prop_assert_eq!(&r.value, value);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Continue tokens

const TOKEN_KEY: &str = r"[a-z0-9-]{1,10}(/[a-z0-9-]{1,10}){0,2}";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn continue_tokens_never_panic(token in prop_oneof![
        any::<String>(),
        r"[A-Za-z0-9_=-]{0,80}".prop_map(String::from),
    ]) {
        let _ = ContinueToken::decode(&token);
    }

    #[test]
    fn continue_tokens_of_any_json_never_panic(
        v in prop_oneof![Just("meta.k8s.io/v1".to_string()), any::<String>()],
        rv in prop_oneof![Just(0i64), any::<i64>()],
        start in r"(\.\.|/|[a-z]|\x00|\\u0000){0,8}",
        raw in any::<Vec<u8>>(),
    ) {
        let wire = serde_json::json!({"v": v, "rv": rv, "start": start});
        for payload in [wire.to_string().into_bytes(), raw] {
            if let Ok(token) = ContinueToken::decode(&URL_SAFE_NO_PAD.encode(&payload)) {
                prop_assert!(token.revision != 0);
                prop_assert!(!token.start.is_empty());
                prop_assert!(!token.start.starts_with('/'));
                prop_assert!(!token.start.split('/').any(|segment| segment == ".."));
            }
        }
    }

    #[test]
    fn continue_tokens_round_trip(
        revision in any::<i64>().prop_filter("0 is never a list revision", |r| *r != 0),
        key in TOKEN_KEY,
    ) {
        let token = ContinueToken::after(revision, &key);
        prop_assert_eq!(ContinueToken::decode(&token.encode()), Ok(token));
    }

    #[test]
    fn decoded_tokens_are_the_encoded_ones(revision in any::<i64>(), key in any::<String>()) {
        let token = ContinueToken::after(revision, &key);
        if let Ok(decoded) = ContinueToken::decode(&token.encode()) {
            prop_assert_eq!(decoded, token);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Query strings, list and write options, resourceVersions

const QUERY_KEYS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "watch",
    "allowWatchBookmarks",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "limit",
    "continue",
    "sendInitialEvents",
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "force",
    "pretty",
    "timeout",
    "other",
];

const QUERY_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "true",
    "false",
    "All",
    "Exact",
    "NotOlderThan",
    "Strict",
    "Warn",
    "Ignore",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "app=web",
    "metadata.name=a",
];

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(QUERY_VALUES).prop_map(String::from),
        SELECTOR_NOISE.prop_map(String::from),
        any::<String>(),
    ]
}

/// A query string of known keys with encoded values, as clients send them.
fn query_string() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(QUERY_KEYS), query_value()), 0..8).prop_map(
        |pairs| {
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                out.append_pair(k, v);
            }
            out.finish()
        },
    )
}

fn check_read_at(read_at: ReadAt) -> Result<(), TestCaseError> {
    if let ReadAt::Exact(n) | ReadAt::NotOlderThan(n) = read_at {
        prop_assert!(
            i64::try_from(n).is_ok(),
            "revision {} does not fit a store revision",
            n
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn list_options_never_panic(
        raw in prop_oneof![query_string(), any::<String>()],
        watch_path in prop::bool::ANY,
    ) {
        let query = Query::parse(Some(raw.as_str()));
        match ListOptions::parse(&query, watch_path) {
            Ok(opts) => {
                prop_assert!(opts.limit >= 0);
                match opts.list_read_at() {
                    Ok(read_at) => check_read_at(read_at)?,
                    Err(e) => check_client_error(&e)?,
                }
            }
            Err(e) => check_client_error(&e)?,
        }
        if let Err(e) = WriteOptions::parse(&query, "PatchOptions") {
            check_client_error(&e)?;
        }
        let _ = query.pretty();
        let _ = query.optional_flag("sendInitialEvents");
    }

    #[test]
    fn query_values_decode_as_encoded(key in "[a-zA-Z]{1,8}", value in any::<String>()) {
        let raw = form_urlencoded::Serializer::new(String::new())
            .append_pair(&key, &value)
            .finish();
        let query = Query::parse(Some(raw.as_str()));
        prop_assert_eq!(query.get(&key), Some(value.as_str()));
    }

    #[test]
    fn resource_versions_are_plain_int64_decimals(rv in prop_oneof![
        r"[+-]?[0-9]{1,25}".prop_map(String::from),
        r"[0-9 .eE_x+-]{0,8}".prop_map(String::from),
        any::<String>(),
    ]) {
        match parse_resource_version(&rv) {
            Ok(n) => {
                prop_assert!(!rv.is_empty() && rv.bytes().all(|b| b.is_ascii_digit()), "{:?}", rv);
                prop_assert!(i64::try_from(n).is_ok(), "{:?} parsed to {}", rv, n);
                prop_assert_eq!(rv.parse::<u128>().ok(), Some(u128::from(n)));
            }
            Err(e) => prop_assert_eq!(e.code(), 400),
        }
    }

    #[test]
    fn every_int64_resource_version_parses(n in 0..=i64::MAX) {
        let expected = u64::try_from(n).expect("non-negative");
        prop_assert_eq!(parse_resource_version(&n.to_string()), Ok(expected));
    }

    #[test]
    fn resource_versions_beyond_int64_are_refused(n in (i64::MAX as u64 + 1)..=u64::MAX) {
        prop_assert!(parse_resource_version(&n.to_string()).is_err());
        let raw = format!("resourceVersion={n}&resourceVersionMatch=Exact");
        let query = Query::parse(Some(raw.as_str()));
        if let Ok(opts) = ListOptions::parse(&query, false) {
            prop_assert_eq!(opts.list_read_at().map_err(|e| e.code()), Err(400));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Go durations

fn duration_unit() -> impl Strategy<Value = (&'static str, u64)> {
    prop::sample::select(vec![
        ("h", 3_600_000u64),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_never_panic(text in prop_oneof![
        any::<String>(),
        r"[0-9hmsuµn.+-]{0,24}".prop_map(String::from),
        r"([0-9]{1,20}(h|m|s|ms|us|ns)){1,4}".prop_map(String::from),
    ]) {
        let _ = parse_go_duration(&text);
    }

    #[test]
    fn generated_durations_have_their_value(
        terms in prop::collection::vec((0..=u64::from(u32::MAX), duration_unit()), 1..6),
    ) {
        let text: String = terms.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
        let millis: u128 = terms
            .iter()
            .map(|(n, (_, ms))| u128::from(*n) * u128::from(*ms))
            .sum();
        let parsed = parse_go_duration(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.as_millis(), millis, "{}", text);
    }

    #[test]
    fn numbers_without_a_unit_are_refused(n in 1..u64::MAX) {
        prop_assert!(parse_go_duration(&n.to_string()).is_err());
        let negative = format!("-{n}s");
        prop_assert!(parse_go_duration(&negative).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Accept headers

const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/*",
    "*/*",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "text/html",
    "",
];

const MEDIA_PARAMS: &[&str] = &[
    "as=Table",
    "as=PartialObjectMetadata",
    "as=PartialObjectMetadataList",
    "as=APIGroupDiscoveryList",
    "g=meta.k8s.io",
    "g=apidiscovery.k8s.io",
    "v=v1",
    "v=v1beta1",
    "v=v2",
    "q=0",
    "q=0.5",
    "q=1",
    "q=NaN",
    "q=nan",
    "q=inf",
    "q=-inf",
    "q=-1",
    "q=1e40",
    "q=",
    "q",
    "stream=watch",
    "=",
    "\"\"",
];

/// An Accept header of many clauses, with every q-value the float parser takes: sorting them
/// must not depend on NaN comparing consistently.
fn accept_header() -> impl Strategy<Value = String> {
    let clause = (
        prop::sample::select(MEDIA_TYPES),
        prop::collection::vec(prop::sample::select(MEDIA_PARAMS), 0..4),
    )
        .prop_map(|(media, params)| {
            std::iter::once(media)
                .chain(params)
                .collect::<Vec<_>>()
                .join(";")
        });
    prop::collection::vec(clause, 0..64).prop_map(|clauses| clauses.join(","))
}

fn shape() -> impl Strategy<Value = Shape> {
    prop::sample::select(vec![Shape::Item, Shape::List, Shape::Watch])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn accept_headers_never_panic(
        accept in prop_oneof![
            accept_header(),
            any::<String>(),
            r"[a-z/*;=,. q0-9\x22-]{0,60}".prop_map(String::from),
        ],
        shape in shape(),
    ) {
        match negotiate(Some(accept.as_str()), shape, "*v1.Thing", true) {
            Ok(n) => prop_assert!(!(shape == Shape::Watch && n.encoding == Encoding::Yaml)),
            Err(e) => prop_assert_eq!(e.code(), 406),
        }
        let _ = wants_aggregated_discovery(Some(accept.as_str()));
    }

    #[test]
    fn include_object_takes_only_its_values(value in any::<String>()) {
        let known = ["", "Metadata", "Object", "None"].contains(&value.as_str());
        match IncludeObject::parse(Some(value.as_str())) {
            Ok(_) => prop_assert!(known),
            Err(e) => {
                prop_assert!(!known);
                prop_assert_eq!(e.code(), 400);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names, metadata, request paths

const DNS_LABEL: &str = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";

fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r"[A-Za-z0-9./%_-]{0,70}".prop_map(String::from),
        r"[a-z0-9.-]{250,260}".prop_map(String::from),
    ]
}

fn object_meta() -> impl Strategy<Value = ObjectMeta> {
    let map = || prop::option::of(prop::collection::btree_map(name_like(), name_like(), 0..4));
    (
        prop::option::of(name_like()),
        prop::option::of(name_like()),
        prop::option::of(name_like()),
        map(),
        map(),
        prop::option::of(prop::collection::vec(name_like(), 0..4)),
    )
        .prop_map(
            |(name, generate_name, namespace, labels, annotations, finalizers)| ObjectMeta {
                name,
                generate_name,
                namespace,
                labels,
                annotations,
                finalizers,
                ..ObjectMeta::default()
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn name_validation_never_panics(name in name_like()) {
        let _ = qualified_name_errors(&name);
        let _ = label_value_errors(&name);
        let _ = dns1123_subdomain_errors(&name);
        let _ = dns1123_label_errors(&name);
        let bad_segment = name == "." || name == ".." || name.contains(['/', '%']);
        prop_assert_eq!(path_segment_name_errors(&name).is_empty(), !bad_segment);
    }

    #[test]
    fn dns_labels_are_valid_and_uppercase_is_not(
        label in DNS_LABEL,
        at in any::<prop::sample::Index>(),
    ) {
        prop_assert_eq!(dns1123_label_errors(&label), Vec::<String>::new());
        prop_assert_eq!(dns1123_subdomain_errors(&label), Vec::<String>::new());
        let mut upper: Vec<char> = label.chars().collect();
        let i = at.index(upper.len());
        upper[i] = 'A';
        let upper: String = upper.into_iter().collect();
        prop_assert!(!dns1123_label_errors(&upper).is_empty());
    }

    #[test]
    fn object_meta_validation_never_panics(
        new in object_meta(),
        old in object_meta(),
        namespaced in prop::bool::ANY,
    ) {
        let _ = validate_object_meta(&new, namespaced, |name, _| path_segment_name_errors(name));
        let _ = validate_object_meta_update(&new, &old);
    }

    #[test]
    fn request_paths_never_panic(path in prop_oneof![
        any::<String>(),
        r"(/|[a-z.]{0,6}|watch|namespaces){0,10}".prop_map(String::from),
    ]) {
        if let Some(info) = request::parse(&path) {
            prop_assert!(!info.resource.is_empty());
            prop_assert_ne!(info.name.as_deref(), Some(""));
        }
    }

    #[test]
    fn request_paths_split_into_their_parts(
        group in DNS_LABEL,
        ns in DNS_LABEL,
        resource in "[a-z]{1,10}",
        name in DNS_LABEL,
        sub in "[a-z]{1,8}",
    ) {
        let info = request::parse(&format!("{group}/v1/namespaces/{ns}/{resource}/{name}/{sub}"))
            .expect("a resource path");
        prop_assert_eq!(info.group, group);
        prop_assert_eq!(info.version, "v1");
        prop_assert_eq!(info.namespace, Some(ns));
        prop_assert_eq!(info.resource, resource);
        prop_assert_eq!(info.name, Some(name));
        prop_assert_eq!(info.subresource, Some(sub));
    }
}

// ---------------------------------------------------------------------------------------------
// Field paths and field errors

/// Reads back what `go_quote` writes, to show it loses nothing.
fn go_unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn field_paths_print_like_go(
        root in "[a-z]{1,8}",
        child in "[a-zA-Z]{1,8}",
        index in any::<usize>(),
        key in any::<String>(),
    ) {
        let path = FieldPath::new(&root).child(&child).index(index).key(&key);
        prop_assert_eq!(path.as_str(), format!("{root}.{child}[{index}][{key}]"));
        let path = FieldPath::default().child(&child);
        prop_assert_eq!(path.as_str(), child.as_str());
    }

    #[test]
    fn go_quote_is_printable_and_lossless(text in any::<String>()) {
        let quoted = go_quote(&text);
        prop_assert!(!quoted.chars().any(char::is_control), "{:?}", quoted);
        prop_assert_eq!(go_unquote(&quoted), Some(text));
    }

    #[test]
    fn aggregated_messages_list_each_error_once(
        details in prop::collection::vec(any::<String>(), 0..5),
        field in "[a-z]{1,6}",
    ) {
        let path = FieldPath::new(&field);
        let errors: Vec<FieldError> =
            details.iter().map(|d| FieldError::invalid(&path, d.as_str(), d.as_str())).collect();
        let message = aggregate_message(&errors);
        let distinct: std::collections::BTreeSet<&String> = details.iter().collect();
        match distinct.len() {
            0 => prop_assert_eq!(message, None),
            1 => prop_assert_eq!(message, Some(errors[0].to_string())),
            _ => {
                let message = message.expect("several errors");
                prop_assert!(message.starts_with('[') && message.ends_with(']'));
            }
        }
    }
}
