//! The OpenAPI documents of image.openshift.io/v1, generated from the Rust types (schemars,
//! with k8s-openapi's schemas for the meta types) and served at /openapi/v2 and /openapi/v3.
//! The same documents are checked into `api/`; a test fails when they drift
//! (`hack/gen-openapi` rewrites them).

use apiserver::http::OpenApi;
use apiserver::openapi::{build, SchemaResource};
use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status};
use serde_json::{json, Map, Value};

const PREFIX: &str = "com.github.openshift.api.image.v1";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

fn definitions() -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<image_api::ImageStream>();
    generator.subschema_for::<image_api::ImageStreamList>();
    generator.subschema_for::<image_api::Image>();
    generator.subschema_for::<image_api::ImageList>();
    generator.subschema_for::<image_api::ImageSignature>();
    generator.subschema_for::<image_api::ImageStreamTag>();
    generator.subschema_for::<image_api::ImageStreamTagList>();
    generator.subschema_for::<image_api::ImageTag>();
    generator.subschema_for::<image_api::ImageTagList>();
    generator.subschema_for::<image_api::ImageStreamImage>();
    generator.subschema_for::<image_api::ImageStreamMapping>();
    generator.subschema_for::<image_api::ImageStreamImport>();
    generator.subschema_for::<image_api::ImageStreamLayers>();
    generator.subschema_for::<Status>();
    generator.subschema_for::<DeleteOptions>();
    let mut defs = generator.take_definitions(true);
    defs.insert(
        format!("{META}.Patch"),
        json!({"type": "object", "description": "The body of a PATCH request; its format is given by the Content-Type."}),
    );
    defs.insert(
        format!("{META}.WatchEvent"),
        json!({
            "type": "object",
            "description": "One event of a watch stream.",
            "required": ["type", "object"],
            "properties": {
                "type": {"type": "string", "description": "ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."},
                "object": {"type": "object", "description": "The object of the event: the changed object, a bookmark, or a Status for ERROR."}
            }
        }),
    );
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}

fn resources() -> Vec<SchemaResource> {
    vec![
        SchemaResource {
            info: crate::resources::image::info(),
            schema: format!("{PREFIX}.Image"),
            list_schema: format!("{PREFIX}.ImageList"),
        },
        SchemaResource {
            info: crate::resources::imagesignature::info(),
            schema: format!("{PREFIX}.ImageSignature"),
            list_schema: format!("{PREFIX}.ImageSignature"),
        },
        SchemaResource {
            info: crate::resources::imagestreamimage::info(),
            schema: format!("{PREFIX}.ImageStreamImage"),
            list_schema: format!("{PREFIX}.ImageStreamImage"),
        },
        SchemaResource {
            info: crate::resources::imagestreammapping::info(),
            schema: format!("{PREFIX}.ImageStreamMapping"),
            list_schema: format!("{PREFIX}.ImageStreamMapping"),
        },
        SchemaResource {
            info: crate::resources::imagestreamimport::info(),
            schema: format!("{PREFIX}.ImageStreamImport"),
            list_schema: format!("{PREFIX}.ImageStreamImport"),
        },
        SchemaResource {
            info: crate::resources::imagestream::rest::streams_info(),
            schema: format!("{PREFIX}.ImageStream"),
            list_schema: format!("{PREFIX}.ImageStreamList"),
        },
        SchemaResource {
            info: crate::resources::imagestreamtag::info(),
            schema: format!("{PREFIX}.ImageStreamTag"),
            list_schema: format!("{PREFIX}.ImageStreamTagList"),
        },
        SchemaResource {
            info: crate::resources::imagetag::info(),
            schema: format!("{PREFIX}.ImageTag"),
            list_schema: format!("{PREFIX}.ImageTagList"),
        },
    ]
}

/// (Swagger 2.0, OpenAPI 3.0 group-version document).
pub fn generate() -> (Value, Value) {
    build(
        image_api::GROUP,
        image_api::VERSION,
        &resources(),
        definitions(),
    )
}

pub fn documents() -> OpenApi {
    let (v2, v3) = generate();
    OpenApi {
        v2: serde_json::to_vec(&v2).ok().map(Bytes::from),
        v3: serde_json::to_vec(&v3).ok().map(Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked_in(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../api")
            .join(name)
    }

    /// The documents in `api/` are what the types generate. `UPDATE_OPENAPI=1` rewrites them.
    #[test]
    fn checked_in_documents_match_the_types() {
        let (v2, v3) = generate();
        for (name, doc) in [("openapi-v2.json", v2), ("openapi-v3.json", v3)] {
            let text = serde_json::to_string_pretty(&doc).expect("json") + "\n";
            let path = checked_in(name);
            if std::env::var_os("UPDATE_OPENAPI").is_some() {
                std::fs::write(&path, &text).expect("write");
                continue;
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == text,
                "{} is stale: run hack/gen-openapi",
                path.display()
            );
        }
    }

    /// Every image type's zero value as the server writes it, by schema name: a field is null
    /// there exactly when the server can send it as null (an `Option` not skipped when `None`).
    fn zero_values() -> Vec<(String, Value)> {
        macro_rules! zero_of {
            ($($t:ident),* $(,)?) => {
                vec![$((
                    format!("{PREFIX}.{}", stringify!($t)),
                    serde_json::to_value(image_api::$t::default()).expect("serialize"),
                )),*]
            };
        }
        let mut zeros = zero_of![
            Image,
            ImageBlobReferences,
            ImageImportSpec,
            ImageImportStatus,
            ImageLayer,
            ImageLayerData,
            ImageList,
            ImageLookupPolicy,
            ImageManifest,
            ImageSignature,
            ImageStream,
            ImageStreamImage,
            ImageStreamImport,
            ImageStreamImportSpec,
            ImageStreamImportStatus,
            ImageStreamLayers,
            ImageStreamList,
            ImageStreamMapping,
            ImageStreamSpec,
            ImageStreamStatus,
            ImageStreamTag,
            ImageStreamTagList,
            ImageTag,
            ImageTagList,
            NamedTagEventList,
            RepositoryImportSpec,
            RepositoryImportStatus,
            SignatureCondition,
            SignatureIssuer,
            SignatureSubject,
            TagEventCondition,
            TagImportPolicy,
            TagReference,
            TagReferencePolicy,
        ];
        // The one type without a Default.
        let tag_event = image_api::TagEvent {
            created: None,
            docker_image_reference: String::new(),
            image: String::new(),
            generation: 0,
        };
        zeros.push((
            format!("{PREFIX}.TagEvent"),
            serde_json::to_value(tag_event).expect("serialize"),
        ));
        zeros
    }

    /// Generated clients (openapi-python-client) reject a null in a field the schema does not
    /// call nullable, and type a nullable field as optional everywhere: v3 says `nullable`
    /// exactly where the server sends null.
    #[test]
    fn nullable_exactly_where_the_server_sends_null() {
        let (v2, v3) = generate();
        let schemas = v3["components"]["schemas"].as_object().expect("schemas");
        let zeros = zero_values();
        let covered: Vec<&str> = zeros.iter().map(|(name, _)| name.as_str()).collect();
        for name in schemas.keys().filter(|k| k.starts_with(PREFIX)) {
            assert!(covered.contains(&name.as_str()), "no zero value for {name}");
        }
        let mut nullable = Vec::new();
        for (name, zero) in &zeros {
            let properties = schemas
                .get(name)
                .and_then(|schema| schema["properties"].as_object())
                .unwrap_or_else(|| panic!("no schema with properties for {name}"));
            for (field, property) in properties {
                let sent_as_null = zero.get(field) == Some(&Value::Null);
                let says_nullable = property.get("nullable") == Some(&Value::Bool(true));
                assert!(
                    says_nullable == sent_as_null,
                    "{name}.{field}: nullable in v3 {says_nullable}, sent as null {sent_as_null}"
                );
                if says_nullable {
                    nullable.push(format!("{}.{field}", &name[PREFIX.len() + 1..]));
                }
            }
        }
        nullable.sort();
        // The spec's "may be null" fields, and two Go also writes as null when unset.
        assert_eq!(
            nullable,
            [
                "Image.dockerImageLayers",
                "ImageBlobReferences.config",
                "ImageBlobReferences.layers",
                "ImageLayerData.size",
                "ImageStreamTag.tag",
                "ImageTag.image",
                "ImageTag.spec",
                "ImageTag.status",
                "NamedTagEventList.items",
                "TagEvent.created",
                "TagReference.annotations",
                "TagReference.generation",
            ]
        );
        let v2_text = v2.to_string();
        assert!(!v2_text.contains("\"nullable\"") && !v2_text.contains("x-nullable"));
    }

    #[test]
    fn documents_carry_what_kubectl_reads() {
        let (_, v3) = generate();
        let patch = &v3["paths"]
            ["/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ImageStream"
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            params.contains(&"fieldValidation") && params.contains(&"dryRun"),
            "{params:?}"
        );
        let content = patch["requestBody"]["content"]
            .as_object()
            .expect("content");
        assert!(content.contains_key("application/strategic-merge-patch+json"));
        let schema = &v3["components"]["schemas"]["com.github.openshift.api.image.v1.ImageStream"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "ImageStream"
        );
        let spec =
            &v3["components"]["schemas"]["com.github.openshift.api.image.v1.ImageStreamSpec"];
        assert_eq!(
            spec["properties"]["tags"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert!(v3["components"]["schemas"]
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .is_some());
    }
}
