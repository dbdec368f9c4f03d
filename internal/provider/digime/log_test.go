package digime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// lockedBuffer is a bytes.Buffer safe for the logger's concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// refreshingSource refreshes through the client, as the refresher does.
type refreshingSource struct {
	mu  sync.Mutex
	c   *Client
	tok tokens.Token
}

func (s *refreshingSource) Token(context.Context) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok, nil
}

func (s *refreshingSource) Rejected(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nt, err := s.c.Refresh(ctx, s.tok)
	if err != nil {
		return tokens.Token{}, err
	}
	s.tok = nt
	return nt, nil
}

// TestNoSecretsInLogsOrErrors runs refreshes, pulls and pushes, with
// failures, at trace level and checks that no token value, JWT or key
// material reaches the log or an error.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	a := newAPI(t)
	var buf lockedBuffer
	logger := zerolog.New(&buf).Level(zerolog.TraceLevel)
	c := a.client(func(cfg *Config) { cfg.Logger = logger })

	var secrets []string
	var issuedMu sync.Mutex
	n := 0
	a.tokenFunc = func(w http.ResponseWriter, claims jwt.MapClaims) {
		issuedMu.Lock()
		n++
		acc, ref := fmt.Sprintf("ACCESS-SECRET-%d", n), fmt.Sprintf("REFRESH-SECRET-%d", n)
		secrets = append(secrets, acc, ref)
		issuedMu.Unlock()
		a.writeToken(w, serverKey, "k1", a.srv.URL+"/jwks/oauth", jwt.MapClaims{
			"access_token":  map[string]any{"value": acc, "expires_on": a.clk.Now().Unix() + 3600},
			"refresh_token": map[string]any{"value": ref, "expires_on": a.clk.Now().Unix() + 86400},
		})
	}
	start := userToken("ACCESS-SECRET-0", "REFRESH-SECRET-0")
	secrets = append(secrets, start.AccessToken, start.RefreshToken)
	var errs []error
	ctx := waitCtx(t)

	// Refresh: success, then failures.
	tok, err := c.Refresh(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	a.fault("token", fault{status: 401, body: `{"error":{"code":"InvalidToken","message":"The token (refresh_token) REFRESH-SECRET-1 is invalid"}}`})
	_, err = c.Refresh(ctx, tok)
	errs = append(errs, err)
	a.fault("token", fault{status: 503, body: `{"error":{"code":"Down","message":"echo eyJhbGciOiJQUzUxMiJ9.eyJjbGllbnRfaWQiOiJ4In0.c2lnbmF0dXJl"}}`})
	_, err = c.Refresh(ctx, tok)
	errs = append(errs, err)

	// Pull: 401 on trigger (refreshes through the client), 503 on the
	// file list, a partial state, a corrupt file.
	a.mu.Lock()
	a.access = map[string]bool{"ACCESS-SECRET-2": true, "ACCESS-SECRET-3": true}
	a.states = []string{statePending, statePartial}
	a.details = map[string]any{"acc": map[string]any{"state": "partial", "error": map[string]any{"code": "ServiceAuthorizationError", "statusCode": 511, "reauth": true}}}
	a.files = threeFiles()
	a.mu.Unlock()
	a.fault("list", fault{status: 503})
	src := &refreshingSource{c: c, tok: tok}
	col := newCollector()
	if _, err := c.Pull(ctx, "u1", src, "", col.deliver); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.files[0].corrupt = true
	a.files[0].updated = 9000
	a.mu.Unlock()
	_, err = c.Pull(ctx, "u1", src, "", newCollector().deliver)
	errs = append(errs, err)
	refuse := newCollector()
	refuse.failAt, refuse.err = 0, errors.New("refused")
	_, err = c.Pull(ctx, "u1", src, "", refuse.deliver)
	errs = append(errs, err)

	// Push: success, and a failure whose message echoes the token.
	item := provider.PushItem{ID: "i", Data: []byte("d"), MimeType: "text/plain"}
	if err := c.Push(ctx, "u1", src, item); err != nil {
		t.Fatal(err)
	}
	a.fault("import", fault{status: 400, body: `{"error":{"code":"Bad","message":"bad token ACCESS-SECRET-2 in request"}}`})
	errs = append(errs, c.Push(ctx, "u1", src, item))

	logs := buf.String()
	if !strings.Contains(logs, `"user":"u1"`) || !strings.Contains(logs, `"component":"digime"`) {
		t.Fatalf("logs lack user/component fields:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if _, ok := m["user"]; !ok {
			t.Errorf("log line without user: %s", line)
		}
	}
	var texts []string
	texts = append(texts, logs)
	for _, e := range errs {
		if e == nil {
			t.Fatal("expected an error")
		}
		texts = append(texts, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}
	issuedMu.Lock()
	defer issuedMu.Unlock()
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %s leaked into: %s", s, text)
			}
		}
		if strings.Contains(text, "eyJ") {
			t.Errorf("a JWT leaked into: %s", text)
		}
		if strings.Contains(text, contractKey.D.String()[:20]) {
			t.Errorf("key material leaked into: %s", text)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("logs:\n%s", logs)
	}
}
