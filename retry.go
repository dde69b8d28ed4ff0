package noventiq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// logRetry logs each retry of a login. It runs before every attempt; the
// first attempt is not a retry.
func (c *client) logRetry(_ retryablehttp.Logger, req *http.Request, attempt int) {
	attempts, _ := req.Context().Value(attemptLogKey{}).(*attemptLog)
	if attempts == nil {
		return
	}
	attempts.count = attempt + 1
	if attempt > 0 {
		c.logger.Warn("retrying login", "host", c.host, "attempt", attempt+1,
			"after", attempts.describeLastFailure())
	}
}

// attemptLog records the attempts of one login for its error and log
// messages. The retrying client calls its hooks one attempt after another
// on the goroutine that runs the login, so it needs no lock.
type attemptLog struct {
	count int

	// lastStatus and lastErr describe the last attempt that failed for a
	// reason other than the login's deadline: its response status, or its
	// error when it got no response.
	lastStatus int
	lastErr    error
}

type attemptLogKey struct{}

// record notes how a failed attempt ended. A 200 response is no failure,
// and an attempt cut short by the deadline or a cancellation is not
// recorded, so that a timeout can name the failure that led to it.
func (l *attemptLog) record(resp *http.Response, err error) {
	switch {
	case resp != nil && resp.StatusCode == http.StatusOK:
	case resp != nil:
		l.lastStatus, l.lastErr = resp.StatusCode, nil
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		l.lastStatus, l.lastErr = 0, err
	}
}

// describeLastFailure names the last recorded failure without quoting any
// error text, so that it is safe for logs. It returns "" when none was
// recorded.
func (l *attemptLog) describeLastFailure() string {
	switch {
	case l.lastStatus != 0:
		return fmt.Sprintf("HTTP %d", l.lastStatus)
	case l.lastErr != nil:
		kind, _ := classifyTransportError(l.lastErr)
		return fmt.Sprintf("a %s error", kind)
	default:
		return ""
	}
}

// retryPolicy retries connection errors and 5xx responses other than 501.
// It never retries a 4xx, so retries never add logins with rejected
// credentials towards an account lock-out. Nor does it retry a redirect, a
// TLS failure or a host name that does not exist, which fail the same way
// again. It also records the attempt's outcome.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if attempts, ok := ctx.Value(attemptLogKey{}).(*attemptLog); ok {
		attempts.record(resp, err)
	}

	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return !isPermanentError(err), nil
	}

	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// backoffWithJitter returns a random wait between minWait/2 and a ceiling
// that doubles from minWait with each attempt up to maxWait, so that many
// Vault nodes retrying at once spread out instead of arriving together.
func backoffWithJitter(minWait, maxWait time.Duration, attempt int, _ *http.Response) time.Duration {
	ceiling := minWait << attempt
	if ceiling <= 0 || ceiling > maxWait {
		ceiling = maxWait
	}
	return minWait/2 + rand.N(ceiling-minWait/2+1)
}
