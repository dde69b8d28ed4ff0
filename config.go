package noventiq

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	configStoragePath = "config"

	// ProductionURL is the Noventiq e-commerce API's production base URL.
	ProductionURL = "https://api.ecommerce.noventiq.com"

	// TestURL is the vendor's test environment. The vendor's pages also
	// spell it with "demoslweb"; the url field takes either.
	TestURL = "https://api.ecommerce.noventiq.com.demonqweb.com"

	// maxCredentialBytes bounds the username and the password. The API
	// documents no limit, but this one keeps a mistaken paste of a large
	// file out of storage, and a long username out of the log.
	maxCredentialBytes = 1024

	defaultRequestTimeout = 10 * time.Second
	maxRequestTimeout     = 5 * time.Minute

	// defaultReuseMinTTL is the default minimum life a shared token must
	// have left to be handed out again. It must stay below TokenLifetime.
	defaultReuseMinTTL = time.Hour
)

// config is the stored entry at configStoragePath. The storage entry is
// seal-wrapped where the seal supports it.
type config struct {
	Username       string        `json:"username"`
	Password       string        `json:"password"`
	URL            string        `json:"url"`
	RequestTimeout time.Duration `json:"request_timeout"`
	CACert         string        `json:"ca_cert,omitempty"`

	// ReuseToken makes token reads share one token while it has at least
	// ReuseMinTTL of life left, instead of logging in for every read.
	ReuseToken  bool          `json:"reuse_token"`
	ReuseMinTTL time.Duration `json:"reuse_min_ttl"`
}

// readConfig returns the stored config, or nil when none is stored.
func readConfig(ctx context.Context, storage logical.Storage) (*config, error) {
	entry, err := storage.Get(ctx, configStoragePath)
	if err != nil {
		return nil, fmt.Errorf("reading config from storage: %w", err)
	}
	if entry == nil {
		return nil, nil
	}

	cfg := &config{}
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding stored config: %w", err)
	}

	// An entry stored before reuse_min_ttl existed has none: give it the
	// default so that a later partial write still validates.
	if cfg.ReuseMinTTL == 0 {
		cfg.ReuseMinTTL = defaultReuseMinTTL
	}
	return cfg, nil
}

func writeConfig(ctx context.Context, storage logical.Storage, cfg *config) error {
	entry, err := logical.StorageEntryJSON(configStoragePath, cfg)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	entry.SealWrap = true

	if err := storage.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing config to storage: %w", err)
	}
	return nil
}

// validate checks every field and normalises the URL. Its errors name the
// field and never contain the password.
func (c *config) validate() error {
	if c.Username == "" {
		return errors.New("username must not be empty")
	}
	if c.Password == "" {
		return errors.New("password must not be empty")
	}
	if len(c.Username) > maxCredentialBytes {
		return fmt.Errorf("username is %d bytes long; the maximum is %d", len(c.Username), maxCredentialBytes)
	}
	if len(c.Password) > maxCredentialBytes {
		return fmt.Errorf("password is %d bytes long; the maximum is %d", len(c.Password), maxCredentialBytes)
	}

	normalized, err := validateURL(c.URL)
	if err != nil {
		return err
	}
	c.URL = normalized

	if c.RequestTimeout <= 0 {
		return fmt.Errorf("request_timeout must be positive, got %s", c.RequestTimeout)
	}
	if c.RequestTimeout > maxRequestTimeout {
		return fmt.Errorf("request_timeout must be at most %s, got %s", maxRequestTimeout, c.RequestTimeout)
	}

	// The limit applies whether or not reuse_token is set, so that turning
	// reuse on later cannot meet a stored value that never works.
	if c.ReuseMinTTL <= 0 {
		return fmt.Errorf("reuse_min_ttl must be positive, got %s", c.ReuseMinTTL)
	}
	if c.ReuseMinTTL >= TokenLifetime {
		return fmt.Errorf("reuse_min_ttl must be less than the token lifetime of %s, got %s; "+
			"a shared token could never be handed out", TokenLifetime, c.ReuseMinTTL)
	}

	if c.CACert != "" {
		if err := validateCACert(c.CACert); err != nil {
			return err
		}
	}
	return nil
}

// validateURL accepts an https base URL, or http for a loopback host, with
// no user info, query or fragment. It returns the URL without a trailing
// slash.
func validateURL(raw string) (string, error) {
	shown := urlForMessage(raw)
	parsed, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url %q is not a valid URL", shown)
	}
	if parsed.Host == "" || parsed.Hostname() == "" {
		return "", fmt.Errorf("url %q has no host; expected a base URL such as %s", shown, ProductionURL)
	}

	switch parsed.Scheme {
	case "https":
	case "http":
		if !isLoopback(parsed.Hostname()) {
			return "", fmt.Errorf("url %q must use https; plain http is allowed only for loopback hosts", shown)
		}
	default:
		return "", fmt.Errorf("url %q must use https", shown)
	}

	if parsed.User != nil {
		return "", fmt.Errorf("url must not contain user info; set username and password instead")
	}
	if parsed.RawQuery != "" || parsed.Fragment != "" || parsed.ForceQuery {
		return "", fmt.Errorf("url %q must not contain a query or fragment", shown)
	}

	if port := parsed.Port(); port != "" {
		number, err := strconv.Atoi(port)
		if err != nil || number < 1 || number > 65535 {
			return "", fmt.Errorf("url %q has an invalid port %q; expected 1 to 65535", shown, port)
		}
	}

	parsed.Path = strings.TrimRight(parsed.Path, "/")
	parsed.RawPath = ""

	// The plugin appends /v1/login_check itself, so a url that already ends
	// in it or in /v1 would send logins to /v1/v1/login_check.
	if strings.HasSuffix(parsed.Path, loginPath) || strings.HasSuffix(parsed.Path, "/v1") {
		return "", fmt.Errorf("url %q must be the API's base URL without /v1 or %s, such as %s",
			shown, loginPath, ProductionURL)
	}
	return parsed.String(), nil
}

// urlForMessage returns raw for an error message without what may be a
// secret: everything before the last "@" after the scheme (user info, and
// with it a password typed into the url by mistake), then everything from
// the first "?" or "#" on.
func urlForMessage(raw string) string {
	scheme, rest, found := strings.Cut(raw, "://")
	if found {
		scheme += "://"
	} else {
		scheme, rest = "", raw
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "[redacted]" + rest[at:]
	}
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		rest = rest[:end+1] + "[redacted]"
	}
	return scheme + rest
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
// Only those may be reached over plain http.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateCACert requires at least one PEM block and that every
// CERTIFICATE block parses.
func validateCACert(pemData string) error {
	rest := []byte(pemData)
	found := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("ca_cert contains a PEM block of type %q; only CERTIFICATE blocks are accepted", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("ca_cert contains an invalid certificate: %v", err)
		}
		found++
	}
	if found == 0 {
		return errors.New("ca_cert contains no PEM-encoded certificate")
	}

	// Text between blocks, such as the comments of a CA bundle, is
	// ignored, but a block that does not decode, for example one cut off
	// while pasting, would be dropped without a word.
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return errors.New("ca_cert contains a PEM block that does not decode; check that it is complete")
	}
	return nil
}

// mergeConfig applies the fields a write sends onto the existing config, or
// onto the defaults when none exists, and validates the result. It does not
// modify existing.
func mergeConfig(existing *config, data *framework.FieldData) (*config, error) {
	updated := &config{
		URL:            ProductionURL,
		RequestTimeout: defaultRequestTimeout,
		ReuseMinTTL:    defaultReuseMinTTL,
	}
	if existing != nil {
		copied := *existing
		updated = &copied
	} else {
		var missing []string
		for _, name := range []string{fieldUsername, fieldPassword} {
			if _, ok := data.GetOk(name); !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("missing required field(s) %s: no config exists yet, so the first write needs both username and password",
				strings.Join(missing, " and "))
		}
	}

	if v, ok := data.GetOk(fieldUsername); ok {
		updated.Username = v.(string)
	}
	if v, ok := data.GetOk(fieldPassword); ok {
		updated.Password = v.(string)
	}
	if v, ok := data.GetOk(fieldURL); ok {
		updated.URL = v.(string)
	}
	if v, ok := data.GetOk(fieldRequestTimeout); ok {
		updated.RequestTimeout = time.Duration(v.(int)) * time.Second
	}
	if v, ok := data.GetOk(fieldCACert); ok {
		updated.CACert = v.(string)
	}
	if v, ok := data.GetOk(fieldReuseToken); ok {
		updated.ReuseToken = v.(bool)
	}
	if v, ok := data.GetOk(fieldReuseMinTTL); ok {
		updated.ReuseMinTTL = time.Duration(v.(int)) * time.Second
	}

	if err := updated.validate(); err != nil {
		return nil, err
	}
	return updated, nil
}

// changedFields names the fields that differ between two configs, for the
// log. It never returns values.
func changedFields(before, after *config) []string {
	if before == nil {
		before = &config{}
	}
	var changed []string
	if before.Username != after.Username {
		changed = append(changed, fieldUsername)
	}
	if before.Password != after.Password {
		changed = append(changed, fieldPassword)
	}
	if before.URL != after.URL {
		changed = append(changed, fieldURL)
	}
	if before.RequestTimeout != after.RequestTimeout {
		changed = append(changed, fieldRequestTimeout)
	}
	if before.CACert != after.CACert {
		changed = append(changed, fieldCACert)
	}
	if before.ReuseToken != after.ReuseToken {
		changed = append(changed, fieldReuseToken)
	}
	if before.ReuseMinTTL != after.ReuseMinTTL {
		changed = append(changed, fieldReuseMinTTL)
	}
	return changed
}
