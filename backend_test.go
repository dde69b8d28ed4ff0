package noventiq

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

const (
	testUsername = "shop-admin"
	// testPassword has characters that JSON and shells treat specially.
	testPassword = `p"a\ss wörd-Ω@`
	testVersion  = "v9.9.9-test"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testBackend is a backend on in-memory storage with its log captured at
// trace level.
type testBackend struct {
	*backend
	storage logical.Storage
	logs    *syncBuffer
	system  *logical.StaticSystemView
}

func newTestBackend(t testing.TB) *testBackend {
	t.Helper()
	logs := &syncBuffer{}
	system := &logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour,
		MaxLeaseTTLVal:     32 * 24 * time.Hour,
	}
	conf := &logical.BackendConfig{
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs}),
		System: system,
	}

	raw, err := Factory(testVersion)(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	return &testBackend{
		backend: raw.(*backend),
		storage: &logical.InmemStorage{},
		logs:    logs,
		system:  system,
	}
}

// request sends one request to the backend the way Vault's router would.
func (tb *testBackend) request(t testing.TB, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	t.Helper()
	req := &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    tb.storage,
		MountPoint: "noventiq/",
	}
	if op == logical.CreateOperation || op == logical.UpdateOperation {
		exists, _, err := tb.HandleExistenceCheck(context.Background(), req)
		var userErr errutil.UserError
		if errors.As(err, &userErr) {
			// Vault returns 400 for a user error from an existence check.
			return logical.ErrorResponse(userErr.Error()), nil
		}
		if err != nil {
			return nil, err
		}
		if exists {
			req.Operation = logical.UpdateOperation
		} else {
			req.Operation = logical.CreateOperation
		}
	}
	return tb.HandleRequest(context.Background(), req)
}

// writeConfig writes data to the config path and fails the test on error.
func (tb *testBackend) writeConfig(t testing.TB, data map[string]interface{}) *logical.Response {
	t.Helper()
	resp, err := tb.request(t, logical.UpdateOperation, "config", data)
	if err != nil {
		t.Fatalf("config write: %v", err)
	}
	if resp != nil && resp.IsError() {
		t.Fatalf("config write: %v", resp.Error())
	}
	return resp
}

// storedConfig returns the raw config from storage, or nil.
func (tb *testBackend) storedConfig(t testing.TB) *config {
	t.Helper()
	cfg, err := readConfig(context.Background(), tb.storage)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// assertLogsClean fails if any of the secrets appears in the backend's log.
func (tb *testBackend) assertLogsClean(t testing.TB, secrets ...string) {
	t.Helper()
	logs := tb.logs.String()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("backend log contains a secret %q:\n%s", secret, logs)
		}
	}
}

// newStandin serves a stand-in API that accepts testUsername/testPassword.
func newStandin(t testing.TB, opts standin.Options) (*standin.Server, *httptest.Server) {
	t.Helper()
	if opts.Username == "" {
		opts.Username = testUsername
		opts.Password = testPassword
	}
	fake := standin.New(opts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

// configData is a complete config write for the given API URL.
func configData(url string) map[string]interface{} {
	return map[string]interface{}{
		"username": testUsername,
		"password": testPassword,
		"url":      url,
	}
}

func TestBackendReportsRunningVersion(t *testing.T) {
	tb := newTestBackend(t)
	if tb.RunningVersion != testVersion {
		t.Errorf("RunningVersion = %q, want %q", tb.RunningVersion, testVersion)
	}
}

func TestBackendSealWrapsConfig(t *testing.T) {
	tb := newTestBackend(t)
	special := tb.SpecialPaths()
	if special == nil || len(special.SealWrapStorage) != 1 || special.SealWrapStorage[0] != configStoragePath {
		t.Errorf("SealWrapStorage = %v, want [%q]", special, configStoragePath)
	}
}

func TestInvalidateDropsCachedSession(t *testing.T) {
	fake, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))

	if _, err := tb.request(t, logical.ReadOperation, "token", nil); err != nil {
		t.Fatalf("token read: %v", err)
	}
	if tb.cached.Load() == nil {
		t.Fatal("no session cached after a token read")
	}

	// Another node rewrites the config behind this node's back.
	changed := *tb.storedConfig(t)
	changed.Password = "rotated-elsewhere"
	if err := writeConfig(context.Background(), tb.storage, &changed); err != nil {
		t.Fatal(err)
	}
	fake.SetCredentials(testUsername, "rotated-elsewhere")

	tb.Invalidate(context.Background(), "some/other/key")
	if tb.cached.Load() == nil {
		t.Error("invalidating an unrelated key dropped the session")
	}

	tb.Invalidate(context.Background(), configStoragePath)
	if tb.cached.Load() != nil {
		t.Error("invalidating the config key kept the session")
	}

	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	if err != nil {
		t.Fatalf("token read after invalidation: %v", err)
	}
	if token, _ := resp.Data["token"].(string); token == "" {
		t.Errorf("token read after invalidation returned no token: %#v", resp)
	}
}
