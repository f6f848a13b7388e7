//! `imagestreams` as served: the stored resource (registry) plus its computed subresources
//! `layers` (spec §8) and `secrets` (§7), and `imagestreamimages` (§11), which is built on the
//! same layer walk.

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::discovery::{ResourceInfo, SubresourceInfo};
use apimachinery::errors::ApiError;
use apimachinery::object::ApiObject;
use apimachinery::table::ColumnDefinition;
use apiserver::registry::ReadRevision;
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::metadata::{MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, SCHEMA2};
use image_api::reference::digest_or_image_matches;
use image_api::{
    Image, ImageBlobReferences, ImageLayerData, ImageStream, ImageStreamImage, ImageStreamLayers,
};
use serde_json::{json, Value};

use super::context::{self, gr, not_found, Context};

/// The image streams resource with every subresource.
pub struct ImageStreams {
    info: ResourceInfo,
    ctx: Arc<Context>,
}

/// Discovery of image streams with every subresource.
pub fn streams_info() -> ResourceInfo {
    let mut info = super::imagestream::info();
    info.subresources.push(SubresourceInfo {
        name: "layers",
        kind: "ImageStreamLayers",
        group_version: None,
        verbs: &["get"],
    });
    info.subresources.push(SubresourceInfo {
        name: "secrets",
        kind: "SecretList",
        group_version: None,
        verbs: &["get"],
    });
    info
}

impl ImageStreams {
    pub fn new(ctx: Arc<Context>) -> Self {
        ImageStreams {
            info: streams_info(),
            ctx,
        }
    }
}

/// Walks every image of a stream's history (and the children of manifest lists).
pub async fn stream_layers(
    ctx: &Context,
    stream: &ImageStream,
) -> Result<ImageStreamLayers, ApiError> {
    let mut out = ImageStreamLayers::default();
    out.set_type_meta("ImageStreamLayers", image_api::API_VERSION);
    out.metadata = stream.metadata.clone();
    let mut pending: Vec<String> = stream
        .status
        .tags
        .iter()
        .flat_map(|l| l.items.iter().flatten())
        .filter(|e| !e.image.is_empty())
        .map(|e| e.image.clone())
        .collect();
    while let Some(name) = pending.pop() {
        if out.images.contains_key(&name) {
            continue;
        }
        let Some(image) = ctx.images.get(None, &name, ReadRevision::Any).await? else {
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

impl ImageStreams {
    async fn layers(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        if !self.ctx.images.is_ready() {
            return Err(ApiError::ServerTimeout {
                resource: gr("imagestreams"),
                operation: "get".to_string(),
                retry_after: 2,
            });
        }
        let stream = self
            .ctx
            .streams
            .get(req.namespace.as_deref(), name, ReadRevision::Consistent)
            .await?
            .ok_or_else(|| not_found("imagestreams", name))?;
        let layers = stream_layers(&self.ctx, &stream).await?;
        Ok(Reply::Object {
            code: 200,
            json: to_bytes(&layers).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    /// Standalone there are no namespace Secrets: the list is empty (design.md: list options
    /// are accepted).
    fn secrets(&self, req: &Request) -> Result<Reply, ApiError> {
        apimachinery::options::ListOptions::parse(&req.query, false)?;
        Ok(Reply::Object {
            code: 200,
            json: to_bytes(&json!({"kind": "SecretList", "apiVersion": image_api::API_VERSION, "metadata": {}, "items": []}))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }
}

#[async_trait]
impl Resource for ImageStreams {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.subresource.as_deref(), req.name.clone()) {
            (Verb::Get, Some("layers"), Some(name)) => self.layers(&req, &name).await,
            (Verb::Get, Some("secrets"), Some(_)) => self.secrets(&req),
            (_, Some("layers" | "secrets"), _) => Err(ApiError::RouteMethodNotAllowed),
            _ => self.ctx.streams.handle(req).await,
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        self.ctx.streams.table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        self.ctx.streams.table_row(object)
    }
}

// ---------------------------------------------------------------------------------------------
// imagestreamimages

pub fn isimage_info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: "imagestreamimages",
        singular: "imagestreamimage",
        kind: "ImageStreamImage",
        namespaced: true,
        verbs: &["get"],
        short_names: &["isimage"],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageStreamImages {
    info: ResourceInfo,
    ctx: Arc<Context>,
}

impl ImageStreamImages {
    pub fn new(ctx: Arc<Context>) -> Self {
        ImageStreamImages {
            info: isimage_info(),
            ctx,
        }
    }

    async fn get(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, id) = match name.split_once('@') {
            Some((s, i)) if !s.is_empty() && !i.is_empty() && !i.contains('@') => (s, i),
            _ => {
                return Err(ApiError::BadRequest(
                    "ImageStreamImages must be retrieved with <name>@<id>".to_string(),
                ))
            }
        };
        if !self.ctx.images.is_ready() {
            return Err(ApiError::ServerTimeout {
                resource: gr("imagestreams"),
                operation: "get".to_string(),
                retry_after: 2,
            });
        }
        let ns = req.namespace.as_deref().unwrap_or("");
        let stream = self
            .ctx
            .streams
            .get(Some(ns), stream_name, ReadRevision::Consistent)
            .await?
            .ok_or_else(|| not_found("imagestreamimages", stream_name))?;
        let layers = stream_layers(&self.ctx, &stream).await?;
        let matches: Vec<&String> = layers
            .images
            .keys()
            .filter(|image| digest_or_image_matches(image, id))
            .collect();
        let image_name = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(ApiError::NotFound {
                    resource: gr("imagestreamimage"),
                    name: name.to_string(),
                })
            }
            many => {
                // design.md: several matches are a conflict, not a random pick.
                let list: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::Conflict {
                    qualified: gr("imagestreamimages").to_string(),
                    group: image_api::GROUP.to_string(),
                    kind: "imagestreamimages".to_string(),
                    name: name.to_string(),
                    message: format!(
                        "multiple images match the prefix {id:?}: {}",
                        list.join(", ")
                    ),
                });
            }
        };
        let image = self
            .ctx
            .images
            .get(None, &image_name, ReadRevision::Consistent)
            .await?
            .ok_or_else(|| not_found("images", &image_name))?;
        let mut isi = ImageStreamImage::default();
        isi.set_type_meta("ImageStreamImage", image_api::API_VERSION);
        isi.metadata.name = Some(name.to_string());
        isi.metadata.namespace = Some(ns.to_string());
        isi.metadata.creation_timestamp = image.metadata.creation_timestamp.clone();
        isi.metadata.annotations = stream.metadata.annotations.clone();
        let reference = image.docker_image_reference.clone();
        isi.image = context::image_view(image, reference);
        Ok(Reply::Object {
            code: 200,
            json: to_bytes(&isi).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }
}

#[async_trait]
impl Resource for ImageStreamImages {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.name.clone()) {
            (Verb::Get, Some(name)) => self.get(&req, &name).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        vec![
            ColumnDefinition::new("Updated", "string", "When the image was created"),
            ColumnDefinition::new("Image Reference", "string", "The image's pull spec").wide(),
            ColumnDefinition::new("Image Name", "string", "The image").wide(),
        ]
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let updated = context::age(object.pointer("/metadata/creationTimestamp"));
        vec![
            object
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null),
            Value::from(updated),
            object
                .pointer("/image/dockerImageReference")
                .cloned()
                .unwrap_or(json!("")),
            object
                .pointer("/image/metadata/name")
                .cloned()
                .unwrap_or(json!("")),
        ]
    }
}
