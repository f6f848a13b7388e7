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

#[cfg(test)]
mod tests {
    use super::*;
    use image_api::metadata::sha256_digest;
    use serde_json::json;

    /// A schema 2 image whose name is its manifest's digest, as pushes create them.
    fn pushed() -> Image {
        let config = json!({"architecture": "amd64", "os": "linux",
            "config": {"Env": ["A=1"]}, "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string();
        let layer = format!("sha256:{}", "1".repeat(64));
        let manifest = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(), "digest": sha256_digest(config.as_bytes())},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 10, "digest": layer}]})
        .to_string();
        let mut image = Image::default();
        image.metadata.name = Some(sha256_digest(manifest.as_bytes()));
        image.docker_image_reference = "quay.io/a/b@sha256:x".into();
        image.docker_image_manifest = manifest;
        image.docker_image_config = config;
        image
    }

    #[test]
    fn create_extracts_metadata_from_manifest_and_config() {
        let strategy = <ImageStrategy as Default>::default();
        let mut image = pushed();
        strategy.default(&mut image);
        strategy.prepare_for_create(&mut image);
        let layers = image.docker_image_layers.clone().unwrap_or_default();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].name, format!("sha256:{}", "1".repeat(64)));
        assert_eq!(
            image.docker_image_manifest_media_type,
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            image
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("image.openshift.io/dockerLayersOrder"))
                .map(String::as_str),
            Some("ascending")
        );
        let served = serde_json::to_value(&image).expect("json");
        assert_eq!(served["dockerImageMetadata"]["Architecture"], "amd64");
        assert_eq!(
            served["dockerImageMetadata"]["Config"]["Env"],
            json!(["A=1"])
        );
    }

    #[test]
    fn an_update_cannot_change_what_was_extracted() {
        let strategy = <ImageStrategy as Default>::default();
        let mut old = pushed();
        strategy.prepare_for_create(&mut old);
        let mut new = old.clone();
        new.docker_image_layers = Some(Vec::new());
        new.docker_image_metadata_version = "9.9".into();
        new.docker_image_reference = "quay.io/a/c@sha256:x".into();
        strategy.prepare_for_update(&mut new, &old);
        assert_eq!(new.docker_image_layers, old.docker_image_layers);
        assert_eq!(
            new.docker_image_metadata_version,
            old.docker_image_metadata_version
        );
        assert_eq!(
            new.docker_image_reference, "quay.io/a/c@sha256:x",
            "the reference is not immutable"
        );
    }

    #[test]
    fn image_names_are_checked_as_prefixes_too() {
        let strategy = <ImageStrategy as Default>::default();
        assert!(strategy.validate_name("sha256:abc", false).is_empty());
        assert!(!strategy.validate_name("a/b", false).is_empty());
        assert!(!strategy.allow_unconditional_update());
    }
}
