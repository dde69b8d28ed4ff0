package standin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// maxLoginBody is the maximum number of body bytes that a login request may
// send. A login body is two short strings, so 64 KiB leaves ample room.
const maxLoginBody = 64 << 10

type loginResponse struct {
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
}

// serveLogin runs the vendor's login checks in the vendor's order and
// responds with the error of the first one that fails. If all pass, it
// issues a token dated issuedAt.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request, issuedAt time.Time) {
	s.loginRequests.Add(1)

	if !isJSONMediaType(r.Header.Get("Content-Type")) {
		writeError(w, errInvalidContentType)
		return
	}

	// NOTE: the vendor documents no body size limit. The stand-in rejects a
	// larger body as invalid JSON (110) without reading it to the end.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		writeError(w, errInvalidJSON)
		return
	}

	username, password, err := parseCredentials(body)
	if err != nil {
		writeError(w, errInvalidJSON)
		return
	}
	if username == "" || password == "" {
		writeError(w, errInvalidAuthData)
		return
	}
	if !s.credentialsMatch(username, password) {
		writeError(w, errBadCredentials)
		return
	}

	token, refreshToken := s.issueToken(username, issuedAt)
	s.tokensIssued.Add(1)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, loginResponse{Token: token, RefreshToken: refreshToken})
}

// isJSONMediaType reports whether a Content-Type header value names
// application/json. Parameters such as charset are ignored, and a value that
// does not parse is not JSON.
func isJSONMediaType(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && mediaType == "application/json"
}

// parseCredentials decodes a login body. It returns an error unless the body
// is one JSON object whose "username" and "password" members, where present,
// are strings. A missing member comes back as the empty string. Member
// names match exactly, so "Username" is not "username".
func parseCredentials(body []byte) (username, password string, err error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return "", "", err
	}
	if members == nil {
		return "", "", errors.New("body is null, not a JSON object")
	}

	username, err = stringMember(members, "username")
	if err != nil {
		return "", "", err
	}
	password, err = stringMember(members, "password")
	if err != nil {
		return "", "", err
	}
	return username, password, nil
}

// stringMember returns the string value of the named member, or "" if the
// member is absent. A null, number or other non-string value is an error,
// which json.Unmarshal alone would let through for null.
func stringMember(members map[string]json.RawMessage, name string) (string, error) {
	raw, ok := members[name]
	if !ok {
		return "", nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", fmt.Errorf("member %q is not a JSON string", name)
	}

	var value string
	if err := json.Unmarshal(raw, &value); err != nil {
		return "", fmt.Errorf("member %q: %w", name, err)
	}
	return value, nil
}

// credentialsMatch compares the request's credentials with the accepted ones
// in constant time. Both values are hashed first so that the time taken
// does not reveal the accepted lengths either. Empty accepted credentials
// match nothing.
func (s *Server) credentialsMatch(username, password string) bool {
	s.mu.Lock()
	wantUsername, wantPassword := s.username, s.password
	s.mu.Unlock()

	if wantUsername == "" || wantPassword == "" {
		return false
	}
	usernameOK := equalHashes(username, wantUsername)
	passwordOK := equalHashes(password, wantPassword)
	return usernameOK&passwordOK == 1
}

// equalHashes returns 1 if a and b have the same SHA-256 hash, else 0.
func equalHashes(a, b string) int {
	hashA := sha256.Sum256([]byte(a))
	hashB := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(hashA[:], hashB[:])
}
