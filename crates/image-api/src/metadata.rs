//! Image metadata from the manifest and config (spec §3.1, `InternalImageWithMetadata`), and
//! the immutability rules of image updates (§3.3).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Image, ImageLayer, ImageManifest};

pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const LAYER_ORDER_ANNOTATION: &str = "image.openshift.io/dockerLayersOrder";
pub const MANIFEST_BLOB_STORED: &str = "image.openshift.io/manifestBlobStored";
pub const MANAGED_SIGNATURE: &str = "image.openshift.io/managed-signature";
const SCHEMA1_LAYER_TYPE: &str = "application/vnd.docker.container.image.rootfs.diff+x-gtar";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("unable to parse the manifest: {0}")]
    Manifest(String),
    #[error("dockerImageConfig must not be empty for manifest type {0:?}")]
    EmptyConfig(String),
    #[error("unrecognized container image manifest schema {0}")]
    UnknownSchema(i64),
    #[error("the image history is empty")]
    EmptyHistory,
    #[error("the number of image layers and history entries differ")]
    HistoryMismatch,
}

fn is_schema2_or_oci(media_type: &str) -> bool {
    media_type == SCHEMA2 || media_type == OCI_MANIFEST
}

/// Fills layers, size and `dockerImageMetadata` from the manifest (and config). Errors are
/// reported for logging; upstream ignores them and keeps what was filled.
pub fn extract(image: &mut Image, now: &str) -> Result<(), MetadataError> {
    if image.docker_image_manifest.is_empty() {
        return Ok(());
    }
    normalize_layer_order(image);
    let size = image
        .docker_image_metadata
        .as_ref()
        .and_then(|m| m.get("Size"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if image
        .docker_image_layers
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        && size > 0
        && !image.docker_image_manifest_media_type.is_empty()
    {
        return Ok(());
    }
    let manifest: Value = serde_json::from_str(&image.docker_image_manifest)
        .map_err(|e| MetadataError::Manifest(e.to_string()))?;
    // OCI manifests may leave `mediaType` out of the body; the type the registry served them
    // with (kept in dockerImageManifestMediaType by importers) says what they are.
    let media_type = manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(image.docker_image_manifest_media_type.as_str())
        .to_string();
    let media_type = media_type.as_str();
    if media_type == MANIFEST_LIST || media_type == OCI_INDEX {
        image.docker_image_manifest_media_type = media_type.to_string();
        image.docker_image_manifests = manifest_list_entries(&manifest);
        let mut meta = docker_image_base();
        meta["Id"] = json!(image.metadata.name.clone().unwrap_or_default());
        meta["Created"] = json!(now);
        image.docker_image_metadata = Some(meta);
        return Ok(());
    }
    match manifest
        .get("schemaVersion")
        .and_then(Value::as_i64)
        .unwrap_or(0)
    {
        1 => extract_schema1(image, &manifest),
        2 => extract_schema2(image, &manifest, media_type),
        other => Err(MetadataError::UnknownSchema(other)),
    }
}

fn docker_image_base() -> Value {
    json!({"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0"})
}

/// Schema1 lists layers newest first, schema2/OCI oldest first: images always store ascending.
fn normalize_layer_order(image: &mut Image) {
    let Some(layers) = image.docker_image_layers.as_mut().filter(|l| !l.is_empty()) else {
        return;
    };
    let annotations = image
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    if annotations.contains_key(LAYER_ORDER_ANNOTATION) {
        if annotations.get(LAYER_ORDER_ANNOTATION).map(String::as_str) == Some("descending") {
            layers.reverse();
            annotations.insert(LAYER_ORDER_ANNOTATION.into(), "ascending".into());
        }
        return;
    }
    let media_type = image.docker_image_manifest_media_type.as_str();
    if is_schema2_or_oci(media_type) {
        // Upstream infers "descending" for schema2 lists given without the annotation.
        layers.reverse();
    }
    annotations.insert(LAYER_ORDER_ANNOTATION.into(), "ascending".into());
}

fn manifest_list_entries(manifest: &Value) -> Vec<ImageManifest> {
    manifest
        .get("manifests")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|m| {
                    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
                    ImageManifest {
                        digest: s(m.get("digest")),
                        media_type: s(m.get("mediaType")),
                        manifest_size: m.get("size").and_then(Value::as_i64).unwrap_or(0),
                        architecture: s(m.pointer("/platform/architecture")),
                        os: s(m.pointer("/platform/os")),
                        variant: s(m.pointer("/platform/variant")),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn extract_schema2(
    image: &mut Image,
    manifest: &Value,
    media_type: &str,
) -> Result<(), MetadataError> {
    image.docker_image_manifest_media_type = if !media_type.is_empty() {
        media_type.to_string()
    } else if image.docker_image_manifest_media_type.is_empty() {
        SCHEMA2.to_string()
    } else {
        image.docker_image_manifest_media_type.clone()
    };
    if image.docker_image_config.is_empty() {
        return Err(MetadataError::EmptyConfig(
            image.docker_image_manifest_media_type.clone(),
        ));
    }
    if image.docker_image_layers.as_ref().is_none_or(Vec::is_empty) {
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .map(|l| ImageLayer {
                        name: l
                            .get("digest")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        size: l.get("size").and_then(Value::as_i64).unwrap_or(0),
                        media_type: l
                            .get("mediaType")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        image.docker_image_layers = Some(layers);
        image
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(LAYER_ORDER_ANNOTATION.into(), "ascending".into());
    }
    let config: Value = serde_json::from_str(&image.docker_image_config)
        .map_err(|e| MetadataError::Manifest(e.to_string()))?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut seen = std::collections::BTreeSet::new();
    seen.insert(config_digest.to_string());
    let mut size = image.docker_image_config.len() as i64;
    for l in image.docker_image_layers.iter().flatten() {
        if seen.insert(l.name.clone()) {
            // Sizes come from the client's manifest: they must not wrap.
            size = size.saturating_add(l.size);
        }
    }
    let mut meta = docker_image_base();
    meta["Id"] = json!(config_digest);
    copy_config_fields(&mut meta, &config);
    meta["Size"] = json!(size);
    image.docker_image_metadata = Some(meta);
    Ok(())
}

/// Docker config fields into DockerImage's capitalized names.
fn copy_config_fields(meta: &mut Value, config: &Value) {
    for (from, to) in [
        ("parent", "Parent"),
        ("comment", "Comment"),
        ("created", "Created"),
        ("container", "Container"),
        ("container_config", "ContainerConfig"),
        ("docker_version", "DockerVersion"),
        ("author", "Author"),
        ("config", "Config"),
        ("architecture", "Architecture"),
        ("id", "Id"),
    ] {
        if let Some(v) = config.get(from).filter(|v| !v.is_null()) {
            if to == "Id"
                && meta
                    .get("Id")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            {
                continue;
            }
            meta[to] = v.clone();
        }
    }
}

fn extract_schema1(image: &mut Image, manifest: &Value) -> Result<(), MetadataError> {
    image.docker_image_manifest_media_type = SCHEMA1.to_string();
    let history: Vec<Value> = manifest
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .map(|e| {
                    e.get("v1Compatibility")
                        .and_then(Value::as_str)
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or(Value::Null)
                })
                .collect()
        })
        .unwrap_or_default();
    let fs_layers: Vec<String> = manifest
        .get("fsLayers")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|x| {
                    x.get("blobSum")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let first = history.first().ok_or(MetadataError::EmptyHistory)?.clone();
    if image.docker_image_layers.as_ref().is_none_or(Vec::is_empty) {
        if history.len() != fs_layers.len() {
            return Err(MetadataError::HistoryMismatch);
        }
        let mut layers: Vec<ImageLayer> = fs_layers
            .iter()
            .zip(&history)
            .map(|(sum, h)| ImageLayer {
                name: sum.clone(),
                size: h
                    .get("Size")
                    .or_else(|| h.get("size"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                media_type: SCHEMA1_LAYER_TYPE.to_string(),
            })
            .collect();
        layers.reverse();
        image.docker_image_layers = Some(layers);
        image
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(LAYER_ORDER_ANNOTATION.into(), "ascending".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let size: i64 = image
        .docker_image_layers
        .iter()
        .flatten()
        .filter(|l| seen.insert(l.name.clone()))
        .fold(0i64, |total, l| total.saturating_add(l.size));
    let mut meta = docker_image_base();
    copy_config_fields(&mut meta, &first);
    meta["Size"] = json!(size);
    image.docker_image_metadata = Some(meta);
    Ok(())
}

/// The sha256 digest string of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The parts an image update cannot change (§3.3): restored from `old`; manifest and config
/// changes are kept only when they are cleared or match the image's digests.
pub fn restore_immutable(new: &mut Image, old: &Image) {
    new.docker_image_metadata = old.docker_image_metadata.clone();
    new.docker_image_metadata_version = old.docker_image_metadata_version.clone();
    new.docker_image_layers = old.docker_image_layers.clone();
    new.docker_image_signatures = old.docker_image_signatures.clone();
    let name = new.metadata.name.clone().unwrap_or_default();
    if new.docker_image_manifest != old.docker_image_manifest
        && !new.docker_image_manifest.is_empty()
        && !manifest_matches(&new.docker_image_manifest, &name)
    {
        new.docker_image_manifest = old.docker_image_manifest.clone();
    }
    if new.docker_image_config != old.docker_image_config && !new.docker_image_config.is_empty() {
        let manifest: Value =
            serde_json::from_str(&new.docker_image_manifest).unwrap_or(Value::Null);
        let media_type = manifest
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(&new.docker_image_manifest_media_type);
        let want = manifest.pointer("/config/digest").and_then(Value::as_str);
        let ok = is_schema2_or_oci(media_type)
            && want == Some(sha256_digest(new.docker_image_config.as_bytes()).as_str());
        if !ok {
            new.docker_image_config = old.docker_image_config.clone();
        }
    }
}

fn manifest_matches(manifest: &str, name: &str) -> bool {
    name.starts_with("sha256:") && sha256_digest(manifest.as_bytes()) == name
}

/// After extraction: strip what the registry stores itself, and the deprecated signature
/// annotation.
pub fn finish(image: &mut Image) {
    let stored = image
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_BLOB_STORED))
        .is_some_and(|v| v == "true");
    if stored {
        image.docker_image_manifest.clear();
        image.docker_image_config.clear();
    }
    for sig in &mut image.signatures {
        if let Some(a) = sig.metadata.annotations.as_mut() {
            a.remove(MANAGED_SIGNATURE);
            if a.is_empty() {
                sig.metadata.annotations = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema2_image() -> Image {
        let config = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["A=1"],"Cmd":["sh"]}}"#;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": SCHEMA2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": sha256_digest(config.as_bytes())},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 100, "digest": "sha256:aaaa"},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 50, "digest": "sha256:bbbb"},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 100, "digest": "sha256:aaaa"}
            ]
        })
        .to_string();
        let mut img = Image::default();
        img.metadata.name = Some(sha256_digest(manifest.as_bytes()));
        img.docker_image_manifest = manifest;
        img.docker_image_config = config.to_string();
        img
    }

    #[test]
    fn schema2_metadata_layers_and_size() {
        let mut img = schema2_image();
        extract(&mut img, "2024-01-01T00:00:00Z").expect("extract");
        let layers = img.docker_image_layers.clone().expect("layers");
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0].name, "sha256:aaaa");
        let meta = img.docker_image_metadata.clone().expect("meta");
        assert_eq!(meta["kind"], "DockerImage");
        assert_eq!(meta["Architecture"], "amd64");
        assert_eq!(meta["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(
            meta["Size"],
            json!(img.docker_image_config.len() as i64 + 150)
        );
        assert_eq!(img.docker_image_manifest_media_type, SCHEMA2);
        assert_eq!(
            img.metadata.annotations.as_ref().expect("a")[LAYER_ORDER_ANNOTATION],
            "ascending"
        );
    }

    #[test]
    fn schema2_needs_a_config() {
        let mut img = schema2_image();
        img.docker_image_config.clear();
        assert_eq!(
            extract(&mut img, "now").expect_err("no config").to_string(),
            "dockerImageConfig must not be empty for manifest type \"application/vnd.docker.distribution.manifest.v2+json\""
        );
    }

    #[test]
    fn manifest_lists() {
        let mut img = Image::default();
        img.metadata.name = Some("sha256:list".into());
        img.docker_image_manifest = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "size": 10, "digest": "sha256:x", "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}
        ]}).to_string();
        extract(&mut img, "2024-01-01T00:00:00Z").expect("list");
        assert_eq!(img.docker_image_manifests[0].architecture, "arm64");
        assert_eq!(img.docker_image_metadata.expect("m")["Id"], "sha256:list");
    }

    #[test]
    fn updates_keep_immutable_parts() {
        let mut old = schema2_image();
        extract(&mut old, "now").expect("extract");
        let mut new = old.clone();
        new.docker_image_layers = None;
        new.docker_image_manifest = "{\"other\":1}".into();
        new.docker_image_config = "{}".into();
        restore_immutable(&mut new, &old);
        assert_eq!(new.docker_image_layers, old.docker_image_layers);
        assert_eq!(new.docker_image_manifest, old.docker_image_manifest);
        assert_eq!(new.docker_image_config, old.docker_image_config);
        let mut cleared = old.clone();
        cleared.docker_image_manifest.clear();
        restore_immutable(&mut cleared, &old);
        assert!(cleared.docker_image_manifest.is_empty());
    }

    #[test]
    fn blob_stored_images_drop_manifest_and_config() {
        let mut img = schema2_image();
        img.metadata.annotations =
            Some([(MANIFEST_BLOB_STORED.to_string(), "true".to_string())].into());
        finish(&mut img);
        assert!(img.docker_image_manifest.is_empty());
        assert!(img.docker_image_config.is_empty());
    }
}
