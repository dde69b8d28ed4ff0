// Package standin serves a local stand-in for the Noventiq e-commerce login
// API, so tests and demos never reach the vendor.
//
// POST /v1/login_check follows the vendor's "Get Token" contract: the same
// checks in the same order, the same error codes and message texts, and a
// 200 response with a new token and refresh_token. Each check that fails
// stops validation, so an error body lists one code only.
//
// Every response carries a Date header from the server's clock. The vendor
// documents the Date of a login response as the time the token was issued,
// and Options.IssuedAgo shifts it to simulate clock skew or an older token.
//
// GET /v1/whoami exists only in the stand-in. It plays the role of the
// vendor's other APIs (Payments, Checkout and the rest), which take the
// token as "Authorization: Bearer <token>" and reject it with 401 codes 1007
// (invalid), 1008 (missing) and 1009 (expired). Tests call it to check
// whether a token is still accepted.
//
// The vendor also documents a 500 "try again later" response. The stand-in
// never sends one.
package standin

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTokenLifetime is how long the vendor accepts a token after it is
// issued.
const DefaultTokenLifetime = 24 * time.Hour

const (
	loginPath  = "/v1/login_check"
	whoamiPath = "/v1/whoami"
)

// Options configures a Server. Zero values get defaults.
type Options struct {
	// Username and Password are the accepted credentials. While either is
	// empty, every login that passes the earlier checks fails with 1006.
	Username, Password string

	// TokenLifetime is how long GET /v1/whoami accepts an issued token.
	// Zero or negative means DefaultTokenLifetime.
	TokenLifetime time.Duration

	// IssuedAgo is subtracted from Now for the Date header of every
	// response and for the issue time recorded at login. A negative value
	// puts both in the future, like a server clock that runs ahead.
	IssuedAgo time.Duration

	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Server is an http.Handler that serves the stand-in API. It is safe for
// concurrent use.
type Server struct {
	now func() time.Time

	mu            sync.Mutex
	username      string
	password      string
	tokenLifetime time.Duration
	issuedAgo     time.Duration
	tokens        tokenStore

	requests      atomic.Int64
	loginRequests atomic.Int64
	tokensIssued  atomic.Int64
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	s := &Server{
		now:       now,
		username:  opts.Username,
		password:  opts.Password,
		issuedAgo: opts.IssuedAgo,
		tokens:    tokenStore{max: maxTokens},
	}
	s.SetTokenLifetime(opts.TokenLifetime)
	return s
}

// SetCredentials replaces the accepted username and password. Tokens issued
// before the change stay valid.
func (s *Server) SetCredentials(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.username = username
	s.password = password
}

// SetIssuedAgo replaces Options.IssuedAgo for later requests. Issue times
// already recorded do not change.
func (s *Server) SetIssuedAgo(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issuedAgo = d
}

// SetTokenLifetime replaces Options.TokenLifetime. The new lifetime applies
// to every token from then on, including tokens already issued, because
// expiry is computed when a token is checked. Zero or negative means
// DefaultTokenLifetime.
func (s *Server) SetTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultTokenLifetime
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime = d
}

// LoginRequests returns the number of POST requests to /v1/login_check,
// whatever their outcome. Other methods on that path are not counted.
func (s *Server) LoginRequests() int64 { return s.loginRequests.Load() }

// TokensIssued returns the number of successful logins.
func (s *Server) TokensIssued() int64 { return s.tokensIssued.Load() }

// Requests returns the number of requests on any path with any method.
func (s *Server) Requests() int64 { return s.requests.Load() }

// TokenValid reports whether token was issued by s and has not expired at
// Now. A token followed by 65,536 later logins has been evicted from the
// bounded token store and is reported as not valid.
func (s *Server) TokenValid(token string) bool {
	_, _, apiErr := s.checkToken(token, s.now())
	return apiErr == nil
}

// TokenIssuedAt returns the issue time recorded when token was issued, with
// Options.IssuedAgo applied, and whether s still stores the token. Expired
// tokens are still stored, and evicted tokens are not.
func (s *Server) TokenIssuedAt(token string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	record, ok := s.tokens.lookup(token)
	return record.issuedAt, ok
}

// ServeHTTP routes a request to the login or whoami endpoint. Any other
// path gets 404 with an empty body, and a wrong method gets 405 with an
// Allow header.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)

	// The server sets Date only when the handler has not, so this value
	// reaches the client and the test clock controls it.
	now := s.now()
	issuedAt := now.Add(-s.currentIssuedAgo())
	w.Header().Set("Date", issuedAt.UTC().Format(http.TimeFormat))

	switch r.URL.Path {
	case loginPath:
		if r.Method != http.MethodPost {
			rejectMethod(w, http.MethodPost)
			return
		}
		s.serveLogin(w, r, issuedAt)

	case whoamiPath:
		if r.Method != http.MethodGet {
			rejectMethod(w, http.MethodGet)
			return
		}
		s.serveWhoami(w, r, now)

	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (s *Server) currentIssuedAgo() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuedAgo
}

func rejectMethod(w http.ResponseWriter, allowed string) {
	w.Header().Set("Allow", allowed)
	w.WriteHeader(http.StatusMethodNotAllowed)
}
