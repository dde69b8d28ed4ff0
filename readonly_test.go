package noventiq

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// readOnlyStorage rejects every write with logical.ErrReadOnly, the error
// Vault returns to a plugin that writes on a node that may not write, such
// as a performance standby. Reads pass through.
type readOnlyStorage struct {
	logical.Storage
	writes atomic.Int64
}

func (s *readOnlyStorage) Put(context.Context, *logical.StorageEntry) error {
	s.writes.Add(1)
	return logical.ErrReadOnly
}

func (s *readOnlyStorage) Delete(context.Context, string) error {
	s.writes.Add(1)
	return logical.ErrReadOnly
}

// makeStorageReadOnly makes every later request of tb see its current
// storage as read-only and returns the wrapper that counts writes.
func (tb *testBackend) makeStorageReadOnly() *readOnlyStorage {
	readOnly := &readOnlyStorage{Storage: tb.storage}
	tb.storage = readOnly
	return readOnly
}

func TestTokenReadWritesNothing(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		name := "login per read"
		if reuse {
			name = "shared token"
		}
		t.Run(name, func(t *testing.T) {
			fake, api := newStandin(t, standin.Options{})
			tb := newTestBackend(t)
			data := configData(api.URL)
			data["reuse_token"] = reuse
			tb.writeConfig(t, data)
			readOnly := tb.makeStorageReadOnly()

			// The first read builds the session from storage, the second
			// uses the cached one, and the third rebuilds it after the
			// config key was invalidated, as on a node that another node's
			// write reached.
			for i := range 3 {
				if i == 2 {
					tb.Invalidate(context.Background(), configStoragePath)
				}
				resp := tb.readToken(t)
				token, _ := resp.Data["token"].(string)
				if !fake.TokenValid(token) {
					t.Errorf("read %d: token %q is not one the API issued", i+1, token)
				}
				if resp.Secret == nil {
					t.Errorf("read %d: response has no lease", i+1)
				}
			}
			if n := readOnly.writes.Load(); n != 0 {
				t.Errorf("token reads attempted %d storage writes, want 0", n)
			}
		})
	}
}

func TestConfigReadWritesNothing(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	readOnly := tb.makeStorageReadOnly()

	resp, err := tb.request(t, logical.ReadOperation, "config", nil)
	if err != nil {
		t.Fatalf("config read: %v", err)
	}
	if resp == nil || resp.IsError() {
		t.Fatalf("config read returned %#v, want the config", resp)
	}
	if got := resp.Data["username"]; got != testUsername {
		t.Errorf("username = %v, want %q", got, testUsername)
	}
	if n := readOnly.writes.Load(); n != 0 {
		t.Errorf("config read attempted %d storage writes, want 0", n)
	}
}

func TestTokenRevokeWritesNothing(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	resp := tb.readToken(t)
	readOnly := tb.makeStorageReadOnly()

	revoke := &logical.Request{
		Operation: logical.RevokeOperation,
		Path:      "token",
		Storage:   tb.storage,
		Secret:    resp.Secret,
	}
	if _, err := tb.HandleRequest(context.Background(), revoke); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if n := readOnly.writes.Load(); n != 0 {
		t.Errorf("revoke attempted %d storage writes, want 0", n)
	}
}

// A write that reaches read-only storage must fail with an error that
// still matches logical.ErrReadOnly, so that Vault can tell it apart from
// other storage failures, and must leave the stored config as it was.
func TestConfigWriteOnReadOnlyStorageFails(t *testing.T) {
	_, api := newStandin(t, standin.Options{})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(api.URL))
	readOnly := tb.makeStorageReadOnly()

	_, err := tb.request(t, logical.UpdateOperation, "config", map[string]interface{}{
		"request_timeout": "30s",
	})
	if !errors.Is(err, logical.ErrReadOnly) {
		t.Errorf("config write error = %v, want one matching logical.ErrReadOnly", err)
	}
	if n := readOnly.writes.Load(); n != 1 {
		t.Errorf("config write attempted %d storage writes, want 1", n)
	}
	if got := tb.storedConfig(t).RequestTimeout; got != defaultRequestTimeout {
		t.Errorf("stored request_timeout = %s after a rejected write, want %s", got, defaultRequestTimeout)
	}

	_, err = tb.request(t, logical.DeleteOperation, "config", nil)
	if !errors.Is(err, logical.ErrReadOnly) {
		t.Errorf("config delete error = %v, want one matching logical.ErrReadOnly", err)
	}
	if tb.storedConfig(t) == nil {
		t.Error("config is gone after a rejected delete")
	}
}
