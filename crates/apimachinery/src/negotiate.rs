//! Content negotiation (spec §4.4, §4.5, §7): which representation and encoding an `Accept`
//! header asks for. Protobuf is offered only where the server has a schema for the resource;
//! elsewhere clauses asking for it are skipped, and Tables are never protobuf.

use crate::errors::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
    Protobuf,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Yaml => "application/yaml",
            Encoding::Protobuf => crate::protobuf::MEDIA_TYPE,
        }
    }
}

/// What a Table row's `object` carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(ApiError::BadRequest(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: {}: must be 'Metadata', 'Object', 'None', or empty",
                crate::field::go_quote(other)
            ))),
        }
    }
}

/// The representation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The object (or list) itself.
    Object,
    Table,
    PartialObjectMetadata,
    PartialObjectMetadataList,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub target: Target,
    pub encoding: Encoding,
}

/// What the request is about, for the checks that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Item,
    List,
    Watch,
}

struct Clause<'a> {
    media: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let mut out: Vec<Clause> = accept
        .split(',')
        .filter_map(|raw| {
            let mut parts = raw.split(';').map(str::trim);
            let media = parts.next().filter(|m| !m.is_empty())?;
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k == "q" {
                    // NaN and infinities are no weights; they would also break the sort's order.
                    q = v
                        .parse::<f32>()
                        .ok()
                        .filter(|q| q.is_finite())
                        .unwrap_or(0.0);
                } else {
                    params.push((k, v));
                }
            }
            Some(Clause { media, params, q })
        })
        .collect();
    // Stable: equal weights keep the client's order.
    out.sort_by(|a, b| b.q.total_cmp(&a.q));
    out
}

fn param<'a>(c: &Clause<'a>, key: &str) -> Option<&'a str> {
    c.params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Negotiates the response for an API request. `type_name` names the object in the
/// PartialObjectMetadata errors (e.g. `*v1.ImageStream`); `protobuf` says whether the resource
/// can be written as protobuf.
pub fn negotiate(
    accept: Option<&str>,
    shape: Shape,
    type_name: &str,
    protobuf: bool,
) -> Result<Negotiated, ApiError> {
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    for c in clauses(accept) {
        let encoding = match c.media {
            "application/json" | "*/*" | "application/*" => Encoding::Json,
            "application/yaml" if shape != Shape::Watch => Encoding::Yaml,
            crate::protobuf::MEDIA_TYPE if protobuf => Encoding::Protobuf,
            _ => continue,
        };
        let target = match param(&c, "as") {
            None => Target::Object,
            Some(as_kind) => {
                let meta_group = param(&c, "g") == Some("meta.k8s.io")
                    && matches!(param(&c, "v"), Some("v1" | "v1beta1"));
                if !meta_group {
                    continue;
                }
                match (as_kind, shape) {
                    ("Table", _) if encoding == Encoding::Protobuf => continue,
                    ("Table", _) => Target::Table,
                    ("PartialObjectMetadata", Shape::List) => {
                        return Err(ApiError::NotAcceptable(format!(
                            "you requested PartialObjectMetadata, but the requested object is a list ({type_name}List)"
                        )))
                    }
                    ("PartialObjectMetadata", _) => Target::PartialObjectMetadata,
                    ("PartialObjectMetadataList", Shape::List) => Target::PartialObjectMetadataList,
                    ("PartialObjectMetadataList", _) => {
                        return Err(ApiError::NotAcceptable(format!(
                            "you requested PartialObjectMetadataList, but the requested object is not a list ({type_name})"
                        )))
                    }
                    _ => continue,
                }
            }
        };
        return Ok(Negotiated { target, encoding });
    }
    Err(ApiError::NotAcceptable(match (shape, protobuf) {
        (Shape::Watch, false) => "only the following media types are accepted: application/json, application/json;stream=watch".to_string(),
        (Shape::Watch, true) => "only the following media types are accepted: application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch".to_string(),
        (_, false) => "only the following media types are accepted: application/json, application/yaml".to_string(),
        (_, true) => "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf".to_string(),
    }))
}

/// Whether the client asked for aggregated discovery (`as=APIGroupDiscoveryList`, v2).
pub fn wants_aggregated_discovery(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    for c in clauses(accept) {
        match (c.media, param(&c, "as")) {
            ("application/json", Some("APIGroupDiscoveryList"))
                if param(&c, "g") == Some("apidiscovery.k8s.io")
                    && param(&c, "v") == Some("v2") =>
            {
                return true;
            }
            ("application/json" | "*/*" | "application/*", None) => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    const METADATA: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

    #[test]
    fn picks_the_first_supported_clause() {
        let n = |a: Option<&str>, s| negotiate(a, s, "*v1.ImageStream", false);
        assert_eq!(n(None, Shape::Item).expect("none").target, Target::Object);
        assert_eq!(
            n(Some(KUBECTL_TABLE), Shape::List).expect("t").target,
            Target::Table
        );
        assert_eq!(
            n(Some(METADATA), Shape::Item).expect("m").target,
            Target::PartialObjectMetadata
        );
        assert_eq!(
            n(Some("application/yaml"), Shape::Item)
                .expect("y")
                .encoding,
            Encoding::Yaml
        );
        assert!(n(Some("application/yaml"), Shape::Watch).is_err());
        assert_eq!(
            n(Some("application/json;stream=watch"), Shape::Watch)
                .expect("w")
                .encoding,
            Encoding::Json
        );
        let err = n(Some("application/vnd.kubernetes.protobuf"), Shape::Item).expect_err("pb");
        assert_eq!(err.code(), 406);
        let err = n(Some(METADATA), Shape::List).expect_err("list");
        assert_eq!(err.to_string(), "you requested PartialObjectMetadata, but the requested object is a list (*v1.ImageStreamList)");
        assert_eq!(
            n(
                Some("application/json;as=Foo;g=x;v=v1, application/yaml"),
                Shape::Item
            )
            .expect("skip")
            .encoding,
            Encoding::Yaml
        );
        assert_eq!(
            n(
                Some("application/yaml;q=0.5, application/json"),
                Shape::Item
            )
            .expect("q")
            .encoding,
            Encoding::Json
        );
    }

    #[test]
    fn protobuf_only_where_the_resource_has_a_schema() {
        const PB: &str = "application/vnd.kubernetes.protobuf";
        let n = |a: &str, s, pb| negotiate(Some(a), s, "*v1.ImageStream", pb);
        assert_eq!(
            n(PB, Shape::Item, true).expect("pb").encoding,
            Encoding::Protobuf
        );
        assert_eq!(
            n(
                "application/vnd.kubernetes.protobuf;stream=watch",
                Shape::Watch,
                true
            )
            .expect("watch")
            .encoding,
            Encoding::Protobuf
        );
        let both = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(
            n(both, Shape::List, false).expect("fallback").encoding,
            Encoding::Json
        );
        let meta = n(METADATA, Shape::Item, true).expect("metadata");
        assert_eq!(
            (meta.encoding, meta.target),
            (Encoding::Protobuf, Target::PartialObjectMetadata)
        );
        let table = "application/vnd.kubernetes.protobuf;as=Table;g=meta.k8s.io;v=v1,application/json;as=Table;g=meta.k8s.io;v=v1";
        let t = n(table, Shape::List, true).expect("table");
        assert_eq!((t.encoding, t.target), (Encoding::Json, Target::Table));
        let err = n("text/html", Shape::Item, true).expect_err("406");
        assert_eq!(err.to_string(), "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf");
    }

    #[test]
    fn aggregated_discovery_accept() {
        assert!(wants_aggregated_discovery(Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")));
        assert!(!wants_aggregated_discovery(Some("application/json")));
        assert!(!wants_aggregated_discovery(None));
    }

    #[test]
    fn include_object_values() {
        assert_eq!(
            IncludeObject::parse(None).expect("d"),
            IncludeObject::Metadata
        );
        assert_eq!(
            IncludeObject::parse(Some("None")).expect("n"),
            IncludeObject::None
        );
        assert!(IncludeObject::parse(Some("x")).is_err());
    }
}
