# Least privilege for a machine identity such as a CI job or Vault Agent:
# read a Noventiq API token and nothing else. In particular no access to
# noventiq/config, which contains the API password. Vault attaches its
# default policy as well unless the role sets token_no_default_policy.
path "noventiq/token" {
  capabilities = ["read"]
}
