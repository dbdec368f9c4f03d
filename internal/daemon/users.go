package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// users is the one view of users the admin API and the CLI share. It
// reads Redis only: no engine is needed to read a user.
type users struct {
	store *redisstore.Store
	jobs  []config.JobConfig
}

// view is everything about one user: status, next refresh, each job's
// next run and last outcome.
func (u users) view(ctx context.Context, id string) (admin.UserView, error) {
	rec, err := u.store.Load(ctx, id)
	if err != nil {
		return admin.UserView{}, err
	}
	next, err := u.store.DueAt(ctx, tokens.RefreshSet, id)
	if err != nil {
		return admin.UserView{}, err
	}
	uj, err := jobs.UserJobs(ctx, u.store, u.jobs, id, rec.Provider)
	if err != nil {
		return admin.UserView{}, err
	}
	return admin.UserView{Status: tokens.StatusOf(rec, next, time.Now()), Jobs: uj}, nil
}

// list pages through users (optionally in one state) from a SCAN
// cursor; next is 0 at the end. malformed counts records that could not
// be read (left out).
func (u users) list(ctx context.Context, st tokens.State, cursor uint64, limit int) (out []tokens.Status, next uint64, malformed int, err error) {
	now := time.Now()
	for {
		recs, bad, next, err := u.store.Scan(ctx, cursor, int64(min(limit, 1000)))
		if err != nil {
			return nil, 0, 0, err
		}
		malformed += len(bad)
		for _, r := range recs {
			if st == "" || r.State == st {
				out = append(out, tokens.StatusOf(r, time.Time{}, now))
			}
		}
		cursor = next
		if cursor == 0 || len(out) >= limit {
			return out, cursor, malformed, nil
		}
	}
}

// put stores tok under provider through ref and returns the user.
func (u users) put(ctx context.Context, ref *refresher.Refresher, provider string, tok tokens.Token) (admin.UserView, error) {
	if _, err := ref.Put(ctx, provider, tok); err != nil {
		return admin.UserView{}, err
	}
	return u.view(ctx, tok.UserID)
}

// PickProvider returns the named provider, or the only one.
func PickProvider(ps []config.ProviderConfig, name string) (config.ProviderConfig, error) {
	if name == "" {
		if len(ps) == 1 {
			return ps[0], nil
		}
		return config.ProviderConfig{}, fmt.Errorf("--provider is required: %d providers are configured", len(ps))
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return config.ProviderConfig{}, fmt.Errorf("--provider: unknown provider %q", name)
}
