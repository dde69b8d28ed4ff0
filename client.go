package noventiq

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-retryablehttp"
)

const (
	loginPath = "/v1/login_check"

	// maxResponseBytes caps how much of a login response is read. A real
	// response is well under 1 KiB; the cap keeps a misbehaving upstream
	// from making the plugin allocate without bound.
	maxResponseBytes = 64 << 10

	// Retry policy for connection errors and 5xx responses. All attempts
	// and waits share the request_timeout budget of one login.
	maxRetries   = 3
	retryWaitMin = 200 * time.Millisecond
	retryWaitMax = 2 * time.Second
)

// loginResult is what a successful login returns.
type loginResult struct {
	Token string

	// RequestSent is when the first attempt of the login request was sent.
	RequestSent time.Time

	// Date is the response's Date header, which the vendor documents as the
	// token's creation time. It is the zero time when the header is missing
	// or does not parse.
	Date time.Time

	// Attempts counts the HTTP requests the login took, retries included.
	Attempts int
}

// client logs in to the Noventiq API. It is safe for concurrent use and
// holds no credentials: each login is given them.
type client struct {
	loginURL string
	host     string
	timeout  time.Duration
	http     *retryablehttp.Client
	logger   hclog.Logger
}

// newClient builds a client for the API at baseURL. caPEM, when not empty,
// replaces the system trust store for this client.
func newClient(baseURL string, timeout time.Duration, caPEM string, logger hclog.Logger) (*client, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("invalid url: %w", err)
	}

	transport := cleanhttp.DefaultPooledTransport()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("ca_cert contains no PEM-encoded certificate")
		}
		transport.TLSClientConfig.RootCAs = pool
	}

	httpClient := &http.Client{
		Transport: transport,
		// The login request carries the password in its body, so a redirect
		// is never followed: the 3xx response itself becomes the error.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}

	c := &client{
		loginURL: strings.TrimRight(base.String(), "/") + loginPath,
		host:     base.Host,
		timeout:  timeout,
		logger:   logger,
	}
	c.http = &retryablehttp.Client{
		HTTPClient:     httpClient,
		RetryWaitMin:   retryWaitMin,
		RetryWaitMax:   retryWaitMax,
		RetryMax:       maxRetries,
		CheckRetry:     retryPolicy,
		Backoff:        backoffWithJitter,
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
		RequestLogHook: c.logRetry,
	}

	return c, nil
}

// login exchanges a username and password for a token. Every error it
// returns is safe to show to a Vault client: it never contains the
// password, the request body or the token.
func (c *client) login(ctx context.Context, username, password string) (*loginResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	body, err := json.Marshal(map[string]string{"username": username, "password": password})
	if err != nil {
		return nil, fmt.Errorf("encoding the login request: %w", err)
	}

	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.loginURL, body)
	if err != nil {
		return nil, fmt.Errorf("building the login request for %s: %w", c.host, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	attempts := 0
	result := &loginResult{RequestSent: time.Now()}
	resp, err := c.do(req, &attempts)
	result.Attempts = attempts
	if err != nil {
		return nil, c.transportError(ctx, err, password)
	}
	defer resp.Body.Close()

	if err := c.checkResponse(resp, password); err != nil {
		return nil, err
	}

	token, err := decodeToken(resp.Body)
	if err != nil {
		return nil, &ResponseError{Host: c.host, Reason: err.Error()}
	}
	result.Token = token
	result.Date = parseDate(resp.Header.Get("Date"))

	return result, nil
}

// do sends req through the retrying client, counting attempts.
func (c *client) do(req *retryablehttp.Request, attempts *int) (*http.Response, error) {
	req.Request = req.Request.WithContext(withAttemptCounter(req.Context(), attempts))
	return c.http.Do(req)
}

// checkResponse turns any status but 200 into an error, reading at most
// maxResponseBytes of the body.
func (c *client) checkResponse(resp *http.Response, password string) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}

	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	apiErr := &APIError{StatusCode: resp.StatusCode, Host: c.host}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		apiErr.Location = redactURL(resp.Header.Get("Location"))
		return apiErr
	}

	apiErr.Errors = parseErrorBody(raw, password)
	return apiErr
}

// transportError explains an error from the HTTP client in words that name
// the host but not the URL's query, the body or any credential.
func (c *client) transportError(ctx context.Context, err error, password string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TransportError{Host: c.host, Kind: "timeout",
			Detail: fmt.Sprintf("no response within request_timeout (%s)", c.timeout)}
	}
	if errors.Is(err, context.Canceled) {
		return &TransportError{Host: c.host, Kind: "canceled", Detail: "the request was canceled"}
	}

	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &TransportError{Host: c.host, Kind: "dns", Detail: "the host name could not be resolved"}
	}

	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuthority) || errors.As(err, &hostnameErr) {
		return &TransportError{Host: c.host, Kind: "tls",
			Detail: "the server's TLS certificate could not be verified; set ca_cert if it is signed by a private CA"}
	}

	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return &TransportError{Host: c.host, Kind: "connect", Detail: "the connection was refused or could not be opened"}
	}

	// Anything else: keep the innermost message, which for net/http errors
	// names the failure without the URL, and scrub it once more.
	inner := err
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		inner = urlErr.Err
	}
	return &TransportError{Host: c.host, Kind: "network", Detail: redact(inner.Error(), password)}
}

// logRetry logs each retry of a login. It runs before every attempt; the
// first attempt is not a retry.
func (c *client) logRetry(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if counter, ok := req.Context().Value(attemptCounterKey{}).(*int); ok {
		*counter = attempt + 1
	}
	if attempt > 0 {
		c.logger.Warn("retrying login", "host", c.host, "attempt", attempt+1)
	}
}

type attemptCounterKey struct{}

func withAttemptCounter(ctx context.Context, counter *int) context.Context {
	return context.WithValue(ctx, attemptCounterKey{}, counter)
}

// retryPolicy retries connection errors and 5xx responses. It never retries
// a 4xx (so rejected credentials never lock an account out), a redirect, or
// a TLS verification failure, which would fail the same way again.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var unknownAuthority x509.UnknownAuthorityError
		var hostnameErr x509.HostnameError
		var dnsErr *net.DNSError
		if errors.As(err, &certErr) || errors.As(err, &unknownAuthority) ||
			errors.As(err, &hostnameErr) || (errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
			return false, nil
		}
		return true, nil
	}

	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// backoffWithJitter waits a random time between zero and an exponentially
// growing ceiling ("full jitter"), so that many Vault nodes retrying at once
// spread out instead of arriving together.
func backoffWithJitter(minWait, maxWait time.Duration, attempt int, _ *http.Response) time.Duration {
	ceiling := minWait << attempt
	if ceiling <= 0 || ceiling > maxWait {
		ceiling = maxWait
	}
	return minWait/2 + rand.N(ceiling-minWait/2+1)
}

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

	return *parsed.Token, nil
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

// redact removes every occurrence of secret, raw and JSON-escaped, from s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "[redacted]")
	if escaped, err := json.Marshal(secret); err == nil {
		inner := string(escaped[1 : len(escaped)-1])
		if inner != "" {
			s = strings.ReplaceAll(s, inner, "[redacted]")
		}
	}
	return s
}
