//! The standalone authorizer (`--authorization-policy-file`): a small RBAC-like policy for
//! running without a cluster to send SubjectAccessReviews to, and [`BasicUser`], the grants
//! kube's default RBAC gives every user, so that a policy need not repeat them.
//!
//! The file is YAML (JSON is YAML too); unknown fields are errors:
//!
//! ```yaml
//! # rules are additive; anything no rule allows gets 403
//! rules:
//! - users: [alice]            # any of users / groups / serviceAccounts ("ns:name")
//!   groups: [dev]
//!   namespaces: [team-a]      # omitted or ["*"]: every namespace and the cluster scope
//!   verbs: [get, list, watch] # "*": any verb
//!   apiGroups: ["image.openshift.io"]   # omitted or ["*"]: any group
//!   resources: [imagestreams, imagestreams/layers, "imagestreams/*", "*/status", "*"]
//!   resourceNames: [app]      # optional: only these names
//! - groups: ["system:authenticated"]
//!   nonResourceURLs: ["/metrics", "/openapi/*"]   # exact, or a prefix ending in "*"
//!   verbs: [get]
//! ```
//!
//! A rule allows a request when all of these hold, as in RBAC:
//! - a subject matches: `users` holds the user's name, `groups` one of its groups, or
//!   `serviceAccounts` holds `ns:name` for the user `system:serviceaccount:ns:name`;
//! - `verbs` holds the verb (or `*`);
//! - for resource requests (rules with `resources`): the API group is listed; the resource is
//!   listed, where `imagestreams` covers only the resource itself, `imagestreams/layers` that
//!   subresource, `imagestreams/*` every subresource, `*/status` the status of any resource
//!   and `*` everything; with `namespaces`, the request is in one of them (cluster-scoped
//!   requests and lists across all namespaces need a rule without `namespaces` or with `*`);
//!   with `resourceNames`, the request names one of them (so lists, creates and
//!   deletecollections, which name nothing, do not match);
//! - for other requests (rules with `nonResourceURLs`): the path is listed, or starts with a
//!   listed prefix ending in `*`.

use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;

use super::authz::{Attributes, Authorizer, Decision, ResourceAttributes};
use crate::resource::UserInfo;

const WILDCARD: &str = "*";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<PolicyError>,
    },
    #[error("parsing policy: {0}")]
    Syntax(#[from] serde_norway::Error),
    /// A rule that parses but cannot mean anything sensible.
    #[error("rules[{index}]: {reason}")]
    Rule { index: usize, reason: String },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDocument {
    #[serde(default)]
    rules: Vec<Rule>,
}

/// One rule; empty lists mean "not given".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    users: Vec<String>,
    groups: Vec<String>,
    /// `namespace:name`.
    service_accounts: Vec<String>,
    namespaces: Vec<String>,
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

impl Rule {
    /// Why the rule is unusable, if it is.
    fn problem(&self) -> Option<String> {
        if self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty() {
            return Some("at least one of users, groups or serviceAccounts is required".into());
        }
        if self.verbs.is_empty() {
            return Some("verbs is required".into());
        }
        match (self.resources.is_empty(), self.non_resource_urls.is_empty()) {
            (true, true) => return Some("one of resources or nonResourceURLs is required".into()),
            (false, false) => {
                return Some("resources and nonResourceURLs cannot be in the same rule".into())
            }
            (true, false) if self.has_resource_qualifiers() => {
                return Some(
                    "apiGroups, namespaces and resourceNames apply to resources, not to nonResourceURLs"
                        .into(),
                )
            }
            _ => {}
        }
        self.service_accounts
            .iter()
            .find(|sa| !is_namespace_and_name(sa))
            .map(|sa| format!("serviceAccounts: {sa:?} is not \"namespace:name\""))
    }

    fn has_resource_qualifiers(&self) -> bool {
        [&self.api_groups, &self.namespaces, &self.resource_names]
            .iter()
            .any(|list| !list.is_empty())
    }

    fn allows(&self, attributes: &Attributes) -> bool {
        self.names_subject(&attributes.user)
            && self
                .verbs
                .iter()
                .any(|v| v == WILDCARD || *v == attributes.verb)
            && match &attributes.resource {
                Some(resource) => self.covers_resource(resource),
                None => url_matches(&self.non_resource_urls, &attributes.path),
            }
    }

    fn names_subject(&self, user: &UserInfo) -> bool {
        self.users.contains(&user.name)
            || self.groups.iter().any(|g| user.in_group(g))
            || user
                .name
                .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                .is_some_and(|sa| self.service_accounts.iter().any(|s| s == sa))
    }

    fn covers_resource(&self, r: &ResourceAttributes) -> bool {
        unset_or_listed(&self.api_groups, &r.group)
            && resource_matches(&self.resources, &r.resource, &r.subresource)
            && self.covers_namespace(&r.namespace)
            && (self.resource_names.is_empty()
                || (!r.name.is_empty() && self.resource_names.contains(&r.name)))
    }

    /// An empty namespace is the cluster scope or every namespace: only an unrestricted rule
    /// covers it.
    fn covers_namespace(&self, namespace: &str) -> bool {
        self.namespaces.is_empty()
            || self.namespaces.iter().any(|n| n == WILDCARD)
            || (!namespace.is_empty() && self.namespaces.iter().any(|n| n == namespace))
    }
}

fn is_namespace_and_name(service_account: &str) -> bool {
    service_account
        .split_once(':')
        .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
}

fn unset_or_listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|x| x == WILDCARD || x == value)
}

/// RBAC's resource matching, plus `<resource>/*` for every subresource of one resource.
fn resource_matches(patterns: &[String], resource: &str, subresource: &str) -> bool {
    patterns.iter().any(|pattern| {
        if pattern == WILDCARD {
            return true;
        }
        match pattern.split_once('/') {
            None => subresource.is_empty() && pattern == resource,
            Some((res, sub)) => {
                !subresource.is_empty()
                    && (res == WILDCARD || res == resource)
                    && (sub == WILDCARD || sub == subresource)
            }
        }
    })
}

/// RBAC's non-resource URL matching: exact, or a prefix ending in `*`.
fn url_matches<S: AsRef<str>>(patterns: &[S], path: &str) -> bool {
    patterns.iter().any(|pattern| {
        let pattern = pattern.as_ref();
        match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
            None => pattern == path,
        }
    })
}

/// The rules of a policy file.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text).map_err(|e| PolicyError::InFile {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let document: PolicyDocument = serde_norway::from_str(text)?;
        for (index, rule) in document.rules.iter().enumerate() {
            if let Some(reason) = rule.problem() {
                return Err(PolicyError::Rule { index, reason });
            }
        }
        Ok(Policy {
            rules: document.rules,
        })
    }

    fn allows(&self, attributes: &Attributes) -> bool {
        self.rules.iter().any(|rule| rule.allows(attributes))
    }
}

#[async_trait]
impl Authorizer for Policy {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        if self.allows(attributes) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// kube's `system:discovery`: discovery and OpenAPI, for authenticated users.
const DISCOVERY_PATHS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
];

/// kube's `system:public-info-viewer`: version and health, for everyone.
const PUBLIC_INFO_PATHS: &[&str] = &[
    "/version",
    "/version/",
    "/healthz",
    "/healthz/*",
    "/livez",
    "/livez/*",
    "/readyz",
    "/readyz/*",
];

/// kube's `system:basic-user`: who am I and what may I do, as (group, resource).
const SELF_REVIEWS: &[(&str, &str)] = &[
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

/// The grants of kube's default cluster role bindings (`system:discovery`,
/// `system:basic-user`, `system:public-info-viewer`), for running standalone.
pub struct BasicUser;

impl BasicUser {
    fn allows(attributes: &Attributes) -> bool {
        let user = &attributes.user;
        let authenticated = user.in_group(AUTHENTICATED);
        match &attributes.resource {
            None if attributes.verb == "get" => {
                let public = authenticated || user.in_group(UNAUTHENTICATED);
                (authenticated && url_matches(DISCOVERY_PATHS, &attributes.path))
                    || (public && url_matches(PUBLIC_INFO_PATHS, &attributes.path))
            }
            None => false,
            Some(r) => {
                authenticated
                    && attributes.verb == "create"
                    && r.subresource.is_empty()
                    && SELF_REVIEWS
                        .iter()
                        .any(|(group, resource)| r.group == *group && r.resource == *resource)
            }
        }
    }
}

#[async_trait]
impl Authorizer for BasicUser {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        if BasicUser::allows(attributes) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
rules:
- users: [alice]
  namespaces: [team-a]
  verbs: [get, list, watch]
  apiGroups: [image.openshift.io]
  resources: [imagestreams]
- groups: [dev]
  verbs: ["*"]
  resources: ["imagestreams/*"]
- serviceAccounts: ["ci:builder"]
  verbs: [update]
  resources: ["*/status"]
  resourceNames: [app]
- groups: ["system:authenticated"]
  nonResourceURLs: ["/metrics", "/openapi/*"]
  verbs: [get]
"#;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    /// A resource request written `verb namespace resource[/subresource] name`, with `-`
    /// for an empty namespace or name.
    fn request(who: &UserInfo, request: &str) -> Attributes {
        let words: Vec<&str> = request.split(' ').collect();
        let [verb, namespace, resource, name] = words[..] else {
            panic!("bad test request {request:?}");
        };
        let empty_if_dash = |s: &str| {
            if s == "-" {
                String::new()
            } else {
                s.to_string()
            }
        };
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: who.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: "image.openshift.io".into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: empty_if_dash(namespace),
                name: empty_if_dash(name),
            }),
            path: String::new(),
        }
    }

    fn path_request(who: &UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes {
            user: who.clone(),
            verb: verb.into(),
            resource: None,
            path: path.into(),
        }
    }

    fn policy() -> Policy {
        Policy::parse(POLICY).expect("the example policy parses")
    }

    /// Whether the example policy allows `who` the request (see [`request`]).
    fn can(who: &UserInfo, what: &str) -> bool {
        policy().allows(&request(who, what))
    }

    #[test]
    fn users_are_confined_to_their_namespaces_groups_and_verbs() {
        let alice = user("alice", &[]);
        assert!(can(&alice, "get team-a imagestreams x"));
        assert!(can(&alice, "list team-a imagestreams -"));
        assert!(!can(&alice, "get team-b imagestreams x"));
        assert!(!can(&alice, "list - imagestreams -"));
        assert!(!can(&alice, "delete team-a imagestreams x"));
        assert!(!can(&alice, "get team-a images x"));
        assert!(!can(&user("bob", &[]), "get team-a imagestreams x"));
        let mut other_group = request(&alice, "get team-a imagestreams x");
        if let Some(r) = other_group.resource.as_mut() {
            r.group = "apps".into();
        }
        assert!(!policy().allows(&other_group));
    }

    #[test]
    fn subresources_follow_rbac() {
        let alice = user("alice", &[]);
        // "imagestreams" does not cover its subresources.
        assert!(!can(&alice, "get team-a imagestreams/layers x"));
        let dev = user("carol", &["dev"]);
        // "imagestreams/*": every subresource, in every namespace, but not the resource.
        assert!(can(&dev, "get team-b imagestreams/layers x"));
        assert!(can(&dev, "update - imagestreams/status x"));
        assert!(!can(&dev, "get team-b imagestreams x"));
        assert!(!can(&dev, "get team-b images/status x"));
        let everything = "rules:\n- users: [root]\n  verbs: ['*']\n  resources: ['*']\n";
        let everything = Policy::parse(everything).expect("parse");
        let root = user("root", &[]);
        assert!(everything.allows(&request(&root, "delete - images x")));
        assert!(everything.allows(&request(&root, "get a imagestreams/secrets x")));
    }

    #[test]
    fn service_accounts_resource_names_and_status_of_anything() {
        let builder = user("system:serviceaccount:ci:builder", &[]);
        assert!(can(&builder, "update x imagestreams/status app"));
        assert!(can(&builder, "update y images/status app"));
        assert!(!can(&builder, "update x imagestreams/status other"));
        assert!(!can(&builder, "update x imagestreams app"));
        // resourceNames never match requests without a name.
        assert!(!can(&builder, "update x imagestreams/status -"));
        assert!(!can(&builder, "deletecollection x imagestreams/status -"));
        let other = user("system:serviceaccount:ci:other", &[]);
        assert!(!can(&other, "update x imagestreams/status app"));
        let named_like_one = user("ci:builder", &[]);
        assert!(!can(&named_like_one, "update x imagestreams/status app"));
    }

    #[test]
    fn non_resource_urls_exact_or_prefix_and_only_for_paths() {
        let p = policy();
        let someone = user("dave", &[AUTHENTICATED]);
        assert!(p.allows(&path_request(&someone, "get", "/metrics")));
        assert!(!p.allows(&path_request(&someone, "get", "/metrics/extra")));
        assert!(p.allows(&path_request(&someone, "get", "/openapi/v2")));
        assert!(p.allows(&path_request(&someone, "get", "/openapi/v3/apis/x")));
        assert!(!p.allows(&path_request(&someone, "get", "/openapi")));
        assert!(!p.allows(&path_request(&someone, "post", "/metrics")));
        let anonymous = UserInfo::anonymous();
        assert!(!p.allows(&path_request(&anonymous, "get", "/metrics")));
        // A resource rule never allows a path, whatever its wildcards.
        let dev = user("carol", &["dev"]);
        assert!(!p.allows(&path_request(&dev, "get", "/apis")));
    }

    #[test]
    fn a_wildcard_namespace_covers_the_cluster_scope() {
        let text = "rules:\n- groups: [ops]\n  namespaces: ['*']\n  verbs: [list]\n  resources: [images]\n";
        let p = Policy::parse(text).expect("parse");
        let ops = user("erin", &["ops"]);
        assert!(p.allows(&request(&ops, "list - images -")));
        assert!(p.allows(&request(&ops, "list any images -")));
    }

    #[tokio::test]
    async fn decisions_are_allow_or_no_opinion() {
        let p = policy();
        let alice = user("alice", &[]);
        let allowed = request(&alice, "get team-a imagestreams x");
        assert_eq!(p.authorize(&allowed).await, Decision::Allow);
        let elsewhere = request(&alice, "get team-b imagestreams x");
        assert_eq!(
            p.authorize(&elsewhere).await,
            Decision::NoOpinion(String::new())
        );
    }

    #[test]
    fn json_is_accepted() {
        let p = Policy::parse(r#"{"rules":[{"users":["a"],"verbs":["get"],"resources":["*"]}]}"#)
            .expect("JSON policy");
        assert!(p.allows(&request(&user("a", &[]), "get - images x")));
    }

    fn rule_error(text: &str) -> (usize, String) {
        match Policy::parse(text) {
            Err(PolicyError::Rule { index, reason }) => (index, reason),
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn unusable_rules_are_rejected_by_index() {
        let good = "- users: [a]\n  verbs: [get]\n  resources: [images]\n";
        let (index, reason) = rule_error("rules:\n- verbs: [get]\n  resources: [images]\n");
        assert_eq!(index, 0);
        assert!(
            reason.contains("users, groups or serviceAccounts"),
            "{reason}"
        );
        let both = "- users: [a]\n  verbs: [get]\n  resources: [images]\n  nonResourceURLs: [/x]\n";
        let text = format!("rules:\n{good}{good}{both}");
        let err = Policy::parse(&text).expect_err("both kinds in one rule");
        assert_eq!(
            err.to_string(),
            "rules[2]: resources and nonResourceURLs cannot be in the same rule"
        );
        let (_, reason) = rule_error("rules:\n- users: [a]\n  resources: [images]\n");
        assert_eq!(reason, "verbs is required");
        let (_, reason) = rule_error("rules:\n- users: [a]\n  verbs: [get]\n");
        assert_eq!(reason, "one of resources or nonResourceURLs is required");
        let (_, reason) = rule_error(
            "rules:\n- users: [a]\n  verbs: [get]\n  namespaces: [x]\n  nonResourceURLs: [/x]\n",
        );
        assert!(
            reason.starts_with("apiGroups, namespaces and resourceNames"),
            "{reason}"
        );
        let (_, reason) =
            rule_error("rules:\n- serviceAccounts: [builder]\n  verbs: [get]\n  resources: [x]\n");
        assert_eq!(
            reason,
            r#"serviceAccounts: "builder" is not "namespace:name""#
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = Policy::parse("rules:\n- users: [a]\n  verb: [get]\n  resources: [x]\n")
            .expect_err("verb is not a field");
        assert!(matches!(err, PolicyError::Syntax(_)));
        assert!(err.to_string().contains("unknown field `verb`"), "{err}");
        let err = Policy::parse("rule: []\n").expect_err("rule is not a field");
        assert!(matches!(err, PolicyError::Syntax(_)));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policy.yaml");
        let missing = Policy::from_file(&path).expect_err("no file yet");
        assert!(matches!(missing, PolicyError::Read { .. }));
        std::fs::write(&path, "rules:\n- users: [a]\n  resources: [x]\n").expect("write");
        let err = Policy::from_file(&path).expect_err("no verbs");
        assert_eq!(
            err.to_string(),
            format!(
                "policy file {}: rules[0]: verbs is required",
                path.display()
            )
        );
        std::fs::write(&path, POLICY).expect("write");
        assert_eq!(Policy::from_file(&path).expect("valid file").rules.len(), 4);
    }

    #[test]
    fn basic_user_grants_discovery_health_and_self_reviews() {
        let someone = user("dave", &[AUTHENTICATED]);
        let anonymous = UserInfo::anonymous();
        for path in [
            "/api",
            "/apis",
            "/apis/image.openshift.io/v1",
            "/openapi/v2",
            "/version",
        ] {
            assert!(
                BasicUser::allows(&path_request(&someone, "get", path)),
                "{path}"
            );
        }
        for path in ["/healthz", "/livez/ping", "/readyz", "/version/"] {
            assert!(
                BasicUser::allows(&path_request(&someone, "get", path)),
                "{path}"
            );
            assert!(
                BasicUser::allows(&path_request(&anonymous, "get", path)),
                "{path}"
            );
        }
        assert!(!BasicUser::allows(&path_request(
            &anonymous, "get", "/apis"
        )));
        assert!(!BasicUser::allows(&path_request(
            &someone, "get", "/metrics"
        )));
        assert!(!BasicUser::allows(&path_request(&someone, "post", "/apis")));
        assert!(!BasicUser::allows(&path_request(&someone, "get", "/apisx")));

        let review = |who: &UserInfo, verb: &str, group: &str, resource: &str| Attributes {
            user: who.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                ..ResourceAttributes::default()
            }),
            path: String::new(),
        };
        for &(group, resource) in SELF_REVIEWS {
            assert!(BasicUser::allows(&review(
                &someone, "create", group, resource
            )));
            assert!(!BasicUser::allows(&review(
                &anonymous, "create", group, resource
            )));
            assert!(!BasicUser::allows(&review(
                &someone, "list", group, resource
            )));
        }
        assert!(!BasicUser::allows(&review(
            &someone,
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews"
        )));
        assert!(!BasicUser::allows(&review(
            &someone,
            "create",
            "authentication.k8s.io",
            "selfsubjectaccessreviews"
        )));
    }

    #[tokio::test]
    async fn basic_user_has_no_opinion_otherwise() {
        let someone = user("dave", &[AUTHENTICATED]);
        assert_eq!(
            BasicUser
                .authorize(&path_request(&someone, "get", "/apis"))
                .await,
            Decision::Allow
        );
        let stream = request(&someone, "get a imagestreams x");
        assert_eq!(
            BasicUser.authorize(&stream).await,
            Decision::NoOpinion(String::new())
        );
    }
}
