#!/usr/bin/env bash
# The protocol crates are sans-IO: their normal (non-dev) dependency trees must not contain
# tokio, kube or k8s-openapi (issue 12; DESIGN.md "Sans-IO cores"). Fails, naming the crate
# and the offending packages, if one does. Usage: tests/check-protocol-deps.sh [crate...]
set -euo pipefail
cd "$(dirname "$0")/.."

crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
    crates=(herald-bgp herald-l2 herald-membership herald-bfd)
fi
forbidden='^(tokio|kube|kube-[a-z-]+|k8s-openapi) '

failed=0
for crate in "${crates[@]}"; do
    tree=$(cargo tree -e normal -p "$crate" --prefix none --no-dedupe 2>&1) || {
        echo "check-protocol-deps: cargo tree -p $crate failed:" >&2
        echo "$tree" >&2
        exit 2
    }
    offending=$(printf '%s\n' "$tree" | grep -E "$forbidden" | sort -u || true)
    if [ -n "$offending" ]; then
        echo "check-protocol-deps: $crate must not depend on I/O crates, found:" >&2
        printf '  %s\n' "$offending" >&2
        failed=1
    else
        echo "check-protocol-deps: $crate ok"
    fi
done
exit "$failed"
