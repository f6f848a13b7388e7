//! Property tests of every image-api parser that reads network input (issue 13, item 6):
//! image references, tag names, the registry whitelist, quantities, image metadata from
//! manifests and configs, and the validation of streams, images and imports built from them.
//!
//! Each parser gets arbitrary input (it must not panic) and input generated from its grammar,
//! with a round trip or an invariant where one exists. The normal suite runs 256 cases per
//! property; `hack/fuzz` raises that through `PROPTEST_CASES`.

use image_api::limits::{self, Quantity, StreamLimits};
use image_api::metadata::{self, MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, SCHEMA1, SCHEMA2};
use image_api::reference::{digest_or_image_matches, DockerImageReference};
use image_api::tags;
use image_api::validation::{
    image_name_errors, image_stream_name_errors, is_valid_tag_name, validate_image,
    validate_image_stream, validate_image_stream_import,
};
use image_api::whitelist::{
    stream_whitelist_errors, wildcard_match, AllowedRegistry, RegistryWhitelist,
    INSECURE_REPOSITORY_ANNOTATION,
};
use image_api::{Image, ImageLayer, ImageStream, ImageStreamImport};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

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

/// Any JSON value, small enough to stay cheap, with keys a manifest or config might have.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(MEDIA_TYPES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(MANIFEST_KEYS).prop_map(String::from),
        "[a-zA-Z_]{1,8}".prop_map(String::from),
    ]
}

const MANIFEST_KEYS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "config",
    "digest",
    "size",
    "Size",
    "layers",
    "manifests",
    "platform",
    "architecture",
    "os",
    "history",
    "v1Compatibility",
    "fsLayers",
    "blobSum",
    "created",
    "id",
    "parent",
    "container_config",
];

const MEDIA_TYPES: &[&str] = &[
    SCHEMA1,
    SCHEMA2,
    MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
    "",
    "text/plain",
];

// ---------------------------------------------------------------------------------------------
// Image references

const DOMAIN: &str = concat!(
    r"(localhost|[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){1,2})",
    r"(:[0-9]{1,5})?"
);
const PATH_COMPONENT: &str = r"[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,2}";
const TAG: &str = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}";
const DIGEST: &str = r"sha256:[0-9a-f]{64}";

/// A reference from the distribution grammar, with the parts it was built from.
#[derive(Clone, Debug)]
struct GeneratedReference {
    text: String,
    repository: String,
    tag: String,
    digest: String,
}

fn generated_reference() -> impl Strategy<Value = GeneratedReference> {
    (
        prop::option::of(DOMAIN),
        prop::collection::vec(PATH_COMPONENT, 1..4),
        prop::option::of(TAG),
        prop::option::of(DIGEST),
    )
        .prop_map(|(domain, path, tag, digest)| {
            let repository = domain.into_iter().chain(path).collect::<Vec<_>>().join("/");
            let tag = tag.unwrap_or_default();
            let digest = digest.unwrap_or_default();
            let mut text = repository.clone();
            if !tag.is_empty() {
                text.push(':');
                text.push_str(&tag);
            }
            if !digest.is_empty() {
                text.push('@');
                text.push_str(&digest);
            }
            GeneratedReference {
                text,
                repository,
                tag,
                digest,
            }
        })
}

fn reference_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r"[a-zA-Z0-9:/@._-]{0,60}".prop_map(String::from),
        r"[a-z0-9./:-]{0,20}@[a-z0-9+._-]{0,8}:[0-9a-fA-F]{28,130}".prop_map(String::from),
        generated_reference().prop_map(|r| r.text),
        "[a-z]{256,260}".prop_map(String::from),
    ]
}

/// What printing a reference keeps: the digest wins over the tag.
fn as_printed(r: &DockerImageReference) -> DockerImageReference {
    let mut printed = r.clone();
    if !printed.id.is_empty() {
        printed.tag.clear();
    }
    printed
}

/// A reference with a name prints as something that parses back to it. (A bare registry, such
/// as `quay.io`, has no name and prints with a trailing slash.)
fn check_reference_round_trip(r: &DockerImageReference) -> Result<(), TestCaseError> {
    if r.name.is_empty() {
        return Ok(());
    }
    let printed = r.to_string();
    let again = DockerImageReference::parse(&printed);
    prop_assert_eq!(again, Ok(as_printed(r)), "printed as {:?}", printed);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn references_never_panic_and_print_back(text in reference_like()) {
        if let Ok(r) = DockerImageReference::parse(&text) {
            prop_assert!(!r.name.is_empty() || !r.registry.is_empty(), "{:?}", r);
            check_reference_round_trip(&r)?;
            let _ = digest_or_image_matches(&r.id, &r.tag);
        }
    }

    #[test]
    fn generated_references_parse_into_their_parts(g in generated_reference()) {
        let r = DockerImageReference::parse(&g.text).map_err(|e| {
            TestCaseError::fail(format!("{:?}: {e}", g.text))
        })?;
        prop_assert_eq!(&r.tag, &g.tag);
        prop_assert_eq!(&r.id, &g.digest);
        if !r.name.is_empty() {
            prop_assert_eq!(r.repository(), g.repository);
        }
        check_reference_round_trip(&r)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Tag and stream names

/// The tag grammar, `[\w][\w.-]{0,127}`, spelled out independently of the code under test.
fn is_tag_by_definition(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match tag.as_bytes().split_first() {
        Some((first, rest)) => {
            tag.len() <= 128
                && word(*first)
                && rest.iter().all(|&c| word(c) || c == b'.' || c == b'-')
        }
        None => false,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tag_names_follow_the_grammar(tag in prop_oneof![
        any::<String>(),
        r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}".prop_map(String::from),
        r"[A-Za-z0-9_.:@/ -]{0,10}".prop_map(String::from),
        r"[a-z]{127,130}".prop_map(String::from),
    ]) {
        prop_assert_eq!(is_valid_tag_name(&tag), is_tag_by_definition(&tag), "{:?}", tag);
    }

    #[test]
    fn stream_and_image_names_never_panic(name in any::<String>(), prefix in any::<bool>()) {
        let _ = image_stream_name_errors(&name, prefix);
        let _ = image_name_errors(&name, prefix);
    }
}

// ---------------------------------------------------------------------------------------------
// The registry whitelist

fn whitelist_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r"(http://|https://)?[a-z*?.]{0,12}(:[0-9*]{0,5})?".prop_map(String::from),
        DOMAIN.prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn whitelist_entries_parse_as_written(text in whitelist_entry()) {
        let entry = AllowedRegistry::parse(&text);
        match text.strip_prefix("http://") {
            Some(domain) => {
                prop_assert!(entry.insecure);
                prop_assert_eq!(entry.domain, domain);
            }
            None => {
                prop_assert!(!entry.insecure);
                prop_assert_eq!(entry.domain, text.trim_start_matches("https://"));
            }
        }
    }

    #[test]
    fn whitelist_checks_never_panic(
        entries in prop::option::of(prop::collection::vec(whitelist_entry(), 0..8)),
        internal in prop_oneof![Just(String::new()), DOMAIN.prop_map(String::from)],
        reference in reference_like(),
        insecure in any::<bool>(),
    ) {
        let entries = entries.map(|e| e.iter().map(|t| AllowedRegistry::parse(t)).collect());
        let whitelist = RegistryWhitelist::new(entries, &internal);
        let _ = whitelist.check_reference(&reference, insecure);
    }

    #[test]
    fn a_listed_registry_is_allowed(
        host in DOMAIN,
        path in PATH_COMPONENT,
        insecure in any::<bool>(),
    ) {
        let whitelist = RegistryWhitelist::new(Some(vec![AllowedRegistry::parse(&host)]), "");
        let reference = format!("{host}/ns/{path}");
        prop_assert_eq!(whitelist.check_reference(&reference, insecure), Ok(()));
        let empty = RegistryWhitelist::new(Some(Vec::new()), "");
        prop_assert!(empty.check_reference(&reference, insecure).is_err());
    }

    #[test]
    fn wildcards_match_what_they_describe(text in any::<String>(), pattern in any::<String>()) {
        let _ = wildcard_match(&pattern, &text);
        let plain = text.replace(['*', '?'], "x");
        prop_assert!(wildcard_match(&plain, &plain));
        prop_assert!(wildcard_match("*", &text));
        let any_chars: String = text.chars().map(|_| '?').collect();
        prop_assert!(wildcard_match(&any_chars, &text));
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities

/// (suffix, powers of ten, powers of 1024) of every suffix a quantity may carry.
const SUFFIXES: &[(&str, i32, u32)] = &[
    ("", 0, 0),
    ("n", -9, 0),
    ("u", -6, 0),
    ("m", -3, 0),
    ("k", 3, 0),
    ("M", 6, 0),
    ("G", 9, 0),
    ("T", 12, 0),
    ("P", 15, 0),
    ("E", 18, 0),
    ("Ki", 0, 1),
    ("Mi", 0, 2),
    ("Gi", 0, 3),
    ("Ti", 0, 4),
    ("Pi", 0, 5),
    ("Ei", 0, 6),
];

/// `n × 10^pow10 × 1024^pow1024` as (whole part saturated to u64, a fraction remains).
fn exact_quantity(n: u64, pow10: i32, pow1024: u32) -> (u64, bool) {
    let ten = |p: u32| 10u128.pow(p);
    let numerator = u128::from(n) * 1024u128.pow(pow1024) * ten(pow10.max(0).unsigned_abs());
    let denominator = ten(pow10.min(0).unsigned_abs());
    let whole = u64::try_from(numerator / denominator).unwrap_or(u64::MAX);
    (whole, numerator % denominator != 0)
}

fn check_quantity(text: &str, whole: u64, fraction: bool) -> Result<(), TestCaseError> {
    let q = Quantity::parse(text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
    prop_assert_eq!(q.floor(), whole, "floor of {:?}", text);
    let ceil = if fraction {
        whole.saturating_add(1)
    } else {
        whole
    };
    prop_assert_eq!(q.ceil(), ceil, "ceil of {:?}", text);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn quantities_never_panic(text in prop_oneof![
        any::<String>(),
        r"[+-]?[0-9.]{0,45}[eEinumkKMGTP]{0,2}[+-]?[0-9]{0,12}".prop_map(String::from),
    ]) {
        if let Ok(q) = Quantity::parse(&text) {
            prop_assert!(q.ceil() >= q.floor());
        }
    }

    #[test]
    fn integer_quantities_have_their_value(
        n in 0..=u64::from(u32::MAX),
        suffix in prop::sample::select(SUFFIXES),
    ) {
        let (text, pow10, pow1024) = suffix;
        let (whole, fraction) = exact_quantity(n, pow10, pow1024);
        check_quantity(&format!("{n}{text}"), whole, fraction)?;
        check_quantity(&format!("+{n}{text}"), whole, fraction)?;
        check_quantity(&format!("-{n}{text}"), 0, false)?;
    }

    #[test]
    fn exponent_quantities_have_their_value(n in 0..=u64::from(u32::MAX), exponent in -20i32..=20) {
        let (whole, fraction) = exact_quantity(n, exponent, 0);
        check_quantity(&format!("{n}e{exponent}"), whole, fraction)?;
        check_quantity(&format!("{n}E{exponent}"), whole, fraction)?;
    }

    #[test]
    fn decimal_quantities_round_up_their_fraction(
        whole in any::<u32>(),
        fraction in "[0-9]{1,30}",
    ) {
        let has_fraction = fraction.bytes().any(|b| b != b'0');
        check_quantity(&format!("{whole}.{fraction}"), u64::from(whole), has_fraction)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Image metadata from manifests and configs

fn layer_size() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![0..1_000_000_000i64, (i64::MAX - 1_000)..=i64::MAX]
}

fn any_layer_size() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![layer_size(), any::<i64>()]
}

/// Manifests of every schema, their layers sized by `size`.
fn structured_manifest(
    size: impl Strategy<Value = i64> + Clone + 'static,
) -> impl Strategy<Value = Value> {
    let digests =
        |size: BoxedStrategy<i64>| prop::collection::vec(("sha256:[0-9a-f]{2}", size), 0..5);
    let media_type = || prop::sample::select(MEDIA_TYPES);
    let schema2 = (
        media_type(),
        "sha256:[0-9a-f]{2}",
        digests(size.clone().boxed()),
    )
        .prop_map(|(media_type, config, layers)| {
            let layers: Vec<Value> = layers
                .into_iter()
                .map(|(digest, size)| json!({"digest": digest, "size": size, "mediaType": "x"}))
                .collect();
            json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {"digest": config},
                "layers": layers,
            })
        });
    let schema1 = (digests(size.boxed()), 0..3usize).prop_map(|(layers, extra_history)| {
        let history: Vec<Value> = layers
            .iter()
            .map(|(_, size)| {
                let v1 = json!({"Size": size, "id": "x"});
                json!({"v1Compatibility": v1.to_string()})
            })
            .chain((0..extra_history).map(|_| json!({"v1Compatibility": "not json"})))
            .collect();
        let fs_layers: Vec<Value> = layers
            .iter()
            .map(|(digest, _)| json!({"blobSum": digest}))
            .collect();
        json!({"schemaVersion": 1, "history": history, "fsLayers": fs_layers})
    });
    let list = (
        prop::sample::select(vec![MANIFEST_LIST, OCI_INDEX]),
        prop::collection::vec(json_value(), 0..4),
    )
        .prop_map(|(media_type, manifests)| {
            json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})
        });
    prop_oneof![schema2, schema1, list]
}

/// Any manifest text: structured ones, JSON of any shape, or not JSON at all.
fn any_manifest() -> impl Strategy<Value = String> {
    prop_oneof![
        structured_manifest(any_layer_size()).prop_map(|m| m.to_string()),
        json_value().prop_map(|m| m.to_string()),
        any::<String>(),
    ]
}

const SAMPLE_CONFIG: &str =
    r#"{"architecture":"amd64","config":{"Env":["A=1"]},"created":"2024-01-01T00:00:00Z"}"#;

fn image_config() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        json_value().prop_map(|v| v.to_string()),
        Just(SAMPLE_CONFIG.to_string()),
        any::<String>(),
    ]
}

/// An image as a client may post it: the manifest, config, layers and metadata it claims.
fn image_from(
    manifests: impl Strategy<Value = String> + 'static,
    size: impl Strategy<Value = i64> + 'static,
) -> impl Strategy<Value = Image> {
    (
        manifests,
        image_config(),
        prop::sample::select(MEDIA_TYPES),
        prop::option::of(prop::collection::vec(("sha256:[0-9a-f]{2}", size), 0..4)),
        prop::option::of(any::<i64>()),
        prop::option::of(prop::sample::select(vec!["ascending", "descending", "x"])),
    )
        .prop_map(|(manifest, config, media_type, layers, size, order)| {
            let mut image = Image::default();
            image.metadata.name = Some("sha256:0123".to_string());
            image.docker_image_manifest = manifest;
            image.docker_image_config = config;
            image.docker_image_manifest_media_type = media_type.to_string();
            image.docker_image_layers = layers.map(|layers| {
                layers
                    .into_iter()
                    .map(|(name, size)| ImageLayer {
                        name,
                        size,
                        media_type: String::new(),
                    })
                    .collect()
            });
            image.docker_image_metadata = size.map(|s| json!({"Size": s}));
            if let Some(order) = order {
                let annotation = (
                    metadata::LAYER_ORDER_ANNOTATION.to_string(),
                    order.to_string(),
                );
                image.metadata.annotations = Some([annotation].into());
            }
            image
        })
}

fn any_image() -> impl Strategy<Value = Image> {
    image_from(any_manifest(), any_layer_size())
}

/// Images whose every layer and history size is non-negative.
fn sized_image() -> impl Strategy<Value = Image> {
    image_from(
        structured_manifest(layer_size()).prop_map(|m| m.to_string()),
        layer_size(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn metadata_extraction_never_panics(mut posted in any_image(), mut updated in any_image()) {
        let _ = metadata::extract(&mut posted, "2024-01-01T00:00:00Z");
        let _ = validate_image(&posted);
        metadata::finish(&mut posted);
        metadata::restore_immutable(&mut updated, &posted);
    }

    #[test]
    fn image_sizes_never_wrap(mut posted in sized_image()) {
        let given = posted
            .docker_image_metadata
            .as_ref()
            .and_then(|m| m.get("Size"))
            .and_then(Value::as_i64);
        let _ = metadata::extract(&mut posted, "");
        let size = posted
            .docker_image_metadata
            .as_ref()
            .and_then(|m| m.get("Size"))
            .and_then(Value::as_i64);
        // Sizes we did not give are sums of non-negative layer sizes.
        if let Some(size) = size.filter(|s| Some(*s) != given) {
            prop_assert!(size >= 0, "size {} from non-negative layers", size);
        }
    }

    #[test]
    fn images_of_any_json_never_panic(value in json_value()) {
        if let Ok(mut posted) = serde_json::from_value::<Image>(value) {
            let _ = metadata::extract(&mut posted, "");
            let _ = validate_image(&posted);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streams and imports: validation, limits and the whitelist over generated references

const FROM_KINDS: &[&str] = &[
    "DockerImage",
    "ImageStreamTag",
    "ImageStreamImage",
    "Other",
    "",
];

fn spec_tag() -> impl Strategy<Value = Value> {
    (
        prop_oneof![TAG.prop_map(String::from), any::<String>()],
        prop::sample::select(FROM_KINDS),
        reference_like(),
        prop::option::of("[a-z]{1,5}"),
        (any::<bool>(), any::<bool>()),
        prop::sample::select(vec!["Legacy", "PreserveOriginal", "", "x"]),
        prop::sample::select(vec!["Source", "Local", "", "x"]),
    )
        .prop_map(|(name, kind, from, namespace, (scheduled, insecure), mode, policy)| {
            json!({
                "name": name,
                "from": {"kind": kind, "name": from, "namespace": namespace},
                "importPolicy": {"scheduled": scheduled, "insecure": insecure, "importMode": mode},
                "referencePolicy": {"type": policy},
            })
        })
}

fn status_tag() -> impl Strategy<Value = Value> {
    (
        prop_oneof![TAG.prop_map(String::from), any::<String>()],
        prop::collection::vec(
            (reference_like(), "(sha256:)?[0-9a-f]{0,6}", any::<i64>()),
            0..3,
        ),
    )
        .prop_map(|(tag, items)| {
            let items: Vec<Value> = items
                .into_iter()
                .map(|(reference, image, generation)| {
                    json!({
                        "dockerImageReference": reference,
                        "image": image,
                        "generation": generation,
                    })
                })
                .collect();
            json!({"tag": tag, "items": items})
        })
}

fn image_stream() -> impl Strategy<Value = ImageStream> {
    (
        prop_oneof![
            r"[a-z0-9][a-z0-9._-]{0,20}".prop_map(String::from),
            any::<String>()
        ],
        prop_oneof![r"[a-z0-9-]{1,10}".prop_map(String::from), any::<String>()],
        prop_oneof![Just(String::new()), reference_like()],
        prop::collection::vec(spec_tag(), 0..4),
        prop::collection::vec(status_tag(), 0..3),
        prop::sample::select(vec!["true", "false"]),
    )
        .prop_map(|(name, namespace, repository, tags, status, insecure)| {
            let stream = json!({
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "annotations": {INSECURE_REPOSITORY_ANNOTATION: insecure},
                },
                "spec": {"dockerImageRepository": repository, "tags": tags},
                "status": {"dockerImageRepository": "registry.local/ns/s", "tags": status},
            });
            serde_json::from_value(stream).expect("the stream template decodes")
        })
}

fn image_stream_import() -> impl Strategy<Value = ImageStreamImport> {
    (
        prop::collection::vec((prop::sample::select(FROM_KINDS), reference_like()), 0..3),
        prop::option::of((prop::sample::select(FROM_KINDS), reference_like())),
        prop_oneof![r"[a-z0-9-]{1,10}".prop_map(String::from), any::<String>()],
    )
        .prop_map(|(images, repository, name)| {
            let images: Vec<Value> = images
                .into_iter()
                .map(|(kind, from)| {
                    json!({"from": {"kind": kind, "name": from}, "to": {"name": "t"}})
                })
                .collect();
            let mut spec = json!({"import": true, "images": images});
            if let Some((kind, from)) = repository {
                spec["repository"] = json!({"from": {"kind": kind, "name": from}});
            }
            let isi = json!({"metadata": {"name": name, "namespace": "ns"}, "spec": spec});
            serde_json::from_value(isi).expect("the import template decodes")
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn stream_checks_never_panic(
        stream in image_stream(),
        old in prop::option::of(image_stream()),
        entries in prop::collection::vec(whitelist_entry(), 0..4),
    ) {
        let _ = validate_image_stream(&stream);
        let entries = entries.iter().map(|e| AllowedRegistry::parse(e)).collect();
        let whitelist = RegistryWhitelist::new(Some(entries), "");
        let _ = stream_whitelist_errors(&whitelist, &stream, old.as_ref());
        let most = StreamLimits { image_tags: Some(1), images: Some(1) };
        let _ = limits::violations(&most, &stream, old.as_ref());
        let mut tracked = stream.clone();
        for tag in &stream.spec.tags {
            let _ = tags::update_tracking_tags(&mut tracked, &tag.name);
            if let Some(event) = tags::latest_tagged_image(&stream, &tag.name) {
                let _ = tags::resolve_reference(&stream, &tag.name, event);
            }
        }
    }

    #[test]
    fn streams_of_any_json_never_panic(value in json_value()) {
        if let Ok(stream) = serde_json::from_value::<ImageStream>(value) {
            let _ = validate_image_stream(&stream);
        }
    }

    #[test]
    fn import_validation_never_panics(isi in image_stream_import()) {
        let _ = validate_image_stream_import(&isi);
    }
}
