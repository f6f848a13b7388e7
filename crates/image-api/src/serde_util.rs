//! Serde helpers shared by the wire types: Go's zero values and `omitempty`.

use serde::{Deserialize, Deserializer};

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

/// Go decodes `null` into a zero value; serde's `Default` does the same here.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Implements `ApiObject` for a type with `kind`, `apiVersion` and `metadata`.
macro_rules! object {
    ($t:ty) => {
        impl apimachinery::object::ApiObject for $t {
            fn metadata(&self) -> &apimachinery::meta::ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut apimachinery::meta::ObjectMeta {
                &mut self.metadata
            }
            fn set_type_meta(&mut self, kind: &str, api_version: &str) {
                self.kind = kind.to_string();
                self.api_version = api_version.to_string();
            }
        }
    };
}
pub(crate) use object;
