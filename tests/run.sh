#!/usr/bin/env bash
# tests/run.sh — Herald's whole test suite: the README's test command.
#
#   1. tests/setup.sh           install/build what is missing (FRR, gobgpd, herald-cp, kubectl, helm)
#   2. cargo build --workspace --all-targets
#   3. herald-lab down --prefix hlup   remove a lab left by `herald-lab up` (it would hold the
#                               control-plane addresses the tests need); crashed test labs and
#                               an unhealthy control plane are cleared by the harness itself
#   4. cargo test --workspace   unit tests, plus the lab tests (network namespaces, FRR,
#                               a real kube-apiserver) — these need root
#   5. herald-lab down          always, from an EXIT trap, even on failure or Ctrl-C
#
# Arguments replace `--workspace` in `cargo test` (e.g. `tests/run.sh -p herald-lab`).
# Env: HERALD_SKIP_SETUP=1 skips step 1; CARGO_TEST_ARGS adds arguments after `--`.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
LAB_BIN=$TARGET_DIR/debug/herald-lab
LOG_DIR=$TARGET_DIR/lab/logs
TEST_LOG=$LOG_DIR/cargo-test.log
T0=$(date +%s)
SUMMARY=""

say() { echo "run.sh: $*"; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }

teardown() {
  local rc=$?
  set +e
  if [ -x "$LAB_BIN" ]; then
    say "tearing the lab down (herald-lab down)"
    if ! "$LAB_BIN" down; then
      say "WARNING: herald-lab down reported a problem"
      [ $rc -ne 0 ] || rc=1
    fi
  fi
  if [ $rc -eq 0 ]; then
    say "SUCCESS after $(elapsed)"
  else
    say "FAILED (exit $rc) after $(elapsed); logs: $LOG_DIR"
  fi
  # The closing line: the whole suite's count, last so that it is easy to find.
  [ -z "$SUMMARY" ] || echo "$SUMMARY"
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then
  say "the lab tests create network namespaces and need root; run as root (sudo tests/run.sh)"
  exit 1
fi

if [ "${HERALD_SKIP_SETUP:-0}" != 1 ]; then
  say "== setup ($(elapsed))"
  bash tests/setup.sh
fi

say "== cargo build --workspace --all-targets ($(elapsed))"
cargo build --workspace --all-targets

say "== removing a running \`herald-lab up\` lab, if any ($(elapsed))"
"$LAB_BIN" down --prefix hlup

say "== cargo test --workspace ($(elapsed))"
mkdir -p "$LOG_DIR"
set +e
# shellcheck disable=SC2086
if [ $# -gt 0 ]; then SCOPE=("$@"); else SCOPE=(--workspace); fi
cargo test --no-fail-fast "${SCOPE[@]}" -- ${CARGO_TEST_ARGS:-} 2>&1 | tee "$TEST_LOG"
TEST_RC=${PIPESTATUS[0]}
set -e

# Sum the per-binary "test result:" lines into one closing line.
read -r PASSED FAILED IGNORED < <(awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/)  p += $i
      if ($(i+1) ~ /^failed/)  f += $i
      if ($(i+1) ~ /^ignored/) g += $i
    }
  }
  END { print p+0, f+0, g+0 }' "$TEST_LOG")
echo
say "summary: $(grep -c '^test result:' "$TEST_LOG" || true) test binaries, log $TEST_LOG"
if [ "$TEST_RC" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
  say "cargo test failed before running every test (exit $TEST_RC): see above"
  FAILED=1
fi
SUMMARY="tests: $PASSED passed, $FAILED failed, $IGNORED skipped"
exit "$TEST_RC"
