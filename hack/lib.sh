# Shared helpers for hack/ scripts. Source it; do not run it.

# Runs a command as root (directly, or through sudo when not root).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
# Installs Debian packages whose command is missing: pairs of "command:package".
ensure_commands() {
  local missing=()
  for pair in "$@"; do
    local cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]} (install them; this script knows only Debian's apt-get)" >&2
    return 1
  fi
  echo "installing: ${missing[*]}" >&2
  if [ $apt_updated -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# What building needs: etcd-client compiles etcd's protobufs with protoc.
ensure_build_deps() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (rustup)" >&2; return 1; }
  ensure_commands protoc:protobuf-compiler
}

# What the tests need besides the build: a real etcd, a container registry and skopeo.
ensure_test_deps() {
  ensure_build_deps
  ensure_commands etcd:etcd-server docker-registry:docker-registry skopeo:skopeo
}
