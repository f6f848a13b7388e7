//! The label values of kube's request families, computed as kube-apiserver 1.32 computes them
//! (`endpoints/metrics`: `MonitorRequest`, `CleanScope`, `CanonicalVerb`, `CleanVerb`,
//! `cleanDryRun`; the route scopes of `endpoints/installer.go`).

use std::borrow::Cow;

use apimachinery::discovery::ResourceInfo;
use apimachinery::options::Query;
use apimachinery::request::{self, RequestInfo};
use axum::http::{header, HeaderMap, Method, Uri};

/// kube's `APIServerComponent`: the component of every resource request.
const COMPONENT: &str = "apiserver";

/// Any verb kube does not know (`OtherRequestMethod`).
const OTHER: &str = "other";

/// The subresources kube reports as CONNECT (`validConnectRequests`).
const CONNECT_SUBRESOURCES: [&str; 5] = ["log", "exec", "portforward", "attach", "proxy"];

/// The one media type that turns a PATCH into APPLY. kube compares the raw header, so a
/// parameter (`; charset=utf-8`) leaves it a PATCH.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The labels `apiserver_request_total`, `apiserver_request_duration_seconds` and
/// `apiserver_longrunning_requests` share for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub dry_run: &'static str,
    pub group: Cow<'static, str>,
    pub version: Cow<'static, str>,
    pub resource: Cow<'static, str>,
    pub subresource: Cow<'static, str>,
    pub scope: &'static str,
    pub component: &'static str,
    /// The verb of `apiserver_longrunning_requests`. kube computes it without the route's own
    /// verb, so a watch through the deprecated `/watch/` path shows there as LIST (or GET).
    pub longrunning_verb: &'static str,
}

/// What a request says that the verb depends on.
struct Asked<'a> {
    method: &'a Method,
    scope: &'static str,
    watch_param: bool,
    apply: bool,
    connect: bool,
}

impl RequestLabels {
    /// A request routed to a served resource (kube's `InstrumentRouteFunc`).
    pub fn for_resource(
        resource: &ResourceInfo,
        request: &RequestInfo,
        method: &Method,
        query: &Query,
        headers: &HeaderMap,
    ) -> RequestLabels {
        let scope = resource_scope(request, method);
        let asked = Asked {
            method,
            scope,
            watch_param: query.flag("watch"),
            apply: is_apply(headers),
            connect: is_connect(request.subresource.as_deref()),
        };
        let longrunning_verb = reported_verb(&asked);
        // The installer passes WATCH as the route verb of the `/watch/` paths.
        let verb = if request.watch_path {
            "WATCH"
        } else {
            longrunning_verb
        };
        RequestLabels {
            verb,
            dry_run: dry_run(query),
            group: Cow::Borrowed(resource.group),
            version: Cow::Borrowed(resource.version),
            resource: Cow::Borrowed(resource.resource),
            subresource: request
                .subresource
                .clone()
                .map_or(Cow::Borrowed(""), Cow::Owned),
            scope,
            component: COMPONENT,
            longrunning_verb,
        }
    }

    /// A request the in-flight limit turned away (kube's `RecordDroppedRequest`): its labels
    /// come from its path. Unlike kube, a path of a resource that is not `served` is labelled
    /// as a non-resource request, so that made-up paths cannot add series without end.
    pub fn dropped(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        served: impl Fn(&RequestInfo) -> bool,
    ) -> RequestLabels {
        let query = Query::parse(uri.query());
        let info = uri
            .path()
            .strip_prefix("/apis/")
            .and_then(request::parse)
            .filter(|info| served(info));
        let scope = match &info {
            Some(info) => resource_scope(info, method),
            None => "",
        };
        let asked = Asked {
            method,
            scope,
            watch_param: query.flag("watch"),
            apply: is_apply(headers),
            connect: info
                .as_ref()
                .is_some_and(|i| is_connect(i.subresource.as_deref())),
        };
        let verb = reported_verb(&asked);
        let owned = |s: Option<String>| s.map_or(Cow::Borrowed(""), Cow::Owned);
        let (group, version, resource, subresource) = match info {
            Some(i) => (
                Cow::Owned(i.group),
                Cow::Owned(i.version),
                Cow::Owned(i.resource),
                owned(i.subresource),
            ),
            None => (
                Cow::Borrowed(""),
                Cow::Borrowed(""),
                Cow::Borrowed(""),
                Cow::Borrowed(""),
            ),
        };
        RequestLabels {
            verb,
            dry_run: dry_run(&query),
            group,
            version,
            resource,
            subresource,
            scope,
            component: COMPONENT,
            longrunning_verb: verb,
        }
    }

    /// A request to a handler kube instruments by its path (`InstrumentHandlerFunc`): the root
    /// health checks, whose `subresource` is the path and whose `component` is empty.
    pub fn for_path(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &'static str,
        component: &'static str,
    ) -> RequestLabels {
        let query = Query::parse(uri.query());
        let asked = Asked {
            method,
            scope: "",
            watch_param: query.flag("watch"),
            apply: is_apply(headers),
            connect: false,
        };
        let verb = reported_verb(&asked);
        RequestLabels {
            verb,
            dry_run: dry_run(&query),
            group: Cow::Borrowed(""),
            version: Cow::Borrowed(""),
            resource: Cow::Borrowed(""),
            subresource: Cow::Borrowed(path),
            scope: "",
            component,
            longrunning_verb: verb,
        }
    }

    /// The values of `apiserver_request_duration_seconds`, in its label order.
    pub(super) fn latency_values(&self) -> [&str; 8] {
        [
            self.verb,
            self.dry_run,
            &*self.group,
            &*self.version,
            &*self.resource,
            &*self.subresource,
            self.scope,
            self.component,
        ]
    }

    /// The values of `apiserver_request_total`, in its label order.
    pub(super) fn total_values<'a>(&'a self, code: &'a str) -> [&'a str; 9] {
        let [verb, dry_run, group, version, resource, subresource, scope, component] =
            self.latency_values();
        [
            verb,
            dry_run,
            group,
            version,
            resource,
            subresource,
            scope,
            component,
            code,
        ]
    }

    /// The values of `apiserver_longrunning_requests`, in its label order.
    pub(super) fn longrunning_values(&self) -> [&str; 7] {
        [
            self.longrunning_verb,
            &*self.group,
            &*self.version,
            &*self.resource,
            &*self.subresource,
            self.scope,
            self.component,
        ]
    }
}

/// kube's scope of a resource request: a named object and every create are `resource` (the
/// installer's routes and `CleanScope` agree), a namespaced collection is `namespace`, the rest
/// `cluster`.
fn resource_scope(request: &RequestInfo, method: &Method) -> &'static str {
    if request.name.is_some() || *method == Method::POST {
        "resource"
    } else if request.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    }
}

/// `cleanVerb(CanonicalVerb(method, scope), ...)` without the route's verb: GET of anything
/// but one object is LIST, `?watch=true` on a GET is WATCH, a server-side apply PATCH is APPLY,
/// and a method kube does not know is `other`.
fn reported_verb(asked: &Asked) -> &'static str {
    let canonical = match *asked.method {
        Method::GET | Method::HEAD => {
            if asked.scope == "resource" || asked.scope.is_empty() {
                "GET"
            } else {
                "LIST"
            }
        }
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        _ => OTHER,
    };
    if asked.connect {
        return "CONNECT";
    }
    if *asked.method == Method::GET && asked.watch_param {
        return "WATCH";
    }
    if canonical == "PATCH" && asked.apply {
        return "APPLY";
    }
    canonical
}

fn is_apply(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == APPLY_PATCH.as_bytes())
}

fn is_connect(subresource: Option<&str>) -> bool {
    subresource.is_some_and(|s| CONNECT_SUBRESOURCES.contains(&s))
}

/// `cleanDryRun`: empty without the parameter, `All` when every value is `All` (the one value
/// kube accepts; it dedups and sorts them), `invalid` otherwise.
fn dry_run(query: &Query) -> &'static str {
    let values = query.all("dryRun");
    if values.is_empty() {
        ""
    } else if values.iter().all(|v| *v == "All") {
        "All"
    } else {
        "invalid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_fixtures::streams_info as streams;

    /// The labels of `method path?query` with the given Content-Type.
    fn labels(method: Method, path_and_query: &str, content_type: Option<&str>) -> RequestLabels {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let info = request::parse(path).expect("a resource path");
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().expect("header value"));
        }
        RequestLabels::for_resource(&streams(), &info, &method, &Query::parse(query), &headers)
    }

    const NS: &str = "image.openshift.io/v1/namespaces/ns/imagestreams";
    const ALL: &str = "image.openshift.io/v1/imagestreams";

    fn verb_and_scope(l: &RequestLabels) -> (&str, &str) {
        (l.verb, l.scope)
    }

    #[test]
    fn reads_are_get_list_and_watch() {
        let get = labels(Method::GET, &format!("{NS}/a"), None);
        assert_eq!(verb_and_scope(&get), ("GET", "resource"));
        let head = labels(Method::HEAD, &format!("{NS}/a"), None);
        assert_eq!(verb_and_scope(&head), ("GET", "resource"));
        assert_eq!(
            verb_and_scope(&labels(Method::GET, NS, None)),
            ("LIST", "namespace")
        );
        assert_eq!(
            verb_and_scope(&labels(Method::GET, ALL, None)),
            ("LIST", "cluster")
        );
        let watch = labels(Method::GET, &format!("{NS}?watch=true"), None);
        assert_eq!(verb_and_scope(&watch), ("WATCH", "namespace"));
        assert_eq!(watch.longrunning_verb, "WATCH");
        let not_watch = labels(Method::GET, &format!("{NS}?watch=false"), None);
        assert_eq!(not_watch.verb, "LIST");
    }

    #[test]
    fn the_deprecated_watch_path_is_watch_but_list_in_the_longrunning_gauge() {
        let w = labels(
            Method::GET,
            "image.openshift.io/v1/watch/namespaces/ns/imagestreams",
            None,
        );
        assert_eq!(verb_and_scope(&w), ("WATCH", "namespace"));
        assert_eq!(w.longrunning_verb, "LIST");
        let one = labels(
            Method::GET,
            "image.openshift.io/v1/watch/namespaces/ns/imagestreams/a",
            None,
        );
        assert_eq!(verb_and_scope(&one), ("WATCH", "resource"));
        assert_eq!(one.longrunning_verb, "GET");
    }

    #[test]
    fn writes_keep_the_method_and_creates_are_resource_scoped() {
        assert_eq!(
            verb_and_scope(&labels(Method::POST, NS, Some("application/json"))),
            ("POST", "resource")
        );
        assert_eq!(
            verb_and_scope(&labels(Method::PUT, &format!("{NS}/a"), None)),
            ("PUT", "resource")
        );
        let merge = labels(
            Method::PATCH,
            &format!("{NS}/a"),
            Some("application/merge-patch+json"),
        );
        assert_eq!(verb_and_scope(&merge), ("PATCH", "resource"));
        let apply = labels(
            Method::PATCH,
            &format!("{NS}/a"),
            Some("application/apply-patch+yaml"),
        );
        assert_eq!(verb_and_scope(&apply), ("APPLY", "resource"));
        let apply_with_param = labels(
            Method::PATCH,
            &format!("{NS}/a"),
            Some("application/apply-patch+yaml; charset=utf-8"),
        );
        assert_eq!(apply_with_param.verb, "PATCH");
        assert_eq!(
            verb_and_scope(&labels(Method::DELETE, &format!("{NS}/a"), None)),
            ("DELETE", "resource")
        );
        // kube reports a deletecollection by its method.
        assert_eq!(
            verb_and_scope(&labels(Method::DELETE, NS, None)),
            ("DELETE", "namespace")
        );
    }

    #[test]
    fn group_version_resource_subresource_and_component() {
        let status = labels(Method::PUT, &format!("{NS}/a/status"), None);
        assert_eq!(status.group, "image.openshift.io");
        assert_eq!(status.version, "v1");
        assert_eq!(status.resource, "imagestreams");
        assert_eq!(status.subresource, "status");
        assert_eq!(status.component, "apiserver");
        assert_eq!(labels(Method::GET, NS, None).subresource, "");
        let proxy = labels(Method::GET, &format!("{NS}/a/proxy"), None);
        assert_eq!(proxy.verb, "CONNECT");
    }

    #[test]
    fn dry_run_is_all_or_invalid() {
        assert_eq!(labels(Method::POST, NS, None).dry_run, "");
        assert_eq!(
            labels(Method::POST, &format!("{NS}?dryRun=All"), None).dry_run,
            "All"
        );
        assert_eq!(
            labels(Method::POST, &format!("{NS}?dryRun=All&dryRun=All"), None).dry_run,
            "All"
        );
        assert_eq!(
            labels(Method::POST, &format!("{NS}?dryRun=true"), None).dry_run,
            "invalid"
        );
    }

    #[test]
    fn dropped_requests_are_labelled_from_their_path() {
        let uri: Uri = "/apis/image.openshift.io/v1/namespaces/ns/imagestreams?limit=1"
            .parse()
            .expect("uri");
        let served = |info: &RequestInfo| info.resource == "imagestreams";
        let l = RequestLabels::dropped(&Method::GET, &uri, &HeaderMap::new(), served);
        assert_eq!(verb_and_scope(&l), ("LIST", "namespace"));
        assert_eq!(l.resource, "imagestreams");
        for path in ["/openapi/v2", "/apis/made.up/v1/namespaces/ns/things"] {
            let uri: Uri = path.parse().expect("uri");
            let l = RequestLabels::dropped(&Method::GET, &uri, &HeaderMap::new(), served);
            assert_eq!(verb_and_scope(&l), ("GET", ""), "{path}");
            assert_eq!((&*l.group, &*l.resource), ("", ""), "{path}");
            assert_eq!(l.component, "apiserver");
        }
    }

    #[test]
    fn health_paths_are_their_own_subresource() {
        let uri: Uri = "/readyz?verbose".parse().expect("uri");
        let l = RequestLabels::for_path(&Method::GET, &uri, &HeaderMap::new(), "/readyz", "");
        assert_eq!(verb_and_scope(&l), ("GET", ""));
        assert_eq!(l.subresource, "/readyz");
        assert_eq!(l.component, "");
        let other = RequestLabels::for_path(&Method::OPTIONS, &uri, &HeaderMap::new(), "/x", "");
        assert_eq!(other.verb, "other");
    }
}
