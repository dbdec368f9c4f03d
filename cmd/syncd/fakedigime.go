package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/provider/digime"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/tokens"
)

// cmdFakeDigime runs the fake digi.me server alone, for trying syncd (or
// an app) against the real protocol without a digi.me contract.
func cmdFakeDigime(ctx context.Context, args []string, e env) error {
	fs, _ := flags("fake-digime", e)
	listen := fs.String("listen", "127.0.0.1:8765", "address to serve on")
	appID := fs.String("app-id", "fake-app", "application id the server accepts")
	contractID := fs.String("contract-id", "fake-contract", "contract id the server accepts")
	keyFile := fs.String("contract-key", "", "the contract's private key PEM; created (mode 0600) if the file does not exist")
	issue := fs.String("issue", "", "comma-separated users to onboard at start")
	tokensDir := fs.String("tokens-dir", "", "write each onboarded user's token here as USER.json, for syncd token put --file")
	lifetime := fs.Duration("access-lifetime", time.Hour, "access-token lifetime")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return badInput("fake-digime: --contract-key is required (a path; it is created if missing)")
	}
	if *issue != "" && *tokensDir == "" {
		return badInput("fake-digime: --issue needs --tokens-dir (tokens are never printed)")
	}
	// Each id names a file in --tokens-dir: the user id grammar keeps it
	// there (no separators, no "." or "..").
	var users []string
	for _, u := range strings.Split(*issue, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := tokens.ValidateUserID(u); err != nil {
			return badInput("fake-digime: --issue: %v", err)
		}
		users = append(users, u)
	}
	key, err := contractKey(*keyFile)
	if err != nil {
		return err
	}
	srv, err := digimefake.New(digimefake.Options{AppID: *appID, ContractID: *contractID, ContractKey: &key.PublicKey, AccessLifetime: *lifetime})
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "fake-digime: %w", err)
	}
	for _, u := range users {
		t := srv.Issue(u)
		doc := map[string]any{
			"accessToken":  map[string]any{"value": t.AccessToken, "expiry": t.AccessExpiry.Unix()},
			"refreshToken": map[string]any{"value": t.RefreshToken, "expiry": t.RefreshExpiry.Unix()},
			"user":         map[string]any{"id": u}, "consentid": t.ConsentID,
		}
		b, _ := json.Marshal(doc)
		if err := os.WriteFile(filepath.Join(*tokensDir, u+".json"), b, 0o600); err != nil {
			return fmt.Errorf("fake-digime: %w", err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "fake-digime: --listen: %w", err)
	}
	fmt.Fprintf(e.stdout, "fake digi.me: base_url http://%s%s, app_id %s, contract_id %s, private_key_file %s\n",
		ln.Addr(), digimefake.PathPrefix, *appID, *contractID, *keyFile)
	return srv.Serve(ctx, ln, e.stderr)
}

// contractKey reads an RSA private key PEM, or creates one.
func contractKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		p := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := os.WriteFile(path, p, 0o600); err != nil {
			return nil, errkind.Errorf(errkind.Invalid, "fake-digime: --contract-key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "fake-digime: --contract-key: %w", err)
	}
	key, err := digime.ParsePrivateKey(b)
	if err != nil {
		return nil, errkind.Errorf(errkind.Invalid, "fake-digime: --contract-key %s: %w", path, err)
	}
	return key, nil
}
