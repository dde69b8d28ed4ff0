//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

func TestTokenReadEndToEnd(t *testing.T) {
	fake, api := startStandin(t, standin.Options{IssuedAgo: 3 * time.Hour})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)

	// The config read returns the settings but never the password.
	var configRead struct {
		Data map[string]interface{} `json:"data"`
	}
	v.mustCLIJSON(t, &configRead, "read", mountPath+"/config")
	if got := configRead.Data["username"]; got != standinUsername {
		t.Errorf("config username = %v, want %q", got, standinUsername)
	}
	if got := configRead.Data["url"]; got != api.URL {
		t.Errorf("config url = %v, want %q", got, api.URL)
	}
	if _, ok := configRead.Data["password"]; ok {
		t.Errorf("config read contains a password field: %v", configRead.Data)
	}
	rawConfig := v.mustCLI(t, "read", "-format=json", mountPath+"/config")
	if strings.Contains(rawConfig, standinPassword) {
		t.Errorf("config read output contains the password")
	}

	loginsBefore := fake.TokensIssued()
	var tokenRead struct {
		LeaseID       string            `json:"lease_id"`
		LeaseDuration int               `json:"lease_duration"`
		Renewable     bool              `json:"renewable"`
		Data          map[string]string `json:"data"`
	}
	v.mustCLIJSON(t, &tokenRead, "read", mountPath+"/token")

	if got := fake.TokensIssued() - loginsBefore; got != 1 {
		t.Errorf("logins at the stand-in during one token read = %d, want 1", got)
	}
	token := tokenRead.Data["token"]
	if !fake.TokenValid(token) {
		t.Errorf("token %q is not valid at the stand-in", token)
	}
	wantTTL := 21 * time.Hour
	gotTTL := time.Duration(tokenRead.LeaseDuration) * time.Second
	if diff := wantTTL - gotTTL; diff < 0 || diff > 10*time.Second {
		t.Errorf("lease_duration = %s, want within 10s below %s", gotTTL, wantTTL)
	}
	if tokenRead.Renewable {
		t.Errorf("lease is renewable, want not renewable")
	}
	if !strings.HasPrefix(tokenRead.LeaseID, mountPath+"/token/") {
		t.Errorf("lease_id = %q, want prefix %q", tokenRead.LeaseID, mountPath+"/token/")
	}

	issuedAt, err := time.Parse(time.RFC3339, tokenRead.Data["issued_at"])
	if err != nil {
		t.Fatalf("issued_at %q is not RFC 3339: %v", tokenRead.Data["issued_at"], err)
	}
	expiresAt, err := time.Parse(time.RFC3339, tokenRead.Data["expires_at"])
	if err != nil {
		t.Fatalf("expires_at %q is not RFC 3339: %v", tokenRead.Data["expires_at"], err)
	}
	if got := expiresAt.Sub(issuedAt); got != 24*time.Hour {
		t.Errorf("expires_at - issued_at = %s, want 24h", got)
	}
	if ago := time.Since(issuedAt); ago < 3*time.Hour-10*time.Second || ago > 3*time.Hour+10*time.Second {
		t.Errorf("issued_at is %s ago, want about 3h", ago)
	}
	for key := range tokenRead.Data {
		switch key {
		case "token", "issued_at", "expires_at":
		default:
			t.Errorf("token response has unexpected field %q", key)
		}
	}

	// The lease's internal data is not shown to clients, but the lease
	// lookup shows what Vault stores about it.
	lookup := v.mustCLI(t, "lease", "lookup", "-format=json", tokenRead.LeaseID)
	if strings.Contains(lookup, standinPassword) || strings.Contains(lookup, token) {
		t.Errorf("lease lookup contains the password or the token:\n%s", lookup)
	}

	// Vault's own record of the lease must end before the token does.
	var lease struct {
		Data struct {
			ExpireTime time.Time `json:"expire_time"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(lookup), &lease); err != nil {
		t.Fatalf("decoding lease lookup: %v\n%s", err, lookup)
	}
	if lease.Data.ExpireTime.After(expiresAt) {
		t.Errorf("lease expire_time %s is after the token's expires_at %s",
			lease.Data.ExpireTime.Format(time.RFC3339Nano), expiresAt.Format(time.RFC3339))
	}

	v.mustCLI(t, "lease", "revoke", tokenRead.LeaseID)
	res := v.cli(t, v.Token, "", "lease", "lookup", tokenRead.LeaseID)
	if res.Err == nil {
		t.Errorf("lease lookup after revoke succeeded, want an error")
	}
}

func TestPluginVersionReported(t *testing.T) {
	v := startDevVault(t)
	v.enablePlugin(t)

	var mounts map[string]struct {
		Type                 string `json:"type"`
		PluginVersion        string `json:"plugin_version"`
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSHA256        string `json:"running_sha256"`
	}
	v.mustCLIJSON(t, &mounts, "secrets", "list", "-detailed")
	mount, ok := mounts[mountPath+"/"]
	if !ok {
		t.Fatalf("mount %s/ not listed: %v", mountPath, mounts)
	}
	if mount.PluginVersion != pluginVersion {
		t.Errorf("plugin_version = %q, want %q", mount.PluginVersion, pluginVersion)
	}
	if mount.RunningPluginVersion != pluginVersion {
		t.Errorf("running_plugin_version = %q, want %q", mount.RunningPluginVersion, pluginVersion)
	}
	if mount.RunningSHA256 != pluginSHA256 {
		t.Errorf("running_sha256 = %q, want %q", mount.RunningSHA256, pluginSHA256)
	}
}

func TestReadOnlyPolicyCannotTouchConfig(t *testing.T) {
	_, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)

	policy := `path "noventiq/token" { capabilities = ["read"] }`
	res := v.cli(t, v.Token, policy, "policy", "write", "noventiq-token-reader", "-")
	if res.Err != nil {
		t.Fatalf("policy write: %v\n%s", res.Err, res.Stderr)
	}

	var created struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	v.mustCLIJSON(t, &created, "token", "create", "-policy=noventiq-token-reader", "-no-default-policy", "-ttl=10m")
	reader := newAPIClient(t, v.Addr, created.Auth.ClientToken)

	secret, err := readSecret(t, reader, mountPath+"/token")
	if err != nil {
		t.Fatalf("token read with the reader policy: %v", err)
	}
	if token, _ := secret.Data["token"].(string); token == "" {
		t.Errorf("token read with the reader policy returned no token: %v", secret.Data)
	}

	_, err = readSecret(t, reader, mountPath+"/config")
	if statusCode(err) != http.StatusForbidden {
		t.Errorf("config read with the reader policy: err = %v, want 403", err)
	}

	_, err = reader.Logical().Write(mountPath+"/config", map[string]interface{}{"username": "intruder"})
	if statusCode(err) != http.StatusForbidden {
		t.Errorf("config write with the reader policy: err = %v, want 403", err)
	}

	res = v.cli(t, created.Auth.ClientToken, "", "delete", mountPath+"/config")
	if res.Err == nil || !strings.Contains(res.Stderr, "permission denied") {
		t.Errorf("config delete with the reader policy: err = %v, stderr = %q, want permission denied",
			res.Err, res.Stderr)
	}
}

func TestTokenReadFailuresCreateNoLease(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)

	// Before any config exists.
	res := v.cli(t, v.Token, "", "read", mountPath+"/token")
	if res.Err == nil || !strings.Contains(res.Stderr, "not configured") {
		t.Errorf("token read without config: err = %v, stderr = %q, want a not configured error",
			res.Err, res.Stderr)
	}

	v.configure(t, api)
	fake.SetCredentials(standinUsername, "a-rotated-password")

	res = v.cli(t, v.Token, "", "read", mountPath+"/token")
	if res.Err == nil {
		t.Fatalf("token read with rejected credentials succeeded")
	}
	if !strings.Contains(res.Stderr, "1006") || !strings.Contains(res.Stderr, "config") {
		t.Errorf("token read with rejected credentials: stderr = %q, want error 1006 and a hint to update the config",
			res.Stderr)
	}
	if strings.Contains(res.Stderr, standinPassword) {
		t.Errorf("error output contains the password")
	}

	leases, err := v.Client.Logical().List("sys/leases/lookup/" + mountPath + "/token/")
	if err != nil {
		t.Fatalf("listing leases: %v", err)
	}
	if leases != nil {
		if keys, _ := leases.Data["keys"].([]interface{}); len(keys) > 0 {
			t.Errorf("failed reads left leases: %v", keys)
		}
	}
}

func TestPathHelpDescribesFields(t *testing.T) {
	v := startDevVault(t)
	v.enablePlugin(t)

	configHelp := v.mustCLI(t, "path-help", mountPath+"/config")
	for _, field := range []string{"username", "password", "url", "request_timeout", "ca_cert", "verify_credentials"} {
		if !strings.Contains(configHelp, field) {
			t.Errorf("path-help %s/config does not mention %s", mountPath, field)
		}
	}
	if !strings.Contains(configHelp, "write-only") {
		t.Errorf("path-help %s/config does not say the password is write-only", mountPath)
	}

	tokenHelp := v.mustCLI(t, "path-help", mountPath+"/token")
	if !strings.Contains(tokenHelp, "24 hours") {
		t.Errorf("path-help %s/token does not state the token lifetime:\n%s", mountPath, tokenHelp)
	}
	if !strings.Contains(tokenHelp, "revok") {
		t.Errorf("path-help %s/token does not explain revocation:\n%s", mountPath, tokenHelp)
	}
}
