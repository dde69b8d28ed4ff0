//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// tokenLease is the part of a token read's CLI output the tests use.
type tokenLease struct {
	LeaseID string            `json:"lease_id"`
	Data    map[string]string `json:"data"`
}

// readTokenCLI reads a token with the CLI as root.
func readTokenCLI(t testing.TB, v *vaultServer) tokenLease {
	t.Helper()
	var lease tokenLease
	v.mustCLIJSON(t, &lease, "read", mountPath+"/token")
	if lease.LeaseID == "" || lease.Data["token"] == "" {
		t.Fatalf("token read returned no lease or no token: %+v", lease)
	}
	return lease
}

// assertConfig fails the test unless the config read through v shows the
// stand-in's username and URL.
func assertConfig(t testing.TB, v *vaultServer, apiURL string) {
	t.Helper()
	var read struct {
		Data map[string]interface{} `json:"data"`
	}
	v.mustCLIJSON(t, &read, "read", mountPath+"/config")
	if got := read.Data["username"]; got != standinUsername {
		t.Errorf("config username = %v, want %q", got, standinUsername)
	}
	if got := read.Data["url"]; got != apiURL {
		t.Errorf("config url = %v, want %q", got, apiURL)
	}
}

func TestRaftRestartKeepsConfigAndLease(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	cluster := startRaftNodes(t, 1, func(int) string { return pluginDir })
	cluster.initialize(t)
	node := cluster.Nodes[0]

	node.server.enablePlugin(t)
	node.server.configure(t, api)
	before := readTokenCLI(t, node.server)

	// SIGTERM, as systemd stops Vault, then start on the same data.
	node.server.stop()
	node.start(t, cluster.RootToken)
	if h, err := node.health(); err != nil || !h.Sealed {
		t.Fatalf("restarted node health = %+v, %v; want sealed", h, err)
	}
	node.unseal(t, cluster.UnsealKey)
	node.waitHealth(t, 60*time.Second, isActive)

	assertConfig(t, node.server, api.URL)

	// The lease from before the restart still exists and can be revoked.
	node.server.mustCLI(t, "lease", "lookup", before.LeaseID)
	node.server.mustCLI(t, "lease", "revoke", before.LeaseID)
	if res := node.server.cli(t, node.server.Token, "", "lease", "lookup", before.LeaseID); res.Err == nil {
		t.Errorf("lease %s still found after revoke", before.LeaseID)
	}

	logins := fake.TokensIssued()
	after := readTokenCLI(t, node.server)
	if !fake.TokenValid(after.Data["token"]) {
		t.Errorf("token read after the restart returned %q, not a token the API issued", after.Data["token"])
	}
	if got := fake.TokensIssued() - logins; got != 1 {
		t.Errorf("logins during the token read after the restart = %d, want 1", got)
	}
	if after.LeaseID == before.LeaseID {
		t.Errorf("token read after the restart reused lease %s", before.LeaseID)
	}
}

// readCounts are the outcomes of token reads in one phase of a test.
type readCounts struct {
	ok, failed atomic.Int64
}

// readLoad reads tokens from a few goroutines until stop is called or each
// goroutine has made maxReads reads. Each read is counted in the phase that
// was current when it started.
type readLoad struct {
	phase   atomic.Pointer[readCounts]
	invalid atomic.Int64
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	firstErr []string
}

func startReadLoad(t testing.TB, v *vaultServer, fake *standin.Server, first *readCounts) *readLoad {
	t.Helper()
	const (
		readers  = 3
		maxReads = 400
		pause    = 20 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	load := &readLoad{cancel: cancel}
	load.phase.Store(first)

	for range readers {
		client := newAPIClient(t, v.Addr, v.Token)
		load.wg.Add(1)
		go func() {
			defer load.wg.Done()
			for range maxReads {
				if ctx.Err() != nil {
					return
				}
				counts := load.phase.Load()
				secret, err := readWithin(client, mountPath+"/token", 30*time.Second)
				if err != nil {
					counts.failed.Add(1)
					load.recordError(err)
				} else {
					counts.ok.Add(1)
					if token, _ := secret.Data["token"].(string); !fake.TokenValid(token) {
						load.invalid.Add(1)
					}
				}
				time.Sleep(pause)
			}
		}()
	}
	t.Cleanup(load.stop)
	return load
}

func (l *readLoad) recordError(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.firstErr) < 5 {
		l.firstErr = append(l.firstErr, err.Error())
	}
}

func (l *readLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// waitOK waits until counts has at least n successful reads.
func waitOK(t testing.TB, counts *readCounts, n int64) {
	t.Helper()
	if _, err := pollUntil(60*time.Second, 50*time.Millisecond, func() error {
		if counts.ok.Load() < n {
			return fmt.Errorf("%d of %d successful reads", counts.ok.Load(), n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPluginReloadDuringReads(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)

	var before, during, after readCounts
	load := startReadLoad(t, v, fake, &before)
	waitOK(t, &before, 10)

	reloads := []struct {
		name string
		args []string
	}{
		{"by plugin name", []string{"plugin", "reload", "-type=secret", "-plugin=" + pluginName}},
		{"by mount", []string{"write", "sys/plugins/reload/backend", "mounts=" + mountPath + "/"}},
	}
	for _, reload := range reloads {
		oldPlugins := pluginChildren(t, v.cmd.Process.Pid)
		if len(oldPlugins) != 1 {
			t.Fatalf("plugin processes before the reload %s = %v, want one", reload.name, oldPlugins)
		}

		load.phase.Store(&during)
		out := v.mustCLI(t, reload.args...)
		load.phase.Store(&after)
		t.Logf("reload %s: %s", reload.name, strings.TrimSpace(out))

		// The reload ends the plugin process; the next read starts a new one.
		okBefore := after.ok.Load()
		waitOK(t, &after, okBefore+10)
		newPlugins := pluginChildren(t, v.cmd.Process.Pid)
		if len(newPlugins) != 1 || slices.Contains(newPlugins, oldPlugins[0]) {
			t.Errorf("plugin processes after the reload %s = %v, want one other than %v",
				reload.name, newPlugins, oldPlugins)
		}
	}
	load.stop()

	// Vault 1.21.0's CLI sends -mounts in the root namespace to the
	// nonexistent path sys/plugins/reload/unknown, so the README reloads
	// one mount through sys/plugins/reload/backend as above.
	res := v.cli(t, v.Token, "", "plugin", "reload", "-mounts="+mountPath)
	if res.Err == nil || !strings.Contains(res.Stderr, "unsupported path") {
		t.Errorf("vault plugin reload -mounts=%s: err %v, stderr %q; the CLI no longer fails "+
			"as the README says", mountPath, res.Err, res.Stderr)
	}

	t.Logf("token reads: %d ok and %d failed before the reloads, %d ok and %d failed while "+
		"a reload ran, %d ok and %d failed after; first errors: %q",
		before.ok.Load(), before.failed.Load(), during.ok.Load(), during.failed.Load(),
		after.ok.Load(), after.failed.Load(), load.firstErr)
	if n := before.failed.Load(); n != 0 {
		t.Errorf("%d token reads failed before the reloads", n)
	}
	if n := after.failed.Load(); n != 0 {
		t.Errorf("%d token reads failed after a reload had returned", n)
	}
	if n := load.invalid.Load(); n != 0 {
		t.Errorf("%d token reads returned a token the API did not issue", n)
	}
	assertConfig(t, v, api.URL)
}
