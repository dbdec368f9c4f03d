package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

var _ admin.Backend = (*daemon)(nil)

type daemonCfg struct{ providers []config.ProviderConfig }

func (d *daemon) current() (*refresher.Refresher, *jobs.Runner, *daemonCfg) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.ref, d.runner, &daemonCfg{d.cfg.Providers}
}

// Ready implements admin.Backend.
func (d *daemon) Ready(ctx context.Context) error {
	if !d.ready.Load() {
		return errors.New("not ready: starting or stopping")
	}
	if err := d.store.Ping(ctx); err != nil {
		return errors.New("not ready: redis unavailable")
	}
	return nil
}

// User implements admin.Backend.
func (d *daemon) User(ctx context.Context, id string) (admin.UserView, error) {
	if err := tokens.ValidateUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	rec, err := d.store.Load(ctx, id)
	if err != nil {
		return admin.UserView{}, err
	}
	next, err := d.store.DueAt(ctx, tokens.RefreshSet, id)
	if err != nil {
		return admin.UserView{}, err
	}
	_, runner, _ := d.current()
	uj, err := runner.UserJobs(ctx, id, rec.Provider)
	if err != nil {
		return admin.UserView{}, err
	}
	return admin.UserView{Status: tokens.StatusOf(rec, next, time.Now()), Jobs: uj}, nil
}

// Users implements admin.Backend.
func (d *daemon) Users(ctx context.Context, st tokens.State, cursor uint64, limit int) ([]tokens.Status, uint64, int, error) {
	var out []tokens.Status
	malformed := 0
	now := time.Now()
	for {
		recs, bad, next, err := d.store.Scan(ctx, cursor, int64(min(limit, 1000)))
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

// PutToken implements admin.Backend.
func (d *daemon) PutToken(ctx context.Context, id, providerName string, body []byte) (admin.UserView, error) {
	if err := tokens.ValidateUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	ref, _, cfg := d.current()
	p, err := pickProvider(cfg.providers, providerName)
	if err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	tok, err := tokens.ParseToken(body, tokens.ParseOptions{UserID: id, Now: time.Now(), DefaultLifetime: p.DefaultLifetime})
	if err != nil {
		return admin.UserView{}, err
	}
	if _, err := ref.Put(ctx, p.Name, tok); err != nil {
		return admin.UserView{}, err
	}
	return d.User(ctx, id)
}

// Reauth implements admin.Backend.
func (d *daemon) Reauth(ctx context.Context) ([]tokens.ReauthEntry, int, error) {
	q, bad, err := d.store.ReauthQueueChecked(ctx)
	return q, len(bad), err
}

// Jobs implements admin.Backend.
func (d *daemon) Jobs(ctx context.Context) ([]jobs.JobView, error) {
	_, runner, _ := d.current()
	return runner.Overview(ctx, time.Now())
}

// Trigger implements admin.Backend.
func (d *daemon) Trigger(ctx context.Context, job, user string) (int, error) {
	_, runner, _ := d.current()
	n, err := runner.Trigger(ctx, job, user)
	if err != nil && !errors.Is(err, jobs.ErrUnknownJob) && !errors.Is(err, tokens.ErrNotFound) {
		return 0, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	return n, err
}

// Pause implements admin.Backend.
func (d *daemon) Pause(ctx context.Context, job string, paused bool) error {
	_, runner, _ := d.current()
	return runner.SetPaused(ctx, job, paused)
}

func (d *daemon) currentFlow() *authflow.Flow {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.flow
}

// Authorize implements admin.Backend.
func (d *daemon) Authorize(ctx context.Context, req authflow.Request) (authflow.Link, error) {
	return d.currentFlow().Authorize(ctx, req)
}

// Reauthorize implements admin.Backend.
func (d *daemon) Reauthorize(ctx context.Context, req authflow.Request) (authflow.Link, error) {
	return d.currentFlow().Reauthorize(ctx, req)
}

// FinishAuthorization implements admin.Backend.
func (d *daemon) FinishAuthorization(ctx context.Context, cb authflow.Callback) (authflow.Result, error) {
	return d.currentFlow().Finish(ctx, cb)
}

// addLinks gives each flagged user of a webhook batch a fresh
// re-authorization link (alerts.links); a user without one is still sent.
func (d *daemon) addLinks(ctx context.Context, batch []alerts.Flag) {
	flow := d.currentFlow()
	// digi.me's recovery link is a signed call each: a few at a time.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			l, err := flow.Reauthorize(ctx, authflow.Request{User: batch[i].User})
			if err != nil {
				d.log.Warn().Err(err).Str("user", batch[i].User).Msg("no re-authorization link for the webhook")
				return
			}
			batch[i].Link, batch[i].LinkExpiresAt = l.URL, l.ExpiresAt
		}()
	}
	wg.Wait()
}

// Quarantine implements admin.Backend.
func (d *daemon) Quarantine(ctx context.Context) ([]tokens.QuarantineEntry, error) {
	return d.store.QuarantineList(ctx)
}

// Restore implements admin.Backend.
func (d *daemon) Restore(ctx context.Context, id string) (admin.UserView, error) {
	if err := tokens.ValidateUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	ref, _, _ := d.current()
	_, err := ref.Restore(ctx, id)
	switch {
	case errors.Is(err, tokens.ErrNotQuarantined):
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrNotFound, err)
	case refresher.RestoreRefused(err):
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrConflict, err)
	case err != nil:
		return admin.UserView{}, err
	}
	return d.User(ctx, id)
}
