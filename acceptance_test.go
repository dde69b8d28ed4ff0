package noventiq

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestAcceptanceVendorLogin logs in to the vendor's real API. It runs only
// when NOVENTIQ_ACC_USERNAME and NOVENTIQ_ACC_PASSWORD are set, and uses
// NOVENTIQ_ACC_URL (default: the vendor's test environment).
func TestAcceptanceVendorLogin(t *testing.T) {
	username := os.Getenv("NOVENTIQ_ACC_USERNAME")
	password := os.Getenv("NOVENTIQ_ACC_PASSWORD")
	if username == "" || password == "" {
		t.Skip("set NOVENTIQ_ACC_USERNAME and NOVENTIQ_ACC_PASSWORD to run against the vendor's API")
	}
	url := os.Getenv("NOVENTIQ_ACC_URL")
	if url == "" {
		url = TestURL
	}

	tb := newTestBackend(t)
	tb.writeConfig(t, map[string]interface{}{
		"username":        username,
		"password":        password,
		"url":             url,
		"request_timeout": 30,
	})

	resp := tb.readToken(t)
	if token, _ := resp.Data["token"].(string); token == "" {
		t.Fatal("the vendor returned no token")
	}
	if resp.Secret.TTL <= 0 || resp.Secret.TTL > TokenLifetime {
		t.Errorf("lease TTL = %s, want within (0, %s]", resp.Secret.TTL, TokenLifetime)
	}
	issuedAt, err := time.Parse(time.RFC3339, resp.Data["issued_at"].(string))
	if err != nil {
		t.Fatalf("issued_at: %v", err)
	}
	if skew := time.Since(issuedAt); skew < -5*time.Minute || skew > 5*time.Minute {
		t.Logf("the vendor's Date header is %s away from this machine's clock", skew)
	}
	tb.assertLogsClean(t, password)

	// Wrong credentials must come back as error 1006 and store nothing.
	rejected := newTestBackend(t)
	rejectedResp, err := rejected.request(t, logical.CreateOperation, "config", map[string]interface{}{
		"username": username,
		"password": password + "-wrong",
		"url":      url,
	})
	if err != nil {
		t.Fatalf("config write: %v", err)
	}
	if rejectedResp == nil || !rejectedResp.IsError() {
		t.Fatal("the vendor accepted a wrong password")
	}
	if message := rejectedResp.Error().Error(); !strings.Contains(message, "1006") {
		t.Errorf("error for a wrong password %q does not name error 1006", message)
	}
	if cfg := rejected.storedConfig(t); cfg != nil {
		t.Error("a rejected write stored a config")
	}
}
