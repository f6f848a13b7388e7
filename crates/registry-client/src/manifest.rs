//! Manifests (spec §13.3 "Per-manifest conversion", §13.4 "Manifests"): which kind a body is,
//! from its `Content-Type` or, when that says nothing useful, from the body itself; the schema 1
//! canonical payload (the JWS payload with the signatures stripped); and the digest, computed from
//! the content and checked against the digest that was asked for.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::media_types::{
    DOCKER_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA2, OCI_INDEX, OCI_MANIFEST,
};

/// A manifest as the registry sent it, with its kind decoded.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The media type: the `Content-Type` when it names a known type, otherwise the type
    /// recognised from the body.
    pub media_type: String,
    /// `sha256:<hex>` over the bytes (over the canonical payload for a signed schema 1 manifest).
    pub digest: String,
    /// The body, exactly as received.
    pub bytes: Bytes,
    /// The decoded manifest.
    pub content: ManifestContent,
}

/// The kinds of manifest this client reads.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ManifestContent {
    /// Docker schema 2 and OCI image manifests.
    Image(ImageManifest),
    /// Docker manifest lists and OCI indexes.
    Index(ImageIndex),
    /// Legacy Docker schema 1 (read-only).
    Schema1(Schema1),
}

/// What the importer needs from a schema 1 manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema1 {
    /// `fsLayers[].blobSum`, in order.
    pub layers: Vec<String>,
    /// The number of `history` entries.
    pub history_len: usize,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 2 * hash.len());
    out.push_str("sha256:");
    for byte in hash.iter().copied() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// A manifest reference: a tag, or a `sha256:` digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reference<'a> {
    Tag(&'a str),
    Digest(&'a str),
}

impl<'a> Reference<'a> {
    pub(crate) fn parse(reference: &'a str) -> Result<Reference<'a>, Error> {
        if reference.contains(':') {
            check_digest(reference)?;
            return Ok(Reference::Digest(reference));
        }
        if is_valid_tag(reference) {
            Ok(Reference::Tag(reference))
        } else {
            Err(Error::Malformed(format!("invalid tag {reference:?}")))
        }
    }

    pub(crate) fn as_str(&self) -> &'a str {
        match self {
            Reference::Tag(tag) => tag,
            Reference::Digest(digest) => digest,
        }
    }

    pub(crate) fn digest(&self) -> Option<&'a str> {
        match self {
            Reference::Tag(_) => None,
            Reference::Digest(digest) => Some(digest),
        }
    }
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        })
}

/// Accepts `sha256:<64 lower-case hex digits>` only; other algorithms are not supported.
pub(crate) fn check_digest(digest: &str) -> Result<(), Error> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(Error::Malformed(format!("invalid digest {digest:?}")));
    };
    if algorithm != "sha256" {
        return Err(Error::Malformed(format!(
            "unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 is supported"
        )));
    }
    let valid = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::Malformed(format!(
            "invalid sha256 digest {digest:?}"
        )))
    }
}

/// Decodes a manifest body, computes its digest and, for a fetch by digest, checks it.
pub(crate) fn decode(
    content_type: Option<&str>,
    bytes: Bytes,
    expected: Option<&str>,
) -> Result<Manifest, Error> {
    let (media_type, content) = parse(content_type, &bytes)?;
    let digest = match &content {
        ManifestContent::Schema1(_) => sha256_digest(&schema1_payload(&bytes)?),
        ManifestContent::Image(_) | ManifestContent::Index(_) => sha256_digest(&bytes),
    };
    let Some(expected) = expected else {
        return Ok(Manifest {
            media_type,
            digest,
            bytes,
            content,
        });
    };
    if digest == expected {
        return Ok(Manifest {
            media_type,
            digest,
            bytes,
            content,
        });
    }
    // Some registries digest a schema 1 manifest over its signed bytes: accept that too.
    if matches!(content, ManifestContent::Schema1(_)) && sha256_digest(&bytes) == expected {
        return Ok(Manifest {
            media_type,
            digest: expected.to_string(),
            bytes,
            content,
        });
    }
    Err(Error::DigestMismatch {
        media_type,
        expected: expected.to_string(),
        actual: digest,
    })
}

/// The media type without parameters, trimmed and in lower case.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decides the kind of a manifest body and decodes it: (media type, content).
pub(crate) fn parse(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(String, ManifestContent), Error> {
    let declared = content_type.map(essence).filter(|t| !t.is_empty());
    match declared.as_deref() {
        Some(t @ (DOCKER_SCHEMA1_SIGNED | DOCKER_SCHEMA1)) => Ok((
            t.to_string(),
            ManifestContent::Schema1(parse_schema1(body)?),
        )),
        Some(t @ (DOCKER_SCHEMA2 | OCI_MANIFEST)) => {
            Ok((t.to_string(), ManifestContent::Image(parse_image(t, body)?)))
        }
        Some(t @ (DOCKER_LIST | OCI_INDEX)) => {
            Ok((t.to_string(), ManifestContent::Index(parse_index(t, body)?)))
        }
        None
        | Some(
            "application/json" | "text/plain" | "application/octet-stream" | "binary/octet-stream",
        ) => sniff(body, None),
        Some(other) => sniff(body, Some(other)),
    }
}

/// The fields that tell the manifest kinds apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<serde_json::Value>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
    #[serde(default)]
    config: Option<IgnoredAny>,
    #[serde(default)]
    signatures: Option<IgnoredAny>,
}

/// Recognises a body whose `Content-Type` is missing, generic or unknown (`declared`).
fn sniff(body: &[u8], declared: Option<&str>) -> Result<(String, ManifestContent), Error> {
    let unrecognised = |why: &str| match declared {
        Some(t) => Error::UnsupportedManifest(t.to_string()),
        None => Error::Malformed(format!("invalid manifest: {why}")),
    };
    let probe: Probe = match serde_json::from_slice(body) {
        Ok(probe) => probe,
        Err(e) => return Err(unrecognised(&e.to_string())),
    };
    match probe
        .schema_version
        .as_ref()
        .and_then(serde_json::Value::as_i64)
    {
        Some(1) => {
            let media_type = if probe.signatures.is_some() {
                DOCKER_SCHEMA1_SIGNED
            } else {
                DOCKER_SCHEMA1
            };
            Ok((
                media_type.to_string(),
                ManifestContent::Schema1(parse_schema1(body)?),
            ))
        }
        Some(2) => {
            if let Some(media_type) = probe.media_type.as_deref() {
                let media_type = essence(media_type);
                if media_type == DOCKER_SCHEMA2 || media_type == OCI_MANIFEST {
                    let image = parse_image(&media_type, body)?;
                    return Ok((media_type, ManifestContent::Image(image)));
                }
                if media_type == DOCKER_LIST || media_type == OCI_INDEX {
                    let index = parse_index(&media_type, body)?;
                    return Ok((media_type, ManifestContent::Index(index)));
                }
                return Err(Error::UnsupportedManifest(media_type));
            }
            if probe.manifests.is_some() {
                Ok((
                    OCI_INDEX.to_string(),
                    ManifestContent::Index(parse_index(OCI_INDEX, body)?),
                ))
            } else if probe.config.is_some() {
                Ok((
                    OCI_MANIFEST.to_string(),
                    ManifestContent::Image(parse_image(OCI_MANIFEST, body)?),
                ))
            } else {
                Err(unrecognised("schemaVersion 2 without config or manifests"))
            }
        }
        _ => Err(unrecognised("no known schemaVersion")),
    }
}

fn parse_image(media_type: &str, body: &[u8]) -> Result<ImageManifest, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Malformed(format!("invalid {media_type} manifest: {e}")))
}

fn parse_index(media_type: &str, body: &[u8]) -> Result<ImageIndex, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Malformed(format!("invalid {media_type} manifest: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSchema1 {
    #[serde(default)]
    fs_layers: Option<Vec<FsLayer>>,
    #[serde(default)]
    history: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

fn parse_schema1(body: &[u8]) -> Result<Schema1, Error> {
    let raw: RawSchema1 = serde_json::from_slice(body)
        .map_err(|e| Error::Malformed(format!("invalid schema 1 manifest: {e}")))?;
    Ok(Schema1 {
        layers: raw
            .fs_layers
            .unwrap_or_default()
            .into_iter()
            .map(|layer| layer.blob_sum)
            .collect(),
        history_len: raw.history.map_or(0, |history| history.len()),
    })
}

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    signatures: Option<Vec<Signature>>,
}

#[derive(Deserialize)]
struct Signature {
    #[serde(default)]
    protected: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Protected {
    format_length: usize,
    format_tail: String,
}

/// The canonical payload of a schema 1 manifest: for a signed one (libtrust JWS), the bytes
/// before `formatLength` followed by the base64url-decoded `formatTail` of the first signature's
/// protected header; without signatures, the bytes themselves.
pub(crate) fn schema1_payload(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    let signed: Signed = serde_json::from_slice(bytes)
        .map_err(|e| Error::Malformed(format!("invalid schema 1 manifest: {e}")))?;
    let Some(first) = signed
        .signatures
        .as_ref()
        .and_then(|signatures| signatures.first())
    else {
        return Ok(Cow::Borrowed(bytes));
    };
    let protected = first.protected.as_deref().ok_or_else(|| {
        Error::Malformed("schema 1 manifest signature has no protected header".to_string())
    })?;
    let header = decode_base64url(protected)?;
    let header: Protected = serde_json::from_slice(&header).map_err(|e| {
        Error::Malformed(format!("invalid schema 1 manifest signature header: {e}"))
    })?;
    let tail = decode_base64url(&header.format_tail)?;
    let head = bytes.get(..header.format_length).ok_or_else(|| {
        Error::Malformed(format!(
            "schema 1 manifest signature formatLength {} exceeds the manifest size {}",
            header.format_length,
            bytes.len()
        ))
    })?;
    let mut payload = Vec::with_capacity(head.len() + tail.len());
    payload.extend_from_slice(head);
    payload.extend_from_slice(&tail);
    Ok(Cow::Owned(payload))
}

fn decode_base64url(text: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| {
            Error::Malformed(format!(
                "invalid base64url in a schema 1 manifest signature: {e}"
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;

    use super::*;

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn docker_v2() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_SCHEMA2}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":"{DIGEST_A}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":"{DIGEST_B}"}}]}}"#
        )
    }

    fn oci_manifest_without_media_type() -> String {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":10,"digest":"{DIGEST_A}"}},"layers":[]}}"#
        )
    }

    fn docker_list() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_SCHEMA2}","size":500,"digest":"{DIGEST_A}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        )
    }

    fn oci_index_without_media_type() -> String {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":500,"digest":"{DIGEST_B}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        )
    }

    const SCHEMA1_UNSIGNED: &str = r#"{"schemaVersion":1,"name":"a/b","tag":"t","architecture":"amd64","fsLayers":[{"blobSum":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},{"blobSum":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}],"history":[{"v1Compatibility":"{}"},{"v1Compatibility":"{}"}]}"#;

    /// A schema 1 manifest signed the libtrust way: the signatures are spliced in before the
    /// final `}`, which the protected header's formatTail restores.
    fn schema1_signed() -> (String, String) {
        let canonical = SCHEMA1_UNSIGNED.to_string();
        let format_length = canonical.len() - 1;
        let tail = URL_SAFE_NO_PAD.encode("}");
        let protected = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"formatLength":{format_length},"formatTail":"{tail}","time":"2016-01-01T00:00:00Z"}}"#
        ));
        let head = &canonical[..format_length];
        let signed = format!(
            r#"{head},"signatures":[{{"header":{{"alg":"ES256"}},"signature":"c2lnbmF0dXJl","protected":"{protected}"}}]}}"#
        );
        (signed, canonical)
    }

    fn kind(content: &ManifestContent) -> &'static str {
        match content {
            ManifestContent::Image(_) => "image",
            ManifestContent::Index(_) => "index",
            ManifestContent::Schema1(_) => "schema1",
        }
    }

    fn check(content_type: Option<&str>, body: &str) -> Result<(String, &'static str), Error> {
        let (media_type, content) = parse(content_type, body.as_bytes())?;
        Ok((media_type, kind(&content)))
    }

    fn ok(media_type: &str, kind: &'static str) -> Result<(String, &'static str), Error> {
        Ok((media_type.to_string(), kind))
    }

    #[test]
    fn declared_content_types() {
        let (signed, _) = schema1_signed();
        assert_eq!(
            check(Some(DOCKER_SCHEMA2), &docker_v2()),
            ok(DOCKER_SCHEMA2, "image")
        );
        assert_eq!(
            check(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                &docker_v2()
            ),
            ok(DOCKER_SCHEMA2, "image")
        );
        assert_eq!(
            check(Some(OCI_MANIFEST), &oci_manifest_without_media_type()),
            ok(OCI_MANIFEST, "image")
        );
        assert_eq!(
            check(Some(DOCKER_LIST), &docker_list()),
            ok(DOCKER_LIST, "index")
        );
        assert_eq!(
            check(Some(OCI_INDEX), &oci_index_without_media_type()),
            ok(OCI_INDEX, "index")
        );
        assert_eq!(
            check(Some(DOCKER_SCHEMA1_SIGNED), &signed),
            ok(DOCKER_SCHEMA1_SIGNED, "schema1")
        );
        assert_eq!(
            check(Some(DOCKER_SCHEMA1), SCHEMA1_UNSIGNED),
            ok(DOCKER_SCHEMA1, "schema1")
        );
    }

    #[test]
    fn sniffed_content_types() {
        let (signed, _) = schema1_signed();
        for content_type in [None, Some("application/json"), Some("text/plain"), Some("")] {
            assert_eq!(
                check(content_type, &docker_v2()),
                ok(DOCKER_SCHEMA2, "image")
            );
            assert_eq!(
                check(content_type, &oci_manifest_without_media_type()),
                ok(OCI_MANIFEST, "image")
            );
            assert_eq!(
                check(content_type, &docker_list()),
                ok(DOCKER_LIST, "index")
            );
            assert_eq!(
                check(content_type, &oci_index_without_media_type()),
                ok(OCI_INDEX, "index")
            );
            assert_eq!(
                check(content_type, &signed),
                ok(DOCKER_SCHEMA1_SIGNED, "schema1")
            );
            assert_eq!(
                check(content_type, SCHEMA1_UNSIGNED),
                ok(DOCKER_SCHEMA1, "schema1")
            );
        }
        // An unknown declared type whose body is recognisable is read as what it is.
        assert_eq!(
            check(Some("application/x-unknown"), &docker_v2()),
            ok(DOCKER_SCHEMA2, "image")
        );
    }

    #[test]
    fn unsupported_and_malformed() {
        assert_eq!(
            check(
                Some("application/vnd.oci.artifact.manifest.v1+json"),
                r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","blobs":[]}"#
            ),
            Err(Error::UnsupportedManifest(
                "application/vnd.oci.artifact.manifest.v1+json".to_string()
            ))
        );
        assert_eq!(
            check(
                None,
                r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#
            ),
            Err(Error::UnsupportedManifest(
                "application/vnd.example+json".to_string()
            ))
        );
        assert_eq!(
            check(Some("text/html"), "<html></html>"),
            Err(Error::UnsupportedManifest("text/html".to_string()))
        );
        assert!(matches!(
            check(None, "<html></html>"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            check(None, r#"{"schemaVersion":3}"#),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            check(Some(DOCKER_SCHEMA2), r#"{"schemaVersion":2}"#),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn schema1_fields() {
        let (signed, _) = schema1_signed();
        let (_, content) = parse(None, signed.as_bytes()).unwrap();
        let ManifestContent::Schema1(schema1) = content else {
            panic!("not schema 1");
        };
        assert_eq!(
            schema1,
            Schema1 {
                layers: vec![DIGEST_A.to_string(), DIGEST_B.to_string()],
                history_len: 2
            }
        );
    }

    #[test]
    fn schema1_canonical_payload() {
        let (signed, canonical) = schema1_signed();
        assert_ne!(signed, canonical);
        let payload = schema1_payload(signed.as_bytes()).map(Cow::into_owned);
        assert_eq!(payload, Ok(canonical.clone().into_bytes()));
        // Without signatures the payload is the body itself.
        let payload = schema1_payload(canonical.as_bytes()).map(Cow::into_owned);
        assert_eq!(payload, Ok(canonical.clone().into_bytes()));

        let want = sha256_digest(canonical.as_bytes());
        let manifest = decode(
            Some(DOCKER_SCHEMA1_SIGNED),
            Bytes::from(signed.clone()),
            None,
        );
        assert_eq!(manifest.map(|m| m.digest), Ok(want.clone()));
        let manifest = decode(None, Bytes::from(signed.clone()), Some(want.as_str()));
        assert_eq!(
            manifest.map(|m| (m.digest, m.media_type)),
            Ok((want.clone(), DOCKER_SCHEMA1_SIGNED.to_string()))
        );
        let manifest = decode(None, Bytes::from(signed), Some(DIGEST_A));
        assert_eq!(
            manifest.map(|m| m.digest),
            Err(Error::DigestMismatch {
                media_type: DOCKER_SCHEMA1_SIGNED.to_string(),
                expected: DIGEST_A.to_string(),
                actual: want,
            })
        );
    }

    #[test]
    fn schema1_bad_signature_header() {
        let body =
            r#"{"schemaVersion":1,"fsLayers":[],"history":[],"signatures":[{"protected":"%%%"}]}"#;
        assert!(matches!(
            schema1_payload(body.as_bytes()),
            Err(Error::Malformed(_))
        ));
        let header = URL_SAFE_NO_PAD.encode(r#"{"formatLength":100000,"formatTail":"fQ"}"#);
        let body = format!(r#"{{"schemaVersion":1,"signatures":[{{"protected":"{header}"}}]}}"#);
        assert!(matches!(
            schema1_payload(body.as_bytes()),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn digests_are_verified() {
        let body = docker_v2();
        let digest = sha256_digest(body.as_bytes());
        let manifest = decode(
            Some(DOCKER_SCHEMA2),
            Bytes::from(body.clone()),
            Some(digest.as_str()),
        );
        assert_eq!(manifest.map(|m| m.digest), Ok(digest.clone()));
        let manifest = decode(Some(DOCKER_SCHEMA2), Bytes::from(body.clone()), None);
        assert_eq!(manifest.map(|m| m.digest), Ok(digest.clone()));
        let manifest = decode(Some(DOCKER_SCHEMA2), Bytes::from(body), Some(DIGEST_B));
        assert_eq!(
            manifest.map(|m| m.digest),
            Err(Error::DigestMismatch {
                media_type: DOCKER_SCHEMA2.to_string(),
                expected: DIGEST_B.to_string(),
                actual: digest,
            })
        );
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn references() {
        assert_eq!(Reference::parse("latest"), Ok(Reference::Tag("latest")));
        assert_eq!(
            Reference::parse("v1.2_3-rc"),
            Ok(Reference::Tag("v1.2_3-rc"))
        );
        assert_eq!(Reference::parse(DIGEST_A), Ok(Reference::Digest(DIGEST_A)));
        assert_eq!(
            Reference::parse(DIGEST_A).map(|r| r.digest()),
            Ok(Some(DIGEST_A))
        );
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse(".hidden").is_err());
        assert!(Reference::parse("a/b").is_err());
        assert!(Reference::parse("sha512:abcd").is_err());
        assert!(Reference::parse("sha256:ABC").is_err());
    }
}
