//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/benchmark"
)

// TestBenchmarkSmoke runs the benchmark behind `make bench` with a few
// requests per cell, so its code keeps working. It checks that every
// request succeeded and that each mode logged in as often as it should.
// The timings are logged, never asserted.
func TestBenchmarkSmoke(t *testing.T) {
	const requests = 20
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var progress bytes.Buffer
	report, err := benchmark.Run(ctx, benchmark.Options{
		VaultBin:      vaultBin,
		PluginDir:     pluginDir,
		PluginName:    pluginName,
		PluginVersion: pluginVersion,
		Requests:      requests,
		Warmup:        5,
		Concurrencies: []int{1, 4},
		RSSReads:      50,
		WorkDir:       t.TempDir(),
		Progress:      &progress,
	})
	if err != nil {
		t.Fatalf("benchmark run: %v\n%s", err, progress.String())
	}

	var table strings.Builder
	if err := benchmark.Print(&table, report); err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke-mode timings, not a measurement:\n%s", table.String())

	operations := []benchmark.Operation{
		benchmark.OpStandinLogin, benchmark.OpKVRead, benchmark.OpTokenCreate,
		benchmark.OpFreshRead, benchmark.OpReuseRead,
	}
	if got, want := len(report.Cells), len(operations)*2; got != want {
		t.Errorf("report has %d cells, want %d", got, want)
	}
	for _, concurrency := range []int{1, 4} {
		for _, op := range operations {
			cell := report.Cell(op, concurrency)
			if cell == nil {
				t.Errorf("no cell for %s at concurrency %d", op, concurrency)
				continue
			}
			if cell.Requests != requests {
				t.Errorf("%s at concurrency %d sent %d requests, want %d", op, concurrency, cell.Requests, requests)
			}
			if cell.Errors != 0 {
				t.Errorf("%s at concurrency %d: %d requests failed, first: %s",
					op, concurrency, cell.Errors, cell.FirstError)
			}
			if cell.Elapsed <= 0 || cell.P50 <= 0 || cell.P99 < cell.P50 {
				t.Errorf("%s at concurrency %d: elapsed %s, p50 %s, p99 %s, want positive with p99 ≥ p50",
					op, concurrency, cell.Elapsed, cell.P50, cell.P99)
			}
		}

		if cell := report.Cell(benchmark.OpFreshRead, concurrency); cell != nil && cell.Logins != requests {
			t.Errorf("fresh mode at concurrency %d logged in %d times for %d reads, want one per read",
				concurrency, cell.Logins, requests)
		}
		if cell := report.Cell(benchmark.OpReuseRead, concurrency); cell != nil && cell.Logins != 1 {
			t.Errorf("reuse mode at concurrency %d logged in %d times for %d reads, want 1",
				concurrency, cell.Logins, requests)
		}
	}

	if report.RSSReadErrors != 0 {
		t.Errorf("%d of the %d reads before the memory reading failed", report.RSSReadErrors, report.RSSReads)
	}
	if report.PluginPID == 0 || report.Memory.Current <= 0 || report.Memory.Peak < report.Memory.Current {
		t.Errorf("plugin memory: pid %d, RSS %d, peak %d; want a plugin process with peak ≥ RSS > 0",
			report.PluginPID, report.Memory.Current, report.Memory.Peak)
	}
	if len(report.Targets()) != 2 {
		t.Errorf("targets evaluated = %d, want 2 (the concurrency-32 target needs that concurrency)",
			len(report.Targets()))
	}
}
