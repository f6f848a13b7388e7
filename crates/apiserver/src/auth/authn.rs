//! Authentication (spec §8.4): a chain of authenticators tried in kube's order, each looking
//! at what the request presents (headers, the TLS client certificate).

use std::sync::Arc;

use apimachinery::errors::ApiError;
use async_trait::async_trait;
use axum::http::HeaderMap;
use rustls::pki_types::CertificateDer;

use crate::resource::UserInfo;

/// The TLS client certificate chain a connection presented, leaf first. The server's acceptor
/// puts it into every request's extensions; the handshake only proved the client holds the
/// key, so authenticators verify the chain against their own CA.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// What a request presents to the authenticators.
pub struct Credentials<'a> {
    pub headers: &'a HeaderMap,
    pub peer: Option<&'a PeerCertificates>,
}

impl Credentials<'_> {
    /// The token of an `Authorization: Bearer` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get("authorization")?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ")?.trim();
        (!token.is_empty()).then_some(token)
    }
}

/// One authenticator's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request is this user's.
    User(UserInfo),
    /// Nothing this authenticator understands (no token, no certificate): ask the next one.
    NotMine,
    /// Credentials this authenticator understands but does not accept (an unknown token, a
    /// certificate of the wrong CA or name). The next ones are still asked; if none accepts,
    /// the request gets 401 even when anonymous requests are allowed.
    Rejected(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome;
}

/// The chain: the first authenticator that vouches for the request wins (kube's union);
/// anonymous only when enabled and nobody rejected anything (kube's fail-on-error wrapper).
pub struct Authentication {
    chain: Vec<Arc<dyn Authenticator>>,
    anonymous: bool,
}

impl Authentication {
    pub fn new(chain: Vec<Arc<dyn Authenticator>>, anonymous: bool) -> Self {
        Authentication { chain, anonymous }
    }

    /// The request's user, or why there is none.
    pub async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<UserInfo, Failure> {
        let mut rejections = Vec::new();
        for authenticator in &self.chain {
            match authenticator.authenticate(credentials).await {
                Outcome::User(user) => return Ok(user),
                Outcome::NotMine => {}
                Outcome::Rejected(why) => rejections.push(why),
            }
        }
        if rejections.is_empty() && self.anonymous {
            return Ok(UserInfo::anonymous());
        }
        Err(Failure { rejections })
    }
}

/// Nobody vouched for the request: a 401 (the reasons go to the log, never to the client).
#[derive(Debug)]
pub struct Failure {
    pub rejections: Vec<String>,
}

impl From<Failure> for ApiError {
    fn from(_: Failure) -> ApiError {
        ApiError::Unauthorized
    }
}

#[async_trait]
impl Authenticator for super::TokenAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let Some(token) = credentials.bearer_token() else {
            return Outcome::NotMine;
        };
        match self.user(token) {
            Some(user) => Outcome::User(user),
            None => Outcome::Rejected("invalid bearer token".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Outcome);

    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _: &Credentials<'_>) -> Outcome {
            self.0.clone()
        }
    }

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            ..UserInfo::default()
        }
    }

    async fn run(chain: Vec<Outcome>, anonymous: bool) -> Result<UserInfo, Failure> {
        let chain = chain
            .into_iter()
            .map(|o| Arc::new(Fixed(o)) as Arc<dyn Authenticator>)
            .collect();
        let headers = HeaderMap::new();
        Authentication::new(chain, anonymous)
            .authenticate(&Credentials {
                headers: &headers,
                peer: None,
            })
            .await
    }

    #[tokio::test]
    async fn first_user_wins_and_rejections_only_matter_when_nobody_vouches() {
        let got = run(
            vec![
                Outcome::NotMine,
                Outcome::Rejected("bad cert".into()),
                Outcome::User(user("a")),
                Outcome::User(user("b")),
            ],
            false,
        )
        .await;
        assert_eq!(got.expect("user").name, "a");
        assert!(run(vec![Outcome::NotMine], false).await.is_err());
        assert_eq!(
            run(vec![Outcome::NotMine], true).await.expect("anon").name,
            "system:anonymous"
        );
        let failed = run(vec![Outcome::Rejected("bad token".into())], true)
            .await
            .expect_err("a bad token is never anonymous");
        assert_eq!(failed.rejections, ["bad token"]);
    }

    #[tokio::test]
    async fn token_file_users_by_bearer_header() {
        let tokens = super::super::TokenAuthenticator::parse("t1,alice,u1,dev\n").expect("parse");
        let mut headers = HeaderMap::new();
        async fn outcome_of(tokens: &super::super::TokenAuthenticator, h: &HeaderMap) -> Outcome {
            let c = Credentials {
                headers: h,
                peer: None,
            };
            tokens.authenticate(&c).await
        }
        assert_eq!(outcome_of(&tokens, &headers).await, Outcome::NotMine);
        headers.insert("authorization", "Bearer nope".parse().expect("header"));
        assert!(matches!(
            outcome_of(&tokens, &headers).await,
            Outcome::Rejected(_)
        ));
        headers.insert("authorization", "Bearer t1".parse().expect("header"));
        let Outcome::User(u) = outcome_of(&tokens, &headers).await else {
            panic!("alice expected");
        };
        assert_eq!(u.groups, ["dev", "system:authenticated"]);
    }
}
