//! What a stored resource plugs into the generic registry: k8s.io/apiserver's `Strategy`
//! (prepare for create/update, validate, status split, selectable fields, table rows), and the
//! watch-cache codec built from it.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::FieldError;
use apimachinery::table::ColumnDefinition;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use storage::cache::{Codec, CodecError, Decoded, Unversioned};
use storage::Revision;

use crate::resource::UserInfo;

pub use apimachinery::object::ApiObject;

/// What the strategy may need to know about the request, and its one way to read other
/// objects of its resource.
pub struct StrategyContext<'a, O> {
    pub user: &'a UserInfo,
    pub namespace: Option<&'a str>,
    pub lookup: &'a dyn Lookup<O>,
}

/// Reads of other objects of the same resource that validation needs (an image stream's tags
/// may reference another stream). The registry serves them from its watch cache; tests pass a
/// fake. Strategies do no I/O of their own.
#[async_trait]
pub trait Lookup<O>: Send + Sync {
    /// The object's served form as of now (a consistent read), or `None`.
    async fn get(&self, namespace: Option<&str>, name: &str) -> Result<Option<O>, ApiError>;
}

/// A stored resource's behavior. Every method has the default of a plain resource.
#[async_trait]
pub trait Strategy: Send + Sync + 'static {
    type Object: ApiObject;

    fn info(&self) -> &ResourceInfo;

    /// Defaulting applied to request bodies and to objects read from storage.
    fn default(&self, _obj: &mut Self::Object) {}

    /// Computed fields filled on every read (and in write responses).
    fn decorate(&self, _obj: &mut Self::Object) {}

    /// Output-only normalization, applied to served objects after `decorate` (never before
    /// validation).
    fn present(&self, _obj: &mut Self::Object) {}

    /// Name validation for `metadata.name` and `metadata.generateName`.
    fn validate_name(&self, name: &str, prefix: bool) -> Vec<String>;

    fn prepare_for_create(&self, obj: &mut Self::Object);

    /// Validation on create; it may still change the object (upstream's image stream
    /// validation writes tag events).
    async fn validate_create(
        &self,
        ctx: &StrategyContext<'_, Self::Object>,
        obj: &mut Self::Object,
    ) -> Vec<FieldError>;

    fn prepare_for_update(&self, new: &mut Self::Object, old: &Self::Object);

    /// An update by the server itself (virtual resources): spec and status both change.
    /// Upstream calls this the internal strategy.
    fn prepare_for_internal_update(&self, new: &mut Self::Object, old: &Self::Object) {
        self.prepare_for_update(new, old);
    }

    async fn validate_update(
        &self,
        ctx: &StrategyContext<'_, Self::Object>,
        new: &mut Self::Object,
        old: &Self::Object,
    ) -> Vec<FieldError>;

    /// Whether a PUT or PATCH without a resourceVersion overwrites the latest version
    /// (upstream's `AllowUnconditionalUpdate`); when false it is a 422.
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Whether the resource has a `/status` subresource.
    fn has_status(&self) -> bool {
        false
    }

    fn prepare_for_status_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}

    async fn validate_status_update(
        &self,
        _ctx: &StrategyContext<'_, Self::Object>,
        _new: &mut Self::Object,
        _old: &Self::Object,
    ) -> Vec<FieldError> {
        Vec::new()
    }

    /// Field selector fields beyond `metadata.name` and `metadata.namespace`.
    fn selectable_fields(&self, _obj: &Self::Object) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The names of those fields, for validating selectors.
    fn selectable_field_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Table columns after `Name` (Go's default table has `Created At`).
    fn table_columns(&self) -> Vec<ColumnDefinition>;

    /// The cells after the name.
    fn table_cells(&self, obj: &Self::Object) -> Vec<Value>;

    /// Whether deletes honor `propagationPolicy` Foreground/Orphan by adding finalizers
    /// (Images report GC as unsupported upstream).
    fn garbage_collection(&self) -> bool {
        true
    }

    /// Fields of the object's JSON that the fieldsV1 of managedFields treat as keyed lists:
    /// (path of the list, key field).
    fn list_merge_keys(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// What lists and watches filter on: labels and selectable fields. Kept compact (boxed
/// slices, no maps): one of these lives in the watch cache per object.
#[derive(Clone, Debug, Default)]
pub struct ObjectAttrs {
    /// Sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    fields: Box<[(&'static str, Box<str>)]>,
}

impl ObjectAttrs {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| &**v)
    }
}

pub fn object_attrs<S: Strategy>(strategy: &S, obj: &S::Object) -> ObjectAttrs {
    let meta = obj.metadata();
    let mut fields = vec![
        ("metadata.name", meta.name.as_deref().unwrap_or("").into()),
        (
            "metadata.namespace",
            meta.namespace.as_deref().unwrap_or("").into(),
        ),
    ];
    fields.extend(
        strategy
            .selectable_fields(obj)
            .into_iter()
            .map(|(k, v)| (k, v.into_boxed_str())),
    );
    let labels: Vec<(Box<str>, Box<str>)> = meta
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect();
    ObjectAttrs {
        labels: labels.into_boxed_slice(),
        fields: fields.into_boxed_slice(),
    }
}

/// The watch-cache codec of a strategy: decodes the stored JSON, applies defaults and
/// decorations, sets kind, apiVersion and resourceVersion, and extracts the attributes.
pub struct ObjectCodec<S: Strategy> {
    pub strategy: Arc<S>,
}

impl<S: Strategy> ObjectCodec<S> {
    /// The served form of a stored value.
    pub fn served(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<S::Object, CodecError> {
        let mut obj: S::Object =
            serde_json::from_slice(value).map_err(|source| CodecError::Json {
                key: key.to_string(),
                source,
            })?;
        self.prepare_served(&mut obj, revision);
        Ok(obj)
    }

    /// The wire JSON of `obj`, already in served form, rendered before the store gives it a
    /// revision, and its attributes: what a write announces to the watch cache.
    pub fn unversioned(&self, obj: &mut S::Object) -> Option<(Unversioned, ObjectAttrs)> {
        let attrs = object_attrs(self.strategy.as_ref(), obj);
        let placeholder = revision_placeholder();
        obj.metadata_mut().resource_version = Some(placeholder.to_string());
        let json = serde_json::to_vec(&*obj);
        obj.metadata_mut().resource_version = None;
        Some((
            Unversioned::from_placeholder(json.ok()?, placeholder)?,
            attrs,
        ))
    }

    pub fn prepare_served(&self, obj: &mut S::Object, revision: Revision) {
        let info = self.strategy.info();
        obj.set_type_meta(info.kind, &info.group_version());
        self.strategy.default(obj);
        self.strategy.decorate(obj);
        self.strategy.present(obj);
        obj.metadata_mut().resource_version = (revision > 0).then(|| revision.to_string());
    }
}

/// What stands for the resourceVersion in JSON rendered before the revision is known: random
/// per process, so no client can put it anywhere else in an object.
fn revision_placeholder() -> &'static str {
    static PLACEHOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PLACEHOLDER.get_or_init(|| format!("rv-{}", uuid::Uuid::new_v4().simple()))
}

/// Encodes an object as compact JSON bytes, without spare capacity: these buffers live in the
/// watch cache for as long as the object does.
pub fn to_bytes<T: Serialize>(obj: &T) -> Result<Bytes, serde_json::Error> {
    let mut out = serde_json::to_vec(obj)?;
    out.shrink_to_fit();
    Ok(Bytes::from(out))
}

/// The watch cache keeps each object's JSON LZ4-compressed: JSON of API objects compresses
/// severalfold, expanding it costs about a microsecond per object, and the cache is what
/// dominates the server's memory.
impl<S: Strategy> Codec for ObjectCodec<S> {
    type Attrs = ObjectAttrs;

    fn decode(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<Decoded<Self::Attrs>, CodecError> {
        let obj = self.served(key, value, revision)?;
        let attrs = object_attrs(self.strategy.as_ref(), &obj);
        let json = serde_json::to_vec(&obj).map_err(|source| CodecError::Json {
            key: key.to_string(),
            source,
        })?;
        Ok(Decoded {
            json: self.keep(Bytes::from(json)),
            attrs,
        })
    }

    fn keep(&self, json: Bytes) -> Bytes {
        let mut packed = lz4_flex::compress_prepend_size(&json);
        packed.shrink_to_fit();
        Bytes::from(packed)
    }

    fn wire(&self, key: &str, cached: &Bytes) -> Result<Bytes, CodecError> {
        lz4_flex::decompress_size_prepended(cached)
            .map(Bytes::from)
            .map_err(|e| CodecError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })
    }
}
