//! What the virtual resources share: the two stored registries, the registry configuration,
//! and the helpers every tag view needs (name parsing, reading and writing the stream).

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::options::WriteOptions;
use apimachinery::GroupResource;
use apiserver::registry::{ReadRevision, Registry, UpdateStrategy, WriteContext};
use apiserver::resource::Request;
use image_api::{Image, ImageStream, TagReference};

use super::image::ImageStrategy;
use super::imagestream::ImageStreamStrategy;
use super::RegistryHosts;

pub struct Context {
    pub streams: Arc<Registry<ImageStreamStrategy>>,
    pub images: Arc<Registry<ImageStrategy>>,
    pub hosts: RegistryHosts,
}

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

impl Context {
    /// Writes a changed stream through `strategy` (generations, tag resolution, validation).
    /// The change is made to the current stream and keeps its resourceVersion, so a concurrent
    /// write makes the registry re-read and re-apply it; `pinned`, the resourceVersion the
    /// client sent, makes such a write a 409 instead.
    pub async fn update_stream<F>(
        &self,
        req: &Request,
        opts: &WriteOptions,
        name: &str,
        strategy: UpdateStrategy,
        pinned: Option<String>,
        mut change: F,
    ) -> Result<ImageStream, ApiError>
    where
        F: FnMut(&mut ImageStream) -> Result<(), ApiError> + Send,
    {
        let ctx = WriteContext::new(req, opts);
        self.streams
            .update(&ctx, name, strategy, |current| {
                let mut next = current.clone();
                change(&mut next)?;
                if let Some(rv) = &pinned {
                    next.metadata.resource_version = Some(rv.clone());
                }
                Ok(next)
            })
            .await
    }

    /// Creates a stream through the normal create path.
    pub async fn create_stream(
        &self,
        req: &Request,
        opts: &WriteOptions,
        stream: ImageStream,
    ) -> Result<ImageStream, ApiError> {
        self.streams
            .create(&WriteContext::new(req, opts), stream)
            .await
    }

    /// istag and itag create (spec §9.4, §10.3): adds the spec tag, creating the stream when it
    /// is missing; `exists` is the error when the spec tag is already there.
    pub async fn add_spec_tag(
        &self,
        req: &Request,
        opts: &WriteOptions,
        stream_name: &str,
        tag: &str,
        spec: Option<TagReference>,
        exists: ApiError,
    ) -> Result<ImageStream, ApiError> {
        let namespace = req.namespace.as_deref().unwrap_or("");
        if self
            .streams
            .get_current(Some(namespace), stream_name)
            .await?
            .is_none()
        {
            let mut fresh = new_stream(namespace, stream_name);
            fresh.spec.tags.extend(spec.clone());
            match self.create_stream(req, opts, fresh).await {
                Ok(s) => return Ok(s),
                // Someone created it meanwhile: add the tag to theirs.
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.update_stream(
            req,
            opts,
            stream_name,
            UpdateStrategy::Internal,
            None,
            |s| {
                if s.spec_tag(tag).is_some() {
                    return Err(exists.clone());
                }
                s.spec.tags.extend(spec.clone());
                Ok(())
            },
        )
        .await
    }

    pub async fn image(&self, name: &str) -> Result<Option<Image>, ApiError> {
        if name.is_empty() {
            return Ok(None);
        }
        self.images.get(None, name, ReadRevision::Consistent).await
    }
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
