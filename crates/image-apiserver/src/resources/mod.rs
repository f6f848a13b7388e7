//! The image resources, one module each, plugged into the generic machinery.

pub mod context;
pub mod image;
pub mod imagesignature;
pub mod imagestream;
pub mod imagestreammapping;
pub mod imagestreamtag;
pub mod imagetag;
pub mod layers;

/// The integrated registry's names and the import mode tags default to (imagePolicyConfig).
#[derive(Clone, Debug, Default)]
pub struct RegistryHosts {
    pub internal: String,
    pub external: String,
    pub import_mode: String,
    /// `imagePolicyConfig.allowedRegistriesForImport`.
    pub whitelist: image_api::whitelist::RegistryWhitelist,
    /// Per-stream limits (upstream: LimitRanges of type openshift.io/ImageStream).
    pub limits: image_api::limits::StreamLimits,
}
