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
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let out = env_path("OUT_DIR").join("apimachinery.pb");
    if let Err(message) = compile(&manifest_dir, &[manifest_dir.join("proto")], &out) {
        panic!("{message}");
    }
}

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) => PathBuf::from(value),
        None => panic!("{name} is not set: build scripts run under cargo"),
    }
}

/// Runs protoc over FILES with their imports (--include_imports), so the set stands alone.
fn compile(dir: &Path, includes: &[PathBuf], out: &Path) -> Result<(), String> {
    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| OsString::from("protoc"));
    let mut descriptor_set_out = OsString::from("--descriptor_set_out=");
    descriptor_set_out.push(out);
    let mut command = Command::new(&protoc);
    command
        .current_dir(dir)
        .arg("--include_imports")
        .arg(descriptor_set_out);
    for include in includes {
        command.arg("-I").arg(include);
    }
    let output = command.args(FILES).output().map_err(|e| {
        format!(
            "cannot run protoc ({}): {e}. Install it (Debian: protobuf-compiler; hack/lib.sh does) \
             or point PROTOC at it",
            protoc.to_string_lossy()
        )
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "protoc ({}) failed ({}) compiling {FILES:?}:\n{}",
            protoc.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
