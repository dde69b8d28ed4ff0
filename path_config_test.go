package noventiq

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

func TestConfigCreateAndRead(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)

	tb.writeConfig(t, map[string]interface{}{
		"username":        testUsername,
		"password":        testPassword,
		"url":             api.URL + "/",
		"request_timeout": "15s",
	})
	if got := fake.LoginRequests(); got != 1 {
		t.Errorf("logins during a verified write = %d, want 1", got)
	}

	resp, err := tb.request(t, logical.ReadOperation, "config", nil)
	if err != nil {
		t.Fatalf("config read: %v", err)
	}
	want := map[string]interface{}{
		"username":        testUsername,
		"url":             api.URL,
		"request_timeout": int64(15),
		"ca_cert":         "",
		"reuse_token":     false,
		"reuse_min_ttl":   int64(3600),
	}
	for key, value := range want {
		if resp.Data[key] != value {
			t.Errorf("config read %s = %#v, want %#v", key, resp.Data[key], value)
		}
	}
	if len(resp.Data) != len(want) {
		t.Errorf("config read returned fields %v, want exactly %v", resp.Data, want)
	}
	if _, ok := resp.Data["password"]; ok {
		t.Error("config read returned the password field")
	}
	tb.assertLogsClean(t, testPassword)
}

func TestConfigDefaults(t *testing.T) {
	tb := newTestBackend(t)
	tb.writeConfig(t, map[string]interface{}{
		"username":           testUsername,
		"password":           testPassword,
		"verify_credentials": false,
	})

	cfg := tb.storedConfig(t)
	if cfg.URL != ProductionURL {
		t.Errorf("default url = %q, want %q", cfg.URL, ProductionURL)
	}
	if cfg.RequestTimeout != defaultRequestTimeout {
		t.Errorf("default request_timeout = %s, want %s", cfg.RequestTimeout, defaultRequestTimeout)
	}
}

func TestConfigReadBeforeWrite(t *testing.T) {
	tb := newTestBackend(t)
	resp, err := tb.request(t, logical.ReadOperation, "config", nil)
	if err != nil {
		t.Fatalf("config read: %v", err)
	}
	if resp != nil {
		t.Errorf("config read without config = %#v, want nil", resp)
	}
}

func TestConfigWriteRejectsBadInput(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tlsAPI := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsAPI.Close)

	cases := []struct {
		name      string
		data      map[string]interface{}
		wantField string
	}{
		{"missing username", map[string]interface{}{"password": testPassword}, "username"},
		{"missing password", map[string]interface{}{"username": testUsername}, "password"},
		{"empty username", map[string]interface{}{"username": "", "password": testPassword}, "username"},
		{"empty password", map[string]interface{}{"username": testUsername, "password": ""}, "password"},
		{"unknown field", map[string]interface{}{"username": testUsername, "password": testPassword,
			"passwrd": "typo"}, "passwrd"},
		{"plain http to a remote host", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "http://api.ecommerce.noventiq.com"}, "https"},
		{"unsupported scheme", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "ftp://example.com"}, "url"},
		{"url without host", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://"}, "url"},
		{"url that does not parse", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://exa mple.com/%zz"}, "url"},
		{"url with user info", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://user:secret@example.com"}, "user info"},
		{"url with query", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://example.com/?a=b"}, "query"},
		{"zero timeout", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL, "request_timeout": 0}, "request_timeout"},
		{"negative timeout", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL, "request_timeout": "-5s"}, "request_timeout"},
		{"timeout over the maximum", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL, "request_timeout": "1h"}, "request_timeout"},
		{"timeout that does not parse", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL, "request_timeout": "soon"}, "request_timeout"},
		{"ca_cert that is not PEM", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL, "ca_cert": "not a certificate"}, "ca_cert"},
		{"port zero", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://example.com:0"}, "port"},
		{"port out of range", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": "https://example.com:99999"}, "port"},
		{"url ending in /v1", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL + "/v1/"}, "without /v1"},
		{"url of the login endpoint", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL + "/v1/login_check"}, "without /v1"},
		{"ca_cert with a cut-off block", map[string]interface{}{"username": testUsername,
			"password": testPassword, "url": api.URL,
			"ca_cert": certificatePEM(tlsAPI) + "-----BEGIN CERTIFICATE-----\nMIIB"}, "ca_cert"},
		{"username too long", map[string]interface{}{"username": strings.Repeat("u", maxCredentialBytes+1),
			"password": testPassword, "url": api.URL}, "username"},
		{"password too long", map[string]interface{}{"username": testUsername,
			"password": strings.Repeat("p", maxCredentialBytes+1), "url": api.URL}, "password"},
		{"password as an object", map[string]interface{}{"username": testUsername,
			"password": map[string]interface{}{"secret": testPassword}, "url": api.URL}, "password"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBackend(t)
			resp, err := tb.request(t, logical.CreateOperation, "config", tc.data)
			if err != nil {
				t.Fatalf("err = %v, want an error response", err)
			}
			if resp == nil || !resp.IsError() {
				t.Fatalf("resp = %#v, want an error response", resp)
			}
			status, _ := logical.RespondErrorCommon(&logical.Request{}, resp, nil)
			if status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", status)
			}
			message := resp.Error().Error()
			if !strings.Contains(message, tc.wantField) {
				t.Errorf("error %q does not name %q", message, tc.wantField)
			}
			if strings.Contains(message, testPassword) {
				t.Errorf("error %q contains the password", message)
			}
			if cfg := tb.storedConfig(t); cfg != nil {
				t.Errorf("a rejected write stored a config: %+v", cfg)
			}
		})
	}
}

func TestConfigPartialUpdate(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))

	tb.writeConfig(t, map[string]interface{}{"request_timeout": 42})
	cfg := tb.storedConfig(t)
	if cfg.RequestTimeout != 42*time.Second {
		t.Errorf("request_timeout = %s, want 42s", cfg.RequestTimeout)
	}
	if cfg.Username != testUsername || cfg.Password != testPassword || cfg.URL != api.URL {
		t.Errorf("an update of request_timeout changed other fields: %+v", cfg)
	}

	fake.SetCredentials(testUsername, "rotated")
	tb.writeConfig(t, map[string]interface{}{"password": "rotated"})
	cfg = tb.storedConfig(t)
	if cfg.Password != "rotated" {
		t.Error("password update not stored")
	}
	if cfg.Username != testUsername || cfg.RequestTimeout != 42*time.Second {
		t.Errorf("a password update changed other fields: %+v", cfg)
	}
	tb.assertLogsClean(t, testPassword, "rotated")
}

func TestConfigRejectedCredentialsKeepOldConfig(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	before := *tb.storedConfig(t)

	resp, err := tb.request(t, logical.UpdateOperation, "config", map[string]interface{}{
		"username":        "someone-else",
		"password":        "wrong-password",
		"request_timeout": 30,
	})
	if err != nil {
		t.Fatalf("config write: %v", err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("config write with rejected credentials succeeded: %#v", resp)
	}
	message := resp.Error().Error()
	for _, want := range []string{"1006", "nothing was stored", "rejected this username and password"} {
		if !strings.Contains(message, want) {
			t.Errorf("error %q does not contain %q", message, want)
		}
	}
	// Storing credentials the API just rejected would only fail every
	// token read, so the error must not suggest skipping the check.
	if strings.Contains(message, "verify_credentials") {
		t.Errorf("error %q suggests skipping the check for rejected credentials", message)
	}
	if strings.Contains(message, "wrong-password") {
		t.Errorf("error %q contains the rejected password", message)
	}

	after := tb.storedConfig(t)
	if *after != before {
		t.Errorf("stored config changed after a rejected write:\nbefore %+v\nafter  %+v", before, *after)
	}
	if got := fake.LoginRequests(); got != 2 {
		t.Errorf("logins = %d, want 2 (one check per write)", got)
	}
	tb.assertLogsClean(t, testPassword, "wrong-password")
}

func TestConfigWriteWithoutVerification(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)

	resp := tb.writeConfig(t, map[string]interface{}{
		"username":           testUsername,
		"password":           "not-checked",
		"url":                api.URL,
		"verify_credentials": false,
	})
	if got := fake.Requests(); got != 0 {
		t.Errorf("requests to the API = %d, want 0", got)
	}
	if resp == nil || len(resp.Warnings) != 1 {
		t.Fatalf("response = %#v, want one warning about the skipped check", resp)
	}
	if cfg := tb.storedConfig(t); cfg == nil || cfg.Password != "not-checked" {
		t.Errorf("stored config = %+v, want the unchecked password stored", cfg)
	}
}

func TestConfigCheckAgainstUnreachableAPI(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	url := api.URL
	api.Close()

	tb := newTestBackend(t)
	data := configData(url)
	data["request_timeout"] = 2
	resp, err := tb.request(t, logical.CreateOperation, "config", data)
	if err != nil {
		t.Fatalf("config write: %v", err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("config write against a closed port succeeded: %#v", resp)
	}
	host := strings.TrimPrefix(url, "http://")
	message := resp.Error().Error()
	if !strings.Contains(message, host) {
		t.Errorf("error %q does not name the host %s", message, host)
	}
	if !strings.Contains(message, "verify_credentials=false") {
		t.Errorf("error %q does not say how to store the settings while the API is unreachable", message)
	}
	if cfg := tb.storedConfig(t); cfg != nil {
		t.Errorf("a failed check stored a config: %+v", cfg)
	}
}

func TestConfigDelete(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	if _, err := tb.request(t, logical.ReadOperation, "token", nil); err != nil {
		t.Fatalf("token read: %v", err)
	}

	if _, err := tb.request(t, logical.DeleteOperation, "config", nil); err != nil {
		t.Fatalf("config delete: %v", err)
	}
	if cfg := tb.storedConfig(t); cfg != nil {
		t.Errorf("config still stored after delete: %+v", cfg)
	}

	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	if err != nil {
		t.Fatalf("token read after delete: %v", err)
	}
	if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "not configured") {
		t.Errorf("token read after delete = %#v, want a not configured error", resp)
	}
}

func TestConfigPasswordsRoundTripExactly(t *testing.T) {
	passwords := []string{
		`quote"inside`,
		`back\slash`,
		"new\nline",
		"non-ASCII: пароль 密码 🔑",
		"@leading-at",
		`{"json":"looking"}`,
		"  surrounding spaces  ",
	}
	for _, password := range passwords {
		t.Run(password, func(t *testing.T) {
			fake, api := newStandin(t, standin.Options{Username: "user\t\"ü\"", Password: password})
			tb := newTestBackend(t)

			tb.writeConfig(t, map[string]interface{}{
				"username": "user\t\"ü\"",
				"password": password,
				"url":      api.URL,
			})
			resp, err := tb.request(t, logical.ReadOperation, "token", nil)
			if err != nil {
				t.Fatalf("token read: %v", err)
			}
			if resp.IsError() {
				t.Fatalf("token read: %v", resp.Error())
			}
			if got := fake.TokensIssued(); got != 2 {
				t.Errorf("tokens issued = %d, want 2 (check and read)", got)
			}
			tb.assertLogsClean(t, password)
		})
	}
}

func TestValidateCACertAcceptsBundleComments(t *testing.T) {
	api := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(api.Close)
	bundle := "# Private CA, issued 2026\n" + certificatePEM(api) + "\n# end of bundle\n"
	if err := validateCACert(bundle); err != nil {
		t.Errorf("validateCACert rejected a bundle with comments: %v", err)
	}
}

func TestNotFoundErrorNamesRequestedPath(t *testing.T) {
	api := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(api.Close)

	_, err := newTestClient(t, api.URL+"/gateway", 5*time.Second).login(t.Context(), "u", "p")
	if err == nil {
		t.Fatal("login against a 404 succeeded")
	}
	if !strings.Contains(err.Error(), "/gateway/v1/login_check") {
		t.Errorf("error %q does not name the path the login was sent to", err)
	}
}
