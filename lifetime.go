package noventiq

import (
	"fmt"
	"time"
)

// TokenLifetime is how long the API accepts a token after issuing it.
const TokenLifetime = 24 * time.Hour

// tokenLife is when a token was issued and when it stops working.
type tokenLife struct {
	issuedAt  time.Time
	expiresAt time.Time
	remaining time.Duration
}

// tokenLifeOf estimates a token's end as the earlier of two estimates: the
// time the login request was sent plus TokenLifetime, and the response's
// Date header (the API's creation time of the token) plus TokenLifetime.
// Taking the earlier one means neither a clock difference between Vault
// and the API nor an older token handed out again can stretch a lease past
// the token's life. Without a usable Date only the first estimate counts.
//
// It returns an error when the token has already expired at now.
func tokenLifeOf(result *loginResult, now time.Time) (tokenLife, error) {
	life := tokenLife{
		issuedAt:  result.RequestSent,
		expiresAt: result.RequestSent.Add(TokenLifetime),
	}

	if !result.Date.IsZero() {
		life.issuedAt = result.Date
		if byDate := result.Date.Add(TokenLifetime); byDate.Before(life.expiresAt) {
			life.expiresAt = byDate
		}
	}

	// expires_at is shown in whole seconds, so the end is rounded down to
	// one: a lease computed from it then ends no later than the time shown.
	life.expiresAt = life.expiresAt.Truncate(time.Second)
	life.remaining = life.expiresAt.Sub(now)
	if life.remaining <= 0 {
		return tokenLife{}, fmt.Errorf(
			"the Noventiq API returned a token that has already expired: its Date header %s "+
				"is more than %s before this login; check the clocks of Vault and the API",
			result.Date.UTC().Format(time.RFC3339), TokenLifetime)
	}
	return life, nil
}

// leaseMargin is taken off every lease TTL. Vault starts a lease's clock a
// few milliseconds after the plugin computes its TTL, so without a margin
// the lease would end just after the token.
const leaseMargin = time.Second

// leaseTTL returns the TTL of a lease for a token that expires at
// expiresAt: the whole seconds left at now, less leaseMargin, and no more
// than maxTTL when maxTTL is positive. A result of zero or less means the
// token has too little life left to hand out.
func leaseTTL(expiresAt, now time.Time, maxTTL time.Duration) time.Duration {
	ttl := expiresAt.Sub(now).Truncate(time.Second) - leaseMargin
	if maxTTL > 0 && ttl > maxTTL {
		ttl = maxTTL
	}
	return ttl
}
