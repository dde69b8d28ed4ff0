//go:build e2e

package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// TestNoSecretLeaks writes a canary password, reads tokens and drives nine
// kinds of upstream fault through a real Vault with its server log at trace
// level (which includes the plugin's log) and a file audit device with
// default settings. It then searches the server log, the audit log and the
// output of every CLI command for the password and for every token and
// refresh token the API issued. A token may appear only in the response of
// the read that returned it; the password and the refresh tokens nowhere.
func TestNoSecretLeaks(t *testing.T) {
	password := "canary-" + randomHex(t, 12) + `-"q\ü`
	tokens := newTokenCapture(standin.Options{Username: standinUsername, Password: password})
	api := httptest.NewServer(tokens)
	t.Cleanup(api.Close)

	v := startDevVault(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	v.mustCLI(t, "audit", "enable", "file", "file_path="+auditPath)
	v.enablePlugin(t)

	run := &transcript{vault: v}

	// Config writes and reads, token reads, a lease lookup and a revoke.
	run.mustSucceed(t, configJSON(t, map[string]interface{}{
		"username": standinUsername, "password": password, "url": api.URL,
	}), "write", mountPath+"/config", "-")
	run.mustSucceed(t, "", "read", mountPath+"/config")
	run.mustSucceed(t, "", "read", "-format=json", mountPath+"/config")
	var leaseID string
	for range 3 {
		var read struct {
			LeaseID string `json:"lease_id"`
			Data    struct {
				Token string `json:"token"`
			} `json:"data"`
		}
		out := run.mustSucceed(t, "", "read", "-format=json", mountPath+"/token")
		if err := json.Unmarshal([]byte(out), &read); err != nil || read.Data.Token == "" {
			t.Fatalf("token read output %q has no token: %v", out, err)
		}
		run.markTokenResponse(read.Data.Token)
		leaseID = read.LeaseID
	}
	run.mustSucceed(t, "", "read", mountPath+"/token")
	run.markTokenResponse("")
	run.mustSucceed(t, "", "lease", "lookup", leaseID)
	run.mustSucceed(t, "", "lease", "revoke", leaseID)

	// Writes whose password is not a string: the framework's own error
	// would quote the value.
	for _, value := range []interface{}{[]string{password}, map[string]string{"nested": password}} {
		run.mustFail(t, configJSON(t, map[string]interface{}{"password": value}),
			"write", mountPath+"/config", "-")
	}
	// A bad url with the password in the same write.
	run.mustFail(t, configJSON(t, map[string]interface{}{
		"password": password, "url": "ftp://" + password + "@127.0.0.1/",
	}), "write", mountPath+"/config", "-")

	// Every fault, first as a checked config write, then as a token read.
	for _, fault := range leakFaults(t, api.URL, tokens.fake, password) {
		if fault.before != nil {
			fault.before()
		}
		args := append([]string{"write", mountPath + "/config", "url=" + fault.url}, fault.extra...)
		run.mustFail(t, "", args...)
		run.mustSucceed(t, "", append(args, "verify_credentials=false")...)
		res := run.mustFail(t, "", "read", mountPath+"/token")
		if !strings.Contains(res.Stderr, fault.want) {
			t.Errorf("%s: token read error does not contain %q:\n%s", fault.name, fault.want, res.Stderr)
		}
		if fault.after != nil {
			fault.after()
		}
	}

	// Back to a working upstream: the stored password never changed.
	run.mustSucceed(t, "", "write", mountPath+"/config", "url="+api.URL, "request_timeout=10")
	run.mustSucceed(t, "", "read", "-format=json", mountPath+"/token")
	run.markTokenResponse("")

	v.stop()
	serverLog := readFile(t, v.LogPath)
	auditLog := readFile(t, auditPath)

	// The search is only as good as what it searches: the logs must hold
	// the plugin's lines and the audit entries of the requests above.
	for _, want := range []string{"config written", "login failed", "retrying login", "login succeeded"} {
		if !strings.Contains(serverLog, want) {
			t.Errorf("Vault's log has no plugin line %q, so the plugin's log was not searched", want)
		}
	}
	for _, want := range []string{`"path":"noventiq/token"`, `"path":"noventiq/config"`, "hmac-sha256:"} {
		if !strings.Contains(auditLog, want) {
			t.Errorf("audit log has no %s", want)
		}
	}

	issued := tokens.issued()
	if len(issued) < 10 {
		t.Errorf("the API issued %d tokens and refresh tokens, want at least 10", len(issued))
	}
	sources := []transcriptEntry{
		{command: "(Vault's server log)", output: serverLog},
		{command: "(the audit log)", output: auditLog},
	}
	for _, source := range append(sources, run.entries...) {
		for _, form := range secretForms(password) {
			if strings.Contains(source.output, form) {
				t.Errorf("vault %s: output contains the password as %q", source.command, form)
			}
		}
		for _, value := range issued {
			if value != source.token && strings.Contains(source.output, value) {
				t.Errorf("vault %s: output contains the issued value %q", source.command, value)
			}
		}
	}
	t.Logf("searched %d CLI outputs, %d KiB of server log and %d KiB of audit log "+
		"for the password and %d issued tokens and refresh tokens",
		len(run.entries), len(serverLog)>>10, len(auditLog)>>10, len(issued))
}

// transcript runs CLI commands as root and keeps their output.
type transcript struct {
	vault   *vaultServer
	entries []transcriptEntry
}

type transcriptEntry struct {
	command string
	output  string

	// token is the token that this command's output returned, if any.
	token string
}

func (r *transcript) run(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	res := r.vault.cli(t, r.vault.Token, stdin, args...)
	r.entries = append(r.entries, transcriptEntry{
		command: strings.Join(args, " "),
		output:  res.Stdout + res.Stderr,
	})
	return res
}

func (r *transcript) mustSucceed(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	res := r.run(t, stdin, args...)
	if res.Err != nil {
		t.Fatalf("vault %s: %v\n%s%s", strings.Join(args, " "), res.Err, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

func (r *transcript) mustFail(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	res := r.run(t, stdin, args...)
	if res.Err == nil {
		t.Errorf("vault %s succeeded, want an error\n%s", strings.Join(args, " "), res.Stdout)
	}
	return res
}

// markTokenResponse records that the last command returned a token. Empty
// token means the token is taken from the output's token field.
func (r *transcript) markTokenResponse(token string) {
	last := &r.entries[len(r.entries)-1]
	if token == "" {
		token = tokenField(last.output)
	}
	last.token = token
}

// tokenField returns the value of the token field in a `vault read` output,
// in table or JSON format.
func tokenField(output string) string {
	var read struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(output), &read) == nil {
		return read.Data.Token
	}
	scanner := bufio.NewScanner(strings.NewReader(output))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 2 && fields[0] == "token" {
			return fields[1]
		}
	}
	return ""
}

// tokenCapture serves the stand-in API and keeps every token and refresh
// token that it issues.
type tokenCapture struct {
	fake *standin.Server

	mu     sync.Mutex
	values []string
}

func newTokenCapture(opts standin.Options) *tokenCapture {
	return &tokenCapture{fake: standin.New(opts)}
}

func (c *tokenCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	recorder := httptest.NewRecorder()
	c.fake.ServeHTTP(recorder, r)

	var body struct {
		Token        string `json:"token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(recorder.Body.Bytes(), &body) == nil && body.Token != "" {
		c.mu.Lock()
		c.values = append(c.values, body.Token, body.RefreshToken)
		c.mu.Unlock()
	}

	for key, values := range recorder.Header() {
		w.Header()[key] = values
	}
	w.WriteHeader(recorder.Code)
	_, _ = w.Write(recorder.Body.Bytes())
}

func (c *tokenCapture) issued() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.values...)
}

// leakFault is an upstream fault for the leak test: the config url that
// reaches it, extra config fields, and a fragment of the expected error.
type leakFault struct {
	name  string
	url   string
	extra []string
	want  string

	// before and after, when set, run around the fault's commands.
	before, after func()
}

// leakFaults starts one upstream per kind of fault. Each that can see the
// login request's body handles the password: it rejects it, echoes it back
// or ignores it.
func leakFaults(t *testing.T, apiURL string, fake *standin.Server, password string) []leakFault {
	t.Helper()
	faults := []leakFault{{
		name: "bad credentials", url: apiURL, want: "1006",
		before: func() { fake.SetCredentials(standinUsername, "rotated-"+password) },
		after:  func() { fake.SetCredentials(standinUsername, password) },
	}}

	faults = append(faults, leakFault{name: "server error", want: "HTTP 500",
		url: leakServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "<html>Internal Server Error</html>")
		})})

	var redirectTargetHits atomic.Int64
	target := leakServer(t, func(w http.ResponseWriter, r *http.Request) { redirectTargetHits.Add(1) })
	faults = append(faults, leakFault{name: "redirect", want: "redirect",
		url: leakServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target+"/v1/login_check", http.StatusTemporaryRedirect)
		}),
		after: func() {
			if got := redirectTargetHits.Load(); got != 0 {
				t.Errorf("redirect target received %d requests, want 0", got)
			}
		}})

	faults = append(faults, leakFault{name: "error that echoes the password", want: "unknown error code",
		url: leakServer(t, func(w http.ResponseWriter, r *http.Request) {
			var creds struct{ Password string }
			_ = json.NewDecoder(r.Body).Decode(&creds)
			body, _ := json.Marshal(map[string]interface{}{"errors": []interface{}{
				map[string]interface{}{"error": 4000, "message": "password " + creds.Password + " expired"},
			}})
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(body)
		})})

	faults = append(faults, leakFault{name: "200 without a token", want: "without a usable token",
		url: leakServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"token":12345}`)
		})})

	faults = append(faults, leakFault{name: "raw echo of the request", want: "malformed HTTP",
		url: "http://" + leakTCPServer(t, func(conn net.Conn) {
			request, err := http.ReadRequest(bufio.NewReader(conn))
			if err != nil {
				return
			}
			body, _ := io.ReadAll(request.Body)
			_, _ = conn.Write(append(body, "\r\n\r\n"...))
		})})

	faults = append(faults, leakFault{name: "no answer", want: "request_timeout (1s)", extra: []string{"request_timeout=1"},
		url: "http://" + leakTCPServer(t, func(conn net.Conn) {
			_, _ = io.Copy(io.Discard, conn)
		})})

	tlsAPI := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsAPI.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshakes
	tlsAPI.StartTLS()
	t.Cleanup(tlsAPI.Close)
	faults = append(faults, leakFault{name: "untrusted certificate", want: "ca_cert", url: tlsAPI.URL,
		extra: []string{"request_timeout=10"}})

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := listener.Addr().String()
	listener.Close()
	faults = append(faults, leakFault{name: "connection refused", want: "(connect)", url: "http://" + refused})

	return faults
}

func leakServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL
}

// leakTCPServer hands each connection on a 127.0.0.1 listener to serve and
// closes the listener and every connection when the test ends.
func leakTCPServer(t *testing.T, serve func(conn net.Conn)) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	return listener.Addr().String()
}

// configJSON encodes a config write for the CLI's standard input.
func configJSON(t *testing.T, data map[string]interface{}) string {
	t.Helper()
	body, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// secretForms returns a secret as is, JSON-escaped, Go-quoted, and
// JSON-escaped then Go-quoted, the forms in which a log line or an error
// would most likely carry it.
func secretForms(secret string) []string {
	escaped, _ := json.Marshal(secret)
	jsonForm := string(escaped[1 : len(escaped)-1])
	quoted := strconv.Quote(secret)
	quotedJSON := strconv.Quote(jsonForm)
	return []string{secret, jsonForm, quoted[1 : len(quoted)-1], quotedJSON[1 : len(quotedJSON)-1]}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
