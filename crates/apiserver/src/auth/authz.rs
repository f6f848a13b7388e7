//! Authorization (spec §8.5): request attributes as kube's `RequestInfoFactory` derives them,
//! the `Authorizer` interface every mode implements, the chain that combines them, and kube's
//! 403 message.

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use apimachinery::GroupResource;
use async_trait::async_trait;

use crate::resource::UserInfo;

/// What a resource request is about (kube's `authorizer.Attributes` for resource requests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceAttributes {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// Who wants to do what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// `impersonate`; for non-resource requests the lower-cased HTTP method.
    pub verb: String,
    /// `None` for non-resource requests (discovery, OpenAPI, health, metrics).
    pub resource: Option<ResourceAttributes>,
    /// The request path (what non-resource rules match).
    pub path: String,
}

impl Attributes {
    /// The attributes of an HTTP request, as kube's `RequestInfoFactory` derives them.
    pub fn of_request(user: UserInfo, method: &str, path: &str, query: &Query) -> Attributes {
        let lower = method.to_ascii_lowercase();
        let resource_info = path
            .strip_prefix("/apis/")
            .and_then(apimachinery::request::parse);
        let Some(info) = resource_info else {
            return Attributes {
                user,
                verb: lower,
                resource: None,
                path: path.to_string(),
            };
        };
        let mut name = info.name.clone().unwrap_or_default();
        let verb = match method {
            "GET" | "HEAD" => {
                if info.watch_path || (name.is_empty() && query.flag("watch")) {
                    "watch"
                } else if name.is_empty() {
                    "list"
                } else {
                    "get"
                }
            }
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            _ => lower.as_str(),
        }
        .to_string();
        // kube narrows a list or watch to one name when the field selector pins it.
        if matches!(verb.as_str(), "list" | "watch") {
            if let Some(pinned) = query.get("fieldSelector").and_then(pinned_name) {
                name = pinned;
            }
        }
        Attributes {
            user,
            verb,
            resource: Some(ResourceAttributes {
                group: info.group,
                version: info.version,
                resource: info.resource,
                subresource: info.subresource.unwrap_or_default(),
                namespace: info.namespace.unwrap_or_default(),
                name,
            }),
            path: path.to_string(),
        }
    }
}

/// `metadata.name=<n>` (or `==`) as the whole field selector.
fn pinned_name(selector: &str) -> Option<String> {
    let value = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))?;
    (!value.is_empty() && !value.contains(',')).then(|| value.to_string())
}

/// One authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A definite no: later authorizers are not asked. The reason goes into the 403.
    Deny(String),
    /// Neither: the next authorizer decides; if none does, the request is denied with the
    /// reasons given.
    NoOpinion(String),
}

#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, attributes: &Attributes) -> Decision;
}

/// `--authorization-mode=AlwaysAllow`: for local development only.
pub struct AlwaysAllow;

#[async_trait]
impl Authorizer for AlwaysAllow {
    async fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow
    }
}

/// The server's authorizer: `system:masters` and the always-allowed paths first (kube's
/// privileged-group and path authorizers), then each configured mode in order.
pub struct Authorization {
    always_allow_paths: Vec<String>,
    chain: Vec<Arc<dyn Authorizer>>,
}

impl Authorization {
    /// `always_allow_paths`: exact paths, or prefixes ending in `*` (kube's
    /// `--authorization-always-allow-paths`).
    pub fn new(always_allow_paths: Vec<String>, chain: Vec<Arc<dyn Authorizer>>) -> Self {
        Authorization {
            always_allow_paths,
            chain,
        }
    }

    fn path_always_allowed(&self, path: &str) -> bool {
        self.always_allow_paths
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
    }
}

#[async_trait]
impl Authorizer for Authorization {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group("system:masters") {
            return Decision::Allow;
        }
        if attributes.resource.is_none() && self.path_always_allowed(&attributes.path) {
            return Decision::Allow;
        }
        let mut reasons = Vec::new();
        for authorizer in &self.chain {
            match authorizer.authorize(attributes).await {
                Decision::Allow => return Decision::Allow,
                Decision::Deny(reason) => return Decision::Deny(reason),
                Decision::NoOpinion(reason) if !reason.is_empty() => reasons.push(reason),
                Decision::NoOpinion(_) => {}
            }
        }
        Decision::NoOpinion(reasons.join("; "))
    }
}

/// kube's `forbiddenMessage`: what the user cannot do, without the resource's own name.
pub fn forbidden_message(attributes: &Attributes) -> String {
    let user = &attributes.user.name;
    let verb = &attributes.verb;
    let Some(r) = &attributes.resource else {
        return format!("User {user:?} cannot {verb} path {:?}", attributes.path);
    };
    let mut resource = r.resource.clone();
    if !r.subresource.is_empty() {
        resource = format!("{resource}/{}", r.subresource);
    }
    if r.namespace.is_empty() {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {:?} at the cluster scope",
            r.group
        )
    } else {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {:?} in the namespace {:?}",
            r.group, r.namespace
        )
    }
}

/// The 403 kube answers a denied request with (`responsewriters.Forbidden`): `<resource>.<group>
/// "<name>" is forbidden: <forbidden message>[: <reason>]`, details naming the resource.
pub fn forbidden(attributes: &Attributes, reason: &str) -> ApiError {
    let mut text = forbidden_message(attributes);
    if !reason.is_empty() {
        text = format!("{text}: {reason}");
    }
    let Some(r) = &attributes.resource else {
        return ApiError::Forbidden {
            message: format!("forbidden: {text}"),
            name: String::new(),
            resource: None,
        };
    };
    let gr = GroupResource::new(&r.group, &r.resource);
    let message = if r.name.is_empty() {
        format!("{gr} is forbidden: {text}")
    } else {
        format!("{gr} {:?} is forbidden: {text}", r.name)
    };
    ApiError::Forbidden {
        message,
        name: r.name.clone(),
        resource: Some(gr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    fn attrs(method: &str, path: &str, query: &str) -> Attributes {
        Attributes::of_request(alice(), method, path, &Query::parse(Some(query)))
    }

    #[test]
    fn verbs_and_names_as_kube_derives_them() {
        let cases = [
            (
                "GET",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
                "",
                "list",
                "",
            ),
            (
                "GET",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
                "watch=true",
                "watch",
                "",
            ),
            (
                "GET",
                "/apis/image.openshift.io/v1/watch/namespaces/a/imagestreams/x",
                "",
                "watch",
                "x",
            ),
            (
                "GET",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
                "fieldSelector=metadata.name%3Dx",
                "list",
                "x",
            ),
            (
                "GET",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x",
                "",
                "get",
                "x",
            ),
            (
                "POST",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
                "",
                "create",
                "",
            ),
            (
                "PUT",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x/status",
                "",
                "update",
                "x",
            ),
            (
                "PATCH",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x",
                "",
                "patch",
                "x",
            ),
            (
                "DELETE",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x",
                "",
                "delete",
                "x",
            ),
            (
                "DELETE",
                "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
                "",
                "deletecollection",
                "",
            ),
        ];
        for (method, path, query, verb, name) in cases {
            let a = attrs(method, path, query);
            let r = a.resource.expect("resource request");
            assert_eq!(
                (a.verb.as_str(), r.name.as_str()),
                (verb, name),
                "{method} {path}?{query}"
            );
            assert_eq!(r.namespace, "a");
        }
        let status = attrs(
            "PUT",
            "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x/status",
            "",
        );
        assert_eq!(status.resource.expect("resource").subresource, "status");
        for path in [
            "/apis",
            "/apis/image.openshift.io",
            "/apis/image.openshift.io/v1",
            "/version",
        ] {
            let a = attrs("GET", path, "");
            assert_eq!(
                (a.verb.as_str(), a.resource.is_none()),
                ("get", true),
                "{path}"
            );
        }
    }

    #[test]
    fn forbidden_messages_are_kubes() {
        let list = attrs(
            "GET",
            "/apis/image.openshift.io/v1/namespaces/a/imagestreams",
            "",
        );
        let e = forbidden(&list, "");
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            "imagestreams.image.openshift.io is forbidden: User \"alice\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"a\""
        );
        let layers = attrs(
            "GET",
            "/apis/image.openshift.io/v1/namespaces/a/imagestreams/x/layers",
            "",
        );
        assert_eq!(
            forbidden(&layers, "no RBAC policy matched").to_string(),
            "imagestreams.image.openshift.io \"x\" is forbidden: User \"alice\" cannot get resource \"imagestreams/layers\" in API group \"image.openshift.io\" in the namespace \"a\": no RBAC policy matched"
        );
        let image = attrs("DELETE", "/apis/image.openshift.io/v1/images/sha256:1", "");
        assert_eq!(
            forbidden(&image, "").to_string(),
            "images.image.openshift.io \"sha256:1\" is forbidden: User \"alice\" cannot delete resource \"images\" in API group \"image.openshift.io\" at the cluster scope"
        );
        let path = attrs("GET", "/openapi/v2", "");
        assert_eq!(
            forbidden(&path, "").to_string(),
            "forbidden: User \"alice\" cannot get path \"/openapi/v2\""
        );
    }

    struct Says(Decision);

    #[async_trait]
    impl Authorizer for Says {
        async fn authorize(&self, _: &Attributes) -> Decision {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn chain_order_masters_and_paths() {
        let chain = |ds: Vec<Decision>| {
            Authorization::new(
                vec!["/healthz".into(), "/livez/*".into()],
                ds.into_iter()
                    .map(|d| Arc::new(Says(d)) as Arc<dyn Authorizer>)
                    .collect(),
            )
        };
        let a = attrs("GET", "/apis/image.openshift.io/v1/images", "");
        let noop = Decision::NoOpinion("r1".into());
        assert_eq!(
            chain(vec![noop.clone(), Decision::Allow])
                .authorize(&a)
                .await,
            Decision::Allow
        );
        assert_eq!(
            chain(vec![Decision::Deny("no".into()), Decision::Allow])
                .authorize(&a)
                .await,
            Decision::Deny("no".into())
        );
        assert_eq!(
            chain(vec![noop.clone(), Decision::NoOpinion("r2".into())])
                .authorize(&a)
                .await,
            Decision::NoOpinion("r1; r2".into())
        );
        let mut master = a.clone();
        master.user.groups.push("system:masters".into());
        assert_eq!(
            chain(vec![Decision::Deny("no".into())])
                .authorize(&master)
                .await,
            Decision::Allow
        );
        for (path, allowed) in [
            ("/healthz", true),
            ("/livez/ping", true),
            ("/livez", false),
            ("/metrics", false),
        ] {
            let got = chain(vec![]).authorize(&attrs("GET", path, "")).await;
            assert_eq!(got == Decision::Allow, allowed, "{path}");
        }
    }
}
