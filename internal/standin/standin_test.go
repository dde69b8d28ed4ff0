package standin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testUsername = "partner@example.com"
	testPassword = "s3cret"
)

// testStart is the fake clock's start time, in a zone other than UTC so the
// tests catch a Date header that is not converted to UTC.
var testStart = time.Date(2025, 3, 14, 15, 9, 26, 500_000_000, time.FixedZone("UTC+3", 3*3600))

var hexToken = regexp.MustCompile(`^[0-9a-f]{32}$`)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// response is a completed HTTP exchange with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// startServer serves a Server built from opts on a loopback httptest
// server. It fills in the test credentials and a fake clock where opts has
// none.
func startServer(t *testing.T, opts Options) (*Server, *httptest.Server, *fakeClock) {
	t.Helper()
	if opts.Username == "" && opts.Password == "" {
		opts.Username, opts.Password = testUsername, testPassword
	}
	clock := &fakeClock{now: testStart}
	if opts.Now == nil {
		opts.Now = clock.Now
	}

	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts, clock
}

// do sends one request and reads the whole response. Unlike send it is
// safe to call from goroutines other than the test's own.
func do(method, url string, header http.Header, body string) (response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for name, values := range header {
		req.Header[name] = values
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()

	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read body of %s %s: %w", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func send(t *testing.T, method, url string, header http.Header, body string) response {
	t.Helper()
	resp, err := do(method, url, header, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

func postLogin(t *testing.T, baseURL, contentType, body string) response {
	t.Helper()
	header := http.Header{}
	if contentType != "" {
		header.Set("Content-Type", contentType)
	}
	return send(t, http.MethodPost, baseURL+loginPath, header, body)
}

func credentialsJSON(t *testing.T, username, password string) string {
	t.Helper()
	body, err := json.Marshal(map[string]string{"username": username, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// login logs in with the test credentials and returns the token.
func login(t *testing.T, baseURL string) string {
	t.Helper()
	token, err := tryLogin(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// tryLogin logs in with the test credentials and returns the token. It is
// safe to call from goroutines other than the test's own.
func tryLogin(baseURL string) (string, error) {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, testUsername, testPassword)
	header := http.Header{"Content-Type": {"application/json"}}
	resp, err := do(http.MethodPost, baseURL+loginPath, header, body)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	if resp.status != http.StatusOK {
		return "", fmt.Errorf("login: status %d, body %s", resp.status, resp.body)
	}

	var out loginResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return "", fmt.Errorf("login: decode %s: %w", resp.body, err)
	}
	return out.Token, nil
}

func whoami(t *testing.T, baseURL, authorization string) response {
	t.Helper()
	header := http.Header{}
	if authorization != "" {
		header.Set("Authorization", authorization)
	}
	return send(t, http.MethodGet, baseURL+whoamiPath, header, "")
}

// checkError asserts that resp is a JSON error response with the status of
// want and exactly one entry, carrying the code and message of want.
func checkError(t *testing.T, resp response, want apiErrorWant) {
	t.Helper()
	if resp.status != want.status {
		t.Errorf("status = %d, want %d (body %s)", resp.status, want.status, resp.body)
	}
	if got := resp.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}

	var body struct {
		Errors []struct {
			Error   int    `json:"error"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil {
		t.Fatalf("decode error body %s: %v", resp.body, err)
	}
	if len(body.Errors) != 1 {
		t.Fatalf("got %d error entries, want 1: %s", len(body.Errors), resp.body)
	}
	if body.Errors[0].Error != want.code {
		t.Errorf("error code = %d, want %d", body.Errors[0].Error, want.code)
	}
	if body.Errors[0].Message != want.message {
		t.Errorf("error message = %q, want %q", body.Errors[0].Message, want.message)
	}
}

// apiErrorWant is an expected error response: HTTP status, vendor code and
// message text, written out here so the tests pin the vendor's wording.
type apiErrorWant struct {
	status  int
	code    int
	message string
}

var (
	want110  = apiErrorWant{http.StatusBadRequest, 110, "JSON is not valid."}
	want111  = apiErrorWant{http.StatusBadRequest, 111, "Invalid data format (Content-type)."}
	want1005 = apiErrorWant{http.StatusBadRequest, 1005, "Invalid authorization data."}
	want1006 = apiErrorWant{http.StatusUnauthorized, 1006, "Bad credentials."}
	want1007 = apiErrorWant{http.StatusUnauthorized, 1007, "Token is invalid."}
	want1008 = apiErrorWant{http.StatusUnauthorized, 1008, "Token is missing."}
	want1009 = apiErrorWant{http.StatusUnauthorized, 1009, "Token has expired."}
)

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	_, ts, _ := startServer(t, Options{})

	const (
		valid    = `{"username":"partner@example.com","password":"s3cret"}`
		jsonType = "application/json"
	)
	oversized := `{"username":"partner@example.com","password":"s3cret","padding":"` +
		strings.Repeat("x", 64<<10) + `"}`

	tests := []struct {
		name        string
		contentType string
		body        string
		want        apiErrorWant
	}{
		{"no content type", "", valid, want111},
		{"text/plain", "text/plain", valid, want111},
		{"form encoded", "application/x-www-form-urlencoded", valid, want111},
		{"json suffix type", "application/problem+json", valid, want111},
		{"unparsable type", "application/json; =x", valid, want111},
		{"wrong type and bad json", "text/plain", `{"username":`, want111},
		{"wrong type and no fields", "text/plain", `{}`, want111},
		{"wrong type and bad creds", "text/plain", credentialsJSON(t, "x", "y"), want111},

		{"empty body", jsonType, "", want110},
		{"truncated object", jsonType, `{"username":"a","password":`, want110},
		{"trailing data", jsonType, valid + ` {}`, want110},
		{"array", jsonType, `[` + valid + `]`, want110},
		{"string", jsonType, `"partner@example.com"`, want110},
		{"null", jsonType, `null`, want110},
		{"number username", jsonType, `{"username":42,"password":"s3cret"}`, want110},
		{"null password", jsonType, `{"username":"u","password":null}`, want110},
		{"object password", jsonType, `{"username":"u","password":{}}`, want110},
		{"array username", jsonType, `{"username":["a"],"password":"s3cret"}`, want110},
		{"bad type before missing", jsonType, `{"username":true}`, want110},
		{"body over limit", jsonType, oversized, want110},

		{"empty object", jsonType, `{}`, want1005},
		{"username missing", jsonType, `{"password":"s3cret"}`, want1005},
		{"password missing", jsonType, `{"username":"partner@example.com"}`, want1005},
		{"username empty", jsonType, credentialsJSON(t, "", testPassword), want1005},
		{"password empty", jsonType, credentialsJSON(t, testUsername, ""), want1005},
		{"capitalized names", jsonType, `{"Username":"partner@example.com","Password":"s3cret"}`,
			want1005},

		{"wrong password", jsonType, credentialsJSON(t, testUsername, "s3cret "), want1006},
		{"wrong username", jsonType, credentialsJSON(t, "other@example.org", testPassword),
			want1006},
		{"username case", jsonType, credentialsJSON(t, "Partner@example.com", testPassword),
			want1006},
		{"swapped fields", jsonType, credentialsJSON(t, testPassword, testUsername), want1006},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := postLogin(t, ts.URL, tt.contentType, tt.body)
			checkError(t, resp, tt.want)
		})
	}
}

func TestLoginSuccess(t *testing.T) {
	t.Parallel()
	s, ts, _ := startServer(t, Options{})

	contentTypes := []string{
		"application/json",
		"application/json; charset=utf-8",
		"Application/JSON",
		"application/json ; charset=UTF-8",
	}
	seen := map[string]bool{}
	for _, contentType := range contentTypes {
		body := `{ "username" : "partner@example.com", "password" : "s3cret", "extra": [1, 2] }`
		resp := postLogin(t, ts.URL, contentType, body)
		if resp.status != http.StatusOK {
			t.Fatalf("Content-Type %q: status = %d, want 200 (body %s)",
				contentType, resp.status, resp.body)
		}
		if got := resp.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("response Content-Type = %q, want application/json", got)
		}
		if got := resp.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", got)
		}

		var out map[string]string
		if err := json.Unmarshal(resp.body, &out); err != nil {
			t.Fatalf("decode %s: %v", resp.body, err)
		}
		if len(out) != 2 {
			t.Errorf("response members = %v, want token and refresh_token only", out)
		}
		if !hexToken.MatchString(out["token"]) {
			t.Errorf("token = %q, want 32 lowercase hex digits", out["token"])
		}
		if !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(out["refresh_token"]) {
			t.Errorf("refresh_token = %q, want lowercase hex digits", out["refresh_token"])
		}
		if seen[out["token"]] {
			t.Errorf("token %q issued twice", out["token"])
		}
		seen[out["token"]] = true

		if !s.TokenValid(out["token"]) {
			t.Errorf("TokenValid(%q) = false right after login", out["token"])
		}
	}

	// The vendor keeps earlier tokens valid when it issues a new one.
	for token := range seen {
		if !s.TokenValid(token) {
			t.Errorf("TokenValid(%q) = false after later logins", token)
		}
	}
	if got := s.TokensIssued(); got != int64(len(contentTypes)) {
		t.Errorf("TokensIssued() = %d, want %d", got, len(contentTypes))
	}
}

func TestLoginSpecialPasswords(t *testing.T) {
	t.Parallel()

	passwords := []struct {
		name     string
		password string
	}{
		{"double quotes", `pa"ss"word`},
		{"backslashes", `C:\path\to\secret\`},
		{"escaped-looking text", `\u0041\n`},
		{"newlines", "line one\nline two\r\n"},
		{"tab and spaces", "\t lead and trail \t"},
		{"non-ASCII", "пароль-密码-contraseña"},
		{"emoji", "key 🔑 lock 🔒"},
		{"NUL byte", "before\x00after"},
		{"long", strings.Repeat("long-password/", 500)},
	}
	for _, tt := range passwords {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const username = `user "quoted" \ ü`
			_, ts, _ := startServer(t, Options{Username: username, Password: tt.password})

			exact := credentialsJSON(t, username, tt.password)
			resp := postLogin(t, ts.URL, "application/json", exact)
			if resp.status != http.StatusOK {
				t.Errorf("exact password: status = %d, want 200 (body %s)", resp.status, resp.body)
			}

			// Dropping the last character must be enough to fail, so no
			// trailing newline, space or multi-byte rune is ignored.
			runes := []rune(tt.password)
			shortened := credentialsJSON(t, username, string(runes[:len(runes)-1]))
			resp = postLogin(t, ts.URL, "application/json", shortened)
			checkError(t, resp, want1006)
		})
	}
}

func TestLoginDecodesJSONEscapes(t *testing.T) {
	t.Parallel()
	_, ts, _ := startServer(t, Options{Username: "café", Password: "a\"b\\c\nd/é"})

	body := `{"username":"caf\u00e9","password":"a\"b\\c\nd\/\u00E9"}`
	resp := postLogin(t, ts.URL, "application/json", body)
	if resp.status != http.StatusOK {
		t.Errorf("status = %d, want 200 (body %s)", resp.status, resp.body)
	}
}

func TestLoginWithoutConfiguredCredentials(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	resp := postLogin(t, ts.URL, "application/json", credentialsJSON(t, "anyone", "anything"))
	checkError(t, resp, want1006)

	s.SetCredentials("anyone", "")
	resp = postLogin(t, ts.URL, "application/json", credentialsJSON(t, "anyone", "anything"))
	checkError(t, resp, want1006)
}

func TestSetCredentials(t *testing.T) {
	t.Parallel()
	s, ts, _ := startServer(t, Options{})
	oldToken := login(t, ts.URL)

	s.SetCredentials("new-user", "new-password")

	resp := postLogin(t, ts.URL, "application/json", credentialsJSON(t, testUsername, testPassword))
	checkError(t, resp, want1006)

	resp = postLogin(t, ts.URL, "application/json", credentialsJSON(t, "new-user", "new-password"))
	if resp.status != http.StatusOK {
		t.Errorf("new credentials: status = %d, want 200 (body %s)", resp.status, resp.body)
	}
	if !s.TokenValid(oldToken) {
		t.Error("token issued before SetCredentials is no longer valid")
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	s, ts, _ := startServer(t, Options{})

	tests := []struct {
		method string
		path   string
		status int
		allow  string
	}{
		{http.MethodGet, loginPath, http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, loginPath, http.StatusMethodNotAllowed, "POST"},
		{http.MethodHead, loginPath, http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, whoamiPath, http.StatusMethodNotAllowed, "GET"},
		{http.MethodDelete, whoamiPath, http.StatusMethodNotAllowed, "GET"},
		{http.MethodGet, "/", http.StatusNotFound, ""},
		{http.MethodPost, "/v1/login_check/", http.StatusNotFound, ""},
		{http.MethodPost, "/v2/login_check", http.StatusNotFound, ""},
		{http.MethodPost, "/V1/LOGIN_CHECK", http.StatusNotFound, ""},
		{http.MethodGet, "/v1/token", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			header := http.Header{"Content-Type": {"application/json"}}
			body := credentialsJSON(t, testUsername, testPassword)
			resp := send(t, tt.method, ts.URL+tt.path, header, body)
			if resp.status != tt.status {
				t.Errorf("status = %d, want %d", resp.status, tt.status)
			}
			if got := resp.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if len(resp.body) != 0 {
				t.Errorf("body = %q, want empty", resp.body)
			}
		})
	}

	if got := s.LoginRequests(); got != 0 {
		t.Errorf("LoginRequests() = %d, want 0 because no POST reached %s", got, loginPath)
	}
	if got := s.Requests(); got != int64(len(tests)) {
		t.Errorf("Requests() = %d, want %d", got, len(tests))
	}
}

func TestDateHeader(t *testing.T) {
	t.Parallel()
	s, ts, clock := startServer(t, Options{IssuedAgo: 90 * time.Minute})

	// testStart is 15:09:26.5 at UTC+3, so 12:09:26 UTC, minus 90 minutes.
	const want = "Fri, 14 Mar 2025 10:39:26 GMT"
	token := login(t, ts.URL)

	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	bearerHeader := http.Header{"Authorization": {"Bearer " + token}}
	requests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
	}{
		{"login success", http.MethodPost, loginPath, jsonHeader,
			credentialsJSON(t, testUsername, testPassword)},
		{"login error", http.MethodPost, loginPath, jsonHeader, "{"},
		{"wrong method", http.MethodGet, loginPath, nil, ""},
		{"not found", http.MethodGet, "/missing", nil, ""},
		{"whoami", http.MethodGet, whoamiPath, bearerHeader, ""},
		{"whoami error", http.MethodGet, whoamiPath, nil, ""},
	}
	for _, req := range requests {
		resp := send(t, req.method, ts.URL+req.path, req.header, req.body)
		if got := resp.header.Get("Date"); got != want {
			t.Errorf("%s: Date = %q, want %q", req.name, got, want)
		}
	}

	s.SetIssuedAgo(-time.Hour)
	clock.Advance(30 * time.Second)
	resp := postLogin(t, ts.URL, "text/plain", "")
	if got, want := resp.header.Get("Date"), "Fri, 14 Mar 2025 13:09:56 GMT"; got != want {
		t.Errorf("after SetIssuedAgo(-1h): Date = %q, want %q", got, want)
	}
}

func TestDateHeaderDefaultsToNow(t *testing.T) {
	t.Parallel()
	s := New(Options{Username: testUsername, Password: testPassword})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	before := time.Now().Truncate(time.Second)
	resp := send(t, http.MethodGet, ts.URL+"/missing", nil, "")
	after := time.Now()

	date, err := http.ParseTime(resp.header.Get("Date"))
	if err != nil {
		t.Fatalf("parse Date %q: %v", resp.header.Get("Date"), err)
	}
	if date.Before(before) || date.After(after) {
		t.Errorf("Date = %v, want between %v and %v", date, before, after)
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	s, ts, _ := startServer(t, Options{})

	postLogin(t, ts.URL, "text/plain", "")                                          // 111
	postLogin(t, ts.URL, "application/json", "{")                                   // 110
	postLogin(t, ts.URL, "application/json", "{}")                                  // 1005
	postLogin(t, ts.URL, "application/json", credentialsJSON(t, testUsername, "x")) // 1006
	token := login(t, ts.URL)
	login(t, ts.URL)
	send(t, http.MethodGet, ts.URL+loginPath, nil, "") // 405
	send(t, http.MethodGet, ts.URL+"/missing", nil, "")
	whoami(t, ts.URL, "Bearer "+token)

	if got := s.LoginRequests(); got != 6 {
		t.Errorf("LoginRequests() = %d, want 6", got)
	}
	if got := s.TokensIssued(); got != 2 {
		t.Errorf("TokensIssued() = %d, want 2", got)
	}
	if got := s.Requests(); got != 9 {
		t.Errorf("Requests() = %d, want 9", got)
	}
}

func TestWhoamiErrors(t *testing.T) {
	t.Parallel()
	_, ts, _ := startServer(t, Options{})
	token := login(t, ts.URL)

	tests := []struct {
		name          string
		authorization string
		want          apiErrorWant
	}{
		{"no header", "", want1008},
		{"basic scheme", "Basic dXNlcjpwYXNz", want1008},
		{"scheme only", "Bearer", want1008},
		{"empty token", "Bearer    ", want1008},
		{"token without scheme", token, want1008},
		{"unknown token", "Bearer 0123456789abcdef0123456789abcdef", want1007},
		{"token with suffix", "Bearer " + token + "0", want1007},
		{"upper-case token", "Bearer " + strings.ToUpper(token), want1007},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := whoami(t, ts.URL, tt.authorization)
			checkError(t, resp, tt.want)
			if got := resp.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
		})
	}
}

func TestWhoamiValidToken(t *testing.T) {
	t.Parallel()
	_, ts, _ := startServer(t, Options{IssuedAgo: time.Hour})
	token := login(t, ts.URL)

	authorizations := []string{"Bearer " + token, "bearer " + token, "Bearer  " + token + " "}
	for _, authorization := range authorizations {
		resp := whoami(t, ts.URL, authorization)
		if resp.status != http.StatusOK {
			t.Fatalf("%q: status = %d, want 200 (body %s)", authorization, resp.status, resp.body)
		}
		if got := resp.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}

		var got map[string]string
		if err := json.Unmarshal(resp.body, &got); err != nil {
			t.Fatalf("decode %s: %v", resp.body, err)
		}
		want := map[string]string{
			"username":   testUsername,
			"issued_at":  "2025-03-14T11:09:26Z",
			"expires_at": "2025-03-15T11:09:26Z",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: body = %v, want %v", authorization, got, want)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		opts       Options
		validFor   time.Duration // time after login at which the token is last valid
		afterLogin func(*Server)
	}{
		{name: "default lifetime", opts: Options{}, validFor: 24 * time.Hour},
		{
			name:     "custom lifetime",
			opts:     Options{TokenLifetime: 10 * time.Minute},
			validFor: 10 * time.Minute,
		},
		{name: "issued ago", opts: Options{IssuedAgo: time.Hour}, validFor: 23 * time.Hour},
		{
			name:     "issued in future",
			opts:     Options{IssuedAgo: -time.Minute},
			validFor: 24*time.Hour + time.Minute,
		},
		{
			name:       "lifetime changed after login",
			opts:       Options{},
			validFor:   2 * time.Hour,
			afterLogin: func(s *Server) { s.SetTokenLifetime(2 * time.Hour) },
		},
		{
			name:       "lifetime reset to default",
			opts:       Options{TokenLifetime: time.Minute},
			validFor:   24 * time.Hour,
			afterLogin: func(s *Server) { s.SetTokenLifetime(0) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, ts, clock := startServer(t, tt.opts)
			token := login(t, ts.URL)
			if tt.afterLogin != nil {
				tt.afterLogin(s)
			}

			clock.Advance(tt.validFor - time.Nanosecond)
			if !s.TokenValid(token) {
				t.Errorf("TokenValid = false 1ns before expiry")
			}
			if resp := whoami(t, ts.URL, "Bearer "+token); resp.status != http.StatusOK {
				t.Errorf("whoami 1ns before expiry: status = %d, want 200 (body %s)",
					resp.status, resp.body)
			}

			clock.Advance(time.Nanosecond)
			if s.TokenValid(token) {
				t.Errorf("TokenValid = true at expiry")
			}
			resp := whoami(t, ts.URL, "Bearer "+token)
			checkError(t, resp, want1009)
		})
	}
}

func TestExpiredTokenStaysKnown(t *testing.T) {
	t.Parallel()
	s, ts, clock := startServer(t, Options{TokenLifetime: time.Minute})
	expired := login(t, ts.URL)

	clock.Advance(time.Hour)
	fresh := login(t, ts.URL)

	checkError(t, whoami(t, ts.URL, "Bearer "+expired), want1009)
	if !s.TokenValid(fresh) {
		t.Error("TokenValid(fresh) = false")
	}
}

func TestTokenStoreEvictsOldest(t *testing.T) {
	t.Parallel()
	s, ts, _ := startServer(t, Options{})
	s.tokens.max = 3

	var tokens []string
	for range 5 {
		tokens = append(tokens, login(t, ts.URL))
	}

	for i, token := range tokens {
		wantValid := i >= 2
		if got := s.TokenValid(token); got != wantValid {
			t.Errorf("TokenValid(token %d) = %v, want %v", i, got, wantValid)
		}
	}
	checkError(t, whoami(t, ts.URL, "Bearer "+tokens[0]), want1007)
	if got := len(s.tokens.records); got != 3 {
		t.Errorf("store holds %d tokens, want 3", got)
	}
}

func TestTokenIssuedAt(t *testing.T) {
	t.Parallel()
	s, ts, clock := startServer(t, Options{TokenLifetime: time.Minute, IssuedAgo: time.Hour})
	first := login(t, ts.URL)
	clock.Advance(2 * time.Minute)
	second := login(t, ts.URL)

	want := map[string]time.Time{
		first:  testStart.Add(-time.Hour),
		second: testStart.Add(2*time.Minute - time.Hour),
	}
	for token, wantIssuedAt := range want {
		issuedAt, ok := s.TokenIssuedAt(token)
		if !ok {
			t.Errorf("TokenIssuedAt(%q): not found", token)
			continue
		}
		if !issuedAt.Equal(wantIssuedAt) {
			t.Errorf("TokenIssuedAt(%q) = %v, want %v", token, issuedAt, wantIssuedAt)
		}
	}
	if s.TokenValid(first) {
		t.Errorf("TokenValid(first) = true after its lifetime, want it expired but still stored")
	}

	if _, ok := s.TokenIssuedAt("0123456789abcdef0123456789abcdef"); ok {
		t.Errorf("TokenIssuedAt of a token never issued: found")
	}
}

func TestTokenValidUnknown(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for _, token := range []string{"", "0123456789abcdef0123456789abcdef"} {
		if s.TokenValid(token) {
			t.Errorf("TokenValid(%q) = true on a server that issued nothing", token)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s, ts, clock := startServer(t, Options{})

	const (
		workers = 8
		logins  = 25
	)
	tokens := make(chan string, workers*logins)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range logins {
				token, err := tryLogin(ts.URL)
				if err != nil {
					t.Error(err)
					return
				}
				tokens <- token

				header := http.Header{"Authorization": {"Bearer " + token}}
				resp, err := do(http.MethodGet, ts.URL+whoamiPath, header, "")
				if err != nil {
					t.Errorf("whoami: %v", err)
				} else if resp.status != http.StatusOK {
					t.Errorf("whoami: status = %d, want 200 (body %s)", resp.status, resp.body)
				}
			}
		})
	}
	// Setters and readers run alongside the logins. None of these values
	// makes a fresh token invalid or changes the credentials.
	wg.Go(func() {
		for i := range 100 {
			s.SetIssuedAgo(time.Duration(i) * time.Second)
			s.SetTokenLifetime(48 * time.Hour)
			s.SetCredentials(testUsername, testPassword)
			clock.Advance(time.Millisecond)
			_ = s.Requests() + s.LoginRequests() + s.TokensIssued()
			_ = s.TokenValid("unknown")
		}
	})
	wg.Wait()
	close(tokens)

	seen := map[string]bool{}
	for token := range tokens {
		if seen[token] {
			t.Errorf("token %q issued twice", token)
		}
		seen[token] = true
	}
	if got := s.TokensIssued(); got != workers*logins {
		t.Errorf("TokensIssued() = %d, want %d", got, workers*logins)
	}
	if got := s.LoginRequests(); got != workers*logins {
		t.Errorf("LoginRequests() = %d, want %d", got, workers*logins)
	}
	if got := s.Requests(); got != 2*workers*logins {
		t.Errorf("Requests() = %d, want %d", got, 2*workers*logins)
	}
}
