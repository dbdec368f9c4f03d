// Package providertest is the contract every provider passes: the same
// cases run against digime (with digimefake) and oauth2 (with oauth2fake).
package providertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Client is what the contract exercises.
type Client interface {
	tokens.Provider
	Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error)
	Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error
}

// Harness wires a provider to its fake server.
type Harness struct {
	// Client talks to the fake server.
	Client Client
	// BadClient has wrong client credentials (or a key the server does not
	// know).
	BadClient Client
	// Issue runs a consent for user and returns the tokens the app gets.
	Issue func(t *testing.T, user string) tokens.Token
	// Revoke withdraws user's consent at the server.
	Revoke func(user string)
	// Outage makes the token endpoint answer status with Retry-After
	// (status 0 ends it).
	Outage func(status int, retryAfter time.Duration)
	// InvalidateAccess makes the server reject user's current access
	// token with 401 on data calls (as if it expired early).
	InvalidateAccess func(user string)
	// SeedData gives user something to pull (at least one item).
	SeedData func(user string)
	// Pushed returns the bodies the server accepted for user, in order;
	// nil skips the push case.
	Pushed func(user string) [][]byte
}

// Source is a TokenSource over one token that refreshes through the
// client and counts rejections.
type Source struct {
	mu       sync.Mutex
	Client   tokens.Provider
	Tok      tokens.Token
	Rejects  int
	Refreshs int
}

// Token implements provider.TokenSource.
func (s *Source) Token(context.Context) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Tok, nil
}

// Rejected implements provider.TokenSource.
func (s *Source) Rejected(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Rejects++
	if t.AccessToken != s.Tok.AccessToken {
		return s.Tok, nil
	}
	nt, err := s.Client.Refresh(ctx, s.Tok)
	if err != nil {
		return tokens.Token{}, err
	}
	s.Refreshs++
	if nt.RefreshToken == "" {
		nt.RefreshToken = s.Tok.RefreshToken
	}
	nt.UserID = s.Tok.UserID
	s.Tok = nt
	return nt, nil
}

func class(t *testing.T, err error) tokens.Class {
	t.Helper()
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *tokens.RefreshError", err)
	}
	return re.Class
}

// Run runs the contract.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	t.Run("refresh rotates", func(t *testing.T) {
		tok := h.Issue(t, "c-rotate")
		t1, err := h.Client.Refresh(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if t1.AccessToken == "" || t1.AccessToken == tok.AccessToken || !t1.AccessExpiry.After(time.Now()) {
			t.Fatalf("refreshed token: new access %v, expiry %v", t1.AccessToken != tok.AccessToken, t1.AccessExpiry)
		}
		if t1.RefreshToken == "" {
			t1.RefreshToken = tok.RefreshToken
		}
		t1.UserID = tok.UserID
		t2, err := h.Client.Refresh(ctx, t1)
		if err != nil {
			t.Fatalf("second refresh with the rotated token: %v", err)
		}
		if t2.AccessToken == t1.AccessToken {
			t.Fatal("second refresh returned the same access token")
		}
	})
	t.Run("reuse rejected", func(t *testing.T) {
		tok := h.Issue(t, "c-reuse")
		t1, err := h.Client.Refresh(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if t1.RefreshToken == "" || t1.RefreshToken == tok.RefreshToken {
			t.Skip("provider does not rotate refresh tokens")
		}
		_, err = h.Client.Refresh(ctx, tok)
		if c := class(t, err); c != tokens.Reauth {
			t.Fatalf("reused refresh token: class %v (%v), want reauth", c, err)
		}
	})
	t.Run("revoked is reauth", func(t *testing.T) {
		tok := h.Issue(t, "c-revoked")
		h.Revoke("c-revoked")
		_, err := h.Client.Refresh(ctx, tok)
		if c := class(t, err); c != tokens.Reauth {
			t.Fatalf("revoked: class %v (%v), want reauth", c, err)
		}
	})
	t.Run("outage is transient", func(t *testing.T) {
		t.Cleanup(func() { h.Outage(0, 0) })
		tok := h.Issue(t, "c-outage")
		h.Outage(503, 0)
		_, err := h.Client.Refresh(ctx, tok)
		if c := class(t, err); c != tokens.Transient {
			t.Fatalf("503: class %v (%v), want transient", c, err)
		}
		h.Outage(429, 7*time.Second)
		_, err = h.Client.Refresh(ctx, tok)
		var re *tokens.RefreshError
		if !errors.As(err, &re) || re.Class != tokens.Transient || re.RetryAfter != 7*time.Second {
			t.Fatalf("429: %v, want transient with Retry-After 7s", err)
		}
		h.Outage(0, 0)
		if _, err := h.Client.Refresh(ctx, tok); err != nil {
			t.Fatalf("after the outage: %v", err)
		}
	})
	t.Run("bad client is config", func(t *testing.T) {
		tok := h.Issue(t, "c-badclient")
		_, err := h.BadClient.Refresh(ctx, tok)
		if c := class(t, err); c != tokens.Config {
			t.Fatalf("bad client: class %v (%v), want config", c, err)
		}
	})
	t.Run("401 on data call refreshes once and retries", func(t *testing.T) {
		tok := h.Issue(t, "c-401")
		h.SeedData("c-401")
		h.InvalidateAccess("c-401")
		src := &Source{Client: h.Client, Tok: tok}
		var items []provider.Item
		res, err := h.Client.Pull(ctx, "c-401", src, "", func(it provider.Item) error { items = append(items, it); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if src.Rejects != 1 || src.Refreshs != 1 {
			t.Fatalf("rejections %d, refreshes %d; want 1 and 1", src.Rejects, src.Refreshs)
		}
		if len(items) == 0 || res.Delivered != len(items) || res.Cursor == "" {
			t.Fatalf("pull after refresh: %d items, result %+v", len(items), res)
		}
	})
	t.Run("push after 401 refreshes once", func(t *testing.T) {
		if h.Pushed == nil {
			t.Skip("harness has no Pushed")
		}
		tok := h.Issue(t, "c-push")
		h.InvalidateAccess("c-push")
		src := &Source{Client: h.Client, Tok: tok}
		for _, body := range []string{"first", "second"} {
			if err := h.Client.Push(ctx, "c-push", src, provider.PushItem{ID: body, Data: []byte(body), MimeType: "text/plain", Tags: []string{"t"}}); err != nil {
				t.Fatal(err)
			}
		}
		got := h.Pushed("c-push")
		if len(got) != 2 || string(got[0]) != "first" || string(got[1]) != "second" || src.Refreshs != 1 {
			t.Fatalf("pushed %q with %d refreshes; want first, second and one refresh", got, src.Refreshs)
		}
	})
}
