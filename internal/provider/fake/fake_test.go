package fake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

func setup(t *testing.T, opt fake.Options) (*fake.Provider, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opt.Clock = clk
	return fake.New(opt), clk
}

func refresh(t *testing.T, p *fake.Provider, tok tokens.Token) tokens.Token {
	t.Helper()
	nt, err := p.Refresh(context.Background(), tok)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return nt
}

func wantReauth(t *testing.T, what string, err error) {
	t.Helper()
	var re *tokens.RefreshError
	if !errors.As(err, &re) || re.Class != tokens.Reauth {
		t.Fatalf("%s: %v, want a reauth RefreshError", what, err)
	}
}

func TestReuse(t *testing.T) {
	ctx := context.Background()
	t.Run("strict by default: reuse revokes the grant", func(t *testing.T) {
		p, _ := setup(t, fake.Options{})
		tok := p.Issue("u1")
		other := p.Issue("u2")
		t1 := refresh(t, p, tok)

		_, err := p.Refresh(ctx, tok)
		wantReauth(t, "reused token", err)
		if !errors.Is(err, fake.ErrReused) {
			t.Fatalf("reuse answered %v, want it to wrap ErrReused", err)
		}
		_, err = p.Refresh(ctx, t1)
		wantReauth(t, "current token after reuse", err)
		if errors.Is(err, fake.ErrReused) {
			t.Fatal("the current token's refusal says reuse; it was never spent")
		}
		src := &providertest.Source{Client: p, Tok: t1}
		_, err = p.Pull(ctx, "u1", src, "", func(provider.Item) error { return nil })
		wantReauth(t, "pull with the current access token after reuse", err)
		if src.Rejects != 1 {
			t.Fatalf("the access token was not rejected (%d rejections)", src.Rejects)
		}
		refresh(t, p, other) // another user's grant is untouched
		_, err = p.Refresh(ctx, tok)
		wantReauth(t, "second reuse", err)

		st := p.Stats()
		if st.Reused != 2 || st.ReuseRevocations != 1 || st.GraceRefreshes != 0 || st.Rejected != 4 {
			t.Fatalf("stats %+v", st)
		}
		if p.Reuses() != 2 || p.ReusesOf("u1") != 2 || p.ReusesOf("u2") != 0 || p.ReuseRevocations() != 1 {
			t.Fatalf("Reuses %d, ReusesOf u1 %d u2 %d, ReuseRevocations %d", p.Reuses(), p.ReusesOf("u1"), p.ReusesOf("u2"), p.ReuseRevocations())
		}
		refresh(t, p, p.Issue("u1")) // a new consent works
	})
	t.Run("superseded token is not reuse", func(t *testing.T) {
		p, _ := setup(t, fake.Options{})
		old := p.Issue("u1")
		tok := p.Issue("u1")
		_, err := p.Refresh(ctx, old)
		wantReauth(t, "superseded token", err)
		refresh(t, p, tok)
		if p.Reuses() != 0 {
			t.Fatalf("reuses %d, want 0", p.Reuses())
		}
	})
	t.Run("grace period forgives the immediately previous token", func(t *testing.T) {
		p, clk := setup(t, fake.Options{RotationGracePeriod: time.Minute})
		tok := p.Issue("u1")
		t1 := refresh(t, p, tok)
		clk.Advance(59 * time.Second)
		t2 := refresh(t, p, tok)
		if t2.RefreshToken == t1.RefreshToken || t2.AccessToken == t1.AccessToken {
			t.Fatal("a grace refresh did not return a new pair")
		}
		t3 := refresh(t, p, t1)
		if st := p.Stats(); st.Reused != 0 || st.GraceRefreshes != 1 || st.Refreshes != 3 {
			t.Fatalf("stats %+v", st)
		}
		// t1 is now the immediately previous token; tok is two back.
		_, err := p.Refresh(ctx, tok)
		wantReauth(t, "two back within the grace", err)
		_, err = p.Refresh(ctx, t3)
		wantReauth(t, "current token after reuse", err)
		if p.Reuses() != 1 || p.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d", p.Reuses(), p.ReuseRevocations())
		}
	})
	t.Run("grace period ends", func(t *testing.T) {
		p, clk := setup(t, fake.Options{RotationGracePeriod: time.Minute})
		tok := p.Issue("u1")
		t1 := refresh(t, p, tok)
		clk.Advance(time.Minute)
		_, err := p.Refresh(ctx, tok)
		wantReauth(t, "after the grace", err)
		_, err = p.Refresh(ctx, t1)
		wantReauth(t, "current token after reuse", err)
		if p.Reuses() != 1 || p.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d", p.Reuses(), p.ReuseRevocations())
		}
	})
}

// TestContract runs the provider contract against the fake, which is its
// own client and server.
func TestContract(t *testing.T) {
	p := fake.New(fake.Options{Seed: 1})
	bad := fake.New(fake.Options{Seed: 2})
	bad.SetConfigError("invalid_client")
	providertest.Run(t, providertest.Harness{
		Client:           p,
		BadClient:        bad,
		Issue:            func(_ *testing.T, user string) tokens.Token { return p.Issue(user) },
		Revoke:           p.Revoke,
		Outage:           p.SetOutage,
		InvalidateAccess: p.InvalidateAccess,
		SeedData:         func(string) {}, // every pull delivers ItemsPerPull new items
		Pushed: func(user string) [][]byte {
			var out [][]byte
			for _, it := range p.Pushed(user) {
				out = append(out, it.Data)
			}
			return out
		},
		Reuses: p.ReusesOf,
		WithGrace: func(t *testing.T, grace time.Duration) providertest.GraceHarness {
			gp, clk := setup(t, fake.Options{RotationGracePeriod: grace})
			return providertest.GraceHarness{
				Client:  gp,
				Issue:   func(_ *testing.T, user string) tokens.Token { return gp.Issue(user) },
				Advance: clk.Advance,
				Reuses:  gp.ReusesOf,
			}
		},
	})
}
