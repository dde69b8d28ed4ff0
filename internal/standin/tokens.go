package standin

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// maxTokens caps how many issued tokens a Server keeps, so a long benchmark
// cannot grow memory without bound. A full store takes about 11 MiB of
// heap, measured with Go 1.26 on amd64, or about 180 bytes an entry.
const maxTokens = 1 << 16

// tokenBytes and refreshTokenBytes are the random bytes behind a token and
// a refresh token. The vendor's example token has 32 hex digits. Its
// refresh token has 19, an odd count that bytes cannot produce, so the
// stand-in sends 20.
const (
	tokenBytes        = 16
	refreshTokenBytes = 10
)

type tokenRecord struct {
	username string
	issuedAt time.Time
}

// tokenStore records issued tokens and evicts the oldest one when it
// already contains max of them. Expired tokens stay until then, so that a
// check reports them as expired (1009) and not as unknown (1007).
type tokenStore struct {
	max     int
	records map[string]tokenRecord

	// order is a ring buffer of the tokens in records, in issue order.
	// Once it is full, order[oldest] is the next token to evict.
	order  []string
	oldest int
}

func (ts *tokenStore) add(token string, record tokenRecord) {
	if ts.records == nil {
		ts.records = make(map[string]tokenRecord)
	}

	if len(ts.order) < ts.max {
		ts.order = append(ts.order, token)
	} else {
		delete(ts.records, ts.order[ts.oldest])
		ts.order[ts.oldest] = token
		ts.oldest = (ts.oldest + 1) % ts.max
	}
	ts.records[token] = record
}

func (ts *tokenStore) lookup(token string) (tokenRecord, bool) {
	record, ok := ts.records[token]
	return record, ok
}

// issueToken records a new token for username, issued at issuedAt, and
// returns it with a new refresh token.
func (s *Server) issueToken(username string, issuedAt time.Time) (token, refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()

	// A repeat of 128 random bits is practically impossible, but the loop
	// makes "every token is new" hold for the tokens still in the store.
	for {
		token = randomHex(tokenBytes)
		if _, exists := s.tokens.lookup(token); !exists {
			break
		}
	}
	s.tokens.add(token, tokenRecord{username: username, issuedAt: issuedAt})
	return token, randomHex(refreshTokenBytes)
}

// checkToken returns the record of token and its expiry time, or the error
// that rejects it at now.
func (s *Server) checkToken(token string, now time.Time) (tokenRecord, time.Time, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()

	record, ok := s.tokens.lookup(token)
	if !ok {
		return tokenRecord{}, time.Time{}, errTokenInvalid
	}

	expiresAt := record.issuedAt.Add(s.tokenLifetime)
	if !now.Before(expiresAt) {
		return record, expiresAt, errTokenExpired
	}
	return record, expiresAt, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // documented to never return an error since Go 1.24
	return hex.EncodeToString(b)
}
