//! The interface between request handling and resources: a request with its verb, what a
//! resource answers, and the object-safe [`Resource`] trait every served resource implements
//! (stored ones through the generic registry, virtual ones directly).

use std::sync::{Arc, Mutex};

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use apimachinery::table::ColumnDefinition;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;

/// Who is asking (authentication's result, after impersonation): kube's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (scopes, credential ids), keys lower-case.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..UserInfo::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// kube adds `system:authenticated` to every user an authenticator vouches for.
    pub fn authenticated(mut self) -> UserInfo {
        if !self.in_group("system:authenticated") {
            self.groups.push("system:authenticated".to_string());
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// `Warning` headers collected while handling a request (deduplicated).
#[derive(Clone, Debug, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    pub fn add(&self, text: impl Into<String>) {
        let text = text.into();
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !w.contains(&text) {
            w.push(text);
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One API request, routed to a resource.
pub struct Request {
    pub verb: Verb,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub query: Query,
    pub body: Bytes,
    /// The media type of the body, parameters stripped.
    pub content_type: Option<String>,
    pub user: UserInfo,
    pub user_agent: Option<String>,
    pub warnings: Warnings,
    /// Fires when the server shuts down; long-running requests (watches) end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Request {
    /// The same request without a body (for the per-item deletes of a deletecollection).
    pub fn clone_without_body(&self) -> Request {
        Request {
            verb: self.verb,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            subresource: self.subresource.clone(),
            query: self.query.clone(),
            body: Bytes::new(),
            content_type: None,
            user: self.user.clone(),
            user_agent: self.user_agent.clone(),
            warnings: self.warnings.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// One event of a watch, ready for any representation.
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub event_type: &'static str,
    pub body: WatchBody,
}

/// The bytes of a watch event: its object, or the whole JSON line when the watch cache encoded
/// it once for every watcher (then the object is expanded only for watchers that want another
/// representation).
pub enum WatchBody {
    Object(Bytes),
    Frame(Bytes),
}

impl WatchEvent {
    /// The event's object as JSON (for conversions to tables and metadata).
    pub fn object(&self) -> Value {
        match &self.body {
            WatchBody::Object(json) => serde_json::from_slice(json).unwrap_or_default(),
            WatchBody::Frame(frame) => serde_json::from_slice::<Value>(frame)
                .ok()
                .and_then(|mut line| line.get_mut("object").map(Value::take))
                .unwrap_or_default(),
        }
    }
}

/// What a resource answers.
pub enum Reply {
    /// One object (its served JSON) with the HTTP code (200 or 201).
    Object {
        code: u16,
        json: Bytes,
    },
    /// A list: the list kind and metadata, and each item's served JSON.
    List {
        kind: String,
        api_version: String,
        metadata: Value,
        items: Vec<Bytes>,
    },
    /// A Status (delete success, ImageStreamMapping), with the HTTP code.
    Status {
        code: u16,
        status: Value,
    },
    Watch(BoxStream<'static, WatchEvent>),
}

/// A served resource (or subresource family).
#[async_trait]
pub trait Resource: Send + Sync {
    fn info(&self) -> &ResourceInfo;

    async fn handle(&self, req: Request) -> Result<Reply, ApiError>;

    /// The table columns after `Name` (none: a table of names).
    fn table_columns(&self) -> Vec<ColumnDefinition> {
        Vec::new()
    }

    /// One row of cells (name first) for an object's served JSON.
    fn table_row(&self, object: &Value) -> Vec<Value> {
        vec![object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null)]
    }

    /// The Go type name used in negotiation errors, e.g. `*v1.ImageStream`.
    fn type_name(&self) -> String {
        format!("*{}.{}", self.info().version, self.info().kind)
    }
}
