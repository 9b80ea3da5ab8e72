#!/usr/bin/env bash
# The upstream Gateway API conformance suite against Gatehouse in
# Kubernetes mode, on the local cluster (tools/cluster/), in a network
# namespace of its own so that nothing collides with the host or another
# cluster.
#
#   npm run conformance:k8s [-- --profiles GATEWAY-HTTP] [-- SUITE_FLAGS...]   (suite flags after a second --)
#
# Builds (once, cached) the k8s binaries (scripts/k8s-binaries.sh) and the
# suite, echo-basic and coredns (scripts/conformance-bin.sh); the report
# goes to $GATEHOUSE_CONFORMANCE_REPORT (default
# conformance/reports/kubernetes-<suite version>.yaml). Needs root (network
# and mount namespaces, veth pairs) and Go for a cold build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/node_modules/.bin:$PATH"

t0=$SECONDS
bash "$root/scripts/k8s-binaries.sh" >/dev/null
t1=$SECONDS
bin="$(bash "$root/scripts/conformance-bin.sh")"
t2=$SECONDS
# The suite's release's CRDs: from the module the suite was built from.
crds="$(cd "$root/tools/conformance/suite" && GOWORK=off GOFLAGS=-mod=readonly GOTOOLCHAIN=local \
  go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/experimental"
version="$(cd "$root/tools/conformance/suite" && awk '$1 == "require" && $2 == "sigs.k8s.io/gateway-api/conformance" { print $3 }' go.mod)"
report="${GATEHOUSE_CONFORMANCE_REPORT:-$root/conformance/reports/kubernetes-$version.yaml}"
mkdir -p "$(dirname "$report")"
echo "conformance-k8s: binaries ready (k8s $((t1 - t0)) s, suite/images $((t2 - t1)) s); CRDs from $crds" >&2

# The whole run is bounded (the suite's own -test.timeout is 40 min).
timeout --kill-after=30 50m unshare -n -- bash -c 'ip link set lo up && exec "$0" "$@"' \
  node "$root/tools/cluster/conformance.ts" --bin "$bin" --crds "$crds" --report "$report" "$@"
