//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// failoverTimeout bounds how long token and config reads may fail after the
// active node dies. With Vault's default Raft timing they failed for 8 to
// 15 seconds on a 2-core machine, so the bound leaves room for a slow one.
const failoverTimeout = 90 * time.Second

// readTokenAndConfig reads a token and the config through node and checks
// both. It returns an error instead of failing, for polling.
func readTokenAndConfig(node *raftNode, fake *standin.Server) error {
	secret, err := readWithin(node.server.Client, mountPath+"/token", 10*time.Second)
	if err != nil {
		return fmt.Errorf("token read through %s: %w", node.ID, err)
	}
	if token, _ := secret.Data["token"].(string); !fake.TokenValid(token) {
		return fmt.Errorf("token read through %s returned %q, not a token the API issued", node.ID, token)
	}
	if secret.LeaseID == "" {
		return fmt.Errorf("token read through %s returned no lease", node.ID)
	}

	config, err := readWithin(node.server.Client, mountPath+"/config", 10*time.Second)
	if err != nil {
		return fmt.Errorf("config read through %s: %w", node.ID, err)
	}
	if got := config.Data["username"]; got != standinUsername {
		return fmt.Errorf("config read through %s: username = %v, want %q", node.ID, got, standinUsername)
	}
	return nil
}

func TestRaftClusterFailover(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})

	// Every node gets its own copy of the plugin, as on separate machines;
	// the catalog's SHA-256 must match each copy.
	var pluginDirs []string
	for range 3 {
		dir := copyPlugin(t)
		sum, err := fileSHA256(filepath.Join(dir, pluginName))
		if err != nil {
			t.Fatal(err)
		}
		if sum != pluginSHA256 {
			t.Fatalf("plugin copy in %s has SHA-256 %s, want %s", dir, sum, pluginSHA256)
		}
		pluginDirs = append(pluginDirs, dir)
	}

	cluster := startRaftNodes(t, 3, func(i int) string { return pluginDirs[i] })
	cluster.initialize(t)
	leader := cluster.Nodes[0]
	ids := []string{"node1", "node2", "node3"}
	start := time.Now()
	waitVoters(t, leader, 90*time.Second, ids...)
	t.Logf("all three nodes were voters %s after the standbys unsealed", time.Since(start).Round(time.Second))

	// The plugin is registered and mounted once, through the active node.
	leader.server.enablePlugin(t)
	leader.server.configure(t, api)

	// Standbys forward the reads to the active node, which alone runs the
	// plugin.
	for _, node := range cluster.Nodes[1:] {
		if err := readTokenAndConfig(node, fake); err != nil {
			t.Errorf("read through standby: %v", err)
		}
	}
	if got := leader.pluginProcesses(t); len(got) != 1 {
		t.Errorf("plugin processes on the active node = %v, want one", got)
	}
	for _, node := range cluster.Nodes[1:] {
		if got := node.pluginProcesses(t); len(got) != 0 {
			t.Errorf("plugin processes on standby %s = %v, want none", node.ID, got)
		}
	}

	// The active node dies without a chance to step down.
	leader.kill(t)
	killed := time.Now()
	survivors := cluster.Nodes[1:]

	var elected time.Duration
	var served *raftNode
	took, err := pollUntil(failoverTimeout, 250*time.Millisecond, func() error {
		if elected == 0 && cluster.active() != nil {
			elected = time.Since(killed)
		}
		var errs []error
		for _, node := range survivors {
			err := readTokenAndConfig(node, fake)
			if err == nil {
				served = node
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("%v", errs)
	})
	if err != nil {
		t.Fatalf("reads still failing %s after killing the active node: %v\nlog of %s:\n%s",
			took.Round(time.Millisecond), err, survivors[0].ID, tail(survivors[0].logPath, 60))
	}
	t.Logf("failover: a new active node after %s; token and config reads through %s succeeded %s after SIGKILL",
		elected.Round(time.Millisecond), served.ID, took.Round(time.Millisecond))

	newLeader := cluster.active()
	if newLeader == nil {
		t.Fatal("no active node after the failover")
	}
	if newLeader == leader {
		t.Fatalf("killed node %s is still reported active", leader.ID)
	}
	for _, node := range survivors {
		if err := readTokenAndConfig(node, fake); err != nil {
			t.Errorf("read after the failover: %v", err)
		}
		assertConfig(t, node.server, api.URL)
	}

	// The old leader comes back on its own data and rejoins as a voter.
	leader.start(t, cluster.RootToken)
	leader.unseal(t, cluster.UnsealKey)
	leader.waitHealth(t, 60*time.Second, isStandby)
	peers := waitVoters(t, newLeader, 60*time.Second, ids...)
	for _, peer := range peers {
		if peer.Leader && peer.NodeID != newLeader.ID {
			t.Errorf("list-peers shows %s as leader, want %s", peer.NodeID, newLeader.ID)
		}
	}
	// A standby forwards only once it has learned the active node's
	// address, which may come after its health reports it a standby.
	took, err = pollUntil(60*time.Second, 250*time.Millisecond, func() error {
		return readTokenAndConfig(leader, fake)
	})
	if err != nil {
		t.Fatalf("reads through the rejoined node still failing after %s: %v\nits log:\n%s",
			took.Round(time.Millisecond), err, tail(leader.logPath, 60))
	}
	t.Logf("reads through the rejoined node succeeded %s after it reported standby", took.Round(time.Millisecond))
	assertConfig(t, leader.server, api.URL)
}

// processRunning reports whether process pid exists and is not a zombie.
func processRunning(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	end := strings.LastIndexByte(string(stat), ')')
	return end >= 0 && !strings.HasPrefix(string(stat[end+1:]), " Z")
}

func TestClusterScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	port := freeFixedPorts(t, 6)
	env := append(cleanEnv(),
		"NOVENTIQ_CLUSTER_DIR="+dir,
		fmt.Sprintf("NOVENTIQ_CLUSTER_PORT=%d", port),
		// The nodes outlive the script; this stops them if the test dies
		// before its cleanup runs.
		"NOVENTIQ_CLUSTER_MAX_RUN=5m",
		"VAULT_BIN="+vaultBin)
	script := func(action string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "../scripts/cluster.sh", action)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := script("stop"); err != nil {
			t.Errorf("cluster.sh stop: %v\n%s", err, out)
		}
	})

	out, err := script("start")
	if err != nil {
		t.Fatalf("cluster.sh start: %v\n%s", err, out)
	}
	t.Logf("cluster.sh start:\n%s", out)
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("http://127.0.0.1:%d", port+2*i)
		if !strings.Contains(out, addrs[i]) {
			t.Errorf("start output does not name node%d's address %s", i+1, addrs[i])
		}
	}
	rootTokenPath := filepath.Join(dir, "root-token")
	if !strings.Contains(out, rootTokenPath) {
		t.Errorf("start output does not name the root token file %s", rootTokenPath)
	}

	out, err = script("status")
	if err != nil {
		t.Fatalf("cluster.sh status: %v\n%s", err, out)
	}
	if n := strings.Count(out, "unsealed  active"); n != 1 {
		t.Errorf("status shows %d active nodes, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "unsealed  standby"); n != 2 {
		t.Errorf("status shows %d standby nodes, want 2:\n%s", n, out)
	}

	// The cluster serves the mounted plugin: configure through one standby
	// and read a token through the other.
	rootToken, err := os.ReadFile(rootTokenPath)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(rootToken))
	fake, api := startStandin(t, standin.Options{})
	standby := &vaultServer{Addr: addrs[1], Token: token}
	standby.configure(t, api)
	secret, err := readWithin(newAPIClient(t, addrs[2], token), mountPath+"/token", 30*time.Second)
	if err != nil {
		t.Fatalf("token read through node3: %v", err)
	}
	if got, _ := secret.Data["token"].(string); !fake.TokenValid(got) {
		t.Errorf("token read through node3 returned %q, not a token the API issued", got)
	}

	var pids []int
	for i := 1; i <= 3; i++ {
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d", i), "pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}

	out, err = script("stop")
	if err != nil {
		t.Fatalf("cluster.sh stop: %v\n%s", err, out)
	}
	for _, pid := range pids {
		if processRunning(pid) {
			t.Errorf("process %d still running after cluster.sh stop", pid)
		}
	}
	for _, addr := range addrs {
		if conn, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://")); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after cluster.sh stop", addr)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists after stop: %v", dir, err)
	}
	if out, err := script("status"); err == nil {
		t.Errorf("cluster.sh status succeeded after stop:\n%s", out)
	}
}
