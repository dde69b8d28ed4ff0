package benchmark

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// runner holds what the steps of one run share.
type runner struct {
	opts   Options
	api    *standinServer
	client *vaultapi.Client
	report *Report
}

// setUp registers the plugin, mounts and configures it in both modes, and
// mounts and fills a KV version 1 engine.
func (r *runner) setUp(ctx context.Context) error {
	sum, err := fileSHA256(filepath.Join(r.opts.PluginDir, r.opts.PluginName))
	if err != nil {
		return err
	}
	sys := r.client.Sys()
	err = sys.RegisterPluginWithContext(ctx, &vaultapi.RegisterPluginInput{
		Name:    r.opts.PluginName,
		Type:    vaultapi.PluginTypeSecrets,
		Command: r.opts.PluginName,
		SHA256:  sum,
		Version: r.opts.PluginVersion,
	})
	if err != nil {
		return fmt.Errorf("registering the plugin: %w", err)
	}

	for _, mount := range []struct {
		path  string
		reuse bool
	}{{freshMount, false}, {reuseMount, true}} {
		err := sys.MountWithContext(ctx, mount.path, &vaultapi.MountInput{
			Type:   r.opts.PluginName,
			Config: vaultapi.MountConfigInput{PluginVersion: r.opts.PluginVersion},
		})
		if err != nil {
			return fmt.Errorf("mounting %s: %w", mount.path, err)
		}
		_, err = r.client.Logical().WriteWithContext(ctx, mount.path+"/config", map[string]interface{}{
			"username":    standinUsername,
			"password":    r.api.password,
			"url":         r.api.url,
			"reuse_token": mount.reuse,
		})
		if err != nil {
			return fmt.Errorf("configuring %s: %w", mount.path, err)
		}
	}

	err = sys.MountWithContext(ctx, kvMount, &vaultapi.MountInput{
		Type:    "kv",
		Options: map[string]string{"version": "1"},
	})
	if err != nil {
		return fmt.Errorf("mounting %s: %w", kvMount, err)
	}
	_, err = r.client.Logical().WriteWithContext(ctx, kvPath, map[string]interface{}{"value": "benchmark"})
	return err
}

// measureAll measures every operation at every concurrency. The direct
// stand-in logins come first, without Vault load.
func (r *runner) measureAll(ctx context.Context) error {
	for _, concurrency := range r.opts.Concurrencies {
		r.cell(ctx, OpStandinLogin, concurrency, r.api.login)
	}
	for _, concurrency := range r.opts.Concurrencies {
		r.cell(ctx, OpKVRead, concurrency, r.readKV)
		r.cell(ctx, OpTokenCreate, concurrency, r.createToken)
		r.cell(ctx, OpFreshRead, concurrency, r.readToken(freshMount))

		// The warm-up fills the shared token. A config write drops it, so
		// each timed reuse cell starts cold and pays for one login.
		runLoad(ctx, concurrency, r.opts.Warmup, r.readToken(reuseMount))
		if err := r.dropSharedToken(ctx); err != nil {
			return err
		}
		r.cell(ctx, OpReuseRead, concurrency, r.readToken(reuseMount))
	}
	return nil
}

// cell warms up, except for reuse mode whose warm-up measureAll does, and
// then measures one cell.
func (r *runner) cell(ctx context.Context, op Operation, concurrency int, send func(context.Context) error) {
	if op != OpReuseRead {
		runLoad(ctx, concurrency, r.opts.Warmup, send)
	}

	loginsBefore := r.api.fake.LoginRequests()
	cell := measure(ctx, op, concurrency, r.opts.Requests, send)
	if op != OpStandinLogin {
		cell.Logins = r.api.fake.LoginRequests() - loginsBefore
	}
	r.report.Cells = append(r.report.Cells, cell)
	fmt.Fprintf(r.opts.Progress, "%-28s c=%-3d %8.0f/s p50 %-9s p99 %-9s errors %d\n",
		op, concurrency, cell.Throughput(), cell.P50.Round(time.Microsecond),
		cell.P99.Round(time.Microsecond), cell.Errors)
}

func (r *runner) dropSharedToken(ctx context.Context) error {
	_, err := r.client.Logical().WriteWithContext(ctx, reuseMount+"/config",
		map[string]interface{}{"verify_credentials": false})
	if err != nil {
		return fmt.Errorf("rewriting %s/config: %w", reuseMount, err)
	}
	return nil
}

func (r *runner) readToken(mount string) func(context.Context) error {
	return func(ctx context.Context) error {
		secret, err := r.client.Logical().ReadWithContext(ctx, mount+"/token")
		if err != nil {
			return err
		}
		if secret == nil || secret.LeaseID == "" {
			return fmt.Errorf("%s/token returned no lease", mount)
		}
		if token, _ := secret.Data["token"].(string); token == "" {
			return fmt.Errorf("%s/token returned no token", mount)
		}
		return nil
	}
}

func (r *runner) readKV(ctx context.Context) error {
	secret, err := r.client.Logical().ReadWithContext(ctx, kvPath)
	if err != nil {
		return err
	}
	if secret == nil || secret.Data["value"] != "benchmark" {
		return fmt.Errorf("%s returned %v, want value=benchmark", kvPath, secret)
	}
	return nil
}

func (r *runner) createToken(ctx context.Context) error {
	secret, err := r.client.Logical().WriteWithContext(ctx, "auth/token/create", map[string]interface{}{
		"policies": []string{"default"},
		"ttl":      "10m",
	})
	if err != nil {
		return err
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return errors.New("auth/token/create returned no token")
	}
	return nil
}
