# Shared settings for the project's scripts. Source it; it defines no
# commands with side effects.

# The Vault release the demo, the end-to-end tests and the benchmark run
# against. scripts/vault-build/go.mod pins the same version.
VAULT_VERSION=v1.21.0
VAULT_COMMIT=818ca8b3575ea937ca48b640baf35e1b2ede1833

# The plugin's name in Vault's catalog and its version when built here.
PLUGIN_NAME=vault-plugin-secrets-noventiq
PLUGIN_VERSION=${PLUGIN_VERSION:-v0.1.0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${NOVENTIQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-noventiq}
VAULT_BIN_CACHED=$CACHE_DIR/vault-$VAULT_VERSION/vault
BUILD_DIR=$ROOT/build
