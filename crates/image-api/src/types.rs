//! Wire types of `image.openshift.io/v1`, field for field as openshift/api's `image/v1/types.go`.
//! Go fields without `omitempty` are always serialized (as `null` when unset); with
//! `omitempty`, they are skipped when empty. Every field defaults on input, as Go's decoder
//! leaves missing fields zero.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

/// Go decodes `null` into a zero value; serde's `Default` does the same here.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

macro_rules! object {
    ($t:ty) => {
        impl apimachinery::object::ApiObject for $t {
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn set_type_meta(&mut self, kind: &str, api_version: &str) {
                self.kind = kind.to_string();
                self.api_version = api_version.to_string();
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// ImageStream

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStream {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: ImageStreamSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: ImageStreamStatus,
}
object!(ImageStream);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub lookup_policy: ImageLookupPolicy,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_repository: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<TagReference>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLookupPolicy {
    #[serde(default, deserialize_with = "null_as_default")]
    pub local: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagReference {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub reference: bool,
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub import_policy: TagImportPolicy,
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference_policy: TagReferencePolicy,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub insecure: bool,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub scheduled: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub import_mode: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagReferencePolicy {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
}

pub const REFERENCE_POLICY_SOURCE: &str = "Source";
pub const REFERENCE_POLICY_LOCAL: &str = "Local";
pub const IMPORT_MODE_LEGACY: &str = "Legacy";
pub const IMPORT_MODE_PRESERVE_ORIGINAL: &str = "PreserveOriginal";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub docker_image_repository: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub public_docker_image_repository: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<NamedTagEventList>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag: String,
    #[serde(default)]
    pub items: Option<Vec<TagEvent>>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<TagEventCondition>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    #[serde(default)]
    pub created: Option<Time>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub docker_image_reference: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub generation: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEventCondition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub generation: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    pub items: Vec<ImageStream>,
}

// ---------------------------------------------------------------------------------------------
// Image

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_reference: String,
    /// The legacy `DockerImage` object (`image.openshift.io/1.0`), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<serde_json::Value>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_metadata_version: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_manifest: String,
    #[serde(default)]
    pub docker_image_layers: Option<Vec<ImageLayer>>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub signatures: Vec<ImageSignature>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub docker_image_signatures: Vec<k8s_openapi::ByteString>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_manifest_media_type: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub docker_image_config: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub docker_image_manifests: Vec<ImageManifest>,
}
object!(Image);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub media_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub digest: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub media_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifest_size: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub os: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub variant: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageList {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    pub items: Vec<Image>,
}

// ---------------------------------------------------------------------------------------------
// ImageSignature (stored inside Image.signatures)

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSignature {
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: k8s_openapi::ByteString,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<SignatureCondition>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty_str"
    )]
    pub image_identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_claims: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<SignatureIssuer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_to: Option<SignatureSubject>,
}
object!(ImageSignature);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCondition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
        assert_eq!(v["spec"]["lookupPolicy"], serde_json::json!({"local": false}));
        assert_eq!(v["spec"]["tags"][0]["annotations"], serde_json::Value::Null);
        assert_eq!(v["spec"]["tags"][0]["generation"], serde_json::Value::Null);
        assert_eq!(v["spec"]["tags"][0]["importPolicy"], serde_json::json!({}));
        assert_eq!(v["status"], serde_json::json!({"dockerImageRepository": ""}));
        assert!(v.get("kind").is_none());
    }

    #[test]
    fn nulls_decode_as_zero_values() {
        let is: ImageStream =
            serde_json::from_str(r#"{"metadata":null,"spec":{"tags":null,"dockerImageRepository":null},"status":null}"#)
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
