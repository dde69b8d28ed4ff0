//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// raftNode is one Vault server with integrated storage (Raft) on loopback.
// Its config, data directory and ports stay the same across restarts, so a
// restarted node comes back as the same Raft peer.
type raftNode struct {
	ID         string
	Addr       string
	dir        string
	configPath string
	logPath    string

	// server is the running process, replaced on every start. Its Token is
	// the root token once the cluster is initialised.
	server *vaultServer
}

// raftCluster is a set of raft nodes sharing one barrier, with the unseal
// key and root token of its single Shamir key share.
type raftCluster struct {
	Nodes     []*raftNode
	UnsealKey string
	RootToken string
}

// raftNodeConfig is the server config of a node: the listener without TLS
// on loopback, integrated storage in the node's directory, retry_join
// blocks for its peers, and the plugin directory.
const raftNodeConfig = `
ui            = false
disable_mlock = true
api_addr      = %[1]q
cluster_addr  = %[2]q
plugin_directory = %[3]q

listener "tcp" {
  address         = %[4]q
  cluster_address = %[5]q
  tls_disable     = true
}

storage "raft" {
  path    = %[6]q
  node_id = %[7]q
%[8]s}
`

// newRaftNode writes the config of a node whose plugin directory is
// plugins and which joins the nodes at the API addresses in peers. The
// node is not started.
func newRaftNode(t testing.TB, id, plugins string, apiPort int, peers []string) *raftNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}

	listen := fmt.Sprintf("127.0.0.1:%d", apiPort)
	clusterListen := fmt.Sprintf("127.0.0.1:%d", apiPort+1)
	var joins strings.Builder
	for _, peer := range peers {
		fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = %q\n  }\n", peer)
	}
	config := fmt.Sprintf(raftNodeConfig,
		"http://"+listen, "https://"+clusterListen, plugins,
		listen, clusterListen, dataDir, id, joins.String())

	n := &raftNode{
		ID:         id,
		Addr:       "http://" + listen,
		dir:        dir,
		configPath: filepath.Join(dir, "vault.hcl"),
		logPath:    filepath.Join(dir, "vault.log"),
	}
	if err := os.WriteFile(n.configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// start launches the node's Vault process and waits until its API
// responds, sealed or not. The log of every run is appended to one file,
// and the process stops when the test ends.
func (n *raftNode) start(t testing.TB, token string) {
	t.Helper()
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logFile, "==> starting %s at %s\n", n.ID, time.Now().Format(time.RFC3339Nano))

	v := &vaultServer{
		Addr:    n.Addr,
		Token:   token,
		LogPath: n.logPath,
		done:    make(chan struct{}),
	}
	v.cmd = exec.Command(vaultBin, "server", "-config="+n.configPath, "-log-level=debug")
	v.cmd.Env = cleanEnv()
	v.cmd.Stdout = logFile
	v.cmd.Stderr = logFile
	v.cmd.SysProcAttr = vaultProcAttr()
	if err := v.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		v.cmd.Wait()
		logFile.Close()
		close(v.done)
	}()
	t.Cleanup(v.stop)

	v.Client = newAPIClient(t, v.Addr, token)
	n.server = v
	n.waitHealth(t, 60*time.Second, func(*vaultapi.HealthResponse) bool { return true })
}

// kill ends the node's process and its plugin processes with SIGKILL, as
// a crash or a power loss would, and waits until Vault has exited.
func (n *raftNode) kill(t testing.TB) {
	t.Helper()
	n.server.killGroup()
	<-n.server.done
}

// alive reports whether the node's current process is still running.
func (n *raftNode) alive() bool {
	select {
	case <-n.server.done:
		return false
	default:
		return true
	}
}

// health returns the node's health with a short timeout.
func (n *raftNode) health() (*vaultapi.HealthResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.server.Client.Sys().HealthWithContext(ctx)
}

// waitHealth polls the node's health every 200ms until ready accepts it
// or timeout passes, and fails the test if the process exits first.
func (n *raftNode) waitHealth(t testing.TB, timeout time.Duration, ready func(*vaultapi.HealthResponse) bool) *vaultapi.HealthResponse {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !n.alive() {
			t.Fatalf("%s exited; log:\n%s", n.ID, tail(n.logPath, 40))
		}
		health, err := n.health()
		if err == nil && ready(health) {
			return health
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%+v", *health)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s; last health: %s; log:\n%s", n.ID, timeout, last, tail(n.logPath, 40))
	return nil
}

func isActive(h *vaultapi.HealthResponse) bool {
	return h.Initialized && !h.Sealed && !h.Standby
}

func isStandby(h *vaultapi.HealthResponse) bool {
	return h.Initialized && !h.Sealed && h.Standby
}

// unseal submits the unseal key until the node accepts it. A node that is
// joining a cluster rejects the key as "not initialized" until its join
// request reaches the leader, so the first submissions may fail.
func (n *raftNode) unseal(t testing.TB, key string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := n.server.Client.Sys().UnsealWithContext(ctx, key)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unsealing %s: %v; log:\n%s", n.ID, err, tail(n.logPath, 40))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// setToken makes the node's client and CLI calls use token.
func (n *raftNode) setToken(token string) {
	n.server.Token = token
	n.server.Client.SetToken(token)
}

// freeFixedPorts returns a loopback port p such that p to p+n-1 were all
// free. It picks from below the kernel's ephemeral port range, because a
// node's ports must stay free while it is down: an ephemeral port may be
// taken by any outgoing connection in the meantime.
func freeFixedPorts(t testing.TB, n int) int {
	t.Helper()
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscanf(string(data), "%d", &low)
	}
	const first = 10000
	if low-first < 1000 {
		t.Fatalf("the ephemeral port range starts at %d, leaving too few fixed ports", low)
	}
	for range 100 {
		port := first + rand.IntN(low-first-n)
		if portsFree(port, n) {
			return port
		}
	}
	t.Fatalf("no %d consecutive free loopback ports found below %d", n, low)
	return 0
}

// portsFree reports whether the loopback ports port to port+n-1 can all be
// bound.
func portsFree(port, n int) bool {
	for p := port; p < port+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// startRaftNodes writes configs for size nodes, each joining all the
// others, and starts them. pluginDirFor returns each node's plugin
// directory.
func startRaftNodes(t testing.TB, size int, pluginDirFor func(i int) string) *raftCluster {
	t.Helper()
	ports := make([]int, size)
	addrs := make([]string, size)
	for i := range ports {
		ports[i] = freeFixedPorts(t, 2)
		for slices.ContainsFunc(ports[:i], func(p int) bool { return p >= ports[i]-1 && p <= ports[i]+1 }) {
			ports[i] = freeFixedPorts(t, 2)
		}
		addrs[i] = fmt.Sprintf("http://127.0.0.1:%d", ports[i])
	}

	c := &raftCluster{}
	for i := range size {
		var peers []string
		for j, addr := range addrs {
			if j != i {
				peers = append(peers, addr)
			}
		}
		node := newRaftNode(t, fmt.Sprintf("node%d", i+1), pluginDirFor(i), ports[i], peers)
		node.start(t, "")
		c.Nodes = append(c.Nodes, node)
	}
	return c
}

// initialize initialises the cluster through its first node with one
// Shamir key share, unseals every node and waits until the first node is
// active and the others are standbys.
func (c *raftCluster) initialize(t testing.TB) {
	t.Helper()
	first := c.Nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := first.server.Client.Sys().InitWithContext(ctx, &vaultapi.InitRequest{
		SecretShares:    1,
		SecretThreshold: 1,
	})
	if err != nil {
		t.Fatalf("initialising %s: %v; log:\n%s", first.ID, err, tail(first.logPath, 40))
	}
	c.UnsealKey = resp.KeysB64[0]
	c.RootToken = resp.RootToken
	for _, n := range c.Nodes {
		n.setToken(c.RootToken)
	}

	first.unseal(t, c.UnsealKey)
	first.waitHealth(t, 60*time.Second, isActive)
	for _, n := range c.Nodes[1:] {
		n.unseal(t, c.UnsealKey)
		n.waitHealth(t, 60*time.Second, isStandby)
	}
}

// active returns the node that reports itself active, or nil.
func (c *raftCluster) active() *raftNode {
	for _, n := range c.Nodes {
		if !n.alive() {
			continue
		}
		if h, err := n.health(); err == nil && isActive(h) {
			return n
		}
	}
	return nil
}

// raftPeer is one server in `vault operator raft list-peers`.
type raftPeer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// listPeers runs `vault operator raft list-peers` against node.
func listPeers(t testing.TB, node *raftNode) []raftPeer {
	t.Helper()
	var out struct {
		Data struct {
			Config struct {
				Servers []raftPeer `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	node.server.mustCLIJSON(t, &out, "operator", "raft", "list-peers")
	return out.Data.Config.Servers
}

// waitVoters polls list-peers on node every second until every id in ids
// is a voter.
func waitVoters(t testing.TB, node *raftNode, timeout time.Duration, ids ...string) []raftPeer {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		peers := listPeers(t, node)
		voters := map[string]bool{}
		for _, p := range peers {
			voters[p.NodeID] = p.Voter
		}
		missing := 0
		for _, id := range ids {
			if !voters[id] {
				missing++
			}
		}
		if missing == 0 {
			return peers
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all of %v are voters within %s: %+v", ids, timeout, peers)
		}
		time.Sleep(time.Second)
	}
}

// copyPlugin copies the plugin binary built in TestMain into a new
// directory, as a deployment copies it to every node, and returns the
// directory.
func copyPlugin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.Open(filepath.Join(pluginDir, pluginName))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, pluginName), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pluginProcesses returns the ids of the running processes whose parent is
// the node's Vault process and whose executable is the plugin.
func (n *raftNode) pluginProcesses(t testing.TB) []int {
	t.Helper()
	return pluginChildren(t, n.server.cmd.Process.Pid)
}

// pluginChildren returns the ids of the running children of parent whose
// executable name starts with the plugin's name. It reads /proc, so it
// works on Linux only.
func pluginChildren(t testing.TB, parent int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, entry := range entries {
		var pid int
		if _, err := fmt.Sscanf(entry.Name(), "%d", &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may contain spaces; the
		// state and the parent id follow the closing one.
		end := strings.LastIndexByte(string(stat), ')')
		start := strings.IndexByte(string(stat), '(')
		if start < 0 || end < start {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(stat[end+1:]), " %s %d", &state, &ppid); err != nil {
			continue
		}
		if ppid != parent || state == "Z" {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", entry.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(filepath.Base(exe), pluginName) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pollUntil calls try every interval until it returns nil or timeout
// passes, and returns the time taken and the last error.
func pollUntil(timeout, interval time.Duration, try func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := try()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), err
		}
		time.Sleep(interval)
	}
}

// readWithin reads path through client with a per-request timeout, so a
// request that hangs during a failover counts as a failure and does not
// stall the polling.
func readWithin(client *vaultapi.Client, path string, timeout time.Duration) (*vaultapi.Secret, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	secret, err := client.Logical().ReadWithContext(ctx, path)
	if err == nil && secret == nil {
		return nil, errors.New("empty response for " + path)
	}
	return secret, err
}
