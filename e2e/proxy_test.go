//go:build e2e

package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// proxiedHost is the API host name that only the proxy can reach. Nothing
// resolves it: the plugin sends it to the proxy in a CONNECT
// request, and the proxy connects to a TLS stand-in on 127.0.0.1.
const proxiedHost = "noventiq-api.test"

// The plugin honours HTTPS_PROXY, whether Vault's own environment sets it or
// the plugin's registration does. Go never sends requests for loopback
// hosts through a proxy and reads the proxy variables once per process, so
// this runs in the plugin process of a real Vault, with an API host name
// that is not loopback.
func TestProxyFromEnvironment(t *testing.T) {
	for _, via := range []string{"Vault's environment", "plugin registration"} {
		t.Run(via, func(t *testing.T) {
			fake, api, caPEM := startTLSStandin(t, proxiedHost)
			proxy := startConnectProxy(t, proxiedHost+":443", api.Listener.Addr().String())
			proxyURL := "http://" + proxy.addr

			var v *vaultServer
			if via == "Vault's environment" {
				t.Setenv("HTTPS_PROXY", proxyURL)
				t.Setenv("NO_PROXY", "example.invalid")
				v = startDevVault(t)
				v.enablePlugin(t)
			} else {
				v = startDevVault(t)
				v.mustCLI(t, "plugin", "register",
					"-sha256="+pluginSHA256,
					"-version="+pluginVersion,
					"-command="+pluginName,
					"-env=HTTPS_PROXY="+proxyURL,
					"secret", pluginName)
				v.mustCLI(t, "secrets", "enable", "-path="+mountPath, "-plugin-version="+pluginVersion, pluginName)
			}

			res := v.cli(t, v.Token, configJSON(t, map[string]interface{}{
				"username": standinUsername,
				"password": standinPassword,
				"url":      "https://" + proxiedHost,
				"ca_cert":  caPEM,
			}), "write", mountPath+"/config", "-")
			if res.Err != nil {
				t.Fatalf("config write through the proxy: %v\n%s", res.Err, res.Stderr)
			}

			var read struct {
				Data map[string]string `json:"data"`
			}
			v.mustCLIJSON(t, &read, "read", mountPath+"/token")
			if token := read.Data["token"]; !fake.TokenValid(token) {
				t.Errorf("token %q read through the proxy is not valid at the stand-in", token)
			}

			// One CONNECT for the config write's login check, one for the
			// token read; the stand-in saw both logins and nothing else.
			if got := proxy.targets(); len(got) != 2 {
				t.Errorf("proxy received CONNECT requests for %v, want two for %s:443", got, proxiedHost)
			}
			if got := fake.TokensIssued(); got != 2 {
				t.Errorf("stand-in issued %d tokens, want 2", got)
			}
			if got := fake.Requests(); got != 2 {
				t.Errorf("stand-in received %d requests, want 2", got)
			}
		})
	}
}

// startTLSStandin serves the stand-in API over TLS on 127.0.0.1 with a
// certificate for host, signed by a CA made for the test. It returns the CA
// certificate in PEM form for the config's ca_cert.
func startTLSStandin(t *testing.T, host string) (*standin.Server, *httptest.Server, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "noventiq e2e test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}

	fake := standin.New(standin.Options{Username: standinUsername, Password: standinPassword})
	srv := httptest.NewUnstartedServer(fake)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return fake, srv, string(caPEM)
}

// connectProxy is an HTTP proxy on 127.0.0.1 that accepts only CONNECT
// requests for one target and tunnels them to a fixed loopback address.
type connectProxy struct {
	addr string

	mu      sync.Mutex
	seen    []string
	tunnels []net.Conn
}

func startConnectProxy(t *testing.T, allowedTarget, dialAddr string) *connectProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: listener.Addr().String()}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			p.track(conn)
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(conn, allowedTarget, dialAddr)
			}()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		p.mu.Lock()
		for _, conn := range p.tunnels {
			conn.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *connectProxy) track(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tunnels = append(p.tunnels, conn)
}

// targets returns the target of every CONNECT request received.
func (p *connectProxy) targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *connectProxy) serve(client net.Conn, allowedTarget, dialAddr string) {
	defer client.Close()
	reader := bufio.NewReader(client)
	req, err := http.ReadRequest(reader)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(client, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}

	p.mu.Lock()
	p.seen = append(p.seen, req.Host)
	p.mu.Unlock()
	if req.Host != allowedTarget {
		_, _ = io.WriteString(client, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}

	upstream, err := net.Dial("tcp", dialAddr)
	if err != nil {
		_, _ = io.WriteString(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.track(upstream)
	defer upstream.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(upstream, reader)
		if tcp, ok := upstream.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	}()
	_, _ = io.Copy(client, upstream)
	client.Close()
	<-done
}
