//! Compiles the image.openshift.io/v1 and core/v1 messages under `proto/`, with the meta/v1
//! and runtime messages they import from `../apimachinery/proto`, into one protobuf descriptor
//! set, `$OUT_DIR/image.pb`, which `protobuf::DESCRIPTOR_SET` embeds. protoc is `$PROTOC`, or
//! `protoc` on the PATH (hack/lib.sh installs it; etcd-client needs it too).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files compiled, relative to `proto/`; what they import comes along.
const FILES: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "github.com/openshift/api/image/v1/generated.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=../apimachinery/proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed=../apimachinery/build_protoc.rs");
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let out = env_path("OUT_DIR").join("image.pb");
    let includes = [
        manifest_dir.join("proto"),
        manifest_dir.join("..").join("apimachinery").join("proto"),
    ];
    if let Err(message) = compile(&manifest_dir, &includes, FILES, &out) {
        panic!("{message}");
    }
}

include!("../apimachinery/build_protoc.rs");
