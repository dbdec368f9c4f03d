package providertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// Client is what the contract exercises.
type Client interface {
	refresher.Provider
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
	// Reuses counts the server's refresh token reuse detections for
	// user: refresh tokens already spent by a rotation presented again.
	Reuses func(user string) int
	// WithGrace starts a fresh fake server whose rotation grace period
	// is grace, and returns a client of it. Required: the contract's
	// fakes all have the knob.
	WithGrace func(t *testing.T, grace time.Duration) GraceHarness
}

// GraceHarness wires a provider to a fake server with a rotation grace
// period (Hydra's rotation_grace_period) and a clock the test moves.
type GraceHarness struct {
	Client Client
	// Issue runs a consent for user and returns the tokens the app gets.
	Issue func(t *testing.T, user string) tokens.Token
	// Advance moves the server's clock (and the client's, if it has one)
	// on by d.
	Advance func(d time.Duration)
	// Reuses is Harness.Reuses for this server.
	Reuses func(user string) int
}

// Source is a TokenSource over one token that refreshes through the
// client and counts rejections.
type Source struct {
	mu       sync.Mutex
	Client   refresher.Provider
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

// reauth fails t unless err is a RefreshError classed Reauth.
func reauth(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want a reauth RefreshError", what)
	}
	if c := class(t, err); c != tokens.Reauth {
		t.Fatalf("%s: class %v (%v), want reauth", what, c, err)
	}
}

// refreshed refreshes tok through c, failing t on error, and returns the
// new token as a caller would store it: the old refresh token kept when
// none came back, the user id carried over.
func refreshed(t *testing.T, c Client, tok tokens.Token) tokens.Token {
	t.Helper()
	nt, err := c.Refresh(context.Background(), tok)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if nt.RefreshToken == "" {
		nt.RefreshToken = tok.RefreshToken
	}
	nt.UserID = tok.UserID
	return nt
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
		if n := h.Reuses("c-rotate"); n != 0 {
			t.Fatalf("the server saw %d refresh token reuses, want 0", n)
		}
	})
	t.Run("presenting a rotated refresh token again revokes the family", func(t *testing.T) {
		tok := h.Issue(t, "c-reuse")
		h.SeedData("c-reuse")
		t1 := refreshed(t, h.Client, tok)
		if t1.RefreshToken == tok.RefreshToken {
			t.Fatal("the refresh did not rotate the refresh token (every fake of the contract rotates)")
		}
		_, err := h.Client.Refresh(ctx, tok)
		reauth(t, "the rotated refresh token", err)
		_, err = h.Client.Refresh(ctx, t1)
		reauth(t, "the family's current refresh token after the reuse", err)
		// The current access token is dead too: the data call is
		// answered 401, and the refresh it asks for fails for good.
		src := &Source{Client: h.Client, Tok: t1}
		_, err = h.Client.Pull(ctx, "c-reuse", src, "", func(provider.Item) error { return nil })
		if src.Rejects != 1 || src.Refreshs != 0 {
			t.Fatalf("pull with the current access token after the reuse: %d rejections, %d refreshes (%v); want 1 and 0",
				src.Rejects, src.Refreshs, err)
		}
		reauth(t, "pull after the reuse", err)
		if n := h.Reuses("c-reuse"); n != 1 {
			t.Fatalf("the server saw %d reuses, want 1", n)
		}
		// A new consent starts a new family.
		fresh := h.Issue(t, "c-reuse")
		refreshed(t, h.Client, fresh)
	})
	t.Run("a grace period forgives the immediately previous refresh token", func(t *testing.T) {
		g := h.WithGrace(t, time.Minute)
		tok := g.Issue(t, "c-grace")
		t1 := refreshed(t, g.Client, tok)
		g.Advance(30 * time.Second)
		// Within the grace the spent token gets a new pair (Hydra) and
		// revokes nothing.
		t2 := refreshed(t, g.Client, tok)
		if t2.RefreshToken == t1.RefreshToken || t2.AccessToken == t1.AccessToken {
			t.Fatal("a grace refresh did not return a new pair")
		}
		t3 := refreshed(t, g.Client, t1)
		if n := g.Reuses("c-grace"); n != 0 {
			t.Fatalf("the server saw %d reuses within the grace, want 0", n)
		}
		// After the grace, presenting the spent token is reuse.
		g.Advance(time.Minute)
		_, err := g.Client.Refresh(ctx, t1)
		reauth(t, "the previous refresh token after the grace", err)
		_, err = g.Client.Refresh(ctx, t3)
		reauth(t, "the family's current refresh token after the reuse", err)
		if n := g.Reuses("c-grace"); n != 1 {
			t.Fatalf("the server saw %d reuses, want 1", n)
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
		if n := h.Reuses("c-401"); n != 0 {
			t.Fatalf("the server saw %d refresh token reuses, want 0", n)
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
