//! `images` (spec §3): cluster-scoped, stored, with metadata extracted from the manifest and the
//! immutable parts of an image kept on update.

use apimachinery::discovery::ResourceInfo;
use apimachinery::field::FieldError;
use apimachinery::table::ColumnDefinition;
use apiserver::strategy::{Strategy, StrategyContext};
use async_trait::async_trait;
use image_api::metadata;
use image_api::validation::{image_name_errors, validate_image_fields};
use image_api::Image;
use serde_json::Value;

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: "images",
        singular: "image",
        kind: "Image",
        namespaced: false,
        verbs: &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        short_names: &[],
        categories: &[],
        stored: true,
        subresources: vec![],
    }
}

pub struct ImageStrategy {
    info: ResourceInfo,
}

impl Default for ImageStrategy {
    fn default() -> Self {
        ImageStrategy { info: info() }
    }
}

fn extract_metadata(image: &mut Image) {
    let now = serde_json::to_value(apiserver::registry::now())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if let Err(e) = metadata::extract(image, &now) {
        // Upstream logs and ignores extraction errors: the image is stored as given.
        tracing::warn!(image = image.metadata.name.as_deref().unwrap_or(""), error = %e, "image metadata extraction failed");
    }
    metadata::finish(image);
}

#[async_trait]
impl Strategy for ImageStrategy {
    type Object = Image;

    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn default(&self, obj: &mut Image) {
        obj.apply_defaults();
    }

    fn validate_name(&self, name: &str, prefix: bool) -> Vec<String> {
        image_name_errors(name, prefix)
    }

    fn prepare_for_create(&self, obj: &mut Image) {
        extract_metadata(obj);
    }

    async fn validate_create(
        &self,
        _ctx: &StrategyContext<'_, Image>,
        obj: &mut Image,
    ) -> Vec<FieldError> {
        validate_image_fields(obj)
    }

    fn prepare_for_update(&self, new: &mut Image, old: &Image) {
        metadata::restore_immutable(new, old);
        extract_metadata(new);
    }

    async fn validate_update(
        &self,
        _ctx: &StrategyContext<'_, Image>,
        new: &mut Image,
        _old: &Image,
    ) -> Vec<FieldError> {
        validate_image_fields(new)
    }

    /// Upstream reports the Image GC policy as unsupported: deletes never add finalizers.
    /// Upstream's image strategy requires a resourceVersion on update.
    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn garbage_collection(&self) -> bool {
        false
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        vec![ColumnDefinition::new(
            "Image Reference",
            "string",
            "The string that can be used to pull this image",
        )]
    }

    fn table_cells(&self, obj: &Image) -> Vec<Value> {
        vec![Value::from(obj.docker_image_reference.clone())]
    }

    fn list_merge_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[("metadata.ownerReferences", "uid")]
    }
}
