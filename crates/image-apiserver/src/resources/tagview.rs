//! One REST flow for the two views of a stream's tag, `imagestreamtags` (spec §9) and
//! `imagetags` (§10). What differs between them (how the view is built, validated and written
//! back to the stream) is the [`TagView`] trait; reading and writing the stream is here, once.
//!
//! A PUT or PATCH runs the whole view update inside the stream's read-modify-write: the stream
//! is read once, the old view built from it, the body or patch applied, the result validated
//! and written back as a stream change. When the write loses a race, the registry re-reads
//! the stream and everything runs again against the fresh one (see [`TagView::RETRY_BLIND`]
//! for the one rule in which the views differ).

use std::marker::PhantomData;
use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::FieldError;
use apimachinery::object::ApiObject;
use apimachinery::options::{ListOptions, WriteOptions};
use apimachinery::table::ColumnDefinition;
use apimachinery::GroupKind;
use apiserver::body::{self, Patch};
use apiserver::delete::DeleteOptions;
use apiserver::registry::{ReadRevision, UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::tags::latest_tagged_image;
use image_api::{Image, ImageStream, TagReference};
use serde_json::{json, Value};

use super::registries::Registries;
use super::views::{self, gr, not_found, parse_stream_tag, split_stream_tag};

/// What makes a tag view: its type, how it is built from a stream, validated, and written back.
/// Implementations do no I/O; the flow in [`TagViews`] reads and writes.
pub trait TagView: Send + Sync + 'static {
    type Object: ApiObject;

    fn info() -> ResourceInfo;

    /// The resource AlreadyExists names when a create finds the spec tag (istag says it in the
    /// singular, spec §9.4 step 5).
    const EXISTS_AS: &'static str;

    /// A blind write, a view without a resourceVersion (a PUT body without one, or a patch
    /// that removes it), is made against the stream as read. When its write loses a race:
    /// `true` re-applies it to the fresh stream (istag, spec §9.5 step 5); `false` answers 409,
    /// so a blind PUT never lands on a stream its author has not seen (itag, §10.4).
    ///
    /// Patches are not blind: a patch is applied to the view of the stream as read, so it
    /// carries that read's resourceVersion, and after a lost race it is applied again to the
    /// view of the fresh stream, for both views, as kube's guaranteed update re-applies a
    /// patch. Only a patch whose body sets `metadata.resourceVersion` is held to it.
    const RETRY_BLIND: bool;

    /// The tags a list shows of one stream, sorted.
    fn listed_tags(stream: &ImageStream) -> Vec<&str>;

    /// The view of `tag` in a list (without its image), if it has one.
    fn list_item(stream: &ImageStream, tag: &str) -> Option<Self::Object>;

    /// GET's view; `image` is the Image of the tag's latest event, when there is one.
    fn get_view(
        stream: &ImageStream,
        tag: &str,
        name: &str,
        image: Option<Image>,
    ) -> Result<Self::Object, ApiError>;

    /// The view a write starts from or answers with: it exists even when the tag does not.
    fn view_or_empty(
        stream: &ImageStream,
        tag: &str,
        name: &str,
        image: Option<Image>,
    ) -> Self::Object;

    /// Defaults of a decoded or patched view (the tag reference's policies).
    fn default(obj: &mut Self::Object, import_mode: &str);

    fn prepare_create(obj: &mut Self::Object, tag: &str);

    fn validate_create(obj: &Self::Object, tag: &str) -> Vec<FieldError>;

    fn prepare_update(new: &mut Self::Object, old: &Self::Object, stream: &ImageStream, tag: &str);

    fn validate_update(new: &Self::Object, old: &Self::Object, tag: &str) -> Vec<FieldError>;

    /// The spec tag a POST adds to the stream.
    fn created_spec_tag(obj: &Self::Object, tag: &str) -> Option<TagReference>;

    /// Writes a PUT's or PATCH's view into the stream.
    fn write_to_stream(
        obj: &Self::Object,
        stream: &mut ImageStream,
        tag: &str,
    ) -> Result<(), ApiError>;

    fn table_columns() -> Vec<ColumnDefinition>;

    /// The cells after the name.
    fn table_cells(object: &Value) -> Vec<Value>;
}

/// What a PUT (the body) or a PATCH (the patch) makes of the old view.
type Edit<'a, T> = dyn Fn(&T) -> Result<T, ApiError> + Send + Sync + 'a;

/// A tag view served over HTTP.
pub struct TagViews<V> {
    info: ResourceInfo,
    registries: Arc<Registries>,
    view: PhantomData<fn() -> V>,
}

impl<V: TagView> TagViews<V> {
    pub fn new(registries: Arc<Registries>) -> Self {
        TagViews {
            info: V::info(),
            registries,
            view: PhantomData,
        }
    }

    fn resource(&self) -> &'static str {
        self.info.resource
    }

    fn bad_name(&self) -> ApiError {
        ApiError::BadRequest(format!(
            "{}s must be retrieved with <name>:<tag>",
            self.info.kind
        ))
    }

    fn invalid(&self, name: &str, errs: Vec<FieldError>) -> ApiError {
        ApiError::invalid(GroupKind::new(image_api::GROUP, self.info.kind), name, errs)
    }

    /// Retries of a stream write that ran out are reported against the view and its verb.
    fn view_error(&self, e: ApiError, operation: &str) -> ApiError {
        match e {
            ApiError::ServerTimeout { retry_after, .. } => ApiError::ServerTimeout {
                resource: gr(self.resource()),
                operation: operation.to_string(),
                retry_after,
            },
            e => e,
        }
    }

    /// The Image a tag's latest event names, if it names one and the image exists.
    async fn current_image(
        &self,
        stream: &ImageStream,
        tag: &str,
        at: ReadRevision,
    ) -> Result<Option<Image>, ApiError> {
        match latest_tagged_image(stream, tag) {
            Some(event) => self.registries.image(&event.image, at).await,
            None => Ok(None),
        }
    }

    fn reply(obj: &V::Object, code: u16) -> Result<Reply, ApiError> {
        Ok(Reply::Object {
            code,
            json: to_bytes(obj).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    async fn get(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(|| self.bad_name())?;
        let ns = req.namespace.as_deref().unwrap_or("");
        let at = self.registries.view_read().await?;
        let stream = self
            .registries
            .view_stream(ns, stream_name, self.resource(), at)
            .await?;
        let image = self.current_image(&stream, tag, at).await?;
        Self::reply(&V::get_view(&stream, tag, name, image)?, 200)
    }

    /// The streams are listed with the label selector; the field selector applies to views.
    async fn list(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = ListOptions::parse(&req.query, false)?;
        opts.field_selector
            .check_fields(&["metadata.name", "metadata.namespace"])
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let stream_opts = ListOptions {
            field_selector: Default::default(),
            ..opts.clone()
        };
        let (streams, metadata) = self
            .registries
            .streams
            .list_streams(req.namespace.as_deref(), &stream_opts)
            .await?;
        let mut items = Vec::new();
        for stream in &streams {
            for tag in V::listed_tags(stream) {
                let Some(view) = V::list_item(stream, tag) else {
                    continue;
                };
                let meta = view.metadata();
                let fields = |f: &str| match f {
                    "metadata.name" => meta.name.as_deref(),
                    "metadata.namespace" => meta.namespace.as_deref(),
                    _ => None,
                };
                if opts.field_selector.matches(fields) {
                    items.push(to_bytes(&view).map_err(|e| ApiError::Internal(e.to_string()))?);
                }
            }
        }
        Ok(Reply::List {
            kind: format!("{}List", self.info.kind),
            api_version: image_api::API_VERSION.to_string(),
            metadata: serde_json::to_value(&metadata)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            items,
        })
    }

    fn decode(&self, req: &Request, opts: &WriteOptions) -> Result<V::Object, ApiError> {
        let mut obj: V::Object = body::decode_object(&self.info, req, opts)?;
        V::default(&mut obj, &self.registries.policy.import_mode);
        Ok(obj)
    }

    /// POST (spec §9.4, §10.3): adds the spec tag, creating the stream if needed.
    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let mut obj = self.decode(req, &opts)?;
        body::check_namespace(&mut obj, req.namespace.as_deref(), true)?;
        views::namespace(req, "a namespace must be specified to import images")?;
        let name = obj.metadata().name.clone().unwrap_or_default();
        let Some((stream_name, tag)) = split_stream_tag(&name) else {
            return Err(ApiError::BadRequest(format!(
                "{name:?} must be of the form <stream_name>:<tag>"
            )));
        };
        V::prepare_create(&mut obj, tag);
        let errs = V::validate_create(&obj, tag);
        if !errs.is_empty() {
            return Err(self.invalid(&name, errs));
        }
        let exists = ApiError::AlreadyExists {
            resource: gr(V::EXISTS_AS),
            name: name.clone(),
        };
        let ctx = WriteContext::new(req, &opts);
        let spec = V::created_spec_tag(&obj, tag);
        let stream = self
            .registries
            .add_spec_tag(&ctx, stream_name, tag, spec, exists)
            .await
            .map_err(|e| self.view_error(e, "create"))?;
        let image = self
            .current_image(&stream, tag, ReadRevision::Consistent)
            .await?;
        Self::reply(&V::view_or_empty(&stream, tag, &name, image), 201)
    }

    /// PUT and PATCH (spec §9.5, §10.4): `edit` makes the new view from the old one. A missing
    /// stream is created (create mode); a stream created or deleted meanwhile switches the
    /// mode once.
    async fn update(
        &self,
        req: &Request,
        name: &str,
        opts: &WriteOptions,
        edit: &Edit<'_, V::Object>,
    ) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(|| self.bad_name())?;
        let required = format!("namespace is required on {}s", self.info.kind);
        let ns = views::namespace(req, &required)?;
        let target = Target {
            req,
            name,
            stream_name,
            tag,
        };
        let ctx = WriteContext::new(req, opts);
        let (written, created) = match self.update_stream(&ctx, &target, edit).await? {
            Some(done) => done,
            None => match self.create_stream(&ctx, ns, &target, edit).await? {
                Some(done) => done,
                None => self
                    .update_stream(&ctx, &target, edit)
                    .await?
                    .ok_or_else(|| not_found("imagestreams", stream_name))?,
            },
        };
        let image = self
            .current_image(&written, tag, ReadRevision::Consistent)
            .await?;
        let view = V::view_or_empty(&written, tag, name, image);
        Self::reply(&view, if created { 201 } else { 200 })
    }

    /// The update of an existing stream; `None` when there is no stream. Also returns whether
    /// the spec tag is new.
    async fn update_stream(
        &self,
        ctx: &WriteContext<'_>,
        target: &Target<'_>,
        edit: &Edit<'_, V::Object>,
    ) -> Result<Option<(ImageStream, bool)>, ApiError> {
        let mut first_seen: Option<String> = None;
        let mut created = false;
        let mut produced = false;
        let mut produce = |current: &ImageStream| {
            produced = true;
            created = current.spec_tag(target.tag).is_none();
            let current_rv = current
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            let seen = first_seen.get_or_insert_with(|| current_rv.clone()).clone();
            let old = V::view_or_empty(current, target.tag, target.name, None);
            let mut new = self.edited(target, &old, edit)?;
            let rv = self.resource_version(target.name, &new, &current_rv, &seen)?;
            new.metadata_mut().resource_version = Some(rv.clone());
            V::prepare_update(&mut new, &old, current, target.tag);
            let errs = V::validate_update(&new, &old, target.tag);
            if !errs.is_empty() {
                return Err(self.invalid(target.name, errs));
            }
            let mut next = current.clone();
            V::write_to_stream(&new, &mut next, target.tag)?;
            next.metadata.resource_version = Some(rv);
            Ok(next)
        };
        let result = self
            .registries
            .streams
            .update_stream(
                ctx,
                target.stream_name,
                UpdateStrategy::Internal,
                &mut produce,
            )
            .await;
        match result {
            Ok(stream) => Ok(Some((stream, created))),
            Err(ApiError::NotFound { .. }) if !produced => Ok(None),
            Err(e) => Err(self.view_error(e, "update")),
        }
    }

    /// Create mode: the view written into a new stream; `None` when the stream appeared
    /// meanwhile.
    async fn create_stream(
        &self,
        ctx: &WriteContext<'_>,
        namespace: &str,
        target: &Target<'_>,
        edit: &Edit<'_, V::Object>,
    ) -> Result<Option<(ImageStream, bool)>, ApiError> {
        let mut stream = views::new_stream(namespace, target.stream_name);
        let old = V::view_or_empty(&stream, target.tag, target.name, None);
        let mut new = self.edited(target, &old, edit)?;
        if has_resource_version(&new) {
            return Err(not_found(self.resource(), target.name));
        }
        V::prepare_create(&mut new, target.tag);
        let errs = V::validate_create(&new, target.tag);
        if !errs.is_empty() {
            return Err(self.invalid(target.name, errs));
        }
        V::write_to_stream(&new, &mut stream, target.tag)?;
        match self.registries.streams.create_stream(ctx, stream).await {
            Ok(stream) => Ok(Some((stream, true))),
            Err(ApiError::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The body or patch applied to the old view, defaulted, in the request's namespace and
    /// under the URL's name.
    fn edited(
        &self,
        target: &Target<'_>,
        old: &V::Object,
        edit: &Edit<'_, V::Object>,
    ) -> Result<V::Object, ApiError> {
        let mut new = edit(old)?;
        V::default(&mut new, &self.registries.policy.import_mode);
        body::check_namespace(&mut new, target.req.namespace.as_deref(), true)?;
        let given = new.metadata().name.clone().unwrap_or_default();
        if !given.is_empty() && given != target.name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({given}) does not match the name on the URL ({})",
                target.name
            )));
        }
        new.metadata_mut().name = Some(target.name.to_string());
        Ok(new)
    }

    /// The resourceVersion the write is held to (spec §9.5 step 5): the given one, which must
    /// be the stream's; without one, the stream's as read (see [`TagView::RETRY_BLIND`]).
    fn resource_version(
        &self,
        name: &str,
        new: &V::Object,
        current: &str,
        first_seen: &str,
    ) -> Result<String, ApiError> {
        let held = match new.metadata().resource_version.as_deref() {
            Some(rv) if !rv.is_empty() => rv,
            _ if V::RETRY_BLIND => current,
            _ => first_seen,
        };
        if held != current {
            return Err(ApiError::Conflict {
                qualified: gr(self.resource()).to_string(),
                group: image_api::GROUP.to_string(),
                kind: self.resource().to_string(),
                name: name.to_string(),
                message: format!("another caller has updated the resource version to {current}"),
            });
        }
        Ok(held.to_string())
    }

    /// DELETE (spec §9.6, §10.5): the spec tag and the history go; a `preconditions.uid` must
    /// be the stream's.
    async fn delete(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(|| self.bad_name())?;
        let opts = DeleteOptions::parse(req)?;
        let write = WriteOptions::for_delete(opts.dry_run);
        let resource = self.resource();
        let remove = |s: &mut ImageStream| {
            if let Some(uid) = &opts.precondition_uid {
                if s.metadata.uid.as_deref() != Some(uid.as_str()) {
                    return Err(ApiError::Conflict {
                        qualified: gr(resource).to_string(),
                        group: image_api::GROUP.to_string(),
                        kind: resource.to_string(),
                        name: name.to_string(),
                        message: "the UID precondition was not met".to_string(),
                    });
                }
            }
            let before = (s.spec.tags.len(), s.status.tags.len());
            s.spec.tags.retain(|t| t.name != tag);
            s.status.tags.retain(|t| t.tag != tag);
            if before == (s.spec.tags.len(), s.status.tags.len()) {
                return Err(not_found(resource, name));
            }
            Ok(())
        };
        let ctx = WriteContext::new(req, &write);
        self.registries
            .change_stream(&ctx, stream_name, UpdateStrategy::Internal, None, remove)
            .await
            .map_err(|e| self.view_error(e, "delete"))?;
        Ok(Reply::Status {
            code: 200,
            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        })
    }

    async fn put(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "UpdateOptions")?;
        let body = self.decode(req, &opts)?;
        self.update(req, name, &opts, &|_| Ok(body.clone())).await
    }

    async fn patch(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "PatchOptions")?;
        let patch = Patch::new(&self.info, req, &opts, &[])?;
        self.update(req, name, &opts, &|old| patch.apply_to(old, name))
            .await
    }
}

/// The view a PUT or PATCH writes, and where.
struct Target<'a> {
    req: &'a Request,
    name: &'a str,
    stream_name: &'a str,
    tag: &'a str,
}

fn has_resource_version<T: ApiObject>(obj: &T) -> bool {
    obj.metadata()
        .resource_version
        .as_deref()
        .is_some_and(|r| !r.is_empty())
}

#[async_trait]
impl<V: TagView> Resource for TagViews<V> {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        let name = req.name.clone();
        match (req.verb, name.as_deref()) {
            (Verb::Get, Some(n)) => self.get(&req, n).await,
            (Verb::List, None) => self.list(&req).await,
            (Verb::Create, None) => self.create(&req).await,
            (Verb::Update, Some(n)) => self.put(&req, n).await,
            (Verb::Patch, Some(n)) => self.patch(&req, n).await,
            (Verb::Delete, Some(n)) => self.delete(&req, n).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        V::table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        std::iter::once(name)
            .chain(V::table_cells(object))
            .collect()
    }
}
