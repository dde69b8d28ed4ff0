# Vault Agent: log in with an AppRole and keep two files holding a current
# Noventiq API token.
#
# Relative paths resolve against the directory the agent runs in (systemd:
# WorkingDirectory=). That directory contains this file, the two templates
# and the role-id and secret-id files, and receives rendered/. The Vault
# address comes from VAULT_ADDR. The agent opens no listener.

auto_auth {
  method "approle" {
    config = {
      role_id_file_path   = "role-id"
      secret_id_file_path = "secret-id"

      # Keep the secret ID, so that the agent can log in again once its own
      # Vault token reaches its max TTL.
      remove_secret_id_file_after_reading = false
    }
  }
}

template_config {
  # A noventiq/token lease is not renewable, so the template engine reads the
  # path again, which is a new login at the API, once this fraction of the
  # lease has passed (plus or minus 0.05 of random jitter). The default, 0.9,
  # replaces the token with 5 to 15 % of the lease left. 0.75 replaces it
  # with 20 to 30 % left, which leaves time to retry when Vault or the API
  # is down at that moment, for one login every 0.7 to 0.8 lease periods.
  lease_renewal_threshold = 0.75
}

template {
  source      = "noventiq-token.ctmpl"
  destination = "rendered/noventiq-token"
  perms       = "0600"
}

template {
  source      = "app-config.json.ctmpl"
  destination = "rendered/app-config.json"
  perms       = "0600"
}
