//! Wire types of `image.openshift.io/v1`, field for field as openshift/api's `image/v1/types.go`.
//! Go fields without `omitempty` are always serialized (as `null` when unset); with
//! `omitempty`, they are skipped when empty. Every field defaults on input, as Go's decoder
//! leaves missing fields zero.

use std::collections::BTreeMap;

use apimachinery::meta::{ObjectMeta, Time};
use k8s_openapi::api::core::v1::ObjectReference;
use serde::{Deserialize, Serialize};

use crate::serde_util::{is_empty_str, is_false, null_as_default};

// ---------------------------------------------------------------------------------------------
// ImageStream

/// An ImageStream is a named set of tags, each pointing at a container image. spec.tags says what each tag should follow: an image in an external registry (imported with the namespace's pull secrets), or another tag or image of an image stream. status.tags records, per tag, the images it has pointed to, newest first. Anyone who can read a stream may tag its images into their own streams.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStream", "version": "v1"}]))]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStream")]
pub struct ImageStream {
    /// Kind is a string value representing the REST resource this object represents.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the standard object's metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// spec describes the desired state of this stream
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: ImageStreamSpec,
    /// status describes the current state of this stream
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: ImageStreamStatus,
}
crate::serde_util::object!(ImageStream);

/// ImageStreamSpec is the desired state of an image stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamSpec")]
pub struct ImageStreamSpec {
    /// lookupPolicy controls how other resources reference images within this namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub lookup_policy: ImageLookupPolicy,
    /// dockerImageRepository (deprecated) names a repository whose tags this stream imports. Use spec.tags[].from with kind DockerImage instead.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_repository: String,
    /// tags map arbitrary string values to specific image locators
    #[schemars(extend("x-kubernetes-patch-merge-key" = "name", "x-kubernetes-patch-strategy" = "merge"))]
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<TagReference>,
}

/// ImageLookupPolicy controls whether short image names in the namespace resolve to this stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageLookupPolicy")]
pub struct ImageLookupPolicy {
    /// local, when true, lets short image names in this namespace (such as "app" or "app:v1") resolve to this stream's images by ID instead of a remote registry, honoring each tag's referencePolicy.
    #[serde(default, deserialize_with = "null_as_default")]
    pub local: bool,
}

/// TagReference is one spec tag: what it follows and how it is imported and consumed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.TagReference")]
pub struct TagReference {
    /// Name of the tag
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// annotations are copied onto images read through this tag's ImageStreamTag.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub annotations: Option<BTreeMap<String, String>>,
    /// from is what this tag follows: a DockerImage pull spec, or an ImageStreamTag (`<tag>` or `<stream>:<tag>`) or ImageStreamImage (`<stream>@<id>`), optionally in another namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    /// reference, when true, records the DockerImage pull spec as is instead of importing it.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub reference: bool,
    /// generation is the stream generation at which this tag's reference last changed; the server sets it. An importer compares it with the generation recorded in status to decide whether to import again. Setting it to 0 asks for a new import; leaving it unset keeps the stored value.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub generation: Option<i64>,
    /// ImportPolicy is information that controls how images may be imported by the server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub import_policy: TagImportPolicy,
    /// ReferencePolicy defines how other components should consume the image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference_policy: TagReferencePolicy,
}

/// TagImportPolicy controls how images related to this tag will be imported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.TagImportPolicy")]
pub struct TagImportPolicy {
    /// insecure allows imports over plain HTTP or without certificate verification.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub insecure: bool,
    /// scheduled asks for periodic re-import of this tag.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub scheduled: bool,
    /// importMode is Legacy (import one platform of a manifest list) or PreserveOriginal (import the list and every platform).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub import_mode: String,
}

/// TagReferencePolicy chooses which pull spec consumers of a tag receive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "com.github.openshift.api.image.v1.TagReferencePolicy")]
pub struct TagReferencePolicy {
    /// type chooses the pull spec a tag resolves to: `Source` (the default) keeps the image's original location; `Local` points at the integrated registry, which pulls through from the source.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
}

pub const REFERENCE_POLICY_SOURCE: &str = "Source";
pub const REFERENCE_POLICY_LOCAL: &str = "Local";
pub const IMPORT_MODE_LEGACY: &str = "Legacy";
pub const IMPORT_MODE_PRESERVE_ORIGINAL: &str = "PreserveOriginal";

/// ImageStreamStatus contains information about the state of this image stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamStatus")]
pub struct ImageStreamStatus {
    /// dockerImageRepository is where this stream can be pulled from (the integrated registry when one is configured).
    #[serde(default, deserialize_with = "null_as_default")]
    pub docker_image_repository: String,
    /// publicDockerImageRepository is where this stream can be pulled from outside the cluster, if the registry is exposed.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub public_docker_image_repository: String,
    /// tags holds, per tag, the images it has pointed to, newest first: items[0] is the current image.
    #[schemars(extend("x-kubernetes-patch-merge-key" = "tag", "x-kubernetes-patch-strategy" = "merge"))]
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<NamedTagEventList>,
}

/// NamedTagEventList relates a tag to its image history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.NamedTagEventList")]
pub struct NamedTagEventList {
    /// Tag is the tag for which the history is recorded
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag: String,
    /// items are the tag's images, newest first.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub items: Option<Vec<TagEvent>>,
    /// Conditions is an array of conditions that apply to the tag event list.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<TagEventCondition>,
}

/// TagEvent is used by ImageStreamStatus to keep a historical record of images associated with a tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.TagEvent")]
pub struct TagEvent {
    /// Created holds the time the TagEvent was created
    #[serde(default, serialize_with = "apimachinery::time::serialize_option")]
    #[schemars(extend("x-nullable" = true))]
    pub created: Option<Time>,
    /// DockerImageReference is the string that can be used to pull this image
    #[serde(default, deserialize_with = "null_as_default")]
    pub docker_image_reference: String,
    /// Image is the image
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
    /// generation is the spec tag generation that produced this event.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generation: i64,
}

/// TagEventCondition contains condition information for a tag event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.TagEventCondition")]
pub struct TagEventCondition {
    /// Type of tag event condition, currently only ImportSuccess
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Status of the condition, one of True, False, Unknown.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// lastTransitionTime is when the condition last changed status.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "apimachinery::time::serialize_option"
    )]
    pub last_transition_time: Option<Time>,
    /// Reason is a brief machine readable explanation for the condition's last transition.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub reason: String,
    /// Message is a human readable description of the details about last transition, complementing reason.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub message: String,
    /// generation is the spec tag generation this condition is about.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generation: i64,
}

/// ImageStreamList is a list of ImageStream objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamList", "version": "v1"}]))]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamList")]
pub struct ImageStreamList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the standard list's metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    /// Items is a list of imageStreams
    pub items: Vec<ImageStream>,
}

// ---------------------------------------------------------------------------------------------
// Image

/// An Image records one container image: its manifest digest (the name, by convention), pull spec, layers, config metadata and signatures. Images are cluster scoped and mostly managed by the registry and importers; users usually reach them through image stream tags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "Image", "version": "v1"}]))]
#[schemars(rename = "com.github.openshift.api.image.v1.Image")]
pub struct Image {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the standard object's metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// DockerImageReference is the string that can be used to pull this image.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_reference: String,
    /// The legacy `DockerImage` object (`image.openshift.io/1.0`), kept as JSON.
    /// DockerImageMetadata contains metadata about this image
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<serde_json::Value>,
    /// dockerImageMetadataVersion is the version of dockerImageMetadata ("1.0" when empty).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_metadata_version: String,
    /// DockerImageManifest is the raw JSON of the manifest
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_manifest: String,
    /// dockerImageLayers are the image's layers, base first; empty for manifest lists.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub docker_image_layers: Option<Vec<ImageLayer>>,
    /// Signatures holds all signatures of the image.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub signatures: Vec<ImageSignature>,
    /// dockerImageSignatures are schema 1 manifest signatures, as opaque blobs.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub docker_image_signatures: Vec<k8s_openapi::ByteString>,
    /// DockerImageManifestMediaType specifies the mediaType of manifest. This is a part of manifest schema v2.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_manifest_media_type: String,
    /// dockerImageConfig is the raw image config JSON (schema 2 and OCI images).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_config: String,
    /// dockerImageManifests lists the per-platform manifests of a manifest list or OCI index; such images have no layers of their own.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub docker_image_manifests: Vec<ImageManifest>,
}
crate::serde_util::object!(Image);

/// ImageLayer represents a single layer of the image. Some images may have multiple layers. Some may have none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageLayer")]
pub struct ImageLayer {
    /// Name of the layer as defined by the underlying store.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Size of the layer in bytes as defined by the underlying store.
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: i64,
    /// MediaType of the referenced object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub media_type: String,
}

/// ImageManifest describes one platform manifest of a manifest list; its digest names an Image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageManifest")]
pub struct ImageManifest {
    /// Digest is the unique identifier for the manifest. It refers to an Image object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub digest: String,
    /// mediaType is the manifest's media type (OCI, Docker schema 2 or schema 1).
    #[serde(default, deserialize_with = "null_as_default")]
    pub media_type: String,
    /// ManifestSize represents the size of the raw object contents, in bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifest_size: i64,
    /// Architecture specifies the supported CPU architecture, for example `amd64` or `ppc64le`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub architecture: String,
    /// OS specifies the operating system, for example `linux`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub os: String,
    /// variant distinguishes CPU variants, such as v8 for arm64.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub variant: String,
}

/// ImageList is a list of Image objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageList", "version": "v1"}]))]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageList")]
pub struct ImageList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the standard list's metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    /// Items is a list of images
    pub items: Vec<Image>,
}

// ---------------------------------------------------------------------------------------------
// ImageSignature (stored inside Image.signatures)

/// An ImageSignature is a signature of an image, stored inside the Image. type and content are given by the signer; the other fields describe what verification found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageSignature", "version": "v1"}]))]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageSignature")]
pub struct ImageSignature {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the standard object's metadata.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// Required: Describes a type of stored blob.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Required: An opaque binary string which is an image's signature.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(with = "String")]
    pub content: k8s_openapi::ByteString,
    /// Conditions represent the latest available observations of a signature's current state.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<SignatureCondition>,
    /// imageIdentity names the signed image in human terms, such as a product and version or a pull spec.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub image_identity: String,
    /// Contains claims from the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_claims: Option<BTreeMap<String, String>>,
    /// If specified, it is the time of signature's creation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "apimachinery::time::serialize_option"
    )]
    pub created: Option<Time>,
    /// issuedBy describes who issued the signing certificate or key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<SignatureIssuer>,
    /// issuedTo describes whom the signing certificate or key was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_to: Option<SignatureSubject>,
}
crate::serde_util::object!(ImageSignature);

/// SignatureCondition describes an image signature condition of particular kind at particular probe time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.SignatureCondition")]
pub struct SignatureCondition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "apimachinery::time::serialize_option"
    )]
    pub last_probe_time: Option<Time>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "apimachinery::time::serialize_option"
    )]
    pub last_transition_time: Option<Time>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub message: String,
}

/// SignatureIssuer holds information about an issuer of signing certificate or key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.SignatureIssuer")]
pub struct SignatureIssuer {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub organization: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub common_name: String,
}

/// SignatureSubject holds information about a person or entity who created the signature.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.SignatureSubject")]
pub struct SignatureSubject {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub organization: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub common_name: String,
    #[serde(
        rename = "publicKeyID",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub public_key_id: String,
}

// ---------------------------------------------------------------------------------------------
// Defaulting (v1 `defaults.go`): applied to request bodies and to objects read from storage.

/// Fills `referencePolicy.type` and `importPolicy.importMode` of a tag reference.
pub fn default_tag_reference(tag: &mut TagReference, import_mode: &str) {
    if tag.reference_policy.type_.is_empty() {
        tag.reference_policy.type_ = REFERENCE_POLICY_SOURCE.to_string();
    }
    if tag.import_policy.import_mode.is_empty() {
        tag.import_policy.import_mode = import_mode.to_string();
    }
}

impl ImageStream {
    pub fn apply_defaults(&mut self, import_mode: &str) {
        for tag in &mut self.spec.tags {
            default_tag_reference(tag, import_mode);
        }
    }

    pub fn spec_tag(&self, name: &str) -> Option<&TagReference> {
        self.spec.tags.iter().find(|t| t.name == name)
    }

    pub fn status_tag(&self, name: &str) -> Option<&NamedTagEventList> {
        self.status.tags.iter().find(|t| t.tag == name)
    }
}

impl Image {
    pub fn apply_defaults(&mut self) {
        if self.docker_image_metadata_version.is_empty() {
            self.docker_image_metadata_version = "1.0".to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_stream_round_trip_keeps_go_emptiness() {
        let is: ImageStream = serde_json::from_str(
            r#"{"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"x"}}]}}"#,
        )
        .expect("decode");
        let v = serde_json::to_value(&is).expect("encode");
        assert_eq!(
            v["spec"]["lookupPolicy"],
            serde_json::json!({"local": false})
        );
        assert_eq!(v["spec"]["tags"][0]["annotations"], serde_json::Value::Null);
        assert_eq!(v["spec"]["tags"][0]["generation"], serde_json::Value::Null);
        assert_eq!(v["spec"]["tags"][0]["importPolicy"], serde_json::json!({}));
        assert_eq!(
            v["status"],
            serde_json::json!({"dockerImageRepository": ""})
        );
        assert!(v.get("kind").is_none());
    }

    #[test]
    fn nulls_decode_as_zero_values() {
        let is: ImageStream = serde_json::from_str(
            r#"{"metadata":null,"spec":{"tags":null,"dockerImageRepository":null},"status":null}"#,
        )
        .expect("decode");
        assert!(is.spec.tags.is_empty());
        let img: Image = serde_json::from_str(
            r#"{"metadata":{"name":"sha256:x"},"dockerImageLayers":null,"dockerImageReference":"r"}"#,
        )
        .expect("decode");
        let v = serde_json::to_value(&img).expect("encode");
        assert_eq!(v["dockerImageLayers"], serde_json::Value::Null);
    }

    #[test]
    fn defaults_fill_policies() {
        let mut is = ImageStream {
            spec: ImageStreamSpec {
                tags: vec![TagReference::default()],
                ..Default::default()
            },
            ..Default::default()
        };
        is.apply_defaults(IMPORT_MODE_LEGACY);
        assert_eq!(is.spec.tags[0].reference_policy.type_, "Source");
        assert_eq!(is.spec.tags[0].import_policy.import_mode, "Legacy");
    }
}
