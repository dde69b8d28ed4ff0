#!/usr/bin/env bash
# Runs the engine end to end on this machine. It builds the plugin, and the
# pinned Vault if it is not cached, then starts the stand-in Noventiq API
# and a Vault dev server on loopback. It registers and enables the plugin,
# writes the config, reads a token and shows its lease. Everything it
# starts stops when it exits.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# free_port prints a loopback port p with p and p+1 free: Vault's dev server
# puts its cluster listener on the port after the API port.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free loopback port found" >&2
  return 1
}

step "Building Vault $VAULT_VERSION (cached after the first run)"
VAULT=$(scripts/vault.sh)
"$VAULT" version

step "Building the plugin $PLUGIN_VERSION"
sha256=$(scripts/build.sh)
echo "sha256 $sha256"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step "Starting the stand-in Noventiq API on loopback"
demo_user=demo-shop
demo_password="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
NOVENTIQ_STANDIN_PASSWORD=$demo_password "$BUILD_DIR/noventiq-standin" \
  -username "$demo_user" -addr-file "$work/api-url" -max-run 15m 2>"$work/standin.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/api-url" ] && break; sleep 0.1; done
api_url=$(cat "$work/api-url")
echo "stand-in API at $api_url"

step "Starting a Vault dev server on loopback"
port=$(free_port)
export VAULT_ADDR=http://127.0.0.1:$port VAULT_TOKEN=root
unset VAULT_NAMESPACE VAULT_CACERT VAULT_FORMAT
cat >"$work/vault.hcl" <<HCL
plugin_directory = "$BUILD_DIR/plugins"
disable_mlock    = true
HCL
"$VAULT" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
  -config="$work/vault.hcl" >"$work/vault.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do "$VAULT" status >/dev/null 2>&1 && break; sleep 0.2; done
"$VAULT" status >/dev/null || { tail -20 "$work/vault.log"; exit 1; }
echo "Vault at $VAULT_ADDR (log: $work/vault.log)"

step "Registering and enabling the plugin"
(
  set -x
  "$VAULT" plugin register -sha256="$sha256" -version="$PLUGIN_VERSION" secret "$PLUGIN_NAME"
  "$VAULT" secrets enable -path=noventiq -plugin-version="$PLUGIN_VERSION" "$PLUGIN_NAME"
)

step "Writing the config (the password goes through stdin, not argv)"
printf '{"username":"%s","password":"%s","url":"%s"}' "$demo_user" "$demo_password" "$api_url" |
  "$VAULT" write noventiq/config -
"$VAULT" read noventiq/config

step "Reading a token"
"$VAULT" read -format=json noventiq/token >"$work/token.json"
"$VAULT" read noventiq/token
lease_id=$(sed -n 's/.*"lease_id": "\([^"]*\)".*/\1/p' "$work/token.json")

step "The first read's lease"
"$VAULT" lease lookup "$lease_id"

step "Revoking that lease (the token itself stays valid upstream until it expires)"
"$VAULT" lease revoke "$lease_id"

step "Done; stopping Vault and the stand-in"
