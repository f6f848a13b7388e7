//! Impersonation (kube's `WithImpersonation` filter): after authentication, a user may act as
//! another one with `Impersonate-User`, `Impersonate-Uid`, `Impersonate-Group` and
//! `Impersonate-Extra-<key>` headers, provided the authorizer lets it `impersonate` each of the
//! requested identities.

use std::collections::BTreeMap;

use apimachinery::errors::ApiError;
use apimachinery::validation::{dns1123_label_errors, dns1123_subdomain_errors};
use axum::http::{HeaderMap, HeaderValue};

use super::authz::{forbidden, Attributes, Authorizer, Decision, ResourceAttributes};
use crate::resource::UserInfo;

const HEADER_PREFIX: &str = "impersonate-";
const USER_HEADER: &str = "impersonate-user";
const UID_HEADER: &str = "impersonate-uid";
const GROUP_HEADER: &str = "impersonate-group";
/// Header names are lower-case in a `HeaderMap`.
const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const ANONYMOUS: &str = "system:anonymous";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum ImpersonationError {
    /// The actor may not take on one of the requested identities: kube's 403 Status.
    #[error("{0}")]
    Forbidden(ApiError),
    /// Groups, extras or a uid without a user. kube answers a plain-text 500 with this
    /// message.
    #[error("{0}")]
    Malformed(String),
}

/// Whether a header asks for impersonation (to strip them once they are used).
pub fn is_impersonation_header(name: &str) -> bool {
    name.as_bytes()
        .get(..HEADER_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(HEADER_PREFIX.as_bytes()))
}

/// The user `actor` acts as, if the headers ask for one and every requested identity is
/// allowed; `path` is the request's, for complete authorization attributes.
pub async fn impersonate(
    actor: &UserInfo,
    headers: &HeaderMap,
    authorizer: &dyn Authorizer,
    path: &str,
) -> Result<Option<UserInfo>, ImpersonationError> {
    let requested = Requested::from_headers(headers);
    if requested.is_empty() {
        return Ok(None);
    }
    let Some(name) = requested.user.clone() else {
        return Err(ImpersonationError::Malformed(format!(
            "requested {} without impersonating a user",
            requested.describe()
        )));
    };
    for resource in requested.checks(&name) {
        let attributes = Attributes {
            user: actor.clone(),
            verb: "impersonate".to_string(),
            resource: Some(resource),
            path: path.to_string(),
        };
        match authorizer.authorize(&attributes).await {
            Decision::Allow => {}
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                tracing::debug!(actor = %actor.name, %reason, "impersonation forbidden");
                return Err(ImpersonationError::Forbidden(forbidden(
                    &attributes,
                    &reason,
                )));
            }
        }
    }
    let user = requested.into_user(name);
    tracing::debug!(actor = %actor.name, acting_as = %user.name, "impersonating");
    Ok(Some(user))
}

/// What the `Impersonate-*` headers ask for.
#[derive(Debug)]
struct Requested {
    user: Option<String>,
    uid: Option<String>,
    groups: Vec<String>,
    /// (key, value) pairs, one per header value.
    extra: Vec<(String, String)>,
}

impl Requested {
    fn from_headers(headers: &HeaderMap) -> Requested {
        // Like Go's `Header.Get`: the first value; an empty one asks for nothing.
        let first = |name: &str| headers.get(name).map(header_text).filter(|v| !v.is_empty());
        let groups = headers
            .get_all(GROUP_HEADER)
            .iter()
            .map(header_text)
            .collect();
        let mut extra = Vec::new();
        for name in headers.keys() {
            let Some(suffix) = name.as_str().strip_prefix(EXTRA_HEADER_PREFIX) else {
                continue;
            };
            let key = path_unescape(&suffix.to_ascii_lowercase());
            for value in headers.get_all(name) {
                extra.push((key.clone(), header_text(value)));
            }
        }
        Requested {
            user: first(USER_HEADER),
            uid: first(UID_HEADER),
            groups,
            extra,
        }
    }

    fn is_empty(&self) -> bool {
        self.user.is_none() && self.uid.is_none() && self.groups.is_empty() && self.extra.is_empty()
    }

    /// The requested identities besides the user, for the malformed-request message.
    fn describe(&self) -> String {
        let groups = self.groups.iter().map(|g| format!("group {g:?}"));
        let extra = self.extra.iter().map(|(k, v)| format!("extra {k:?}={v:?}"));
        let uid = self.uid.iter().map(|u| format!("uid {u:?}"));
        let parts: Vec<String> = groups.chain(extra).chain(uid).collect();
        format!("[{}]", parts.join(", "))
    }

    /// What the actor must be allowed to impersonate, in kube's order.
    fn checks(&self, user: &str) -> Vec<ResourceAttributes> {
        let mut checks = vec![user_check(user)];
        checks.extend(self.groups.iter().map(|g| core("groups", g)));
        checks.extend(self.extra.iter().map(|(key, value)| ResourceAttributes {
            subresource: key.clone(),
            ..authentication("userextras", value)
        }));
        checks.extend(self.uid.iter().map(|uid| authentication("uids", uid)));
        checks
    }

    /// The impersonated user. Requested groups are the authority; without any, a service
    /// account gets its fixed groups. Everyone but anonymous is authenticated unless the
    /// groups say otherwise.
    fn into_user(self, name: String) -> UserInfo {
        let mut groups = self.groups;
        if groups.is_empty() {
            if let Some((namespace, _)) = service_account(&name) {
                groups = vec![
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{namespace}"),
                ];
            }
        }
        if name == ANONYMOUS {
            if !contains(&groups, UNAUTHENTICATED) {
                groups.push(UNAUTHENTICATED.to_string());
            }
        } else if !contains(&groups, AUTHENTICATED) && !contains(&groups, UNAUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in self.extra {
            extra.entry(key).or_default().push(value);
        }
        UserInfo {
            name,
            uid: self.uid.unwrap_or_default(),
            groups,
            extra,
        }
    }
}

fn contains(groups: &[String], group: &str) -> bool {
    groups.iter().any(|g| g == group)
}

/// A header value as text; Go keeps bytes that are not UTF-8, we replace them.
fn header_text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// `system:serviceaccount:<ns>:<name>` as kube's `SplitUsername` accepts it.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let (namespace, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    let valid = !name.contains(':')
        && dns1123_label_errors(namespace).is_empty()
        && dns1123_subdomain_errors(name).is_empty();
    valid.then_some((namespace, name))
}

fn user_check(user: &str) -> ResourceAttributes {
    match service_account(user) {
        Some((namespace, name)) => ResourceAttributes {
            namespace: namespace.to_string(),
            ..core("serviceaccounts", name)
        },
        None => core("users", user),
    }
}

/// A resource of the core group (users, groups, service accounts).
fn core(resource: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        group: String::new(),
        version: "v1".to_string(),
        resource: resource.to_string(),
        name: name.to_string(),
        ..ResourceAttributes::default()
    }
}

/// A resource of `authentication.k8s.io` (uids, user extras).
fn authentication(resource: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        group: AUTHENTICATION_GROUP.to_string(),
        ..core(resource, name)
    }
}

/// Go's `url.PathUnescape`, keeping the raw text when it is malformed (as kube does for
/// extra keys).
fn path_unescape(encoded: &str) -> String {
    percent_decode(encoded).unwrap_or_else(|| encoded.to_string())
}

fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let high = hex_digit(*bytes.get(i + 1)?)?;
            let low = hex_digit(*bytes.get(i + 2)?)?;
            out.push((high << 4) | low);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// Allows impersonating the listed (resource, name) pairs and records what it was asked.
    struct Fake {
        allowed: Vec<(&'static str, &'static str)>,
        asked: Mutex<Vec<Attributes>>,
    }

    impl Fake {
        fn allowing(allowed: &[(&'static str, &'static str)]) -> Fake {
            Fake {
                allowed: allowed.to_vec(),
                asked: Mutex::new(Vec::new()),
            }
        }

        fn asked(&self) -> Vec<ResourceAttributes> {
            let asked = self.asked.lock().expect("not poisoned");
            asked.iter().filter_map(|a| a.resource.clone()).collect()
        }
    }

    #[async_trait]
    impl Authorizer for Fake {
        async fn authorize(&self, attributes: &Attributes) -> Decision {
            self.asked
                .lock()
                .expect("not poisoned")
                .push(attributes.clone());
            let allowed = attributes.verb == "impersonate"
                && attributes.resource.as_ref().is_some_and(|r| {
                    self.allowed
                        .iter()
                        .any(|(resource, name)| r.resource == *resource && r.name == *name)
                });
            if allowed {
                Decision::Allow
            } else {
                Decision::NoOpinion(String::new())
            }
        }
    }

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            groups: vec![AUTHENTICATED.into()],
            ..UserInfo::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    async fn run(
        pairs: &[(&'static str, &'static str)],
        authorizer: &Fake,
    ) -> Result<Option<UserInfo>, ImpersonationError> {
        impersonate(&alice(), &headers(pairs), authorizer, "/apis/x").await
    }

    #[tokio::test]
    async fn nothing_requested_is_no_impersonation() {
        let fake = Fake::allowing(&[]);
        let got = run(&[("accept", "application/json")], &fake).await;
        assert!(matches!(got, Ok(None)));
        assert!(fake.asked().is_empty());
    }

    #[tokio::test]
    async fn an_allowed_user_becomes_the_request_user() {
        let fake = Fake::allowing(&[("users", "bob")]);
        let user = run(&[("impersonate-user", "bob")], &fake)
            .await
            .expect("allowed")
            .expect("impersonated");
        assert_eq!(user.name, "bob");
        assert_eq!(user.groups, [AUTHENTICATED]);
        assert_eq!(user.uid, "");
        assert_eq!(fake.asked(), [core("users", "bob")]);
        let asked = fake.asked.lock().expect("not poisoned");
        assert_eq!(asked[0].user.name, "alice");
        assert_eq!(asked[0].path, "/apis/x");
    }

    #[tokio::test]
    async fn denials_are_kubes_forbidden() {
        let fake = Fake::allowing(&[]);
        let err = run(&[("impersonate-user", "bob")], &fake)
            .await
            .expect_err("not allowed");
        let e = match err {
            ImpersonationError::Forbidden(e) => e,
            other => panic!("forbidden expected, got {other:?}"),
        };
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );

        let fake = Fake::allowing(&[("users", "bob")]);
        let pairs = [
            ("impersonate-user", "bob"),
            ("impersonate-group", "dev"),
            ("impersonate-group", "admins"),
        ];
        let Err(ImpersonationError::Forbidden(e)) = run(&pairs, &fake).await else {
            panic!("the groups are not allowed");
        };
        assert_eq!(
            e.to_string(),
            "groups \"dev\" is forbidden: User \"alice\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
        );
        // The first denial ends it.
        assert_eq!(fake.asked().len(), 2);
    }

    #[tokio::test]
    async fn requested_groups_are_the_authority() {
        let fake = Fake::allowing(&[("users", "bob"), ("groups", "dev"), ("groups", "ops")]);
        let pairs = [
            ("impersonate-user", "bob"),
            ("impersonate-group", "dev"),
            ("impersonate-group", "ops"),
        ];
        let user = run(&pairs, &fake).await.expect("allowed").expect("user");
        assert_eq!(user.groups, ["dev", "ops", AUTHENTICATED]);
        let fake = Fake::allowing(&[("users", "bob"), ("groups", UNAUTHENTICATED)]);
        let pairs = [
            ("impersonate-user", "bob"),
            ("impersonate-group", UNAUTHENTICATED),
        ];
        let user = run(&pairs, &fake).await.expect("allowed").expect("user");
        assert_eq!(user.groups, [UNAUTHENTICATED]);
    }

    #[tokio::test]
    async fn service_accounts_get_their_groups() {
        let fake = Fake::allowing(&[("serviceaccounts", "builder"), ("groups", "dev")]);
        let sa = "system:serviceaccount:ci:builder";
        let user = run(&[("impersonate-user", sa)], &fake)
            .await
            .expect("allowed")
            .expect("user");
        assert_eq!(user.name, sa);
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                AUTHENTICATED
            ]
        );
        let asked = fake.asked();
        let check = &asked[0];
        assert_eq!(
            (
                check.resource.as_str(),
                check.namespace.as_str(),
                check.name.as_str()
            ),
            ("serviceaccounts", "ci", "builder")
        );
        let pairs = [("impersonate-user", sa), ("impersonate-group", "dev")];
        let user = run(&pairs, &fake).await.expect("allowed").expect("user");
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        // Not a valid service account name: an ordinary user.
        assert_eq!(
            user_check("system:serviceaccount:Bad:x"),
            core("users", "system:serviceaccount:Bad:x")
        );
        assert_eq!(user_check("system:serviceaccount:a:b:c").resource, "users");
    }

    #[tokio::test]
    async fn anonymous_is_unauthenticated() {
        let fake = Fake::allowing(&[("users", ANONYMOUS), ("groups", UNAUTHENTICATED)]);
        let user = run(&[("impersonate-user", ANONYMOUS)], &fake)
            .await
            .expect("allowed")
            .expect("user");
        assert_eq!(user.groups, [UNAUTHENTICATED]);
        let pairs = [
            ("impersonate-user", ANONYMOUS),
            ("impersonate-group", UNAUTHENTICATED),
        ];
        let user = run(&pairs, &fake).await.expect("allowed").expect("user");
        assert_eq!(user.groups, [UNAUTHENTICATED]);
    }

    #[tokio::test]
    async fn extras_are_unescaped_and_uids_checked() {
        let fake = Fake::allowing(&[
            ("users", "bob"),
            ("userextras", "v1"),
            ("userextras", "v2"),
            ("userextras", "raw"),
            ("uids", "u-1"),
        ]);
        let pairs = [
            ("impersonate-user", "bob"),
            ("impersonate-extra-example.com%2fscope", "v1"),
            ("impersonate-extra-example.com%2fscope", "v2"),
            ("impersonate-extra-bad%zz", "raw"),
            ("impersonate-uid", "u-1"),
        ];
        let user = run(&pairs, &fake).await.expect("allowed").expect("user");
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.extra["example.com/scope"], ["v1", "v2"]);
        assert_eq!(user.extra["bad%zz"], ["raw"]);
        let asked = fake.asked();
        let extra = asked
            .iter()
            .find(|r| r.resource == "userextras" && r.name == "v2")
            .expect("each extra value is checked");
        assert_eq!(extra.group, AUTHENTICATION_GROUP);
        assert_eq!(extra.subresource, "example.com/scope");
        assert_eq!(asked.last(), Some(&authentication("uids", "u-1")));
        assert_eq!(asked.len(), 5);
    }

    #[tokio::test]
    async fn identities_without_a_user_are_malformed() {
        let fake = Fake::allowing(&[]);
        let cases: [(&[(&'static str, &'static str)], &str); 3] = [
            (
                &[("impersonate-group", "dev")],
                "requested [group \"dev\"] without impersonating a user",
            ),
            (
                &[
                    ("impersonate-uid", "u-1"),
                    ("impersonate-extra-scopes", "view"),
                ],
                "requested [extra \"scopes\"=\"view\", uid \"u-1\"] without impersonating a user",
            ),
            (
                &[("impersonate-user", ""), ("impersonate-group", "dev")],
                "requested [group \"dev\"] without impersonating a user",
            ),
        ];
        for (pairs, message) in cases {
            match run(pairs, &fake).await {
                Err(ImpersonationError::Malformed(m)) => assert_eq!(m, message),
                other => panic!("malformed expected for {pairs:?}, got {other:?}"),
            }
        }
        assert!(fake.asked().is_empty());
    }

    #[test]
    fn impersonation_headers_by_prefix() {
        assert!(is_impersonation_header("Impersonate-User"));
        assert!(is_impersonation_header("impersonate-extra-scopes"));
        assert!(is_impersonation_header("IMPERSONATE-GROUP"));
        assert!(!is_impersonation_header("impersonate"));
        assert!(!is_impersonation_header("x-impersonate-user"));
        assert!(!is_impersonation_header("authorization"));
    }

    #[test]
    fn path_unescape_is_gos() {
        assert_eq!(path_unescape("a%2Fb%2fc"), "a/b/c");
        assert_eq!(path_unescape("a+b"), "a+b");
        assert_eq!(path_unescape("50%"), "50%");
        assert_eq!(path_unescape("%zz"), "%zz");
        assert_eq!(path_unescape("%c3%a9"), "é");
    }
}
