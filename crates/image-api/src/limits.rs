//! Image limits (spec §15): per stream (§15.2), the number of distinct references in
//! `spec.tags` (`openshift.io/image-tags`) and of distinct images across the status history
//! (`openshift.io/images`); per image (§15.1), its size against `storage`. Upstream reads them
//! from LimitRanges; standalone, the stream limits come from flags.
//!
//! LimitRanges carry their maximums as Kubernetes quantities, which k8s-openapi keeps as plain
//! strings (`Quantity(String)`) with no arithmetic, so [`Quantity`] parses them here, and
//! [`binary_si`] prints an image size as Go's `resource.Quantity` does in §15.1's message.

use std::collections::BTreeSet;

use crate::reference::DockerImageReference;
use crate::ImageStream;

pub const IMAGE_TAGS: &str = "openshift.io/image-tags";
pub const IMAGES: &str = "openshift.io/images";
/// The resource an `openshift.io/Image` item limits.
pub const STORAGE: &str = "storage";
/// LimitRange item types (`spec.limits[].type`).
pub const LIMIT_TYPE_IMAGE: &str = "openshift.io/Image";
pub const LIMIT_TYPE_IMAGE_STREAM: &str = "openshift.io/ImageStream";

/// Maximums per stream; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLimits {
    pub image_tags: Option<u64>,
    pub images: Option<u64>,
}

/// A spec tag's reference, normalized so that two tags naming the same thing count once.
fn normalized_reference(
    stream: &ImageStream,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Option<String> {
    let ns = namespace
        .filter(|n| !n.is_empty())
        .or(stream.metadata.namespace.as_deref())
        .unwrap_or("");
    let this = stream.metadata.name.as_deref().unwrap_or("");
    match kind {
        "DockerImage" => {
            let r = DockerImageReference::parse(name).ok()?;
            let registry = if r.registry.is_empty() {
                "docker.io"
            } else {
                r.registry.as_str()
            };
            let namespace = if r.namespace.is_empty() && registry == "docker.io" {
                "library"
            } else {
                r.namespace.as_str()
            };
            let mut out = format!("{registry}/");
            if !namespace.is_empty() {
                out.push_str(namespace);
                out.push('/');
            }
            out.push_str(&r.name);
            if !r.id.is_empty() {
                out.push('@');
                out.push_str(&r.id);
            } else {
                out.push(':');
                out.push_str(if r.tag.is_empty() { "latest" } else { &r.tag });
            }
            Some(out)
        }
        "ImageStreamTag" => {
            let (s, t) = name.split_once(':').unwrap_or((this, name));
            Some(format!("{ns}/{s}:{t}"))
        }
        "ImageStreamImage" => {
            let (s, id) = name.split_once('@').unwrap_or((this, name));
            Some(format!("{ns}/{s}@{id}"))
        }
        _ => None,
    }
}

pub fn tag_references(stream: &ImageStream) -> BTreeSet<String> {
    stream
        .spec
        .tags
        .iter()
        .filter_map(|t| {
            let from = t.from.as_ref()?;
            normalized_reference(
                stream,
                from.kind.as_deref().unwrap_or(""),
                from.name.as_deref().unwrap_or(""),
                from.namespace.as_deref(),
            )
        })
        .collect()
}

pub fn images(stream: &ImageStream) -> BTreeSet<String> {
    stream
        .status
        .tags
        .iter()
        .flat_map(|l| l.items.iter().flatten())
        .filter(|e| !e.image.is_empty())
        .map(|e| e.image.clone())
        .collect()
}

/// The limit violations of `new` (upstream's messages). Nothing is reported when usage did
/// not grow compared to `old`, so existing violations are tolerated.
pub fn violations(
    limits: &StreamLimits,
    new: &ImageStream,
    old: Option<&ImageStream>,
) -> Vec<String> {
    // Most namespaces have no limit: no sets of every tag and image on each write then.
    if limits.image_tags.is_none() && limits.images.is_none() {
        return Vec::new();
    }
    let (refs, imgs) = (tag_references(new), images(new));
    if let Some(old) = old {
        let (old_refs, old_imgs) = (tag_references(old), images(old));
        if refs.is_subset(&old_refs) && imgs.is_subset(&old_imgs) {
            return Vec::new();
        }
    }
    let mut out = Vec::new();
    for (resource, usage, max) in [
        (IMAGE_TAGS, refs.len() as u64, limits.image_tags),
        (IMAGES, imgs.len() as u64, limits.images),
    ] {
        if let Some(max) = max.filter(|m| usage > *m) {
            out.push(format!(
                "requested usage of {resource} exceeds the maximum limit per openshift.io/ImageStream ({usage} > {max})"
            ));
        }
    }
    out
}

/// The `openshift.io/Image` maximum of `storage`: the bytes an image may have, and the quantity
/// as the LimitRange wrote it (what the message prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageLimit {
    pub bytes: u64,
    pub text: String,
}

/// §15.1: the violation of an image of `size` bytes, if it is over the limit.
pub fn image_storage_violation(limit: &StorageLimit, size: u64) -> Option<String> {
    (size > limit.bytes).then(|| {
        format!(
            "requested usage of {STORAGE} exceeds the maximum limit per {LIMIT_TYPE_IMAGE} ({} > {})",
            binary_si(size),
            limit.text
        )
    })
}

/// Go's `resource.ParseQuantity` errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A Kubernetes quantity (`<sign><digits>.<digits><suffix>`, suffixes `n u m k M G T P E`,
/// `Ki`..`Ei`, or an exponent `e3`/`E-2`), reduced to what limits need: its whole part and
/// whether a fraction remains. Values beyond `u64` saturate; negative values (which LimitRange
/// validation refuses) count as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    whole: u64,
    fraction: bool,
}

/// Digits kept exactly; any further ones only tell that a fraction remains (they are below
/// the unit once the value fits in `u64`).
const MAX_DIGITS: usize = 38;

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let text = text.trim();
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int_part, after_int) = rest.split_at(leading_digits(rest));
        let (frac_part, suffix) = match after_int.strip_prefix('.') {
            Some(after_dot) => after_dot.split_at(leading_digits(after_dot)),
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::Format);
        }
        let (pow10, pow1024) = suffix_powers(suffix)?;
        Ok(Quantity::from_parts(
            negative, int_part, frac_part, pow10, pow1024,
        ))
    }

    /// The value rounded up to a whole unit (Go's `Quantity.Value`).
    pub fn ceil(&self) -> u64 {
        if self.negative {
            return 0;
        }
        self.whole.saturating_add(u64::from(self.fraction))
    }

    /// The value rounded down to a whole unit. A whole usage exceeds the quantity exactly when
    /// it exceeds this, so limits compare against it.
    pub fn floor(&self) -> u64 {
        if self.negative {
            0
        } else {
            self.whole
        }
    }

    /// `<int_part>.<frac_part> × 10^pow10 × 1024^pow1024`, in whole units.
    fn from_parts(
        negative: bool,
        int_part: &str,
        frac_part: &str,
        pow10: i64,
        pow1024: u32,
    ) -> Quantity {
        let all = format!("{int_part}{frac_part}");
        let digits = all.trim_start_matches('0');
        let significant = digits.trim_end_matches('0');
        if significant.is_empty() {
            return Quantity {
                negative: false,
                whole: 0,
                fraction: false,
            };
        }
        let kept = &significant[..significant.len().min(MAX_DIGITS)];
        let dropped = significant.len() - kept.len();
        // Trailing zeros and dropped digits move into the exponent.
        let scale = pow10 - frac_part.len() as i64
            + (digits.len() - significant.len()) as i64
            + dropped as i64;
        let mantissa = kept
            .bytes()
            .fold(0u128, |acc, b| acc * 10 + u128::from(b - b'0'));
        let (whole, fraction) = match mantissa.checked_mul(1024u128.pow(pow1024)) {
            None => (u128::MAX, false),
            Some(scaled) => scale_by_ten(scaled, scale, dropped > 0),
        };
        Quantity {
            negative,
            whole: u64::try_from(whole).unwrap_or(u64::MAX),
            fraction,
        }
    }
}

/// `value × 10^scale` as (whole part, fraction remains); `inexact` says digits were dropped.
fn scale_by_ten(value: u128, scale: i64, inexact: bool) -> (u128, bool) {
    let power = u32::try_from(scale.unsigned_abs())
        .ok()
        .and_then(|p| 10u128.checked_pow(p));
    match (scale >= 0, power) {
        (true, Some(p)) => (value.saturating_mul(p), false),
        (true, None) => (u128::MAX, false),
        (false, Some(p)) => (value / p, value % p != 0 || inexact),
        // A divisor beyond u128: only a fraction of a unit is left.
        (false, None) => (0, true),
    }
}

fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// The powers of ten and of 1024 a suffix stands for.
fn suffix_powers(suffix: &str) -> Result<(i64, u32), QuantityError> {
    Ok(match suffix {
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        _ => {
            let exponent = suffix
                .strip_prefix(|c: char| c == 'e' || c == 'E')
                .filter(|e| !e.is_empty())
                .ok_or(QuantityError::Suffix)?;
            let exponent: i32 = exponent.parse().map_err(|_| QuantityError::Suffix)?;
            (i64::from(exponent), 0)
        }
    })
}

/// A byte count as Go prints `resource.NewQuantity(n, resource.BinarySI)`: below 1024 in
/// decimal SI (so 1000 is `1k`), otherwise with the largest power of 1024 that divides it
/// exactly (`100Mi`, `1536Ki`; `1536` stays `1536`).
pub fn binary_si(bytes: u64) -> String {
    if bytes < 1024 {
        return if bytes == 1000 {
            "1k".to_string()
        } else {
            bytes.to_string()
        };
    }
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut number, mut exponent) = (bytes, 0);
    while exponent < SUFFIXES.len() - 1 && number % 1024 == 0 {
        number /= 1024;
        exponent += 1;
    }
    format!("{number}{}", SUFFIXES[exponent])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NamedTagEventList, TagEvent, TagReference};
    use k8s_openapi::api::core::v1::ObjectReference;

    fn stream(refs: &[(&str, &str)], images: &[&str]) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = Some("is".into());
        s.metadata.namespace = Some("ns".into());
        s.spec.tags = refs
            .iter()
            .enumerate()
            .map(|(i, (kind, name))| TagReference {
                name: format!("t{i}"),
                from: Some(ObjectReference {
                    kind: Some(kind.to_string()),
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        s.status.tags = vec![NamedTagEventList {
            tag: "t0".into(),
            items: Some(
                images
                    .iter()
                    .map(|i| TagEvent {
                        created: None,
                        docker_image_reference: "r".into(),
                        image: i.to_string(),
                        generation: 1,
                    })
                    .collect(),
            ),
            conditions: vec![],
        }];
        s
    }

    #[test]
    fn counts_distinct_normalized_references() {
        let s = stream(
            &[
                ("DockerImage", "nginx"),
                ("DockerImage", "docker.io/library/nginx:latest"),
                ("ImageStreamTag", "latest"),
                ("ImageStreamTag", "is:latest"),
                ("DockerImage", "quay.io/a/b:1"),
            ],
            &["sha256:a", "sha256:a", "sha256:b", ""],
        );
        assert_eq!(tag_references(&s).len(), 3);
        assert_eq!(images(&s).len(), 2);
    }

    #[test]
    fn reports_only_growing_violations() {
        let limits = StreamLimits {
            image_tags: Some(1),
            images: Some(1),
        };
        let s = stream(&[("DockerImage", "a"), ("DockerImage", "b")], &["sha256:a"]);
        assert_eq!(
            violations(&limits, &s, None),
            vec!["requested usage of openshift.io/image-tags exceeds the maximum limit per openshift.io/ImageStream (2 > 1)"]
        );
        assert!(
            violations(&limits, &s, Some(&s)).is_empty(),
            "existing violations are tolerated"
        );
        assert!(violations(&StreamLimits::default(), &s, None).is_empty());
    }

    #[test]
    fn quantities_parse_in_every_form() {
        let cases: [(&str, u64, u64); 17] = [
            ("0", 0, 0),
            ("1", 1, 1),
            ("+5", 5, 5),
            ("1k", 1000, 1000),
            ("1M", 1_000_000, 1_000_000),
            ("1E", 1_000_000_000_000_000_000, 1_000_000_000_000_000_000),
            ("1Ki", 1024, 1024),
            ("100Mi", 104_857_600, 104_857_600),
            ("1.5Ki", 1536, 1536),
            (".5Gi", 536_870_912, 536_870_912),
            ("1e3", 1000, 1000),
            ("1E3", 1000, 1000),
            ("12e-1", 1, 2),
            ("1500m", 1, 2),
            ("0.5", 0, 1),
            ("100n", 0, 1),
            ("2.000", 2, 2),
        ];
        for (text, floor, ceil) in cases {
            let q = Quantity::parse(text).expect(text);
            assert_eq!((q.floor(), q.ceil()), (floor, ceil), "{text}");
        }
    }

    #[test]
    fn quantities_saturate_and_negative_ones_count_as_zero() {
        let huge = Quantity::parse("16Ei").expect("16Ei");
        assert_eq!(huge.floor(), u64::MAX);
        assert_eq!(Quantity::parse("1e40").expect("1e40").ceil(), u64::MAX);
        let tiny = Quantity::parse("1e-50").expect("1e-50");
        assert_eq!((tiny.floor(), tiny.ceil()), (0, 1));
        let many =
            Quantity::parse("1.0000000000000000000000000000000000000000001").expect("many digits");
        assert_eq!((many.floor(), many.ceil()), (1, 2));
        let negative = Quantity::parse("-3Ki").expect("-3Ki");
        assert_eq!((negative.floor(), negative.ceil()), (0, 0));
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for text in [
            "", "Ki", ".", "-", "1K", "1Kb", "1e", "1 Ki", "1.2.3", "1e3.5", "abc",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(Quantity::parse("abc"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1K"), Err(QuantityError::Suffix));
    }

    #[test]
    fn sizes_print_in_binary_si_as_go_does() {
        let cases = [
            (0, "0"),
            (500, "500"),
            (1000, "1k"),
            (1023, "1023"),
            (1024, "1Ki"),
            (1536, "1536"),
            (1_572_864, "1536Ki"),
            (104_857_600, "100Mi"),
            (1 << 60, "1Ei"),
            (1 << 63, "8Ei"),
        ];
        for (bytes, text) in cases {
            assert_eq!(binary_si(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn images_over_the_storage_limit_are_reported() {
        let limit = StorageLimit {
            bytes: 1024,
            text: "1Ki".to_string(),
        };
        assert_eq!(image_storage_violation(&limit, 1024), None);
        assert_eq!(
            image_storage_violation(&limit, 2048).as_deref(),
            Some("requested usage of storage exceeds the maximum limit per openshift.io/Image (2Ki > 1Ki)")
        );
    }
}
