//! `imagestreamimports` (spec §13), create only: looks images up in container registries
//! through the importer and, with `spec.import`, records them in the stream (images created,
//! tags reset, history and conditions written through the internal strategy). The import
//! controller calls [`ImageStreamImports::import`], the same code a POST reaches.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::options::WriteOptions;
use apimachinery::GroupKind;
use apiserver::body;
use apiserver::registry::{UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use async_trait::async_trait;
use image_api::imports::{apply_import, clear_unrequested_manifests, ImportWrite};
use image_api::imports::{succeeded, REPOSITORY_CHECK_ANNOTATION};
use image_api::validation::validate_image_stream_import;
use image_api::{Image, ImageImportStatus, ImageStream, ImageStreamImport};
use importer::{ImportInput, Importer, Keyring};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::metrics::ImportMetrics;
use crate::resources::registries::Registries;
use crate::resources::views::{gr, new_stream};

const RESOURCE: &str = "imagestreamimports";
const KIND: &str = "ImageStreamImport";

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: RESOURCE,
        singular: "imagestreamimport",
        kind: KIND,
        namespaced: true,
        verbs: &["create"],
        short_names: &[],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageStreamImports {
    info: ResourceInfo,
    registries: Arc<Registries>,
    importer: Arc<Importer>,
    metrics: Arc<ImportMetrics>,
}

/// The guards a request (or the controller) puts on the target stream.
struct Guards {
    resource_version: Option<String>,
    uid: Option<String>,
}

impl ImageStreamImports {
    pub fn new(
        registries: Arc<Registries>,
        importer: Arc<Importer>,
        metrics: Arc<ImportMetrics>,
    ) -> Self {
        ImageStreamImports {
            info: info(),
            registries,
            importer,
            metrics,
        }
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        if req.namespace.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::BadRequest(
                "a namespace must be specified to import images".to_string(),
            ));
        }
        let mut isi: ImageStreamImport = body::decode_object(&self.info, req, &opts)?;
        body::check_namespace(&mut isi, req.namespace.as_deref(), true)?;
        let ctx = WriteContext::new(req, &opts);
        let done = self.import(&ctx, isi).await?;
        let mut done = done;
        done.kind = KIND.to_string();
        done.api_version = image_api::API_VERSION.to_string();
        let json = serde_json::to_vec(&done).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Reply::Object {
            code: 201,
            json: json.into(),
        })
    }

    /// The whole create: validation, guards, the import, and (with `spec.import`) the writes.
    pub async fn import(
        &self,
        ctx: &WriteContext<'_>,
        mut isi: ImageStreamImport,
    ) -> Result<ImageStreamImport, ApiError> {
        let guards = prepare_for_create(&mut isi);
        let name = isi.metadata.name.clone().unwrap_or_default();
        let errs = validate_image_stream_import(&isi);
        if !errs.is_empty() {
            return Err(invalid(&name, errs));
        }
        self.check_whitelist(&isi)?;
        let namespace = isi.metadata.namespace.clone().unwrap_or_default();
        let stream = self.target_stream(&namespace, &name, &guards).await?;
        let keyring = self.namespace_keyring(&namespace).await?;
        let now = jiff::Timestamp::now();
        let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let started = std::time::Instant::now();
        isi.status = self
            .importer
            .import(&ImportInput {
                spec: &isi.spec,
                stream: stream.as_ref(),
                keyring: keyring.as_ref(),
                now: &now_text,
            })
            .await;
        self.metrics.record(&isi.status, started.elapsed());
        if !isi.spec.import {
            clear_unrequested_manifests(&mut isi);
            return Ok(isi);
        }
        self.persist_images(ctx, &mut isi).await?;
        let written = self.write_stream(ctx, &isi, stream, Time(now)).await?;
        isi.status.import = Some(Box::new(written));
        clear_unrequested_manifests(&mut isi);
        Ok(isi)
    }

    /// In a cluster, the namespace's pull secrets are the import's credentials (spec §13.4),
    /// ahead of the server's own (`--authfile`). An import waits for them to load rather than
    /// run anonymously and record failures that are not the registry's.
    async fn namespace_keyring(&self, namespace: &str) -> Result<Option<Keyring>, ApiError> {
        let Some(cluster) = &self.registries.cluster else {
            return Ok(None);
        };
        cluster.require_secrets_loaded().await?;
        Ok(cluster.keyring(namespace))
    }

    /// Upstream checks the allowed registries only for users who may not create images; we
    /// have no authorizer yet, so a configured list is always honored.
    fn check_whitelist(&self, isi: &ImageStreamImport) -> Result<(), ApiError> {
        let whitelist = &self.registries.policy.whitelist;
        if !whitelist.is_configured() {
            return Ok(());
        }
        let mut errs = Vec::new();
        let images = FieldPath::new("spec").child("images");
        for (i, image) in isi.spec.images.iter().enumerate() {
            let from = image.from.name.as_deref().unwrap_or("");
            if let Err(e) = whitelist.check_reference(from, image.import_policy.insecure) {
                errs.push(forbidden_registry(&images.index(i), from, &e));
            }
        }
        if let Some(repo) = &isi.spec.repository {
            let from = repo.from.name.as_deref().unwrap_or("");
            if let Err(e) = whitelist.check_reference(from, repo.import_policy.insecure) {
                let path = FieldPath::new("spec").child("repository");
                errs.push(forbidden_registry(&path, from, &e));
            }
        }
        if errs.is_empty() {
            return Ok(());
        }
        let name = isi.metadata.name.clone().unwrap_or_default();
        Err(invalid(&name, errs))
    }

    /// The stream the results go to (None: it does not exist yet), after the guards: a
    /// resourceVersion or uid the request carries must match it.
    async fn target_stream(
        &self,
        namespace: &str,
        name: &str,
        guards: &Guards,
    ) -> Result<Option<ImageStream>, ApiError> {
        let current = self
            .registries
            .streams
            .current_stream(namespace, name)
            .await?;
        let Some((stream, _)) = current else {
            if guards.resource_version.is_some() || guards.uid.is_some() {
                return Err(ApiError::NotFound {
                    resource: gr("imagestreams"),
                    name: name.to_string(),
                });
            }
            return Ok(None);
        };
        let current_rv = stream.metadata.resource_version.clone().unwrap_or_default();
        if let Some(rv) = guards
            .resource_version
            .as_ref()
            .filter(|rv| **rv != current_rv)
        {
            return Err(ApiError::Conflict {
                qualified: "imagestream.image.openshift.io".to_string(),
                group: image_api::GROUP.to_string(),
                kind: "imagestream".to_string(),
                name: name.to_string(),
                message: format!("the image stream was updated from {rv:?} to {current_rv:?}"),
            });
        }
        let current_uid = stream.metadata.uid.as_deref().unwrap_or("");
        if guards.uid.as_deref().is_some_and(|uid| uid != current_uid) {
            return Err(ApiError::NotFound {
                resource: gr("imagestream"),
                name: name.to_string(),
            });
        }
        Ok(Some(stream))
    }

    /// Creates the imported Images (children of a manifest list first), without their raw
    /// manifest and config; an existing Image is fine and left as it is.
    async fn persist_images(
        &self,
        ctx: &WriteContext<'_>,
        isi: &mut ImageStreamImport,
    ) -> Result<(), ApiError> {
        let mut created = std::collections::HashSet::new();
        let results = isi.status.images.iter_mut().chain(
            isi.status
                .repository
                .iter_mut()
                .flat_map(|r| r.images.iter_mut()),
        );
        for result in results.filter(|r| succeeded(&r.status)) {
            self.persist_result(ctx, result, &mut created).await?;
        }
        Ok(())
    }

    async fn persist_result(
        &self,
        ctx: &WriteContext<'_>,
        result: &mut ImageImportStatus,
        created: &mut std::collections::HashSet<String>,
    ) -> Result<(), ApiError> {
        for child in &mut result.manifests {
            self.persist_image(ctx, child, created).await?;
        }
        if let Some(image) = result.image.as_mut() {
            self.persist_image(ctx, image, created).await?;
        }
        Ok(())
    }

    /// The answer shows the created object (uid, resourceVersion) unless it existed already;
    /// the raw manifest and config stay in the answer until the request's own choice clears them.
    async fn persist_image(
        &self,
        ctx: &WriteContext<'_>,
        image: &mut Image,
        created: &mut std::collections::HashSet<String>,
    ) -> Result<(), ApiError> {
        let name = image.metadata.name.clone().unwrap_or_default();
        if !created.insert(name) {
            return Ok(());
        }
        let mut stored = image.clone();
        stored.signatures.clear();
        stored.docker_image_manifest.clear();
        stored.docker_image_config.clear();
        match self.registries.images.create_image(ctx, stored).await {
            Ok(mut written) => {
                written.docker_image_manifest = std::mem::take(&mut image.docker_image_manifest);
                written.docker_image_config = std::mem::take(&mut image.docker_image_config);
                *image = written;
                Ok(())
            }
            Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records the results in the stream: a new stream is created (spec first, then the
    /// status through the internal strategy); an existing one is changed only when the
    /// results change it or it lacks the repository-check annotation.
    async fn write_stream(
        &self,
        ctx: &WriteContext<'_>,
        isi: &ImageStreamImport,
        stream: Option<ImageStream>,
        now: Time,
    ) -> Result<ImageStream, ApiError> {
        let name = isi.metadata.name.clone().unwrap_or_default();
        let namespace = isi.metadata.namespace.clone().unwrap_or_default();
        let import_mode = self.registries.policy.import_mode.clone();
        let write = |next_generation| ImportWrite {
            next_generation,
            now: now.clone(),
            import_mode: &import_mode,
        };
        let stamp = now.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        if stream.is_none() {
            let mut fresh = new_stream(&namespace, &name);
            apply_import(&mut fresh, isi, &write(1));
            annotate(&mut fresh, &stamp);
            match self.create_with_status(ctx, fresh).await {
                // Someone created it, or wrote it between our create and status write: the
                // results go onto the stream as it is now.
                Err(ApiError::AlreadyExists { .. } | ApiError::Conflict { .. }) => {}
                done => return done,
            }
        }
        let pinned = stream.and_then(|s| s.metadata.resource_version);
        let change = |s: &mut ImageStream| {
            let next = s.metadata.generation.unwrap_or(0) + 1;
            let changed = apply_import(s, isi, &write(next));
            if changed || !has_annotation(s) {
                annotate(s, &stamp);
            }
            Ok(())
        };
        self.registries
            .change_stream(ctx, &name, UpdateStrategy::Internal, pinned, change)
            .await
    }

    /// Creation validates and resets the status like any create; the import's status goes in
    /// right after through the internal strategy, which keeps it.
    async fn create_with_status(
        &self,
        ctx: &WriteContext<'_>,
        stream: ImageStream,
    ) -> Result<ImageStream, ApiError> {
        let name = stream.metadata.name.clone().unwrap_or_default();
        let status = stream.status.clone();
        let created = self.registries.streams.create_stream(ctx, stream).await?;
        if ctx.options.dry_run {
            let mut shown = created;
            shown.status.tags = status.tags;
            return Ok(shown);
        }
        let rv = created.metadata.resource_version.clone();
        let set_status = |s: &mut ImageStream| {
            s.status.tags = status.tags.clone();
            Ok(())
        };
        self.registries
            .change_stream(ctx, &name, UpdateStrategy::Internal, rv, set_status)
            .await
    }
}

/// BeforeCreate for an object that is never stored: the client's uid and resourceVersion are
/// kept aside as guards (upstream overwrote the uid first, so its uid guard never fired), the
/// system fields are fresh, and any status is dropped.
fn prepare_for_create(isi: &mut ImageStreamImport) -> Guards {
    let meta = &mut isi.metadata;
    let guards = Guards {
        resource_version: meta.resource_version.take().filter(|s| !s.is_empty()),
        uid: meta.uid.take().filter(|s| !s.is_empty()),
    };
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp = Some(Time(jiff::Timestamp::now()));
    meta.generation = None;
    isi.status = Default::default();
    guards
}

fn has_annotation(s: &ImageStream) -> bool {
    s.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(REPOSITORY_CHECK_ANNOTATION))
}

fn annotate(s: &mut ImageStream, stamp: &str) {
    s.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REPOSITORY_CHECK_ANNOTATION.to_string(), stamp.to_string());
}

fn invalid(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(GroupKind::new(image_api::GROUP, KIND), name, errs)
}

fn forbidden_registry(path: &FieldPath, from: &str, reason: &str) -> FieldError {
    let registry = image_api::reference::DockerImageReference::parse(from)
        .map(|r| r.registry)
        .unwrap_or_default();
    FieldError::forbidden(
        &path.child("from").child("name"),
        format!("importing images from registry {registry:?} is forbidden: {reason}"),
    )
}

#[async_trait]
impl Resource for ImageStreamImports {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.name.as_deref()) {
            (Verb::Create, None) => self.create(&req).await,
            (Verb::Get, Some(_)) => Err(ApiError::RouteNotFound),
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }
}
