//! The virtual resources' types: views computed from image streams and images
//! (ImageStreamTag, ImageTag, ImageStreamImage, ImageStreamMapping, ImageStreamLayers).

use std::collections::BTreeMap;

use apimachinery::meta::ObjectMeta;
use k8s_openapi::api::core::v1::{LocalObjectReference, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use serde::{Deserialize, Serialize};

use crate::{
    Image, ImageLookupPolicy, NamedTagEventList, TagEventCondition, TagImportPolicy, TagReference,
    TagReferencePolicy,
};

use crate::serde_util::{is_empty_str, null_as_default};

/// An ImageStreamTag is one tag of an image stream seen as an object: the tag's spec, its
/// current image, and the stream's lookup policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamTag")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamTag", "version": "v1"}]))]
pub struct ImageStreamTag {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata of the tag: the stream's namespace, uid, resourceVersion and labels, and the
    /// spec tag's annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// tag is the spec tag, if there is one.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub tag: Option<TagReference>,
    /// generation is the spec tag generation of the current image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generation: i64,
    /// lookupPolicy is the stream's.
    #[serde(default, deserialize_with = "null_as_default")]
    pub lookup_policy: ImageLookupPolicy,
    /// conditions are the tag's import conditions.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<TagEventCondition>,
    /// image is the tag's current image, with the reference its tag resolves to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Image,
}
crate::serde_util::object!(ImageStreamTag);

/// A list of ImageStreamTags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamTagList")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamTagList", "version": "v1"}]))]
pub struct ImageStreamTagList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    pub metadata: ListMeta,
    pub items: Vec<ImageStreamTag>,
}

/// An ImageTag is the full view of one tag: its spec, its whole history, and its current image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageTag")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageTag", "version": "v1"}]))]
pub struct ImageTag {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the stream's, named `<stream>:<tag>`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// spec is the spec tag; null removes it on update.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub spec: Option<TagReference>,
    /// status is the tag's history and conditions.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub status: Option<NamedTagEventList>,
    /// image is the current image (never in lists).
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub image: Option<Image>,
}
crate::serde_util::object!(ImageTag);

/// A list of ImageTags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageTagList")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageTagList", "version": "v1"}]))]
pub struct ImageTagList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    pub metadata: ListMeta,
    pub items: Vec<ImageTag>,
}

/// An ImageStreamImage is an image of a stream's history, addressed as `<stream>@<id>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamImage")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamImage", "version": "v1"}]))]
pub struct ImageStreamImage {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata: the requested name, the stream's annotations, the image's creation time.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// image is the image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Image,
}
crate::serde_util::object!(ImageStreamImage);

/// An ImageStreamMapping records that an image was pushed to a stream's tag (the registry posts
/// one after each push).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamMapping")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamMapping", "version": "v1"}]))]
pub struct ImageStreamMapping {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata names the stream.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// image is the pushed image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Image,
    /// tag is the tag the image goes to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag: String,
}
crate::serde_util::object!(ImageStreamMapping);

/// ImageStreamLayers lists the blobs a stream's images reference (what a registry may serve
/// from the stream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamLayers")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamLayers", "version": "v1"}]))]
pub struct ImageStreamLayers {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata is the stream's.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// blobs maps each blob digest to its size and media type.
    pub blobs: BTreeMap<String, ImageLayerData>,
    /// images maps each image of the stream's history to its blobs.
    pub images: BTreeMap<String, ImageBlobReferences>,
}
crate::serde_util::object!(ImageStreamLayers);

/// The size and media type of a blob.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageLayerData")]
pub struct ImageLayerData {
    /// size in bytes, null when unknown (manifests and configs).
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub size: Option<i64>,
    /// mediaType of the blob.
    #[serde(default, deserialize_with = "null_as_default")]
    pub media_type: String,
}

/// The blobs one image references.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageBlobReferences")]
pub struct ImageBlobReferences {
    /// imageMissing is true when the stream refers to an image that does not exist.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image_missing: bool,
    /// layers are the layer digests, base first.
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub layers: Option<Vec<String>>,
    /// config is the config blob's digest (schema 2 and OCI images).
    #[serde(default)]
    #[schemars(extend("x-nullable" = true))]
    pub config: Option<String>,
    /// manifests are the sub-manifests of a manifest list.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub manifests: Vec<String>,
}

/// An ImageStreamImport asks the server to look images up in container registries and, when
/// `spec.import` is true, to record them in the stream named by `metadata.name`. It is never
/// stored: the answer carries the result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamImport")]
#[schemars(extend("x-kubernetes-group-version-kind" = [{"group": "image.openshift.io", "kind": "ImageStreamImport", "version": "v1"}]))]
pub struct ImageStreamImport {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    /// metadata names the stream; resourceVersion and uid, when set, must match it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    /// spec says what to import.
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: ImageStreamImportSpec,
    /// status is the result, filled by the server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: ImageStreamImportStatus,
}
crate::serde_util::object!(ImageStreamImport);

/// What an ImageStreamImport imports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamImportSpec")]
pub struct ImageStreamImportSpec {
    /// import, when true, records the results in the stream; false only previews them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub import: bool,
    /// repository imports the tags of a whole repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportSpec>,
    /// images are single images to import.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub images: Vec<ImageImportSpec>,
}

/// The result of an ImageStreamImport.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageStreamImportStatus")]
pub struct ImageStreamImportStatus {
    /// import is the stream as written, when spec.import was true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<Box<crate::ImageStream>>,
    /// repository is the result of the repository import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportStatus>,
    /// images holds one result per spec.images entry, in the same order.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub images: Vec<ImageImportStatus>,
}

/// A repository to import every tag of (up to the server's limit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.RepositoryImportSpec")]
pub struct RepositoryImportSpec {
    /// from is a DockerImage repository, without tag or digest.
    #[serde(default, deserialize_with = "null_as_default")]
    pub from: ObjectReference,
    /// importPolicy applies to every imported tag.
    #[serde(default, deserialize_with = "null_as_default")]
    pub import_policy: TagImportPolicy,
    /// referencePolicy applies to every imported tag.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference_policy: TagReferencePolicy,
    /// includeManifest keeps the raw manifest and config in the answer.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "crate::serde_util::is_false"
    )]
    pub include_manifest: bool,
}

/// The result of a repository import.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.RepositoryImportStatus")]
pub struct RepositoryImportStatus {
    /// status is the result of the repository as a whole.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: Status,
    /// images holds one result per imported tag, in import order.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub images: Vec<ImageImportStatus>,
    /// additionalTags are the tags left out by the server's limit.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_tags: Vec<String>,
}

/// One image to import.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageImportSpec")]
pub struct ImageImportSpec {
    /// from is a DockerImage reference with a tag or digest.
    #[serde(default, deserialize_with = "null_as_default")]
    pub from: ObjectReference,
    /// to is the stream tag the image goes to; without it the image is only looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<LocalObjectReference>,
    /// importPolicy controls how the image is imported.
    #[serde(default, deserialize_with = "null_as_default")]
    pub import_policy: TagImportPolicy,
    /// referencePolicy is given to the tag when it has none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference_policy: TagReferencePolicy,
    /// includeManifest keeps the raw manifest and config in the answer.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "crate::serde_util::is_false"
    )]
    pub include_manifest: bool,
}

/// The result of importing one image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "com.github.openshift.api.image.v1.ImageImportStatus")]
pub struct ImageImportStatus {
    /// status is Success, or a Failure with the code, reason and message of spec §13.8.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: Status,
    /// image is the imported image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// tag is the imported tag (empty for imports by digest).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub tag: String,
    /// manifests are the platform images of a manifest list (PreserveOriginal).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub manifests: Vec<Image>,
}
