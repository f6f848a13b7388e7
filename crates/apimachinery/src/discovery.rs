//! Discovery documents (spec §1.1, §1.2): the legacy `APIGroupList`, `APIGroup` and
//! `APIResourceList`, and aggregated discovery v2, all built from [`ResourceInfo`]s.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

/// What discovery says about one resource.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    /// The plural, e.g. `imagestreams`.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Sorted alphabetically.
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Only stored resources have a storage version hash.
    pub stored: bool,
    pub subresources: Vec<SubresourceInfo>,
}

#[derive(Clone, Debug)]
pub struct SubresourceInfo {
    pub name: &'static str,
    pub kind: &'static str,
    /// Set when the response kind is from another group/version (e.g. `v1` `SecretList`).
    pub group_version: Option<(&'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    pub fn group_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// `storageVersionHash`: base64 of the first 8 bytes of SHA-256 of `group/version/Kind`.
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    STANDARD.encode(&digest[..8])
}

/// A quoted uppercase-hex SHA-512, the ETag of discovery and OpenAPI documents.
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", hex_sha512(body))
}

pub fn hex_sha512(body: &[u8]) -> String {
    Sha512::digest(body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn gv_for_discovery(group: &str, version: &str) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    }
}

/// `/apis/<group>`.
pub fn api_group(group: &str, version: &str) -> APIGroup {
    APIGroup {
        name: group.to_string(),
        versions: vec![gv_for_discovery(group, version)],
        preferred_version: Some(gv_for_discovery(group, version)),
        server_address_by_client_cidrs: None,
    }
}

/// `/apis` in the legacy form.
pub fn api_group_list(groups: &[(&str, &str)]) -> APIGroupList {
    APIGroupList {
        groups: groups.iter().map(|(g, v)| api_group(g, v)).collect(),
    }
}

/// `/apis/<group>/<version>`.
pub fn api_resource_list(group_version: &str, resources: &[ResourceInfo]) -> APIResourceList {
    let mut out = Vec::new();
    for r in resources {
        out.push(APIResource {
            name: r.resource.to_string(),
            singular_name: r.singular.to_string(),
            namespaced: r.namespaced,
            kind: r.kind.to_string(),
            verbs: strings(r.verbs),
            short_names: non_empty(r.short_names),
            categories: non_empty(r.categories),
            storage_version_hash: r
                .stored
                .then(|| storage_version_hash(r.group, r.version, r.kind)),
            group: None,
            version: None,
        });
        for s in &r.subresources {
            out.push(APIResource {
                name: format!("{}/{}", r.resource, s.name),
                singular_name: String::new(),
                namespaced: r.namespaced,
                kind: s.kind.to_string(),
                verbs: strings(s.verbs),
                group: s
                    .group_version
                    .map(|(g, _)| g.to_string())
                    .filter(|g| !g.is_empty()),
                version: s.group_version.map(|(_, v)| v.to_string()),
                short_names: None,
                categories: None,
                storage_version_hash: None,
            });
        }
    }
    APIResourceList {
        group_version: group_version.to_string(),
        resources: out,
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn non_empty(s: &[&str]) -> Option<Vec<String>> {
    (!s.is_empty()).then(|| strings(s))
}

/// The content type of an aggregated discovery response.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDiscoveryList {
    kind: &'static str,
    api_version: &'static str,
    metadata: serde_json::Map<String, serde_json::Value>,
    items: Vec<GroupDiscovery>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupDiscovery {
    metadata: NameOnly,
    versions: Vec<VersionDiscovery>,
}

#[derive(Serialize)]
struct NameOnly {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionDiscovery {
    version: String,
    resources: Vec<ResourceDiscovery>,
    freshness: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceDiscovery {
    resource: String,
    response_kind: GroupVersionKind,
    scope: &'static str,
    singular_resource: String,
    verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    short_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<SubresourceDiscovery>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubresourceDiscovery {
    subresource: String,
    response_kind: GroupVersionKind,
    verbs: Vec<String>,
}

#[derive(Serialize)]
struct GroupVersionKind {
    group: String,
    version: String,
    kind: String,
}

/// `/apis` as aggregated discovery v2 for one group/version.
pub fn aggregated_discovery(
    group: &str,
    version: &str,
    resources: &[ResourceInfo],
) -> GroupDiscoveryList {
    let resources = resources
        .iter()
        .map(|r| ResourceDiscovery {
            resource: r.resource.to_string(),
            response_kind: GroupVersionKind {
                group: r.group.to_string(),
                version: r.version.to_string(),
                kind: r.kind.to_string(),
            },
            scope: if r.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            },
            singular_resource: r.singular.to_string(),
            verbs: strings(r.verbs),
            short_names: strings(r.short_names),
            categories: strings(r.categories),
            subresources: r
                .subresources
                .iter()
                .map(|s| {
                    let (g, v) = s.group_version.unwrap_or((r.group, r.version));
                    SubresourceDiscovery {
                        subresource: s.name.to_string(),
                        response_kind: GroupVersionKind {
                            group: g.to_string(),
                            version: v.to_string(),
                            kind: s.kind.to_string(),
                        },
                        verbs: strings(s.verbs),
                    }
                })
                .collect(),
        })
        .collect();
    GroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: Default::default(),
        items: vec![GroupDiscovery {
            metadata: NameOnly {
                name: group.to_string(),
            },
            versions: vec![VersionDiscovery {
                version: version.to_string(),
                resources,
                freshness: "Current",
            }],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_version_hashes_match_openshift() {
        assert_eq!(
            storage_version_hash("image.openshift.io", "v1", "ImageStream"),
            "mwmf9lCqOiA="
        );
        assert_eq!(
            storage_version_hash("image.openshift.io", "v1", "Image"),
            "FX/i8Tt+3Fc="
        );
        assert_eq!(
            storage_version_hash("image.openshift.io", "v1", "ImageSignature"),
            "waIVBovEDlo="
        );
    }

    #[test]
    fn resource_list_has_subresources_and_always_present_fields() {
        let r = ResourceInfo {
            group: "g.io",
            version: "v1",
            resource: "things",
            singular: "thing",
            kind: "Thing",
            namespaced: true,
            verbs: &["get", "list"],
            short_names: &["th"],
            categories: &[],
            stored: true,
            subresources: vec![SubresourceInfo {
                name: "secrets",
                kind: "SecretList",
                group_version: Some(("", "v1")),
                verbs: &["get"],
            }],
        };
        let json = serde_json::to_value(api_resource_list("g.io/v1", &[r])).expect("json");
        let sub = &json["resources"][1];
        assert_eq!(sub["name"], "things/secrets");
        assert_eq!(sub["singularName"], "");
        assert_eq!(sub["version"], "v1");
        assert!(sub.get("group").is_none());
        assert_eq!(json["resources"][0]["shortNames"][0], "th");
        assert!(json["resources"][0].get("categories").is_none());
    }

    #[test]
    fn etags_are_quoted_uppercase_sha512() {
        let e = etag(b"");
        assert!(e.starts_with("\"CF83E1357EEFB8BD"));
        assert_eq!(e.len(), 128 + 2);
    }
}
