//! Admission the generic server runs before a create reaches its resource: kube's
//! NamespaceLifecycle (spec §15.4), supplied by whoever knows the cluster's namespaces.

use apimachinery::errors::ApiError;
use async_trait::async_trait;

/// What the server needs to know about namespaces to admit a create in one.
#[async_trait]
pub trait NamespaceLifecycle: Send + Sync {
    /// `Ok` when objects may be created in `namespace`; otherwise kube's errors: 404
    /// `namespaces "<ns>" not found` when it does not exist, 403 `unable to create new content
    /// in namespace <ns> because it is being terminated` (for `resource`/`name`) when it is
    /// being deleted.
    async fn admit_create(
        &self,
        namespace: &str,
        resource: &apimachinery::GroupResource,
        name: &str,
    ) -> Result<(), ApiError>;
}
