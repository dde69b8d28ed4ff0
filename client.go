package noventiq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	// maxResponseBytes caps how much of a login response's body is read,
	// and separately the size of its headers. A real response is well under
	// 1 KiB; the cap keeps a misbehaving upstream from making the plugin
	// allocate without bound.
	maxResponseBytes = 64 << 10

	// Retry policy for connection errors and 5xx responses. All attempts
	// and waits share the request_timeout budget of one login.
	maxRetries   = 3
	retryWaitMin = 200 * time.Millisecond
	retryWaitMax = 2 * time.Second

	// maxIdleConnsPerHost is how many idle connections to the API are kept
	// for reuse.
	maxIdleConnsPerHost = 32
)

// testDialContext, when set, replaces the dialer of clients built after it
// is set. Tests use it to simulate network failures, such as a DNS error,
// without leaving the machine.
var testDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

// loginResult is the outcome of a successful login.
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
	// Concurrent token reads each hold a connection for one login. Keeping
	// that many idle saves a TCP and TLS handshake per login under load;
	// cleanhttp's default keeps GOMAXPROCS+1.
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	transport.MaxResponseHeaderBytes = maxResponseBytes
	if testDialContext != nil {
		transport.DialContext = testDialContext
	}
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

	attempts := &attemptLog{}
	result := &loginResult{RequestSent: time.Now()}
	req.Request = req.Request.WithContext(context.WithValue(ctx, attemptLogKey{}, attempts))
	resp, err := c.http.Do(req)
	result.Attempts = attempts.count
	if err != nil {
		return nil, c.transportError(ctx, err, attempts, password)
	}
	defer resp.Body.Close()

	if err := c.checkResponse(ctx, resp, attempts, password); err != nil {
		return nil, err
	}

	token, err := decodeToken(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.timeoutError(attempts, "the response body did not arrive in time")
		}
		return nil, &ResponseError{Host: c.host, Reason: err.Error()}
	}
	result.Token = token
	result.Date = parseDate(resp.Header.Get("Date"))

	return result, nil
}

// checkResponse turns any status but 200 into an error, reading at most
// maxResponseBytes of the body.
func (c *client) checkResponse(ctx context.Context, resp *http.Response, attempts *attemptLog, password string) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}

	apiErr := &APIError{StatusCode: resp.StatusCode, Host: c.host, Attempts: attempts.count}
	if resp.Request != nil {
		apiErr.Path = resp.Request.URL.Path
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		apiErr.Location = redactURL(resp.Header.Get("Location"))
		return apiErr
	}

	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil && ctx.Err() != nil {
		return c.timeoutError(attempts, fmt.Sprintf("the body of an HTTP %d response did not arrive in time",
			resp.StatusCode))
	}
	apiErr.Errors = parseErrorBody(raw, password)
	return apiErr
}

// transportError explains an error from the HTTP client in words that name
// the host but not the URL, the body or any credential.
func (c *client) transportError(ctx context.Context, err error, attempts *attemptLog, password string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return c.timeoutError(attempts, "")
	}
	if errors.Is(err, context.Canceled) {
		return &TransportError{Host: c.host, Kind: "canceled", Detail: "the request was canceled"}
	}

	kind, detail := classifyTransportError(err)
	return &TransportError{Host: c.host, Kind: kind, Detail: cleanUpstreamText(detail, password)}
}

// timeoutError reports a login that used up request_timeout. When earlier
// attempts failed, it names the last failure, which is usually the cause.
func (c *client) timeoutError(attempts *attemptLog, what string) error {
	detail := fmt.Sprintf("no usable response within request_timeout (%s)", c.timeout)
	if what != "" {
		detail = fmt.Sprintf("%s: %s", detail, what)
	}
	if last := attempts.describeLastFailure(); attempts.count > 1 && last != "" {
		detail = fmt.Sprintf("%s; %d attempts, the last failure was %s", detail, attempts.count, last)
	}
	return &TransportError{Host: c.host, Kind: "timeout", Detail: detail}
}

// classifyTransportError names the kind of a failure that got no HTTP
// response and explains it. Only the "network" kind quotes the underlying
// error, without the URL that net/http puts around it, so callers must
// pass its detail through cleanUpstreamText.
func classifyTransportError(err error) (kind, detail string) {
	// A failure to reach the proxy wraps the dial error, DNS included, so it
	// is checked first.
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "proxyconnect" {
		return "proxy", "the proxy set by HTTPS_PROXY could not be reached"
	}

	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return "dns", "the host name could not be resolved (no such host)"
		}
		return "dns", "the host name could not be resolved (the DNS lookup failed)"
	}

	if isCertificateError(err) {
		return "tls", "the server's TLS certificate could not be verified; " +
			"set ca_cert if it is signed by a private CA"
	}
	if isNotTLSError(err) {
		return "tls", "the server did not answer with TLS; check that the url's scheme matches the server"
	}

	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return "connect", "the connection was refused or could not be opened"
	}

	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "network", "the server closed the connection before it sent a complete response"
	}

	inner := err
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		inner = urlErr.Err
	}
	return "network", omitQuotedText(inner.Error())
}

// omitQuotedText cuts an error message at its first double quote. net/http
// quotes bytes of a malformed response in its errors, and a server that
// echoes the request would put the password there in an escaped form that
// redact cannot recognise.
func omitQuotedText(message string) string {
	before, _, found := strings.Cut(message, `"`)
	if !found {
		return message
	}
	return strings.TrimSpace(before) + " (quoted response text omitted)"
}

// isPermanentError reports whether a failure that got no HTTP response
// would fail the same way if retried.
func isPermanentError(err error) bool {
	var dnsErr *net.DNSError
	return isCertificateError(err) || isNotTLSError(err) ||
		(errors.As(err, &dnsErr) && dnsErr.IsNotFound)
}

// isNotTLSError reports whether the server responded to a TLS handshake with
// something else. net/http reports a plain HTTP response only as an error
// string, not as a type.
func isNotTLSError(err error) bool {
	var recordErr tls.RecordHeaderError
	return errors.As(err, &recordErr) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

func isCertificateError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	return errors.As(err, &certErr) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &hostnameErr) || errors.As(err, &invalidErr)
}
