//! What every API object has: standard metadata and type meta.

use crate::meta::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An API object with standard metadata.
pub trait ApiObject:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    /// Sets `kind` and `apiVersion`.
    fn set_type_meta(&mut self, kind: &str, api_version: &str);
}
