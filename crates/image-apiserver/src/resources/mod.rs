//! The image resources, one module each, plugged into the generic machinery.

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::GroupResource;
use image_api::limits::{StorageLimit, StreamLimits};

pub mod image;
pub mod imagesignature;
pub mod imagestream;
pub mod imagestreamimage;
pub mod imagestreamimport;
pub mod imagestreammapping;
pub mod imagestreamtag;
pub mod imagetag;
pub mod registries;
pub mod tagview;
pub mod views;

/// Upstream's `imagePolicyConfig`: the integrated registry's names, the import mode tags
/// default to, the allowed registries, and where the limits come from.
#[derive(Clone, Debug)]
pub struct ImagePolicy {
    pub internal: String,
    pub external: String,
    pub import_mode: String,
    /// `imagePolicyConfig.allowedRegistriesForImport`.
    pub whitelist: image_api::whitelist::RegistryWhitelist,
    /// Image and per-stream limits by namespace: the flags standalone (a [`StreamLimits`]),
    /// the namespace's LimitRanges in a cluster (`ClusterReads`).
    pub limits: Arc<dyn LimitSource>,
}

impl Default for ImagePolicy {
    /// No registry names, no allowed-registries list, no limits.
    fn default() -> Self {
        ImagePolicy {
            internal: String::new(),
            external: String::new(),
            import_mode: String::new(),
            whitelist: Default::default(),
            limits: Arc::new(StreamLimits::default()),
        }
    }
}

/// Where a namespace's image limits come from (spec §15.1, §15.2). It answers from memory:
/// the stream strategy consults it, and strategies do no I/O.
pub trait LimitSource: Send + Sync + std::fmt::Debug {
    /// The per-stream limits of `namespace`.
    fn stream_limits(&self, namespace: &str) -> Result<StreamLimits, LimitsError>;
    /// The `openshift.io/Image` maximum of `storage` in `namespace`, if there is one.
    fn image_storage_limit(&self, namespace: &str) -> Option<StorageLimit>;
}

/// Why the limits of a namespace are not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// The LimitRanges have not loaded yet. Upstream answers a Forbidden error (retry after
    /// 1 s) rather than guess that there are none; the strategy reports it like a violation.
    #[error("limitranges is forbidden: the server is still loading limit information")]
    StillLoading,
}

/// Standalone: the flags' stream limits in every namespace, and no image size limit (there
/// are no LimitRanges to say one).
impl LimitSource for StreamLimits {
    fn stream_limits(&self, _namespace: &str) -> Result<StreamLimits, LimitsError> {
        Ok(*self)
    }

    fn image_storage_limit(&self, _namespace: &str) -> Option<StorageLimit> {
        None
    }
}

/// kube's `NewForbidden`: `<resource> "<name>" is forbidden: <reason>`, without the name
/// when there is none.
/// Protobuf for every served kind, with OpenShift's field numbers (`image_api::protobuf`).
pub fn protobuf_codec(
) -> Result<Arc<apiserver::protobuf::ProtobufCodec>, apimachinery::protobuf::ProtoError> {
    let schema = apimachinery::protobuf::Schema::with_inline_fields(
        &[image_api::protobuf::DESCRIPTOR_SET],
        image_api::protobuf::INLINE_FIELDS,
    )?;
    Ok(Arc::new(apiserver::protobuf::ProtobufCodec::new(
        schema,
        image_api::protobuf::message_for_kind,
    )))
}

pub fn forbidden(resource: &GroupResource, name: &str, reason: &str) -> ApiError {
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {reason}")
    } else {
        format!("{resource} {name:?} is forbidden: {reason}")
    };
    ApiError::Forbidden {
        message,
        name: name.to_string(),
        resource: Some(resource.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_limits_apply_in_every_namespace_without_a_size_limit() {
        let flags = StreamLimits {
            image_tags: Some(2),
            images: None,
        };
        assert_eq!(flags.stream_limits("any"), Ok(flags));
        assert_eq!(flags.image_storage_limit("any"), None);
        let policy = ImagePolicy::default();
        assert_eq!(
            policy.limits.stream_limits("ns"),
            Ok(StreamLimits::default())
        );
    }

    #[test]
    fn forbidden_names_the_object_when_there_is_one() {
        let mappings = GroupResource::new(image_api::GROUP, "imagestreammappings");
        let named = forbidden(&mappings, "app", "too big");
        assert_eq!(named.code(), 403);
        assert_eq!(
            named.to_string(),
            "imagestreammappings.image.openshift.io \"app\" is forbidden: too big"
        );
        assert_eq!(
            forbidden(&mappings, "", "too big").to_string(),
            "imagestreammappings.image.openshift.io is forbidden: too big"
        );
    }
}
