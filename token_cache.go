package noventiq

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// issuedToken is a token from one login with its life as tokenLifeOf
// estimated it.
type issuedToken struct {
	value     string
	issuedAt  time.Time
	expiresAt time.Time
}

// tokenCache holds the token that token reads share when reuse_token is
// set, and lets concurrent reads that find no usable token wait for one
// login instead of each starting their own. It lives in memory only, inside
// one session, so dropping the session drops the token.
type tokenCache struct {
	minTTL time.Duration
	now    func() time.Time
	logger hclog.Logger

	mu      sync.Mutex
	current *issuedToken
	flight  *loginFlight

	// warnedShortLife limits the warning about tokens that are issued with
	// less than minTTL left to one per cache.
	warnedShortLife bool
}

// loginFlight is one login in progress. The goroutine that runs the login
// writes token and err once, before it closes done.
type loginFlight struct {
	done  chan struct{}
	token *issuedToken
	err   error

	// readers counts the reads that started or joined this login. It is
	// guarded by tokenCache.mu.
	readers int
}

func newTokenCache(minTTL time.Duration, now func() time.Time, logger hclog.Logger) *tokenCache {
	return &tokenCache{minTTL: minTTL, now: now, logger: logger}
}

// get returns the shared token while it has at least minTTL of life left.
// Otherwise it joins the login in progress, or starts one, and waits for
// its result. Every read waiting on one login gets the same token or the
// same error, and a failed login leaves nothing behind, so the next read
// tries again.
//
// The login runs without the cancellation of the request that started it,
// because other reads may be waiting on it. It is still bounded by the
// client's request_timeout. A reader whose own ctx ends stops waiting and
// returns the context's error, while the login goes on for the others.
func (c *tokenCache) get(ctx context.Context, login func(context.Context) (*issuedToken, error)) (*issuedToken, error) {
	c.mu.Lock()
	if c.usable(c.current) {
		token := c.current
		c.mu.Unlock()
		return token, nil
	}

	flight := c.flight
	if flight == nil {
		flight = &loginFlight{done: make(chan struct{})}
		c.flight = flight
		go c.run(context.WithoutCancel(ctx), flight, login)
	}
	flight.readers++
	c.mu.Unlock()

	select {
	case <-flight.done:
		return flight.token, flight.err
	case <-ctx.Done():
		return nil, fmt.Errorf("stopped waiting for the shared login: %w", ctx.Err())
	}
}

// run performs one login for flight and publishes its result.
func (c *tokenCache) run(ctx context.Context, flight *loginFlight, login func(context.Context) (*issuedToken, error)) {
	token, err := login(ctx)

	c.mu.Lock()
	if err == nil {
		c.current = token
	}
	c.flight = nil
	readers := flight.readers
	shortLife := err == nil && !c.usable(token) && !c.warnedShortLife
	if shortLife {
		c.warnedShortLife = true
	}
	c.mu.Unlock()

	flight.token, flight.err = token, err
	close(flight.done)

	c.logger.Debug("shared login finished", "readers", readers, "failed", err != nil)
	if shortLife {
		// The readers of this login still get the token, which is the best
		// the API offers, but no later read can reuse it.
		c.logger.Warn("the API issued a token with less than reuse_min_ttl of life left, "+
			"so every token read logs in again; check the clocks of Vault and the API",
			"expires_at", token.expiresAt.UTC().Format(time.RFC3339), "reuse_min_ttl", c.minTTL.String())
	}
}

// usable reports whether token exists and has at least minTTL left.
func (c *tokenCache) usable(token *issuedToken) bool {
	return token != nil && token.expiresAt.Sub(c.now()) >= c.minTTL
}

// flightReaders returns how many reads started or joined the login in
// progress, or 0 when none is in progress.
func (c *tokenCache) flightReaders() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flight == nil {
		return 0
	}
	return c.flight.readers
}
