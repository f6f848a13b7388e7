# Shared helpers for hack/ scripts. Source it; do not run it.
#
# Every system package, binary and file that building, testing and benchmarking need is checked
# here, and installed from Debian's packages when apt-get is available. Elsewhere the scripts stop
# and say what is missing and what provides it. README.md lists the same things in a table: keep
# the two in step.

# Runs a command as root (directly, or through sudo when not root).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# What is missing so far: Debian package names, and one line each for people without apt-get.
missing_packages=()
missing_reasons=()

# Records a missing dependency: the Debian package that provides it and a readable reason.
need() {
  local package=$1 reason=$2
  missing_packages+=("$package")
  missing_reasons+=("$reason")
}

# Things no Debian 12 package provides: the scripts can only say how to get them.
missing_by_hand=()

# need_by_hand COMMAND HOW: the command must be on the PATH; HOW says where it comes from.
need_by_hand() {
  type -P "$1" >/dev/null 2>&1 || missing_by_hand+=("$1: $2")
}

# need_command COMMAND PACKAGE REASON: the command must be on the PATH.
need_command() {
  type -P "$1" >/dev/null 2>&1 || need "$2" "$1 ($3)"
}

# protoc must compile etcd's protobufs, which import google/protobuf/descriptor.proto. Debian
# ships that file in libprotobuf-dev, not in protobuf-compiler, so a working `protoc` command is
# not enough: compile a file that imports it, as etcd-client's build script will.
protoc_compiles_well_known_types() {
  local protoc=${PROTOC:-protoc}
  command -v "$protoc" >/dev/null 2>&1 || return 1
  local dir
  dir=$(mktemp -d)
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/check.proto"
  local include=()
  [ -n "${PROTOC_INCLUDE:-}" ] && include=(-I "$PROTOC_INCLUDE")
  "$protoc" "${include[@]}" -I "$dir" -o /dev/null "$dir/check.proto" >/dev/null 2>&1
  local status=$?
  rm -rf "$dir"
  return $status
}

need_protoc() {
  if ! command -v "${PROTOC:-protoc}" >/dev/null 2>&1; then
    need protobuf-compiler "protoc (etcd-client compiles etcd's protobufs)"
  fi
  if ! protoc_compiles_well_known_types; then
    need libprotobuf-dev "google/protobuf/*.proto, the well-known types protoc imports (with protoc: Homebrew's protobuf has both)"
  fi
}

# Installs what was recorded as missing, or explains it when there is no apt-get; fails while
# anything that must be installed by hand is missing.
install_missing() {
  if [ ${#missing_by_hand[@]} -ne 0 ]; then
    echo "missing, to install by hand (no Debian package provides them):" >&2
    printf '  - %s\n' "${missing_by_hand[@]}" >&2
  fi
  if [ ${#missing_packages[@]} -ne 0 ]; then
    install_packages || return 1
  fi
  [ ${#missing_by_hand[@]} -eq 0 ]
}

install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing (these scripts install only with Debian's apt-get; install them, then retry):" >&2
    printf '  - %s\n' "${missing_reasons[@]}" >&2
    return 1
  fi
  local packages log
  packages=$(printf '%s\n' "${missing_packages[@]}" | sort -u | tr '\n' ' ')
  echo "installing Debian packages: $packages" >&2
  log=$(mktemp)
  # apt and dpkg are verbose even with -qq: show their output only when they fail.
  # shellcheck disable=SC2086 # one word per package
  if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $packages; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  missing_packages=()
  missing_reasons=()
}

# Runs the checks twice at most: once to install, once to prove the install worked.
ensure() {
  local checks=$1
  "$checks"
  install_missing || return 1
  "$checks"
  if [ ${#missing_packages[@]} -ne 0 ]; then
    echo "still missing after installing:" >&2
    printf '  - %s\n' "${missing_reasons[@]}" >&2
    return 1
  fi
}

build_checks() {
  need_by_hand cargo "the Rust toolchain (rustup; rust-version in Cargo.toml)"
  need_command cc gcc "the linker, and the C code of ring and mimalloc"
  need_protoc
}

test_checks() {
  build_checks
  need_command etcd etcd-server "a real etcd for the etcd backend's tests"
  need_command docker-registry docker-registry "a real container registry for import tests"
  need_command skopeo skopeo "pushes the test images into the registry"
  need_command htpasswd apache2-utils "makes the bcrypt htpasswd file of the auth-protected test registry"
  need_command tar tar "builds the test images' layers"
  need_command gzip gzip "compresses the test images' layers"
  need_command kill procps "tests stop servers with signals"
  need_command sha256sum coreutils "tests compute image digests"
  need_command openssl openssl "deploy/gen-certs.sh makes the deployment's certificates (tests/tests/deploy.rs)"
  need_by_hand kubectl "the kubectl tests drive the one on the PATH (v1.32 or later)"
  need_python_venv
}

# The Python clients the tests drive live in a venv of their own: python3 with its venv module.
need_python_venv() {
  need_command python3 python3 "runs the Python clients the tests drive"
  if type -P python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need python3-venv "python3's venv and ensurepip modules (a venv for the tests' Python clients)"
  fi
}

# Creates target/python-venv with hack/python-requirements.txt (pip, from PyPI) when it is missing
# or older than the requirements, and exports BLACKBOX_PYTHON, the interpreter the tests run.
ensure_python_clients() {
  local venv=target/python-venv requirements=hack/python-requirements.txt
  if [ ! -x "$venv/bin/python" ] || [ "$requirements" -nt "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    touch "$venv/.installed"
  fi
  BLACKBOX_PYTHON=$PWD/$venv/bin/python
  export BLACKBOX_PYTHON
}

# What building needs.
ensure_build_deps() {
  ensure build_checks
}

# What the tests and benchmarks need besides the build.
ensure_test_deps() {
  ensure test_checks
  ensure_python_clients
  ensure_etcd35
}

# Whether $1 is an etcd 3.5 server. The output is captured before matching: with pipefail, a
# `grep -q` that exits at the first line kills etcd's later writes with SIGPIPE and fails the
# pipeline now and then (3 runs in 100 here).
is_etcd35() {
  local version
  version=$("$1" --version 2>/dev/null) || return 1
  [[ $version =~ (^|$'\n')'etcd Version: 3.5.' ]]
}

# Debian 12's etcd is 3.4.23, whose watch progress cannot be trusted; the tests and benchmarks
# also run etcd 3.5 (trusted). Debian trixie carries it as a static binary: apt-get downloads
# the package with a private state directory (the system's sources stay as they are) and
# dpkg-deb unpacks it into target/etcd-3.5. Exports ETCD35_BIN.
ensure_etcd35() {
  if [ -n "${ETCD35_BIN:-}" ] && [ -x "$ETCD35_BIN" ]; then
    return 0
  fi
  local dir=$PWD/target/etcd-3.5
  local binary=$dir/root/usr/bin/etcd
  if [ ! -x "$binary" ] && ! type -P apt-get >/dev/null 2>&1; then
    echo "missing: an etcd 3.5 server for the tests (set ETCD35_BIN to its path)" >&2
    return 1
  fi
  if [ ! -x "$binary" ] || ! is_etcd35 "$binary"; then
    rm -rf "$dir"
    mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/deb"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
      >"$dir/apt/sources.list"
    local apt_opts=(
      -o "Dir::Etc::sourcelist=$dir/apt/sources.list" -o Dir::Etc::sourceparts=-
      -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq
    )
    apt-get "${apt_opts[@]}" update
    (cd "$dir/deb" && apt-get "${apt_opts[@]}" download etcd-server)
    dpkg-deb -x "$dir"/deb/etcd-server_*.deb "$dir/root"
    rm -rf "$dir/apt"
    is_etcd35 "$binary" || {
      echo "target/etcd-3.5: trixie's etcd-server is not 3.5" >&2
      return 1
    }
  fi
  ETCD35_BIN=$binary
  export ETCD35_BIN
}
