#!/usr/bin/env bash
# Runs every test: formatting and vet, unit tests with the race detector,
# each fuzz target for a short bounded time, then the end-to-end tests
# against the pinned Vault (built on first use). Any stage that cannot run
# fails the whole command. The one test skipped by default is the vendor
# acceptance test, which needs NOVENTIQ_ACC_USERNAME and _PASSWORD.
#
#   scripts/test.sh          everything
#   scripts/test.sh fuzz     only the fuzz stage
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

FUZZ_TIME=${FUZZ_TIME:-10s}

stage() { printf '\n==> %s\n' "$*"; }

run_fuzz() {
  stage "fuzzing each target for $FUZZ_TIME"
  local pkg target found=0
  for pkg in $(go list ./...); do
    for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
      found=1
      echo "-- $pkg $target"
      go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZ_TIME" "$pkg"
    done
  done
  [ "$found" = 1 ] || { echo "no fuzz targets found" >&2; return 1; }
}

if [ "${1:-}" = fuzz ]; then
  run_fuzz
  exit 0
fi

stage "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags e2e ./e2e/

stage "unit tests with -race"
go test -race -count=1 ./...

run_fuzz

stage "pinned Vault"
VAULT_BIN=$(scripts/vault.sh)
"$VAULT_BIN" version

stage "end-to-end tests against a real Vault"
log=${TMPDIR:-/tmp}/noventiq-e2e.log
set +e
VAULT_BIN=$VAULT_BIN go test -tags e2e -count=1 -timeout 40m -v ./e2e/ 2>&1 |
  tee "$log" | grep --line-buffered -E '^(\s*--- (PASS|FAIL|SKIP)|PASS|FAIL|ok|panic)'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  echo "end-to-end tests failed; full log: $log" >&2
  tail -n 60 "$log" >&2
  exit "$rc"
fi
