// Package benchmark measures what a noventiq/token read costs on a real
// Vault, side by side with Vault's own KV version 1 reads and
// auth/token/create calls on the same server.
//
// Run starts everything it needs on 127.0.0.1 and stops it before it
// returns: the stand-in Noventiq API in this process, and a `vault server
// -dev` with the plugin mounted twice, once per mode. The number of
// requests is fixed by Options, so a run is bounded.
package benchmark

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

const (
	freshMount = "noventiq-fresh"
	reuseMount = "noventiq-reuse"
	kvMount    = "kv1"
	kvPath     = kvMount + "/benchmark"

	standinUsername = "benchmark-user"
)

// Options configures a run. Zero values get the defaults noted.
type Options struct {
	// VaultBin is the vault binary to run. Required.
	VaultBin string

	// PluginDir contains the plugin binary PluginName, built to report
	// PluginVersion. It becomes Vault's plugin_directory. Required.
	PluginDir     string
	PluginName    string
	PluginVersion string

	// Requests is the number of timed requests per cell. Default 2000.
	Requests int

	// Warmup is the number of untimed requests before each cell.
	// Default Requests/20.
	Warmup int

	// Rounds is the number of rounds that each cell's timed requests are
	// split into. The cells of one concurrency take turns, one round each.
	// Default 10, at most Requests.
	Rounds int

	// Concurrencies lists the numbers of concurrent clients. Default 1
	// and 32.
	Concurrencies []int

	// RSSReads is the number of fresh-mode token reads sent after the
	// cells, after which the plugin's resident set size is read. Zero
	// skips that phase.
	RSSReads int

	// WorkDir receives Vault's config and log. Default: a temporary
	// directory, removed at the end of the run.
	WorkDir string

	// Progress receives one line per step. Nil discards them.
	Progress io.Writer
}

// Report is the outcome of a run.
type Report struct {
	Started      time.Time
	VaultVersion string
	GoVersion    string
	CPUs         int
	LoadAverage  string
	Requests     int
	Warmup       int
	Rounds       int

	// Cells holds one entry per operation and concurrency, in run order.
	Cells []Cell

	// PluginPID is the plugin process whose memory was read.
	PluginPID int
	// MemoryIdle is read after both mounts are configured, before any
	// timed request.
	MemoryIdle memoryUsage
	// Memory is read at the end of the run, after the RSSReads phase.
	// Memory.Peak covers the whole run.
	Memory        memoryUsage
	RSSReads      int
	RSSReadErrors int
}

// Cell returns the cell for op at concurrency, or nil.
func (r *Report) Cell(op Operation, concurrency int) *Cell {
	for i := range r.Cells {
		if r.Cells[i].Operation == op && r.Cells[i].Concurrency == concurrency {
			return &r.Cells[i]
		}
	}
	return nil
}

// Failed reports whether any request of any cell or of the RSSReads phase
// failed.
func (r *Report) Failed() bool {
	if r.RSSReadErrors > 0 {
		return true
	}
	for _, cell := range r.Cells {
		if cell.Errors > 0 {
			return true
		}
	}
	return false
}

func (o *Options) setDefaults() error {
	if o.VaultBin == "" || o.PluginDir == "" || o.PluginName == "" || o.PluginVersion == "" {
		return errors.New("VaultBin, PluginDir, PluginName and PluginVersion are required")
	}
	if o.Requests <= 0 {
		o.Requests = 2000
	}
	if o.Warmup <= 0 {
		o.Warmup = o.Requests / 20
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	o.Rounds = min(o.Rounds, o.Requests)
	if len(o.Concurrencies) == 0 {
		o.Concurrencies = []int{1, 32}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Run performs one benchmark run. It returns an error when the setup
// fails. Failed requests do not stop a run: they are counted in the cells.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	report := &Report{
		Started:     time.Now().UTC(),
		GoVersion:   runtime.Version(),
		CPUs:        runtime.NumCPU(),
		LoadAverage: loadAverage(),
		Requests:    opts.Requests,
		Warmup:      opts.Warmup,
		Rounds:      opts.Rounds,
		RSSReads:    opts.RSSReads,
	}

	version, err := exec.CommandContext(ctx, opts.VaultBin, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("running %s version: %w", opts.VaultBin, err)
	}
	report.VaultVersion = strings.TrimSpace(string(version))

	if opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "noventiq-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.WorkDir = dir
	}

	api, err := startStandin()
	if err != nil {
		return nil, err
	}
	defer api.stop()
	fmt.Fprintf(opts.Progress, "stand-in API at %s\n", api.url)

	vault, err := startVault(ctx, opts.VaultBin, opts.PluginDir, opts.WorkDir)
	if err != nil {
		return nil, err
	}
	defer vault.stop()
	fmt.Fprintf(opts.Progress, "vault at %s (log %s)\n", vault.addr, vault.logPath)

	run := &runner{opts: opts, api: api, report: report}
	if run.client, err = newVaultClient(vault.addr); err != nil {
		return nil, err
	}
	if err := run.setUp(ctx); err != nil {
		return nil, fmt.Errorf("setting up vault: %w (log %s)", err, vault.logPath)
	}

	pluginPath := filepath.Join(opts.PluginDir, opts.PluginName)
	if report.PluginPID, err = findChildByExecutable(vault.pid(), pluginPath); err != nil {
		return nil, err
	}
	if report.MemoryIdle, err = readMemoryUsage(report.PluginPID); err != nil {
		return nil, err
	}

	if err := run.measureAll(ctx); err != nil {
		return nil, err
	}

	if opts.RSSReads > 0 {
		fmt.Fprintf(opts.Progress, "%d fresh-mode reads before reading the plugin's memory\n", opts.RSSReads)
		_, failures := runLoad(ctx, slices.Max(opts.Concurrencies), opts.RSSReads, run.readToken(freshMount))
		report.RSSReadErrors = len(failures)
	}
	if report.Memory, err = readMemoryUsage(report.PluginPID); err != nil {
		return nil, err
	}
	return report, nil
}

func fileSHA256(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, file); err != nil {
		return "", err
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}

// loadAverage returns the 1, 5 and 15 minute load averages of the machine.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}
