#!/usr/bin/env bash
# tests/setup.sh — make this machine ready for Herald's test lab.
#
#   1. Debian packages the lab uses (FRR, iproute2, nftables, ...): installed
#      only when missing, in one apt-get update + install.
#   2. herald-cp (kube-apiserver + etcd + kube-controller-manager +
#      kube-scheduler, see tests/controlplane), kubelet, kube-proxy and kubectl
#      from the same Kubernetes release, and helm: built with the local Go
#      toolchain (separate `go build`s sharing Go's build cache), cached outside the tree in
#      ${HERALD_CACHE:-$HOME/.cache/herald}/tools-<hash>/ and copied to
#      target/lab/bin/. With a warm cache this takes seconds.
#
# Idempotent; needs root only when packages are missing. Env knobs:
#   HERALD_CACHE        cache root (default $HOME/.cache/herald)
#   HERALD_SKIP_APT=1   do not check/install Debian packages
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CP_DIR=$REPO_ROOT/tests/controlplane
BIN_DIR=$REPO_ROOT/target/lab/bin
CACHE_ROOT=${HERALD_CACHE:-${HOME:-/root}/.cache/herald}

HELM_VERSION=v3.21.4
# Kubernetes minor helm assumes when no cluster is asked (helm template/lint).
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=36

APT_PACKAGES=(
  frr iproute2 nftables iptables iputils-ping tcpdump curl
  gobgpd ethtool procps psmisc jq bridge-utils kmod util-linux ca-certificates
  # conntrack-tools: the reference for the speaker's conntrack flush (tests/conntrack_netns.rs)
  conntrack
  # Real nodes (kubelet in a node namespace): a container runtime, CNI
  # plugins (bridge, host-local, portmap, loopback), and umoci to pack OCI
  # images without a Docker daemon.
  containerd runc containernetworking-plugins umoci
)

export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || echo "setup: FAILED (exit $rc)" >&2' EXIT

T0=$(date +%s)

# ---------------------------------------------------------------- packages --
frr_default_running() {
  # Daemons of the package's default instance (started by its init script);
  # lab instances run with -N <name> and are left alone.
  local pid cmd
  for pid in $(pgrep -x 'watchfrr|zebra|bgpd|staticd|mgmtd|bfdd' 2>/dev/null || true); do
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
    [ -n "$cmd" ] || continue
    [[ " $cmd" == *" -N "* ]] || return 0
  done
  return 1
}

stop_default_frr() {
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now frr.service >/dev/null 2>&1 || true
  fi
  if frr_default_running; then
    log "stopping the frr package's default instance (the lab runs its own)"
    service frr stop >/dev/null 2>&1 || /usr/lib/frr/frrinit.sh stop >/dev/null 2>&1 || true
    sleep 1
    frr_default_running && die "frr daemons of the default instance are still running; stop them (service frr stop)"
  fi
  return 0
}

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages: all present"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root"
  log "installing Debian packages: ${missing[*]}"
  # Keep package postinst scripts from starting daemons (frr, gobgpd): the
  # lab starts its own instances inside network namespaces.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local rc=0 aptlog
  aptlog=$(mktemp /tmp/herald-setup-apt.XXXXXX)
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$aptlog" 2>&1 || rc=$?
  [ $made_policy -eq 1 ] && rm -f "$policy"
  if [ $rc -ne 0 ]; then
    tail -n 30 "$aptlog" >&2
    die "apt-get failed (exit $rc); full log: $aptlog"
  fi
  rm -f "$aptlog"
  log "Debian packages installed"
}

if [ "${HERALD_SKIP_APT:-0}" != 1 ]; then
  command -v dpkg-query >/dev/null 2>&1 || die "not a Debian system (no dpkg-query); install the lab packages by hand or set HERALD_SKIP_APT=1"
  install_packages
  stop_default_frr
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now gobgpd.service >/dev/null 2>&1 || true
  fi
fi

# ------------------------------------------------------------------ Go -----
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || die "Go >= 1.26 is required (not found on PATH or in /usr/local/go)"
GO_VERSION=$(go env GOVERSION)
case "$GO_VERSION" in
  go1.2[6-9]*|go1.[3-9][0-9]*) ;;
  *) die "Go >= 1.26 is required for k8s.io/kubernetes v1.36, found $GO_VERSION" ;;
esac

# The Kubernetes release is whatever tests/controlplane/go.mod requires.
K8S_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3; exit }
                   $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$CP_DIR/go.mod")
[ -n "$K8S_VERSION" ] || die "cannot read the k8s.io/kubernetes version from $CP_DIR/go.mod"
K8S_MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

# Stamp the version the way upstream's build does, so `herald-cp version`,
# the apiserver's /version and `kubectl version` report the real release.
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean"
done
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done

TOOLS=(herald-cp kubelet kube-proxy kubectl helm)

have_tools() {
  local t
  for t in "${TOOLS[@]}"; do [ -x "$TOOLS_DIR/$t" ] || return 1; done
}

build_tools() {
  local tmp=$CACHE_ROOT/.build-$HASH-$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  log "building tools into $TOOLS_DIR (first build of k8s.io/kubernetes takes many minutes)"
  local buildlog=$tmp/build.log
  # Progress lines go to fd 3 (the terminal), compiler output to the log.
  # (No set -e here: it is ignored inside an if condition; hence || exit.)
  if ! (
    cd "$CP_DIR" || exit 1
    t0=$(date +%s)
    go build -trimpath -buildvcs=false -ldflags "$K8S_LDFLAGS" -o "$tmp/herald-cp" . || exit 1
    echo "setup:   herald-cp built ($(( $(date +%s) - t0 ))s)" >&3
    t0=$(date +%s)
    go build -trimpath -buildvcs=false -ldflags "$K8S_LDFLAGS" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl || exit 1
    echo "setup:   kubectl built ($(( $(date +%s) - t0 ))s)" >&3
    # kubelet and kube-proxy run in the lab's node namespaces (real-node
    # mode); separate binaries, not herald-cp roles, so they carry no
    # apiserver code and no process-global state of the control plane.
    t0=$(date +%s)
    go build -trimpath -buildvcs=false -ldflags "$K8S_LDFLAGS" -o "$tmp/kubelet" k8s.io/kubernetes/cmd/kubelet || exit 1
    echo "setup:   kubelet built ($(( $(date +%s) - t0 ))s)" >&3
    t0=$(date +%s)
    go build -trimpath -buildvcs=false -ldflags "$K8S_LDFLAGS" -o "$tmp/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy || exit 1
    echo "setup:   kube-proxy built ($(( $(date +%s) - t0 ))s)" >&3
    t0=$(date +%s)
    GOBIN=$tmp go install -trimpath -buildvcs=false -ldflags "$HELM_LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || exit 1
    echo "setup:   helm built ($(( $(date +%s) - t0 ))s)" >&3
  ) 3>&1 >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    die "building tools failed (full log: $buildlog)"
  fi
  # Sanity: the binaries run and report the expected versions.
  local v
  v=$("$tmp/herald-cp" version 2>&1) || true
  [ "$v" = "$K8S_VERSION" ] || die "herald-cp version says '$v', expected $K8S_VERSION"
  v=$("$tmp/kubelet" --version 2>&1) || true
  [ "$v" = "Kubernetes $K8S_VERSION" ] || die "kubelet --version says '$v', expected Kubernetes $K8S_VERSION"
  v=$("$tmp/kube-proxy" --version 2>&1) || true
  [ "$v" = "Kubernetes $K8S_VERSION" ] || die "kube-proxy --version says '$v', expected Kubernetes $K8S_VERSION"
  v=$("$tmp/kubectl" version --client 2>&1) || true
  [[ "$v" == *"Client Version: $K8S_VERSION"* ]] || die "kubectl version says '$v', expected $K8S_VERSION"
  v=$("$tmp/helm" version --short 2>&1) || true
  [[ "$v" == "$HELM_VERSION"* ]] || die "helm version says '$v', expected $HELM_VERSION"
  echo "k8s=$K8S_VERSION helm=$HELM_VERSION go=$GO_VERSION built=$(date -u +%FT%TZ)" > "$tmp/VERSIONS"
  rm -rf "$TOOLS_DIR"
  mv "$tmp" "$TOOLS_DIR"
  # Keep the cache bounded: drop all but the three newest tool sets.
  ls -1dt "$CACHE_ROOT"/tools-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
}

HASH=$(
  {
    echo "recipe 1 $GO_VERSION $CGO_ENABLED $HELM_VERSION"
    echo "$K8S_LDFLAGS"
    echo "$HELM_LDFLAGS"
    declare -f build_tools  # the build recipe itself
    cd "$CP_DIR" && find . -maxdepth 1 \( -name '*.go' -o -name go.mod -o -name go.sum \) -type f | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-16
)
TOOLS_DIR=$CACHE_ROOT/tools-$HASH
mkdir -p "$CACHE_ROOT"
if have_tools; then
  log "tools cached in $TOOLS_DIR"
else
  # One builder at a time per cache (parallel CI jobs, two engineers).
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
  if have_tools; then
    log "tools built meanwhile by another setup.sh in $TOOLS_DIR"
  else
    build_tools
  fi
  flock -u 9
fi

mkdir -p "$BIN_DIR"
for t in "${TOOLS[@]}"; do
  if [ ! "$TOOLS_DIR/$t" -ef "$BIN_DIR/$t" ]; then
    # Hard link (or copy) under a unique name, then rename over the old one:
    # works while the old binary is running, and with concurrent setup.sh runs.
    tmpbin=$BIN_DIR/.$t.$$
    ln -f "$TOOLS_DIR/$t" "$tmpbin" 2>/dev/null || cp -f "$TOOLS_DIR/$t" "$tmpbin"
    mv -f "$tmpbin" "$BIN_DIR/$t"
    rm -f "$tmpbin" # left over if it already was the same file (rename no-op)
  fi
done
rm -f "$BIN_DIR"/*.tmp  # from an earlier version of this script
log "tools in ${BIN_DIR#"$REPO_ROOT"/}: herald-cp + kubelet + kube-proxy + kubectl $K8S_VERSION, helm $HELM_VERSION"
log "done in $(( $(date +%s) - T0 ))s"
