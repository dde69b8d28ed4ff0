package noventiq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const secretTokenType = "noventiq_token"

const pathTokenHelpSynopsis = "Log in to the Noventiq API and return a token as a lease."

const pathTokenHelpDescription = `
Each read logs in to the Noventiq e-commerce API with the stored credentials
and returns a new API token with the times it was issued and expires. When
the config sets reuse_token=true, reads share one token while it has at
least reuse_min_ttl of life left, each read with its own lease.

The lease is not renewable and ends no later than the token: 24 hours after
the API issued it, or earlier when the mount's max lease TTL is shorter.
Read again for a new token before the lease ends.

Revoking the lease does not invalidate the token upstream: the API offers no
way to revoke a token, so a revoked lease's token stays usable until it
expires.
`

func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "token",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: "noventiq",
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.tokenRead},
		},
		HelpSynopsis:    pathTokenHelpSynopsis,
		HelpDescription: strings.TrimSpace(pathTokenHelpDescription),
	}
}

func secretToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTokenType,
		Fields: map[string]*framework.FieldSchema{
			"token": {
				Type:        framework.TypeString,
				Description: "Noventiq API token, sent as \"Authorization: Bearer <token>\".",
			},
			"issued_at": {
				Type:        framework.TypeTime,
				Description: "When the API issued the token (RFC 3339).",
			},
			"expires_at": {
				Type: framework.TypeTime,
				Description: "When the token stops working upstream (RFC 3339): 24 hours after " +
					"issued_at, or after the request was sent if that is earlier.",
			},
		},
		Revoke: b.tokenRevoke,
	}
}

func (b *backend) tokenRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	s, err := b.currentSession(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return logical.ErrorResponse(fmt.Sprintf(
			"%v: write username and password to %sconfig first", errNotConfigured, req.MountPoint)), nil
	}

	var token *issuedToken
	if s.config.ReuseToken {
		token, err = s.tokens.get(ctx, func(loginCtx context.Context) (*issuedToken, error) {
			return b.loginForRead(loginCtx, s, "shared token read")
		})
	} else {
		token, err = b.loginForRead(ctx, s, "token read")
	}
	if err != nil {
		return nil, err
	}

	ttl := leaseTTL(token.expiresAt, b.now(), b.System().MaxLeaseTTL())
	if ttl <= 0 {
		return nil, logical.CodedError(http.StatusBadGateway,
			"the token expires in less than a second, too soon to hand out; read again")
	}

	resp := b.Secret(secretTokenType).Response(map[string]interface{}{
		"token":      token.value,
		"issued_at":  token.issuedAt.UTC().Format(time.RFC3339),
		"expires_at": token.expiresAt.UTC().Format(time.RFC3339),
	}, map[string]interface{}{
		"expires_at": token.expiresAt.UTC().Format(time.RFC3339),
	})
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	resp.Secret.Renewable = false
	return resp, nil
}

// loginForRead logs in with the session's settings and estimates the new
// token's life. Its errors carry the HTTP status that Vault returns.
func (b *backend) loginForRead(ctx context.Context, s *session, operation string) (*issuedToken, error) {
	start := time.Now()
	result, err := s.client.login(ctx, s.config.Username, s.config.Password)
	b.logLogin(operation, s.client.host, start, err)
	if err != nil {
		return nil, upstreamError(err)
	}

	life, err := tokenLifeOf(result, b.now())
	if err != nil {
		return nil, logical.CodedError(http.StatusBadGateway,
			fmt.Sprintf("Noventiq API at %s: %v", s.client.host, err))
	}
	return &issuedToken{value: result.Token, issuedAt: life.issuedAt, expiresAt: life.expiresAt}, nil
}

// tokenRevoke ends a lease. The API has no way to revoke a token, so the
// token itself keeps working until it expires.
func (b *backend) tokenRevoke(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	expiresAt, _ := req.Secret.InternalData["expires_at"].(string)
	b.Logger().Info("lease revoked; the Noventiq token stays valid upstream until it expires",
		"expires_at", expiresAt)
	return nil, nil
}

// logLogin writes one debug line per login with its duration and outcome.
// It never logs the token or the credentials. The duration is a string
// because Vault's log shows a time.Duration from a plugin as nanoseconds.
func (b *backend) logLogin(operation, host string, start time.Time, err error) {
	took := time.Since(start).String()
	if err != nil {
		b.Logger().Debug("login failed", "operation", operation, "host", host, "took", took, "error", err)
		return
	}
	b.Logger().Debug("login succeeded", "operation", operation, "host", host, "took", took)
}

// upstreamError turns a login error into the HTTP status Vault returns: 504
// for a timeout, 502 for anything else the API or the network did wrong.
func upstreamError(err error) error {
	var transportErr *TransportError
	if errors.As(err, &transportErr) && transportErr.Kind == "timeout" {
		return logical.CodedError(http.StatusGatewayTimeout, err.Error())
	}
	return logical.CodedError(http.StatusBadGateway, err.Error())
}
