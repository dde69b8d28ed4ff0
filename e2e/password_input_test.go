//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/noventiq-vault/vault-plugin-secrets-noventiq/internal/standin"
)

// Each way the README gives to pass the password keeps it off the command
// line and delivers it to the API byte for byte. The passwords start with
// "@", the CLI's file marker, and contain quotes, backslashes, a line break
// and non-ASCII characters. Each write checks the credentials with the
// stand-in, which accepts only the exact username and password.
func TestPasswordInputForms(t *testing.T) {
	fake, api := startStandin(t, standin.Options{})
	v := startDevVault(t)
	v.enablePlugin(t)
	dir := t.TempDir()

	writeFile := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	cases := []struct {
		name     string
		username string
		password string

		// write returns the stdin and the arguments of the config write.
		write func(username, password string) (stdin string, args []string)
	}{
		{
			name:     "JSON on stdin",
			username: "shop \"admin\"\\\nü",
			password: "@json-stdin \"quoted\" back\\slash\nline-ü",
			write: func(username, password string) (string, []string) {
				return configJSON(t, map[string]interface{}{
					"username": username, "password": password, "url": api.URL,
				}), []string{"-"}
			},
		},
		{
			name:     "JSON file",
			username: standinUsername,
			password: "@json-file\t\"ü\"",
			write: func(username, password string) (string, []string) {
				path := writeFile("config.json", configJSON(t, map[string]interface{}{
					"username": username, "password": password, "url": api.URL,
				}))
				return "", []string{"@" + path}
			},
		},
		{
			name:     "password file",
			username: standinUsername,
			password: "@password-file \\ \"ü\"",
			write: func(username, password string) (string, []string) {
				path := writeFile("password", password)
				return "", []string{"username=" + username, "url=" + api.URL, "password=@" + path}
			},
		},
		{
			name:     "raw password on stdin",
			username: standinUsername,
			password: "@raw-stdin \\ \"ü\"",
			write: func(username, password string) (string, []string) {
				return password, []string{"username=" + username, "url=" + api.URL, "password=-"}
			},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetCredentials(tc.username, tc.password)
			stdin, args := tc.write(tc.username, tc.password)
			for _, arg := range args {
				if strings.Contains(arg, tc.password) {
					t.Fatalf("argument %q contains the password", arg)
				}
			}

			res := v.cli(t, v.Token, stdin, append([]string{"write", mountPath + "/config"}, args...)...)
			if res.Err != nil {
				t.Fatalf("config write: %v\n%s", res.Err, res.Stderr)
			}
			var read struct {
				Data map[string]string `json:"data"`
			}
			v.mustCLIJSON(t, &read, "read", mountPath+"/token")
			if !fake.TokenValid(read.Data["token"]) {
				t.Errorf("token %q is not valid at the stand-in", read.Data["token"])
			}
		})
	}

	// The CLI reads a file for a value that starts with "@", and keeps every
	// byte: a password file that ends in a line break, as `echo` and most
	// editors leave it, gives a password that ends in one. The credential
	// check rejects it and nothing is stored.
	t.Run("password file with a trailing line break", func(t *testing.T) {
		fake.SetCredentials(standinUsername, "newline-password")
		loginsBefore := fake.LoginRequests()
		path := writeFile("with-newline", "newline-password\n")

		res := v.cli(t, v.Token, "", "write", mountPath+"/config", "password=@"+path)
		if res.Err == nil {
			t.Fatal("config write with a trailing line break in the password succeeded")
		}
		if !strings.Contains(res.Stderr, "1006") || !strings.Contains(res.Stderr, "nothing was stored") {
			t.Errorf("error does not report rejected credentials and nothing stored:\n%s", res.Stderr)
		}
		if strings.Contains(res.Stderr, "newline-password") {
			t.Errorf("error output contains the password:\n%s", res.Stderr)
		}
		if got := fake.LoginRequests() - loginsBefore; got != 1 {
			t.Errorf("logins = %d, want the one credential check", got)
		}

		path = writeFile("without-newline", "newline-password")
		v.mustCLI(t, "write", mountPath+"/config", "password=@"+path)
		v.mustCLI(t, "read", mountPath+"/token")
	})

	// A password typed as password=@… is taken for a file name: the CLI
	// fails before it sends anything, and its error repeats the argument.
	// A leading backslash escapes the "@", but the password is then on the
	// command line.
	t.Run("leading @ on the command line", func(t *testing.T) {
		fake.SetCredentials(standinUsername, "@typed-password")
		loginsBefore := fake.LoginRequests()

		res := v.cli(t, v.Token, "", "write", mountPath+"/config", "password=@typed-password")
		if res.Err == nil {
			t.Fatal("config write with password=@typed-password succeeded")
		}
		if !strings.Contains(res.Stderr, "error reading file") {
			t.Errorf("CLI error does not say it tried to read a file:\n%s", res.Stderr)
		}
		if !strings.Contains(res.Stderr, "typed-password") {
			t.Errorf("CLI error no longer repeats the argument; update the README's warning:\n%s", res.Stderr)
		}
		if got := fake.LoginRequests() - loginsBefore; got != 0 {
			t.Errorf("logins = %d, want none: the CLI must fail before it sends the write", got)
		}

		v.mustCLI(t, "write", mountPath+"/config", `password=\@typed-password`)
		v.mustCLI(t, "read", mountPath+"/token")
	})
}
