package noventiq

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// readToken reads the token path and fails the test on an error.
func (tb *testBackend) readToken(t testing.TB) *logical.Response {
	t.Helper()
	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	if err != nil {
		t.Fatalf("token read: %v", err)
	}
	if resp.IsError() {
		t.Fatalf("token read: %v", resp.Error())
	}
	return resp
}

func TestTokenReadReturnsLease(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))

	before := time.Now()
	resp := tb.readToken(t)

	token, _ := resp.Data["token"].(string)
	if !fake.TokenValid(token) {
		t.Errorf("token %q is not one the API issued", token)
	}
	if len(resp.Data) != 3 {
		t.Errorf("response fields = %v, want token, issued_at and expires_at only", resp.Data)
	}
	for _, key := range []string{"issued_at", "expires_at"} {
		value, _ := resp.Data[key].(string)
		if _, err := time.Parse(time.RFC3339, value); err != nil {
			t.Errorf("%s = %q, not RFC 3339: %v", key, value, err)
		}
	}

	secret := resp.Secret
	if secret == nil {
		t.Fatal("response has no lease")
	}
	if secret.Renewable {
		t.Error("lease is renewable")
	}
	// The TTL is whole seconds, a margin of one second below the token's
	// remaining life.
	if secret.TTL > TokenLifetime-leaseMargin {
		t.Errorf("lease TTL = %s, want at most %s", secret.TTL, TokenLifetime-leaseMargin)
	}
	if secret.TTL < TokenLifetime-time.Since(before)-leaseMargin-2*time.Second {
		t.Errorf("lease TTL = %s, want just under %s", secret.TTL, TokenLifetime-leaseMargin)
	}
	if secret.TTL%time.Second != 0 {
		t.Errorf("lease TTL = %s, want whole seconds", secret.TTL)
	}
	if secret.MaxTTL != secret.TTL {
		t.Errorf("lease max TTL = %s, want the TTL %s", secret.MaxTTL, secret.TTL)
	}

	internal, err := json.Marshal(secret.InternalData)
	if err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{token, testPassword, testUsername, "refresh_token"} {
		if strings.Contains(string(internal), forbidden) {
			t.Errorf("lease internal data %s contains %q", internal, forbidden)
		}
	}
	tb.assertLogsClean(t, testPassword, token)
}

func TestTokenReadLeaseFollowsDateHeader(t *testing.T) {
	cases := []struct {
		name      string
		issuedAgo time.Duration
		wantTTL   time.Duration
	}{
		{"issued now", 0, 24 * time.Hour},
		{"issued 3h ago", 3 * time.Hour, 21 * time.Hour},
		{"issued 23h59m ago", 23*time.Hour + 59*time.Minute, time.Minute},
		{"API clock 2h ahead", -2 * time.Hour, 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, api := newStandin(t, standin.Options{IssuedAgo: tc.issuedAgo})
			tb := newTestBackend(t)
			tb.writeConfig(t, configData(api.URL))

			resp := tb.readToken(t)
			// The Date header has whole seconds, so the lease may be up to
			// a second shorter than the exact figure, plus the test's own time.
			if diff := tc.wantTTL - resp.Secret.TTL; diff < 0 || diff > 3*time.Second {
				t.Errorf("lease TTL = %s, want within 3s below %s", resp.Secret.TTL, tc.wantTTL)
			}
		})
	}
}

func TestTokenReadExpiredTokenFails(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	fake.SetIssuedAgo(25 * time.Hour)

	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	if resp != nil && resp.Secret != nil {
		t.Fatalf("an expired token got a lease: %#v", resp.Secret)
	}
	assertCodedError(t, err, http.StatusBadGateway, "already expired")
}

func TestTokenReadCappedByMountMaxTTL(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.system.MaxLeaseTTLVal = 20 * time.Second
	tb.writeConfig(t, configData(api.URL))

	resp := tb.readToken(t)
	if resp.Secret.TTL != 20*time.Second {
		t.Errorf("lease TTL = %s, want the mount's max of 20s", resp.Secret.TTL)
	}
}

func TestTokenReadNotConfigured(t *testing.T) {
	tb := newTestBackend(t)
	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	if err != nil {
		t.Fatalf("err = %v, want an error response", err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("resp = %#v, want an error response", resp)
	}
	message := resp.Error().Error()
	if !strings.Contains(message, "not configured") || !strings.Contains(message, "noventiq/config") {
		t.Errorf("error %q does not say the engine is not configured and where to fix it", message)
	}
}

// assertCodedError checks that err is a coded error with the given status
// whose message contains every wanted fragment.
func assertCodedError(t *testing.T, err error, status int, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	coded, ok := err.(logical.HTTPCodedError)
	if !ok {
		t.Fatalf("error %q (%T) has no HTTP status", err, err)
	}
	if coded.Code() != status {
		t.Errorf("status = %d, want %d (error %q)", coded.Code(), status, err)
	}
	for _, fragment := range fragments {
		if !strings.Contains(err.Error(), fragment) {
			t.Errorf("error %q does not contain %q", err, fragment)
		}
	}
}

func TestTokenReadUpstreamErrors(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		body       string
		wantStatus int
		want       []string
	}{
		{"bad credentials", 401, `{"errors":[{"error":1006,"message":"Bad credentials."}]}`,
			502, []string{"1006", "bad credentials", "config"}},
		{"invalid JSON", 400, `{"errors":[{"error":110,"message":"JSON is not valid."}]}`,
			502, []string{"110", "JSON is not valid"}},
		{"content type", 400, `{"errors":[{"error":111,"message":"Invalid data format (Content-type)."}]}`,
			502, []string{"111", "Content-Type"}},
		{"invalid authorization data", 400, `{"errors":[{"error":1005,"message":"Invalid authorization data."}]}`,
			502, []string{"1005", "invalid authorization data"}},
		{"unknown code", 400, `{"errors":[{"error":4242,"message":"Something new."}]}`,
			502, []string{"4242", "unknown error code", "Something new."}},
		{"wrong url", 404, ``, 502, []string{"404", "url"}},
		{"server error", 500, `<html>oops</html>`, 502, []string{"500", "try again later"}},
		{"unexpected status", 418, ``, 502, []string{"418"}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(api.Close)

			tb := newTestBackend(t)
			data := configData(api.URL)
			data["verify_credentials"] = false
			tb.writeConfig(t, data)

			resp, err := tb.request(t, logical.ReadOperation, "token", nil)
			if resp != nil {
				t.Errorf("failed read returned a response: %#v", resp)
			}
			assertCodedError(t, err, tc.wantStatus, tc.want...)
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q contains the password", err)
			}
			tb.assertLogsClean(t, testPassword)
		})
	}
}

func TestTokenReadTimeout(t *testing.T) {
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(api.Close)
	t.Cleanup(func() { close(release) })

	tb := newTestBackend(t)
	data := configData(api.URL)
	data["verify_credentials"] = false
	data["request_timeout"] = 1
	tb.writeConfig(t, data)

	start := time.Now()
	_, err := tb.request(t, logical.ReadOperation, "token", nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("read took %s, want about the 1s request_timeout", took)
	}
	assertCodedError(t, err, http.StatusGatewayTimeout, "timeout", strings.TrimPrefix(api.URL, "http://"))
}

func TestTokenRevokeSucceeds(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	resp := tb.readToken(t)

	revoke := &logical.Request{
		Operation: logical.RevokeOperation,
		Path:      "token",
		Storage:   tb.storage,
		Secret:    resp.Secret,
	}
	if _, err := tb.HandleRequest(t.Context(), revoke); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !strings.Contains(tb.logs.String(), "stays valid upstream") {
		t.Errorf("revoke did not log that the token stays valid upstream:\n%s", tb.logs.String())
	}
}
