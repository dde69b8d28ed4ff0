package noventiq

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The seed corpora live in testdata/fuzz/<target>/, next to the seeds that
// each target adds in code.

// tokenResponseErrors is every error text parseTokenResponse may return. None
// of them quotes the body, so no token or echoed password can leak through.
var tokenResponseErrors = regexp.MustCompile(`^(` +
	`the response body is larger than 65536 bytes|` +
	`the response body is not valid JSON|` +
	`the response has no token|` +
	`the response's token is empty|` +
	`the response's token is a JSON [a-z]+, not a string|` +
	`the response's token contains characters other than visible ASCII, ` +
	`so it cannot be sent in an Authorization header)$`)

func FuzzParseTokenResponse(f *testing.F) {
	f.Add([]byte(`{"token":"fj45u923j59ju42395iu9423i59243u0","refresh_token":"4e283bb7620068c42d6"}`))
	f.Add([]byte(`{"token":"` + strings.Repeat("a", maxResponseBytes) + `"}`))
	f.Add(bytes.Repeat([]byte("["), maxResponseBytes))

	f.Fuzz(func(t *testing.T, raw []byte) {
		token, err := parseTokenResponse(raw)
		if err != nil {
			if token != "" {
				t.Errorf("error %q came with token %q", err, token)
			}
			if !tokenResponseErrors.MatchString(err.Error()) {
				t.Errorf("unexpected error text %q", err)
			}
			return
		}

		if len(raw) > maxResponseBytes {
			t.Errorf("accepted a body of %d bytes, over the %d byte cap", len(raw), maxResponseBytes)
		}
		if token == "" {
			t.Error("returned an empty token without an error")
		}
		for i := 0; i < len(token); i++ {
			if token[i] <= ' ' || token[i] > '~' {
				t.Fatalf("token %q has byte %#x, which an Authorization header cannot carry", token, token[i])
			}
		}

		// The token is the body's first JSON value's "token" member.
		var parsed struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&parsed); err != nil {
			t.Fatalf("accepted a body that encoding/json rejects: %v", err)
		}
		if parsed.Token != token {
			t.Errorf("token = %q, want %q", token, parsed.Token)
		}
	})
}

func FuzzParseDate(f *testing.F) {
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT", int64(784111777))
	f.Add("", int64(0))

	f.Fuzz(func(t *testing.T, value string, unix int64) {
		got := parseDate(value)
		want, err := http.ParseTime(value)
		if err != nil {
			if !got.IsZero() {
				t.Errorf("parseDate(%q) = %s for a value net/http rejects", value, got)
			}
		} else if !got.Equal(want) {
			t.Errorf("parseDate(%q) = %s, want %s", value, got, want)
		}

		// Every second from 1970 to 9999 survives a round trip through each
		// of the three formats HTTP allows. RFC 850 has two-digit years,
		// which Go reads as 1969 to 2068.
		const lastSecond = 253402300799 // 9999-12-31T23:59:59Z
		moment := time.Unix(int64(uint64(unix)%(lastSecond+1)), 0).UTC()
		layouts := []string{http.TimeFormat, time.ANSIC}
		if year := moment.Year(); year >= 1969 && year <= 2068 {
			layouts = append(layouts, time.RFC850)
		}
		for _, layout := range layouts {
			formatted := moment.Format(layout)
			if parsed := parseDate(formatted); !parsed.Equal(moment) {
				t.Errorf("parseDate(%q) = %s, want %s", formatted, parsed, moment)
			}
		}
	})
}

func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"errors":[{"error":1006,"message":"Bad credentials."}]}`), testPassword)
	f.Add([]byte(`{"errors":[{"error":4000,"message":"`+strings.Repeat("é", 150)+testPassword+`"}]}`), testPassword)

	f.Fuzz(func(t *testing.T, raw []byte, password string) {
		items := parseErrorBody(raw, password)

		var entries struct {
			Errors []json.RawMessage `json:"errors"`
		}
		_ = json.Unmarshal(raw, &entries)
		if len(items) > len(entries.Errors) {
			t.Errorf("%d items from a body with %d error entries", len(items), len(entries.Errors))
		}

		for _, item := range items {
			message := item.Message
			if !utf8.ValidString(message) {
				t.Errorf("message %q is not valid UTF-8", message)
			}
			if limit := maxUpstreamMessage + len("…"); len(message) > limit {
				t.Errorf("message has %d bytes, want at most %d", len(message), limit)
			}
			if strings.ContainsFunc(message, isControlCharacter) {
				t.Errorf("message %q contains a control character", message)
			}
			assertRedacted(t, message, password)
		}

		// Building the error text must not panic on any parsed body.
		_ = (&APIError{StatusCode: http.StatusBadRequest, Host: "api.test", Errors: items}).Error()
	})
}

func FuzzRedact(f *testing.F) {
	f.Add("password "+testPassword+" rejected", testPassword)
	f.Add(`{"password":"p\"a\\ss"}`, `p"a\ss`)
	f.Add("ted]ted]xx", "ted]x")
	f.Add("line\nbreak", "line break")

	f.Fuzz(func(t *testing.T, text, secret string) {
		redacted := redact(text, secret)
		if secret == "" {
			if redacted != text {
				t.Errorf("redact with no secret changed %q to %q", text, redacted)
			}
			return
		}
		assertRedacted(t, redacted, secret)
		if !strings.Contains(text, secret) && !strings.Contains(redacted, redactedMarker) &&
			redacted != withheldText && redacted != text {
			t.Errorf("redact changed %q to %q without finding the secret", text, redacted)
		}
	})
}

// assertRedacted fails if text, which is not withheldText, contains the
// secret as is, JSON-escaped, Go-quoted, or with control characters turned
// into spaces.
func assertRedacted(t *testing.T, text, secret string) {
	t.Helper()
	if secret == "" || text == withheldText {
		return
	}

	escaped, _ := json.Marshal(secret)
	quoted := strconv.Quote(secret)
	forms := []string{
		secret,
		string(escaped[1 : len(escaped)-1]),
		quoted[1 : len(quoted)-1],
		strings.Map(func(r rune) rune {
			if isControlCharacter(r) {
				return ' '
			}
			return r
		}, secret),
	}
	for _, form := range forms {
		if strings.Contains(text, form) {
			t.Errorf("text %q contains the secret %q as %q", text, secret, form)
		}
	}
}

func isControlCharacter(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}
