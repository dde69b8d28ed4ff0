package noventiq

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// redactURL drops the user info and query of a URL taken from a response.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	parsed, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	parsed.User = nil
	parsed.RawQuery = ""
	parsed.Fragment = ""
	return parsed.String()
}

const (
	// redactedMarker replaces a secret in text that is shown or logged.
	redactedMarker = "[redacted]"

	// withheldText replaces a whole text that still contains a secret
	// after redaction.
	withheldText = "(withheld: the text contained a secret)"
)

// redact removes secret from s in the forms it can take in an error or an
// upstream message: as is, JSON-escaped, and with control characters turned
// into spaces as sanitizeMessage does. If the secret still appears, for
// example because it overlaps the marker that replaces it, the whole text is
// withheld.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}

	forms := secretForms(secret)
	for _, form := range forms {
		s = strings.ReplaceAll(s, form, redactedMarker)
	}
	for _, form := range forms {
		if strings.Contains(s, form) {
			return withheldText
		}
	}
	return s
}

// secretForms returns secret as is, JSON-escaped, Go-quoted as by %q, and
// with control characters turned into spaces, without duplicates.
func secretForms(secret string) []string {
	forms := []string{secret}
	add := func(form string) {
		if form != "" && !slices.Contains(forms, form) {
			forms = append(forms, form)
		}
	}

	if escaped, err := json.Marshal(secret); err == nil {
		add(string(escaped[1 : len(escaped)-1]))
	}
	quoted := strconv.Quote(secret)
	add(quoted[1 : len(quoted)-1])
	add(replaceControlCharacters(secret))
	return forms
}
