#!/usr/bin/env bash
# Builds the helm CLI (v3) for test/deploy/helm.test.ts, once, and prints
# the path of the binary on stdout (progress goes to stderr).
#
#   bash scripts/helm-binary.sh        # -> /root/.cache/gatehouse/helm-bin/v3.22.0/helm
#   bash scripts/helm-binary.sh --if-built   # the path if built, else exit 3 (never builds)
#
# helm is not packaged on these machines, but the Go module proxy serves
# it. The module graph is what helm's own go.mod pins (minimal version
# selection), checked against the Go checksum database, so a scratch
# wrapper module is enough: no go.sum of ours to keep. GATEHOUSE_HELM_BIN
# overrides the directory. When the binary is there the script only checks
# for it (well under a second); a cold build downloads ~300 MB of modules
# and takes a few minutes on two cores.
set -euo pipefail

version="v3.22.0"
bin_dir="${GATEHOUSE_HELM_BIN:-$HOME/.cache/gatehouse/helm-bin/$version}"
binary="$bin_dir/helm"

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
if [ "${1:-}" = "--if-built" ]; then
  echo "helm-binary: helm $version is not built; run bash scripts/helm-binary.sh" >&2
  exit 3
fi

if ! command -v go >/dev/null 2>&1; then
  echo "helm-binary: 'go' is not on PATH; Go >= 1.26 is needed to build helm $version" >&2
  exit 1
fi

# One build at a time: concurrent test runs wait for the first (bounded:
# a cold build takes minutes, never half an hour).
mkdir -p "$(dirname "$bin_dir")"
exec 9>"$bin_dir.lock"
if ! flock -w 1800 9; then
  echo "helm-binary: gave up after 30 min waiting for $bin_dir.lock" >&2
  exit 1
fi
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

# Build in a scratch directory and rename it into place, so that a build
# cut short never leaves a directory that looks complete.
scratch="$(mktemp -d "$bin_dir.tmp.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# GOTOOLCHAIN=local: never download another Go toolchain behind our back.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" CGO_ENABLED=0
started=$SECONDS

echo "helm-binary: building helm $version into $bin_dir" >&2
mkdir "$scratch/mod"
(
  cd "$scratch/mod"
  go mod init gatehouse.dev/helm-build >/dev/null 2>&1
  # The package, not the module: go.sum then gets every module the command imports.
  go get "helm.sh/helm/v3/cmd/helm@$version" >&2
  # Set the way helm's Makefile sets them: its own version, and the
  # Kubernetes version `helm template` assumes (from client-go v0.X.Y:
  # 1.X). Unset, that is v1.20, and charts needing newer ones fail.
  client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
  kube_minor="${client_go#v0.}"; kube_minor="${kube_minor%%.*}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
  done
  go build -trimpath -ldflags "$ldflags" -o "$scratch/helm" helm.sh/helm/v3/cmd/helm
)
rm -rf "$scratch/mod"

rm -rf "$bin_dir"
mv "$scratch" "$bin_dir"
trap - EXIT
echo "helm-binary: built in $((SECONDS - started)) s" >&2
echo "$binary"
