//! The generic Kubernetes API server: everything between the wire and the storage that is not
//! specific to a resource (spec `k8s-apiserver-semantics.md`). Resources plug in through
//! [`strategy::Strategy`] (stored, served by [`registry::Registry`]) or implement
//! [`resource::Resource`] directly (virtual). Nothing here knows about images.
//!
//! - [`http`]: routing, authentication, negotiation, encoding, discovery, health, OpenAPI.
//! - [`registry`]: the generic store: get, list, watch, create, update, patch, delete,
//!   deletecollection over the KV and the watch cache.
//! - [`body`]: the one decode/patch entry of every resource's writes.
//! - [`decode`], [`patch`], [`apply`], [`managed`], [`delete`]: request bodies, patch types,
//!   server-side apply, managedFields, DeleteOptions.
//! - [`limits`]: what one request body or patch may cost (nesting, YAML work and aliases,
//!   JSON patch copies, result size).
//! - [`tls`], [`serve`], [`connections`]: serving certificates, the acceptor and connection
//!   limits. [`auth`]: authentication and authorization. [`metrics`]: Prometheus metrics.

pub mod admission;
pub mod apply;
pub mod auth;
pub mod body;
pub mod connections;
pub mod decode;
pub mod delete;
pub mod http;
pub mod kube_cache;
pub mod leader;
pub mod limits;
pub mod managed;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resource;
pub mod serve;
pub mod strategy;
#[cfg(test)]
mod test_fixtures;
pub mod tls;
pub mod write_batch;
