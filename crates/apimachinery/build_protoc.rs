// Shared by the build scripts of apimachinery and image-api (`include!`d by both): running
// protoc over a crate's .proto files into a descriptor set.

/// A path cargo gives the build script.
fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) => PathBuf::from(value),
        None => panic!("{name} is not set: build scripts run under cargo"),
    }
}

/// Runs protoc over `files` with their imports (--include_imports), so the set stands alone.
fn compile(dir: &Path, includes: &[PathBuf], files: &[&str], out: &Path) -> Result<(), String> {
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
    let output = command.args(files).output().map_err(|e| {
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
            "protoc ({}) failed ({}) compiling {files:?}:\n{}",
            protoc.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
