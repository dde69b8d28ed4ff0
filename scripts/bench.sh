#!/usr/bin/env bash
# Measures noventiq/token reads on the pinned Vault against the stand-in
# Noventiq API, beside KV version 1 reads and auth/token/create calls on
# the same server, and prints one table (see BENCHMARKS.md). Builds Vault
# on first use and the plugin every time. Arguments go to noventiq-bench,
# for example: scripts/bench.sh -requests 500 -rss-reads 0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

VAULT_BIN=$(scripts/vault.sh)

# The plugin is built as scripts/build.sh builds it, but into a directory
# of its own, so a concurrent `make build` cannot replace the binary that
# Vault has registered by its SHA-256.
bench_dir=$BUILD_DIR/bench
mkdir -p "$bench_dir/plugins"
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$PLUGIN_VERSION" \
  -o "$bench_dir/plugins/$PLUGIN_NAME" ./cmd/vault-plugin-secrets-noventiq
go build -o "$bench_dir/noventiq-bench" ./cmd/noventiq-bench

exec "$bench_dir/noventiq-bench" -vault "$VAULT_BIN" -plugin-dir "$bench_dir/plugins" \
  -plugin-name "$PLUGIN_NAME" -plugin-version "$PLUGIN_VERSION" "$@"
