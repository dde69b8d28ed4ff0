#!/usr/bin/env bash
# Builds the plugin, reporting PLUGIN_VERSION, into build/plugins/ and the
# stand-in API into build/. Prints the plugin binary's SHA-256.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mkdir -p "$BUILD_DIR/plugins"
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$PLUGIN_VERSION" \
  -o "$BUILD_DIR/plugins/$PLUGIN_NAME" ./cmd/vault-plugin-secrets-noventiq
CGO_ENABLED=0 go build -trimpath -o "$BUILD_DIR/noventiq-standin" ./cmd/noventiq-standin
sha256sum "$BUILD_DIR/plugins/$PLUGIN_NAME" | cut -d' ' -f1
