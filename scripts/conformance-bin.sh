#!/usr/bin/env bash
# Builds the upstream Gateway API conformance suite (conformance.test) and
# the programs the conformance cluster runs for the base manifests' images
# (echo-basic, coredns), once, and prints the directory that holds them on
# stdout (progress goes to stderr).
#
#   bash scripts/conformance-bin.sh           # -> ~/.cache/gatehouse/conformance-bin/<key>
#   bash scripts/conformance-bin.sh --check   # exit 0 when all three are built, 1 when not; builds nothing
#
# Versions are pinned by the wrapper modules under tools/conformance/
# (suite: sigs.k8s.io/gateway-api/conformance; echo-basic:
# sigs.k8s.io/gateway-api-conformance-images; coredns: github.com/coredns/coredns).
# The cache key holds those versions and a hash of the go.mod/go.sum files,
# so a version bump builds anew. GATEHOUSE_CONFORMANCE_BIN overrides the
# whole directory. Warm, the script only checks for the three files.
# Builds run one after the other (concurrent cold builds on 2 cores took
# ~22 min each; serial ones a few minutes each), GOWORK=off so that no
# go.work around the checkout leaks in.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
mods="$root/tools/conformance"

required_version() { # <go.mod> <module path>
  local v
  # Both `require m v` and a line of a `require (...)` block.
  v="$(awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1")"
  if [ -z "$v" ]; then
    echo "conformance-bin: $1 does not require $2" >&2
    exit 1
  fi
  echo "$v"
}

suite_version="$(required_version "$mods/suite/go.mod" sigs.k8s.io/gateway-api/conformance)"
echo_version="$(required_version "$mods/echo-basic/go.mod" sigs.k8s.io/gateway-api-conformance-images)"
coredns_version="$(required_version "$mods/coredns/go.mod" github.com/coredns/coredns)"
pins_hash="$(cat "$mods"/{suite,echo-basic,coredns}/go.{mod,sum} | sha256sum | cut -c1-12)"
key="gwapi-$suite_version-images-$echo_version-coredns-$coredns_version-$pins_hash"
bin_dir="${GATEHOUSE_CONFORMANCE_BIN:-$HOME/.cache/gatehouse/conformance-bin/$key}"

# name | wrapper module | package | how
targets=(
  "conformance.test|suite|sigs.k8s.io/gateway-api/conformance|test"
  "echo-basic|echo-basic|sigs.k8s.io/gateway-api-conformance-images/echo-basic|build"
  "coredns|coredns|github.com/coredns/coredns|build"
)

complete() {
  local t
  for t in "${targets[@]}"; do
    [ -x "$bin_dir/${t%%|*}" ] || return 1
  done
}

if complete; then
  echo "$bin_dir"
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

if ! command -v go >/dev/null 2>&1; then
  echo "conformance-bin: 'go' is not on PATH; Go >= 1.26 is needed to build $key" >&2
  exit 1
fi

mkdir -p "$bin_dir"
exec 9>"$bin_dir.lock"
if ! flock -w 1800 9; then
  echo "conformance-bin: gave up after 30 min waiting for $bin_dir.lock" >&2
  exit 1
fi

export GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
for t in "${targets[@]}"; do
  IFS='|' read -r name mod pkg how <<<"$t"
  [ -x "$bin_dir/$name" ] && continue
  started=$SECONDS
  echo "conformance-bin: building $name ($pkg) into $bin_dir" >&2
  # Each file is written under a temporary name and renamed into place,
  # so a build cut short never leaves a file that looks complete.
  if [ "$how" = test ]; then
    (cd "$mods/$mod" && go test -c -trimpath -ldflags "-s -w" -o "$bin_dir/.$name.tmp" "$pkg")
  else
    (cd "$mods/$mod" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/.$name.tmp" "$pkg")
  fi
  mv "$bin_dir/.$name.tmp" "$bin_dir/$name"
  echo "conformance-bin: built $name in $((SECONDS - started)) s" >&2
done
echo "$bin_dir"
