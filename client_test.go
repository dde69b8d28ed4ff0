package noventiq

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func newTestClient(t testing.TB, url string, timeout time.Duration) *client {
	t.Helper()
	c, err := newClient(url, timeout, "", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientSendsContractRequest(t *testing.T) {
	passwords := []string{testPassword, `"`, `\`, "line\nbreak", "ünïcödé ✓", "@file-looking", "</script>&<"}
	for _, password := range passwords {
		t.Run(password, func(t *testing.T) {
			var got struct {
				method, path, contentType string
				body                      []byte
			}
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.method = r.Method
				got.path = r.URL.Path
				got.contentType = r.Header.Get("Content-Type")
				got.body, _ = io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"token":"tok-1","refresh_token":"ref-1"}`))
			}))
			t.Cleanup(api.Close)

			result, err := newTestClient(t, api.URL, 5*time.Second).login(context.Background(), testUsername, password)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if result.Token != "tok-1" {
				t.Errorf("token = %q, want tok-1", result.Token)
			}
			if got.method != http.MethodPost {
				t.Errorf("method = %s, want POST", got.method)
			}
			if got.path != "/v1/login_check" {
				t.Errorf("path = %s, want /v1/login_check", got.path)
			}
			if got.contentType != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got.contentType)
			}

			var sent map[string]interface{}
			if err := json.Unmarshal(got.body, &sent); err != nil {
				t.Fatalf("body %q is not JSON: %v", got.body, err)
			}
			if len(sent) != 2 || sent["username"] != testUsername || sent["password"] != password {
				t.Errorf("body decodes to %#v, want exactly username and password", sent)
			}
		})
	}
}

func TestClientKeepsBasePath(t *testing.T) {
	var path atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		_, _ = w.Write([]byte(`{"token":"t"}`))
	}))
	t.Cleanup(api.Close)

	c := newTestClient(t, api.URL+"/gateway/", 5*time.Second)
	if _, err := c.login(context.Background(), "u", "p"); err != nil {
		t.Fatalf("login: %v", err)
	}
	if got := path.Load(); got != "/gateway/v1/login_check" {
		t.Errorf("path = %v, want /gateway/v1/login_check", got)
	}
}

func TestClientRetriesServerErrors(t *testing.T) {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"token":"after-retries"}`))
	}))
	t.Cleanup(api.Close)

	result, err := newTestClient(t, api.URL, 10*time.Second).login(context.Background(), "u", "p")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if result.Token != "after-retries" {
		t.Errorf("token = %q, want after-retries", result.Token)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
	if result.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", result.Attempts)
	}
}

func TestClientNeverRetriesClientErrors(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 429} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var calls atomic.Int32
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(status)
				_, _ = w.Write([]byte(`{"errors":[{"error":1006,"message":"Bad credentials."}]}`))
			}))
			t.Cleanup(api.Close)

			_, err := newTestClient(t, api.URL, 5*time.Second).login(context.Background(), "u", "p")
			if err == nil {
				t.Fatal("login succeeded")
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("requests = %d, want 1", got)
			}
		})
	}
}

func TestClientRetriesStayWithinTimeout(t *testing.T) {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(api.Close)

	start := time.Now()
	_, err := newTestClient(t, api.URL, 1*time.Second).login(context.Background(), "u", "p")
	took := time.Since(start)
	if err == nil {
		t.Fatal("login succeeded")
	}
	if took > 2*time.Second {
		t.Errorf("login took %s with a 1s request_timeout", took)
	}
	if got := calls.Load(); got > maxRetries+1 {
		t.Errorf("requests = %d, want at most %d", got, maxRetries+1)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var targetCalls atomic.Int32
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				targetCalls.Add(1)
				_, _ = w.Write([]byte(`{"token":"stolen"}`))
			}))
			t.Cleanup(target.Close)
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/v1/login_check?x=secret-query", status)
			}))
			t.Cleanup(api.Close)

			_, err := newTestClient(t, api.URL, 5*time.Second).login(context.Background(), "u", testPassword)
			if err == nil {
				t.Fatal("login through a redirect succeeded")
			}
			if got := targetCalls.Load(); got != 0 {
				t.Errorf("redirect target received %d requests, want 0", got)
			}
			if !strings.Contains(err.Error(), "redirect") {
				t.Errorf("error %q does not mention the redirect", err)
			}
			if strings.Contains(err.Error(), "secret-query") {
				t.Errorf("error %q contains the redirect's query", err)
			}
		})
	}
}

func TestParseTokenResponse(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		want    string
		wantErr string
	}{
		{"documented response", `{"token":"abc","refresh_token":"def"}`, "abc", ""},
		{"token only", `{"token":"abc"}`, "abc", ""},
		{"empty object", `{}`, "", "no token"},
		{"empty token", `{"token":""}`, "", "empty"},
		{"null token", `{"token":null}`, "", "no token"},
		{"number token", `{"token":42}`, "", "number"},
		{"object token", `{"token":{"a":1}}`, "", "object"},
		{"truncated", `{"token":"ab`, "", "not valid JSON"},
		{"html", `<html><body>Welcome</body></html>`, "", "not valid JSON"},
		{"empty body", ``, "", "not valid JSON"},
		{"too large", `{"token":"` + strings.Repeat("a", maxResponseBytes) + `"}`, "", "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTokenResponse([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v, want token %q", err, tc.want)
				}
				if got != tc.want {
					t.Errorf("token = %q, want %q", got, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseDate(t *testing.T) {
	want := time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)
	cases := []struct {
		value string
		want  time.Time
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", want},  // RFC 1123
		{"Sunday, 06-Nov-94 08:49:37 GMT", want}, // RFC 850
		{"Sun Nov  6 08:49:37 1994", want},       // ANSI C asctime
		{"", time.Time{}},
		{"yesterday", time.Time{}},
		{"2024-01-01T00:00:00Z", time.Time{}},
	}
	for _, tc := range cases {
		if got := parseDate(tc.value); !got.Equal(tc.want) {
			t.Errorf("parseDate(%q) = %s, want %s", tc.value, got, tc.want)
		}
	}
}
