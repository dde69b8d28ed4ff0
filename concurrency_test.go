package noventiq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// upstream is a stand-in API that accepts exactly one credential pair.
type upstream struct {
	fake               *standin.Server
	url                string
	username, password string
}

// newUpstream starts a stand-in that accepts username and password and
// takes upstreamLatency to respond, so that config writes land while logins
// are in flight.
func newUpstream(t *testing.T, username, password string) *upstream {
	t.Helper()
	fake := standin.New(standin.Options{Username: username, Password: password})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(upstreamLatency)
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &upstream{fake: fake, url: srv.URL, username: username, password: password}
}

const upstreamLatency = 2 * time.Millisecond

// configFor is a config write that switches url, username and password
// together to u.
func (u *upstream) configFor(verify, reuse bool) map[string]interface{} {
	return map[string]interface{}{
		"url":                u.url,
		"username":           u.username,
		"password":           u.password,
		"verify_credentials": verify,
		"reuse_token":        reuse,
	}
}

// rejectedLogins counts logins that u rejected. A login that mixed the
// settings of two configs reaches one upstream with the other's
// credentials and is rejected with 1006.
func (u *upstream) rejectedLogins() int64 {
	return u.fake.LoginRequests() - u.fake.TokensIssued()
}

// At least 200 token reads run in parallel with config writes that switch
// url, username and password together between two upstreams, each of which
// accepts only its own credentials. Every login must use one config's
// settings, never a mix, so every read succeeds and no upstream rejects a
// login.
func TestConcurrentReadsDuringConfigRewrites(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		name := "login per read"
		if reuse {
			name = "reuse_token"
		}
		t.Run(name, func(t *testing.T) {
			upstreams := []*upstream{
				newUpstream(t, "account-a", `pass"word-a\`),
				newUpstream(t, "account-b", "pass word-b ✓"),
			}
			tb := newTestBackend(t)
			tb.writeConfig(t, upstreams[0].configFor(true, reuse))

			// Each reader reads one token after another, so that the reads of a
			// wave span many config writes.
			const waves, readersPerWave, readsPerReader = 2, 12, 10
			var writes atomic.Int64
			for wave := range waves {
				// Each wave starts on the other upstream, so both serve reads.
				tb.writeConfig(t, upstreams[(wave+1)%2].configFor(wave%2 == 0, reuse))
				writes.Add(1)

				stop := make(chan struct{})
				var writer sync.WaitGroup
				writer.Add(1)
				go func() {
					defer writer.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						data := upstreams[i%2].configFor(i%10 == 0, reuse)
						resp, err := tb.request(t, logical.UpdateOperation, "config", data)
						if err == nil && resp != nil && resp.IsError() {
							err = resp.Error()
						}
						if err != nil {
							t.Errorf("wave %d: config write: %v", wave, err)
							return
						}
						writes.Add(1)
					}
				}()

				tokens := make(chan string, readersPerWave*readsPerReader)
				var readers sync.WaitGroup
				for range readersPerWave {
					readers.Add(1)
					go func() {
						defer readers.Done()
						for range readsPerReader {
							resp, err := tb.request(t, logical.ReadOperation, "token", nil)
							if err == nil && resp.IsError() {
								err = resp.Error()
							}
							if err != nil {
								t.Errorf("wave %d: token read: %v", wave, err)
								return
							}
							tokens <- resp.Data["token"].(string)
						}
					}()
				}
				readers.Wait()
				close(stop)
				writer.Wait()
				close(tokens)

				for token := range tokens {
					if !upstreams[0].fake.TokenValid(token) && !upstreams[1].fake.TokenValid(token) {
						t.Errorf("wave %d: token %q was issued by neither upstream", wave, token)
					}
				}
			}

			for i, u := range upstreams {
				if got := u.rejectedLogins(); got != 0 {
					t.Errorf("upstream %d rejected %d logins: some login mixed two configs", i, got)
				}
				if u.fake.TokensIssued() == 0 {
					t.Errorf("upstream %d issued no token, so the reads never switched upstream", i)
				}
			}
			t.Logf("%d reads, %d config writes, logins per upstream: %d and %d",
				waves*readersPerWave*readsPerReader, writes.Load(),
				upstreams[0].fake.TokensIssued(), upstreams[1].fake.TokensIssued())
			tb.assertLogsClean(t, upstreams[0].password, upstreams[1].password)
		})
	}
}

// hungUpstream accepts logins and holds each until release is called or
// the request ends. It counts the logins that are being held.
type hungUpstream struct {
	url      string
	held     atomic.Int64
	released chan struct{}
	once     sync.Once
}

func newHungUpstream(t *testing.T) *hungUpstream {
	t.Helper()
	h := &hungUpstream{released: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.held.Add(1)
		defer h.held.Add(-1)
		select {
		case <-h.released:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"token":"released-token"}`))
		case <-r.Context().Done():
		}
	}))
	h.url = srv.URL
	// Cleanups run last-in first-out: release the held requests, then close.
	t.Cleanup(srv.Close)
	t.Cleanup(h.release)
	return h
}

func (h *hungUpstream) release() {
	h.once.Do(func() { close(h.released) })
}

// waitHeld waits up to five seconds until n logins are held at once.
func (h *hungUpstream) waitHeld(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.held.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("upstream holds %d logins at once after 5s, want %d", h.held.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readTokensInBackground starts n token reads and returns a channel that
// gets each read's error, or nil.
func readTokensInBackground(t *testing.T, tb *testBackend, n int) <-chan error {
	t.Helper()
	results := make(chan error, n)
	for range n {
		go func() {
			resp, err := tb.request(t, logical.ReadOperation, "token", nil)
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			results <- err
		}()
	}
	return results
}

// Token reads share no lock around the login: while the upstream holds
// some logins, the others still reach it.
func TestConcurrentReadsReachUpstreamTogether(t *testing.T) {
	hung := newHungUpstream(t)
	tb := newTestBackend(t)
	data := configData(hung.url)
	data["verify_credentials"] = false
	data["request_timeout"] = 60
	tb.writeConfig(t, data)

	const reads = 8
	results := readTokensInBackground(t, tb, reads)
	hung.waitHeld(t, reads)

	hung.release()
	for range reads {
		if err := <-results; err != nil {
			t.Errorf("token read: %v", err)
		}
	}
}

// A hung upstream holds only the token reads waiting on it: config reads,
// writes and deletes go on, and reads after a rewrite use the new upstream.
func TestHungUpstreamDoesNotBlockConfig(t *testing.T) {
	hung := newHungUpstream(t)
	healthy := newUpstream(t, testUsername, "healthy-password")
	tb := newTestBackend(t)
	data := configData(hung.url)
	data["verify_credentials"] = false
	data["request_timeout"] = 60
	tb.writeConfig(t, data)

	const reads = 4
	results := readTokensInBackground(t, tb, reads)
	hung.waitHeld(t, reads)

	// within runs op and fails the test if it takes more than five seconds
	// or returns an error.
	within := func(what string, op func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked after 5s while the upstream hangs", what)
		}
	}
	request := func(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
		resp, err := tb.request(t, op, path, data)
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		return resp, err
	}

	within("config read", func() error {
		resp, err := request(logical.ReadOperation, "config", nil)
		if err == nil && resp.Data["url"] != hung.url {
			err = fmt.Errorf("url = %v, want the hung upstream's %s", resp.Data["url"], hung.url)
		}
		return err
	})
	within("config write without a check", func() error {
		_, err := request(logical.UpdateOperation, "config",
			map[string]interface{}{"request_timeout": 30, "verify_credentials": false})
		return err
	})
	within("config write with a check against a healthy upstream", func() error {
		_, err := request(logical.UpdateOperation, "config", healthy.configFor(true, false))
		return err
	})
	within("token read from the healthy upstream", func() error {
		resp, err := request(logical.ReadOperation, "token", nil)
		if err == nil && !healthy.fake.TokenValid(resp.Data["token"].(string)) {
			err = fmt.Errorf("token %q is not from the healthy upstream", resp.Data["token"])
		}
		return err
	})
	within("config delete", func() error {
		_, err := request(logical.DeleteOperation, "config", nil)
		return err
	})
	if got := hung.held.Load(); got != reads {
		t.Errorf("upstream holds %d logins, want the %d reads still waiting", got, reads)
	}

	hung.release()
	for range reads {
		if err := <-results; err != nil {
			t.Errorf("token read started before the rewrite: %v", err)
		}
	}
}

var errStorageDown = errors.New("storage backend unavailable")

// failingStorage is an in-memory logical.Storage whose operations fail on
// demand.
type failingStorage struct {
	logical.InmemStorage
	failGet, failPut, failDelete atomic.Bool
}

func (s *failingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if s.failGet.Load() {
		return nil, errStorageDown
	}
	return s.InmemStorage.Get(ctx, key)
}

func (s *failingStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if s.failPut.Load() {
		return errStorageDown
	}
	return s.InmemStorage.Put(ctx, entry)
}

func (s *failingStorage) Delete(ctx context.Context, key string) error {
	if s.failDelete.Load() {
		return errStorageDown
	}
	return s.InmemStorage.Delete(ctx, key)
}

func newFailingStorageBackend(t *testing.T) (*testBackend, *failingStorage) {
	t.Helper()
	tb := newTestBackend(t)
	storage := &failingStorage{}
	tb.storage = storage
	return tb, storage
}

// assertStorageError fails unless the request failed with the storage
// error and without the password in the error.
func assertStorageError(t *testing.T, what string, resp *logical.Response, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with failing storage succeeded: %v", what, resp)
	}
	if !errors.Is(err, errStorageDown) && !strings.Contains(err.Error(), errStorageDown.Error()) {
		t.Errorf("%s error %q does not name the storage failure", what, err)
	}
	if resp != nil && resp.Secret != nil {
		t.Errorf("%s with failing storage created a lease", what)
	}
	assertNoSecret(t, what+" error", err.Error(), testPassword)
}

func TestStorageFailureOnCreateStoresNothing(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb, storage := newFailingStorageBackend(t)

	storage.failPut.Store(true)
	resp, err := tb.request(t, logical.UpdateOperation, "config", configData(api.URL))
	assertStorageError(t, "config create", resp, err)
	storage.failPut.Store(false)

	if cfg := tb.storedConfig(t); cfg != nil {
		t.Errorf("failed create stored a config: %+v", cfg)
	}
	resp, err = tb.request(t, logical.ReadOperation, "token", nil)
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "not configured") {
		t.Errorf("token read after a failed create = %v, %v; want not configured", resp, err)
	}
	if got := fake.TokensIssued(); got != 1 {
		t.Errorf("logins = %d, want only the create's credential check", got)
	}
}

func TestStorageFailureOnUpdateKeepsOldConfig(t *testing.T) {
	oldAPI := newUpstream(t, testUsername, testPassword)
	newAPI := newUpstream(t, "other-user", "other-password")
	tb, storage := newFailingStorageBackend(t)
	tb.writeConfig(t, oldAPI.configFor(true, false))
	tb.readToken(t)
	before := tb.storedConfig(t)

	storage.failPut.Store(true)
	resp, err := tb.request(t, logical.UpdateOperation, "config", newAPI.configFor(true, false))
	assertStorageError(t, "config update", resp, err)
	storage.failPut.Store(false)

	if after := tb.storedConfig(t); !reflect.DeepEqual(after, before) {
		t.Errorf("stored config changed by a failed update:\nbefore %+v\nafter  %+v", before, after)
	}

	// Reads go on with the old settings, both from the cached session and
	// from a session loaded again from storage.
	for _, reload := range []bool{false, true} {
		if reload {
			tb.Invalidate(context.Background(), configStoragePath)
		}
		token := tb.readToken(t).Data["token"].(string)
		if !oldAPI.fake.TokenValid(token) {
			t.Errorf("token read after a failed update (reload %v) did not use the old config", reload)
		}
	}
	if got := newAPI.fake.TokensIssued(); got != 1 {
		t.Errorf("the new upstream issued %d tokens, want only the update's credential check", got)
	}
}

func TestStorageFailureOnDeleteKeepsConfig(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb, storage := newFailingStorageBackend(t)
	tb.writeConfig(t, configData(api.URL))

	storage.failDelete.Store(true)
	resp, err := tb.request(t, logical.DeleteOperation, "config", nil)
	assertStorageError(t, "config delete", resp, err)
	storage.failDelete.Store(false)

	if cfg := tb.storedConfig(t); cfg == nil {
		t.Error("failed delete removed the config")
	}
	tb.Invalidate(context.Background(), configStoragePath)
	tb.readToken(t)
}

func TestStorageFailureOnRead(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb, storage := newFailingStorageBackend(t)
	tb.writeConfig(t, configData(api.URL))
	tb.Invalidate(context.Background(), configStoragePath)
	loginsBefore := fake.LoginRequests()

	storage.failGet.Store(true)
	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	assertStorageError(t, "token read", resp, err)
	resp, err = tb.request(t, logical.ReadOperation, "config", nil)
	assertStorageError(t, "config read", resp, err)
	resp, err = tb.request(t, logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": 20})
	assertStorageError(t, "config update", resp, err)
	storage.failGet.Store(false)

	if got := fake.LoginRequests() - loginsBefore; got != 0 {
		t.Errorf("reads with failing storage sent %d logins, want 0", got)
	}
	if cfg := tb.storedConfig(t); cfg.RequestTimeout != defaultRequestTimeout {
		t.Errorf("request_timeout = %s after a failed update, want %s", cfg.RequestTimeout, defaultRequestTimeout)
	}

	// Nothing half-loaded was cached: the next read loads the config.
	token := tb.readToken(t).Data["token"].(string)
	if !fake.TokenValid(token) {
		t.Errorf("token %q after storage recovered is not valid", token)
	}
	tb.assertLogsClean(t, testPassword, token)
}
