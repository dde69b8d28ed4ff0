#!/usr/bin/env bash
# Builds the pinned Vault server from the Go module proxy into the cache and
# prints its path. A cached build, or a `vault` on PATH of the pinned
# version, is reused. A cold build takes about 10 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want=${VAULT_VERSION#v}

reports_pinned_version() {
  "$1" version 2>/dev/null | grep -q "^Vault v$want[ ,(]"
}

if [ -x "$VAULT_BIN_CACHED" ] && reports_pinned_version "$VAULT_BIN_CACHED"; then
  echo "$VAULT_BIN_CACHED"
  exit 0
fi

if on_path=$(command -v vault 2>/dev/null) && reports_pinned_version "$on_path"; then
  echo "$on_path"
  exit 0
fi

# Only one build at a time: a second caller waits for the first and then
# finds the cached binary.
mkdir -p "$(dirname "$VAULT_BIN_CACHED")"
exec 9>"$(dirname "$VAULT_BIN_CACHED")/.build.lock"
flock 9
if [ -x "$VAULT_BIN_CACHED" ] && reports_pinned_version "$VAULT_BIN_CACHED"; then
  echo "$VAULT_BIN_CACHED"
  exit 0
fi

echo "building Vault $VAULT_VERSION into $VAULT_BIN_CACHED (a cold build takes about 10 minutes)" >&2
tmp=$VAULT_BIN_CACHED.tmp.$$
trap 'rm -f "$tmp"' EXIT

build_date=2025-10-21T00:00:00Z
ldflags="-s -w"
ldflags+=" -X github.com/hashicorp/vault/version.GitCommit=$VAULT_COMMIT"
ldflags+=" -X github.com/hashicorp/vault/version.BuildDate=$build_date"

# -p 2 keeps the compiler's memory use in bounds on a small machine.
(cd "$ROOT/scripts/vault-build" &&
  CGO_ENABLED=0 go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" github.com/hashicorp/vault)
mv "$tmp" "$VAULT_BIN_CACHED"
reports_pinned_version "$VAULT_BIN_CACHED" || {
  echo "the built binary does not report Vault $VAULT_VERSION:" >&2
  "$VAULT_BIN_CACHED" version >&2
  exit 1
}
echo "$VAULT_BIN_CACHED"
