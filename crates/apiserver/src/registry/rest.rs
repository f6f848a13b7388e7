//! The registry served over HTTP: request bodies in, typed calls to the core, bytes out. PUT,
//! PATCH and apply become update functions for the one read-modify-write loop.

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::options::{ListOptions, WriteOptions};
use apimachinery::table::ColumnDefinition;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use storage::cache::ReadRevision;
use storage::Revision;

use super::{internal, render, Deleted, Registry, UpdateStrategy, WriteContext, Written};
use crate::body::{self, Patch};
use crate::delete::DeleteOptions;
use crate::patch::PatchType;
use crate::resource::{Reply, Request, Resource, Verb};
use crate::strategy::{ApiObject, Strategy};

/// A request's object decoded from its body and defaulted by the strategy.
pub fn decode_body<S: Strategy>(
    strategy: &S,
    req: &Request,
    opts: &WriteOptions,
) -> Result<S::Object, ApiError> {
    let mut obj: S::Object = body::decode_object(strategy.info(), req, opts)?;
    strategy.default(&mut obj);
    Ok(obj)
}

/// How many times an apply starts over after its object was created or deleted under it.
const APPLY_ATTEMPTS: usize = 4;

/// Whether an apply lost a race with a create or a delete of its object: its create found the
/// name taken, or its update found the object gone (only the main resource creates, so a
/// missing object is final for `/status`).
fn lost_existence_race(e: &ApiError, strategy: UpdateStrategy) -> bool {
    match e {
        ApiError::AlreadyExists { .. } => true,
        ApiError::NotFound { .. } => strategy == UpdateStrategy::Main,
        _ => false,
    }
}

fn object_reply<T: serde::Serialize>(code: u16, obj: &T) -> Result<Reply, ApiError> {
    Ok(Reply::Object {
        code,
        json: render(obj)?,
    })
}

impl<S: Strategy> Registry<S> {
    fn written_reply(&self, code: u16, written: Written<S::Object>) -> Result<Reply, ApiError> {
        Ok(Reply::Object {
            code,
            json: self.written_json(written)?,
        })
    }

    async fn get_reply(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let at = match req.query.get("resourceVersion").filter(|s| !s.is_empty()) {
            None => ReadRevision::Consistent,
            Some(rv) => match apimachinery::options::parse_resource_version(rv)? {
                0 => ReadRevision::Any,
                n => ReadRevision::NotOlderThan(n as Revision),
            },
        };
        let json = self
            .get_wire(req.namespace.as_deref(), name, at)
            .await?
            .ok_or_else(|| self.not_found(name))?;
        Ok(Reply::Object { code: 200, json })
    }

    async fn list_reply(&self, req: &Request, opts: &ListOptions) -> Result<Reply, ApiError> {
        let page = self.list_wire(req.namespace.as_deref(), opts).await?;
        Ok(Reply::List {
            kind: format!("{}List", self.info().kind),
            api_version: self.info().group_version(),
            metadata: serde_json::to_value(&page.metadata).map_err(internal)?,
            items: page.items,
        })
    }

    async fn create_reply(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let obj = decode_body(self.strategy(), req, &opts)?;
        let created = self
            .create_written(&WriteContext::new(req, &opts), obj)
            .await?;
        self.written_reply(201, created)
    }

    async fn put_reply(
        &self,
        req: &Request,
        name: &str,
        strategy: UpdateStrategy,
    ) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "UpdateOptions")?;
        let mut body = decode_body(self.strategy(), req, &opts)?;
        let ctx =
            WriteContext::new(req, &opts).expecting(self.expected_revision(req, name, &mut body));
        // Held to a revision, a PUT that loses its compare-and-swap finds the object moved on
        // and answers 409 without producing again: its one attempt takes the body uncloned.
        let reusable = ctx.expected_revision.is_none();
        let mut body = Some(body);
        let updated = self
            .update_written(&ctx, name, strategy, |_| match body.take() {
                Some(b) if reusable => {
                    let copy = b.clone();
                    body = Some(b);
                    Ok(copy)
                }
                Some(b) => Ok(b),
                None => Err(ApiError::conflict(&self.gr, name)),
            })
            .await?;
        self.written_reply(200, updated)
    }

    /// The revision a PUT body names, when the update would hold it to it: its identity is
    /// right (else the update answers that first) and the version is a number.
    fn expected_revision(
        &self,
        req: &Request,
        name: &str,
        body: &mut S::Object,
    ) -> Option<Revision> {
        self.check_identity(req.namespace.as_deref(), name, body)
            .ok()?;
        let rv = body.metadata().resource_version.as_deref()?;
        apimachinery::options::parse_resource_version(rv)
            .ok()
            .map(|rv| rv as Revision)
    }

    async fn patch_reply(
        &self,
        req: &Request,
        name: &str,
        strategy: UpdateStrategy,
    ) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "PatchOptions")?;
        let patch = Patch::new(self.info(), req, &opts, self.strategy.list_merge_keys())?;
        if patch.patch_type == PatchType::Apply {
            return self.apply_reply(req, &opts, name, strategy).await;
        }
        let ctx = WriteContext::new(req, &opts);
        let updated = self
            .update_written(&ctx, name, strategy, |old| {
                let mut obj = patch.apply_to(old, name)?;
                self.strategy.default(&mut obj);
                Ok(obj)
            })
            .await?;
        self.written_reply(200, updated)
    }

    /// Server-side apply. An apply decides between create and update on its first read; when
    /// the object appears or goes before its write, it starts over against what is there now,
    /// as kube's guaranteed update does, instead of answering AlreadyExists or NotFound.
    async fn apply_reply(
        &self,
        req: &Request,
        opts: &WriteOptions,
        name: &str,
        strategy: UpdateStrategy,
    ) -> Result<Reply, ApiError> {
        let mut attempt = 1;
        loop {
            match crate::apply::apply(self, req, opts, name, strategy).await {
                Ok((code, written)) => return self.written_reply(code, written),
                Err(e) if attempt < APPLY_ATTEMPTS && lost_existence_race(&e, strategy) => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The Status of a completed delete.
    fn deleted_status(&self, name: &str, obj: &S::Object) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": self.gr.group,
                "kind": self.gr.resource,
                "uid": obj.metadata().uid.clone().unwrap_or_default(),
            },
        })
    }

    async fn delete_reply(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let opts = DeleteOptions::parse(req)?;
        match self.delete(req.namespace.as_deref(), name, &opts).await? {
            Deleted::Gone(obj) => Ok(Reply::Status {
                code: 200,
                status: self.deleted_status(name, &obj),
            }),
            Deleted::Pending(obj) => object_reply(200, &obj),
        }
    }

    async fn delete_collection_reply(&self, req: &Request) -> Result<Reply, ApiError> {
        let delete_opts = DeleteOptions::parse(req)?;
        let list_opts = ListOptions::parse(&req.query, false)?;
        let outcomes = self
            .delete_collection(req.namespace.as_deref(), &list_opts, &delete_opts)
            .await?;
        let items = outcomes
            .iter()
            .map(|(Deleted::Gone(obj) | Deleted::Pending(obj))| render(obj))
            .collect::<Result<Vec<Bytes>, _>>()?;
        let revision = self.current_revision().await?;
        Ok(Reply::List {
            kind: format!("{}List", self.info().kind),
            api_version: self.info().group_version(),
            metadata: json!({"resourceVersion": revision.to_string()}),
            items,
        })
    }
}

#[async_trait]
impl<S: Strategy> Resource for Registry<S> {
    fn info(&self) -> &ResourceInfo {
        self.strategy.info()
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        let strategy = match req.subresource.as_deref() {
            None => UpdateStrategy::Main,
            Some("status") if self.strategy.has_status() => UpdateStrategy::Status,
            Some(_) => return Err(ApiError::RouteNotFound),
        };
        let main = strategy == UpdateStrategy::Main;
        let name = req.name.clone();
        match (req.verb, name.as_deref()) {
            (Verb::Get, Some(name)) => self.get_reply(&req, name).await,
            (Verb::List, None) => {
                let opts = ListOptions::parse(&req.query, false)?;
                self.list_reply(&req, &opts).await
            }
            (Verb::Watch, _) if main => {
                let opts = ListOptions::parse(&req.query, true)?;
                Ok(Reply::Watch(self.watch(&req, opts).await?))
            }
            (Verb::Create, None) => self.create_reply(&req).await,
            (Verb::Update, Some(name)) => self.put_reply(&req, name, strategy).await,
            (Verb::Patch, Some(name)) => self.patch_reply(&req, name, strategy).await,
            (Verb::Delete, Some(name)) if main => self.delete_reply(&req, name).await,
            (Verb::DeleteCollection, None) => self.delete_collection_reply(&req).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        self.strategy.table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let mut cells = vec![name];
        if let Ok(obj) = <S::Object as serde::Deserialize>::deserialize(object) {
            cells.extend(self.strategy.table_cells(&obj));
        }
        cells
    }
}
