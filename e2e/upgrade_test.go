//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// upgradeVersion is the second build of the plugin, registered beside
// pluginVersion under its own file name.
const upgradeVersion = "v0.2.0"

// mountVersions is the plugin part of the mount's row in
// `vault secrets list -detailed`.
type mountVersions struct {
	PluginVersion        string `json:"plugin_version"`
	RunningPluginVersion string `json:"running_plugin_version"`
	RunningSHA256        string `json:"running_sha256"`
}

func readMountVersions(t testing.TB, v *vaultServer) mountVersions {
	t.Helper()
	var mounts map[string]mountVersions
	v.mustCLIJSON(t, &mounts, "secrets", "list", "-detailed")
	mount, ok := mounts[mountPath+"/"]
	if !ok {
		t.Fatalf("mount %s/ not listed: %v", mountPath, mounts)
	}
	return mount
}

func assertMountVersions(t testing.TB, v *vaultServer, step string, want mountVersions) {
	t.Helper()
	if got := readMountVersions(t, v); got != want {
		t.Errorf("%s: secrets list -detailed shows %+v, want %+v", step, got, want)
	}
}

// assertPluginExecutable fails the test unless exactly one plugin process
// runs under v and its executable is file.
func assertPluginExecutable(t testing.TB, v *vaultServer, step, file string) {
	t.Helper()
	pids := pluginChildren(t, v.cmd.Process.Pid)
	if len(pids) != 1 {
		t.Errorf("%s: plugin processes = %v, want one", step, pids)
		return
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pids[0]), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(exe) != file {
		t.Errorf("%s: plugin process runs %s, want %s", step, filepath.Base(exe), file)
	}
}

func TestPluginUpgradeKeepsConfig(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	upgradeFile := pluginName + "-" + upgradeVersion
	upgradeSHA256, err := buildPlugin(filepath.Join(pluginDir, upgradeFile), upgradeVersion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(pluginDir, upgradeFile)) })

	cluster := startRaftNodes(t, 1, func(int) string { return pluginDir })
	cluster.initialize(t)
	node := cluster.Nodes[0]
	v := node.server

	v.enablePlugin(t)
	v.configure(t, api)
	oldLease := readTokenCLI(t, v)
	original := mountVersions{pluginVersion, pluginVersion, pluginSHA256}
	assertMountVersions(t, v, "before the upgrade", original)

	// Both builds are registered side by side in the catalog under one name.
	v.mustCLI(t, "plugin", "register",
		"-sha256="+upgradeSHA256,
		"-version="+upgradeVersion,
		"-command="+upgradeFile,
		"secret", pluginName)
	var catalog struct {
		Details []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"details"`
	}
	v.mustCLIJSON(t, &catalog, "plugin", "list", "-detailed", "secret")
	registered := map[string]bool{}
	for _, entry := range catalog.Details {
		if entry.Name == pluginName {
			registered[entry.Version] = true
		}
	}
	if !registered[pluginVersion] || !registered[upgradeVersion] {
		t.Errorf("catalog versions of %s = %v, want %s and %s", pluginName, registered, pluginVersion, upgradeVersion)
	}

	// Tuning pins the new version, but the old process serves until the
	// reload.
	v.mustCLI(t, "secrets", "tune", "-plugin-version="+upgradeVersion, mountPath+"/")
	assertMountVersions(t, v, "after the tune", mountVersions{upgradeVersion, pluginVersion, pluginSHA256})

	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	upgraded := mountVersions{upgradeVersion, upgradeVersion, upgradeSHA256}
	assertMountVersions(t, v, "after the reload", upgraded)

	assertConfig(t, v, api.URL)
	newLease := readTokenCLI(t, v)
	if !fake.TokenValid(newLease.Data["token"]) {
		t.Errorf("token read after the upgrade returned %q, not a token the API issued", newLease.Data["token"])
	}
	assertPluginExecutable(t, v, "after the upgrade", upgradeFile)
	v.mustCLI(t, "lease", "revoke", oldLease.LeaseID)

	// The pinned version survives a restart.
	v.stop()
	node.start(t, cluster.RootToken)
	node.unseal(t, cluster.UnsealKey)
	node.waitHealth(t, 60*time.Second, isActive)
	v = node.server
	assertMountVersions(t, v, "after a restart", upgraded)
	assertConfig(t, v, api.URL)
	readTokenCLI(t, v)
	assertPluginExecutable(t, v, "after a restart", upgradeFile)

	// Rolling back is the same two steps with the old version.
	v.mustCLI(t, "secrets", "tune", "-plugin-version="+pluginVersion, mountPath+"/")
	v.mustCLI(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName)
	assertMountVersions(t, v, "after the rollback", original)
	assertConfig(t, v, api.URL)
	readTokenCLI(t, v)
	assertPluginExecutable(t, v, "after the rollback", pluginName)
	v.mustCLI(t, "lease", "revoke", newLease.LeaseID)
}
