package benchmark

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 50 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{1.00, 100 * time.Millisecond},
		{0.001, 1 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := percentile(sorted, tc.q); got != tc.want {
			t.Errorf("percentile(1..100 ms, %v) = %s, want %s", tc.q, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile of one value = %s, want that value", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of no values = %s, want 0", got)
	}
}

func TestTallyAddsRounds(t *testing.T) {
	calls := 0
	failure := errors.New("upstream failed")
	send := func(context.Context) error {
		calls++
		if calls%5 == 0 {
			return failure
		}
		return nil
	}

	var total tally
	for range 2 {
		total.add(runTimed(context.Background(), 1, 10, send))
	}
	cell := total.cell(OpKVRead, 1)

	if calls != 20 {
		t.Errorf("send called %d times, want 20", calls)
	}
	if cell.Requests != 20 {
		t.Errorf("requests = %d, want 20", cell.Requests)
	}
	if cell.Errors != 4 {
		t.Errorf("errors = %d, want 4", cell.Errors)
	}
	if cell.FirstError != failure.Error() {
		t.Errorf("first error = %q, want %q", cell.FirstError, failure.Error())
	}
	if cell.Elapsed <= 0 || cell.P99 < cell.P50 {
		t.Errorf("elapsed %s, p50 %s, p99 %s: want positive elapsed and p99 ≥ p50",
			cell.Elapsed, cell.P50, cell.P99)
	}
}

func TestTargetsMetAndMissed(t *testing.T) {
	report := &Report{
		Cells: []Cell{
			{Operation: OpTokenCreate, Concurrency: 32, Requests: 1000, Elapsed: time.Second},
			{Operation: OpReuseRead, Concurrency: 32, Requests: 700, Elapsed: time.Second},
			{Operation: OpStandinLogin, Concurrency: 1, P50: time.Millisecond},
			{Operation: OpFreshRead, Concurrency: 1, P50: 2500 * time.Microsecond},
		},
		RSSReads: 10000,
		Memory:   memoryUsage{Current: 30_000_000, Peak: 35_000_000},
	}

	targets := report.Targets()
	if len(targets) != 3 {
		t.Fatalf("got %d targets, want 3: %+v", len(targets), targets)
	}
	if targets[0].Met {
		t.Errorf("reuse at 0.70× token create was judged met: %+v", targets[0])
	}
	if !targets[1].Met {
		t.Errorf("fresh mode adding 1.5 ms was judged missed: %+v", targets[1])
	}
	if !targets[2].Met {
		t.Errorf("RSS of 30 MB was judged missed: %+v", targets[2])
	}

	var out strings.Builder
	if err := Print(&out, report); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 0.70×") {
		t.Errorf("table does not show the 0.70× ratio of reuse reads to token creates:\n%s", out.String())
	}
}

func TestReadMemoryUsageOfSelf(t *testing.T) {
	usage, err := readMemoryUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if usage.Current <= 0 || usage.Peak < usage.Current {
		t.Errorf("usage = %+v, want peak ≥ current > 0", usage)
	}
}

// TestHelperSleep is not a test: TestFindChildByExecutable runs the test
// binary again with it as the only test, as a child process to find.
func TestHelperSleep(t *testing.T) {
	if os.Getenv("BENCHMARK_HELPER_SLEEP") != "1" {
		return
	}
	time.Sleep(30 * time.Second)
}

func TestFindChildByExecutable(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperSleep$")
	cmd.Env = append(os.Environ(), "BENCHMARK_HELPER_SLEEP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	pid, err := findChildByExecutable(os.Getpid(), self)
	if err != nil {
		t.Fatal(err)
	}
	if pid != cmd.Process.Pid {
		t.Errorf("found pid %d, want the child %d", pid, cmd.Process.Pid)
	}

	if _, err := findChildByExecutable(cmd.Process.Pid, self); err == nil {
		t.Error("found a child of the helper process, which has none")
	}
}
