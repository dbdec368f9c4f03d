package refresher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncd/syncd/internal/tokens"
)

// Token returns a usable token for user: the stored one if it is valid
// for at least minValid more, else a refreshed one (single-flight in this
// process, leased across replicas; a refresh in progress elsewhere is
// waited for). A token refreshed since the call began is returned even if
// the provider's lifetime is shorter than minValid: refreshing again would
// not help. Jobs call it before using a token.
func (r *Refresher) Token(ctx context.Context, user string, minValid time.Duration) (tokens.Token, error) {
	start := r.opt.Clock.Now()
	return r.fresh(ctx, user, func(rec tokens.Record, tok tokens.Token, now time.Time) bool {
		return tok.AccessExpiry.After(now.Add(minValid)) || !rec.LastRefresh.Before(start)
	})
}

// Rejected is called when a provider answered 401 to a data call made
// with rejected: it returns a newer token, refreshing unless someone else
// already has (the digi.me SDKs' refresh-and-retry-once).
func (r *Refresher) Rejected(ctx context.Context, user string, rejected tokens.Token) (tokens.Token, error) {
	return r.fresh(ctx, user, func(_ tokens.Record, tok tokens.Token, _ time.Time) bool {
		return tok.AccessToken != rejected.AccessToken
	})
}

// Source returns user's tokens as a provider.TokenSource: Token gives a
// token valid for at least minValid, Rejected refreshes once.
func (r *Refresher) Source(user string, minValid time.Duration) *Source {
	return &Source{r: r, user: user, minValid: minValid}
}

// SourceFrom is Source for the user of rec, a record just read: its first
// Token call uses rec instead of reading it again when the token in it is
// good for minValid.
func (r *Refresher) SourceFrom(rec tokens.Record, minValid time.Duration) *Source {
	return &Source{r: r, user: rec.UserID, minValid: minValid, hint: &rec}
}

// Source is one user's token source; see Refresher.Source.
type Source struct {
	r        *Refresher
	user     string
	minValid time.Duration
	hint     *tokens.Record
}

// Token implements provider.TokenSource.
func (s *Source) Token(ctx context.Context) (tokens.Token, error) {
	if rec := s.hint; rec != nil {
		s.hint = nil
		if rec.State.Runnable() && rec.AccessExpiry.After(s.r.opt.Clock.Now().Add(s.minValid)) {
			if tok, err := s.r.keys.OpenRecord(*rec); err == nil {
				return tok, nil
			}
		}
	}
	return s.r.Token(ctx, s.user, s.minValid)
}

// Rejected implements provider.TokenSource.
func (s *Source) Rejected(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	return s.r.Rejected(ctx, s.user, t)
}

// fresh loads user's token and returns it once good says so, refreshing
// (forced) otherwise. A refresh in progress elsewhere (another replica,
// or a lease this process took with a claimed batch) is waited for as
// long as a refresh may take: the provider's timeout, plus time to store
// the answer. A few rounds cover a concurrent pass that decided not to
// refresh.
func (r *Refresher) fresh(ctx context.Context, user string, good goodFunc) (tokens.Token, error) {
	wait := 50 * time.Millisecond
	var waitUntil time.Time // real time; set by the first busy answer
	for round := 0; ; round++ {
		rec, err := r.store.Load(ctx, user)
		if err != nil {
			return tokens.Token{}, fmt.Errorf("token for %q: %w", user, err)
		}
		if !rec.State.Runnable() {
			return tokens.Token{}, fmt.Errorf("token for %q: %w", user, stateErr(rec.State))
		}
		tok, err := r.keys.OpenRecord(rec)
		if err != nil {
			return tokens.Token{}, fmt.Errorf("token for %q: %w", user, err)
		}
		if good(rec, tok, r.opt.Clock.Now()) {
			return tok, nil
		}
		if round == 5 {
			return tokens.Token{}, fmt.Errorf("token for %q: no fresh token after %d refresh attempts", user, round)
		}
		o, err := r.refresh(ctx, user, good, nil)
		switch {
		case errors.Is(err, errBusy):
			if waitUntil.IsZero() {
				waitUntil = time.Now().Add(r.refreshBudget(rec.Provider))
			}
			if time.Now().After(waitUntil) {
				return tokens.Token{}, fmt.Errorf("token for %q: %w for longer than a refresh may take", user, errBusy)
			}
			// Waiting does not use up a round.
			round--
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return tokens.Token{}, ctx.Err()
			case <-t.C:
			}
			wait = min(2*wait, time.Second)
		case err != nil:
			return tokens.Token{}, fmt.Errorf("token for %q: %w", user, err)
		case o.result == OutcomeOK:
			return o.tok, nil
		}
	}
}

// refreshBudget is how long one refresh by provider may legitimately take,
// from the call to the stored answer.
func (r *Refresher) refreshBudget(provider string) time.Duration {
	if ps, ok := r.providers[provider]; ok {
		return ps.Policy.Timeout + (r.opt.Lease-ps.Policy.Timeout)/2
	}
	return r.opt.Lease
}
