#!/usr/bin/env bash
# tests/reference/metallb.sh — build the real MetalLB (controller + speaker)
# as a same-run reference for Herald's lab benchmarks (issue 14).
#
# Built at test time from the Go module proxy (module go.universe.tf/metallb),
# never vendored: nothing of MetalLB's code or text is in this repository.
# Output, in ${HERALD_CACHE:-$HOME/.cache/herald}/metallb-<version>/:
#   bin/controller, bin/speaker      the two programs (CGO_ENABLED=0)
#   crd/                             the module's own CRDs (config/crd/bases)
#   metallb-native.yaml              the module's own manifests (RBAC, ConfigMap)
#   VERSION                          the version that was built
# and a symlink ${HERALD_CACHE}/metallb-current -> that directory.
#
# Versions: tries $METALLB_VERSION (default v0.16.2) first; v0.16.2 needs
# github.com/metallb/frr-k8s v0.0.27 which the module proxy does not serve,
# so it falls back to v0.15.2 (about 2 min on a warm Go cache). It prints
# which version it built on the last line: "metallb: ready <version> <dir>".
#
# Idempotent: a complete cache directory is reused in well under a second.
set -euo pipefail

CACHE_ROOT=${HERALD_CACHE:-${HOME:-/root}/.cache/herald}
PRIMARY=${METALLB_VERSION:-v0.16.2}
FALLBACK=${METALLB_FALLBACK:-v0.15.2}
MODULE=go.universe.tf/metallb

export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { echo "metallb: $*" >&2; }

complete() {
  local d=$1
  [ -x "$d/bin/controller" ] && [ -x "$d/bin/speaker" ] && [ -d "$d/crd" ] \
    && [ -f "$d/metallb-native.yaml" ] && [ -f "$d/VERSION" ]
}

build() {
  local ver=$1 dir=$CACHE_ROOT/metallb-$1 tmp src
  if complete "$dir"; then
    log "cached $ver in $dir"
    return 0
  fi
  # A version known not to build is not retried on every run.
  if [ -f "$CACHE_ROOT/metallb-$ver.failed" ]; then
    log "$ver failed to build before (see $CACHE_ROOT/metallb-$ver.failed); skipping"
    return 1
  fi
  command -v go >/dev/null || { log "no Go toolchain"; return 1; }
  mkdir -p "$CACHE_ROOT"
  tmp=$(mktemp -d "$CACHE_ROOT/.metallb-$ver.XXXXXX")
  chmod 755 "$tmp"
  log "building $MODULE $ver (controller, speaker) ..."
  local t0; t0=$(date +%s)
  if ! GOBIN=$tmp/bin go install -trimpath -buildvcs=false \
        "$MODULE/controller@$ver" "$MODULE/speaker@$ver" >"$tmp/build.log" 2>&1; then
    tail -n 5 "$tmp/build.log" >&2 || true
    cp "$tmp/build.log" "$CACHE_ROOT/metallb-$ver.failed" 2>/dev/null || true
    rm -rf "$tmp"
    log "$ver does not build here"
    return 1
  fi
  src=$(go env GOMODCACHE)/$MODULE@$ver
  [ -d "$src/config/crd/bases" ] || { log "no CRDs in $src"; rm -rf "$tmp"; return 1; }
  mkdir -p "$tmp/crd"
  cp "$src"/config/crd/bases/*.yaml "$tmp/crd/"
  cp "$src/config/manifests/metallb-native.yaml" "$tmp/metallb-native.yaml"
  chmod -R u+w "$tmp"
  echo "$ver" >"$tmp/VERSION"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "built $ver in $(( $(date +%s) - t0 )) s"
}

ver=""
if build "$PRIMARY"; then
  ver=$PRIMARY
elif [ "$FALLBACK" != "$PRIMARY" ] && build "$FALLBACK"; then
  log "using fallback $FALLBACK ($PRIMARY is not buildable here)"
  ver=$FALLBACK
else
  log "no MetalLB version could be built"
  exit 1
fi
ln -sfn "metallb-$ver" "$CACHE_ROOT/metallb-current"
echo "metallb: ready $ver $CACHE_ROOT/metallb-$ver"
