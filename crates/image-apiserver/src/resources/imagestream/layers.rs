//! The walk of every image a stream's history names (and the children of manifest lists):
//! the `layers` subresource (spec §8) and the lookup of `imagestreamimages` (§11).

use std::collections::BTreeMap;

use apimachinery::errors::ApiError;
use apimachinery::object::ApiObject;
use apiserver::registry::ReadRevision;
use image_api::metadata::{MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, SCHEMA2};
use image_api::{Image, ImageBlobReferences, ImageLayerData, ImageStream, ImageStreamLayers};
use serde_json::Value;

use crate::resources::registries::Registries;

/// Walks every image of a stream's history (and the children of manifest lists).
pub async fn stream_layers(
    registries: &Registries,
    stream: &ImageStream,
) -> Result<ImageStreamLayers, ApiError> {
    let mut out = ImageStreamLayers::default();
    out.set_type_meta("ImageStreamLayers", image_api::API_VERSION);
    out.metadata = stream.metadata.clone();
    let mut pending: Vec<String> = image_api::limits::images(stream).into_iter().collect();
    while let Some(name) = pending.pop() {
        if out.images.contains_key(&name) {
            continue;
        }
        let Some(image) = registries
            .images
            .get_image(&name, ReadRevision::Any)
            .await?
        else {
            out.images.insert(
                name,
                ImageBlobReferences {
                    image_missing: true,
                    ..Default::default()
                },
            );
            continue;
        };
        let refs = add_image(&mut out.blobs, &name, &image);
        pending.extend(refs.manifests.iter().cloned());
        out.images.insert(name, refs);
    }
    Ok(out)
}

fn add_image(
    blobs: &mut BTreeMap<String, ImageLayerData>,
    name: &str,
    image: &Image,
) -> ImageBlobReferences {
    let media_type = if image.docker_image_manifest_media_type.is_empty() {
        SCHEMA2
    } else {
        image.docker_image_manifest_media_type.as_str()
    };
    blobs.entry(name.to_string()).or_insert(ImageLayerData {
        size: None,
        media_type: media_type.to_string(),
    });
    if media_type == MANIFEST_LIST || media_type == OCI_INDEX {
        return ImageBlobReferences {
            manifests: image
                .docker_image_manifests
                .iter()
                .map(|m| m.digest.clone())
                .collect(),
            ..Default::default()
        };
    }
    let layers: Vec<String> = image
        .docker_image_layers
        .iter()
        .flatten()
        .map(|l| {
            blobs.entry(l.name.clone()).or_insert(ImageLayerData {
                size: Some(l.size),
                media_type: l.media_type.clone(),
            });
            l.name.clone()
        })
        .collect();
    let config = (media_type == SCHEMA2 || media_type == OCI_MANIFEST)
        .then(|| {
            image
                .docker_image_metadata
                .as_ref()
                .and_then(|m| m.get("Id"))
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        })
        .flatten();
    if let Some(c) = &config {
        let config_type = if media_type == OCI_MANIFEST {
            "application/vnd.oci.image.config.v1+json"
        } else {
            "application/vnd.docker.container.image.v1+json"
        };
        blobs.entry(c.clone()).or_insert(ImageLayerData {
            size: None,
            media_type: config_type.to_string(),
        });
    }
    ImageBlobReferences {
        image_missing: false,
        layers: Some(layers),
        config,
        manifests: Vec::new(),
    }
}
