//! `imagestreams` as served: the stored resource (the generic registry) plus its computed
//! subresources `layers` (spec §8) and `secrets` (§7).

use std::sync::Arc;

use apimachinery::discovery::{ResourceInfo, SubresourceInfo};
use apimachinery::errors::ApiError;
use apimachinery::table::ColumnDefinition;
use apiserver::registry::Registry;
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use serde_json::{json, Value};

use super::layers::stream_layers;
use super::strategy::ImageStreamStrategy;
use crate::resources::registries::Registries;

/// The image streams resource with every subresource.
pub struct ImageStreams {
    info: ResourceInfo,
    /// Serves the stored resource and its `/status`.
    stored: Arc<Registry<ImageStreamStrategy>>,
    registries: Arc<Registries>,
}

/// Discovery of image streams with every subresource.
pub fn streams_info() -> ResourceInfo {
    let mut info = super::info();
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
    pub fn new(stored: Arc<Registry<ImageStreamStrategy>>, registries: Arc<Registries>) -> Self {
        ImageStreams {
            info: streams_info(),
            stored,
            registries,
        }
    }
}

impl ImageStreams {
    async fn layers(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        self.registries.require_images_loaded()?;
        let ns = req.namespace.as_deref().unwrap_or("");
        let stream = self
            .registries
            .view_stream(ns, name, "imagestreams")
            .await?;
        let layers = stream_layers(&self.registries, &stream).await?;
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
            _ => self.stored.handle(req).await,
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        self.stored.table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        self.stored.table_row(object)
    }
}
