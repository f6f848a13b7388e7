//! Compiles the meta/v1 and runtime messages under `proto/` into a protobuf descriptor set,
//! `$OUT_DIR/apimachinery.pb`, which `protobuf::DESCRIPTOR_SET` embeds. protoc is `$PROTOC`,
//! or `protoc` on the PATH (hack/lib.sh installs it; etcd-client needs it too).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files compiled, relative to `proto/`.
const FILES: &[&str] = &[
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed=build_protoc.rs");
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let out = env_path("OUT_DIR").join("apimachinery.pb");
    if let Err(message) = compile(&manifest_dir, &[manifest_dir.join("proto")], FILES, &out) {
        panic!("{message}");
    }
}

include!("build_protoc.rs");
