//! Create: `before_create` (system fields, generateName, the strategy, validation,
//! managedFields) and the create-if-absent write, retrying generated names.

use apimachinery::errors::ApiError;
use apimachinery::field::FieldError;
use apimachinery::validation::validate_object_meta;
use storage::StorageError;

use super::{now, storage_error, ManagedFields, Registry, WriteContext, Written};
use crate::strategy::{ApiObject, Strategy, StrategyContext};

/// How many names a `generateName` create tries (KEP-4420).
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// Five characters from kube's name-generation alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

fn generated_name(prefix: &str) -> String {
    let base: String = prefix.chars().take(58).collect();
    format!("{base}{}", random_suffix())
}

impl<S: Strategy> Registry<S> {
    /// Creates `obj` (decoded and defaulted) and returns its served form: POST, apply on a
    /// missing object, and creates by other resources.
    pub async fn create(
        &self,
        ctx: &WriteContext<'_>,
        obj: S::Object,
    ) -> Result<S::Object, ApiError> {
        Ok(self.create_written(ctx, obj).await?.object)
    }

    /// [`Self::create`], with the result's wire JSON when the write rendered it already.
    pub async fn create_written(
        &self,
        ctx: &WriteContext<'_>,
        mut obj: S::Object,
    ) -> Result<Written<S::Object>, ApiError> {
        let generate = self.before_create(ctx, &mut obj).await?;
        if ctx.options.dry_run {
            return Ok(self.serve(obj, 0).into());
        }
        let namespace = obj.metadata().namespace.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let name = obj.metadata().name.clone().unwrap_or_default();
            let key = self.key(namespace.as_deref(), &name);
            let value = self.stored_bytes(&mut obj)?;
            // Announcing puts the object in served form; another name starts from the stored one.
            let unannounced = generate.is_some().then(|| obj.clone());
            let json = self.announce(&key, &value, &mut obj);
            let result = self.store.create(&key, value.clone()).await;
            if result.is_err() {
                self.cache.withdraw(&key, &value);
                obj = unannounced.unwrap_or(obj);
            }
            match result {
                Ok(rev) => return Ok(self.written(&key, obj, value, json, rev)),
                Err(StorageError::AlreadyExists { .. }) => match &generate {
                    Some(prefix) if attempt < GENERATE_NAME_ATTEMPTS => {
                        obj.metadata_mut().name = Some(generated_name(prefix));
                    }
                    Some(_) => {
                        return Err(ApiError::AlreadyExistsGenerated {
                            resource: self.gr.clone(),
                            name,
                        })
                    }
                    None => {
                        return Err(ApiError::AlreadyExists {
                            resource: self.gr.clone(),
                            name,
                        })
                    }
                },
                Err(e) => return Err(storage_error(e, &self.gr, "create")),
            }
        }
    }

    /// Upstream's create, in its order: namespace, system fields, generated name,
    /// managedFields (kube's create handler runs the field manager before `BeforeCreate`, so
    /// what `prepare_for_create` derives belongs to no manager), `prepare_for_create`, then
    /// validation. Returns the `generateName` prefix, when the name was generated.
    async fn before_create(
        &self,
        ctx: &WriteContext<'_>,
        obj: &mut S::Object,
    ) -> Result<Option<String>, ApiError> {
        self.check_namespace(ctx.namespace, obj)?;
        reject_resource_version(obj)?;
        let generate = reset_system_fields(obj);
        if ctx.managed_fields == ManagedFields::RecordUpdate {
            self.record_managed_fields(ctx, None, obj, None)?;
        }
        self.strategy.prepare_for_create(obj);
        let errs = self.validate_create(ctx, obj).await;
        if !errs.is_empty() {
            let name = obj.metadata().name.clone().unwrap_or_default();
            return Err(self.invalid(&name, errs));
        }
        Ok(generate)
    }

    /// Generic metadata validation, then the strategy's: the order openshift-apiserver's
    /// image validation reports them in (it validates metadata itself, first).
    async fn validate_create(
        &self,
        ctx: &WriteContext<'_>,
        obj: &mut S::Object,
    ) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj.metadata(), self.info().namespaced, |n, p| {
            self.strategy.validate_name(n, p)
        });
        let strategy_ctx = StrategyContext {
            user: ctx.user,
            namespace: ctx.namespace,
            lookup: self,
        };
        errs.extend(self.strategy.validate_create(&strategy_ctx, obj).await);
        errs
    }

    /// The object's namespace must be the request's (or unset); cluster-scoped objects have
    /// none.
    pub(super) fn check_namespace(
        &self,
        namespace: Option<&str>,
        obj: &mut S::Object,
    ) -> Result<(), ApiError> {
        crate::body::check_namespace(obj, namespace, self.info().namespaced)
    }
}

fn reject_resource_version<O: ApiObject>(obj: &O) -> Result<(), ApiError> {
    let set = obj
        .metadata()
        .resource_version
        .as_deref()
        .is_some_and(|rv| rv.parse::<u64>().is_ok_and(|n| n > 0));
    if set {
        return Err(ApiError::Unknown(
            "resourceVersion should not be set on objects to be created".to_string(),
        ));
    }
    Ok(())
}

/// Sets what the server owns on create and generates the name from `generateName` when none
/// is given; returns that prefix.
fn reset_system_fields<O: ApiObject>(obj: &mut O) -> Option<String> {
    let meta = obj.metadata_mut();
    meta.resource_version = None;
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp = Some(now());
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.self_link = None;
    meta.generation = None;
    meta.managed_fields = meta.managed_fields.take().filter(|m| !m.is_empty());
    let generate = meta
        .name
        .as_deref()
        .is_none_or(str::is_empty)
        .then(|| meta.generate_name.clone().filter(|g| !g.is_empty()))
        .flatten();
    if let Some(prefix) = &generate {
        meta.name = Some(generated_name(prefix));
    }
    generate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_58_characters_of_the_prefix_and_add_five() {
        let long = "a".repeat(70);
        let name = generated_name(&long);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"a".repeat(58)));
        let suffix = &name[58..];
        assert!(suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(generated_name("web-").len(), 9);
    }
}
