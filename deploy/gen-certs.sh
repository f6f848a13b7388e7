#!/usr/bin/env bash
# Creates the certificates image-apiserver serves with in a cluster, where kustomization.yaml
# expects them:
#   ca.crt, ca.key             a CA (10 years); kube-apiserver trusts it through the APIService
#   tls.crt, tls.key           the serving certificate (1 year) for the Service's DNS names
#   apiservice-cabundle.yaml   a patch setting the APIService's caBundle to ca.crt
# Files that exist are kept, so a second run changes nothing. To renew the serving certificate,
# delete tls.crt and tls.key and run it again (the Secret's name changes with its content, so
# `kubectl apply -k` rolls the pods); delete the directory to start over with a new CA.
#
# Usage: deploy/gen-certs.sh [OUTPUT_DIR]     (default: certs/ next to this script)
# NAMESPACE (default image-apiserver) is the Service's namespace in the DNS names.
# Needs openssl.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/certs}
namespace=${NAMESPACE:-image-apiserver}
service=image-apiserver
dns_names=("$service.$namespace.svc" "$service.$namespace.svc.cluster.local")

say() {
  echo "gen-certs.sh: $*" >&2
}

if ! command -v openssl >/dev/null 2>&1; then
  say "openssl is not on the PATH"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A P-256 key, created readable by its owner only (no moment where it is world-readable).
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1")
  chmod 600 "$1"
}

# A random positive serial: certificates from two runs must never share one.
serial() {
  echo "0x$(openssl rand -hex 16)"
}

# Succeeds when both files of a pair exist, fails when neither does, and stops the script when
# only one does: half a pair cannot be reused, and replacing the other half could lose a key.
have_pair() {
  local crt=$1 key=$2
  if [ -f "$crt" ] && [ -f "$key" ]; then
    return 0
  fi
  if [ -e "$crt" ] || [ -e "$key" ]; then
    say "only one of $crt and $key exists: delete it, or restore the other"
    exit 1
  fi
  return 1
}

make_ca() {
  say "creating the CA $out/ca.crt"
  new_key "$out/ca.key"
  cat >"$work/ca.cnf" <<CNF
[req]
prompt = no
distinguished_name = dn
x509_extensions = ca
[dn]
CN = image-apiserver-ca@$(date +%s)
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
  openssl req -x509 -new -sha256 -days 3650 -set_serial "$(serial)" \
    -key "$out/ca.key" -config "$work/ca.cnf" -out "$out/ca.crt"
  chmod 644 "$out/ca.crt"
}

make_serving_cert() {
  say "creating the serving certificate $out/tls.crt for ${dns_names[*]}"
  new_key "$out/tls.key"
  local san
  san=$(printf 'DNS:%s,' "${dns_names[@]}")
  cat >"$work/tls.cnf" <<CNF
[req]
prompt = no
distinguished_name = dn
[dn]
CN = ${dns_names[0]}
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${san%,}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
  openssl req -new -key "$out/tls.key" -config "$work/tls.cnf" -out "$work/tls.csr"
  openssl x509 -req -sha256 -days 365 -set_serial "$(serial)" -in "$work/tls.csr" \
    -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -extfile "$work/tls.cnf" -extensions serving -out "$out/tls.crt" 2>"$work/x509.log" || {
    cat "$work/x509.log" >&2
    exit 1
  }
  chmod 644 "$out/tls.crt"
}

# kube-apiserver checks the serving certificate against this bundle: the patch carries it into
# the APIService. Rewritten on every run, so it always matches ca.crt.
write_cabundle_patch() {
  local bundle
  bundle=$(openssl base64 -A -in "$out/ca.crt")
  cat >"$out/apiservice-cabundle.yaml" <<YAML
# Written by gen-certs.sh from ca.crt: the CA kube-apiserver trusts image-apiserver's serving
# certificate with.
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.image.openshift.io
spec:
  caBundle: $bundle
YAML
}

mkdir -p "$out"

if have_pair "$out/ca.crt" "$out/ca.key"; then
  say "keeping the CA $out/ca.crt"
else
  make_ca
  # A certificate left from an earlier CA would not verify against the new one.
  rm -f "$out/tls.crt" "$out/tls.key"
fi

if have_pair "$out/tls.crt" "$out/tls.key"; then
  say "keeping the serving certificate $out/tls.crt"
else
  make_serving_cert
fi

if ! openssl verify -purpose sslserver -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null; then
  say "$out/tls.crt is not a serving certificate signed by $out/ca.crt:" \
    "delete tls.crt and tls.key to issue a new one"
  exit 1
fi

write_cabundle_patch
if [ "$out" = "$here/certs" ]; then
  say "done; deploy with: kubectl apply -k $here"
else
  say "done: $out"
fi
