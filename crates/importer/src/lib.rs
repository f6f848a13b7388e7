//! The importer (spec §13.3): given an ImageStreamImport's spec, it asks container registries
//! for the images and answers with one status per image, as openshift-apiserver's
//! `ImageStreamImporter` does. What the results do to a stream is `image_api::imports`; writing
//! them is the REST layer's job.
//!
//! - `import`: the algorithm (plan, fetch concurrently under one deadline, assemble).
//! - `convert`: a registry manifest (and config) into an `Image`.
//! - `order`: repository tag priority.
//! - `status`: the per-image `Status` for every failure (spec §13.8).
//! - `keyring`, `registries_conf`: credentials and registry policy, from the files podman and
//!   skopeo read.

mod convert;
mod hosts;
mod import;
pub mod keyring;
pub mod order;
pub mod registries_conf;
pub mod status;

pub use import::{ImportInput, Importer, ImporterOptions, Platform};
pub use keyring::{Credentials, Keyring};
pub use registries_conf::RegistriesConf;
