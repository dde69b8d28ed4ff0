// Command vault-plugin-secrets-noventiq serves the Noventiq secrets engine
// to Vault as an external plugin.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	noventiq "github.com/noventiq-vault/vault-plugin-secrets-noventiq"
)

// version is reported to Vault's plugin catalog. Builds set it with
// -ldflags "-X main.version=v1.2.3"; it must match the -version given to
// `vault plugin register`.
var version = "v0.0.0-dev"

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}

	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: noventiq.Factory(version),
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shut down", "error", err)
	os.Exit(1)
}
