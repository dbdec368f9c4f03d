package config

import (
	"crypto/subtle"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// MinAdminToken is the shortest admin token accepted.
const MinAdminToken = 16

// adminPlaceholder marks the example tokens (deploy/kubernetes/secret.yaml
// ships "REPLACE-WITH-A-RANDOM-TOKEN"): a token holding it is refused, so
// an example applied unchanged keeps the admin API closed.
const adminPlaceholder = "REPLACE"

// hostName is a DNS name as allowed_hosts takes it: letters, digits,
// hyphens and dots, no port, no wildcard.
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)

// ReadTokens reads the token files (read_token_file, and write_token_file
// or its older name token_file) into ReadToken and WriteToken, with
// Validate's checks: the daemon calls it again when a file changes. On
// error the fields are left as they were; the error names the field and
// never holds a token.
func (a *AdminConfig) ReadTokens() error {
	var p problems
	a.readTokens(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (a *AdminConfig) readTokens(p *problems) {
	n := len(*p)
	writeField, writeFile := "admin.write_token_file", a.WriteTokenFile
	if a.TokenFile != "" {
		if a.WriteTokenFile != "" {
			p.add("admin.token_file", "the older name of admin.write_token_file: set one, not both")
			return
		}
		writeField, writeFile = "admin.token_file", a.TokenFile
	}
	read := func(field, file string) string {
		if file == "" {
			return ""
		}
		s, err := readSecretFile(file)
		switch {
		case err != nil:
			p.add(field, "%v", err)
		case len(s) < MinAdminToken:
			p.add(field, "the token must be at least %d characters, got %d", MinAdminToken, len(s))
		case strings.Contains(strings.ToUpper(s), adminPlaceholder):
			p.add(field, "the token is the example placeholder (it holds %q); generate one: head -c 32 /dev/urandom | base64", adminPlaceholder)
		default:
			return s
		}
		return ""
	}
	rt := read("admin.read_token_file", a.ReadTokenFile)
	wt := read(writeField, writeFile)
	if rt != "" && subtle.ConstantTimeCompare([]byte(rt), []byte(wt)) == 1 {
		p.add("admin.read_token_file", "the same token as the write token: a read token must not be able to write")
	}
	if len(*p) == n {
		a.ReadToken, a.WriteToken = rt, wt
	}
}

func (a *AdminConfig) validate(p *problems) {
	if a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			p.add("admin.listen", "invalid address %q: want host:port", a.Listen)
		}
	}
	for i, h := range a.AllowedHosts {
		if net.ParseIP(h) == nil && !hostName.MatchString(h) {
			p.add(fmt.Sprintf("admin.allowed_hosts[%d]", i), "want a host name or IP address without a port, got %q", h)
		}
	}
	a.readTokens(p)
}
