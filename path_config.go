package noventiq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const pathConfigHelpSynopsis = "Configure the Noventiq API credentials and connection."

const pathConfigHelpDescription = `
Stores the username and password the engine logs in to the Noventiq
e-commerce API with, and how it reaches the API.

The password is write-only: reads of this path never return it. A create
needs username and password; an update changes only the fields it sends.

By default a write first logs in with the new settings and stores nothing
if the API rejects them. Set verify_credentials=false to store settings
while the API is unreachable.

With reuse_token=true, reads of "token" share one token, kept in memory
only. Each read still gets its own lease, whose TTL is the token's
remaining life. The shared token is handed out again only while it has at
least reuse_min_ttl left, so set reuse_min_ttl longer than the longest job
that uses one token. Vault Agent re-fetches a non-renewable secret once
lease_renewal_threshold (default 0.9) of its lease has passed, so it
re-fetches while its token still has at least (1 - threshold) *
reuse_min_ttl left: 6 minutes with the defaults. Any write or delete of
this path drops the shared token.
`

const (
	fieldUsername          = "username"
	fieldPassword          = "password"
	fieldURL               = "url"
	fieldRequestTimeout    = "request_timeout"
	fieldCACert            = "ca_cert"
	fieldVerifyCredentials = "verify_credentials"
	fieldReuseToken        = "reuse_token"
	fieldReuseMinTTL       = "reuse_min_ttl"
)

func pathConfig(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: "noventiq",
		},
		Fields: map[string]*framework.FieldSchema{
			fieldUsername: {
				Type:        framework.TypeString,
				Description: "Username of the Noventiq API account. Required on create.",
			},
			fieldPassword: {
				Type:        framework.TypeString,
				Description: "Password of the Noventiq API account. Required on create. Write-only: never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Sensitive: true,
				},
			},
			fieldURL: {
				Type: framework.TypeString,
				Description: "Base URL of the Noventiq e-commerce API, without /v1. Must use https, " +
					"except for loopback hosts. Test environment: " + TestURL + ".",
				Default: ProductionURL,
			},
			fieldRequestTimeout: {
				Type: framework.TypeDurationSecond,
				Description: "Time limit for one login, retries included, as seconds or a duration " +
					"string such as \"15s\". At most 5m.",
				Default: int(defaultRequestTimeout.Seconds()),
			},
			fieldCACert: {
				Type: framework.TypeString,
				Description: "PEM-encoded CA certificates to trust for the API's TLS certificate " +
					"instead of the system trust store. Empty uses the system trust store.",
			},
			fieldReuseToken: {
				Type: framework.TypeBool,
				Description: "Share one token among token reads while it has at least reuse_min_ttl " +
					"of life left, instead of logging in for every read. The shared token is kept " +
					"in memory only.",
				Default: false,
			},
			fieldReuseMinTTL: {
				Type: framework.TypeDurationSecond,
				Description: "Minimum remaining life, as seconds or a duration string such as \"2h\", " +
					"for the shared token to be handed out again; below it the next read logs in. " +
					"Positive and less than 24h. Used only with reuse_token=true.",
				Default: int(defaultReuseMinTTL.Seconds()),
			},
			fieldVerifyCredentials: {
				Type: framework.TypeBool,
				Description: "Log in with the new settings before storing them and reject the write " +
					"if the login fails. Not stored.",
				Default: true,
			},
		},
		ExistenceCheck: b.configExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: &framework.PathOperation{Callback: b.configWrite},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.configWrite},
			logical.ReadOperation:   &framework.PathOperation{Callback: b.configRead},
			logical.DeleteOperation: &framework.PathOperation{Callback: b.configDelete},
		},
		HelpSynopsis:    pathConfigHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathConfigHelpDescription),
	}
}

func (b *backend) configExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return false, err
	}
	return cfg != nil, nil
}

func (b *backend) configRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, nil
	}

	return &logical.Response{Data: configResponseData(cfg)}, nil
}

// configResponseData builds the data of a config read: every field but the
// password.
func configResponseData(cfg *config) map[string]interface{} {
	return map[string]interface{}{
		fieldUsername:       cfg.Username,
		fieldURL:            cfg.URL,
		fieldRequestTimeout: int64(cfg.RequestTimeout.Seconds()),
		fieldCACert:         cfg.CACert,
		fieldReuseToken:     cfg.ReuseToken,
		fieldReuseMinTTL:    int64(cfg.ReuseMinTTL.Seconds()),
	}
}

func (b *backend) configWrite(ctx context.Context, req *logical.Request, data *framework.FieldData) (*logical.Response, error) {
	existing, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}

	updated, err := mergeConfig(existing, data)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}

	var resp *logical.Response
	if data.Get(fieldVerifyCredentials).(bool) {
		if errResp := b.verifyCredentials(ctx, updated); errResp != nil {
			return errResp, nil
		}
	} else {
		resp = &logical.Response{}
		resp.AddWarning("the credentials were stored without a login check; " +
			"a read of token will report whether the API accepts them")
	}

	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	// The login check above runs without the lock, so that a slow API does
	// not hold up other writers. Store only if no other write landed in
	// between.
	current, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(current, existing) {
		return logical.RespondWithStatusCode(logical.ErrorResponse(
			"the config changed while this write was being checked; nothing was stored, retry the write"),
			req, http.StatusConflict)
	}

	if err := writeConfig(ctx, req.Storage, updated); err != nil {
		return nil, err
	}
	b.reset()

	b.Logger().Info("config written", "username", updated.Username, "url", updated.URL,
		"changed", strings.Join(changedFields(existing, updated), ","))
	return resp, nil
}

// verifyCredentials logs in with cfg and returns an error response if the
// login fails, or nil if it succeeds.
func (b *backend) verifyCredentials(ctx context.Context, cfg *config) *logical.Response {
	c, err := newClient(cfg.URL, cfg.RequestTimeout, cfg.CACert, b.Logger())
	if err != nil {
		return logical.ErrorResponse(err.Error())
	}

	start := time.Now()
	_, err = c.login(ctx, cfg.Username, cfg.Password)
	b.logLogin("config check", c.host, start, err)
	if err != nil {
		return logical.ErrorResponse(checkFailureMessage(c.host, err))
	}
	return nil
}

// checkFailureMessage explains why the login check of a config write
// failed. Only when the API could not be reached or failed does it suggest
// storing the settings unchecked: settings the API rejected would fail
// every token read too.
func checkFailureMessage(host string, err error) string {
	var apiErr *APIError
	var transportErr *TransportError
	switch {
	case errors.As(err, &apiErr) && apiErr.HasCode(codeBadCredentials):
		return fmt.Sprintf("login check failed, nothing was stored: Noventiq API at %s "+
			"rejected this username and password (HTTP %d, error %d %s); check them and write again",
			host, apiErr.StatusCode, codeBadCredentials, errorMeanings[codeBadCredentials])
	case errors.As(err, &transportErr), errors.As(err, &apiErr) && apiErr.StatusCode >= 500:
		return fmt.Sprintf("login check failed, nothing was stored: %v; if the API is unreachable "+
			"only for now, write with verify_credentials=false to store the settings without the check", err)
	default:
		return fmt.Sprintf("login check failed, nothing was stored: %v", err)
	}
}

func (b *backend) configDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	if err := req.Storage.Delete(ctx, configStoragePath); err != nil {
		return nil, fmt.Errorf("deleting config from storage: %w", err)
	}
	b.reset()

	b.Logger().Info("config deleted")
	return nil, nil
}

// checkFields rejects fields outside the schema and values of the wrong
// type. Its messages name the field but never quote the value, which may be
// the password.
func checkFields(data *framework.FieldData) error {
	var unknown []string
	for name := range data.Raw {
		if _, ok := data.Schema[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown field(s) %s; valid fields are %s",
			strings.Join(unknown, ", "), strings.Join(schemaFieldNames(data.Schema), ", "))
	}

	for name, schema := range data.Schema {
		if _, _, err := data.GetOkErr(name); err != nil {
			return fmt.Errorf("invalid value for field %s: expected %s", name, describeType(schema.Type))
		}
	}
	return nil
}

func describeType(fieldType framework.FieldType) string {
	switch fieldType {
	case framework.TypeDurationSecond:
		return "a non-negative duration such as \"30s\" or a number of seconds"
	case framework.TypeBool:
		return "true or false"
	default:
		return "a string"
	}
}

func schemaFieldNames(schema map[string]*framework.FieldSchema) []string {
	names := make([]string, 0, len(schema))
	for name := range schema {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

var errNotConfigured = errors.New("the engine is not configured")
