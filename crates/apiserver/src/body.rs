//! The one way from a write request's body to a typed object, for stored and virtual resources
//! alike: a POST or PUT body is decoded by [`decode_object`], a PATCH of any type is a
//! [`Patch`] applied to the current object. Both check apiVersion and kind, and report unknown
//! (and, in JSON bodies, duplicate) fields as `fieldValidation` says.

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{BadValue, FieldError, FieldPath};
use apimachinery::meta::ManagedFieldsEntry;
use apimachinery::object::ApiObject;
use apimachinery::options::WriteOptions;
use apimachinery::GroupKind;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::decode::{self, DecodeError};
use crate::patch::{self, PatchType};
use crate::resource::{Request, Warnings};

/// The object of a POST or PUT body. Strict-mode failures are 400s, as for kube's decoder.
pub fn decode_object<T: DeserializeOwned>(
    info: &ResourceInfo,
    req: &Request,
    opts: &WriteOptions,
) -> Result<T, ApiError> {
    let json = matches!(req.content_type.as_deref(), None | Some("application/json"));
    if json {
        let fast = decode::typed_json(&req.body, info);
        if let Some(obj) = fast.map_err(|e| e.for_body(info))? {
            return Ok(obj);
        }
    }
    let value = decode::body_value(&req.body, req.content_type.as_deref())?;
    decode::check_type_meta(&value, info)?;
    let duplicates = if json {
        decode::duplicate_fields(&req.body)
    } else {
        Vec::new()
    };
    decode::typed_checked(
        value,
        &duplicates,
        info,
        opts.field_validation,
        &req.warnings,
    )
    .map_err(|e| e.for_body(info))
}

/// An object's namespace is the request's: another one is a 400, none takes the request's.
/// Cluster-scoped objects have none.
pub fn check_namespace<T: ApiObject>(
    obj: &mut T,
    request_namespace: Option<&str>,
    namespaced: bool,
) -> Result<(), ApiError> {
    let meta = obj.metadata_mut();
    if !namespaced {
        meta.namespace = None;
        return Ok(());
    }
    let url_ns = request_namespace.unwrap_or("");
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_string(),
        )),
        _ => {
            meta.namespace = (!url_ns.is_empty()).then(|| url_ns.to_string());
            Ok(())
        }
    }
}

/// A PATCH request, checked once before any object is read: its type, and `force` only with
/// apply.
pub struct Patch<'a> {
    pub patch_type: PatchType,
    info: &'a ResourceInfo,
    body: &'a [u8],
    opts: &'a WriteOptions,
    warnings: &'a Warnings,
    /// The keyed lists of the resource (strategic merge patch and apply merge them by key).
    merge_keys: &'a [(&'a str, &'a str)],
}

impl<'a> Patch<'a> {
    pub fn new(
        info: &'a ResourceInfo,
        req: &'a Request,
        opts: &'a WriteOptions,
        merge_keys: &'a [(&'a str, &'a str)],
    ) -> Result<Self, ApiError> {
        let patch_type = PatchType::from_content_type(req.content_type.as_deref())?;
        if patch_type != PatchType::Apply {
            reject_force(opts)?;
        }
        Ok(Patch {
            patch_type,
            info,
            body: &req.body,
            opts,
            warnings: &req.warnings,
            merge_keys,
        })
    }

    /// What `old` becomes under the patch. A result that does not decode is a 422 on field
    /// `patch`, as kube answers.
    ///
    /// An apply patch here merges the applied configuration as its sole owner would: this is
    /// apply for objects that keep no managedFields of their own (the virtual resources), so
    /// there is nobody to conflict with and nothing previously applied to remove. Stored
    /// resources track ownership and take apply through `apply::apply` instead.
    ///
    /// When the patch can neither change nor read `metadata.managedFields`, the old object's
    /// entries are set aside and put back on the result instead of going through the patched
    /// document: they are often the largest part of a large object, and the document would
    /// parse their fieldsV1 into values and render them again for nothing. The patched-size
    /// limit then counts the document without them, which is what the patch made.
    pub fn apply_to<T: ApiObject>(&self, old: &T, name: &str) -> Result<T, ApiError> {
        let (doc, set_aside) = if patch::leaves_managed_fields_alone(self.patch_type, self.body) {
            let (doc, entries) = value_apart_from_managed_fields(old)?;
            (doc, Some(entries))
        } else {
            (to_value(old)?, None)
        };
        let doc = self.patched(doc)?;
        decode::check_type_meta(&doc, self.info)?;
        let decoded: Result<T, _> =
            decode::typed_borrowed(&doc, self.info, self.opts.field_validation, self.warnings);
        match (decoded, set_aside) {
            (Ok(mut obj), Some(entries)) => {
                obj.metadata_mut().managed_fields = entries;
                Ok(obj)
            }
            (Ok(obj), None) => Ok(obj),
            (Err(e), None) => Err(patched_invalid(self.info, name, &doc, e)),
            // The message quotes the whole patched object, as it would have been.
            (Err(e), Some(_)) => {
                let whole = self.patched(to_value(old)?)?;
                Err(patched_invalid(self.info, name, &whole, e))
            }
        }
    }

    /// `doc` with this patch applied.
    fn patched(&self, mut doc: Value) -> Result<Value, ApiError> {
        match self.patch_type {
            PatchType::Json => patch::apply_json_patch(&mut doc, self.body)?,
            PatchType::Merge => patch::apply_merge_patch(&mut doc, self.body)?,
            PatchType::Strategic => {
                patch::apply_strategic_merge_patch(&mut doc, self.body, self.merge_keys)?
            }
            PatchType::Apply => doc = self.applied_as_sole_owner(doc)?,
        }
        Ok(doc)
    }

    fn applied_as_sole_owner(&self, mut live: Value) -> Result<Value, ApiError> {
        let manager = crate::apply::required_field_manager(self.opts)?;
        let applied = crate::apply::applied_configuration(self.body, self.info)?;
        let managed = live
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("managedFields"));
        let (mut merged, _) = crate::apply::apply_to_entries(
            &live,
            &[],
            &applied,
            &crate::apply::Applier::new(&manager, &self.info.group_version(), self.merge_keys)
                .forced(),
        )
        .map_err(|c| crate::apply::conflict_error(&c))?;
        crate::limits::check_patched_size(&merged)?;
        if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            match managed {
                Some(m) => meta.insert("managedFields".into(), m),
                None => meta.remove("managedFields"),
            };
        }
        Ok(merged)
    }
}

/// `obj` as a value without its managedFields, and the entries: they are often the largest
/// part of a large object, and a value would hold their fieldsV1 parsed.
pub(crate) fn value_apart_from_managed_fields<T: ApiObject>(
    obj: &T,
) -> Result<(Value, Option<Vec<ManagedFieldsEntry>>), ApiError> {
    let mut bare = obj.clone();
    let entries = bare.metadata_mut().managed_fields.take();
    Ok((to_value(&bare)?, entries))
}

fn to_value<T: Serialize>(obj: &T) -> Result<Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A patch result that does not decode: 422 on field `patch` (Strict unknown fields too).
fn patched_invalid(info: &ResourceInfo, name: &str, doc: &Value, e: DecodeError) -> ApiError {
    let detail = match e {
        DecodeError::Strict(d) => d,
        DecodeError::Malformed(e) => e.to_string(),
    };
    ApiError::invalid(
        GroupKind::new(info.group, info.kind),
        name,
        vec![FieldError::invalid(
            &FieldPath::new("patch"),
            BadValue::Str(doc.to_string()),
            detail,
        )],
    )
}

/// `force` belongs to apply patches only.
fn reject_force(opts: &WriteOptions) -> Result<(), ApiError> {
    if opts.force.is_none() {
        return Ok(());
    }
    Err(ApiError::invalid(
        GroupKind::new("meta.k8s.io", "PatchOptions"),
        "",
        vec![FieldError::forbidden(
            &FieldPath::new("force"),
            "may not be specified for non-apply patch",
        )],
    ))
}
