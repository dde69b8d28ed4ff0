//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// agentExampleDir contains the example Vault Agent config and templates.
const agentExampleDir = "../examples/agent"

// agentExampleFiles are the example files the agent reads. The test links
// them into the agent's working directory, so the agent runs them as
// shipped.
var agentExampleFiles = []string{"agent.hcl", "noventiq-token.ctmpl", "app-config.json.ctmpl"}

// Rendered files, relative to the agent's working directory, as agent.hcl
// names them.
const (
	renderedTokenFile  = "rendered/noventiq-token"
	renderedConfigFile = "rendered/app-config.json"
)

const (
	// agentLeaseTTL is the mount's max lease TTL, and so the TTL of every
	// token lease during the agent test.
	agentLeaseTTL = 20 * time.Second

	// agentTokenLifetime is how long the stand-in accepts a token. It is a
	// little longer than a lease, so a file that still holds a token some
	// seconds after its lease ended holds a rejected token.
	agentTokenLifetime = 27 * time.Second

	// agentRunTime is how long the test watches the rendered files after
	// the first render: three and a half lease periods.
	agentRunTime = 70 * time.Second

	agentPollInterval = 250 * time.Millisecond

	// renewalJitter is the random spread that Vault Agent's template
	// engine (consul-template v0.41.1, in Vault v1.21.0) adds to
	// lease_renewal_threshold for non-renewable leases: plus or minus 0.05.
	renewalJitter = 0.05
)

// agentProcess is one running `vault agent`.
type agentProcess struct {
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
}

// startAgent runs `vault agent -config=agent.hcl` in dir against v. The
// agent logs at trace level to a file in dir and stops when the test ends.
func startAgent(t testing.TB, v *vaultServer, dir string) *agentProcess {
	t.Helper()
	a := &agentProcess{LogPath: filepath.Join(dir, "agent.log"), done: make(chan struct{})}
	logFile, err := os.Create(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}

	a.cmd = exec.Command(vaultBin, "agent", "-config=agent.hcl", "-log-level=trace")
	a.cmd.Dir = dir
	a.cmd.Env = append(cleanEnv(), "VAULT_ADDR="+v.Addr)
	a.cmd.Stdout = logFile
	a.cmd.Stderr = logFile
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.cmd.Wait()
		logFile.Close()
		close(a.done)
	}()
	t.Cleanup(a.stop)
	return a
}

func (a *agentProcess) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop ends the agent: SIGTERM, then SIGKILL after ten seconds.
func (a *agentProcess) stop() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// agentWorkDir returns a new working directory for the agent: symbolic
// links to the example files, and the role ID and secret ID files that
// agent.hcl names.
func agentWorkDir(t testing.TB, creds appRoleCredentials) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range agentExampleFiles {
		source, err := filepath.Abs(filepath.Join(agentExampleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(source, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "role-id"), []byte(creds.RoleID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret-id"), []byte(creds.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// exampleRenewalThreshold reads lease_renewal_threshold from the example
// agent.hcl, so the test's bounds follow the shipped setting.
func exampleRenewalThreshold(t testing.TB) float64 {
	t.Helper()
	config, err := os.ReadFile(filepath.Join(agentExampleDir, "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`(?m)^\s*lease_renewal_threshold\s*=\s*([0-9.]+)\s*$`).FindSubmatch(config)
	if match == nil {
		t.Fatalf("agent.hcl sets no lease_renewal_threshold")
	}
	threshold, err := strconv.ParseFloat(string(match[1]), 64)
	if err != nil {
		t.Fatalf("agent.hcl: invalid lease_renewal_threshold %q: %v", match[1], err)
	}
	if threshold-renewalJitter <= 0 || threshold+renewalJitter >= 1 {
		t.Fatalf("agent.hcl: lease_renewal_threshold %v leaves no room for the jitter of %v",
			threshold, renewalJitter)
	}
	return threshold
}

// renderedConfig is the JSON that app-config.json.ctmpl renders.
type renderedConfig struct {
	Noventiq struct {
		Token     string `json:"token"`
		IssuedAt  string `json:"issued_at"`
		ExpiresAt string `json:"expires_at"`
	} `json:"noventiq"`
}

// readRendered reads the two rendered files in dir and returns the token
// each of them contains.
func readRendered(dir string) (fileToken, configToken string, err error) {
	data, err := os.ReadFile(filepath.Join(dir, renderedTokenFile))
	if err != nil {
		return "", "", err
	}
	fileToken = string(data)

	data, err = os.ReadFile(filepath.Join(dir, renderedConfigFile))
	if err != nil {
		return "", "", err
	}
	var config renderedConfig
	if err := json.Unmarshal(data, &config); err != nil {
		return "", "", fmt.Errorf("%s is not valid JSON: %w\n%s", renderedConfigFile, err, data)
	}
	if err := checkRenderedTimes(config); err != nil {
		return "", "", fmt.Errorf("%s: %w\n%s", renderedConfigFile, err, data)
	}
	return fileToken, config.Noventiq.Token, nil
}

// checkRenderedTimes checks that the rendered config states when the token
// was issued and that it expires 24 hours later.
func checkRenderedTimes(config renderedConfig) error {
	issuedAt, err := time.Parse(time.RFC3339, config.Noventiq.IssuedAt)
	if err != nil {
		return fmt.Errorf("issued_at: %w", err)
	}
	expiresAt, err := time.Parse(time.RFC3339, config.Noventiq.ExpiresAt)
	if err != nil {
		return fmt.Errorf("expires_at: %w", err)
	}
	if got := expiresAt.Sub(issuedAt); got != 24*time.Hour {
		return fmt.Errorf("expires_at - issued_at = %s, want 24h", got)
	}
	return nil
}

// tokenSighting is one token in one rendered file, with the times the test
// first and last read it there.
type tokenSighting struct {
	token     string
	firstSeen time.Time
	lastSeen  time.Time
}

// sightingLog is the sequence of tokens that one rendered file held.
type sightingLog struct {
	name      string
	sightings []*tokenSighting
}

func (l *sightingLog) observe(token string, at time.Time) (isNew bool) {
	if n := len(l.sightings); n > 0 && l.sightings[n-1].token == token {
		l.sightings[n-1].lastSeen = at
		return false
	}
	l.sightings = append(l.sightings, &tokenSighting{token: token, firstSeen: at, lastSeen: at})
	return true
}

func TestAgentKeepsTokenFileValid(t *testing.T) {
	threshold := exampleRenewalThreshold(t)

	fake, api := startStandin(t, standin.Options{TokenLifetime: agentTokenLifetime})
	v := startDevVault(t)
	v.enablePlugin(t)
	v.configure(t, api)
	v.mustCLI(t, "secrets", "tune", fmt.Sprintf("-max-lease-ttl=%ds", int(agentLeaseTTL.Seconds())), mountPath+"/")

	// A lease now lasts agentLeaseTTL, far less than the token's 24 hours.
	var tokenRead struct {
		LeaseDuration int `json:"lease_duration"`
	}
	v.mustCLIJSON(t, &tokenRead, "read", mountPath+"/token")
	if got := time.Duration(tokenRead.LeaseDuration) * time.Second; got != agentLeaseTTL {
		t.Fatalf("lease_duration after the tune = %s, want %s", got, agentLeaseTTL)
	}

	creds := v.createAppRole(t, "noventiq-agent", "noventiq-token-reader", "token_ttl=1h", "token_max_ttl=4h")
	dir := agentWorkDir(t, creds)

	loginsBefore := fake.TokensIssued()
	agentStart := time.Now()
	agent := startAgent(t, v, dir)

	// Wait for the first render of both files. The agent writes each file
	// whole (a temporary file renamed over it), so any error other than a
	// missing file is a wrong render.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := readRendered(dir)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("first render: %v", err)
		}
		if agent.exited() {
			t.Fatalf("vault agent exited before rendering; log:\n%s", tail(agent.LogPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault agent did not render both files within 30s (%v); log:\n%s",
				err, tail(agent.LogPath, 40))
		}
		time.Sleep(agentPollInterval)
	}

	// Read both files every poll interval and present each token to the
	// API at once, like an application that reads its config and calls.
	fileLog := &sightingLog{name: renderedTokenFile}
	configLog := &sightingLog{name: renderedConfigFile}
	rejections := 0
	polls := 0
	runEnd := time.Now().Add(agentRunTime)
	for time.Now().Before(runEnd) {
		if agent.exited() {
			t.Fatalf("vault agent exited during the run; log:\n%s", tail(agent.LogPath, 40))
		}

		fileToken, configToken, err := readRendered(dir)
		readAt := time.Now()
		if err != nil {
			t.Fatalf("reading the rendered files: %v", err)
		}
		polls++
		fileLog.observe(fileToken, readAt)
		configLog.observe(configToken, readAt)

		for _, rendered := range []struct {
			name, token string
		}{{renderedTokenFile, fileToken}, {renderedConfigFile, configToken}} {
			res, err := callWhoami(api.URL, rendered.token)
			if err != nil {
				t.Fatalf("whoami: %v", err)
			}
			if res.Status != http.StatusOK {
				rejections++
				if rejections <= 5 {
					t.Errorf("%s held token %q, rejected %s after the agent started: status %d, body %s",
						rendered.name, rendered.token, readAt.Sub(agentStart).Round(time.Millisecond), res.Status, res.Body)
				}
			}
		}
		time.Sleep(agentPollInterval)
	}
	logins := fake.TokensIssued() - loginsBefore
	window := time.Since(agentStart)
	agent.stop()

	if rejections > 0 {
		t.Errorf("the API rejected a rendered token %d times in %d polls", rejections, polls)
	}

	// Each token must leave each file before its lease ends. The lease
	// starts after the login, so the login time plus the lease TTL is a
	// lower bound for the lease's end.
	var leads []time.Duration
	for _, history := range []*sightingLog{fileLog, configLog} {
		for i, s := range history.sightings {
			issuedAt, ok := fake.TokenIssuedAt(s.token)
			if !ok {
				t.Errorf("%s held token %q, which the stand-in never issued", history.name, s.token)
				continue
			}
			leaseEnd := issuedAt.Add(agentLeaseTTL)
			if !s.lastSeen.Before(leaseEnd) {
				t.Errorf("%s still held token %d at %s, after its lease ended at %s (login + %s)",
					history.name, i, s.lastSeen.Format(time.StampMilli), leaseEnd.Format(time.StampMilli), agentLeaseTTL)
			}
			if i+1 < len(history.sightings) && history == fileLog {
				leads = append(leads, leaseEnd.Sub(history.sightings[i+1].firstSeen))
			}
		}
	}

	// Three and a half lease periods must show at least three new tokens.
	wantReplacements := int(agentRunTime / agentLeaseTTL)
	if got := len(fileLog.sightings) - 1; got < wantReplacements {
		t.Errorf("%s was replaced %d times in %s, want at least %d", renderedTokenFile, got, agentRunTime, wantReplacements)
	}
	fileTokens := map[string]bool{}
	for _, s := range fileLog.sightings {
		fileTokens[s.token] = true
	}
	if len(fileTokens) != len(fileLog.sightings) {
		t.Errorf("%s held the same token twice: %d tokens, %d distinct", renderedTokenFile,
			len(fileLog.sightings), len(fileTokens))
	}
	configTokens := map[string]bool{}
	for _, s := range configLog.sightings {
		configTokens[s.token] = true
		if !fileTokens[s.token] {
			t.Errorf("%s held token %q, which %s never held", renderedConfigFile, s.token, renderedTokenFile)
		}
	}
	if len(configTokens) != len(fileTokens) {
		t.Errorf("%s held %d tokens and %s %d, want the same tokens in both", renderedTokenFile,
			len(fileTokens), renderedConfigFile, len(configTokens))
	}

	// No refresh storm: the engine waits at least (threshold - jitter) of
	// a lease between two reads, so the logins are bounded by the first
	// one, one per such wait, and one more for margin.
	minInterval := time.Duration((threshold - renewalJitter) * float64(agentLeaseTTL))
	maxLogins := 1 + int64(window/minInterval) + 1
	if logins > maxLogins {
		t.Errorf("%d logins in %s, want at most %d (threshold %v, lease %s)", logins, window, maxLogins, threshold, agentLeaseTTL)
	}
	// Both templates use the same secret, so one read, and one login,
	// serves both files.
	if logins != int64(len(fileTokens)) {
		t.Errorf("%d logins for %d tokens rendered, want one login per token", logins, len(fileTokens))
	}
	var intervals []time.Duration
	for i := 1; i < len(fileLog.sightings); i++ {
		previous, _ := fake.TokenIssuedAt(fileLog.sightings[i-1].token)
		current, _ := fake.TokenIssuedAt(fileLog.sightings[i].token)
		interval := current.Sub(previous)
		intervals = append(intervals, interval)
		if interval < minInterval {
			t.Errorf("login %d came %s after the previous one, want at least %s", i, interval, minInterval)
		}
	}

	for _, name := range []string{renderedTokenFile, renderedConfigFile} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, perm)
		}
	}

	t.Logf("settings: lease TTL %s, stand-in token lifetime %s, lease_renewal_threshold %v",
		agentLeaseTTL, agentTokenLifetime, threshold)
	t.Logf("%d logins in %s from agent start (%.2f per lease period), %d tokens rendered, %d polls, %d rejections",
		logins, window.Round(time.Millisecond), float64(logins)/(float64(window)/float64(agentLeaseTTL)),
		len(fileTokens), polls, rejections)
	t.Logf("time between logins: %s", formatDurations(intervals))
	t.Logf("new token in %s before the old lease ended, at least: %s", renderedTokenFile, formatDurations(leads))
	t.Logf("template engine sleeps:\n%s", grepLines(agent.LogPath, "non-renewable secret, set sleep for"))
}

func formatDurations(durations []time.Duration) string {
	parts := make([]string, len(durations))
	for i, d := range durations {
		parts[i] = d.Round(10 * time.Millisecond).String()
	}
	return strings.Join(parts, ", ")
}

// grepLines returns the lines of a file that contain substr.
func grepLines(path, substr string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, substr) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
