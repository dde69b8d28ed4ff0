// Command noventiq-bench measures noventiq/token reads on a real Vault
// against the stand-in Noventiq API, beside KV version 1 reads and
// auth/token/create calls on the same server, and prints one table.
// scripts/bench.sh (`make bench`) builds what it needs and runs it.
//
//	noventiq-bench -vault /path/to/vault -plugin-dir build/plugins
//
// Every server it starts listens on 127.0.0.1 and stops before it exits.
// It exits 1 when the setup or any request fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/benchmark"
)

func main() {
	os.Exit(run())
}

func run() int {
	opts := benchmark.Options{Progress: os.Stderr}
	var concurrencies string
	var maxRun time.Duration
	flag.StringVar(&opts.VaultBin, "vault", os.Getenv("VAULT_BIN"), "vault `binary` to run (default $VAULT_BIN)")
	flag.StringVar(&opts.PluginDir, "plugin-dir", "build/plugins", "`directory` that contains the plugin binary")
	flag.StringVar(&opts.PluginName, "plugin-name", "vault-plugin-secrets-noventiq", "plugin binary and catalog `name`")
	flag.StringVar(&opts.PluginVersion, "plugin-version", "v0.1.0", "`version` the plugin binary was built with")
	flag.IntVar(&opts.Requests, "requests", 2000, "timed requests per cell")
	flag.IntVar(&opts.Warmup, "warmup", 100, "untimed requests before each cell")
	flag.IntVar(&opts.Rounds, "rounds", 10, "interleaved rounds that each cell's timed requests are split into")
	flag.IntVar(&opts.RSSReads, "rss-reads", 10000, "fresh-mode reads before the plugin's RSS is read; 0 skips them")
	flag.StringVar(&concurrencies, "concurrency", "1,32", "comma-separated `list` of concurrent clients")
	flag.DurationVar(&maxRun, "max-run", 20*time.Minute, "stop the run after this `duration`")
	flag.Parse()

	var err error
	if opts.Concurrencies, err = parseConcurrencies(concurrencies); err != nil {
		fmt.Fprintf(os.Stderr, "noventiq-bench: invalid -concurrency: %v\n", err)
		return 2
	}
	if opts.VaultBin == "" {
		fmt.Fprintln(os.Stderr, "noventiq-bench: missing -vault or $VAULT_BIN: run scripts/vault.sh to build Vault")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()

	report, err := benchmark.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "noventiq-bench: %v\n", err)
		return 1
	}
	if err := benchmark.Print(os.Stdout, report); err != nil {
		fmt.Fprintf(os.Stderr, "noventiq-bench: %v\n", err)
		return 1
	}
	if report.Failed() {
		fmt.Fprintln(os.Stderr, "noventiq-bench: some requests failed; see the errors column")
		return 1
	}
	return 0
}

func parseConcurrencies(list string) ([]int, error) {
	var values []int
	for _, field := range strings.Split(list, ",") {
		value, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || value < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", field)
		}
		values = append(values, value)
	}
	return values, nil
}
