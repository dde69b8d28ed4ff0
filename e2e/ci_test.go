//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// The example files under test, relative to this package's directory.
const (
	ciPolicyFile     = "../examples/ci/noventiq-ci-policy.hcl"
	fetchTokenScript = "../examples/ci/fetch-token.sh"
)

const (
	ciPolicyName = "noventiq-ci"
	ciRoleName   = "noventiq-ci"
)

// appRoleCredentials are the role ID and a secret ID of one AppRole role.
type appRoleCredentials struct {
	RoleID   string
	SecretID string
}

// createAppRole enables the AppRole auth method if needed, writes the
// example CI policy as policyName, and creates role bound to that policy
// with the given extra role parameters. It returns the role's role ID and
// a new secret ID.
func (v *vaultServer) createAppRole(t testing.TB, role, policyName string, params ...string) appRoleCredentials {
	t.Helper()
	var auths map[string]interface{}
	v.mustCLIJSON(t, &auths, "auth", "list")
	if _, ok := auths["approle/"]; !ok {
		v.mustCLI(t, "auth", "enable", "approle")
	}

	v.mustCLI(t, "policy", "write", policyName, ciPolicyFile)

	args := append([]string{"write", "auth/approle/role/" + role, "token_policies=" + policyName}, params...)
	v.mustCLI(t, args...)

	return appRoleCredentials{
		RoleID:   strings.TrimSpace(v.mustCLI(t, "read", "-field=role_id", "auth/approle/role/"+role+"/role-id")),
		SecretID: strings.TrimSpace(v.mustCLI(t, "write", "-f", "-field=secret_id", "auth/approle/role/"+role+"/secret-id")),
	}
}

// appRoleLogin logs in with creds and returns the Vault token.
func (v *vaultServer) appRoleLogin(t testing.TB, creds appRoleCredentials) string {
	t.Helper()
	client := newAPIClient(t, v.Addr, "")
	secret, err := client.Logical().Write("auth/approle/login", map[string]interface{}{
		"role_id":   creds.RoleID,
		"secret_id": creds.SecretID,
	})
	if err != nil {
		t.Fatalf("AppRole login: %v", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		t.Fatalf("AppRole login returned no token: %+v", secret)
	}
	return secret.Auth.ClientToken
}

// whoamiResult is the stand-in's response to GET /v1/whoami.
type whoamiResult struct {
	Status int
	Body   string
}

// callWhoami sends token as a bearer credential to the stand-in's
// authenticated endpoint, the way a consumer of the token calls the API.
func callWhoami(baseURL, token string) (whoamiResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/v1/whoami", nil)
	if err != nil {
		return whoamiResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return whoamiResult{}, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return whoamiResult{}, err
	}
	return whoamiResult{Status: resp.StatusCode, Body: string(body)}, nil
}

// mustAcceptToken fails the test unless the stand-in accepts token now.
func mustAcceptToken(t testing.TB, baseURL, token string) {
	t.Helper()
	res, err := callWhoami(baseURL, token)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if res.Status != http.StatusOK {
		t.Errorf("whoami with token %q: status %d, body %s; want 200", token, res.Status, res.Body)
	}
}

// leaseCount returns how many leases exist under the token path.
func (v *vaultServer) leaseCount(t testing.TB) int {
	t.Helper()
	leases, err := v.Client.Logical().List("sys/leases/lookup/" + mountPath + "/token/")
	if err != nil {
		t.Fatalf("listing leases: %v", err)
	}
	if leases == nil {
		return 0
	}
	keys, _ := leases.Data["keys"].([]interface{})
	return len(keys)
}

// waitNoLeases waits up to 10 seconds for the leases under the token path
// to be gone and returns how many are left.
func (v *vaultServer) waitNoLeases(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := v.leaseCount(t)
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// credentialEnv returns the environment variables that pass creds to the
// example CI script.
func credentialEnv(creds appRoleCredentials) []string {
	return []string{"VAULT_ROLE_ID=" + creds.RoleID, "VAULT_SECRET_ID=" + creds.SecretID}
}

// runFetchTokenScript runs the example CI script with env added to a clean
// environment that has the vault binary on PATH.
func runFetchTokenScript(t testing.TB, env ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, fetchTokenScript)
	cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(vaultBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	return cliResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

func TestCIScriptCallsAPI(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)
	creds := v.createAppRole(t, ciRoleName, ciPolicyName, "token_ttl=10m", "token_max_ttl=30m")

	credentialDir := t.TempDir()
	roleIDFile := filepath.Join(credentialDir, "role-id")
	secretIDFile := filepath.Join(credentialDir, "secret-id")
	// Trailing newlines, as an editor or `echo` leaves them, must not matter.
	if err := os.WriteFile(roleIDFile, []byte(creds.RoleID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretIDFile, []byte(creds.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	baseEnv := []string{
		"VAULT_ADDR=" + v.Addr,
		"NOVENTIQ_REQUEST_URL=" + api.URL + "/v1/whoami",
	}
	tests := []struct {
		name string
		env  []string
	}{
		{
			name: "credentials in environment",
			env:  credentialEnv(creds),
		},
		{
			name: "credentials in files",
			env:  []string{"VAULT_ROLE_ID_FILE=" + roleIDFile, "VAULT_SECRET_ID_FILE=" + secretIDFile},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loginsBefore := fake.TokensIssued()
			res := runFetchTokenScript(t, append(baseEnv, tt.env...)...)
			if res.Err != nil {
				t.Fatalf("fetch-token.sh: %v\nstdout: %s\nstderr: %s", res.Err, res.Stdout, res.Stderr)
			}

			// The stand-in returns 200 with the username only for a token
			// it accepts, and curl --fail-with-body fails the script on any
			// other status.
			var whoamiBody struct {
				Username string `json:"username"`
			}
			if err := json.Unmarshal([]byte(res.Stdout), &whoamiBody); err != nil {
				t.Fatalf("fetch-token.sh output is not the whoami response: %v\n%s", err, res.Stdout)
			}
			if whoamiBody.Username != standinUsername {
				t.Errorf("whoami username = %q, want %q", whoamiBody.Username, standinUsername)
			}
			if got := fake.TokensIssued() - loginsBefore; got != 1 {
				t.Errorf("logins at the stand-in during the script = %d, want 1", got)
			}
			if strings.Contains(res.Stdout+res.Stderr, creds.SecretID) {
				t.Errorf("script output contains the secret ID")
			}
			if res.Stderr != "" {
				t.Errorf("script wrote to stderr: %s", res.Stderr)
			}

			// The script revokes its Vault token at exit, which revokes the
			// lease on the API token too.
			if n := v.waitNoLeases(t); n != 0 {
				t.Errorf("%d token leases left after the script revoked its Vault token, want 0", n)
			}
		})
	}

	t.Run("missing secret ID", func(t *testing.T) {
		res := runFetchTokenScript(t, append(baseEnv, "VAULT_ROLE_ID="+creds.RoleID)...)
		if res.Err == nil {
			t.Fatalf("fetch-token.sh without a secret ID succeeded:\n%s", res.Stdout)
		}
		if !strings.Contains(res.Stderr, "VAULT_SECRET_ID") {
			t.Errorf("stderr = %q, want it to name VAULT_SECRET_ID", res.Stderr)
		}
	})

	t.Run("rejected token fails the script", func(t *testing.T) {
		// With a 1 ns token lifetime the stand-in rejects every token as
		// expired. curl must turn that 401 into a failure of the script.
		fake.SetTokenLifetime(time.Nanosecond)
		defer fake.SetTokenLifetime(0)

		res := runFetchTokenScript(t, append(baseEnv, credentialEnv(creds)...)...)
		if res.Err == nil {
			t.Fatalf("fetch-token.sh succeeded with a token the API rejects:\n%s", res.Stdout)
		}
		if !strings.Contains(res.Stdout, "1009") {
			t.Errorf("stdout = %q, want the API's 1009 error body", res.Stdout)
		}
	})
}

func TestCIPolicyDeniesEverythingElse(t *testing.T) {
	_, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)
	creds := v.createAppRole(t, ciRoleName, ciPolicyName, "token_ttl=10m", "token_max_ttl=30m")
	ciToken := v.appRoleLogin(t, creds)
	ci := newAPIClient(t, v.Addr, ciToken)

	capabilities, err := ci.Sys().CapabilitiesSelf(mountPath + "/token")
	if err != nil {
		t.Fatalf("capabilities-self on %s/token: %v", mountPath, err)
	}
	if strings.Join(capabilities, ",") != "read" {
		t.Errorf("capabilities on %s/token = %v, want [read]", mountPath, capabilities)
	}

	denied := []struct {
		name string
		call func() error
	}{
		{"read config", func() error {
			_, err := ci.Logical().Read(mountPath + "/config")
			return err
		}},
		{"write config", func() error {
			_, err := ci.Logical().Write(mountPath+"/config", map[string]interface{}{"username": "intruder"})
			return err
		}},
		{"delete config", func() error {
			_, err := ci.Logical().Delete(mountPath + "/config")
			return err
		}},
		{"write token", func() error {
			_, err := ci.Logical().Write(mountPath+"/token", map[string]interface{}{})
			return err
		}},
		{"read sys/mounts", func() error {
			_, err := ci.Logical().Read("sys/mounts")
			return err
		}},
		{"tune the mount", func() error {
			_, err := ci.Logical().Write("sys/mounts/"+mountPath+"/tune", map[string]interface{}{"max_lease_ttl": "8760h"})
			return err
		}},
		{"list sys/policies/acl", func() error {
			_, err := ci.Logical().List("sys/policies/acl")
			return err
		}},
		{"write own policy", func() error {
			_, err := ci.Logical().Write("sys/policies/acl/"+ciPolicyName, map[string]interface{}{
				"policy": `path "*" { capabilities = ["sudo", "read", "update", "create", "delete", "list"] }`,
			})
			return err
		}},
		{"read own role", func() error {
			_, err := ci.Logical().Read("auth/approle/role/" + ciRoleName)
			return err
		}},
		{"create a secret ID", func() error {
			_, err := ci.Logical().Write("auth/approle/role/"+ciRoleName+"/secret-id", nil)
			return err
		}},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if statusCode(err) != http.StatusForbidden {
				t.Errorf("err = %v, want 403", err)
			}
			if err != nil && !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("err = %v, want permission denied", err)
			}
		})
	}

	// The denied write changed nothing.
	var configRead struct {
		Data map[string]interface{} `json:"data"`
	}
	v.mustCLIJSON(t, &configRead, "read", mountPath+"/config")
	if got := configRead.Data["username"]; got != standinUsername {
		t.Errorf("config username after the denied write = %v, want %q", got, standinUsername)
	}

	// The CLI reports the same denial in words.
	res := v.cli(t, ciToken, "", "read", mountPath+"/config")
	if res.Err == nil || !strings.Contains(res.Stderr, "permission denied") {
		t.Errorf("vault read %s/config as the CI identity: err = %v, stderr = %q, want permission denied",
			mountPath, res.Err, res.Stderr)
	}
}

func TestWrappedTokenUnwrapsOnce(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)
	creds := v.createAppRole(t, ciRoleName, ciPolicyName, "token_ttl=10m", "token_max_ttl=30m")
	ciToken := v.appRoleLogin(t, creds)

	// The job that holds the AppRole identity wraps the response.
	loginsBefore := fake.TokensIssued()
	res := v.cli(t, ciToken, "", "read", "-wrap-ttl=60s", "-field=wrapping_token", mountPath+"/token")
	if res.Err != nil {
		t.Fatalf("wrapped read: %v\n%s", res.Err, res.Stderr)
	}
	wrappingToken := strings.TrimSpace(res.Stdout)
	if wrappingToken == "" {
		t.Fatalf("wrapped read printed no wrapping token")
	}
	if got := fake.TokensIssued() - loginsBefore; got != 1 {
		t.Errorf("logins during the wrapped read = %d, want 1", got)
	}

	lookup, err := v.Client.Logical().Write("sys/wrapping/lookup", map[string]interface{}{"token": wrappingToken})
	if err != nil {
		t.Fatalf("wrapping lookup: %v", err)
	}
	ttl, _ := lookup.Data["creation_ttl"].(json.Number).Int64()
	if ttl != 60 {
		t.Errorf("wrapping token creation_ttl = %d, want 60", ttl)
	}
	if path, _ := lookup.Data["creation_path"].(string); path != mountPath+"/token" {
		t.Errorf("wrapping token creation_path = %q, want %s/token", path, mountPath)
	}

	// The receiving job needs no Vault identity: the wrapping token is its
	// only credential.
	res = v.cli(t, wrappingToken, "", "unwrap", "-field=token")
	if res.Err != nil {
		t.Fatalf("unwrap: %v\n%s", res.Err, res.Stderr)
	}
	apiToken := strings.TrimSpace(res.Stdout)
	if apiToken == "" {
		t.Fatalf("unwrap printed no token")
	}
	mustAcceptToken(t, api.URL, apiToken)

	res = v.cli(t, wrappingToken, "", "unwrap", "-field=token")
	if res.Err == nil {
		t.Errorf("second unwrap succeeded, want a wrapping token that works once")
	}
	if got := fake.TokensIssued() - loginsBefore; got != 1 {
		t.Errorf("logins after the unwrap = %d, want still 1", got)
	}
}

func TestLeaseRevokeKeepsTokenUpstream(t *testing.T) {
	_, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)
	creds := v.createAppRole(t, ciRoleName, ciPolicyName, "token_ttl=10m", "token_max_ttl=30m")
	ci := newAPIClient(t, v.Addr, v.appRoleLogin(t, creds))

	secret, err := readSecret(t, ci, mountPath+"/token")
	if err != nil {
		t.Fatalf("token read as the CI identity: %v", err)
	}
	apiToken, _ := secret.Data["token"].(string)
	mustAcceptToken(t, api.URL, apiToken)

	v.mustCLI(t, "lease", "revoke", secret.LeaseID)
	if _, err := v.Client.Sys().Lookup(secret.LeaseID); err == nil {
		t.Errorf("lease %s still exists after revoke", secret.LeaseID)
	}

	// The API cannot revoke a token, so it still accepts this one.
	mustAcceptToken(t, api.URL, apiToken)
}
