package benchmark

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// standinServer is the stand-in API served from this process on loopback.
type standinServer struct {
	fake     *standin.Server
	server   *http.Server
	url      string
	password string
	client   *http.Client
	body     string
}

func startStandin() (*standinServer, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	password := hex.EncodeToString(secret)

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fake := standin.New(standin.Options{Username: standinUsername, Password: password})
	server := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go server.Serve(listener)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = maxIdleConnections
	transport.MaxIdleConnsPerHost = maxIdleConnections
	return &standinServer{
		fake:     fake,
		server:   server,
		url:      "http://" + listener.Addr().String(),
		password: password,
		client:   &http.Client{Transport: transport, Timeout: requestTimeout},
		body:     fmt.Sprintf(`{"username":%q,"password":%q}`, standinUsername, password),
	}, nil
}

// login sends one login straight to the stand-in, as the plugin does.
func (s *standinServer) login(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/login_check",
		strings.NewReader(s.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stand-in login returned HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *standinServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.server.Shutdown(ctx); err != nil {
		s.server.Close()
	}
	s.client.CloseIdleConnections()
}
