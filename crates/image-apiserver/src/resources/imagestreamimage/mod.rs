//! `imagestreamimages` (spec §11): one image of a stream's history, by digest or unique
//! prefix, with the stream's annotations.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::object::ApiObject;
use apimachinery::table::ColumnDefinition;
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::reference::digest_or_image_matches;
use image_api::ImageStreamImage;
use serde_json::{json, Value};

use crate::resources::imagestream::layers::stream_layers;
use crate::resources::registries::Registries;
use crate::resources::views::{self, gr, not_found};

pub fn info() -> ResourceInfo {
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
    registries: Arc<Registries>,
}

impl ImageStreamImages {
    pub fn new(registries: Arc<Registries>) -> Self {
        ImageStreamImages {
            info: info(),
            registries,
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
        self.registries.require_images_loaded()?;
        let ns = req.namespace.as_deref().unwrap_or("");
        let at = self.registries.view_read().await?;
        let stream = self
            .registries
            .view_stream(ns, stream_name, "imagestreamimages", at)
            .await?;
        let layers = stream_layers(&self.registries, &stream).await?;
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
            .registries
            .images
            .get_image(&image_name, at)
            .await?
            .ok_or_else(|| not_found("images", &image_name))?;
        let mut isi = ImageStreamImage::default();
        isi.set_type_meta("ImageStreamImage", image_api::API_VERSION);
        isi.metadata.name = Some(name.to_string());
        isi.metadata.namespace = Some(ns.to_string());
        isi.metadata.creation_timestamp = image.metadata.creation_timestamp.clone();
        isi.metadata.annotations = stream.metadata.annotations.clone();
        let reference = image.docker_image_reference.clone();
        isi.image = views::image_view(image, reference);
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
        let updated = views::age(object.pointer("/metadata/creationTimestamp"));
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
