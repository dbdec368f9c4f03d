package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCredentials: the read and write token files, token_file as the
// write token's older name, and what is refused: both names at once, a
// short token, the shipped placeholder, the same token for both scopes.
func TestAdminCredentials(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{
		"read":        "read-token-0123456789\n",
		"write":       "write-token-0123456789\n",
		"short":       "too-short\n",
		"placeholder": "REPLACE-WITH-A-RANDOM-TOKEN\n",
		"lower":       "replace-with-a-random-token\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(admin string) (*Config, error) {
		return Parse(strings.NewReader(keyConfig+"admin: "+admin+"\n"), dir, env())
	}
	cfg, err := parse(`{read_token_file: read, write_token_file: write, allowed_hosts: [syncd, "syncd.ops.svc"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Admin; a.ReadToken != "read-token-0123456789" || a.WriteToken != "write-token-0123456789" || len(a.AllowedHosts) != 2 {
		t.Fatalf("admin: %+v", a)
	}
	cfg, err = parse(`{token_file: write}`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.WriteToken != "write-token-0123456789" || cfg.Admin.ReadToken != "" {
		t.Fatalf("token_file is the write token: %+v", cfg.Admin)
	}
	for _, tc := range []struct{ admin, want string }{
		{`{token_file: write, write_token_file: write}`, "admin.token_file: the older name of admin.write_token_file: set one, not both"},
		{`{write_token_file: short}`, "admin.write_token_file: the token must be at least 16 characters, got 9"},
		{`{read_token_file: short}`, "admin.read_token_file: the token must be at least 16 characters, got 9"},
		{`{token_file: placeholder}`, "admin.token_file: the token is the example placeholder"},
		{`{read_token_file: lower}`, "admin.read_token_file: the token is the example placeholder"},
		{`{read_token_file: write, write_token_file: write}`, "admin.read_token_file: the same token as the write token"},
		{`{read_token_file: missing}`, "admin.read_token_file: "},
		{`{allowed_hosts: ["syncd:9464"]}`, `admin.allowed_hosts[0]: want a host name or IP address without a port, got "syncd:9464"`},
		{`{allowed_hosts: ["*.example.com"]}`, `admin.allowed_hosts[0]: want a host name or IP address without a port, got "*.example.com"`},
	} {
		_, err := parse(tc.admin)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.admin, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789") {
			t.Errorf("%s: the error shows a token: %v", tc.admin, err)
		}
	}
}

// TestAdminReadTokens: the token files are read again on demand (a
// changed file with an unchanged config), with the same checks.
func TestAdminReadTokens(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "write")
	if err := os.WriteFile(file, []byte("first-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(strings.NewReader(keyConfig+"admin: {write_token_file: write}\n"), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("second-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := cfg.Admin
	if err := a.ReadTokens(); err != nil || a.WriteToken != "second-token-0123456789" {
		t.Fatalf("ReadTokens: %v %q", err, a.WriteToken)
	}
	if err := os.WriteFile(file, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	a = cfg.Admin
	if err := a.ReadTokens(); err == nil || !strings.Contains(err.Error(), "admin.write_token_file: the token must be at least 16 characters") {
		t.Fatalf("ReadTokens of a short token: %v", err)
	}
}
