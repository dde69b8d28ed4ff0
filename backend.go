// Package noventiq is a Vault secrets engine that stores a Noventiq
// e-commerce API username and password and hands out API tokens as leases.
package noventiq

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

const backendHelp = `
The Noventiq secrets engine exchanges a stored Noventiq e-commerce API
username and password for API tokens.

Write the credentials once to "config". Each read of "token" logs in to the
API and returns a token as a lease that ends no later than the token itself,
24 hours after the API issued it. Readers never see the credentials.
With reuse_token=true in "config", reads share one token instead, each with
its own lease.
`

// Factory returns a logical.Factory for backends that report version to
// Vault's plugin catalog.
func Factory(version string) logical.Factory {
	return func(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
		b := newBackend(version)
		if err := b.Setup(ctx, conf); err != nil {
			return nil, err
		}
		return b, nil
	}
}

// backend is the secrets engine. The client built from the stored config is
// cached in memory; storage stays the source of truth.
type backend struct {
	*framework.Backend

	// loadMu serialises loading the config from storage with dropping the
	// cached client, so a load cannot store a client built from a config
	// that a concurrent write has already replaced. It is never held
	// during a call to the API.
	loadMu sync.Mutex
	cached atomic.Pointer[session]

	// writeMu serialises config writes and deletes.
	writeMu sync.Mutex

	configFields map[string]*framework.FieldSchema

	// now is the clock that token lifetimes are measured against. Tests
	// replace it before the first request.
	now func() time.Time
}

// session pairs a config with the client built from it. Its fields never
// change, so a login always uses one consistent set of settings.
//
// tokens caches the token that reads share when the config sets
// reuse_token. It belongs to the session, so reset drops it with the session, and a
// login that finishes after a reset fills only the dropped session's cache,
// never the next one's.
type session struct {
	config *config
	client *client
	tokens *tokenCache
}

func newBackend(version string) *backend {
	b := &backend{now: time.Now}
	configPath := pathConfig(b)
	b.configFields = configPath.Fields
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStoragePath},
		},
		Paths: []*framework.Path{
			configPath,
			pathToken(b),
		},
		Secrets: []*framework.Secret{
			secretToken(b),
		},
		Invalidate:     b.invalidate,
		RunningVersion: version,
	}
	return b
}

// invalidate drops what was derived from a storage key that changed, for
// example on a standby node after the active node wrote the config.
func (b *backend) invalidate(_ context.Context, key string) {
	if key == configStoragePath {
		b.reset()
	}
}

// reset drops the cached session; the next login loads the config again.
func (b *backend) reset() {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	b.cached.Store(nil)
}

// currentSession returns the session for the stored config, building it on
// first use. It returns nil when no config is stored.
func (b *backend) currentSession(ctx context.Context, storage logical.Storage) (*session, error) {
	if s := b.cached.Load(); s != nil {
		return s, nil
	}

	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	if s := b.cached.Load(); s != nil {
		return s, nil
	}

	cfg, err := readConfig(ctx, storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, nil
	}

	c, err := newClient(cfg.URL, cfg.RequestTimeout, cfg.CACert, b.Logger())
	if err != nil {
		return nil, fmt.Errorf("stored config is unusable: %w", err)
	}

	s := &session{
		config: cfg,
		client: c,
		tokens: newTokenCache(cfg.ReuseMinTTL, b.now, b.Logger()),
	}
	b.cached.Store(s)
	return s, nil
}

// HandleExistenceCheck and HandleRequest check the fields of a config
// write before the framework does, because the framework's conversion
// errors quote the rejected value, which may be the password, and Vault
// logs existence-check errors.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if err := b.checkConfigWrite(req); err != nil {
		return false, false, errutil.UserError{Err: err.Error()}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := b.checkConfigWrite(req); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.Backend.HandleRequest(ctx, req)
}

func (b *backend) checkConfigWrite(req *logical.Request) error {
	if req.Path != configStoragePath {
		return nil
	}
	if req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil
	}
	return checkFields(&framework.FieldData{Raw: req.Data, Schema: b.configFields})
}
