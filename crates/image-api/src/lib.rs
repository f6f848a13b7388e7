//! The `image.openshift.io/v1` API: serde types shaped like openshift/api's (field names, which
//! fields are always emitted), defaulting, validation with field paths, and the pure domain
//! logic of the spec `openshift-image-behavior.md` (references §2.2, tag history §2.3,
//! reference policy §2.4). No I/O: this is the crate to unit-test hardest.

pub mod imports;
pub mod limits;
pub mod metadata;
pub mod protobuf;
pub mod reference;
mod serde_util;
pub mod tags;
pub mod types;
pub mod validation;
pub mod virtual_types;
pub mod whitelist;

pub use types::*;
pub use virtual_types::*;

pub const GROUP: &str = "image.openshift.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "image.openshift.io/v1";
/// The tag a bare stream name means.
pub const DEFAULT_IMAGE_TAG: &str = "latest";
