package noventiq

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Error codes of the login endpoint, from the vendor's API reference.
const (
	codeInvalidJSON        = 110
	codeInvalidContentType = 111
	codeInvalidAuthData    = 1005
	codeBadCredentials     = 1006
)

// errorMeanings explains each documented code in the operator's terms.
var errorMeanings = map[int]string{
	codeInvalidJSON:        "JSON is not valid",
	codeInvalidContentType: "invalid data format (Content-Type)",
	codeInvalidAuthData:    "invalid authorization data: username or password missing or malformed",
	codeBadCredentials:     "bad credentials",
}

// maxUpstreamMessage caps how much of an upstream error message is quoted
// back for a code the plugin does not know.
const maxUpstreamMessage = 200

// APIErrorItem is one entry of an error response's "errors" list.
type APIErrorItem struct {
	Code    int
	Message string
}

// APIError is a login response with a status other than 200.
type APIError struct {
	StatusCode int
	Host       string
	Errors     []APIErrorItem

	// Path is the path the login was sent to, without any query.
	Path string

	// Location is the redirect target of a 3xx response, without user info
	// or query.
	Location string

	// Attempts counts the requests of the login, retries included.
	Attempts int
}

// HasCode reports whether the response carried the given error code.
func (e *APIError) HasCode(code int) bool {
	for _, item := range e.Errors {
		if item.Code == code {
			return true
		}
	}
	return false
}

func (e *APIError) Error() string {
	status := fmt.Sprintf("HTTP %d", e.StatusCode)

	switch {
	case e.HasCode(codeBadCredentials):
		return fmt.Sprintf("Noventiq API at %s rejected the stored credentials (%s, error %d %s); "+
			"write a valid username and password to the config path",
			e.Host, status, codeBadCredentials, errorMeanings[codeBadCredentials])
	case e.StatusCode >= 300 && e.StatusCode < 400:
		return fmt.Sprintf("Noventiq API at %s answered the login with a redirect (%s) to %q; "+
			"redirects are not followed because the request carries the password: "+
			"set url to the final address", e.Host, status, e.Location)
	case e.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("Noventiq API at %s has no login endpoint at %s (%s); "+
			"check the url field of the config", e.Host, e.Path, status)
	case e.StatusCode >= 500:
		if e.Attempts > 1 {
			status = fmt.Sprintf("%s after %d attempts", status, e.Attempts)
		}
		return fmt.Sprintf("Noventiq API at %s failed with %s; the API is failing, try again later",
			e.Host, status)
	case len(e.Errors) > 0:
		return fmt.Sprintf("Noventiq API at %s rejected the login request (%s): %s",
			e.Host, status, e.describeCodes())
	default:
		return fmt.Sprintf("Noventiq API at %s answered the login with unexpected %s", e.Host, status)
	}
}

// describeCodes lists the codes as "110 JSON is not valid; 1005 ...".
func (e *APIError) describeCodes() string {
	parts := make([]string, 0, len(e.Errors))
	for _, item := range e.Errors {
		meaning, known := errorMeanings[item.Code]
		if !known {
			meaning = "unknown error code"
			if item.Message != "" {
				meaning += ": " + item.Message
			}
		}
		parts = append(parts, fmt.Sprintf("error %d %s", item.Code, meaning))
	}
	return strings.Join(parts, "; ")
}

// parseErrorBody reads the "errors" list of an error response. A body that
// is not in the documented shape yields no items. Upstream messages are
// shortened, stripped of control characters and scrubbed of the password
// in case the upstream echoes the request.
func parseErrorBody(raw []byte, password string) []APIErrorItem {
	var parsed struct {
		Errors []struct {
			Error   json.Number `json:"error"`
			Message string      `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &parsed); err != nil {
		return nil
	}

	items := make([]APIErrorItem, 0, len(parsed.Errors))
	for _, entry := range parsed.Errors {
		code, err := entry.Error.Int64()
		if err != nil {
			continue
		}
		items = append(items, APIErrorItem{
			Code:    int(code),
			Message: cleanUpstreamText(entry.Message, password),
		})
	}
	return items
}

// cleanUpstreamText makes text from the upstream or the network fit for an
// error message: no password, no control characters, at most
// maxUpstreamMessage bytes. It redacts before sanitizing, so that cutting
// the text cannot leave part of the password, and again after, in case
// turning control characters into spaces formed the password.
func cleanUpstreamText(text, password string) string {
	return redact(sanitizeMessage(redact(text, password)), password)
}

// sanitizeMessage turns control characters into spaces, drops invalid
// UTF-8 and shortens the text to maxUpstreamMessage bytes.
func sanitizeMessage(message string) string {
	cleaned := strings.ToValidUTF8(replaceControlCharacters(message), "")
	if len(cleaned) > maxUpstreamMessage {
		cleaned = strings.ToValidUTF8(cleaned[:maxUpstreamMessage], "") + "…"
	}
	return strings.TrimSpace(cleaned)
}

func replaceControlCharacters(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return ' '
		}
		return r
	}, s)
}

// TransportError is a login that got no HTTP response: a timeout, a DNS,
// TLS or connection failure.
type TransportError struct {
	Host   string
	Kind   string
	Detail string
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("login to Noventiq API at %s failed (%s): %s", e.Host, e.Kind, e.Detail)
}

// ResponseError is a 200 response that does not carry a usable token.
type ResponseError struct {
	Host   string
	Reason string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("Noventiq API at %s returned HTTP 200 without a usable token: %s", e.Host, e.Reason)
}
