#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl for the
# Kubernetes-mode tests (test/k8s/), once, and prints the directory that
# holds them on stdout (progress goes to stderr).
#
#   bash scripts/k8s-binaries.sh        # -> /root/.cache/gatehouse/k8s-bin/<key>
#
# The versions are those pinned in tools/k8s/{etcd,kubernetes}/go.mod; the
# cache key includes a hash of those files, so a version bump builds anew.
# GATEHOUSE_K8S_BIN overrides the whole directory. When the four binaries
# are there the script only checks for them (well under a second); a cold
# build takes minutes and ~4 GB of Go caches (see test/k8s/harness/README.md).
#
# Go builds from the Go module proxy: etcd cannot be `go install`ed (its
# go.mod has replace directives), and k8s.io/kubernetes needs its staging
# modules replaced; hence the two wrapper modules under tools/k8s/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
etcd_mod="$root/tools/k8s/etcd"
kube_mod="$root/tools/k8s/kubernetes"

# The version a module is required at, read straight from go.mod (no `go`
# invocation: the warm path must stay fast).
required_version() { # <go.mod> <module path>
  local v
  v="$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1")"
  if [ -z "$v" ]; then
    echo "k8s-binaries: $1 does not require $2" >&2
    exit 1
  fi
  echo "$v"
}

etcd_version="$(required_version "$etcd_mod/go.mod" go.etcd.io/etcd/server/v3)"
kube_version="$(required_version "$kube_mod/go.mod" k8s.io/kubernetes)"
pins_hash="$(cat "$etcd_mod/go.mod" "$etcd_mod/go.sum" "$kube_mod/go.mod" "$kube_mod/go.sum" \
  | sha256sum | cut -c1-12)"
key="kube-$kube_version-etcd-$etcd_version-$pins_hash"
bin_dir="${GATEHOUSE_K8S_BIN:-$HOME/.cache/gatehouse/k8s-bin/$key}"
binaries=(etcd kube-apiserver kube-controller-manager kubectl)

complete() {
  local b
  for b in "${binaries[@]}"; do
    [ -x "$bin_dir/$b" ] || return 1
  done
}

if complete; then
  echo "$bin_dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "k8s-binaries: 'go' is not on PATH; Go >= 1.25 is needed to build $key" >&2
  exit 1
fi

# One build at a time per directory: concurrent test runs wait for the first
# (bounded: a cold build takes minutes, never half an hour).
parent="$(dirname "$bin_dir")"
mkdir -p "$parent"
exec 9>"$bin_dir.lock"
if ! flock -w 1800 9; then
  echo "k8s-binaries: gave up after 30 min waiting for $bin_dir.lock" >&2
  exit 1
fi
if complete; then
  echo "$bin_dir"
  exit 0
fi

# Build into a scratch directory and rename it into place, so that a build
# cut short never leaves a directory that looks complete.
scratch="$(mktemp -d "$bin_dir.tmp.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# GOTOOLCHAIN=local: never download another Go toolchain behind our back.
# -mod=readonly: build exactly what go.sum pins.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
started=$SECONDS

echo "k8s-binaries: building etcd $etcd_version into $bin_dir" >&2
(cd "$etcd_mod" && go build -trimpath -ldflags "-s -w" -o "$scratch/etcd" go.etcd.io/etcd/server/v3)

# kubectl warns of version skew unless it knows its own version; set it the
# way kubernetes' hack/lib/version.sh does, in both packages that hold it.
major="${kube_version#v}"; major="${major%%.*}"
minor="${kube_version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

echo "k8s-binaries: building kube-apiserver, kube-controller-manager, kubectl $kube_version" >&2
(cd "$kube_mod" && go build -trimpath -ldflags "$ldflags" -o "$scratch/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl)

rm -rf "$bin_dir"
mv "$scratch" "$bin_dir"
trap - EXIT
echo "k8s-binaries: built in $((SECONDS - started)) s" >&2
echo "$bin_dir"
