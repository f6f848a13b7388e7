//! The protobuf schema of the image API (`application/vnd.kubernetes.protobuf`): every message
//! of openshift/api's image/v1 with upstream's field numbers, the core/v1 messages they use,
//! and the meta/v1 and runtime messages those import. build.rs compiles `proto/` (and
//! `../apimachinery/proto`) at build time; a generic transcoder
//! (`apimachinery::protobuf::Schema`) turns the served JSON into these messages and back.

/// A serialized `google.protobuf.FileDescriptorSet` of `github.com.openshift.api.image.v1`,
/// `k8s.io.api.core.v1` (references, Secret, SecretList) and the meta/v1 and runtime files they
/// import. It repeats the meta/v1 and runtime files of `apimachinery`'s set, identically.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/image.pb"));

/// Every kind the server answers with (or accepts) under image.openshift.io/v1.
/// Embedded Go structs that JSON inlines (`json:",inline"`) but the wire nests.
pub const INLINE_FIELDS: &[(&str, &str)] = &[
    (
        "github.com.openshift.api.image.v1.SignatureIssuer",
        "signatureGenericEntity",
    ),
    (
        "github.com.openshift.api.image.v1.SignatureSubject",
        "signatureGenericEntity",
    ),
];

pub const KINDS: &[&str] = &[
    "Image",
    "ImageList",
    "ImageSignature",
    "ImageStream",
    "ImageStreamList",
    "ImageStreamTag",
    "ImageStreamTagList",
    "ImageTag",
    "ImageTagList",
    "ImageStreamImage",
    "ImageStreamMapping",
    "ImageStreamImport",
    "ImageStreamLayers",
    "SecretList",
];

/// The full name of the message (no leading dot) an image.openshift.io/v1 `kind` is written
/// as, or None for kinds the group does not serve. SecretList (the imagestreams/secrets
/// answer) is the group's own kind, with core/v1's wire form.
pub fn message_for_kind(kind: &str) -> Option<&'static str> {
    let message = match kind {
        "Image" => "github.com.openshift.api.image.v1.Image",
        "ImageList" => "github.com.openshift.api.image.v1.ImageList",
        "ImageSignature" => "github.com.openshift.api.image.v1.ImageSignature",
        "ImageStream" => "github.com.openshift.api.image.v1.ImageStream",
        "ImageStreamList" => "github.com.openshift.api.image.v1.ImageStreamList",
        "ImageStreamTag" => "github.com.openshift.api.image.v1.ImageStreamTag",
        "ImageStreamTagList" => "github.com.openshift.api.image.v1.ImageStreamTagList",
        "ImageTag" => "github.com.openshift.api.image.v1.ImageTag",
        "ImageTagList" => "github.com.openshift.api.image.v1.ImageTagList",
        "ImageStreamImage" => "github.com.openshift.api.image.v1.ImageStreamImage",
        "ImageStreamMapping" => "github.com.openshift.api.image.v1.ImageStreamMapping",
        "ImageStreamImport" => "github.com.openshift.api.image.v1.ImageStreamImport",
        "ImageStreamLayers" => "github.com.openshift.api.image.v1.ImageStreamLayers",
        "SecretList" => "github.com.openshift.api.image.v1.SecretList",
        _ => return None,
    };
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_types::{DescriptorProto, FileDescriptorSet};

    const IMAGE: &str = "github.com.openshift.api.image.v1";

    fn descriptors() -> FileDescriptorSet {
        FileDescriptorSet::decode(DESCRIPTOR_SET).expect("descriptor set")
    }

    fn find<'a>(set: &'a FileDescriptorSet, full_name: &str) -> Option<&'a DescriptorProto> {
        let (package, name) = full_name.rsplit_once('.')?;
        set.file
            .iter()
            .filter(|f| f.package() == package)
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == name)
    }

    /// The number of a field of an image/v1 message.
    fn number(set: &FileDescriptorSet, message: &str, field: &str) -> Option<i32> {
        let descriptor = find(set, &format!("{IMAGE}.{message}"))?;
        let found = descriptor.field.iter().find(|f| f.name() == field)?;
        Some(found.number())
    }

    #[test]
    fn signature_entities_are_inline_in_json_and_nested_on_the_wire() {
        use apimachinery::protobuf::Schema;
        let schema = Schema::with_inline_fields(&[DESCRIPTOR_SET], INLINE_FIELDS).expect("schema");
        let message = "github.com.openshift.api.image.v1.ImageSignature";
        let signature = serde_json::json!({
            "metadata": {"name": "sha256:abc@0123"},
            "type": "atomic",
            "content": "c2lnbmVk",
            "issuedBy": {"organization": "Red Hat", "commonName": "release key"},
            "issuedTo": {"organization": "acme", "commonName": "app", "publicKeyID": "k1"},
        });
        let wire = schema.encode(message, &signature).expect("encode");
        assert_eq!(schema.decode(message, &wire).expect("decode"), signature);
        let plain = Schema::from_descriptor_sets(&[DESCRIPTOR_SET]).expect("plain");
        let nested = plain.decode(message, &wire).expect("nested");
        assert_eq!(
            nested["issuedBy"]["signatureGenericEntity"]["organization"],
            "Red Hat"
        );
        assert_eq!(nested["issuedTo"]["publicKeyID"], "k1");
    }

    #[test]
    fn every_served_kind_has_a_compiled_message() {
        let set = descriptors();
        for kind in KINDS {
            let Some(message) = message_for_kind(kind) else {
                panic!("{kind} has no message");
            };
            assert!(find(&set, message).is_some(), "{message} is not compiled");
            assert_eq!(message.rsplit_once('.'), Some((IMAGE, *kind)));
        }
        assert_eq!(message_for_kind("Status"), None);
        assert_eq!(message_for_kind("imagestream"), None);
    }

    /// The set stands alone: the transcoder needs the envelope, Status and the core/v1 types
    /// from it without apimachinery's set.
    #[test]
    fn imports_are_included() {
        let set = descriptors();
        for message in [
            "k8s.io.apimachinery.pkg.runtime.Unknown",
            "k8s.io.apimachinery.pkg.apis.meta.v1.Status",
            "k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent",
            "k8s.io.api.core.v1.ObjectReference",
            "k8s.io.api.core.v1.Secret",
        ] {
            assert!(find(&set, message).is_some(), "{message} is missing");
        }
    }

    /// Upstream numbers its fields in Go declaration history, not alphabetically nor densely;
    /// these are the ones a slip would most likely get wrong.
    #[test]
    fn field_numbers_are_upstreams() {
        let set = descriptors();
        let cases = [
            ("ImageStreamSpec", "lookupPolicy", 3),
            ("ImageStreamSpec", "dockerImageRepository", 1),
            ("ImageStreamStatus", "publicDockerImageRepository", 3),
            ("ImageLookupPolicy", "local", 3),
            ("ImageStreamTag", "lookupPolicy", 6),
            ("ImageStreamTag", "image", 5),
            ("ImageImportSpec", "referencePolicy", 5),
            ("ImageImportSpec", "includeManifest", 4),
            ("RepositoryImportSpec", "referencePolicy", 4),
            ("ImageBlobReferences", "imageMissing", 3),
            ("Image", "dockerImageManifests", 11),
            ("ImageManifest", "os", 5),
            ("TagReference", "referencePolicy", 7),
            ("TagEvent", "generation", 4),
            ("SignatureSubject", "publicKeyID", 2),
        ];
        for (message, field, want) in cases {
            let got = number(&set, message, field);
            assert_eq!(got, Some(want), "{message}.{field}");
        }
    }

    #[test]
    fn fields_are_declared_in_number_order() {
        let out_of_order =
            apimachinery::protobuf::fields_out_of_number_order(DESCRIPTOR_SET).expect("decode");
        assert!(out_of_order.is_empty(), "{out_of_order:?}");
    }
}
