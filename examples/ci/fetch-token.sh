#!/usr/bin/env bash
# Log in to Vault with an AppRole, read a Noventiq API token and call the
# Noventiq API with it. Prints the API's response body to stdout.
#
# Environment:
#   VAULT_ADDR                 Vault server address (required)
#   VAULT_ROLE_ID              AppRole role ID, or VAULT_ROLE_ID_FILE: a file with it
#   VAULT_SECRET_ID            AppRole secret ID, or VAULT_SECRET_ID_FILE: a file with it
#   NOVENTIQ_REQUEST_URL       URL of the API request to send with the token (required)
#   VAULT_APPROLE_PATH         AppRole auth mount path (default: approle)
#   NOVENTIQ_MOUNT             Noventiq secrets engine mount path (default: noventiq)
#
# Needs vault, curl (7.76 or newer) and jq on PATH. No secret goes on a
# command line, so none shows in a process listing.
set -euo pipefail

: "${VAULT_ADDR:?set VAULT_ADDR to the Vault server address}"
: "${NOVENTIQ_REQUEST_URL:?set NOVENTIQ_REQUEST_URL to the Noventiq API URL to call}"
approle_path="${VAULT_APPROLE_PATH:-approle}"
mount="${NOVENTIQ_MOUNT:-noventiq}"

# read_credential NAME prints $NAME, or else the content of the file named
# by ${NAME}_FILE without its trailing newlines.
read_credential() {
	local name="$1" file_var="${1}_FILE"
	if [[ -n "${!name:-}" ]]; then
		printf '%s' "${!name}"
	elif [[ -n "${!file_var:-}" ]]; then
		printf '%s' "$(<"${!file_var}")"
	else
		echo "fetch-token.sh: set $name or $file_var" >&2
		return 1
	fi
}

role_id="$(read_credential VAULT_ROLE_ID)"
secret_id="$(read_credential VAULT_SECRET_ID)"

# The login request body goes through stdin. jq reads the IDs from its
# environment, not from its arguments.
VAULT_TOKEN="$(
	ROLE_ID="$role_id" SECRET_ID="$secret_id" \
		jq -n '{role_id: env.ROLE_ID, secret_id: env.SECRET_ID}' |
		vault write -field=token "auth/${approle_path}/login" -
)"
export VAULT_TOKEN
unset role_id secret_id

# Revoking the Vault token at exit also revokes the lease on the API token,
# but in Vault only: the API token itself stays valid until it expires.
trap 'vault token revoke -self >/dev/null || echo "fetch-token.sh: could not revoke the Vault token" >&2' EXIT

api_token="$(vault read -field=token "${mount}/token")"

# The Authorization header goes to curl through stdin, not as an argument.
printf 'Authorization: Bearer %s\n' "$api_token" |
	curl --silent --show-error --fail-with-body --max-time 30 \
		--header @- "$NOVENTIQ_REQUEST_URL"
echo
