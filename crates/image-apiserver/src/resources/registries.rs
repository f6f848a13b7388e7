//! The narrow, typed interfaces through which other resources (and, next, the import
//! controller) use the two stored resources, upstream's `imagestream.Registry` and
//! `image.Registry`: implemented by the generic registry, fakeable in tests. `Registries` holds
//! both with the image policy the virtual resources need.

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::options::ListOptions;
use apiserver::registry::{
    Changes, ListMeta, ReadRevision, Registry, UpdateStrategy, WriteContext,
};
use async_trait::async_trait;
use image_api::{Image, ImageStream, TagReference};
use storage::Revision;

use super::image::ImageStrategy;
use super::imagestream::ImageStreamStrategy;
use super::views::{gr, new_stream, not_found};
use super::ImagePolicy;
use crate::cluster::ClusterReads;

/// A change to an object made from its current version (see `Registry::update`).
pub type Change<'a, T> = &'a mut (dyn FnMut(&T) -> Result<T, ApiError> + Send);

/// Image streams, typed: what other resources may do with them.
#[async_trait]
pub trait ImageStreamRegistry: Send + Sync {
    /// Whether the streams' watch cache has loaded.
    fn is_ready(&self) -> bool;
    /// The revision the streams' watch cache has reached: a controller rescans when it moves.
    fn revision(&self) -> Revision;
    /// A consistent read's revision, for the several reads of one request (streams and images
    /// share a store, so a view reads both at one fetch of its revision).
    async fn consistent_read(&self) -> Result<ReadRevision, ApiError>;
    async fn get_stream(
        &self,
        namespace: &str,
        name: &str,
        at: ReadRevision,
    ) -> Result<Option<ImageStream>, ApiError>;
    /// The stream as stored now, with its revision (where a read-modify-write starts).
    async fn current_stream(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(ImageStream, Revision)>, ApiError>;
    async fn list_streams(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<ImageStream>, ListMeta), ApiError>;
    /// The streams changed after `after` (a [`ImageStreamRegistry::revision`]), and the
    /// revision that is current at; `None` when the cache no longer knows: list instead.
    fn streams_changed_since(
        &self,
        after: Revision,
    ) -> Result<Option<Changes<ImageStream>>, ApiError>;
    async fn create_stream(
        &self,
        ctx: &WriteContext<'_>,
        stream: ImageStream,
    ) -> Result<ImageStream, ApiError>;
    async fn update_stream(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        strategy: UpdateStrategy,
        change: Change<'_, ImageStream>,
    ) -> Result<ImageStream, ApiError>;
}

/// Images, typed: what other resources may do with them.
#[async_trait]
pub trait ImageRegistry: Send + Sync {
    /// Whether the images' watch cache has loaded (views built on it answer 500 until then).
    fn is_ready(&self) -> bool;
    async fn get_image(&self, name: &str, at: ReadRevision) -> Result<Option<Image>, ApiError>;
    async fn current_image(&self, name: &str) -> Result<Option<(Image, Revision)>, ApiError>;
    async fn create_image(&self, ctx: &WriteContext<'_>, image: Image) -> Result<Image, ApiError>;
    async fn update_image(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        change: Change<'_, Image>,
    ) -> Result<Image, ApiError>;
}

#[async_trait]
impl ImageStreamRegistry for Registry<ImageStreamStrategy> {
    fn is_ready(&self) -> bool {
        Registry::is_ready(self)
    }
    fn revision(&self) -> Revision {
        self.cache().revision()
    }
    async fn consistent_read(&self) -> Result<ReadRevision, ApiError> {
        Registry::consistent_read(self).await
    }
    async fn get_stream(
        &self,
        namespace: &str,
        name: &str,
        at: ReadRevision,
    ) -> Result<Option<ImageStream>, ApiError> {
        self.get(Some(namespace), name, at).await
    }
    async fn current_stream(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(ImageStream, Revision)>, ApiError> {
        self.get_current(Some(namespace), name).await
    }
    async fn list_streams(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<ImageStream>, ListMeta), ApiError> {
        self.list(namespace, opts).await
    }
    fn streams_changed_since(
        &self,
        after: Revision,
    ) -> Result<Option<Changes<ImageStream>>, ApiError> {
        self.changed_since(after)
    }
    async fn create_stream(
        &self,
        ctx: &WriteContext<'_>,
        stream: ImageStream,
    ) -> Result<ImageStream, ApiError> {
        self.create(ctx, stream).await
    }
    async fn update_stream(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        strategy: UpdateStrategy,
        change: Change<'_, ImageStream>,
    ) -> Result<ImageStream, ApiError> {
        self.update(ctx, name, strategy, change).await
    }
}

#[async_trait]
impl ImageRegistry for Registry<ImageStrategy> {
    fn is_ready(&self) -> bool {
        Registry::is_ready(self)
    }
    async fn get_image(&self, name: &str, at: ReadRevision) -> Result<Option<Image>, ApiError> {
        self.get(None, name, at).await
    }
    async fn current_image(&self, name: &str) -> Result<Option<(Image, Revision)>, ApiError> {
        self.get_current(None, name).await
    }
    async fn create_image(&self, ctx: &WriteContext<'_>, image: Image) -> Result<Image, ApiError> {
        self.create(ctx, image).await
    }
    async fn update_image(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        change: Change<'_, Image>,
    ) -> Result<Image, ApiError> {
        self.update(ctx, name, UpdateStrategy::Internal, change)
            .await
    }
}

/// Both stored resources, as the virtual resources see them, the image policy, and what the
/// cluster says (pull secrets) when the server runs in one.
pub struct Registries {
    pub streams: Arc<dyn ImageStreamRegistry>,
    pub images: Arc<dyn ImageRegistry>,
    pub policy: ImagePolicy,
    /// `None` standalone (no `--kubeconfig`).
    pub cluster: Option<Arc<ClusterReads>>,
}

impl Registries {
    /// Writes a changed stream through `strategy` (generations, tag resolution, validation).
    /// The change is made to the current stream and keeps its resourceVersion, so a concurrent
    /// write makes the registry re-read and re-apply it; `pinned`, the resourceVersion the
    /// client sent, makes such a write a 409 instead.
    pub async fn change_stream<F>(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        strategy: UpdateStrategy,
        pinned: Option<String>,
        mut change: F,
    ) -> Result<ImageStream, ApiError>
    where
        F: FnMut(&mut ImageStream) -> Result<(), ApiError> + Send,
    {
        let mut produce = |current: &ImageStream| {
            let mut next = current.clone();
            change(&mut next)?;
            if let Some(rv) = &pinned {
                next.metadata.resource_version = Some(rv.clone());
            }
            Ok(next)
        };
        self.streams
            .update_stream(ctx, name, strategy, &mut produce)
            .await
    }

    /// istag and itag create (spec §9.4, §10.3): adds the spec tag, creating the stream when it
    /// is missing; `exists` is the error when the spec tag is already there. The common case,
    /// an existing stream, is one read and one write.
    pub async fn add_spec_tag(
        &self,
        ctx: &WriteContext<'_>,
        stream_name: &str,
        tag: &str,
        spec: Option<TagReference>,
        exists: ApiError,
    ) -> Result<ImageStream, ApiError> {
        let add = |s: &mut ImageStream| {
            if s.spec_tag(tag).is_some() {
                return Err(exists.clone());
            }
            s.spec.tags.extend(spec.clone());
            Ok(())
        };
        match self
            .change_stream(ctx, stream_name, UpdateStrategy::Internal, None, add)
            .await
        {
            // Only the stream can be missing: the change itself answers AlreadyExists or Ok.
            Err(ApiError::NotFound { .. }) => {}
            done => return done,
        }
        let mut fresh = new_stream(ctx.namespace.unwrap_or(""), stream_name);
        fresh.spec.tags.extend(spec.clone());
        match self.streams.create_stream(ctx, fresh).await {
            // Someone created it meanwhile: add the tag to theirs.
            Err(ApiError::AlreadyExists { .. }) => {
                self.change_stream(ctx, stream_name, UpdateStrategy::Internal, None, add)
                    .await
            }
            done => done,
        }
    }

    /// The revision a view reads its stream and images at: fetched once, as of the request.
    pub async fn view_read(&self) -> Result<ReadRevision, ApiError> {
        self.streams.consistent_read().await
    }

    /// The stream a view of `resource` reads, at `at` (from [`Registries::view_read`]); a
    /// missing one is a 404 naming that resource (the corrections at the top of the spec:
    /// NotFound names the requested resource).
    pub async fn view_stream(
        &self,
        namespace: &str,
        name: &str,
        resource: &str,
        at: ReadRevision,
    ) -> Result<ImageStream, ApiError> {
        self.streams
            .get_stream(namespace, name, at)
            .await?
            .ok_or_else(|| not_found(resource, name))
    }

    /// Views over every image of a stream need the images' cache loaded: until then they
    /// answer as upstream does while its informer syncs.
    pub fn require_images_loaded(&self) -> Result<(), ApiError> {
        if self.images.is_ready() {
            return Ok(());
        }
        Err(ApiError::ServerTimeout {
            resource: gr("imagestreams"),
            operation: "get".to_string(),
            retry_after: 2,
        })
    }

    /// The image a tag event names, if any, at `at` (see [`Registries::view_read`]).
    pub async fn image(&self, name: &str, at: ReadRevision) -> Result<Option<Image>, ApiError> {
        if name.is_empty() {
            return Ok(None);
        }
        self.images.get_image(name, at).await
    }
}
