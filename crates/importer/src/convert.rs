//! A manifest from a registry into an `Image` (spec §13.3 "per-manifest conversion"): the raw
//! manifest and config are kept, and the image strategy's own metadata extraction fills
//! layers, size and `dockerImageMetadata`, so an imported image reads exactly like a pushed one.

use image_api::metadata::{self, SCHEMA1_SIGNED};
use image_api::Image;
use registry_client::{Manifest, ManifestContent};
use serde_json::json;

/// The image for `manifest`, pulled as `reference` (`<repository>@<digest>`), with its config
/// when it has one.
pub fn image(
    manifest: &Manifest,
    config: Option<&[u8]>,
    reference: String,
    now: &str,
) -> Result<Image, String> {
    let text = std::str::from_utf8(&manifest.bytes)
        .map_err(|_| "the manifest is not UTF-8 JSON".to_string())?;
    let mut image = Image {
        docker_image_reference: reference,
        docker_image_manifest: text.to_string(),
        docker_image_manifest_media_type: manifest.media_type.clone(),
        docker_image_metadata_version: "1.0".to_string(),
        ..Default::default()
    };
    image.metadata.name = Some(manifest.digest.clone());
    if let Some(config) = config {
        image.docker_image_config = std::str::from_utf8(config)
            .map_err(|_| "the image config is not UTF-8 JSON".to_string())?
            .to_string();
    }
    metadata::extract(&mut image, now).map_err(|e| e.to_string())?;
    if matches!(manifest.content, ManifestContent::Schema1(_)) {
        image.docker_image_manifest_media_type = SCHEMA1_SIGNED.to_string();
    }
    Ok(image)
}

/// Layers whose size the manifest did not give (schema 1): they need a HEAD each.
pub fn unsized_layers(image: &Image) -> Vec<String> {
    let mut out: Vec<String> = image
        .docker_image_layers
        .iter()
        .flatten()
        .filter(|l| l.size == 0)
        .map(|l| l.name.clone())
        .collect();
    out.dedup();
    out
}

/// Fills in layer sizes learnt from the registry and recomputes the image size (the sum of
/// distinct layers plus the config).
pub fn set_layer_sizes(image: &mut Image, size_of: impl Fn(&str) -> Option<u64>) {
    let mut seen = std::collections::HashSet::new();
    let mut total = image.docker_image_config.len() as i64;
    for layer in image.docker_image_layers.iter_mut().flatten() {
        if layer.size == 0 {
            if let Some(size) = size_of(&layer.name) {
                layer.size = i64::try_from(size).unwrap_or(i64::MAX);
            }
        }
        if seen.insert(layer.name.clone()) {
            total = total.saturating_add(layer.size);
        }
    }
    if let Some(meta) = image.docker_image_metadata.as_mut() {
        meta["Size"] = json!(total);
    }
}
