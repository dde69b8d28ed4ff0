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

// load is one operation and the function that sends one request of it.
type load struct {
	op   Operation
	send func(context.Context) error
}

// measureAll measures every operation at every concurrency. The direct
// stand-in logins come first, without Vault load.
func (r *runner) measureAll(ctx context.Context) error {
	for _, concurrency := range r.opts.Concurrencies {
		runLoad(ctx, concurrency, r.opts.Warmup, r.api.login)
		r.measureInterleaved(ctx, concurrency, []load{{OpStandinLogin, r.api.login}})
	}

	for _, concurrency := range r.opts.Concurrencies {
		loads := []load{
			{OpKVRead, r.readKV},
			{OpTokenCreate, r.createToken},
			{OpFreshRead, r.readToken(freshMount)},
			{OpReuseRead, r.readToken(reuseMount)},
		}
		for _, l := range loads {
			runLoad(ctx, concurrency, r.opts.Warmup, l.send)
		}

		// The warm-up filled the shared token. A config write drops it, so
		// each timed reuse cell starts cold and pays for one login.
		if err := r.dropSharedToken(ctx); err != nil {
			return err
		}
		r.measureInterleaved(ctx, concurrency, loads)
	}
	return nil
}

// measureInterleaved measures loads in Rounds rounds, each of which sends
// every load its share of the requests in turn. Interleaving exposes every
// operation alike to changes in the machine's load during the run, so the
// ratios between them stay comparable.
func (r *runner) measureInterleaved(ctx context.Context, concurrency int, loads []load) {
	tallies := make([]tally, len(loads))
	for round := range r.opts.Rounds {
		requests := r.opts.Requests*(round+1)/r.opts.Rounds - r.opts.Requests*round/r.opts.Rounds
		for i, l := range loads {
			loginsBefore := r.api.fake.LoginRequests()
			tallies[i].add(runTimed(ctx, concurrency, requests, l.send))
			if l.op != OpStandinLogin {
				tallies[i].logins += r.api.fake.LoginRequests() - loginsBefore
			}
		}
	}

	for i, l := range loads {
		cell := tallies[i].cell(l.op, concurrency)
		r.report.Cells = append(r.report.Cells, cell)
		fmt.Fprintf(r.opts.Progress, "%-28s c=%-3d %8.0f/s p50 %-9s p99 %-9s errors %d\n",
			cell.Operation, concurrency, cell.Throughput(), cell.P50.Round(time.Microsecond),
			cell.P99.Round(time.Microsecond), cell.Errors)
	}
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
