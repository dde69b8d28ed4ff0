package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsRejectsBadInput(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing username", []string{"-password", "p"}, "missing -username"},
		{"missing password", []string{"-username", "u"}, "missing password"},
		{"all interfaces", []string{"-username", "u", "-password", "p", "-addr", ":8080"}, "every interface"},
		{"wildcard address", []string{"-username", "u", "-password", "p", "-addr", "0.0.0.0:8080"}, "not a loopback"},
		{"remote address", []string{"-username", "u", "-password", "p", "-addr", "192.0.2.1:80"}, "not a loopback"},
		{"no port", []string{"-username", "u", "-password", "p", "-addr", "127.0.0.1"}, "invalid -addr"},
		{"zero lifetime", []string{"-username", "u", "-password", "p", "-token-lifetime", "0s"}, "-token-lifetime"},
		{"zero max run", []string{"-username", "u", "-password", "p", "-max-run", "0s"}, "-max-run"},
		{"extra argument", []string{"-username", "u", "-password", "p", "serve"}, "unexpected argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if _, err := parseFlags(tc.args, noEnv, &stderr); err == nil {
				t.Fatal("parseFlags accepted the flags")
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestParseFlagsReadsPasswordFromEnvironment(t *testing.T) {
	getenv := func(name string) string {
		if name == passwordEnv {
			return "from-env"
		}
		return ""
	}
	cfg, err := parseFlags([]string{"-username", "u", "-addr", "[::1]:0"}, getenv, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if cfg.password != "from-env" {
		t.Errorf("password = %q, want the value of %s", cfg.password, passwordEnv)
	}

	cfg, err = parseFlags([]string{"-username", "u", "-password", "from-flag"}, getenv, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if cfg.password != "from-flag" {
		t.Errorf("password = %q, want the -password flag to win", cfg.password)
	}
}

func TestRunServesAndStopsAfterMaxRun(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "url")
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-username", "u", "-password", "secret-pw", "-addr-file", addrFile,
			"-max-run", "3s"}, func(string) string { return "" }, &stderr)
	}()

	var baseURL string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if data, err := os.ReadFile(addrFile); err == nil && len(data) > 0 {
			baseURL = string(data)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(baseURL, "http://127.0.0.1:") {
		t.Fatalf("addr file holds %q, want an http://127.0.0.1 URL", baseURL)
	}

	resp, err := http.Post(baseURL+"/v1/login_check", "application/json",
		strings.NewReader(`{"username":"u","password":"secret-pw"}`))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("login status = %d, want 200", resp.StatusCode)
	}

	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code = %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stand-in did not stop after -max-run")
	}
	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Errorf("addr file still exists after stop: %v", err)
	}
	if strings.Contains(stderr.String(), "secret-pw") {
		t.Errorf("the stand-in logged the password:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "tokens_issued=1") {
		t.Errorf("stop log line does not count the one token issued:\n%s", stderr.String())
	}
}
