package noventiq

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// faultServer is an upstream that misbehaves in one way, and how to reach it.
type faultServer struct {
	url    string
	host   string
	caCert string

	// dial, when set, replaces the dialer of the clients the test builds.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// seen counts what reached the upstream: HTTP requests, or connections
	// or dials where the fault stops a request from forming.
	seen func() int64

	// check, when set, runs after the token read for checks of its own.
	check func(t *testing.T)
}

// faultCase is one row of the fault matrix: a misbehaving upstream and the
// token read error it must produce.
type faultCase struct {
	name    string
	timeout time.Duration
	serve   func(t *testing.T) faultServer

	wantStatus int
	wantError  []string
	wantSeen   int64
}

// A login that retries spends at most the sum of the backoff ceilings
// waiting: 200 + 400 + 800 ms with maxRetries = 3. A request_timeout of
// retryTimeout leaves ample room for every attempt.
const retryTimeout = 10 * time.Second

func TestFaultMatrix(t *testing.T) {
	cases := []faultCase{
		{
			name: "connection refused", timeout: retryTimeout,
			serve:      refusedServer,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(connect)", "refused"},
			wantSeen:   maxRetries + 1,
		},
		{
			name: "host not found", timeout: retryTimeout,
			serve:      dnsFailureServer(true),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(dns)", "could not be resolved", "no such host"},
			wantSeen:   1,
		},
		{
			name: "DNS server failure", timeout: retryTimeout,
			serve:      dnsFailureServer(false),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(dns)", "could not be resolved", "DNS lookup failed"},
			wantSeen:   maxRetries + 1,
		},
		{
			name: "untrusted certificate", timeout: retryTimeout,
			serve:      tlsServer(false, false),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(tls)", "certificate could not be verified", "ca_cert"},
			wantSeen:   1,
		},
		{
			name: "certificate for another host", timeout: retryTimeout,
			serve:      tlsServer(true, true),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(tls)", "certificate could not be verified"},
			wantSeen:   1,
		},
		{
			name: "plain HTTP server behind an https url", timeout: retryTimeout,
			serve:      plainServerBehindHTTPS,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(tls)", "did not answer with TLS"},
			wantSeen:   1,
		},
		{
			name: "accepts and never answers", timeout: time.Second,
			serve:      silentServer,
			wantStatus: http.StatusGatewayTimeout,
			wantError:  []string{"(timeout)", "request_timeout (1s)"},
			wantSeen:   1,
		},
		{
			name: "slow trickle of the body", timeout: time.Second,
			serve:      trickleServer(http.StatusOK),
			wantStatus: http.StatusGatewayTimeout,
			wantError:  []string{"(timeout)", "request_timeout (1s)", "body did not arrive"},
			wantSeen:   1,
		},
		{
			name: "slow trickle of an error body", timeout: time.Second,
			serve:      trickleServer(http.StatusBadRequest),
			wantStatus: http.StatusGatewayTimeout,
			wantError:  []string{"(timeout)", "HTTP 400 response did not arrive"},
			wantSeen:   1,
		},
		{
			name: "server errors until request_timeout", timeout: time.Second,
			serve:      slowServerErrors,
			wantStatus: http.StatusGatewayTimeout,
			wantError:  []string{"(timeout)", "attempts, the last failure was HTTP 503"},
			wantSeen:   -1,
		},
		{
			name: "connection closed without a response", timeout: retryTimeout,
			serve:      closingServer,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(network)", "closed the connection before it sent a complete response"},
			wantSeen:   maxRetries + 1,
		},
		{
			name: "response that echoes the request", timeout: retryTimeout,
			serve:      echoServer,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(network)", "malformed HTTP", "quoted response text omitted"},
			wantSeen:   maxRetries + 1,
		},
		{
			name: "oversized response headers", timeout: retryTimeout,
			serve:      hugeHeaderServer,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"(network)", "headers exceeded"},
			wantSeen:   maxRetries + 1,
		},
	}

	for _, status := range []int{500, 502, 503, 504} {
		for _, body := range []struct{ name, contentType, text string }{
			{"HTML", "text/html", "<html><body><h1>Bad Gateway</h1></body></html>"},
			{"empty", "", ""},
		} {
			cases = append(cases, faultCase{
				name:    fmt.Sprintf("%d with %s body", status, body.name),
				timeout: retryTimeout,
				serve:   fixedServer(status, body.contentType, body.text),

				wantStatus: http.StatusBadGateway,
				wantError: []string{fmt.Sprintf("HTTP %d after %d attempts", status, maxRetries+1),
					"try again later"},
				wantSeen: maxRetries + 1,
			})
		}
	}

	for _, body := range []struct{ name, text, want string }{
		{"empty object", `{}`, "has no token"},
		{"empty token", `{"token":""}`, "token is empty"},
		{"null token", `{"token":null}`, "has no token"},
		{"number token", `{"token":12345}`, "token is a JSON number"},
		{"array token", `{"token":["a"]}`, "token is a JSON array"},
		{"token with a line break", `{"token":"abc\r\nX-Injected: 1"}`, "other than visible ASCII"},
		{"truncated JSON", `{"token":"abc`, "not valid JSON"},
		{"HTML", `<html><body>Welcome</body></html>`, "not valid JSON"},
		{"empty body", ``, "not valid JSON"},
		{"extra-large body", `{"token":"` + strings.Repeat("x", 1<<20) + `"}`, "larger than 65536 bytes"},
	} {
		cases = append(cases, faultCase{
			name:    "200 with " + body.name,
			timeout: retryTimeout,
			serve:   fixedServer(http.StatusOK, "application/json", body.text),

			wantStatus: http.StatusBadGateway,
			wantError:  []string{"HTTP 200 without a usable token", body.want},
			wantSeen:   1,
		})
	}

	for _, body := range []struct{ name, text string }{
		{"HTML", "<html>Forbidden</html>"},
		{"empty", ""},
	} {
		cases = append(cases, faultCase{
			name:    "403 with " + body.name + " body",
			timeout: retryTimeout,
			serve:   fixedServer(http.StatusForbidden, "text/html", body.text),

			wantStatus: http.StatusBadGateway,
			wantError:  []string{"unexpected HTTP 403"},
			wantSeen:   1,
		})
	}

	cases = append(cases,
		faultCase{
			name: "400 with several codes", timeout: retryTimeout,
			serve: fixedServer(http.StatusBadRequest, "application/json",
				`{"errors":[{"error":110,"message":"JSON is not valid."},`+
					`{"error":1005,"message":"Invalid authorization data."}]}`),
			wantStatus: http.StatusBadGateway,
			wantError: []string{"HTTP 400", "error 110 JSON is not valid",
				"error 1005 invalid authorization data"},
			wantSeen: 1,
		},
		faultCase{
			name: "400 with an unknown code", timeout: retryTimeout,
			serve: fixedServer(http.StatusBadRequest, "application/json",
				`{"errors":[{"error":4242,"message":"Account\nsuspended."}]}`),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"HTTP 400", "error 4242 unknown error code: Account suspended."},
			wantSeen:   1,
		},
		faultCase{
			name: "400 that echoes the password", timeout: retryTimeout,
			serve:      passwordEchoingServer,
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"error 4000 unknown error code: password [redacted] is not allowed"},
			wantSeen:   1,
		},
		faultCase{
			name: "401 bad credentials", timeout: retryTimeout,
			serve: fixedServer(http.StatusUnauthorized, "application/json",
				`{"errors":[{"error":1006,"message":"Bad credentials."}]}`),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"rejected the stored credentials", "error 1006", "config"},
			wantSeen:   1,
		},
		faultCase{
			name: "404 wrong url", timeout: retryTimeout,
			serve:      fixedServer(http.StatusNotFound, "", ""),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"no login endpoint", "check the url"},
			wantSeen:   1,
		},
		faultCase{
			name: "Date more than 24 hours old", timeout: retryTimeout,
			serve:      datedServer(func() string { return httpDate(time.Now().Add(-25 * time.Hour)) }),
			wantStatus: http.StatusBadGateway,
			wantError:  []string{"already expired", "check the clocks"},
			wantSeen:   1,
		},
	)

	for _, status := range []int{301, 302, 303, 307, 308} {
		cases = append(cases, faultCase{
			name:    fmt.Sprintf("redirect %d", status),
			timeout: retryTimeout,
			serve:   redirectServer(status),

			wantStatus: http.StatusBadGateway,
			wantError: []string{fmt.Sprintf("redirect (HTTP %d)", status), "not followed",
				"set url to the final address"},
			wantSeen: 1,
		})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runFault(t, tc)
		})
	}
}

// runFault configures a backend for the fault's upstream, reads a token,
// and checks the error, the time it took, that no lease was created, what
// reached the upstream and that no secret leaked.
func runFault(t *testing.T, tc faultCase) {
	t.Helper()
	server := tc.serve(t)
	if server.dial != nil {
		setTestDialer(t, server.dial)
	}

	tb := newTestBackend(t)
	data := map[string]interface{}{
		"username":           testUsername,
		"password":           testPassword,
		"url":                server.url,
		"request_timeout":    int(tc.timeout.Seconds()),
		"verify_credentials": false,
	}
	if server.caCert != "" {
		data["ca_cert"] = server.caCert
	}
	tb.writeConfig(t, data)

	start := time.Now()
	resp, err := tb.request(t, logical.ReadOperation, "token", nil)
	took := time.Since(start)

	if resp != nil && resp.Secret != nil {
		t.Errorf("a failed token read created a lease: %#v", resp.Secret)
	}
	if err == nil {
		t.Fatalf("token read succeeded, want an error; response %#v", resp)
	}

	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) {
		t.Errorf("error %q carries no HTTP status", err)
	} else if coded.Code() != tc.wantStatus {
		t.Errorf("status = %d, want %d", coded.Code(), tc.wantStatus)
	}

	message := err.Error()
	t.Logf("error: %s", message)
	for _, want := range append([]string{server.host}, tc.wantError...) {
		if !strings.Contains(message, want) {
			t.Errorf("error %q does not contain %q", message, want)
		}
	}
	assertNoSecret(t, "error", message, testPassword)

	// Twice the timeout leaves room for a slow machine and still proves the
	// read is bounded by request_timeout.
	if limit := 2*tc.timeout + time.Second; took > limit {
		t.Errorf("token read took %s, want at most %s with request_timeout %s", took, limit, tc.timeout)
	}

	if tc.wantSeen >= 0 {
		if got := server.seen(); got != tc.wantSeen {
			t.Errorf("upstream saw %d requests or connections, want %d", got, tc.wantSeen)
		}
	}
	if server.check != nil {
		server.check(t)
	}
	tb.assertLogsClean(t, secretVariants(testPassword)...)
}

// assertNoSecret fails if text contains secret in any of the escaped forms
// that error messages and logs produce.
func assertNoSecret(t *testing.T, what, text, secret string) {
	t.Helper()
	for _, variant := range secretVariants(secret) {
		if strings.Contains(text, variant) {
			t.Errorf("%s contains the secret as %q: %s", what, variant, text)
		}
	}
}

// secretVariants returns a secret as is, JSON-escaped, Go-quoted, and
// JSON-escaped then Go-quoted, the forms in which it could reach an error.
func secretVariants(secret string) []string {
	escaped, _ := json.Marshal(secret)
	jsonForm := string(escaped[1 : len(escaped)-1])
	quoted := strconv.Quote(secret)
	quotedJSON := strconv.Quote(jsonForm)
	return []string{secret, jsonForm, quoted[1 : len(quoted)-1], quotedJSON[1 : len(quotedJSON)-1]}
}

// setTestDialer makes clients built during the test dial with dial.
func setTestDialer(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t.Helper()
	previous := testDialContext
	testDialContext = dial
	t.Cleanup(func() { testDialContext = previous })
}

// countingServer serves handler on 127.0.0.1 and counts its requests.
func countingServer(t *testing.T, handler http.HandlerFunc) (faultServer, *httptest.Server) {
	t.Helper()
	srv, requests, _ := startServer(t, handler, false)
	return faultServer{url: srv.URL, host: srv.Listener.Addr().String(), seen: requests.Load}, srv
}

// startServer starts an HTTP or, with useTLS, an HTTPS server with
// httptest's self-signed certificate for 127.0.0.1, and counts its requests
// and connections.
func startServer(t *testing.T, handler http.HandlerFunc, useTLS bool) (srv *httptest.Server, requests, connections *atomic.Int64) {
	t.Helper()
	requests, connections = &atomic.Int64{}, &atomic.Int64{}
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			connections.Add(1)
		}
	}
	// The failed handshakes and broken connections that the tests provoke
	// would otherwise be logged to stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, requests, connections
}

func fixedServer(status int, contentType, body string) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		})
		return server
	}
}

// datedServer issues tokens with the given Date header.
func datedServer(date func() string) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", date())
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"token":"dated-token","refresh_token":"r"}`)
		})
		return server
	}
}

func httpDate(t time.Time) string {
	return t.UTC().Format(http.TimeFormat)
}

// passwordEchoingServer rejects every login with an unknown error code,
// whose message is shown, that quotes the password it received.
func passwordEchoingServer(t *testing.T) faultServer {
	server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		var creds struct{ Password string }
		_ = json.NewDecoder(r.Body).Decode(&creds)
		body, _ := json.Marshal(map[string]interface{}{
			"errors": []map[string]interface{}{{
				"error":   4000,
				"message": "password " + creds.Password + " is not allowed",
			}},
		})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(body)
	})
	return server
}

// redirectServer responds to every login with a redirect to a second server,
// which must receive nothing.
func redirectServer(status int) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		target, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"token":"from-the-redirect-target"}`)
		})
		server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", target.url+"/v1/login_check?session=secret-query")
			w.WriteHeader(status)
		})
		server.check = func(t *testing.T) {
			if got := target.seen(); got != 0 {
				t.Errorf("redirect target received %d requests, want 0", got)
			}
		}
		return server
	}
}

// slowServerErrors returns 503 after a pause, so that the retries use up a
// one-second request_timeout.
func slowServerErrors(t *testing.T) faultServer {
	server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	return server
}

// trickleServer sends status and headers at once, then one byte of the body
// every 50 ms for at most 10 s.
func trickleServer(status int) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		server, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			flusher := w.(http.Flusher)
			deadline := time.After(10 * time.Second)
			for {
				if _, err := io.WriteString(w, " "); err != nil {
					return
				}
				flusher.Flush()
				select {
				case <-r.Context().Done():
					return
				case <-deadline:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
		return server
	}
}

// tcpServer accepts connections on 127.0.0.1 and hands each to serve on its
// own goroutine. It counts connections and closes them all when the test
// ends.
func tcpServer(t *testing.T, serve func(conn net.Conn)) faultServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	var accepted atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		for _, conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})

	addr := listener.Addr().String()
	return faultServer{url: "http://" + addr, host: addr, seen: accepted.Load}
}

// silentServer accepts connections and never reads or writes.
func silentServer(t *testing.T) faultServer {
	return tcpServer(t, func(conn net.Conn) {
		// Block until the test's cleanup closes the connection.
		_, _ = io.Copy(io.Discard, conn)
	})
}

// closingServer reads the request and closes the connection unanswered.
func closingServer(t *testing.T) faultServer {
	return tcpServer(t, func(conn net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(conn))
		conn.Close()
	})
}

// echoServer sends the request body back as if it were a status line, the
// way a confused proxy might.
func echoServer(t *testing.T) faultServer {
	return tcpServer(t, func(conn net.Conn) {
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		_, _ = conn.Write(append(body, "\r\n\r\n"...))
	})
}

// hugeHeaderServer responds with 128 KiB of headers.
func hugeHeaderServer(t *testing.T) faultServer {
	return tcpServer(t, func(conn net.Conn) {
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		header := "HTTP/1.1 200 OK\r\nX-Padding: " + strings.Repeat("a", 128<<10) + "\r\n\r\n"
		_, _ = io.WriteString(conn, header)
	})
}

// refusedServer is a loopback address where nothing listens. seen counts
// the dials, because no connection is ever made.
func refusedServer(t *testing.T) faultServer {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()

	var dials atomic.Int64
	dialer := &net.Dialer{}
	return faultServer{
		url:  "http://" + addr,
		host: addr,
		dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dials.Add(1)
			return dialer.DialContext(ctx, network, address)
		},
		seen: dials.Load,
	}
}

// dnsFailureServer fails every dial with the error a resolver returns:
// "no such host" when notFound, a server failure otherwise. No name is ever
// looked up.
func dnsFailureServer(notFound bool) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		var dials atomic.Int64
		return faultServer{
			url:  "https://noventiq-api.test",
			host: "noventiq-api.test",
			dial: func(_ context.Context, network, address string) (net.Conn, error) {
				dials.Add(1)
				dnsErr := &net.DNSError{Name: "noventiq-api.test", Server: "127.0.0.53:53"}
				if notFound {
					dnsErr.Err, dnsErr.IsNotFound = "no such host", true
				} else {
					dnsErr.Err, dnsErr.IsTemporary = "server misbehaving", true
				}
				return nil, &net.OpError{Op: "dial", Net: network, Err: dnsErr}
			},
			seen: dials.Load,
		}
	}
}

// tlsServer serves a login on a TLS server with httptest's self-signed
// certificate for 127.0.0.1. With trusted, the config's ca_cert holds that
// certificate. With otherName, the url names another host, which the
// test's dialer routes to the server. seen counts TLS connections.
func tlsServer(trusted, otherName bool) func(t *testing.T) faultServer {
	return func(t *testing.T) faultServer {
		srv, connections := startTLSServer(t)
		server := faultServer{url: srv.URL, host: srv.Listener.Addr().String(), seen: connections.Load}
		if trusted {
			server.caCert = certificatePEM(srv)
		}
		if otherName {
			server.url = "https://noventiq-api.test"
			server.host = "noventiq-api.test"
			server.dial = routeTo(srv.Listener.Addr().String())
		}
		return server
	}
}

// startTLSServer starts a TLS server with a token login and counts its
// connections.
func startTLSServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	srv, _, connections := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token":"tls-token"}`)
	}, true)
	return srv, connections
}

func certificatePEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// routeTo returns a dialer that connects every dial to addr.
func routeTo(addr string) func(ctx context.Context, network, address string) (net.Conn, error) {
	dialer := &net.Dialer{}
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}
}

// plainServerBehindHTTPS is a plain HTTP server configured with an https
// url. seen counts connections.
func plainServerBehindHTTPS(t *testing.T) faultServer {
	srv, _, connections := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"token":"plain"}`)
	}, false)
	return faultServer{
		url:  strings.Replace(srv.URL, "http://", "https://", 1),
		host: srv.Listener.Addr().String(),
		seen: connections.Load,
	}
}

func TestFaultTLSWithCACertSucceeds(t *testing.T) {
	srv, _ := startTLSServer(t)
	tb := newTestBackend(t)
	tb.writeConfig(t, map[string]interface{}{
		"username": testUsername,
		"password": testPassword,
		"url":      srv.URL,
		"ca_cert":  certificatePEM(srv),
	})

	resp := tb.readToken(t)
	if got := resp.Data["token"]; got != "tls-token" {
		t.Errorf("token = %v, want tls-token", got)
	}
	if resp.Secret == nil {
		t.Error("token read through TLS created no lease")
	}
}

func TestFaultTLSVerificationCannotBeDisabled(t *testing.T) {
	for _, field := range []string{"insecure", "tls_skip_verify", "insecure_skip_verify", "skip_verify"} {
		t.Run(field, func(t *testing.T) {
			tb := newTestBackend(t)
			data := configData("https://127.0.0.1:1")
			data["verify_credentials"] = false
			data[field] = true
			resp, err := tb.request(t, logical.UpdateOperation, "config", data)
			if err != nil {
				t.Fatalf("config write: %v", err)
			}
			if resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "unknown field") {
				t.Errorf("config write with %s = %v, want an unknown field error", field, resp)
			}
			if cfg := tb.storedConfig(t); cfg != nil {
				t.Errorf("config stored despite the rejected field: %+v", cfg)
			}
		})
	}

	c := newTestClient(t, "https://127.0.0.1:1", time.Second)
	transport := c.http.HTTPClient.Transport.(*http.Transport)
	if transport.TLSClientConfig == nil || transport.TLSClientConfig.InsecureSkipVerify {
		t.Error("the client's TLS config skips certificate verification")
	}
}

// A password typed into the url by mistake, or a query, must not come back
// in the error that rejects the url.
func TestFaultURLErrorsHideSecrets(t *testing.T) {
	urls := []string{
		"ftp://" + testUsername + ":" + testPassword + "@127.0.0.1/",
		"https://" + testUsername + ":" + testPassword + "@api.test/",
		"http://" + testPassword + "@example.com/",
		"https://api.test/?key=" + testPassword,
		"https://api.test/#" + testPassword,
		"https://user:pa?ss" + testPassword + "@api.test/",
		"not a url " + testPassword,
	}
	for _, raw := range urls {
		t.Run(raw, func(t *testing.T) {
			tb := newTestBackend(t)
			data := configData(raw)
			data["verify_credentials"] = false
			resp, err := tb.request(t, logical.UpdateOperation, "config", data)
			if err != nil {
				t.Fatalf("config write: %v", err)
			}
			if resp == nil || !resp.IsError() {
				t.Fatalf("config write with url %q succeeded", raw)
			}
			message := resp.Error().Error()
			if !strings.Contains(message, "url") {
				t.Errorf("error %q does not name the url field", message)
			}
			assertNoSecret(t, "error", message, testPassword)
			if strings.Contains(message, "ss"+testPassword) {
				t.Errorf("error %q contains part of the user info", message)
			}
		})
	}
}

func TestFaultDateHeader(t *testing.T) {
	twoHoursAgo := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	cases := []struct {
		name string
		date func() string

		// wantIssued is the expected issued_at; the zero time means the
		// time the request was sent.
		wantIssued time.Time
		wantTTL    time.Duration
	}{
		{"RFC 1123", func() string { return twoHoursAgo.Format(http.TimeFormat) }, twoHoursAgo, 22 * time.Hour},
		{"RFC 850", func() string { return twoHoursAgo.Format(time.RFC850) }, twoHoursAgo, 22 * time.Hour},
		{"ANSI C", func() string { return twoHoursAgo.Format(time.ANSIC) }, twoHoursAgo, 22 * time.Hour},
		{"missing", nil, time.Time{}, 24 * time.Hour},
		{"garbage", func() string { return "not a date" }, time.Time{}, 24 * time.Hour},
		{"RFC 3339 instead of an HTTP date", func() string { return twoHoursAgo.Format(time.RFC3339) },
			time.Time{}, 24 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.date == nil {
					// A nil value stops net/http from adding its own Date.
					w.Header()["Date"] = nil
				} else {
					w.Header().Set("Date", tc.date())
				}
				_, _ = io.WriteString(w, `{"token":"dated"}`)
			})
			tb := newTestBackend(t)
			tb.writeConfig(t, configData(srv.URL))

			sent := time.Now()
			resp := tb.readToken(t)

			issued, err := time.Parse(time.RFC3339, resp.Data["issued_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantIssued.IsZero() {
				if issued.Before(sent.Add(-time.Second)) || issued.After(time.Now()) {
					t.Errorf("issued_at = %s, want the time the request was sent, %s", issued, sent)
				}
			} else if !issued.Equal(tc.wantIssued) {
				t.Errorf("issued_at = %s, want %s", issued, tc.wantIssued)
			}

			ttl := resp.Secret.TTL
			if ttl > tc.wantTTL || ttl < tc.wantTTL-time.Minute {
				t.Errorf("lease TTL = %s, want just under %s", ttl, tc.wantTTL)
			}
		})
	}
}

// A Date in the future (an upstream clock that runs ahead) must not stretch
// the lease past 24 hours from the request.
func TestFaultDateInFuture(t *testing.T) {
	_, srv := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", httpDate(time.Now().Add(3*time.Hour)))
		_, _ = io.WriteString(w, `{"token":"from-the-future"}`)
	})
	tb := newTestBackend(t)
	tb.writeConfig(t, configData(srv.URL))

	sent := time.Now()
	resp := tb.readToken(t)

	expires, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if latest := sent.Add(TokenLifetime); expires.After(latest) {
		t.Errorf("expires_at = %s, after the request time plus 24h, %s", expires, latest)
	}
	if resp.Secret.TTL > TokenLifetime {
		t.Errorf("lease TTL = %s, longer than %s", resp.Secret.TTL, TokenLifetime)
	}
}

func TestFaultRetryCounts(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   int64
	}{
		{"503", http.StatusServiceUnavailable, "", maxRetries + 1},
		{"500", http.StatusInternalServerError, "<html>oops</html>", maxRetries + 1},
		{"501 is not retried", http.StatusNotImplemented, "", 1},
		{"401 1006", http.StatusUnauthorized, `{"errors":[{"error":1006,"message":"Bad credentials."}]}`, 1},
		{"400 1005", http.StatusBadRequest, `{"errors":[{"error":1005,"message":"Invalid authorization data."}]}`, 1},
		{"429", http.StatusTooManyRequests, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := fixedServer(tc.status, "application/json", tc.body)(t)
			c := newTestClient(t, server.url, retryTimeout)

			start := time.Now()
			_, err := c.login(context.Background(), testUsername, testPassword)
			took := time.Since(start)

			if err == nil {
				t.Fatal("login succeeded")
			}
			if got := server.seen(); got != tc.want {
				t.Errorf("requests = %d, want %d", got, tc.want)
			}
			if took >= retryTimeout {
				t.Errorf("login took %s, not within request_timeout %s", took, retryTimeout)
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Attempts != int(tc.want) {
				t.Errorf("error %#v, want an APIError after %d attempts", err, tc.want)
			}
		})
	}
}

func TestFaultRetriesAreLogged(t *testing.T) {
	server := fixedServer(http.StatusBadGateway, "text/html", "<html>down</html>")(t)
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs})
	c, err := newClient(server.url, retryTimeout, "", logger)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.login(context.Background(), testUsername, testPassword); err == nil {
		t.Fatal("login succeeded")
	}

	output := logs.String()
	if got := strings.Count(output, "retrying login"); got != maxRetries {
		t.Errorf("log has %d retry lines, want %d:\n%s", got, maxRetries, output)
	}
	for _, want := range []string{"host=" + server.host, "attempt=2", "attempt=4", `after="HTTP 502"`} {
		if !strings.Contains(output, want) {
			t.Errorf("retry log does not contain %s:\n%s", want, output)
		}
	}
	assertNoSecret(t, "log", output, testPassword)
}

// Errors that no test server produces on loopback, built the way net/http
// returns them.
func TestFaultClassifiesTransportErrors(t *testing.T) {
	dnsNotFound := &net.DNSError{Err: "no such host", Name: "proxy.test", IsNotFound: true}
	cases := []struct {
		name      string
		err       error
		wantKind  string
		permanent bool
	}{
		{"proxy not resolved", &url.Error{Op: "Post", URL: "https://api.test/v1/login_check",
			Err: &net.OpError{Op: "proxyconnect", Net: "tcp", Err: &net.OpError{Op: "dial", Err: dnsNotFound}}},
			"proxy", true},
		{"proxy refused", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: syscall.ECONNREFUSED},
			"proxy", false},
		{"expired certificate", &tls.CertificateVerificationError{
			Err: x509.CertificateInvalidError{Reason: x509.Expired}}, "tls", true},
		{"unexpected EOF", &url.Error{Op: "Post", URL: "https://api.test/", Err: io.ErrUnexpectedEOF},
			"network", false},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET},
			"network", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, detail := classifyTransportError(tc.err)
			if kind != tc.wantKind {
				t.Errorf("kind = %q (%s), want %q", kind, detail, tc.wantKind)
			}
			if strings.Contains(detail, "api.test/") {
				t.Errorf("detail %q contains the request URL", detail)
			}
			if got := isPermanentError(tc.err); got != tc.permanent {
				t.Errorf("isPermanentError = %v, want %v", got, tc.permanent)
			}
		})
	}
}

func TestFaultBackoffWithinBounds(t *testing.T) {
	for attempt := range 70 {
		ceiling := min(retryWaitMin<<attempt, retryWaitMax)
		if attempt >= 63 || ceiling <= 0 {
			ceiling = retryWaitMax
		}
		for range 50 {
			wait := backoffWithJitter(retryWaitMin, retryWaitMax, attempt, nil)
			if wait < retryWaitMin/2 || wait > ceiling {
				t.Fatalf("attempt %d waits %s, want between %s and %s", attempt, wait, retryWaitMin/2, ceiling)
			}
		}
	}
}

// The body cap keeps memory flat: a login against a response of 64 MiB
// allocates a small, fixed amount, whatever the status.
func TestFaultLargeBodyMemoryFlat(t *testing.T) {
	const bodySize = 64 << 20
	for _, status := range []int{http.StatusOK, http.StatusBadRequest, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			chunk := []byte(strings.Repeat("x", 32<<10))
			_, srv := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				if _, err := io.WriteString(w, `{"token":"`); err != nil {
					return
				}
				for written := 0; written < bodySize; written += len(chunk) {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			c := newTestClient(t, srv.URL, retryTimeout)

			const logins = 5
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range logins {
				if _, err := c.login(context.Background(), testUsername, testPassword); err == nil {
					t.Fatal("login with a 64 MiB body succeeded")
				}
			}
			runtime.ReadMemStats(&after)

			perLogin := (after.TotalAlloc - before.TotalAlloc) / logins
			t.Logf("HTTP %d with a %d MiB body: %d KiB allocated per login, server included",
				status, bodySize>>20, perLogin>>10)
			if perLogin > 4<<20 {
				t.Errorf("a login allocated %d KiB against a %d MiB body, want at most 4 MiB",
					perLogin>>10, bodySize>>20)
			}
		})
	}
}
