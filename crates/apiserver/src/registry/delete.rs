//! Delete: preconditions, finalizers (graceful deletion sets deletionTimestamp and waits for
//! them), propagation, and deletecollection.

use apimachinery::errors::ApiError;
use apimachinery::options::ListOptions;
use storage::StorageError;

use super::{now, storage_error, Registry, MAX_UPDATE_ATTEMPTS};
use crate::delete::DeleteOptions;
use crate::strategy::{ApiObject, Strategy};

/// What a delete did.
#[derive(Debug)]
pub enum Deleted<T> {
    /// The object is gone (or would be, on a dry run); its last served state.
    Gone(T),
    /// Finalizers hold it: it is marked for deletion (served state after the mark).
    Pending(T),
}

impl<S: Strategy> Registry<S> {
    /// Deletes one object, honoring the options' preconditions and finalizers.
    pub async fn delete(
        &self,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted<S::Object>, ApiError> {
        let key = self.key(namespace, name);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((obj, rev)) = self.get_current(namespace, name).await? else {
                return Err(self.not_found(name));
            };
            opts.check_preconditions(&self.gk, name, &obj, rev)?;
            let extra = opts.finalizer_to_add(self.info().stored && self.gc_supported());
            let finalized = obj
                .metadata()
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty());
            if finalized || extra.is_some() {
                if obj.metadata().deletion_timestamp.is_some() {
                    return Ok(Deleted::Pending(obj));
                }
                let mut marked = mark_for_deletion(obj, extra);
                if opts.dry_run {
                    return Ok(Deleted::Pending(self.serve(marked, rev)));
                }
                match self
                    .store
                    .update(&key, self.stored_bytes(&mut marked)?, rev)
                    .await
                {
                    Ok(new_rev) => return Ok(Deleted::Pending(self.serve(marked, new_rev))),
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(storage_error(e, &self.gr, "delete")),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            match self.store.delete(&key, Some(rev)).await {
                Ok(_) => {
                    self.recent().forget(&key);
                    return Ok(Deleted::Gone(obj));
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(StorageError::NotFound { .. }) => return Err(self.not_found(name)),
                Err(e) => return Err(storage_error(e, &self.gr, "delete")),
            }
        }
        Err(self.retries_exhausted("delete"))
    }

    /// Deletes every object of a list (deletecollection): the outcome of each, skipping those
    /// that vanished meanwhile.
    pub async fn delete_collection(
        &self,
        namespace: Option<&str>,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Deleted<S::Object>>, ApiError> {
        let (items, _) = self.list(namespace, list_opts).await?;
        let mut deleted = Vec::new();
        for item in items {
            let meta = item.metadata();
            let Some(name) = meta.name.as_deref() else {
                continue;
            };
            let item_ns = namespace.or(meta.namespace.as_deref());
            match self.delete(item_ns, name, opts).await {
                Ok(outcome) => deleted.push(outcome),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// The revision after a deletecollection, for its list's metadata.
    pub(super) async fn current_revision(&self) -> Result<storage::Revision, ApiError> {
        self.store
            .current_revision()
            .await
            .map_err(|e| storage_error(e, &self.gr, "deletecollection"))
    }

    fn gc_supported(&self) -> bool {
        self.strategy.garbage_collection()
    }
}

/// Graceful deletion: deletionTimestamp now, grace 0, the propagation finalizer, and a new
/// generation for resources that track one.
fn mark_for_deletion<O: ApiObject>(mut obj: O, finalizer: Option<&str>) -> O {
    let meta = obj.metadata_mut();
    meta.deletion_timestamp = Some(now());
    meta.deletion_grace_period_seconds = Some(0);
    if let Some(f) = finalizer {
        let list = meta.finalizers.get_or_insert_with(Vec::new);
        if !list.iter().any(|x| x == f) {
            list.push(f.to_string());
        }
    }
    if let Some(g) = meta.generation.filter(|g| *g > 0) {
        meta.generation = Some(g + 1);
    }
    obj
}
