//! `imagesignatures` (spec §4): create and delete only; signatures live inside their Image and
//! are written through the image update path.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::object::ApiObject;
use apimachinery::options::WriteOptions;
use apimachinery::GroupKind;
use apiserver::body;
use apiserver::registry::WriteContext;
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::validation::validate_signature;
use image_api::{Image, ImageSignature};
use serde_json::json;

use crate::resources::registries::Registries;
use crate::resources::views::{gr, not_found};

const RESOURCE: &str = "imagesignatures";

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: RESOURCE,
        singular: "imagesignature",
        kind: "ImageSignature",
        namespaced: false,
        verbs: &["create", "delete"],
        short_names: &[],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageSignatures {
    info: ResourceInfo,
    registries: Arc<Registries>,
}

fn split(name: &str) -> Option<(&str, &str)> {
    let (image, sig) = name.split_once('@')?;
    (!image.is_empty() && !sig.is_empty() && !sig.contains('@')).then_some((image, sig))
}

fn malformed() -> ApiError {
    ApiError::BadRequest(
        "ImageSignatures must be accessed with <imageName>@<signatureName>".to_string(),
    )
}

impl ImageSignatures {
    pub fn new(registries: Arc<Registries>) -> Self {
        ImageSignatures {
            info: info(),
            registries,
        }
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let mut sig: ImageSignature = body::decode_object(&self.info, req, &opts)?;
        // Only type, content and the name survive; the rest is the verifier's to set.
        sig.conditions.clear();
        sig.image_identity.clear();
        sig.signed_claims = None;
        sig.created = None;
        sig.issued_by = None;
        sig.issued_to = None;
        let name = sig.metadata.name.clone().unwrap_or_default();
        let errs: Vec<FieldError> = validate_signature(&sig, &FieldPath::new("signature"))
            .into_iter()
            .map(|mut e| {
                let f = e.field.to_string();
                e.field = FieldPath::new(f.strip_prefix("signature.").unwrap_or(&f));
                e
            })
            .collect();
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                GroupKind::new(image_api::GROUP, "ImageSignature"),
                &name,
                errs,
            ));
        }
        let (image_name, _) = split(&name).ok_or_else(malformed)?;
        let Some((image, rv)) = self.registries.images.current_image(image_name).await? else {
            return Err(not_found("images", image_name));
        };
        let duplicate = image.signatures.iter().any(|s| {
            s.metadata.name.as_deref() == Some(name.as_str())
                || (s.type_ == sig.type_ && s.content == sig.content)
        });
        if duplicate {
            return Err(ApiError::AlreadyExists {
                resource: gr("imageSignatures"),
                name,
            });
        }
        let mut stored = sig.clone();
        stored.kind.clear();
        stored.api_version.clear();
        stored.metadata.resource_version = None;
        let pinned = rv.to_string();
        let add = stored.clone();
        let ctx = WriteContext::new(req, &opts);
        self.registries
            .images
            .update_image(&ctx, image_name, &mut |current: &Image| {
                let mut next = current.clone();
                next.signatures.push(add.clone());
                next.metadata.resource_version = Some(pinned.clone());
                Ok(next)
            })
            .await?;
        let mut out = stored;
        out.set_type_meta("ImageSignature", image_api::API_VERSION);
        Ok(Reply::Object {
            code: 201,
            json: to_bytes(&out).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    async fn delete(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (image_name, _) = split(name).ok_or_else(malformed)?;
        let delete_opts = apiserver::delete::DeleteOptions::parse(req)?;
        let opts = WriteOptions::for_delete(delete_opts.dry_run);
        let Some((image, _)) = self.registries.images.current_image(image_name).await? else {
            return Err(not_found("images", image_name));
        };
        if !image
            .signatures
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name))
        {
            return Err(ApiError::NotFound {
                resource: gr("imageSignatures"),
                name: name.to_string(),
            });
        }
        let target = name.to_string();
        let ctx = WriteContext::new(req, &opts);
        self.registries
            .images
            .update_image(&ctx, image_name, &mut |current: &Image| {
                let mut next = current.clone();
                next.signatures
                    .retain(|s| s.metadata.name.as_deref() != Some(target.as_str()));
                Ok(next)
            })
            .await?;
        Ok(Reply::Status {
            code: 200,
            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        })
    }
}

#[async_trait]
impl Resource for ImageSignatures {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.name.clone()) {
            (Verb::Create, None) => self.create(&req).await,
            (Verb::Delete, Some(name)) => self.delete(&req, &name).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }
}
