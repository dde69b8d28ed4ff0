package standin

import (
	"net/http"
	"strings"
	"time"
)

type whoamiResponse struct {
	Username  string `json:"username"`
	IssuedAt  string `json:"issued_at"`
	ExpiresAt string `json:"expires_at"`
}

// serveWhoami checks the bearer token at now the way the vendor's other APIs
// do, and on success returns who the token was issued to and when it
// expires.
func (s *Server) serveWhoami(w http.ResponseWriter, r *http.Request, now time.Time) {
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		rejectToken(w, errTokenMissing)
		return
	}

	record, expiresAt, apiErr := s.checkToken(token, now)
	if apiErr != nil {
		rejectToken(w, apiErr)
		return
	}

	writeJSON(w, http.StatusOK, whoamiResponse{
		Username:  record.username,
		IssuedAt:  record.issuedAt.UTC().Format(time.RFC3339),
		ExpiresAt: expiresAt.UTC().Format(time.RFC3339),
	})
}

// bearerToken returns the token from an Authorization header value of the
// form "Bearer <token>". The scheme name is case-insensitive, as RFC 9110
// requires.
func bearerToken(authorization string) (string, bool) {
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}

	token = strings.TrimSpace(token)
	return token, token != ""
}

// rejectToken sends a 401 with a Bearer challenge in WWW-Authenticate, as
// RFC 6750 describes for a protected resource.
func rejectToken(w http.ResponseWriter, apiErr *apiError) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeError(w, apiErr)
}
