//! Delegated authentication and authorization (spec §8.4 item 3, §8.5): bearer tokens are
//! checked by a TokenReview and requests by a SubjectAccessReview posted to kube-apiserver,
//! as k8s.io/apiserver's delegating authenticator and authorizer do, each answer cached for a
//! while (`--authentication-token-webhook-cache-ttl`,
//! `--authorization-webhook-cache-{authorized,unauthorized}-ttl`, 10 s each in kube).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as ReviewResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::PostParams;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Attributes, Authenticator, Authorizer, Credentials, Decision, Outcome};
use crate::resource::UserInfo;

/// How long one review may take (k8s.io/apiserver's delegating clients wait 10 s).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Most answers kept per cache; a full cache drops expired answers, then the least recently
/// used.
const CACHE_CAPACITY: usize = 4096;

/// Why a review got no answer.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Request(Box<kube::Error>),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Authenticates bearer tokens by TokenReview.
pub struct TokenReviewAuthenticator {
    client: kube::Client,
    ttl: Duration,
    audiences: Vec<String>,
    /// Keyed by the token's SHA-256, so no raw token stays in memory longer than a request.
    cache: TtlCache<[u8; 32], Outcome>,
}

impl TokenReviewAuthenticator {
    /// `ttl` is how long an answer (yes or no) is reused; zero disables the cache.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        TokenReviewAuthenticator {
            client,
            ttl,
            audiences: Vec::new(),
            cache: TtlCache::new(CACHE_CAPACITY),
        }
    }

    /// Asks kube-apiserver to check tokens for these audiences (`--authentication-audiences`
    /// in kube); none means the API server's own.
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Self {
        self.audiences = audiences;
        self
    }

    async fn review(&self, token: &str) -> Result<Outcome, WebhookError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = post(&self.client, &review).await?;
        Ok(outcome_of(answer.status))
    }
}

#[async_trait]
impl Authenticator for TokenReviewAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let Some(token) = credentials.bearer_token() else {
            return Outcome::NotMine;
        };
        let key = token_key(token);
        if let Some(cached) = self.cache.get(&key, Instant::now()) {
            return cached;
        }
        match self.review(token).await {
            Ok(outcome) => {
                self.cache
                    .insert(key, outcome.clone(), self.ttl, Instant::now());
                outcome
            }
            // Not cached: the next request asks again.
            Err(error) => {
                tracing::warn!(%error, "token review failed");
                Outcome::Rejected(format!("token review: {error}"))
            }
        }
    }
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The authenticator's answer from a TokenReview's status.
fn outcome_of(status: Option<TokenReviewStatus>) -> Outcome {
    let status = status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "token not authenticated".to_string());
        return Outcome::Rejected(why);
    }
    let user = status.user.unwrap_or_default();
    Outcome::User(
        UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }
        .authenticated(),
    )
}

/// Authorizes requests by SubjectAccessReview.
pub struct SubjectAccessReviewAuthorizer {
    client: kube::Client,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: TtlCache<Attributes, Decision>,
}

impl SubjectAccessReviewAuthorizer {
    /// Allowed answers are reused for `allowed_ttl`, others for `denied_ttl`; zero disables
    /// caching of that kind of answer.
    pub fn new(client: kube::Client, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        SubjectAccessReviewAuthorizer {
            client,
            allowed_ttl,
            denied_ttl,
            cache: TtlCache::new(CACHE_CAPACITY),
        }
    }

    async fn review(&self, attributes: &Attributes) -> Result<Decision, WebhookError> {
        let review = SubjectAccessReview {
            spec: review_spec(attributes),
            ..SubjectAccessReview::default()
        };
        let answer = post(&self.client, &review).await?;
        if let Some(error) = answer
            .status
            .as_ref()
            .and_then(|s| s.evaluation_error.as_deref())
            .filter(|e| !e.is_empty())
        {
            tracing::debug!(%error, "subject access review evaluation error");
        }
        Ok(decision_of(answer.status.as_ref()))
    }
}

#[async_trait]
impl Authorizer for SubjectAccessReviewAuthorizer {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        if let Some(cached) = self.cache.get(attributes, Instant::now()) {
            return cached;
        }
        match self.review(attributes).await {
            Ok(decision) => {
                let ttl = match decision {
                    Decision::Allow => self.allowed_ttl,
                    Decision::Deny(_) | Decision::NoOpinion(_) => self.denied_ttl,
                };
                self.cache
                    .insert(attributes.clone(), decision.clone(), ttl, Instant::now());
                decision
            }
            // Not cached, and no opinion: with nobody else allowing, the request is denied.
            Err(error) => {
                tracing::warn!(%error, "subject access review failed");
                Decision::NoOpinion(format!(
                    "error contacting the authorization webhook: {error}"
                ))
            }
        }
    }
}

/// The SubjectAccessReview spec of a request; empty fields are left out, as Go's `omitempty`
/// does.
fn review_spec(attributes: &Attributes) -> SubjectAccessReviewSpec {
    let user = &attributes.user;
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: non_empty(&user.uid),
        groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
        ..SubjectAccessReviewSpec::default()
    };
    match &attributes.resource {
        Some(r) => {
            spec.resource_attributes = Some(ReviewResourceAttributes {
                namespace: non_empty(&r.namespace),
                verb: non_empty(&attributes.verb),
                group: non_empty(&r.group),
                version: non_empty(&r.version),
                resource: non_empty(&r.resource),
                subresource: non_empty(&r.subresource),
                name: non_empty(&r.name),
                ..ReviewResourceAttributes::default()
            });
        }
        None => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: non_empty(&attributes.path),
                verb: non_empty(&attributes.verb),
            });
        }
    }
    spec
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// The authorizer's answer from a SubjectAccessReview's status.
fn decision_of(status: Option<&SubjectAccessReviewStatus>) -> Decision {
    let Some(status) = status else {
        return Decision::NoOpinion(String::new());
    };
    let reason = status.reason.clone().unwrap_or_default();
    if status.allowed {
        Decision::Allow
    } else if status.denied == Some(true) {
        Decision::Deny(reason)
    } else {
        Decision::NoOpinion(reason)
    }
}

/// Creates a review object on kube-apiserver and returns the answered object.
async fn post<R>(client: &kube::Client, review: &R) -> Result<R, WebhookError>
where
    R: Resource + Clone + DeserializeOwned + Serialize + Debug,
    R::DynamicType: Default,
{
    let api = Api::<R>::all(client.clone());
    match tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), review)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(WebhookError::Request(Box::new(error))),
        Err(_) => Err(WebhookError::Timeout(REVIEW_TIMEOUT)),
    }
}

/// A bounded map whose entries expire, least recently used out first when full (kube's
/// `LRUExpireCache`); the caller passes the time, so tests need no clock.
struct TtlCache<K, V> {
    entries: Mutex<Entries<K, V>>,
    capacity: usize,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Counts uses: an entry's `used` is this count at its last insert or hit.
    uses: u64,
}

struct Entry<V> {
    expires: Instant,
    value: V,
    used: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                uses: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        // Entries are inserted whole, so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        entries.uses += 1;
        let used = entries.uses;
        let entry = entries.map.get_mut(key)?;
        if entry.expires <= now {
            return None;
        }
        entry.used = used;
        Some(entry.value.clone())
    }

    fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        let Some(expires) = now.checked_add(ttl).filter(|_| !ttl.is_zero()) else {
            return;
        };
        let mut entries = self.lock();
        if !entries.map.contains_key(&key) && entries.map.len() >= self.capacity {
            make_room(&mut entries.map, self.capacity, now);
        }
        entries.uses += 1;
        let used = entries.uses;
        entries.map.insert(
            key,
            Entry {
                expires,
                value,
                used,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

/// Drops expired entries, then the least recently used, until one more fits. Dropping the
/// first ones a `HashMap` yields instead would drop the same few slots again and again, hot
/// or not. A scan: it runs only when the cache is full and a review has just been answered,
/// which costs far more.
fn make_room<K: Hash + Eq + Clone, V>(
    entries: &mut HashMap<K, Entry<V>>,
    capacity: usize,
    now: Instant,
) {
    entries.retain(|_, entry| entry.expires > now);
    while entries.len() >= capacity {
        let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, entry)| entry.used)
            .map(|(key, _)| key.clone())
        else {
            break;
        };
        entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo as ReviewUser;
    use serde_json::json;

    use super::*;
    use crate::auth::ResourceAttributes;

    #[test]
    fn cache_answers_until_expiry() {
        let cache = TtlCache::new(8);
        let t0 = Instant::now();
        cache.insert("k", 1, Duration::from_secs(10), t0);
        assert_eq!(cache.get(&"k", t0), Some(1));
        assert_eq!(cache.get(&"k", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"k", t0 + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&"other", t0), None);
        cache.insert(
            "k",
            2,
            Duration::from_secs(10),
            t0 + Duration::from_secs(20),
        );
        assert_eq!(cache.get(&"k", t0 + Duration::from_secs(21)), Some(2));
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = TtlCache::new(8);
        cache.insert("k", 1, Duration::ZERO, Instant::now());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn full_cache_drops_expired_entries_first_then_the_least_recently_used() {
        let cache = TtlCache::new(3);
        let t0 = Instant::now();
        cache.insert(1, "short", Duration::from_secs(1), t0);
        cache.insert(2, "long", Duration::from_secs(100), t0);
        cache.insert(3, "long", Duration::from_secs(100), t0);
        let later = t0 + Duration::from_secs(5);
        cache.insert(4, "new", Duration::from_secs(100), later);
        assert_eq!(cache.len(), 3);
        for key in [2, 3, 4] {
            assert!(cache.get(&key, later).is_some(), "{key} kept");
        }
        // 2, 3 and 4 were just used in that order: 2 goes.
        cache.insert(5, "newer", Duration::from_secs(100), later);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&2, later), None, "least recently used");
        assert_eq!(cache.get(&5, later), Some("newer"));
        // Replacing a present key never evicts another.
        cache.insert(5, "again", Duration::from_secs(100), later);
        assert_eq!(cache.len(), 3);
    }

    /// A few hot keys looked up between many keys seen once keep their entries, whichever
    /// way the keys hash.
    #[test]
    fn hot_entries_outlast_a_stream_of_keys_seen_once() {
        let cache = TtlCache::new(64);
        let now = Instant::now();
        let ttl = Duration::from_secs(100);
        let hot: Vec<String> = (0..16).map(|i| format!("hot-{i}")).collect();
        for key in &hot {
            cache.insert(key.clone(), 0, ttl, now);
        }
        for round in 0..100 {
            for once in 0..8 {
                cache.insert(format!("once-{round}-{once}"), 0, ttl, now);
            }
            for key in &hot {
                assert_eq!(
                    cache.get(key, now),
                    Some(0),
                    "{key} dropped in round {round}"
                );
            }
        }
    }

    #[test]
    fn token_keys_are_digests() {
        assert_eq!(token_key("a"), token_key("a"));
        assert_ne!(token_key("a"), token_key("b"));
        // SHA-256("abc"), FIPS 180-2's example.
        assert_eq!(token_key("abc")[..4], [0xba_u8, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn authenticated_review_gives_the_user_with_system_authenticated() {
        let status = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(ReviewUser {
                username: Some("system:serviceaccount:ns:sa".into()),
                uid: Some("u-1".into()),
                groups: Some(vec!["system:serviceaccounts".into()]),
                extra: Some(BTreeMap::from([(
                    "authentication.kubernetes.io/pod-name".to_string(),
                    vec!["p".to_string()],
                )])),
            }),
            ..TokenReviewStatus::default()
        };
        let Outcome::User(user) = outcome_of(Some(status)) else {
            panic!("a user expected");
        };
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert_eq!(user.uid, "u-1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["p"]);
    }

    #[test]
    fn unauthenticated_review_is_a_rejection_with_its_error() {
        let with_error = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token expired".into()),
            ..TokenReviewStatus::default()
        };
        assert_eq!(
            outcome_of(Some(with_error)),
            Outcome::Rejected("token expired".into())
        );
        assert_eq!(
            outcome_of(None),
            Outcome::Rejected("token not authenticated".into())
        );
    }

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: "a-1".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".to_string(), vec!["s1".to_string()])]),
        }
    }

    #[test]
    fn resource_review_spec_carries_user_and_resource() {
        let attributes = Attributes {
            user: alice(),
            verb: "list".into(),
            resource: Some(ResourceAttributes {
                group: "image.openshift.io".into(),
                version: "v1".into(),
                resource: "imagestreams".into(),
                subresource: String::new(),
                namespace: "ns".into(),
                name: String::new(),
            }),
            path: "/apis/image.openshift.io/v1/namespaces/ns/imagestreams".into(),
        };
        let spec = serde_json::to_value(review_spec(&attributes)).expect("serialize");
        assert_eq!(
            spec,
            json!({
                "user": "alice",
                "uid": "a-1",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["s1"]},
                "resourceAttributes": {
                    "namespace": "ns", "verb": "list", "group": "image.openshift.io",
                    "version": "v1", "resource": "imagestreams",
                },
            })
        );
    }

    #[test]
    fn non_resource_review_spec_carries_path_and_verb() {
        let attributes = Attributes {
            user: UserInfo {
                name: "system:aggregator".into(),
                ..UserInfo::default()
            },
            verb: "get".into(),
            resource: None,
            path: "/openapi/v2".into(),
        };
        let spec = serde_json::to_value(review_spec(&attributes)).expect("serialize");
        assert_eq!(
            spec,
            json!({
                "user": "system:aggregator",
                "nonResourceAttributes": {"path": "/openapi/v2", "verb": "get"},
            })
        );
    }

    #[test]
    fn decisions_from_review_status() {
        let status = |allowed, denied, reason: Option<&str>| SubjectAccessReviewStatus {
            allowed,
            denied,
            reason: reason.map(str::to_string),
            ..SubjectAccessReviewStatus::default()
        };
        assert_eq!(
            decision_of(Some(&status(true, None, Some("RBAC: allowed")))),
            Decision::Allow
        );
        assert_eq!(
            decision_of(Some(&status(false, Some(true), Some("denied by policy")))),
            Decision::Deny("denied by policy".into())
        );
        assert_eq!(
            decision_of(Some(&status(
                false,
                Some(false),
                Some("no RBAC policy matched")
            ))),
            Decision::NoOpinion("no RBAC policy matched".into())
        );
        assert_eq!(
            decision_of(Some(&status(false, None, None))),
            Decision::NoOpinion(String::new())
        );
        assert_eq!(decision_of(None), Decision::NoOpinion(String::new()));
    }
}
