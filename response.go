package noventiq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// decodeToken reads a 200 response body and returns its token.
func decodeToken(body io.Reader) (string, error) {
	raw, err := io.ReadAll(io.LimitReader(body, maxResponseBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading the response body failed: %v", err)
	}
	return parseTokenResponse(raw)
}

// parseTokenResponse extracts the token from a login response body. The
// refresh_token the API also returns is ignored: nothing consumes it.
func parseTokenResponse(raw []byte) (string, error) {
	if len(raw) > maxResponseBytes {
		return "", fmt.Errorf("the response body is larger than %d bytes", maxResponseBytes)
	}

	var parsed struct {
		Token *string `json:"token"`
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	if err := decoder.Decode(&parsed); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return "", fmt.Errorf("the response's token is a JSON %s, not a string", typeErr.Value)
		}
		return "", errors.New("the response body is not valid JSON")
	}
	if parsed.Token == nil {
		return "", errors.New("the response has no token")
	}
	if *parsed.Token == "" {
		return "", errors.New("the response's token is empty")
	}
	if !isVisibleASCII(*parsed.Token) {
		return "", errors.New("the response's token contains characters other than visible ASCII, " +
			"so it cannot be sent in an Authorization header")
	}

	return *parsed.Token, nil
}

// isVisibleASCII reports whether s consists of printable ASCII characters
// other than space, the characters a Bearer token may contain (RFC 6750
// allows only a subset of them).
func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// parseDate parses an HTTP Date header in any of the three formats HTTP
// allows. It returns the zero time for a missing or unparseable value.
func parseDate(value string) time.Time {
	if value == "" {
		return time.Time{}
	}
	parsed, err := http.ParseTime(value)
	if err != nil {
		return time.Time{}
	}
	return parsed
}
