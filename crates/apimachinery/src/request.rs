//! Request info from an API path (spec §0, `requestinfo.go`):
//! `/apis/{group}/{version}/[watch/][namespaces/{ns}/]{resource}[/{name}[/{subresource}]]`.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` prefix was used.
    pub watch_path: bool,
}

/// Parses the part of the path after `/apis/`. `None` when it is not a resource path.
pub fn parse(path_after_apis: &str) -> Option<RequestInfo> {
    let segments: Vec<&str> = path_after_apis.trim_matches('/').split('/').collect();
    let [group, version, rest @ ..] = segments.as_slice() else {
        return None;
    };
    let mut info = RequestInfo {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut rest = rest;
    if let ["watch", tail @ ..] = rest {
        info.watch_path = true;
        rest = tail;
    }
    if let ["namespaces", ns, tail @ ..] = rest {
        if tail.is_empty() {
            return None;
        }
        info.namespace = Some(ns.to_string());
        rest = tail;
    }
    match rest {
        [resource] => info.resource = resource.to_string(),
        [resource, name] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
        }
        [resource, name, sub] => {
            info.resource = resource.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    if info.resource.is_empty() || info.name.as_deref() == Some("") {
        return None;
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        let i = parse("image.openshift.io/v1/namespaces/ns/imagestreams/a/status").expect("sub");
        assert_eq!(i.namespace.as_deref(), Some("ns"));
        assert_eq!(i.resource, "imagestreams");
        assert_eq!(i.name.as_deref(), Some("a"));
        assert_eq!(i.subresource.as_deref(), Some("status"));
        let i = parse("image.openshift.io/v1/images").expect("cluster list");
        assert_eq!((i.namespace, i.name), (None, None));
        let i = parse("image.openshift.io/v1/watch/namespaces/ns/imagestreams/a").expect("watch");
        assert!(i.watch_path);
        assert_eq!(i.name.as_deref(), Some("a"));
        assert!(parse("image.openshift.io/v1").is_none());
        assert!(parse("image.openshift.io/v1/namespaces/ns").is_none());
        assert!(parse("image.openshift.io/v1/a/b/c/d").is_none());
    }
}
