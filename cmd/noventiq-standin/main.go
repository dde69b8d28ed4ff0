// Command noventiq-standin serves the local stand-in for the Noventiq
// e-commerce login API (package internal/standin) on a loopback address,
// for the demo and the end-to-end tests.
//
//	NOVENTIQ_STANDIN_PASSWORD=s3cret noventiq-standin -username partner \
//	    -addr-file /tmp/standin.url
//
// It stops on SIGINT or SIGTERM, or by itself once -max-run has passed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// passwordEnv names the environment variable read when -password is not
// given, so the password need not appear in a process listing.
const passwordEnv = "NOVENTIQ_STANDIN_PASSWORD"

// shutdownTimeout is how long a stop waits for open requests to finish.
const shutdownTimeout = 5 * time.Second

// errMaxRun is the cancellation cause when -max-run has passed.
var errMaxRun = errors.New("max-run elapsed")

type config struct {
	addr          string
	username      string
	password      string
	tokenLifetime time.Duration
	issuedAgo     time.Duration
	addrFile      string
	maxRun        time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run parses args, serves until a stop, and returns the exit code: 0 after
// a clean stop, 1 if serving failed, 2 for invalid flags.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := serve(cfg, logger); err != nil {
		logger.Error("noventiq stand-in failed", "err", err)
		return 1
	}
	return 0
}

// parseFlags reads the flags and validates them. It prints each problem to
// stderr itself.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("noventiq-standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:0",
		"loopback `host:port` to listen on; port 0 picks a free port")
	fs.StringVar(&cfg.username, "username", "", "accepted username (required)")
	fs.StringVar(&cfg.password, "password", "",
		"accepted password; if empty, $"+passwordEnv+" is read instead (one is required)")
	fs.DurationVar(&cfg.tokenLifetime, "token-lifetime", standin.DefaultTokenLifetime,
		"how long an issued token is accepted by GET /v1/whoami")
	fs.DurationVar(&cfg.issuedAgo, "issued-ago", 0,
		"`duration` subtracted from the clock for the Date header and token issue times;\n"+
			"negative puts them in the future")
	fs.StringVar(&cfg.addrFile, "addr-file", "",
		"`file` to receive the base URL, such as http://127.0.0.1:8080, once listening;\n"+
			"written atomically without a trailing newline and removed at stop")
	fs.DurationVar(&cfg.maxRun, "max-run", time.Hour, "stop by itself after this `duration`")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}

	if cfg.password == "" {
		cfg.password = getenv(passwordEnv)
	}
	if err := validate(cfg, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "noventiq-standin: %v\nRun noventiq-standin -help for usage.\n", err)
		return config{}, err
	}
	return cfg, nil
}

func validate(cfg config, extraArgs []string) error {
	switch {
	case len(extraArgs) > 0:
		return fmt.Errorf("unexpected argument %q: pass settings as flags", extraArgs[0])
	case cfg.username == "":
		return errors.New("missing -username")
	case cfg.password == "":
		return fmt.Errorf("missing password: set -password or $%s", passwordEnv)
	case cfg.tokenLifetime <= 0:
		return fmt.Errorf("invalid -token-lifetime %v: must be positive", cfg.tokenLifetime)
	case cfg.maxRun <= 0:
		return fmt.Errorf("invalid -max-run %v: must be positive", cfg.maxRun)
	}
	return checkLoopback(cfg.addr)
}

// checkLoopback rejects a listen address whose host is not a loopback IP
// address or "localhost", so the stand-in is never reachable from other
// machines.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid -addr %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if host == "" {
		return fmt.Errorf("invalid -addr %q: an empty host listens on every interface; "+
			"use 127.0.0.1, [::1] or localhost", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("invalid -addr %q: host %q is not a loopback address; "+
			"use 127.0.0.1, [::1] or localhost", addr, host)
	}
	return nil
}

// serve listens on cfg.addr and serves the stand-in until a signal arrives
// or cfg.maxRun passes.
func serve(cfg config, logger *slog.Logger) error {
	if cfg.addrFile != "" {
		// A file left by an earlier run must not point a reader at a dead
		// server while this one starts.
		if err := os.Remove(cfg.addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale -addr-file: %w", err)
		}
	}

	listener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	// "localhost" passed checkLoopback by name, so check what it resolved to.
	if tcpAddr, ok := listener.Addr().(*net.TCPAddr); !ok || !tcpAddr.IP.IsLoopback() {
		listener.Close()
		return fmt.Errorf("listen on %s: bound to non-loopback address %s", cfg.addr, listener.Addr())
	}
	baseURL := "http://" + listener.Addr().String()

	handler := standin.New(standin.Options{
		Username:      cfg.username,
		Password:      cfg.password,
		TokenLifetime: cfg.tokenLifetime,
		IssuedAgo:     cfg.issuedAgo,
	})
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	if cfg.addrFile != "" {
		if err := writeFileAtomic(cfg.addrFile, []byte(baseURL)); err != nil {
			listener.Close()
			return fmt.Errorf("write -addr-file: %w", err)
		}
		defer removeAddrFile(cfg.addrFile, logger)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.maxRun, errMaxRun)
	defer cancel()

	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()
	logger.Info("noventiq stand-in listening", "url", baseURL,
		"token_lifetime", cfg.tokenLifetime, "issued_ago", cfg.issuedAgo, "max_run", cfg.maxRun)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", baseURL, err)
	case <-ctx.Done():
	}

	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelShutdown()
	if err := server.Shutdown(shutdownCtx); err != nil {
		server.Close()
		logger.Warn("noventiq stand-in closed open connections after the shutdown timeout",
			"timeout", shutdownTimeout, "err", err)
	}

	logger.Info("noventiq stand-in stopped", "url", baseURL, "reason", context.Cause(ctx).Error(),
		"requests", handler.Requests(), "login_requests", handler.LoginRequests(),
		"tokens_issued", handler.TokensIssued())
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames it
// over path, so a reader sees either no file or the whole content.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once the rename has happened

	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func removeAddrFile(path string, logger *slog.Logger) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		logger.Warn("failed to remove -addr-file", "path", path, "err", err)
	}
}
