package benchmark

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

const (
	rootToken          = "root"
	vaultStartTimeout  = 60 * time.Second
	vaultStopTimeout   = 10 * time.Second
	maxIdleConnections = 256
)

// vaultServer is one `vault server -dev` process on loopback, in its own
// process group so that stopping it also stops the plugin processes it
// started.
type vaultServer struct {
	addr    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startVault starts a dev server with pluginDir as its plugin directory and
// waits until it is unsealed. Its log goes to workDir/vault.log.
func startVault(ctx context.Context, vaultBin, pluginDir, workDir string) (*vaultServer, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}

	configPath := filepath.Join(workDir, "vault.hcl")
	config := fmt.Sprintf("plugin_directory = %q\ndisable_mlock = true\n", pluginDir)
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(workDir, "vault.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}

	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(vaultBin, "server", "-dev",
		"-dev-root-token-id="+rootToken,
		"-dev-listen-address="+listen,
		"-config="+configPath,
		// Request logging at a lower level would slow every request down.
		"-log-level=warn")
	cmd.Env = environWithoutVault()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", vaultBin, err)
	}

	v := &vaultServer{addr: "http://" + listen, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(v.done)
	}()

	if err := v.waitUnsealed(ctx); err != nil {
		v.stop()
		return nil, err
	}
	return v, nil
}

// waitUnsealed polls the health endpoint until the server is initialised
// and unsealed, it exits, or vaultStartTimeout passes.
func (v *vaultServer) waitUnsealed(ctx context.Context) error {
	client, err := newVaultClient(v.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, vaultStartTimeout)
	defer cancel()

	for {
		health, err := client.Sys().HealthWithContext(ctx)
		if err == nil && health.Initialized && !health.Sealed {
			return nil
		}
		select {
		case <-v.done:
			return fmt.Errorf("vault exited during start-up; see %s", v.logPath)
		case <-ctx.Done():
			return fmt.Errorf("vault did not become ready within %s; see %s", vaultStartTimeout, v.logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, then SIGKILL after vaultStopTimeout, and finally kills
// what is left of the process group, such as a plugin process.
func (v *vaultServer) stop() {
	pgid := v.cmd.Process.Pid
	select {
	case <-v.done:
	default:
		_ = v.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-v.done:
		case <-time.After(vaultStopTimeout):
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (v *vaultServer) pid() int { return v.cmd.Process.Pid }

// newVaultClient returns a root client whose connection pool keeps enough
// idle connections for every load worker, so the measurement does not
// include opening new connections.
func newVaultClient(addr string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = time.Minute
	if transport, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		transport.MaxIdleConns = maxIdleConnections
		transport.MaxIdleConnsPerHost = maxIdleConnections
	}

	client, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.SetToken(rootToken)
	return client, nil
}

// freePortPair returns a loopback port p such that p and p+1 were both
// free: Vault's dev server puts its cluster listener on the next port.
func freePortPair() (int, error) {
	for range 50 {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := listener.Addr().(*net.TCPAddr).Port
		listener.Close()

		next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if err != nil {
			continue
		}
		next.Close()
		return port, nil
	}
	return 0, errors.New("no free pair of loopback ports found")
}

// environWithoutVault is this process's environment without VAULT_
// variables, so a developer's own Vault settings cannot reach the server.
func environWithoutVault() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}
