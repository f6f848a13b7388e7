//! Resource requests (spec §1, §4): parsing `/apis/...` paths, choosing the verb, checking it
//! against discovery, negotiating the representation, and handing the request to the resource.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::{ApiError, MAX_REQUEST_BODY_BYTES};
use apimachinery::negotiate::{self, IncludeObject, Shape, Target};
use apimachinery::options::Query;
use apimachinery::request::{self, RequestInfo};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;

use super::discovery_handlers::not_found_paths;
use super::render::{error_response, render, respond, wants_pretty, Encoder};
use super::router::decoded_path;
use super::Api;
use crate::metrics::RequestLabels;
use crate::resource::{Request, Resource, UserInfo, Verb, Warnings};

fn verb_for(method: &Method, info: &RequestInfo, query: &Query) -> Option<Verb> {
    let named = info.name.is_some();
    Some(match *method {
        Method::GET | Method::HEAD => {
            if info.watch_path || (!named && query.flag("watch")) {
                Verb::Watch
            } else if named {
                Verb::Get
            } else {
                Verb::List
            }
        }
        Method::POST if !named || info.subresource.is_some() => Verb::Create,
        Method::PUT if named => Verb::Update,
        Method::PATCH if named => Verb::Patch,
        Method::DELETE if named => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => return None,
    })
}

/// The error for a verb a resource does not serve, as go-restful's routes give it: a watch is
/// 405 naming the resource; a path with no route at all (an item path of a resource without
/// item verbs, or the reverse) is 404; another method on an existing route is 405.
fn disallowed(r: &ResourceInfo, info: &RequestInfo, verb: Verb) -> ApiError {
    if verb == Verb::Watch {
        return ApiError::MethodNotAllowed {
            verb: verb.as_str().to_string(),
            resource: apimachinery::GroupResource::new(r.group, r.resource),
        };
    }
    let item_verbs = ["get", "update", "patch", "delete"];
    let collection_verbs = ["list", "create", "deletecollection"];
    let has_route = if info.name.is_some() && info.subresource.is_none() {
        r.verbs.iter().any(|v| item_verbs.contains(v))
    } else if info.name.is_none() {
        r.verbs.iter().any(|v| collection_verbs.contains(v))
    } else {
        true
    };
    if has_route {
        ApiError::RouteMethodNotAllowed
    } else {
        ApiError::RouteNotFound
    }
}

/// Whether discovery advertises `verb` for this (sub)resource.
fn allowed(info: &ResourceInfo, subresource: Option<&str>, verb: Verb) -> bool {
    let verbs = match subresource {
        None => info.verbs,
        Some(s) => match info.subresources.iter().find(|x| x.name == s) {
            Some(sub) => sub.verbs,
            None => return true,
        },
    };
    verbs.contains(&verb.as_str())
}

/// The path after `/apis/`, percent-decoded; `None` when it does not decode to UTF-8. Read
/// from the URI rather than through axum's `Path`, whose rejection is a plain-text 400.
fn path_after_apis(uri: &axum::http::Uri) -> Option<String> {
    decoded_path(uri.path())?
        .strip_prefix("/apis/")
        .map(str::to_string)
}

pub(super) async fn api_request(
    State(api): State<Arc<Api>>,
    user: axum::Extension<UserInfo>,
    mut req: HttpRequest,
) -> Response {
    let headers = req.headers().clone();
    let query = match req.extensions_mut().remove::<Query>() {
        Some(query) => query,
        None => Query::parse(req.uri().query()),
    };
    let pretty = wants_pretty(&query, &headers);
    let Some(rest) = path_after_apis(req.uri()) else {
        return error_response(&ApiError::RouteNotFound, pretty);
    };
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let group_matches = segments.first() == Some(&api.config.group);
    match segments.as_slice() {
        [_] if group_matches => return respond(200, "application/json", api.group.clone(), &[]),
        [_, v] if group_matches && *v == api.config.version => {
            return respond(200, "application/json", api.resource_list.clone(), &[])
        }
        _ => {}
    }
    let Some(info) = request::parse(&rest)
        .filter(|i| i.group == api.config.group && i.version == api.config.version)
    else {
        if group_matches {
            return error_response(&ApiError::RouteNotFound, pretty);
        }
        return not_found_paths(State(api.clone())).await;
    };
    let Some(resource) = api.resource(&info.resource).cloned() else {
        return error_response(&ApiError::RouteNotFound, pretty);
    };
    let Some(verb) = verb_for(req.method(), &info, &query) else {
        return error_response(&ApiError::RouteMethodNotAllowed, pretty);
    };
    if info.namespace.is_some() != resource.info().namespaced
        && !(resource.info().namespaced
            && info.namespace.is_none()
            && matches!(verb, Verb::List | Verb::Watch))
    {
        return error_response(&ApiError::RouteNotFound, pretty);
    }
    if !allowed(resource.info(), info.subresource.as_deref(), verb) {
        return error_response(&disallowed(resource.info(), &info, verb), pretty);
    }
    let labels =
        RequestLabels::for_resource(resource.info(), &info, req.method(), &query, &headers);
    let record = api.metrics.start_request(labels, verb == Verb::Watch);
    let protobuf = api.config.protobuf.is_some();
    let representation =
        match Representation::negotiate(&resource, verb, &query, &headers, protobuf) {
            Ok(r) => r,
            Err(e) => return record.finish(error_response(&e, pretty)),
        };
    let encoder = Encoder {
        encoding: representation.negotiated.encoding,
        pretty,
        protobuf: api.config.protobuf.clone(),
    };
    let request = match read_request(&api, req, info, verb, query, &headers, user.0).await {
        Ok(r) => r,
        Err(e) => return record.finish(encoder.error(&e)),
    };
    if let Err(e) = admit(&api, resource.info(), &request).await {
        return record.finish(encoder.error(&e));
    }
    let response = handle_resource(&api, resource.clone(), request, representation, encoder).await;
    record.finish(response)
}

/// kube's NamespaceLifecycle admission: creates (subresource creates too) only in a namespace
/// that exists and is not being deleted.
async fn admit(api: &Api, info: &ResourceInfo, request: &Request) -> Result<(), ApiError> {
    let (Some(lifecycle), Some(namespace)) = (&api.config.namespaces, &request.namespace) else {
        return Ok(());
    };
    if request.verb != Verb::Create {
        return Ok(());
    }
    let name = match &request.name {
        Some(name) => name.clone(),
        None => body_name(&request.body),
    };
    let resource = apimachinery::GroupResource::new(info.group, info.resource);
    lifecycle.admit_create(namespace, &resource, &name).await
}

/// `metadata.name` of a JSON body, for messages; empty when there is none.
fn body_name(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        metadata: Option<Meta>,
    }
    serde_json::from_slice::<Named>(body)
        .ok()
        .and_then(|n| n.metadata?.name)
        .unwrap_or_default()
}

/// How the answer is written: the negotiated media type and target, and for tables
/// `includeObject`.
struct Representation {
    negotiated: negotiate::Negotiated,
    include: IncludeObject,
}

impl Representation {
    fn negotiate(
        resource: &Arc<dyn Resource>,
        verb: Verb,
        query: &Query,
        headers: &HeaderMap,
        protobuf: bool,
    ) -> Result<Self, ApiError> {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let shape = match verb {
            Verb::List | Verb::DeleteCollection => Shape::List,
            Verb::Watch => Shape::Watch,
            _ => Shape::Item,
        };
        let negotiated = negotiate::negotiate(accept, shape, &resource.type_name(), protobuf)?;
        let include = if negotiated.target == Target::Table {
            IncludeObject::parse(query.get("includeObject"))?
        } else {
            IncludeObject::None
        };
        Ok(Representation {
            negotiated,
            include,
        })
    }
}

/// The request a resource handles: routing's result, the body (bounded), its media type.
async fn read_request(
    api: &Api,
    req: HttpRequest,
    info: RequestInfo,
    verb: Verb,
    query: Query,
    headers: &HeaderMap,
    user: UserInfo,
) -> Result<Request, ApiError> {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let content_type = header_text(header::CONTENT_TYPE)
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .filter(|ct| !ct.is_empty());
    let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::RequestEntityTooLarge(format!("limit is {MAX_REQUEST_BODY_BYTES}"))
        })?;
    let (body, content_type) = match (&api.config.protobuf, content_type) {
        // Everything past this point reads JSON; protobuf exists only at the edge.
        (Some(codec), Some(ct)) if ct == apimachinery::protobuf::MEDIA_TYPE => (
            codec.body_to_json(&body)?,
            Some("application/json".to_string()),
        ),
        (_, content_type) => (body, content_type),
    };
    Ok(Request {
        verb,
        namespace: info.namespace,
        name: info.name,
        subresource: info.subresource,
        query,
        body,
        content_type,
        user,
        user_agent: header_text(header::USER_AGENT).map(str::to_string),
        warnings: Warnings::default(),
        shutdown: api.config.shutdown.clone(),
    })
}

/// Runs the request and renders the reply; an error carries the warnings collected so far.
async fn handle_resource(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    request: Request,
    representation: Representation,
    encoder: Encoder,
) -> Response {
    let warnings = request.warnings.clone();
    let reply = match resource.handle(request).await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = encoder.error(&e);
            super::render::append_warnings(resp.headers_mut(), &warnings.take());
            return resp;
        }
    };
    let warnings = warnings.take();
    render(
        api,
        resource,
        reply,
        representation.negotiated,
        representation.include,
        &encoder,
        &warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_apis(uri: &str) -> Option<String> {
        path_after_apis(&uri.parse::<axum::http::Uri>().expect("uri"))
    }

    #[test]
    fn the_resource_path_is_decoded_from_the_uri() {
        assert_eq!(
            after_apis("/apis/image.openshift.io/v1/namespaces/n%61me/imagestreams?limit=1")
                .as_deref(),
            Some("image.openshift.io/v1/namespaces/name/imagestreams")
        );
        assert_eq!(
            after_apis("https://host:8443/apis/g/v1/x").as_deref(),
            Some("g/v1/x")
        );
        assert_eq!(after_apis("/apis/g/v1/namespaces/%ff/x"), None);
    }
}
