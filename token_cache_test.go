package noventiq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// offsetClock is the real clock moved forward by an adjustable offset, so
// tokens from a real login age without waiting.
type offsetClock struct {
	offset atomic.Int64
}

func (c *offsetClock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

func (c *offsetClock) Advance(d time.Duration) {
	c.offset.Add(int64(d))
}

// gatedAPI serves the stand-in behind a gate: the first login request
// waits until release is closed and then fails with 1006 when failFirst is
// set. Every later request goes straight to the stand-in.
type gatedAPI struct {
	fake      *standin.Server
	failFirst bool
	release   chan struct{}
	arrived   chan struct{}
	logins    atomic.Int64
}

func newGatedAPI(t *testing.T, failFirst bool) (*gatedAPI, *httptest.Server) {
	t.Helper()
	api := &gatedAPI{
		fake:      standin.New(standin.Options{Username: testUsername, Password: testPassword}),
		failFirst: failFirst,
		release:   make(chan struct{}),
		arrived:   make(chan struct{}),
	}
	srv := httptest.NewServer(api)
	// Close the gate's channel before the server, so a blocked handler
	// returns and srv.Close does not wait for it.
	t.Cleanup(srv.Close)
	t.Cleanup(api.open)
	return api, srv
}

// open releases the first login. It is safe to call more than once.
func (a *gatedAPI) open() {
	select {
	case <-a.release:
	default:
		close(a.release)
	}
}

func (a *gatedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/login_check" && a.logins.Add(1) == 1 {
		close(a.arrived)
		<-a.release
		if a.failFirst {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"error":1006,"message":"Bad credentials."}]}`)
			return
		}
	}
	a.fake.ServeHTTP(w, r)
}

// reuseConfigData is a config write with token reuse on and no login check,
// so the API receives only the logins of token reads.
func reuseConfigData(url string) map[string]interface{} {
	data := configData(url)
	data["reuse_token"] = true
	data["verify_credentials"] = false
	return data
}

// tokenOf returns the token of a read response.
func tokenOf(resp *logical.Response) string {
	token, _ := resp.Data["token"].(string)
	return token
}

// waitForFlightReaders waits until n reads have started or joined the
// session's login in progress.
func waitForFlightReaders(t *testing.T, tb *testBackend, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s := tb.cached.Load(); s != nil && s.tokens.flightReaders() == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d reads did not all wait on one login within 30s", n)
}

// readConcurrently starts n token reads at once and returns their
// responses and errors.
func readConcurrently(t *testing.T, tb *testBackend, n int) ([]*logical.Response, []error) {
	t.Helper()
	responses := make([]*logical.Response, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			responses[i], errs[i] = tb.request(t, logical.ReadOperation, "token", nil)
		}()
	}
	close(start)
	wg.Wait()
	return responses, errs
}

func TestTokenReuseOneLoginForConcurrentReads(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, reuseConfigData(api.URL))

	const readers = 1000
	responses, errs := readConcurrently(t, tb, readers)

	if got := fake.LoginRequests(); got != 1 {
		t.Errorf("logins at the API for %d concurrent reads = %d, want 1", readers, got)
	}
	shared := ""
	for i := range readers {
		if errs[i] != nil {
			t.Fatalf("read %d: %v", i, errs[i])
		}
		if responses[i].IsError() {
			t.Fatalf("read %d: %v", i, responses[i].Error())
		}
		token := tokenOf(responses[i])
		if shared == "" {
			shared = token
		}
		if token != shared {
			t.Fatalf("read %d got token %q, want the shared token %q", i, token, shared)
		}
		secret := responses[i].Secret
		if secret == nil {
			t.Fatalf("read %d has no lease", i)
		}
		if secret.TTL <= TokenLifetime-time.Minute || secret.TTL > TokenLifetime {
			t.Fatalf("read %d lease TTL = %s, want just under %s", i, secret.TTL, TokenLifetime)
		}
	}
	if !fake.TokenValid(shared) {
		t.Errorf("shared token %q is not one the API issued", shared)
	}
	tb.assertLogsClean(t, testPassword, shared)
}

func TestTokenReuseLeaseFollowsRemainingLife(t *testing.T) {
	// The first token was issued 22 hours ago, so it has 2 hours left.
	fake, api := newStandin(t, standin.Options{IssuedAgo: 22 * time.Hour})
	tb := newTestBackend(t)
	clock := &offsetClock{}
	tb.now = clock.Now
	data := reuseConfigData(api.URL)
	data["reuse_min_ttl"] = "1h"
	tb.writeConfig(t, data)

	first := tb.readToken(t)
	if ttl := first.Secret.TTL; ttl > 2*time.Hour || ttl < 2*time.Hour-time.Minute {
		t.Errorf("lease TTL of a token with 2h left = %s, want just under 2h", ttl)
	}

	// 30 minutes later the token has 90 minutes left: still above the
	// minimum, so the read shares it with a shorter lease.
	clock.Advance(30 * time.Minute)
	second := tb.readToken(t)
	if tokenOf(second) != tokenOf(first) {
		t.Errorf("read with 90m of life left got a new token, want the shared one")
	}
	if got := fake.LoginRequests(); got != 1 {
		t.Errorf("logins after two reads = %d, want 1", got)
	}
	if ttl := second.Secret.TTL; ttl > 90*time.Minute || ttl < 89*time.Minute {
		t.Errorf("lease TTL with 90m of life left = %s, want just under 90m", ttl)
	}
	for _, key := range []string{"issued_at", "expires_at"} {
		if second.Data[key] != first.Data[key] {
			t.Errorf("%s of the shared token changed from %v to %v", key, first.Data[key], second.Data[key])
		}
	}

	// Another hour leaves 30 minutes, below the 1h minimum. The API now
	// issues tokens dated at its current time, which the offset clock
	// measures as 90 minutes old.
	clock.Advance(time.Hour)
	fake.SetIssuedAgo(0)
	third := tb.readToken(t)
	if tokenOf(third) == tokenOf(first) {
		t.Errorf("read with 30m of life left got the old token, want a new one")
	}
	if got := fake.LoginRequests(); got != 2 {
		t.Errorf("logins after the minimum was reached = %d, want 2", got)
	}
	wantTTL := TokenLifetime - 90*time.Minute
	if ttl := third.Secret.TTL; ttl > wantTTL || ttl < wantTTL-time.Minute {
		t.Errorf("lease TTL of the new token = %s, want just under %s", ttl, wantTTL)
	}

	fourth := tb.readToken(t)
	if tokenOf(fourth) != tokenOf(third) {
		t.Errorf("read after a new login got another token, want the new shared one")
	}
	if got := fake.LoginRequests(); got != 2 {
		t.Errorf("logins after reading the new shared token = %d, want 2", got)
	}
}

func TestTokenReuseLeaseCappedByMaxTTL(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.system.MaxLeaseTTLVal = 30 * time.Minute
	tb.writeConfig(t, reuseConfigData(api.URL))

	for range 2 {
		resp := tb.readToken(t)
		if resp.Secret.TTL != 30*time.Minute {
			t.Errorf("lease TTL = %s, want the mount's max lease TTL of 30m", resp.Secret.TTL)
		}
	}
}

func TestTokenReadFreshWithoutReuse(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	before := fake.LoginRequests()

	first := tb.readToken(t)
	second := tb.readToken(t)

	if tokenOf(first) == tokenOf(second) {
		t.Errorf("two reads without reuse_token got the same token %q", tokenOf(first))
	}
	if got := fake.LoginRequests() - before; got != 2 {
		t.Errorf("logins for two reads without reuse_token = %d, want 2", got)
	}
}

func TestTokenReuseDroppedOnConfigChange(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, tb *testBackend, url string)
	}{
		{"write", func(t *testing.T, tb *testBackend, _ string) {
			tb.writeConfig(t, map[string]interface{}{"request_timeout": "20s", "verify_credentials": false})
		}},
		{"delete then write", func(t *testing.T, tb *testBackend, url string) {
			if _, err := tb.request(t, logical.DeleteOperation, "config", nil); err != nil {
				t.Fatalf("config delete: %v", err)
			}
			resp, err := tb.request(t, logical.ReadOperation, "token", nil)
			if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "not configured") {
				t.Errorf("token read after delete: resp = %v, err = %v, want a not configured error", resp, err)
			}
			tb.writeConfig(t, reuseConfigData(url))
		}},
		{"invalidate", func(t *testing.T, tb *testBackend, _ string) {
			tb.Invalidate(context.Background(), configStoragePath)
		}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake, api := newStandin(t, standin.Options{})
			tb := newTestBackend(t)
			tb.writeConfig(t, reuseConfigData(api.URL))

			before := tokenOf(tb.readToken(t))
			if again := tokenOf(tb.readToken(t)); again != before {
				t.Fatalf("second read got %q, want the shared token %q", again, before)
			}

			tc.change(t, tb, api.URL)

			after := tokenOf(tb.readToken(t))
			if after == before {
				t.Errorf("read after the config %s got the old shared token", tc.name)
			}
			if got := fake.LoginRequests(); got != 2 {
				t.Errorf("logins = %d, want 2: one before and one after the change", got)
			}
		})
	}
}

func TestTokenReuseLoginErrorReachesEveryReader(t *testing.T) {
	api, srv := newGatedAPI(t, true)
	tb := newTestBackend(t)
	tb.writeConfig(t, reuseConfigData(srv.URL))

	const readers = 50
	var wg sync.WaitGroup
	errs := make([]error, readers)
	responses := make([]*logical.Response, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			responses[i], errs[i] = tb.request(t, logical.ReadOperation, "token", nil)
		}()
	}
	waitForFlightReaders(t, tb, readers)
	api.open()
	wg.Wait()

	for i := range readers {
		if errs[i] == nil {
			t.Fatalf("read %d succeeded with %v, want the login's error", i, responses[i].Data)
		}
		if !strings.Contains(errs[i].Error(), "1006") {
			t.Errorf("read %d error = %v, want the API's error 1006", i, errs[i])
		}
		var coded logical.HTTPCodedError
		if !errors.As(errs[i], &coded) || coded.Code() != http.StatusBadGateway {
			t.Errorf("read %d error = %v, want an HTTP 502 error", i, errs[i])
		}
	}
	if got := api.logins.Load(); got != 1 {
		t.Errorf("logins for %d waiting reads = %d, want 1", readers, got)
	}

	// The failure was not cached: the next read logs in again.
	resp := tb.readToken(t)
	if !api.fake.TokenValid(tokenOf(resp)) {
		t.Errorf("read after the failed login got token %q, which the API did not issue", tokenOf(resp))
	}
	if got := api.logins.Load(); got != 2 {
		t.Errorf("logins after the failure = %d, want 2", got)
	}
}

func TestTokenReuseWaiterStopsOnContextEnd(t *testing.T) {
	api, srv := newGatedAPI(t, false)
	tb := newTestBackend(t)
	tb.writeConfig(t, reuseConfigData(srv.URL))

	patient := make(chan *logical.Response, 1)
	go func() {
		resp, err := tb.request(t, logical.ReadOperation, "token", nil)
		if err != nil {
			t.Errorf("read that kept waiting: %v", err)
		}
		patient <- resp
	}()
	<-api.arrived

	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		req := &logical.Request{
			Operation:  logical.ReadOperation,
			Path:       "token",
			Storage:    tb.storage,
			MountPoint: "noventiq/",
		}
		_, err := tb.HandleRequest(ctx, req)
		impatient <- err
	}()
	waitForFlightReaders(t, tb, 2)
	cancel()

	select {
	case err := <-impatient:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled read error = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a canceled read kept waiting for the login for 5s")
	}

	api.open()
	select {
	case resp := <-patient:
		if resp == nil || tokenOf(resp) == "" {
			t.Errorf("read that kept waiting got %v, want a token", resp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read that kept waiting did not finish within 30s")
	}
	if got := api.logins.Load(); got != 1 {
		t.Errorf("logins = %d, want 1", got)
	}
}

func TestTokenReuseLoginFromOldConfigNotShared(t *testing.T) {
	api, srv := newGatedAPI(t, false)
	tb := newTestBackend(t)
	tb.writeConfig(t, reuseConfigData(srv.URL))

	early := make(chan *logical.Response, 1)
	go func() {
		resp, err := tb.request(t, logical.ReadOperation, "token", nil)
		if err != nil {
			t.Errorf("read started before the config write: %v", err)
		}
		early <- resp
	}()
	<-api.arrived

	// The config changes while the first login is still in progress.
	tb.writeConfig(t, map[string]interface{}{"request_timeout": "20s", "verify_credentials": false})
	api.open()

	var oldToken string
	select {
	case resp := <-early:
		if resp == nil {
			t.Fatal("read started before the config write got no response")
		}
		oldToken = tokenOf(resp)
	case <-time.After(30 * time.Second):
		t.Fatal("read started before the config write did not finish within 30s")
	}

	newToken := tokenOf(tb.readToken(t))
	if newToken == oldToken {
		t.Errorf("read after the config write got the token of a login under the old config")
	}
	if got := api.logins.Load(); got != 2 {
		t.Errorf("logins = %d, want 2: one under each config", got)
	}
}

func TestConfigReuseSettings(t *testing.T) {
	tb := newTestBackend(t)
	tb.writeConfig(t, map[string]interface{}{
		"username":           testUsername,
		"password":           testPassword,
		"verify_credentials": false,
	})

	resp, err := tb.request(t, logical.ReadOperation, "config", nil)
	if err != nil {
		t.Fatalf("config read: %v", err)
	}
	if got := resp.Data["reuse_token"]; got != false {
		t.Errorf("default reuse_token = %#v, want false", got)
	}
	if got := resp.Data["reuse_min_ttl"]; got != int64(3600) {
		t.Errorf("default reuse_min_ttl = %#v, want int64(3600)", got)
	}

	tb.writeConfig(t, map[string]interface{}{
		"reuse_token":        true,
		"reuse_min_ttl":      "2h30m",
		"verify_credentials": false,
	})
	cfg := tb.storedConfig(t)
	if !cfg.ReuseToken {
		t.Error("stored reuse_token = false after writing true")
	}
	if cfg.ReuseMinTTL != 150*time.Minute {
		t.Errorf("stored reuse_min_ttl = %s, want 2h30m", cfg.ReuseMinTTL)
	}
	if logs := tb.logs.String(); !strings.Contains(logs, `changed="reuse_token,reuse_min_ttl"`) {
		t.Errorf("config write log does not name the changed reuse fields:\n%s", logs)
	}
}

func TestConfigReuseMinTTLRejected(t *testing.T) {
	for _, value := range []interface{}{"0s", 0, "24h", "25h", "-1h", "soon"} {
		t.Run(fmt.Sprint(value), func(t *testing.T) {
			tb := newTestBackend(t)
			data := map[string]interface{}{
				"username":           testUsername,
				"password":           testPassword,
				"verify_credentials": false,
				"reuse_min_ttl":      value,
			}
			resp, err := tb.request(t, logical.UpdateOperation, "config", data)
			if err != nil {
				t.Fatalf("config write: %v", err)
			}
			if resp == nil || !resp.IsError() {
				t.Fatalf("config write with reuse_min_ttl=%v succeeded, want a 400", value)
			}
			if !strings.Contains(resp.Error().Error(), "reuse_min_ttl") {
				t.Errorf("error %q does not name reuse_min_ttl", resp.Error())
			}
			if tb.storedConfig(t) != nil {
				t.Error("a config was stored despite the invalid reuse_min_ttl")
			}
		})
	}
}

func TestConfigWithoutReuseMinTTLGetsDefault(t *testing.T) {
	tb := newTestBackend(t)
	// A config stored before the reuse settings existed has neither field.
	entry := &logical.StorageEntry{
		Key:   configStoragePath,
		Value: []byte(`{"username":"u","password":"p","url":"https://api.example.com","request_timeout":10000000000}`),
	}
	if err := tb.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}

	cfg := tb.storedConfig(t)
	if cfg.ReuseToken {
		t.Error("reuse_token of an old config = true, want false")
	}
	if cfg.ReuseMinTTL != defaultReuseMinTTL {
		t.Errorf("reuse_min_ttl of an old config = %s, want the default %s", cfg.ReuseMinTTL, defaultReuseMinTTL)
	}
	tb.writeConfig(t, map[string]interface{}{"request_timeout": "20s", "verify_credentials": false})
}
