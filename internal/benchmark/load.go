package benchmark

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one request of a load cell.
const requestTimeout = time.Minute

// Operation names what a cell measures.
type Operation string

const (
	OpStandinLogin Operation = "stand-in login (no Vault)"
	OpKVRead       Operation = "kv v1 read"
	OpTokenCreate  Operation = "auth/token/create"
	OpFreshRead    Operation = "noventiq/token, fresh mode"
	OpReuseRead    Operation = "noventiq/token, reuse mode"
)

// Cell is one operation measured at one concurrency.
type Cell struct {
	Operation   Operation
	Concurrency int

	// Requests counts the timed requests sent, and Errors those that
	// failed. FirstError is the message of the first failure.
	Requests   int
	Errors     int
	FirstError string

	// Elapsed is the wall time of the timed requests, summed over the
	// rounds that measured them. P50 and P99 are nearest-rank percentiles of the latency of
	// the requests that succeeded.
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration

	// Logins counts the logins the stand-in received during the timed
	// requests. It is zero for operations that do not log in.
	Logins int64
}

// Throughput returns the requests per second over the cell's wall time.
func (c *Cell) Throughput() float64 {
	if c.Elapsed <= 0 {
		return 0
	}
	return float64(c.Requests) / c.Elapsed.Seconds()
}

// round is the outcome of one batch of timed requests.
type round struct {
	latencies []time.Duration
	failures  []error
	requests  int
	elapsed   time.Duration
}

// runTimed sends requests timed requests from concurrency workers that
// share the work. Each call of send is one request.
func runTimed(ctx context.Context, concurrency, requests int, send func(context.Context) error) round {
	start := time.Now()
	latencies, failures := runLoad(ctx, concurrency, requests, send)
	return round{latencies: latencies, failures: failures, requests: requests, elapsed: time.Since(start)}
}

// tally adds up the rounds of one cell.
type tally struct {
	round
	logins int64
}

func (t *tally) add(r round) {
	t.latencies = append(t.latencies, r.latencies...)
	t.failures = append(t.failures, r.failures...)
	t.requests += r.requests
	t.elapsed += r.elapsed
}

// cell summarises the tally. Its Elapsed is the sum of the rounds' wall
// times, so the pauses between rounds do not count.
func (t *tally) cell(op Operation, concurrency int) Cell {
	slices.Sort(t.latencies)
	cell := Cell{
		Operation:   op,
		Concurrency: concurrency,
		Requests:    t.requests,
		Errors:      len(t.failures),
		Elapsed:     t.elapsed,
		P50:         percentile(t.latencies, 0.50),
		P99:         percentile(t.latencies, 0.99),
		Logins:      t.logins,
	}
	if len(t.failures) > 0 {
		cell.FirstError = t.failures[0].Error()
	}
	return cell
}

// runLoad sends requests calls of send from concurrency goroutines and
// returns the latencies of the calls that succeeded and the errors of
// those that failed.
func runLoad(ctx context.Context, concurrency, requests int, send func(context.Context) error) ([]time.Duration, []error) {
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, requests)
		failures  []error
		wg        sync.WaitGroup
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, requests/concurrency+1)
			var localFailures []error
			for next.Add(1) <= int64(requests) {
				reqCtx, cancel := context.WithTimeout(ctx, requestTimeout)
				began := time.Now()
				err := send(reqCtx)
				took := time.Since(began)
				cancel()
				if err != nil {
					localFailures = append(localFailures, err)
					continue
				}
				local = append(local, took)
			}

			mu.Lock()
			latencies = append(latencies, local...)
			failures = append(failures, localFailures...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return latencies, failures
}

// percentile returns the nearest-rank percentile q (0 < q ≤ 1) of sorted
// latencies, or 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}
