//go:build e2e

// Package e2e drives a real Vault server, built by scripts/vault.sh, with
// the plugin registered in its catalog. The only stand-in is the Noventiq
// API, served in-process on 127.0.0.1.
//
// Run through `make test`, which builds Vault and sets VAULT_BIN. Without
// VAULT_BIN the package fails instead of skipping.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

const (
	pluginName    = "vault-plugin-secrets-noventiq"
	pluginVersion = "v0.1.0"
	rootToken     = "root"
	mountPath     = "noventiq"

	standinUsername = "shop-admin"
	standinPassword = `pa"ss\wörd-Ω`
)

var (
	vaultBin     string
	pluginDir    string
	pluginSHA256 string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	vaultBin = os.Getenv("VAULT_BIN")
	if vaultBin == "" {
		fmt.Fprintln(os.Stderr, "VAULT_BIN is not set: run the end-to-end tests through `make test`, "+
			"which builds the pinned Vault with scripts/vault.sh")
		return 1
	}
	if _, err := exec.Command(vaultBin, "version").Output(); err != nil {
		fmt.Fprintf(os.Stderr, "VAULT_BIN=%s does not run: %v\n", vaultBin, err)
		return 1
	}

	dir, err := os.MkdirTemp("", "noventiq-e2e-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	pluginDir = dir
	pluginSHA256, err = buildPlugin(filepath.Join(dir, pluginName), pluginVersion)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildPlugin compiles the plugin with the given version and returns the
// binary's SHA-256 in hex.
func buildPlugin(output, version string) (string, error) {
	cmd := exec.Command("go", "build", "-o", output,
		"-ldflags", "-X main.version="+version, "../cmd/vault-plugin-secrets-noventiq")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the plugin: %w", err)
	}
	return fileSHA256(output)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// vaultServer is one running Vault process on loopback.
type vaultServer struct {
	Addr    string
	Token   string
	LogPath string
	Client  *vaultapi.Client

	cmd  *exec.Cmd
	done chan struct{}
}

// freePortPair returns a loopback port p such that p and p+1 were both
// free: Vault's dev server puts its cluster listener on the next port.
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if err != nil {
			continue
		}
		next.Close()
		return port
	}
	t.Fatal("no free pair of loopback ports found")
	return 0
}

// startDevVault starts `vault server -dev` on loopback with the plugin
// directory set and waits until it responds. The server logs at trace level
// to a file in the test's temporary directory and stops when the test ends.
func startDevVault(t testing.TB) *vaultServer {
	t.Helper()
	dir := t.TempDir()
	port := freePortPair(t)

	configPath := filepath.Join(dir, "vault.hcl")
	config := fmt.Sprintf("plugin_directory = %q\ndisable_mlock = true\n", pluginDir)
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	v := &vaultServer{
		Addr:    "http://" + addr,
		Token:   rootToken,
		LogPath: filepath.Join(dir, "vault.log"),
		done:    make(chan struct{}),
	}
	logFile, err := os.Create(v.LogPath)
	if err != nil {
		t.Fatal(err)
	}

	v.cmd = exec.Command(vaultBin, "server", "-dev",
		"-dev-root-token-id="+rootToken,
		"-dev-listen-address="+addr,
		"-config="+configPath,
		"-log-level=trace")
	v.cmd.Env = cleanEnv()
	v.cmd.Stdout = logFile
	v.cmd.Stderr = logFile
	v.cmd.SysProcAttr = vaultProcAttr()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		v.cmd.Wait()
		logFile.Close()
		close(v.done)
	}()
	t.Cleanup(v.stop)

	v.Client = newAPIClient(t, v.Addr, rootToken)
	v.waitHealthy(t)
	return v
}

func newAPIClient(t testing.TB, addr, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	client, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(token)
	return client
}

func (v *vaultServer) waitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-v.done:
			t.Fatalf("vault exited during start-up; log:\n%s", tail(v.LogPath, 40))
		default:
		}
		health, err := v.Client.Sys().Health()
		if err == nil && health.Initialized && !health.Sealed {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("vault did not become healthy within 60s; log:\n%s", tail(v.LogPath, 40))
}

// stop ends the server: SIGTERM, then SIGKILL after ten seconds.
func (v *vaultServer) stop() {
	select {
	case <-v.done:
		return
	default:
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		v.killGroup()
		<-v.done
	}
}

// vaultProcAttr puts a Vault process in a process group of its own, so
// that killGroup also reaches the plugin processes it starts, and kills it
// if the test process dies first.
func vaultProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the Vault process and every plugin process in
// its group. SIGKILL to Vault alone would leave its plugins running.
func (v *vaultServer) killGroup() {
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
}

// cleanEnv is the test process's environment without VAULT_ variables, so
// a developer's own Vault settings cannot leak into a test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

// cliResult is the outcome of one `vault` CLI command.
type cliResult struct {
	Stdout, Stderr string
	Err            error
}

// cli runs the real vault CLI against v with the given token and optional
// standard input.
func (v *vaultServer) cli(t testing.TB, token, stdin string, args ...string) cliResult {
	t.Helper()
	return v.cliEnv(t, nil, token, stdin, args...)
}

// cliEnv is cli with extra environment variables.
func (v *vaultServer) cliEnv(t testing.TB, env []string, token, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = append(cleanEnv(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+token)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	return cliResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// mustCLI runs the vault CLI as root and fails the test if it fails.
func (v *vaultServer) mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	res := v.cli(t, v.Token, "", args...)
	if res.Err != nil {
		t.Fatalf("vault %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Err, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// mustCLIJSON runs a vault CLI command as root with JSON output and
// decodes that output into out.
func (v *vaultServer) mustCLIJSON(t testing.TB, out interface{}, args ...string) {
	t.Helper()
	res := v.cliEnv(t, []string{"VAULT_FORMAT=json"}, v.Token, "", args...)
	if res.Err != nil {
		t.Fatalf("vault %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Err, res.Stdout, res.Stderr)
	}
	stdout := res.Stdout
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("decoding output of vault %s: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// registerPlugin registers the plugin binary built in TestMain under
// pluginVersion, with its SHA-256.
func (v *vaultServer) registerPlugin(t testing.TB) {
	t.Helper()
	v.mustCLI(t, "plugin", "register",
		"-sha256="+pluginSHA256,
		"-version="+pluginVersion,
		"-command="+pluginName,
		"secret", pluginName)
}

// enablePlugin registers the plugin and mounts it at mountPath.
func (v *vaultServer) enablePlugin(t testing.TB) {
	t.Helper()
	v.registerPlugin(t)
	v.mustCLI(t, "secrets", "enable",
		"-path="+mountPath,
		"-plugin-version="+pluginVersion,
		pluginName)
}

// configure writes the stand-in's URL and credentials to the config path.
// The password goes through standard input so it never is an argument.
func (v *vaultServer) configure(t testing.TB, api *httptest.Server) {
	t.Helper()
	body, err := json.Marshal(map[string]string{
		"username": standinUsername,
		"password": standinPassword,
		"url":      api.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := v.cli(t, v.Token, string(body), "write", mountPath+"/config", "-")
	if res.Err != nil {
		t.Fatalf("vault write %s/config: %v\n%s%s", mountPath, res.Err, res.Stdout, res.Stderr)
	}
}

// startStandin serves a stand-in Noventiq API on 127.0.0.1 for the test.
func startStandin(t testing.TB, opts standin.Options) (*standin.Server, *httptest.Server) {
	t.Helper()
	if opts.Username == "" {
		opts.Username = standinUsername
		opts.Password = standinPassword
	}
	fake := standin.New(opts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readSecret reads a path through the HTTP API with the given client.
func readSecret(t testing.TB, client *vaultapi.Client, path string) (*vaultapi.Secret, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return client.Logical().ReadWithContext(ctx, path)
}

// statusCode extracts the HTTP status of an API error, or 0.
func statusCode(err error) int {
	if respErr, ok := err.(*vaultapi.ResponseError); ok {
		return respErr.StatusCode
	}
	return 0
}
