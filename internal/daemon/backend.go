package daemon

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
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

var _ admin.Backend = (*Daemon)(nil)

type daemonCfg struct{ providers []config.ProviderConfig }

func (d *Daemon) current() (*refresher.Refresher, *jobs.Runner, *daemonCfg) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.ref, d.runner, &daemonCfg{d.cfg.Providers}
}

func (d *Daemon) users() users {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return users{store: d.store, jobs: d.cfg.Jobs}
}

// Ready implements admin.Backend.
func (d *Daemon) Ready(ctx context.Context) error {
	if !d.ready.Load() {
		return errors.New("not ready: starting or stopping")
	}
	if err := d.store.Ping(ctx); err != nil {
		return errors.New("not ready: redis unavailable")
	}
	return nil
}

// User implements admin.Backend.
func (d *Daemon) User(ctx context.Context, id string) (admin.UserView, error) {
	if err := tokens.ValidateExistingUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
	}
	return d.users().view(ctx, id)
}

// Users implements admin.Backend.
func (d *Daemon) Users(ctx context.Context, st tokens.State, cursor uint64, limit int) ([]tokens.Status, uint64, int, error) {
	return d.users().list(ctx, st, cursor, limit)
}

// PutToken implements admin.Backend.
func (d *Daemon) PutToken(ctx context.Context, id, providerName string, body []byte) (admin.UserView, error) {
	if err := tokens.ValidateUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
	}
	ref, _, cfg := d.current()
	p, err := PickProvider(cfg.providers, providerName)
	if err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
	}
	tok, err := tokens.ParseToken(body, tokens.ParseOptions{UserID: id, Now: time.Now(), DefaultLifetime: p.DefaultLifetime})
	if err != nil {
		return admin.UserView{}, err
	}
	return d.users().put(ctx, ref, p.Name, tok)
}

// Reauth implements admin.Backend.
func (d *Daemon) Reauth(ctx context.Context) ([]tokens.ReauthEntry, int, error) {
	q, bad, err := d.store.ReauthQueueChecked(ctx)
	return q, len(bad), err
}

// Jobs implements admin.Backend.
func (d *Daemon) Jobs(ctx context.Context) ([]jobs.JobView, error) {
	_, runner, _ := d.current()
	return runner.Overview(ctx, time.Now())
}

// Trigger implements admin.Backend.
func (d *Daemon) Trigger(ctx context.Context, job, user string) (int, error) {
	_, runner, _ := d.current()
	n, err := runner.Trigger(ctx, job, user)
	if errkind.Of(err) == errkind.Invalid { // a user not eligible for the job
		return 0, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
	}
	return n, err
}

// Pause implements admin.Backend.
func (d *Daemon) Pause(ctx context.Context, job string, paused bool) error {
	_, runner, _ := d.current()
	return runner.SetPaused(ctx, job, paused)
}

func (d *Daemon) currentFlow() *authflow.Flow {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.flow
}

// Authorize implements admin.Backend.
func (d *Daemon) Authorize(ctx context.Context, req authflow.Request) (authflow.Link, error) {
	return d.currentFlow().Authorize(ctx, req)
}

// Reauthorize implements admin.Backend.
func (d *Daemon) Reauthorize(ctx context.Context, req authflow.Request) (authflow.Link, error) {
	return d.currentFlow().Reauthorize(ctx, req)
}

// FinishAuthorization implements admin.Backend.
func (d *Daemon) FinishAuthorization(ctx context.Context, cb authflow.Callback) (authflow.Result, error) {
	return d.currentFlow().Finish(ctx, cb)
}

// addLinks gives each flagged user of a webhook batch a fresh
// re-authorization link (alerts.links); a user without one is still sent.
func (d *Daemon) addLinks(ctx context.Context, batch []alerts.Flag) {
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
func (d *Daemon) Quarantine(ctx context.Context) ([]tokens.QuarantineEntry, error) {
	return d.store.QuarantineList(ctx)
}

// Restore implements admin.Backend.
func (d *Daemon) Restore(ctx context.Context, id string) (admin.UserView, error) {
	if err := tokens.ValidateExistingUserID(id); err != nil {
		return admin.UserView{}, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
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
