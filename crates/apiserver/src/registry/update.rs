//! Update: the one read-modify-write loop (upstream's `GuaranteedUpdate`) behind PUT, PATCH,
//! apply, `/status` and the internal writes of virtual resources, with `before_update` (system
//! fields, the chosen update strategy, validation) and managedFields.

use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::validation::validate_object_meta_update;
use apimachinery::GroupKind;
use storage::{KeyValue, Revision, StorageError};

use super::recent::Kept;
use super::{
    internal, now, storage_error, ManagedFields, Registry, UpdateStrategy, WriteContext, Written,
    MAX_UPDATE_ATTEMPTS,
};
use crate::managed::{self, UpdateRecord};
use crate::strategy::{ApiObject, Strategy, StrategyContext};

impl<S: Strategy> Registry<S> {
    /// Takes the current object (see [`Self::update_written`] for where from), lets `produce`
    /// make the new one from it, and writes that with a compare-and-swap; returns the served
    /// result.
    ///
    /// The retry rule, one for every caller: a lost compare-and-swap runs `produce` again on
    /// the object the store returned with the loss (or read again, when the store did not
    /// say). A produced object that carries a resourceVersion is held to it against that
    /// fresh object (409 if it moved on); one without is written over the latest version
    /// when the strategy allows unconditional updates. So a PATCH (made from the current
    /// object, so carrying its version unless its body sets one) is re-applied to the fresh
    /// object, as kube's guaranteed update does, while a PUT or a patch that names an old
    /// version fails. When the retries run out the answer is ServerTimeout, as upstream's.
    pub async fn update<F>(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        strategy: UpdateStrategy,
        produce: F,
    ) -> Result<S::Object, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        let written = self.update_written(ctx, name, strategy, produce).await?;
        Ok(written.object)
    }

    /// [`Self::update`], with the result's wire JSON when the write rendered it already.
    ///
    /// The first attempt starts from the object this registry wrote last, when it kept it
    /// ([`super::recent`]) and the request is not held to another revision, without reading
    /// the store, as kube's `GuaranteedUpdate` starts from its cache: the compare-and-swap
    /// proves that start current. Any other outcome of such an attempt (an error, a no-op, a
    /// dry run) stands only once a read of the store finds the same revision; otherwise the
    /// update starts again from what it read.
    pub async fn update_written<F>(
        &self,
        ctx: &WriteContext<'_>,
        name: &str,
        strategy: UpdateStrategy,
        mut produce: F,
    ) -> Result<Written<S::Object>, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        let key = self.key(ctx.namespace, name);
        let mut next = self
            .recent()
            .take_latest(&key, ctx.expected_revision)
            .map(Start::Assumed);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let start = match next.take() {
                Some(start) => start,
                None => match self.read_stored(ctx.namespace, name).await? {
                    Some(kv) => Start::Read(kv),
                    None => return Err(self.not_found(name)),
                },
            };
            let assumed = start.assumed_revision();
            let answer = match self
                .attempt(ctx, &key, name, strategy, &mut produce, start)
                .await
            {
                Ok(Attempt::Wrote(written)) => return Ok(written),
                Ok(Attempt::Lost(current)) => {
                    next = current.map(Start::Read);
                    continue;
                }
                Ok(Attempt::Unwritten(written)) => Ok(written),
                Err(e) => Err(e),
            };
            let Some(revision) = assumed else {
                return answer;
            };
            match self.read_stored(ctx.namespace, name).await? {
                Some(kv) if kv.mod_revision == revision => return answer,
                Some(kv) => next = Some(Start::Read(kv)),
                None => return Err(self.not_found(name)),
            }
        }
        Err(self.retries_exhausted("update"))
    }

    /// One read-modify-write from `start`.
    async fn attempt<F>(
        &self,
        ctx: &WriteContext<'_>,
        key: &str,
        name: &str,
        strategy: UpdateStrategy,
        produce: &mut F,
        start: Start<S::Object>,
    ) -> Result<Attempt<S::Object>, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        let current = start.revision();
        if ctx.expected_revision.is_some_and(|rv| rv != current) {
            return Err(ApiError::conflict(&self.gr, name));
        }
        let (mut old, old_json, stored) = match start {
            Start::Assumed(kept) => {
                #[cfg(debug_assertions)]
                self.check_kept(&kept.object, &kept.json, &kept.as_stored(key));
                (kept.object, Some(kept.json), kept.stored)
            }
            Start::Read(kv) => {
                let (old, json) = self.current_object(&kv)?;
                (old, json, kv.value)
            }
        };
        let mut new = produce(&old)?;
        self.check_identity(ctx.namespace, name, &mut new)?;
        self.check_resource_version(name, &new, current)?;
        restore_system_fields(&mut new, &old);
        let records = ctx.managed_fields == ManagedFields::RecordUpdate;
        if records && records_before_preparing(strategy) {
            let old = Some((&mut old, old_json.as_deref()));
            self.record_managed_fields(ctx, old, &mut new, strategy.subresource())?;
        }
        self.before_update(ctx, strategy, &mut new, &old).await?;
        if records && !records_before_preparing(strategy) {
            let old = Some((&mut old, old_json.as_deref()));
            self.record_managed_fields(ctx, old, &mut new, strategy.subresource())?;
        }
        // Recording a write that changes nothing changes no entry, so this finds no-ops.
        let new_bytes = self.stored_bytes(&mut new)?;
        if new_bytes == stored {
            return Ok(Attempt::Unwritten(self.serve(old, current).into()));
        }
        if ctx.options.dry_run {
            return Ok(Attempt::Unwritten(self.serve(new, current).into()));
        }
        if let Some(deleted) = self.finish_deletion(key, &new, current).await? {
            return Ok(Attempt::Wrote(deleted.into()));
        }
        let json = self.announce(key, &new_bytes, &mut new);
        let result = self.store.update(key, new_bytes.clone(), current).await;
        if result.is_err() {
            self.cache.withdraw(key, &new_bytes);
        }
        match result {
            Ok(rev) => Ok(Attempt::Wrote(self.written(key, new, new_bytes, json, rev))),
            Err(StorageError::Conflict { current, .. }) => Ok(Attempt::Lost(current.map(|kv| *kv))),
            Err(StorageError::NotFound { .. }) => Err(self.not_found(name)),
            Err(e) => Err(storage_error(e, &self.gr, "update")),
        }
    }

    /// The produced object must be in the request's namespace and keep the URL's name.
    pub(super) fn check_identity(
        &self,
        namespace: Option<&str>,
        name: &str,
        new: &mut S::Object,
    ) -> Result<(), ApiError> {
        self.check_namespace(namespace, new)?;
        let new_name = new.metadata().name.clone().unwrap_or_default();
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        new.metadata_mut().name = Some(name.to_string());
        Ok(())
    }

    /// Optimistic concurrency: a resourceVersion, when given, must be the current one; without
    /// one, only strategies that allow unconditional updates proceed. (Internal writes keep
    /// the version of the object they were made from, so they are retried like patches.)
    fn check_resource_version(
        &self,
        name: &str,
        new: &S::Object,
        current: Revision,
    ) -> Result<(), ApiError> {
        let given = new
            .metadata()
            .resource_version
            .as_deref()
            .filter(|s| !s.is_empty());
        match given {
            None if !self.strategy.allow_unconditional_update() => Err(ApiError::invalid(
                GroupKind::new(self.gr.group.clone(), self.gr.resource.clone()),
                name,
                vec![FieldError::invalid(
                    &FieldPath::new("metadata").child("resourceVersion"),
                    0i64,
                    "must be specified for an update",
                )],
            )),
            None => Ok(()),
            Some(rv) => {
                let rv = apimachinery::options::parse_resource_version(rv)?;
                if rv as Revision != current {
                    return Err(ApiError::conflict(&self.gr, name));
                }
                Ok(())
            }
        }
    }

    /// Upstream's `BeforeUpdate` once the system fields are the old object's: the immutable
    /// uid, the chosen strategy's prepare, generic metadata validation, the strategy's
    /// validation; then decorations.
    async fn before_update(
        &self,
        ctx: &WriteContext<'_>,
        strategy: UpdateStrategy,
        new: &mut S::Object,
        old: &S::Object,
    ) -> Result<(), ApiError> {
        let mut errs = Vec::new();
        if new.metadata().uid.as_deref().unwrap_or("")
            != old.metadata().uid.as_deref().unwrap_or("")
        {
            errs.push(FieldError::invalid(
                &FieldPath::new("metadata").child("uid"),
                new.metadata().uid.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        match strategy {
            UpdateStrategy::Main => self.strategy.prepare_for_update(new, old),
            UpdateStrategy::Status => self.strategy.prepare_for_status_update(new, old),
            UpdateStrategy::Internal => self.strategy.prepare_for_internal_update(new, old),
        }
        errs.extend(validate_object_meta_update(new.metadata(), old.metadata()));
        let strategy_ctx = StrategyContext {
            user: ctx.user,
            namespace: ctx.namespace,
            lookup: self,
        };
        errs.extend(match strategy {
            UpdateStrategy::Status => {
                self.strategy
                    .validate_status_update(&strategy_ctx, new, old)
                    .await
            }
            _ => self.strategy.validate_update(&strategy_ctx, new, old).await,
        });
        if !errs.is_empty() {
            let name = new.metadata().name.clone().unwrap_or_default();
            return Err(self.invalid(&name, errs));
        }
        self.strategy.decorate(new);
        Ok(())
    }

    /// An update that removes the last finalizer of an object being deleted deletes it.
    async fn finish_deletion(
        &self,
        key: &str,
        new: &S::Object,
        current: Revision,
    ) -> Result<Option<S::Object>, ApiError> {
        let meta = new.metadata();
        if meta.deletion_timestamp.is_none()
            || meta.finalizers.as_ref().is_some_and(|f| !f.is_empty())
        {
            return Ok(None);
        }
        match self.store.delete(key, Some(current)).await {
            Ok((rev, _)) => {
                self.recent().forget(key);
                Ok(Some(self.serve(new.clone(), rev)))
            }
            Err(StorageError::Conflict { .. }) => Err(ApiError::conflict(
                &self.gr,
                meta.name.as_deref().unwrap_or(""),
            )),
            Err(e) => Err(storage_error(e, &self.gr, "delete")),
        }
    }

    /// Adds or refreshes the field manager's `Update` entry in managedFields. The objects are
    /// compared as JSON; the comparison passes over managedFields, which can be as large as the
    /// rest of the object, so they are left out of what is rendered for it. The old object
    /// comes with its wire JSON when that is at hand.
    pub(super) fn record_managed_fields(
        &self,
        ctx: &WriteContext<'_>,
        old: Option<(&mut S::Object, Option<&[u8]>)>,
        new: &mut S::Object,
        subresource: Option<&str>,
    ) -> Result<(), ApiError> {
        let manager = managed::manager_name(ctx.options.field_manager.as_deref(), ctx.user_agent);
        let gv = self.info().group_version();
        let entries = new.metadata_mut().managed_fields.take().unwrap_or_default();
        let new_json = serde_json::to_vec(&*new).map_err(internal)?;
        let old_json = match old {
            Some((_, Some(json))) => Some(std::borrow::Cow::Borrowed(json)),
            Some((old, None)) => {
                let kept = old.metadata_mut().managed_fields.take();
                let json = serde_json::to_vec(&*old);
                old.metadata_mut().managed_fields = kept;
                Some(std::borrow::Cow::Owned(json.map_err(internal)?))
            }
            None => None,
        };
        let entries = managed::record_update_json(
            old_json.as_deref(),
            &new_json,
            entries,
            &UpdateRecord {
                manager: &manager,
                api_version: &gv,
                subresource,
                time: &now(),
                merge_keys: self.strategy.list_merge_keys(),
            },
        )
        .map_err(internal)?;
        new.metadata_mut().managed_fields = (!entries.is_empty()).then_some(entries);
        Ok(())
    }
}

/// Whether an update's managedFields are recorded from the object as the writer made it,
/// before the strategy prepares it, as kube's field manager runs in `UpdatedObject` before
/// `BeforeUpdate`: fields the strategy derives (a tag's `generation`) belong to no manager.
/// `/status` is recorded after its prepare, because ours discards the writer's label and
/// annotation edits there (design.md), a reset that the top-level fields a record leaves out
/// (`spec`) cannot say; what its prepare derives is in atomic lists the writer set anyway.
fn records_before_preparing(strategy: UpdateStrategy) -> bool {
    strategy != UpdateStrategy::Status
}

/// Where an update attempt starts.
enum Start<O> {
    /// The object this registry wrote last, assumed to be the stored one.
    Assumed(Kept<O>),
    /// What the store holds: read, or returned by a lost compare-and-swap.
    Read(KeyValue),
}

impl<O> Start<O> {
    fn revision(&self) -> Revision {
        match self {
            Start::Assumed(kept) => kept.revision,
            Start::Read(kv) => kv.mod_revision,
        }
    }

    fn assumed_revision(&self) -> Option<Revision> {
        match self {
            Start::Assumed(kept) => Some(kept.revision),
            Start::Read(_) => None,
        }
    }
}

/// How an update attempt ended, short of an error.
enum Attempt<O> {
    /// It wrote (or finished a deletion).
    Wrote(Written<O>),
    /// It wrote nothing and needs not: a no-op or a dry run.
    Unwritten(Written<O>),
    /// Another write came first; what the store holds now, when the store said.
    Lost(Option<KeyValue>),
}

/// §2.4: what an update cannot change is silently taken from the stored object.
fn restore_system_fields<O: ApiObject>(new: &mut O, old: &O) {
    let old = old.metadata();
    let meta = new.metadata_mut();
    if meta.uid.as_deref().is_none_or(str::is_empty) {
        meta.uid = old.uid.clone();
    }
    meta.creation_timestamp = old.creation_timestamp.clone();
    meta.deletion_timestamp = old.deletion_timestamp.clone();
    meta.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    meta.generation = old.generation;
    meta.self_link = None;
    match &meta.managed_fields {
        None => meta.managed_fields = old.managed_fields.clone(),
        Some(m) if m.is_empty() => meta.managed_fields = None,
        Some(_) => {}
    }
}
