//! The request's identity and permission, as kube's filter chain decides them (spec §8.4,
//! §8.5): authentication, then impersonation, then authorization, then one user's share of the
//! in-flight pool. What they decided travels in the response's extensions to the audit layer.

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;

use super::render::{error_response, respond};
use super::Api;
use crate::auth::impersonation::{self, ImpersonationError};
use crate::auth::{Attributes, Credentials, Decision, PeerCertificates};
use crate::resource::UserInfo;

/// Reachable without credentials, so probes work however authentication is configured
/// (kube reaches the same end through anonymous requests and always-allowed paths).
const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// Who asked and what was decided, for the audit log.
#[derive(Clone, Debug, Default)]
pub(super) struct AuditContext {
    /// The authenticated user (the impersonator when impersonating).
    pub user: Option<UserInfo>,
    pub impersonated: Option<UserInfo>,
    pub attributes: Option<Attributes>,
    /// (allowed, reason) once the authorizer was asked.
    pub decision: Option<(bool, String)>,
}

fn anonymous_path(path: &str) -> bool {
    ANONYMOUS_PATHS
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Authentication, impersonation and authorization of one request. The user goes into the
/// request's extensions for the handlers.
pub(super) async fn authenticate_and_authorize(
    State(api): State<Arc<Api>>,
    mut req: HttpRequest,
    next: Next,
) -> Response {
    let mut audit = AuditContext::default();
    let outcome = identify(&api, &mut req, &mut audit).await;
    let response = match outcome {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(response) => response,
    };
    with_audit(response, audit)
}

fn with_audit(mut response: Response, audit: AuditContext) -> Response {
    if let Some(user) = audit.impersonated.clone().or_else(|| audit.user.clone()) {
        response.extensions_mut().insert(user);
    }
    response.extensions_mut().insert(audit);
    response
}

/// The user the request runs as, or the response refusing it.
async fn identify(
    api: &Api,
    req: &mut HttpRequest,
    audit: &mut AuditContext,
) -> Result<UserInfo, Response> {
    // Decoded as the handlers see it, so a percent-encoded name is authorized as itself.
    let path = super::router::decoded_path(req.uri().path())
        .unwrap_or_else(|| req.uri().path().to_string());
    let authenticated = {
        let credentials = Credentials {
            headers: req.headers(),
            peer: req.extensions().get::<PeerCertificates>(),
        };
        api.config.authentication.authenticate(&credentials).await
    };
    let user = match authenticated {
        Ok(user) => user,
        Err(_) if anonymous_path(&path) => UserInfo::anonymous(),
        Err(failure) => {
            tracing::debug!(path = %path, rejections = ?failure.rejections, "unauthorized");
            // kube knows what was asked before who asked: the audit event names it.
            let query = Query::parse(req.uri().query());
            audit.attributes = Some(Attributes::of_request(
                UserInfo::default(),
                req.method().as_str(),
                &path,
                &query,
            ));
            return Err(error_response(&ApiError::Unauthorized, false));
        }
    };
    audit.user = Some(user.clone());
    let authorizer = api.config.authorizer.as_ref();
    let user = match impersonation::impersonate(&user, req.headers(), authorizer, &path).await {
        Ok(None) => user,
        Ok(Some(impersonated)) => {
            audit.impersonated = Some(impersonated.clone());
            impersonated
        }
        Err(ImpersonationError::Forbidden(e)) => return Err(error_response(&e, false)),
        Err(ImpersonationError::Malformed(message)) => {
            return Err(internal_error_text(request_uri(req.uri()), &message))
        }
    };
    strip_identity_headers(req);
    let query = Query::parse(req.uri().query());
    let attributes = Attributes::of_request(user.clone(), req.method().as_str(), &path, &query);
    // Parsed once: the layers below and the handlers take it from here.
    req.extensions_mut().insert(query);
    let decision = authorizer.authorize(&attributes).await;
    audit.attributes = Some(attributes.clone());
    match decision {
        Decision::Allow => {
            audit.decision = Some((true, String::new()));
            Ok(user)
        }
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            audit.decision = Some((false, reason.clone()));
            let error = crate::auth::authz::forbidden(&attributes, &reason);
            Err(error_response(&error, false))
        }
    }
}

/// The request URI as kube reports it: path and query, whatever the HTTP version (an h2
/// request's URI also carries the scheme and authority).
pub(super) fn request_uri(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

/// Credentials and impersonation requests are consumed here; nothing below sees them.
fn strip_identity_headers(req: &mut HttpRequest) {
    let headers = req.headers_mut();
    headers.remove(header::AUTHORIZATION);
    let names: Vec<_> = headers
        .keys()
        .filter(|n| impersonation::is_impersonation_header(n.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// kube's `responsewriters.InternalError`: plain text, for malformed impersonation.
fn internal_error_text(uri: String, message: &str) -> Response {
    let body = format!("Internal Server Error: {uri:?}: {message}\n");
    let mut r = respond(500, "text/plain; charset=utf-8", Bytes::from(body), &[]);
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_health_paths_are_open() {
        for (path, open) in [
            ("/healthz", true),
            ("/readyz/etcd", true),
            ("/livez", true),
            ("/healthzz", false),
            ("/metrics", false),
            ("/apis", false),
        ] {
            assert_eq!(anonymous_path(path), open, "{path}");
        }
    }
}
