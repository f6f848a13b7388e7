//! The image resources, one module each, plugged into the generic machinery.

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
/// default to, the allowed registries and the per-stream limits.
#[derive(Clone, Debug, Default)]
pub struct ImagePolicy {
    pub internal: String,
    pub external: String,
    pub import_mode: String,
    /// `imagePolicyConfig.allowedRegistriesForImport`.
    pub whitelist: image_api::whitelist::RegistryWhitelist,
    /// Per-stream limits (upstream: LimitRanges of type openshift.io/ImageStream).
    pub limits: image_api::limits::StreamLimits,
}
