#!/usr/bin/env bash
# tests/controlplane/smoke.sh — end-to-end check of herald-cp (needs root).
#
# Puts 169.254.100.1/24 on a bridge (hl-cp0), starts `herald-cp run`, then with
# kubectl from the same release: lists namespaces, creates a namespace + a
# ServiceAccount + a token for it and shows RBAC denies that identity; creates
# a Node, a Pod on it, plays kubelet (patches the Pod status Ready with a pod
# IP), creates a Service and waits for kube-controller-manager's EndpointSlice
# to list the pod IP as ready. Finally SIGTERMs herald-cp and checks it and
# all its children are gone. Everything is bounded; cleanup runs in a trap.
#
# If 169.254.100.1 is already on an interface of this machine (a lab run in
# progress), the whole thing runs inside a private network namespace instead
# (or always, with SMOKE_NETNS=1). Binaries: target/lab/bin (tests/setup.sh)
# or $HERALD_LAB_BIN.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${HERALD_LAB_BIN:-$REPO_ROOT/target/lab/bin}
ADDR=169.254.100.1
PORT=6443
SVC_CIDR=198.19.0.0/16
IFACE=hl-cp0
POD_IP=198.18.1.10
NS=smoke
READY_TIMEOUT=${SMOKE_READY_TIMEOUT:-120}

PASSED=0
T0=$(date +%s)
say() { echo "smoke: $*"; }
ok() { PASSED=$((PASSED + 1)); say "ok   $*"; }
fail() { echo "smoke: FAIL $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (creates an interface)"
for b in herald-cp kubectl; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b missing; run tests/setup.sh first"
done

WORK=$(mktemp -d /tmp/herald-cp-smoke.XXXXXX)
DIR=$WORK/cp
NETNS=""
MADE_IFACE=0
CP_PID=""
CHILDREN=""
NSX=()

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CP_PID" ] && kill -0 "$CP_PID" 2>/dev/null; then
    kill -TERM "$CP_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$CP_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$CP_PID" 2>/dev/null
  fi
  for p in $CHILDREN; do kill -KILL "$p" 2>/dev/null; done
  if [ $rc -ne 0 ]; then
    for f in "$WORK/stdout" "$WORK/stderr" "$DIR/herald-cp.log" "$DIR/kube-apiserver.log" "$DIR/kube-controller-manager.log" "$DIR/etcd.log"; do
      [ -s "$f" ] || continue
      echo "---- tail $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  if [ -n "$NETNS" ]; then
    ip netns del "$NETNS" 2>/dev/null
  elif [ $MADE_IFACE -eq 1 ]; then
    ip link del "$IFACE" 2>/dev/null
  fi
  if [ "${SMOKE_KEEP:-0}" = 1 ]; then
    echo "smoke: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  if [ $rc -eq 0 ]; then
    say "$PASSED passed, 0 failed ($(( $(date +%s) - T0 ))s)"
  else
    say "$PASSED passed, 1 failed"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- network --
if [ "${SMOKE_NETNS:-0}" = 1 ] || ip -4 -o addr show | grep -q " $ADDR/"; then
  NETNS=hl-cp-smoke-$$
  ip netns add "$NETNS"
  NSX=(ip netns exec "$NETNS")
  "${NSX[@]}" ip link set lo up
  say "running in private network namespace $NETNS"
else
  ip link show "$IFACE" >/dev/null 2>&1 && fail "$IFACE already exists (someone else's?)"
fi
"${NSX[@]}" ip link add "$IFACE" type bridge
MADE_IFACE=1
"${NSX[@]}" ip addr add "$ADDR/24" dev "$IFACE"
"${NSX[@]}" ip link set "$IFACE" up
ok "$IFACE carries $ADDR/24"

# --------------------------------------------------------------- herald-cp --
"${NSX[@]}" "$BIN/herald-cp" run --data-dir "$DIR" --bind-address "$ADDR" --secure-port "$PORT" \
  --service-cluster-ip-range "$SVC_CIDR" >"$WORK/stdout" 2>"$WORK/stderr" &
CP_PID=$!
deadline=$(( $(date +%s) + READY_TIMEOUT ))
until grep -qx 'herald-cp: ready' "$WORK/stdout"; do
  kill -0 "$CP_PID" 2>/dev/null || fail "herald-cp exited before ready: $(cat "$WORK/stderr")"
  [ "$(date +%s)" -lt "$deadline" ] || fail "herald-cp not ready within ${READY_TIMEOUT}s"
  sleep 0.5
done
ok "herald-cp ready after $(( $(date +%s) - T0 ))s (pid $CP_PID)"
[ "$(cat "$DIR/herald-cp.pid")" = "$CP_PID" ] || fail "pid file does not hold $CP_PID"
[ "$(wc -l < "$WORK/stdout")" -eq 1 ] || fail "stdout has more than the ready line: $(cat "$WORK/stdout")"
[ ! -s "$WORK/stderr" ] || fail "herald-cp wrote to stderr: $(cat "$WORK/stderr")"
CHILDREN=$(pgrep -P "$CP_PID" | tr '\n' ' ')
[ "$(echo "$CHILDREN" | wc -w)" -eq 2 ] || fail "expected 2 children (apiserver, controller-manager), got: $CHILDREN"
ok "pid file, quiet terminal, children: $CHILDREN"

k() { "${NSX[@]}" "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" --request-timeout=20s "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}

v=$(k version -o json)
server=$(echo "$v" | jq -r .serverVersion.gitVersion)
client=$(echo "$v" | jq -r .clientVersion.gitVersion)
[ "$server" = "$client" ] || fail "kubectl $client vs apiserver $server"
ok "kubectl $client talks to apiserver $server (TLS verified against the embedded CA)"

k get ns >"$WORK/ns.txt"
grep -q '^kube-system ' "$WORK/ns.txt" || fail "kubectl get ns: no kube-system: $(cat "$WORK/ns.txt")"
ok "kubectl get ns: $(awk 'NR>1{print $1}' "$WORK/ns.txt" | tr '\n' ' ')"

# -------------------------------------------------- service-account tokens --
k create namespace "$NS" >/dev/null
k -n "$NS" create serviceaccount tester >/dev/null
TOKEN=$(k -n "$NS" create token tester --duration=10m)
[ "$(echo "$TOKEN" | tr -cd . | wc -c)" -eq 2 ] || fail "kubectl create token did not return a JWT"
ok "namespace $NS, serviceaccount tester, token (${#TOKEN} bytes)"

# A kubeconfig with only the token (no admin client cert) for that identity.
SAKC=$WORK/sa.kubeconfig
server_url=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
k config --kubeconfig "$SAKC" set-cluster herald --server "$server_url" \
  --certificate-authority "$DIR/pki/ca.crt" --embed-certs >/dev/null
k config --kubeconfig "$SAKC" set-credentials tester --token "$TOKEN" >/dev/null
k config --kubeconfig "$SAKC" set-context herald --cluster herald --user tester >/dev/null
k config --kubeconfig "$SAKC" use-context herald >/dev/null
who=$("${NSX[@]}" "$BIN/kubectl" --kubeconfig "$SAKC" auth whoami -o jsonpath='{.status.userInfo.username}')
[ "$who" = "system:serviceaccount:$NS:tester" ] || fail "token authenticates as '$who'"
ok "token authenticates as $who"
ans=$("${NSX[@]}" "$BIN/kubectl" --kubeconfig "$SAKC" auth can-i list pods -n "$NS" 2>/dev/null || true)
[ "$ans" = no ] || fail "RBAC: token can-i list pods = '$ans', expected no"
ans=$(k auth can-i list pods -n "$NS" --as "system:serviceaccount:$NS:tester" 2>/dev/null || true)
[ "$ans" = no ] || fail "RBAC: --as can-i list pods = '$ans', expected no"
if "${NSX[@]}" "$BIN/kubectl" --kubeconfig "$SAKC" -n "$NS" get pods >/dev/null 2>"$WORK/denied.txt"; then
  fail "token could list pods"
fi
grep -q Forbidden "$WORK/denied.txt" || fail "listing pods with the token: $(cat "$WORK/denied.txt")"
ok "RBAC denies the service account (can-i: no; get pods: Forbidden)"

# ------------------------------------------- node, pod, service, endpoints --
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: smoke-node
  labels: {kubernetes.io/hostname: smoke-node}
EOF
# The ServiceAccount admission plugin needs the namespace's default SA,
# which kube-controller-manager creates.
wait_for 30 "default ServiceAccount in $NS" k -n "$NS" get serviceaccount default
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: echo-0
  labels: {app: echo}
spec:
  nodeName: smoke-node
  containers:
  - name: echo
    image: example.invalid/echo:0
    ports: [{containerPort: 8080, name: http}]
EOF
k -n "$NS" patch pod echo-0 --subresource=status --type=merge -p "{\"status\":{
  \"phase\":\"Running\",\"hostIP\":\"$ADDR\",\"podIP\":\"$POD_IP\",\"podIPs\":[{\"ip\":\"$POD_IP\"}],
  \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":\"ContainersReady\",\"status\":\"True\"}]}}" >/dev/null
ok "node smoke-node, pod echo-0 Running/Ready with podIP $POD_IP"

k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
cip=$(k -n "$NS" get service echo -o jsonpath='{.spec.clusterIP}')
case "$cip" in 198.19.*) ;; *) fail "service ClusterIP $cip not in $SVC_CIDR" ;; esac
slice_ready() {
  k -n "$NS" get endpointslices -l kubernetes.io/service-name=echo \
    -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready}{"\n"}{end}' |
    grep -qx "$POD_IP true"
}
t=$(date +%s)
wait_for 60 "an EndpointSlice with $POD_IP ready" slice_ready
ok "service echo ($cip): EndpointSlice lists $POD_IP ready after $(( $(date +%s) - t ))s"

# ---------------------------------------------------------------- shutdown --
kill -TERM "$CP_PID"
end=$(( $(date +%s) + 60 ))
while kill -0 "$CP_PID" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || fail "herald-cp still running 60s after SIGTERM"
  sleep 0.2
done
rc=0; wait "$CP_PID" || rc=$?
CP_PID=""
[ "$rc" -eq 0 ] || fail "herald-cp exited with status $rc after SIGTERM"
for p in $CHILDREN; do
  kill -0 "$p" 2>/dev/null && fail "child $p still alive after herald-cp exited"
done
[ ! -e "$DIR/herald-cp.pid" ] || fail "pid file left behind"
ok "SIGTERM: herald-cp exited 0, children gone, pid file removed"
