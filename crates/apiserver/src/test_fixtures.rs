//! Fixtures the crate's unit tests share.

use apimachinery::discovery::ResourceInfo;

/// A namespaced resource shaped like image streams (the generic code's tests need one).
pub(crate) fn streams_info() -> ResourceInfo {
    ResourceInfo {
        group: "image.openshift.io",
        version: "v1",
        resource: "imagestreams",
        singular: "imagestream",
        kind: "ImageStream",
        namespaced: true,
        verbs: &[],
        short_names: &[],
        categories: &[],
        stored: true,
        subresources: Vec::new(),
    }
}
