//! What the virtual resources share besides the registries: `<stream>:<tag>` names, the
//! namespace they require, the view of an image inside a tag view, table ages.

use apimachinery::errors::ApiError;
use apimachinery::GroupResource;
use apiserver::resource::Request;
use image_api::{Image, ImageStream};

pub fn gr(resource: &str) -> GroupResource {
    GroupResource::new(image_api::GROUP, resource)
}

pub fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: gr(resource),
        name: name.to_string(),
    }
}

/// The strict `<stream>:<tag>` parse of GET, PUT and DELETE (spec §2.1).
pub fn parse_stream_tag(name: &str) -> Option<(&str, &str)> {
    if name.contains('@') {
        return None;
    }
    let (stream, tag) = name.split_once(':')?;
    if stream.is_empty() || tag.is_empty() || tag.contains(':') {
        return None;
    }
    Some((stream, tag))
}

/// The loose split of create: the tag defaults to `latest`; `None` without a `:`.
pub fn split_stream_tag(name: &str) -> Option<(&str, &str)> {
    let (stream, tag) = name.split_once(':')?;
    Some((
        stream,
        if tag.is_empty() {
            image_api::DEFAULT_IMAGE_TAG
        } else {
            tag
        },
    ))
}

/// A request's namespace, required by every namespaced view.
pub fn namespace<'a>(req: &'a Request, message: &str) -> Result<&'a str, ApiError> {
    req.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(message.to_string()))
}

/// A stream that does not exist yet: the create mode of tag views.
pub fn new_stream(namespace: &str, name: &str) -> ImageStream {
    let mut s = ImageStream::default();
    s.metadata.name = Some(name.to_string());
    s.metadata.namespace = Some(namespace.to_string());
    s
}

/// The view of an image inside a tag view: metadata extracted, manifest and config cleared,
/// the pull spec the tag resolves to.
pub fn image_view(mut image: Image, reference: String) -> Image {
    image.docker_image_manifest.clear();
    image.docker_image_config.clear();
    image.docker_image_reference = reference;
    image
}

/// `<duration> ago` of an RFC 3339 time in a served object, as tables print ages.
pub fn age(time: Option<&serde_json::Value>) -> String {
    time.and_then(serde_json::Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let secs = jiff::Timestamp::now().as_second() - t.as_second();
            format!("{} ago", apimachinery::table::human_duration(secs))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_tag_names() {
        assert_eq!(parse_stream_tag("is:tag"), Some(("is", "tag")));
        assert_eq!(parse_stream_tag("is"), None);
        assert_eq!(parse_stream_tag("is:"), None);
        assert_eq!(parse_stream_tag(":t"), None);
        assert_eq!(parse_stream_tag("a:b:c"), None);
        assert_eq!(parse_stream_tag("is@sha256:x"), None);
        assert_eq!(split_stream_tag("is:"), Some(("is", "latest")));
        assert_eq!(split_stream_tag("is:v1"), Some(("is", "v1")));
        assert_eq!(split_stream_tag("is"), None);
    }
}
