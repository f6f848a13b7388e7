//! The compiled schema of the meta/v1 and runtime messages: build.rs runs protoc over
//! `proto/k8s.io/apimachinery/...` at build time.

/// A serialized `google.protobuf.FileDescriptorSet` of `k8s.io.apimachinery.pkg.runtime`
/// (TypeMeta, Unknown, RawExtension) and `k8s.io.apimachinery.pkg.apis.meta.v1` (ObjectMeta,
/// ListMeta, Status, WatchEvent, DeleteOptions, PartialObjectMetadata and what they use), with
/// upstream's field numbers.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/apimachinery.pb"));

/// The messages of a serialized descriptor set whose fields are not declared in number order.
/// gogo-protobuf writes fields in number order; declaring them so keeps a `.proto` file easy
/// to check against the wire, which the tests of every crate with `.proto` files hold to.
pub fn fields_out_of_number_order(set: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(set)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| &file.message_type)
        .filter(|message| {
            let numbers: Vec<i32> = message.field.iter().map(|f| f.number()).collect();
            numbers.windows(2).any(|pair| pair[0] > pair[1])
        })
        .map(|message| message.name().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::DESCRIPTOR_SET;
    use prost::Message;
    use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

    const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
    const RUNTIME: &str = "k8s.io.apimachinery.pkg.runtime";

    fn descriptors() -> FileDescriptorSet {
        FileDescriptorSet::decode(DESCRIPTOR_SET).expect("descriptor set")
    }

    fn message<'a>(set: &'a FileDescriptorSet, package: &str, name: &str) -> &'a DescriptorProto {
        set.file
            .iter()
            .filter(|f| f.package() == package)
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{package}.{name} is not in the descriptor set"))
    }

    /// (name, number, type name) of each field, in declaration order.
    fn fields(message: &DescriptorProto) -> Vec<(&str, i32, &str)> {
        message.field.iter().map(summary).collect()
    }

    fn summary(field: &FieldDescriptorProto) -> (&str, i32, &str) {
        (field.name(), field.number(), field.type_name())
    }

    #[test]
    fn the_set_holds_both_files_under_upstream_paths() {
        let set = descriptors();
        let files: Vec<(&str, &str)> = set.file.iter().map(|f| (f.name(), f.package())).collect();
        assert_eq!(
            files,
            [
                ("k8s.io/apimachinery/pkg/runtime/generated.proto", RUNTIME),
                ("k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto", META),
            ]
        );
    }

    /// Spot checks against upstream's numbering, where a slip would still round-trip with
    /// ourselves but not with client-go.
    #[test]
    fn field_numbers_are_upstreams() {
        let set = descriptors();
        assert_eq!(
            fields(message(&set, RUNTIME, "Unknown")),
            [
                ("typeMeta", 1, ".k8s.io.apimachinery.pkg.runtime.TypeMeta"),
                ("raw", 2, ""),
                ("contentEncoding", 3, ""),
                ("contentType", 4, ""),
            ]
        );
        assert_eq!(
            fields(message(&set, RUNTIME, "TypeMeta")),
            [("apiVersion", 1, ""), ("kind", 2, "")]
        );
        assert_eq!(
            fields(message(&set, META, "WatchEvent")),
            [
                ("type", 1, ""),
                ("object", 2, ".k8s.io.apimachinery.pkg.runtime.RawExtension"),
            ]
        );
        let object_meta = fields(message(&set, META, "ObjectMeta"));
        assert_eq!(object_meta.len(), 15);
        let managed = ".k8s.io.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry";
        assert!(object_meta.contains(&("managedFields", 17, managed)));
        let time = ".k8s.io.apimachinery.pkg.apis.meta.v1.Time";
        assert!(object_meta.contains(&("creationTimestamp", 8, time)));
        let details = fields(message(&set, META, "StatusDetails"));
        assert!(details.contains(&("uid", 6, "")));
        assert!(details.contains(&("retryAfterSeconds", 5, "")));
        let owner = fields(message(&set, META, "OwnerReference"));
        assert_eq!(owner.first(), Some(&("kind", 1, "")));
        assert!(owner.contains(&("apiVersion", 5, "")));
    }

    #[test]
    fn fields_are_declared_in_number_order() {
        let out_of_order = super::fields_out_of_number_order(DESCRIPTOR_SET).expect("decode");
        assert!(out_of_order.is_empty(), "{out_of_order:?}");
    }
}
