package benchmark

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the project aims at.
const (
	// TargetReuseVsTokenCreate is the minimum ratio of reuse-mode token
	// reads per second to auth/token/create calls per second, at
	// concurrency 32.
	TargetReuseVsTokenCreate = 0.8
	// TargetFreshOverhead is the maximum p50 latency that a fresh-mode
	// read adds over a direct stand-in login, at concurrency 1.
	TargetFreshOverhead = 2 * time.Millisecond
	// TargetPluginRSS is the maximum resident set size of the plugin
	// process after the RSSReads phase, in bytes (40 MB).
	TargetPluginRSS = 40_000_000
)

// Target is one of the project's targets, evaluated on a report.
type Target struct {
	Name     string
	Measured string
	Met      bool
}

// Targets evaluates each target whose cells the report contains.
func (r *Report) Targets() []Target {
	var targets []Target

	reuse, create := r.Cell(OpReuseRead, 32), r.Cell(OpTokenCreate, 32)
	if reuse != nil && create != nil && create.Throughput() > 0 {
		ratio := reuse.Throughput() / create.Throughput()
		targets = append(targets, Target{
			Name: fmt.Sprintf("reuse-mode reads/s at concurrency 32 ≥ %.1f× auth/token/create",
				TargetReuseVsTokenCreate),
			Measured: fmt.Sprintf("%.2f× (%.0f/s vs %.0f/s)", ratio, reuse.Throughput(), create.Throughput()),
			Met:      ratio >= TargetReuseVsTokenCreate,
		})
	}

	fresh, direct := r.Cell(OpFreshRead, 1), r.Cell(OpStandinLogin, 1)
	if fresh != nil && direct != nil {
		added := fresh.P50 - direct.P50
		targets = append(targets, Target{
			Name: fmt.Sprintf("fresh mode adds ≤ %s at p50 over a direct stand-in login, concurrency 1",
				TargetFreshOverhead),
			Measured: fmt.Sprintf("%s (%s vs %s)", formatLatency(added), formatLatency(fresh.P50),
				formatLatency(direct.P50)),
			Met: added <= TargetFreshOverhead,
		})
	}

	if r.RSSReads > 0 {
		targets = append(targets, Target{
			Name: fmt.Sprintf("plugin RSS ≤ %s after %d reads", formatBytes(TargetPluginRSS), r.RSSReads),
			Measured: fmt.Sprintf("%s (peak %s)", formatBytes(r.Memory.Current),
				formatBytes(r.Memory.Peak)),
			Met: r.Memory.Current <= TargetPluginRSS,
		})
	}
	return targets
}

// Print writes the report as one table, then the memory, login and target
// lines beneath it.
func Print(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "%s; %s; %d CPUs; load average %s at start\n",
		firstLine(r.VaultVersion), r.GoVersion, r.CPUs, r.LoadAverage)
	fmt.Fprintf(w, "%d timed requests per cell in %d interleaved rounds, after %d warm-up requests; "+
		"started %s\n\n", r.Requests, r.Rounds, r.Warmup, r.Started.Format(time.RFC3339))

	// The table is Markdown, so a run's output can be pasted into
	// BENCHMARKS.md as it is.
	table := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(table, "| operation\t| concurrency\t| requests/s\t| p50\t| p99\t| errors\t| logins\t"+
		"| ÷ kv v1 read\t| ÷ token create\t|")
	fmt.Fprintln(table, "|---\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|")
	for _, cell := range r.Cells {
		logins, kvRatio, createRatio := "", "", ""
		if cell.Operation == OpFreshRead || cell.Operation == OpReuseRead {
			logins = fmt.Sprint(cell.Logins)
			kvRatio = r.ratio(&cell, OpKVRead)
			createRatio = r.ratio(&cell, OpTokenCreate)
		}
		fmt.Fprintf(table, "| %s\t| %d\t| %.0f\t| %s\t| %s\t| %d\t| %s\t| %s\t| %s\t|\n",
			cell.Operation, cell.Concurrency, cell.Throughput(), formatLatency(cell.P50),
			formatLatency(cell.P99), cell.Errors, logins, kvRatio, createRatio)
	}
	if err := table.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	for _, mode := range []Operation{OpFreshRead, OpReuseRead} {
		reads, logins := 0, int64(0)
		for _, cell := range r.Cells {
			if cell.Operation == mode {
				reads += cell.Requests
				logins += cell.Logins
			}
		}
		fmt.Fprintf(w, "logins at the stand-in, %s: %d for %d timed reads\n", mode, logins, reads)
	}
	fmt.Fprintf(w, "plugin process %d: RSS %s idle after configuration; ", r.PluginPID,
		formatBytes(r.MemoryIdle.Current))
	fmt.Fprintf(w, "RSS %s after %d more fresh-mode reads (%d failed); peak RSS (VmHWM) %s\n",
		formatBytes(r.Memory.Current), r.RSSReads, r.RSSReadErrors, formatBytes(r.Memory.Peak))

	for _, cell := range r.Cells {
		if cell.Errors > 0 {
			fmt.Fprintf(w, "first error of %s at concurrency %d: %s\n",
				cell.Operation, cell.Concurrency, cell.FirstError)
		}
	}

	fmt.Fprintln(w, "\ntargets:")
	for _, target := range r.Targets() {
		verdict := "missed"
		if target.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "  %-6s %s: %s\n", verdict, target.Name, target.Measured)
	}
	return nil
}

// ratio formats cell's throughput divided by that of reference at the same
// concurrency.
func (r *Report) ratio(cell *Cell, reference Operation) string {
	other := r.Cell(reference, cell.Concurrency)
	if other == nil || other.Throughput() == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", cell.Throughput()/other.Throughput())
}

func formatLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func formatBytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
